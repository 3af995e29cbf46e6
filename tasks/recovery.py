"""The recovery engine as one Prefect task: thousands of VM steps, one unit of orchestration.

A Prefect task run per VM step would cost more in orchestration than the steps cost in vCenter
(docs/recovery-engine.md). The engine therefore runs inside a single task; it records every
step itself (``record``) and reports progress at a bounded rate. It is not retried as a whole
(a resumed run re-enters it and finds the VMs already up); the vCenter calls inside it are
check-then-act and the client retries what its session allows.
"""

from __future__ import annotations

from collections.abc import Callable

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.vcenter import VCenterCredentials
from draas.checks import AddressResolver
from draas.deadline import Deadline
from draas.models.results import StepResult
from draas.models.tenant import ProtectedMachine
from draas.recovery.engine import EngineLimits, EngineResult, MachineTarget, RecoveryEngine
from draas.sessions import session


@task(cache_policy=NO_CACHE)
def recover_vms(credentials: VCenterCredentials, folder: str, targets: list[MachineTarget], *,
                resolver: AddressResolver, limits: EngineLimits | None = None,
                machines: dict[str, ProtectedMachine] | None = None, deadline: Deadline | None = None,
                record: Callable[[StepResult], object] | None = None,
                progress: Callable[[int, int, str], None] | None = None) -> EngineResult:
    """Bring ``targets`` (presented, in ``folder`` of the vCenter) up in dependency order and verify them.

    Raises:
        RecoveryFailed: a required VM did not verify (the result names each VM and check).
        PlanInvalid: a target is not presented, or the dependencies are not a DAG.
    """
    with session(credentials) as client:
        engine = RecoveryEngine(client, folder, resolver=resolver, limits=limits,
                                record=(lambda s: record(s)) if record else None, progress=progress,
                                deadline=deadline, machines=machines)
        return engine.run(targets)

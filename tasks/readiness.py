"""Readiness tasks: read-only looks at the protected vCenter, the replication manager and the recovery site.

Each task reads one system and returns a typed StepResult (``changed=False`` always) whose
payload is the view :func:`draas.readiness.assess` compares. They change nothing: the
replication manager's settings are read through an edit session that is discarded again.
Sessions come from :func:`draas.sessions.session` (shared per flow run); only transient errors
are retried; caching is off (a readiness check is a fresh look by definition).
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from draas.clients.replication import ProtectionSpec, ReplicationProvider, ReplicationRequestRejected
from draas.clients.vcenter import VCenterClient, VCenterObjectNotFound
from draas.models.results import StepResult
from draas.readiness import ManagedGroup, ManagerView, ProtectedInventory, RecoveryInventory, VmState
from draas.sessions import session
from tasks.common import RETRY_POLICY
from tasks.common import task_logger as _logger


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def read_protected_inventory(credentials: Any, folder: str) -> StepResult[ProtectedInventory]:
    """The VMs below ``folder`` of the protected vCenter with their disks and NICs (none if no such folder)."""
    result: StepResult[ProtectedInventory] = StepResult(step="read_protected_inventory", target=folder)
    client: VCenterClient
    with session(credentials) as client:
        try:
            vms = client.list_vms(folder)
        except VCenterObjectNotFound:
            vms = []
    inventory = ProtectedInventory(folder=folder, vms=[VmState.of(vm) for vm in vms])
    _logger().info("protected folder %s: %d VM(s)", folder, len(vms))
    return result.done(detail={"vms": [vm.name for vm in inventory.vms]}, payload=inventory)


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def read_replication_groups(credentials: Any, specs: list[ProtectionSpec]) -> StepResult[ManagerView]:
    """Every group of the manager with its members; for each spec's group what protecting it would change
    (``plan_protect``) and how its settings drift from the spec (where the adapter can tell)."""
    result: StepResult[ManagerView] = StepResult(step="read_replication_groups", target=", ".join(s.name for s in specs))
    provider: ReplicationProvider
    with session(credentials) as provider:
        groups = provider.list_groups()
        wanted = {s.name: s for s in specs}
        plans = {g.name: provider.plan_protect(wanted[g.name]) for g in groups if g.name in wanted}
        protected_vms = getattr(provider, "protected_vms", None)
        if protected_vms is not None:
            members = {g.name: [vm.name for vm in protected_vms(g.id)] for g in groups}
        else:  # members of the spec's groups, from what protecting them would add or remove
            members = {name: _members_from_plan(wanted[name], plan) for name, plan in plans.items()}
        drift_of = getattr(provider, "settings_drift", None)
        view = []
        for group in groups:
            spec = wanted.get(group.name)
            plan = plans.get(group.name, [])
            drift = _drift(drift_of, spec) if spec is not None and drift_of is not None else []
            view.append(ManagedGroup(name=group.name, status=f"{group.status}/{group.substatus}",
                                     replicating=group.replicating, members=sorted(members.get(group.name, [])),
                                     plan=plan, drift=drift))
    manager = ManagerView(groups=view)
    _logger().info("replication manager: %d group(s)", len(view))
    return result.done(detail={"groups": {g.name: len(g.members) for g in view}}, payload=manager)


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def read_recovery_inventory(credentials: Any, networks: list[str], pool: str,
                            cluster: str | None = None) -> StepResult[RecoveryInventory]:
    """Which of ``networks`` exist in the recovery vCenter, and the reservations of resource pool ``pool``."""
    result: StepResult[RecoveryInventory] = StepResult(step="read_recovery_inventory", target=pool)
    client: VCenterClient
    with session(credentials) as client:
        present = {name: client.find("network", name) is not None for name in networks}
        try:
            allocation = client.get_resource_pool_allocation(pool, cluster)
        except VCenterObjectNotFound:
            allocation = None
    inventory = RecoveryInventory(networks=present, pool=pool, allocation=allocation)
    return result.done(detail={"missing_networks": [n for n, ok in present.items() if not ok],
                               "pool": allocation.model_dump() if allocation else None}, payload=inventory)


def _members_from_plan(spec: ProtectionSpec, plan: list[str]) -> list[str]:
    """A group's members when the adapter cannot list them: the spec's, less ``+ vm``, plus ``- vm``."""
    added = {line[len("+ vm "):] for line in plan if line.startswith("+ vm ")}
    removed = [line[len("- vm "):] for line in plan if line.startswith("- vm ")]
    return [m.vm for m in spec.members if m.vm not in added] + removed


def _drift(drift_of: Any, spec: ProtectionSpec) -> list[str]:
    """The adapter's settings drift of ``spec``'s group; a manager that will not show the settings
    now (an operation under way holds them) is itself a finding, not a failed check."""
    try:
        return list(drift_of(spec))
    except ReplicationRequestRejected as exc:
        return [f"! settings not readable now: {exc}"]

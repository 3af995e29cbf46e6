"""Tasks of the failback: reverse protection, and reading a site's copies of the tenant's machines.

Each task is check-then-act and returns a :class:`StepResult`, like the replication and vCenter
tasks it sits beside:

- :func:`reverse_protection` makes a committed failover's group replicate from the recovery site
  back to the production site through the provider's ``reverse`` (a no-op for a group that is
  reversed already, or whose reversal is under way);
- :func:`list_site_vms` reads the VMs of the tenant's folder at one vCenter (what is there, how
  each is powered and where its NICs are attached), changing nothing.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.vcenter import VCenterCredentials
from draas.clients.replication import GroupOperation, GroupState, OperationKind, ReplicationRequestRejected
from draas.models.results import StepResult
from draas.models.vcenter import VmInfo
from draas.sessions import session
from tasks.common import RETRY_POLICY
from tasks.common import task_logger as _logger
from tasks.replication import ReplicationCredentials, _detail, _provider


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def reverse_protection(credentials: ReplicationCredentials, vpg: str,
                       dry_run: bool = False) -> StepResult[GroupOperation]:
    """Protect the group from the recovery site back to the production site; reversed already is no change.

    Raises:
        ReplicationRequestRejected: the group has no committed failover to reverse.
    """
    result: StepResult[GroupOperation] = StepResult(step="reverse_protection", target=vpg, dry_run=dry_run)
    with _provider(credentials) as provider:
        group = provider.status(vpg)
        if group.reversed:
            running = provider.running_operation(group.id, OperationKind.PROTECT)
            return result.done(changed=False, detail=_detail(group, running),
                               payload=GroupOperation(group=group, task=running))
        running = provider.running_operation(group.id, OperationKind.PROTECT)
        if running is not None:  # the reversal a killed run started
            return result.done(changed=False, detail=_detail(group, running),
                               payload=GroupOperation(group=group, task=running))
        if group.state != GroupState.RECOVERED and not group.awaiting_commit:
            raise ReplicationRequestRejected(f"group {group.name!r} has no committed failover to reverse "
                                             f"({group.status}/{group.substatus})")
        diff = [f"~ reverse protection of {group.name} (recovery site -> production site)"]
        if dry_run:
            return result.done(changed=True, diff=diff, payload=GroupOperation(group=group))
        started = provider.reverse(group.id)
    _logger().warning("reversing protection of group %s (task %s)", group.name, started.id if started else None)
    return result.done(changed=started is not None, diff=diff if started else [], detail=_detail(group, started),
                       payload=GroupOperation(group=group, task=started))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def list_site_vms(credentials: VCenterCredentials, folder: str, names: list[str] | None = None) -> StepResult[list[VmInfo]]:
    """The VMs in ``folder`` of the vCenter (only those named in ``names``, when given); changes nothing."""
    result: StepResult[list[VmInfo]] = StepResult(step="list_site_vms", target=folder)
    wanted = set(names) if names is not None else None
    with session(credentials) as client:
        vms = [vm for vm in client.list_vms(folder) if wanted is None or vm.name in wanted]
    return result.done(changed=False, payload=vms,
                       detail={"vms": {vm.name: str(getattr(vm.power_state, "value", vm.power_state)) for vm in vms}})

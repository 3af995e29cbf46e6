"""Replication tasks (Zerto VPGs): one side effect each, check-then-act, returning a StepResult.

Every task opens its own ZVM session from the credentials block, so it can be retried (only
transient errors are) or run in another worker. Actions start the ZVM's task and return its
id in ``detail["task_id"]``; :func:`wait_for_replication_task` polls it with a deadline. A
second run of an action finds the work done (or under way) and changes nothing. Caching is
off everywhere: a cached result must never stand in for a fresh look at the ZVM.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.replication import ZertoCredentials
from draas.clients.replication import (
    FailoverOptions,
    GroupState,
    ProtectionSpec,
    ReplicationGroup,
    ReplicationNotFound,
    ReplicationRequestRejected,
    ZertoClient,
)
from draas.models.results import StepResult
from tasks.common import RETRY_POLICY
from tasks.common import task_logger as _logger


def _group_detail(group: ReplicationGroup) -> dict[str, Any]:
    return {"vpg_id": group.id, "vpg_name": group.name, "state": group.state.value, "status": group.status,
            "substatus": group.substatus, "actual_rpo_s": group.actual_rpo_s,
            "configured_rpo_s": group.configured_rpo_s, "test_running": group.test_running}


def _running(zvm: ZertoClient, group: ReplicationGroup, task_type: str) -> str | None:
    task = zvm.find_running_task(group.id, task_type)
    return task.id if task else None


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def create_vpg(credentials: ZertoCredentials, spec: ProtectionSpec, timeout_s: float = 300.0,
               dry_run: bool = False) -> StepResult:
    """Make the VPG ``spec.name`` exist with the spec's VMs and RPO (create or edit, then commit)."""
    result = StepResult(step="create_vpg", target=spec.name, dry_run=dry_run)
    with credentials.get_client() as zvm:
        if dry_run:
            diff = zvm.plan_protect(spec)
            return result.done(changed=bool(diff), diff=diff)
        outcome = zvm.protect(spec, timeout_s=timeout_s)
    detail = _group_detail(outcome.group)
    detail["task_id"] = outcome.task.id if outcome.task else None
    _logger().info("create_vpg %s: %s", spec.name, "; ".join(outcome.diff) if outcome.changed else "no change")
    return result.done(changed=outcome.changed, diff=outcome.diff, detail=detail)


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def delete_vpg(credentials: ZertoCredentials, vpg: str, force: bool = False, timeout_s: float = 300.0,
               dry_run: bool = False) -> StepResult:
    """Remove the VPG (and any test or failover VMs when ``force``); absent already is fine."""
    result = StepResult(step="delete_vpg", target=vpg, dry_run=dry_run)
    with credentials.get_client() as zvm:
        try:
            group = zvm.status(vpg)
        except ReplicationNotFound:
            return result.done(changed=False)
        if dry_run:
            return result.done(changed=True, diff=[f"- vpg {group.name}"])
        done = zvm.wait_task(zvm.unprotect(group.id, force=force), timeout_s)
    return result.done(changed=True, diff=[f"- vpg {group.name}"], detail={"vpg_id": group.id, "task_id": done.id})


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def wait_for_vpg_sync(credentials: ZertoCredentials, vpg: str, timeout_s: float = 900.0) -> StepResult:
    """Wait until the VPG meets its SLA (initial or delta sync done, RPO within target)."""
    result = StepResult(step="wait_for_vpg_sync", target=vpg)
    with credentials.get_client() as zvm:
        group = zvm.wait_for_state(vpg, [GroupState.MEETING_SLA], timeout_s=timeout_s)
    return result.done(changed=False, detail=_group_detail(group))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def get_vpg_status(credentials: ZertoCredentials, vpg: str) -> StepResult:
    """Read the VPG's status and actual RPO (for RPO watch and reports)."""
    result = StepResult(step="get_vpg_status", target=vpg)
    with credentials.get_client() as zvm:
        group = zvm.status(vpg)
    return result.done(changed=False, detail=_group_detail(group))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def list_recovery_points(credentials: ZertoCredentials, vpg: str, since: datetime | None = None,
                         until: datetime | None = None) -> StepResult:
    """The VPG's checkpoints (oldest first), with the latest and latest application-consistent one."""
    result = StepResult(step="list_recovery_points", target=vpg)
    with credentials.get_client() as zvm:
        points = zvm.recovery_points(vpg, since=since, until=until)
    consistent = [p for p in points if p.app_consistent]
    return result.done(changed=False, detail={
        "points": [p.model_dump(mode="json") for p in points],
        "latest": points[-1].id if points else None,
        "latest_app_consistent": consistent[-1].id if consistent else None,
    })


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def tag_checkpoint(credentials: ZertoCredentials, vpg: str, tag: str, dry_run: bool = False) -> StepResult:
    """Insert a checkpoint tagged ``tag`` unless the journal already holds one with that tag."""
    result = StepResult(step="tag_checkpoint", target=f"{vpg}:{tag}", dry_run=dry_run)
    with credentials.get_client() as zvm:
        found = [p for p in zvm.recovery_points(vpg) if p.tag == tag]
        if found:
            return result.done(changed=False, detail={"checkpoint_id": found[-1].id})
        if dry_run:
            return result.done(changed=True, diff=[f"+ checkpoint {tag}"])
        point = zvm.tag_recovery_point(vpg, tag)
    return result.done(changed=True, diff=[f"+ checkpoint {tag}"],
                       detail={"checkpoint_id": point.id, "timestamp": point.timestamp.isoformat()})


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def start_failover_test(credentials: ZertoCredentials, vpg: str, checkpoint_id: str | None = None,
                        vms: list[str] | None = None, dry_run: bool = False) -> StepResult:
    """Start a test recovery ("bubble" test) unless one is already running for the VPG."""
    result = StepResult(step="start_failover_test", target=vpg, dry_run=dry_run)
    with credentials.get_client() as zvm:
        group = zvm.status(vpg)
        if group.test_running:
            return result.done(changed=False, detail={**_group_detail(group),
                                                      "task_id": _running(zvm, group, "FailoverTest")})
        if dry_run:
            return result.done(changed=True, diff=[f"+ failover test of {group.name}"])
        started = zvm.start_test(group.id, recovery_point=checkpoint_id, vms=vms)
    return result.done(changed=True, diff=[f"+ failover test of {group.name}"],
                       detail={**_group_detail(group), "task_id": started.id, "checkpoint_id": checkpoint_id})


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def stop_failover_test(credentials: ZertoCredentials, vpg: str, success: bool = True, summary: str = "",
                       dry_run: bool = False) -> StepResult:
    """Stop the VPG's test recovery (removing the test VMs); nothing to do when none runs."""
    result = StepResult(step="stop_failover_test", target=vpg, dry_run=dry_run)
    with credentials.get_client() as zvm:
        group = zvm.status(vpg)
        stopping = _running(zvm, group, "StopFailoverTest")
        if not group.test_running or stopping:
            return result.done(changed=False, detail={**_group_detail(group), "task_id": stopping})
        if dry_run:
            return result.done(changed=True, diff=[f"- failover test of {group.name}"])
        started = zvm.stop_test(group.id, success=success, summary=summary)
    return result.done(changed=True, diff=[f"- failover test of {group.name}"],
                       detail={**_group_detail(group), "task_id": started.id})


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def start_failover(credentials: ZertoCredentials, vpg: str, options: FailoverOptions | None = None,
                   dry_run: bool = False) -> StepResult:
    """Fail over (or, with ``options.planned``, move) the VPG unless that is under way or done."""
    opts = options or FailoverOptions()
    verb = "move" if opts.planned else "failover"
    result = StepResult(step="start_failover", target=vpg, dry_run=dry_run)
    with credentials.get_client() as zvm:
        group = zvm.status(vpg)
        if group.state in (GroupState.FAILING_OVER, GroupState.MOVING, GroupState.RECOVERED):
            running = _running(zvm, group, "Move" if opts.planned else "FailOver")
            return result.done(changed=False, detail={**_group_detail(group), "task_id": running})
        if dry_run:
            return result.done(changed=True, diff=[f"+ {verb} of {group.name}"])
        started = zvm.failover(group.id, opts)
    _logger().warning("started %s of VPG %s (task %s)", verb, group.name, started.id)
    return result.done(changed=True, diff=[f"+ {verb} of {group.name}"],
                       detail={**_group_detail(group), "task_id": started.id, "planned": opts.planned})


def _committed_already(zvm: ZertoClient, group: ReplicationGroup) -> bool:
    """A failover or move that is no longer awaiting commit and was committed (not rolled back)."""
    if group.state == GroupState.RECOVERED:
        return True
    return bool(group.protected_site_id) and group.protected_site_id != zvm.local_site().id


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def commit_failover(credentials: ZertoCredentials, vpg: str, reverse_protection: bool = False,
                    dry_run: bool = False) -> StepResult:
    """Commit the VPG's failover or move (optionally reversing protection); done already is fine."""
    result = StepResult(step="commit_failover", target=vpg, dry_run=dry_run)
    with credentials.get_client() as zvm:
        group = zvm.status(vpg)
        if not group.awaiting_commit:
            if _committed_already(zvm, group) or "Committing" in group.substatus:
                return result.done(changed=False, detail=_group_detail(group))
            raise ReplicationRequestRejected(f"VPG {group.name!r} has no failover awaiting commit "
                                             f"({group.status}/{group.substatus})")
        diff = [f"~ commit {group.name}" + (" with reverse protection" if reverse_protection else "")]
        if dry_run:
            return result.done(changed=True, diff=diff)
        started = zvm.commit(group.id, reverse_protection=reverse_protection)
    return result.done(changed=True, diff=diff, detail={**_group_detail(group), "task_id": started.id})


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def rollback_failover(credentials: ZertoCredentials, vpg: str, dry_run: bool = False) -> StepResult:
    """Roll back the VPG's failover or move that awaits commit; nothing to do when none does."""
    result = StepResult(step="rollback_failover", target=vpg, dry_run=dry_run)
    with credentials.get_client() as zvm:
        group = zvm.status(vpg)
        if not group.awaiting_commit:
            if _committed_already(zvm, group):
                raise ReplicationRequestRejected(f"VPG {group.name!r} was committed already; it cannot be "
                                                 "rolled back (fail back instead)")
            return result.done(changed=False, detail=_group_detail(group))
        if dry_run:
            return result.done(changed=True, diff=[f"~ rollback {group.name}"])
        started = zvm.rollback(group.id)
    return result.done(changed=True, diff=[f"~ rollback {group.name}"],
                       detail={**_group_detail(group), "task_id": started.id})


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def wait_for_replication_task(credentials: ZertoCredentials, task_id: str | None,
                              timeout_s: float = 900.0) -> StepResult:
    """Poll a ZVM task until it ends: Completed returns, Failed raises, the deadline raises."""
    result = StepResult(step="wait_for_replication_task", target=task_id or "")
    if not task_id:
        return result.done(changed=False, detail={"state": "none"})
    with credentials.get_client() as zvm:
        done = zvm.wait_task(task_id, timeout_s=timeout_s)
    return result.done(changed=False, detail=done.model_dump(mode="json"))

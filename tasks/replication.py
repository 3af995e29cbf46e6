"""Replication tasks: one side effect each, check-then-act, returning a typed StepResult.

They program against the product-neutral ``ReplicationProvider`` only (Zerto is one
implementation, reached through the credentials block): groups, recovery points, and
operations named by :class:`OperationKind`. Each task opens its provider with
:func:`draas.sessions.session`, so the tasks of one flow run share one login.

Actions start the manager's operation and return ``StepResult[GroupOperation]``: the group as
the step saw it and the operation (``payload.task``, its id in ``payload.task_id``) that
:func:`wait_for_replication_task` then waits for. A second run of an action finds the work done
or under way (``running_operation``) and changes nothing. Waits take an absolute
:class:`~draas.deadline.Deadline` (``timeout_s`` is a convenience: the earlier of both
counts); a missed deadline raises ``ReplicationDeadlineExceeded``, which is permanent, so the
retry policy never turns one wait into several. ``detail`` holds the same facts for display
only. Caching is off everywhere: a cached result must never stand in for a fresh look.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

from prefect import task
from prefect.cache_policies import NO_CACHE

from draas.clients.replication import (
    FailoverOptions,
    GroupOperation,
    GroupState,
    OperationKind,
    ProtectionSpec,
    RecoveryPoint,
    RecoveryPoints,
    ReplicationGroup,
    ReplicationNotFound,
    ReplicationProvider,
    ReplicationRequestRejected,
    ReplicationTask,
)
from draas.deadline import Deadline
from draas.models.results import StepResult
from draas.sessions import session
from tasks.common import RETRY_POLICY
from tasks.common import task_logger as _logger


class ReplicationCredentials(Protocol):
    """A credentials block of a replication manager (``ZertoCredentials``, ...)."""

    def get_client(self) -> ReplicationProvider: ...


@contextmanager
def _provider(credentials: ReplicationCredentials) -> Iterator[ReplicationProvider]:
    """The run's shared provider session for ``credentials`` (a private one outside a flow run)."""
    with session(credentials) as provider:
        yield provider


def _group_detail(group: ReplicationGroup) -> dict[str, Any]:
    return {"group_id": group.id, "group_name": group.name, "state": group.state.value, "status": group.status,
            "substatus": group.substatus, "actual_rpo_s": group.actual_rpo_s,
            "configured_rpo_s": group.configured_rpo_s, "test_running": group.test_running}


def _detail(group: ReplicationGroup | None, started: ReplicationTask | None, **extra: Any) -> dict[str, Any]:
    detail = _group_detail(group) if group is not None else {}
    detail["task_id"] = started.id if started else None
    detail.update(extra)
    return detail


Step = StepResult[GroupOperation]


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def create_vpg(credentials: ReplicationCredentials, spec: ProtectionSpec, timeout_s: float | None = None,
               dry_run: bool = False, deadline: Deadline | None = None) -> Step:
    """Make the group ``spec.name`` exist with the spec's VMs and RPO (create or edit, and wait for it)."""
    result: Step = StepResult(step="create_vpg", target=spec.name, dry_run=dry_run)
    with _provider(credentials) as provider:
        if dry_run:
            diff = provider.plan_protect(spec)
            return result.done(changed=bool(diff), diff=diff, payload=GroupOperation(group=provider.find_group(spec.name)))
        if deadline is None and timeout_s is None:
            timeout_s = 300.0
        outcome = provider.protect(spec, timeout_s, deadline=deadline)
    _logger().info("create_vpg %s: %s", spec.name, "; ".join(outcome.diff) if outcome.changed else "no change")
    return result.done(changed=outcome.changed, diff=outcome.diff, detail=_detail(outcome.group, outcome.task),
                       payload=GroupOperation(group=outcome.group, task=outcome.task))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def delete_vpg(credentials: ReplicationCredentials, vpg: str, force: bool = False, timeout_s: float | None = None,
               dry_run: bool = False, deadline: Deadline | None = None) -> Step:
    """Remove the group (and any test or failover VMs when ``force``) and wait; absent already is fine."""
    result: Step = StepResult(step="delete_vpg", target=vpg, dry_run=dry_run)
    with _provider(credentials) as provider:
        try:
            group = provider.status(vpg)
        except ReplicationNotFound:
            return result.done(changed=False, payload=GroupOperation())
        diff = [f"- group {group.name}"]
        if dry_run:
            return result.done(changed=True, diff=diff, payload=GroupOperation(group=group))
        if deadline is None and timeout_s is None:
            timeout_s = 300.0
        started = provider.running_operation(group.id, OperationKind.UNPROTECT) or provider.unprotect(group.id,
                                                                                                      force=force)
        if started is None:  # vanished between the look and the removal
            return result.done(changed=False, payload=GroupOperation(group=group))
        done = provider.wait_task(started, timeout_s, deadline=deadline)
    return result.done(changed=True, diff=diff, detail=_detail(group, done), payload=GroupOperation(group=group, task=done))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def wait_for_vpg_sync(credentials: ReplicationCredentials, vpg: str, timeout_s: float | None = None,
                      deadline: Deadline | None = None) -> StepResult[ReplicationGroup]:
    """Wait until the group meets its SLA (initial or delta sync done, RPO within target)."""
    result: StepResult[ReplicationGroup] = StepResult(step="wait_for_vpg_sync", target=vpg)
    if deadline is None and timeout_s is None:
        timeout_s = 900.0
    with _provider(credentials) as provider:
        group = provider.wait_for_state(vpg, [GroupState.MEETING_SLA], timeout_s, deadline=deadline)
    return result.done(changed=False, detail=_group_detail(group), payload=group)


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def get_vpg_status(credentials: ReplicationCredentials, vpg: str) -> StepResult[ReplicationGroup]:
    """Read the group's status and actual RPO (for RPO watch and reports)."""
    result: StepResult[ReplicationGroup] = StepResult(step="get_vpg_status", target=vpg)
    with _provider(credentials) as provider:
        group = provider.status(vpg)
    return result.done(changed=False, detail=_group_detail(group), payload=group)


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def list_recovery_points(credentials: ReplicationCredentials, vpg: str, since: datetime | None = None,
                         until: datetime | None = None) -> StepResult[RecoveryPoints]:
    """The group's recovery points (oldest first), with the latest and latest application-consistent one."""
    result: StepResult[RecoveryPoints] = StepResult(step="list_recovery_points", target=vpg)
    with _provider(credentials) as provider:
        points = provider.recovery_points(vpg, since=since, until=until)
    consistent = [p for p in points if p.app_consistent]
    payload = RecoveryPoints(points=points, latest=points[-1] if points else None,
                             latest_app_consistent=consistent[-1] if consistent else None)
    return result.done(changed=False, payload=payload, detail={
        "points": len(points),
        "latest": payload.latest.id if payload.latest else None,
        "latest_app_consistent": payload.latest_app_consistent.id if payload.latest_app_consistent else None,
    })


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def tag_checkpoint(credentials: ReplicationCredentials, vpg: str, tag: str,
                   dry_run: bool = False) -> StepResult[RecoveryPoint]:
    """Insert a recovery point tagged ``tag`` unless the journal already holds one with that tag."""
    result: StepResult[RecoveryPoint] = StepResult(step="tag_checkpoint", target=f"{vpg}:{tag}", dry_run=dry_run)
    with _provider(credentials) as provider:
        found = [p for p in provider.recovery_points(vpg) if p.tag == tag]
        if found:
            return result.done(changed=False, detail={"checkpoint_id": found[-1].id}, payload=found[-1])
        if dry_run:
            return result.done(changed=True, diff=[f"+ checkpoint {tag}"])
        point = provider.tag_recovery_point(vpg, tag)
    return result.done(changed=True, diff=[f"+ checkpoint {tag}"], payload=point,
                       detail={"checkpoint_id": point.id, "timestamp": point.timestamp.isoformat()})


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def start_failover_test(credentials: ReplicationCredentials, vpg: str, checkpoint_id: str | None = None,
                        vms: list[str] | None = None, dry_run: bool = False) -> Step:
    """Start a test recovery ("bubble" test) unless one is already running or starting for the group."""
    result: Step = StepResult(step="start_failover_test", target=vpg, dry_run=dry_run)
    with _provider(credentials) as provider:
        group = provider.status(vpg)
        running = provider.running_operation(group.id, OperationKind.TEST)
        if group.test_running or running is not None:
            return result.done(changed=False, detail=_detail(group, running),
                               payload=GroupOperation(group=group, task=running))
        if dry_run:
            return result.done(changed=True, diff=[f"+ failover test of {group.name}"],
                               payload=GroupOperation(group=group))
        started = provider.start_test(group.id, recovery_point=checkpoint_id, vms=vms)
    return result.done(changed=True, diff=[f"+ failover test of {group.name}"],
                       detail=_detail(group, started, checkpoint_id=checkpoint_id),
                       payload=GroupOperation(group=group, task=started))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def stop_failover_test(credentials: ReplicationCredentials, vpg: str, success: bool = True, summary: str = "",
                       dry_run: bool = False) -> Step:
    """Stop the group's test recovery (removing the test VMs); nothing to do when none runs."""
    result: Step = StepResult(step="stop_failover_test", target=vpg, dry_run=dry_run)
    with _provider(credentials) as provider:
        group = provider.status(vpg)
        stopping = provider.running_operation(group.id, OperationKind.STOP_TEST)
        if not group.test_running or stopping is not None:
            return result.done(changed=False, detail=_detail(group, stopping),
                               payload=GroupOperation(group=group, task=stopping))
        if dry_run:
            return result.done(changed=True, diff=[f"- failover test of {group.name}"],
                               payload=GroupOperation(group=group))
        started = provider.stop_test(group.id, success=success, summary=summary)
    return result.done(changed=True, diff=[f"- failover test of {group.name}"], detail=_detail(group, started),
                       payload=GroupOperation(group=group, task=started))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def start_failover(credentials: ReplicationCredentials, vpg: str, options: FailoverOptions | None = None,
                   dry_run: bool = False) -> Step:
    """Fail over (or, with ``options.planned``, move) the group unless that is under way or done."""
    opts = options or FailoverOptions()
    verb = "move" if opts.planned else "failover"
    kind = OperationKind.MOVE if opts.planned else OperationKind.FAILOVER
    result: Step = StepResult(step="start_failover", target=vpg, dry_run=dry_run)
    with _provider(credentials) as provider:
        group = provider.status(vpg)
        if group.state in (GroupState.FAILING_OVER, GroupState.MOVING, GroupState.RECOVERED):
            running = provider.running_operation(group.id, kind)
            return result.done(changed=False, detail=_detail(group, running),
                               payload=GroupOperation(group=group, task=running))
        if dry_run:
            return result.done(changed=True, diff=[f"+ {verb} of {group.name}"], payload=GroupOperation(group=group))
        started = provider.failover(group.id, opts)
    _logger().warning("started %s of group %s (task %s)", verb, group.name, started.id)
    return result.done(changed=True, diff=[f"+ {verb} of {group.name}"],
                       detail=_detail(group, started, planned=opts.planned),
                       payload=GroupOperation(group=group, task=started))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def commit_failover(credentials: ReplicationCredentials, vpg: str, reverse_protection: bool = False,
                    dry_run: bool = False) -> Step:
    """Commit the group's failover or move (optionally reversing protection); done already is fine."""
    result: Step = StepResult(step="commit_failover", target=vpg, dry_run=dry_run)
    with _provider(credentials) as provider:
        group = provider.status(vpg)
        if not group.awaiting_commit:
            if group.failover_committed or group.committing:
                running = provider.running_operation(group.id, OperationKind.COMMIT)
                return result.done(changed=False, detail=_detail(group, running),
                                   payload=GroupOperation(group=group, task=running))
            raise ReplicationRequestRejected(f"group {group.name!r} has no failover awaiting commit "
                                             f"({group.status}/{group.substatus})")
        diff = [f"~ commit {group.name}" + (" with reverse protection" if reverse_protection else "")]
        if dry_run:
            return result.done(changed=True, diff=diff, payload=GroupOperation(group=group))
        started = provider.commit(group.id, reverse_protection=reverse_protection)
    return result.done(changed=True, diff=diff, detail=_detail(group, started),
                       payload=GroupOperation(group=group, task=started))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def rollback_failover(credentials: ReplicationCredentials, vpg: str, dry_run: bool = False) -> Step:
    """Roll back the group's failover or move that awaits commit; nothing to do when none does."""
    result: Step = StepResult(step="rollback_failover", target=vpg, dry_run=dry_run)
    with _provider(credentials) as provider:
        group = provider.status(vpg)
        if not group.awaiting_commit:
            if group.failover_committed:
                raise ReplicationRequestRejected(f"group {group.name!r} was committed already; it cannot be "
                                                 "rolled back (fail back instead)")
            running = provider.running_operation(group.id, OperationKind.ROLLBACK)
            return result.done(changed=False, detail=_detail(group, running),
                               payload=GroupOperation(group=group, task=running))
        if dry_run:
            return result.done(changed=True, diff=[f"~ rollback {group.name}"], payload=GroupOperation(group=group))
        started = provider.rollback(group.id)
    return result.done(changed=True, diff=[f"~ rollback {group.name}"], detail=_detail(group, started),
                       payload=GroupOperation(group=group, task=started))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def wait_for_replication_task(credentials: ReplicationCredentials, task_id: str | None,
                              timeout_s: float | None = None,
                              deadline: Deadline | None = None) -> StepResult[ReplicationTask]:
    """Wait for an operation: Completed returns it, Failed raises, passing the deadline raises
    ``ReplicationDeadlineExceeded`` (permanent: not retried). ``task_id`` None: nothing to wait for."""
    result: StepResult[ReplicationTask] = StepResult(step="wait_for_replication_task", target=task_id or "")
    if not task_id:
        return result.done(changed=False, detail={"state": "none"})
    if deadline is None and timeout_s is None:
        timeout_s = 900.0
    with _provider(credentials) as provider:
        done = provider.wait_task(task_id, timeout_s, deadline=deadline)
    return result.done(changed=False, detail={"state": done.state.name, "type": done.type,
                                              "kind": done.kind.value if done.kind else None}, payload=done)


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def pause_replication(credentials: ReplicationCredentials, vpg: str, dry_run: bool = False) -> Step:
    """Pause the group's replication (snapshot packages during a drill); paused already is no change."""
    result: Step = StepResult(step="pause_replication", target=vpg, dry_run=dry_run)
    with _provider(credentials) as provider:
        group = provider.status(vpg)
        running = provider.running_operation(group.id, OperationKind.PAUSE)
        if group.paused or running is not None:
            return result.done(changed=False, detail=_detail(group, running),
                               payload=GroupOperation(group=group, task=running))
        if dry_run:
            return result.done(changed=True, diff=[f"~ pause replication of {group.name}"],
                               payload=GroupOperation(group=group))
        started = provider.pause(group.id)
    return result.done(changed=True, diff=[f"~ pause replication of {group.name}"], detail=_detail(group, started),
                       payload=GroupOperation(group=group, task=started))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def resume_replication(credentials: ReplicationCredentials, vpg: str, dry_run: bool = False) -> Step:
    """Resume the group's paused replication; not paused is no change."""
    result: Step = StepResult(step="resume_replication", target=vpg, dry_run=dry_run)
    with _provider(credentials) as provider:
        group = provider.status(vpg)
        running = provider.running_operation(group.id, OperationKind.RESUME)
        if not group.paused or running is not None:
            return result.done(changed=False, detail=_detail(group, running),
                               payload=GroupOperation(group=group, task=running))
        if dry_run:
            return result.done(changed=True, diff=[f"~ resume replication of {group.name}"],
                               payload=GroupOperation(group=group))
        started = provider.resume(group.id)
    return result.done(changed=True, diff=[f"~ resume replication of {group.name}"], detail=_detail(group, started),
                       payload=GroupOperation(group=group, task=started))

"""The ``failover`` flow (and ``rollback-failover``): recover a tenant at the recovery site.

Runbook, top to bottom:

1. **admit**: validate the tenant, check that ``requested_by`` is one of its authorised persons
   with the ``invoke_dr`` role, the groups asked for exist, the recovery point fits the mode;
   a refusal changes nothing and is audited once;
2. open a service-desk change record for the failover (found again by correlation id on a re-run);
3. **recovery point** per group (unplanned): ``latest``, ``latest_app_consistent``, a named
   bookmark, or the newest checkpoint at or before a time; a planned failover recovers to the
   final checkpoint the manager takes after shutting the protected VMs down (no data loss);
4. optional **approval** (``pause_flow_run`` with an input form) before the irreversible part;
   the wait is recorded apart from machine time;
5. **present** every group through the replication provider (planned: move with graceful
   shutdown; unplanned: failover without touching the protected site), commit policy manual;
6. the **recovery engine** brings the VMs up in dependency order on the recovery networks,
   re-IP where configured, and verifies them (draas/recovery/engine.py);
7. **cutover**: DNS records to the recovery addresses, public-IP firewall rules and the
   remote-access VPN (draas/cutover.py), each recorded in the ledger before it is applied;
8. **commit** in the replication manager (unless ``commit=False``: the failover then waits for
   ``rollback-failover`` or a re-run with ``commit=True``); record RTO and RPO against the
   tenant's targets and close the change record with the outcome.

Crash policy *hold*: a killed run keeps everything; re-running the same failover resumes from
what the systems hold (presented groups are not presented again, running VMs are not powered on
again, cutover lines and records are not duplicated). A failure that is not a crash rolls back
(``on_failure="rollback"``, the default): the groups are rolled back in the manager (which removes
the recovered VMs), the cutover is undone through the ledger, exactly as it was before.
``on_failure="hold"`` keeps everything for the operator instead.

In an unplanned failover nothing here reads or waits on the protected site.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

from prefect import flow, pause_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, Field, model_validator

from draas.checks import resolver_for
from draas.clients.replication import FailoverOptions, RecoveryPoint
from draas.clients.servicedesk import ChangeRequestCreate
from draas.cutover import plan_cutover
from draas.deadline import Deadline
from draas.errors import PermanentError
from draas.models.results import StepResult
from draas.models.tenant import TenantConfig
from draas.recovery.engine import EngineLimits, EngineResult
from draas.recovery.plan import failover_mapping, targets
from draas.reports.run_summary import Section
from draas.site import Site
from draas.validation import load_catalog
from flows.runbook import CrashPolicy, RequestRefused, RunContext
from tasks.cutover import apply_cutover, cutover_records
from tasks.ledger import remove_recorded_object
from tasks.recovery import recover_vms
from tasks.replication import (
    commit_failover,
    list_recovery_points,
    start_failover,
    wait_for_replication_task,
)
from tasks.replication import rollback_failover as rollback_group
from tasks.servicedesk import close_change_record, open_change_record
from tasks.tenant import validate_tenant_config

FLOW_NAME = "failover"
ROLLBACK_FLOW_NAME = "rollback-failover"
#: How long one group's presentation (or commit, or rollback) may take in the manager.
PRESENT_TIMEOUT_S = 1800.0


class RecoveryPointChoice(BaseModel):
    """Which recovery point to fail over to (unplanned failover; a planned one takes the final checkpoint)."""

    kind: Literal["latest", "latest_app_consistent", "bookmark", "at"] = Field(
        default="latest", description="latest checkpoint, latest application-consistent, a named bookmark, "
                                      "or the newest checkpoint at or before a time")
    bookmark: str | None = Field(default=None, description="the bookmark's tag (kind=bookmark)")
    at: datetime | None = Field(default=None, description="recover to the newest checkpoint at or before this "
                                                          "time (kind=at)")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        """Also accept ``latest``, ``latest-app-consistent``, ``bookmark:<tag>`` or an ISO time as text."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text in ("latest", "latest_app_consistent", "latest-app-consistent"):
            return {"kind": text.replace("-", "_")}
        if text.startswith("bookmark:"):
            return {"kind": "bookmark", "bookmark": text.removeprefix("bookmark:")}
        return {"kind": "at", "at": text}

    @model_validator(mode="after")
    def _complete(self) -> RecoveryPointChoice:
        if self.kind == "bookmark" and not self.bookmark:
            raise ValueError("kind=bookmark needs the bookmark's tag")
        if self.kind == "at" and self.at is None:
            raise ValueError("kind=at needs a time")
        if self.at is not None and self.at.tzinfo is None:
            self.at = self.at.replace(tzinfo=UTC)
        return self

    def describe(self) -> str:
        return {"bookmark": f"bookmark {self.bookmark}", "at": f"newest checkpoint at or before {self.at}"}.get(
            self.kind, self.kind.replace("_", " "))


class Approval(RunInput):
    """The approver's answer before the irreversible part of a failover."""

    approved: bool = Field(description="fail over now")
    approver: str = Field(description="the approver's e-mail")
    comment: str = ""


class FailoverRefused(RequestRefused):
    """The request cannot be carried out as asked (unknown group, recovery point for the mode, no approval)."""


class GroupRecovery(BaseModel):
    group: str
    checkpoint_id: str | None = None
    checkpoint_time: datetime | None = None
    rpo_s: float | None = None
    rpo_target_s: float
    committed: bool = False


class FailoverResult(BaseModel):
    tenant: str
    run_id: str
    mode: str
    committed: bool
    groups: list[GroupRecovery]
    vms: list[dict[str, Any]]
    rto_s: float = Field(description="request accepted -> every VM verified, approval wait excluded")
    rto_target_s: float
    approval_wait_s: float = 0.0
    rpo_s: float = Field(description="request time - recovery point time (worst group)")
    rpo_target_s: float
    change_number: str | None = None
    steps: list[StepResult]


def choose_point(points: list[RecoveryPoint], choice: RecoveryPointChoice, group: str) -> RecoveryPoint:
    """The checkpoint ``choice`` names among ``points`` (oldest first); FailoverRefused when there is none."""
    if not points:
        raise FailoverRefused(f"group {group} has no recovery point")
    if choice.kind == "latest":
        return points[-1]
    if choice.kind == "latest_app_consistent":
        found = [p for p in points if p.app_consistent]
    elif choice.kind == "bookmark":
        found = [p for p in points if p.tag == choice.bookmark]
    else:
        assert choice.at is not None
        found = [p for p in points if p.timestamp <= choice.at]
    if not found:
        raise FailoverRefused(f"recovery_point: group {group} has no {choice.describe()} in its journal "
                              f"({len(points)} checkpoints, {points[0].timestamp:%Y-%m-%d %H:%M:%S} to "
                              f"{points[-1].timestamp:%Y-%m-%d %H:%M:%S} UTC)")
    return found[-1]


def select_groups(config: TenantConfig, groups: list[str] | None,
                  refused: type[RequestRefused] = FailoverRefused) -> list[str]:
    """The protection groups a request names (all when none), in the config's order; ``refused`` names unknown ones."""
    known = [g.name for g in config.protection_groups]
    if not groups:
        return known
    unknown = [g for g in groups if g not in known]
    if unknown:
        raise refused(f"groups: {', '.join(unknown)} not among {config.id}'s protection groups "
                      f"({', '.join(known)})")
    return [g for g in known if g in groups]


@flow(name=FLOW_NAME)
def failover(tenant: str, requested_by: str, mode: Literal["planned", "unplanned"] = "planned",
             recovery_point: RecoveryPointChoice = RecoveryPointChoice(),  # noqa: B008 - pydantic default
             groups: list[str] | None = None, approval: bool = False, approval_timeout_s: float = 3600.0,
             commit: bool = True, on_failure: Literal["rollback", "hold"] = "rollback",
             ticket: str | None = None, channel: str = "ui", config_dir: str | None = None,
             budget_s: float = 4 * 3600.0, limits: EngineLimits | None = None,
             wait_for_tenant_s: float = 0.0) -> FailoverResult:
    """Fail ``tenant`` over to the recovery site, verify it, cut its network over, commit.

    Args:
        tenant: the tenant id.
        requested_by: e-mail of an authorised person of the tenant with the ``invoke_dr`` role.
        mode: ``planned`` (graceful shutdown, final checkpoint, no data loss) or ``unplanned``
            (declared disaster: the protected site is never touched).
        recovery_point: unplanned only: latest, latest application-consistent, a bookmark, or a time.
        groups: a subset of the tenant's protection groups (default: all).
        approval: pause for an approver's decision before the irreversible part.
        approval_timeout_s: how long to wait for the decision (no answer: refused).
        commit: commit in the replication manager at the end (False: leave it for rollback-failover).
        on_failure: ``rollback`` what this failover did, or ``hold`` everything for the operator.
        ticket: the service-desk ticket that asked for it.
        channel: ui, cli, webhook, schedule, api.
        config_dir: directory with tenants/, tiers.yaml and optionally site.yaml.
        budget_s: the whole failover's deadline.
        limits: the recovery engine's caps (default: the engine's).
        wait_for_tenant_s: how long to wait for another state-changing run of the tenant to end.
    """
    accepted = time.monotonic()
    requested_at = datetime.now(UTC)
    site = Site.for_config_dir(config_dir)
    run = RunContext(FLOW_NAME, action="invoke_dr", tenant=tenant, requested_by=requested_by, channel=channel,
                     policy=CrashPolicy.HOLD, exclusive=True, wait_s=wait_for_tenant_s, budget_s=budget_s,
                     title=f"{mode.capitalize()} failover of {tenant}", artifact_key="failover", site=site,
                     parameters={"tenant": tenant, "mode": mode, "recovery_point": recovery_point.model_dump(mode="json"),
                                 "groups": groups, "approval": approval, "commit": commit, "ticket": ticket,
                                 "config_dir": config_dir})
    with run.admission():
        valid = validate_tenant_config(tenant, config_dir)
        config = valid.tenant
        run.authorise(config, "invoke_dr")
        chosen = select_groups(config, groups)
        if mode == "planned" and recovery_point.kind != "latest":
            raise FailoverRefused(f"recovery_point: a planned failover recovers to the final checkpoint taken after "
                                  f"the protected VMs are shut down (no data loss); {recovery_point.describe()} "
                                  f"needs mode=unplanned")
        cutover = plan_cutover(config, load_catalog(_config_path(config_dir)), site.devices)
    machines = [m for g in chosen for m in config.group(g).machines]
    plan = targets(config, failover_mapping(config), machines)
    groups_done: list[GroupRecovery] = []
    replication = site.replication_block()
    desk = site.servicedesk_block()
    approval_wait = 0.0
    engine: EngineResult | None = None
    engine_t0 = accepted
    change_number: str | None = None
    with run.started(total_steps=4 + 4 * len(chosen) + 2 * len(plan)):
        run.step(valid.step)
        opened = run.step(open_change_record(desk, ChangeRequestCreate(
            short_description=f"DR {mode} failover of {tenant} ({', '.join(chosen)})",
            description=f"Requested by {requested_by} via {channel}" + (f", ticket {ticket}" if ticket else "")
                        + f". Flow run {run.run_id}.",
            type="emergency" if mode == "unplanned" else "normal",
            backout_plan="rollback-failover (before commit); failback after commit",
            correlation_id=f"failover-{tenant}-{requested_at:%Y%m%dT%H%M}",
            correlation_display=f"failover {tenant}")))
        change_number = opened.payload.number if opened.payload is not None else None
        try:
            # 3. recovery points (unplanned: chosen now; planned: the final one, read after the move)
            points: dict[str, RecoveryPoint] = {}
            if mode == "unplanned":
                for g in chosen:
                    listed = run.step(list_recovery_points(replication, g)).payload
                    points[g] = choose_point(listed.points if listed else [], recovery_point, g)
            # 4. approval
            if approval:
                approval_wait = _await_approval(run, approval_timeout_s)
            # 5. present
            for g in chosen:
                options = FailoverOptions(planned=mode == "planned", recovery_point=points[g].id if g in points else None,
                                          shutdown_source="graceful" if mode == "planned" else "none",
                                          commit="manual")
                started = run.step(start_failover(replication, g, options))
                task_id = started.payload.task.id if started.payload and started.payload.task else None
                run.step(wait_for_replication_task(replication, task_id, deadline=Deadline.of(
                    run.deadline, PRESENT_TIMEOUT_S, f"presentation of group {g}")))
            if mode == "planned":
                for g in chosen:
                    listed = run.step(list_recovery_points(replication, g)).payload
                    if listed and listed.latest:
                        points[g] = listed.latest
            # 6. recover
            engine_t0 = time.monotonic()
            engine = recover_vms(site.vcenter_block("recovery"), config.folder, plan, limits=limits or site.recovery,
                                 resolver=resolver_for(site), machines={m: config.machine(m) for m in machines},
                                 deadline=run.deadline, record=run.record,
                                 progress=lambda v, t, what: run.progress(100.0 * v / max(t, 1),
                                                                          f"{v}/{t} VMs verified ({what})"))
            # 7. cutover
            apply_cutover(tenant, run.run_id, cutover, site, step=run.step)
            # 8. commit
            for g in chosen:
                if commit:
                    done = run.step(commit_failover(replication, g))
                    task_id = done.payload.task.id if done.payload and done.payload.task else None
                    run.step(wait_for_replication_task(replication, task_id, deadline=Deadline.of(
                        run.deadline, PRESENT_TIMEOUT_S, f"commit of group {g}")))
        except BaseException as exc:
            if on_failure == "rollback" and not isinstance(exc, KeyboardInterrupt):
                _roll_back(run, tenant, chosen, replication, [run.run_id])
                run.policy = CrashPolicy.NONE  # rolled back: nothing held
            try:
                run.step(close_change_record(desk, f"failover-{tenant}-{requested_at:%Y%m%dT%H%M}",
                                             f"Failed: {type(exc).__name__}: {exc}"
                                             + (" (rolled back)" if on_failure == "rollback" else " (held)"),
                                             close_code="unsuccessful"))
            except Exception:  # noqa: BLE001, S110 - the failure's own cause matters more than the note
                pass
            raise
        verified_at = engine.seconds if engine else 0.0
        rto = _rto(accepted, engine_t0, engine, approval_wait)
        for g in chosen:
            point = points.get(g)
            rpo = max((requested_at - point.timestamp).total_seconds(), 0.0) if point else None
            if point is not None:
                run.store.record_recovery_point(tenant_id=tenant, protection_group=g, checkpoint_id=point.id,
                                                purpose="failover", run_id=run.run_id, point_time=point.timestamp,
                                                tag=point.tag)
            groups_done.append(GroupRecovery(group=g, checkpoint_id=point.id if point else None,
                                             checkpoint_time=point.timestamp if point else None, rpo_s=rpo,
                                             rpo_target_s=config.group(g).sla.rpo.total_seconds(), committed=commit))
        rpo_worst = max((g.rpo_s or 0.0) for g in groups_done) if groups_done else 0.0
        rto_target = min(config.group(g).sla.rto.total_seconds() for g in chosen)
        rpo_target = min(config.group(g).sla.rpo.total_seconds() for g in chosen)
        outcome = (f"{len(engine.verified) if engine else 0}/{len(plan)} VMs verified; RTO {rto:.1f} s "
                   f"(target {rto_target:g} s), RPO {rpo_worst:.1f} s (target {rpo_target:g} s)"
                   + ("" if commit else "; not committed: rollback-failover or re-run with commit"))
        run.step(close_change_record(desk, f"failover-{tenant}-{requested_at:%Y%m%dT%H%M}", outcome))
        run.finish(f"{mode.capitalize()} failover of {tenant}: {outcome}",
                   sections=[_timeline(engine), _groups_table(groups_done)],
                   detail={"rto_s": round(rto, 3), "rpo_s": round(rpo_worst, 3), "approval_wait_s": approval_wait,
                           "committed": commit, "verified_after_s": round(verified_at, 3)})
    return FailoverResult(tenant=tenant, run_id=run.run_id, mode=mode, committed=commit, groups=groups_done,
                          vms=[v.model_dump(mode="json", exclude={"checks"}) for v in (engine.vms if engine else [])],
                          rto_s=rto, rto_target_s=rto_target, approval_wait_s=approval_wait, rpo_s=rpo_worst,
                          rpo_target_s=rpo_target, change_number=change_number, steps=run.steps)


def _rto(accepted: float, engine_t0: float, engine: EngineResult | None, approval_wait: float) -> float:
    """Request accepted -> the last VM verified (monotonic clock), less the time spent waiting for approval."""
    last = max((v.verified_at or 0.0) for v in engine.vms) if engine and engine.vms else 0.0
    return max(engine_t0 + last - accepted - approval_wait, 0.0)


def _config_path(config_dir: str | None) -> Any:
    from pathlib import Path

    return Path(config_dir) if config_dir else None


def _await_approval(run: RunContext, timeout_s: float) -> float:
    """Pause for an approver; returns the seconds waited. No answer, or a refusal, refuses the failover."""
    started = time.monotonic()
    answer = pause_flow_run(wait_for_input=Approval, timeout=int(timeout_s), key="failover-approval")
    waited = time.monotonic() - started
    run.record(StepResult(step="approval", target=run.tenant or "").done(
        changed=False, detail={"approved": answer.approved, "approver": answer.approver, "comment": answer.comment,
                               "waited_s": round(waited, 3)}))
    if not answer.approved:
        raise FailoverRefused(f"not approved by {answer.approver}: {answer.comment or 'no reason given'}")
    return waited


def _roll_back(run: RunContext, tenant: str, groups: list[str], replication: Any, run_ids: list[str]) -> None:
    """Undo the cutover through the ledger and roll the groups back in the manager (removes the VMs)."""
    from draas.ledger import remove_records

    records = cutover_records(run.store, tenant, run_ids)
    remove_records(records, lambda rec: run.step(remove_recorded_object(rec.id, run.site)))
    for g in groups:
        try:
            rolled = run.step(rollback_group(replication, g))
        except PermanentError as exc:  # committed already, or never presented: nothing to roll back
            run.record(StepResult(step="rollback_failover", target=g).failed(exc))
            continue
        task_id = rolled.payload.task.id if rolled.payload and rolled.payload.task else None
        run.step(wait_for_replication_task(replication, task_id, timeout_s=PRESENT_TIMEOUT_S))


def _timeline(engine: EngineResult | None) -> Section:
    rows = [[v.vm, str(v.wave), v.status, _s(v.powered_on_at), _s(v.guest_up_at), _s(v.verified_at),
             v.error or ""] for v in (engine.vms if engine else [])]
    return Section(heading="Per-VM timeline (seconds from the start of recovery)",
                   headers=["VM", "Wave", "Outcome", "Powered on", "Guest up", "Verified", "Error"], rows=rows)


def _groups_table(groups: list[GroupRecovery]) -> Section:
    rows = [[g.group, g.checkpoint_id or "-", f"{g.checkpoint_time:%Y-%m-%d %H:%M:%S}" if g.checkpoint_time else "-",
             _s(g.rpo_s), f"{g.rpo_target_s:g}", "yes" if g.committed else "no"] for g in groups]
    return Section(heading="Recovery points",
                   headers=["Group", "Checkpoint", "Time (UTC)", "RPO (s)", "RPO target (s)", "Committed"], rows=rows)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


class RollbackResult(BaseModel):
    tenant: str
    run_id: str
    groups: list[str]
    cutover_removed: int
    steps: list[StepResult]


@flow(name=ROLLBACK_FLOW_NAME)
def rollback_failover(tenant: str, requested_by: str, channel: str = "ui",
                      config_dir: str | None = None) -> RollbackResult:
    """Roll back the tenant's uncommitted failover: recovered VMs removed, DNS and firewall exactly as before.

    Refused when a group's failover was committed (fail back instead).
    """
    site = Site.for_config_dir(config_dir)
    run = RunContext(ROLLBACK_FLOW_NAME, action="invoke_dr", tenant=tenant, requested_by=requested_by,
                     channel=channel, policy=CrashPolicy.HOLD, exclusive=True, site=site,
                     title=f"Rollback of {tenant}'s failover", artifact_key="failover-rollback",
                     parameters={"tenant": tenant, "config_dir": config_dir})
    with run.admission():
        valid = validate_tenant_config(tenant, config_dir)
        run.authorise(valid.tenant, "invoke_dr")
    chosen = [g.name for g in valid.tenant.protection_groups]
    with run.started(total_steps=1 + 2 * len(chosen)):
        run.step(valid.step)
        records = cutover_records(run.store, tenant)
        _roll_back(run, tenant, chosen, site.replication_block(), [r.run_id for r in records if r.run_id])
        run.finish(f"Rollback of {tenant}'s failover: {len(records)} cutover change(s) undone, "
                   f"{len(chosen)} group(s) rolled back")
    return RollbackResult(tenant=tenant, run_id=run.run_id, groups=chosen, cutover_removed=len(records),
                          steps=run.steps)

"""The ``failback`` flow: bring a failed-over tenant home to its production site in a maintenance window.

Runbook, top to bottom:

1. **admit**: validate the tenant, check that ``requested_by`` is one of its authorised persons
   with the ``failback`` role, that the maintenance window is well formed and not over, and that
   the replication manager holds a *committed* failover of the tenant's groups (Recovered, or
   reversed already), or that an earlier failback of the tenant was left unfinished; a refusal
   changes nothing and is audited once;
2. open a service-desk change record (found again by correlation id on a re-run);
3. **reverse protection**: each group replicates from the recovery site back to the production
   site (the provider's ``reverse``; the group is recorded in the ledger), then a wait, with a
   deadline and a progress artifact, until every reverse group has resynchronised and meets its
   RPO. ``reuse_production_vms`` records whether the production VMs' disks seed the reverse
   replica (delta resync) or the production site is new or empty (full reseed);
4. **maintenance window**: outside the window the run *pauses* (Prefect ``Paused``, visible in
   the UI) and resumes by itself when the window opens; optional approval after that;
5. **switch-back**: a planned move of each reverse group (the VMs shut down at the recovery site,
   a final checkpoint, zero data loss), the recovery engine at the *production* site in
   dependency order with checks against the production addresses, then the failover's cutover
   removed through the ledger (DNS back to the production addresses, public-IP firewall rules
   and VPN access lines gone): exactly the state before the failover;
6. **resume protection**: the move committed with reverse protection (production -> recovery
   again), the groups converged to the tenant's settings (the specs of ``setup-protection``),
   synced and checkpointed; the recovery site ends with no copy of the tenant's machines;
7. per-stage timings, the data loss (zero for a planned failback), a failback report
   (Markdown, HTML, JSON) and the change record closed with the outcome.

Crash policy *hold*, resumable by stage: nothing is taken from a stored cursor. Each stage starts
by reading where the systems stand (the groups' direction and state in the manager, the VMs at
each site, the active cutover records), so a run killed in any stage and run again continues at
that stage: a reversed group is not reversed again, a moving group is not moved again, a running
VM is not powered on again, a removed cutover line is not removed twice.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from prefect import flow, pause_flow_run
from pydantic import BaseModel, Field, model_validator

from draas.checks import resolver_for
from draas.clients.replication import FailoverOptions, GroupState, ReplicationGroup
from draas.clients.servicedesk import ChangeRequestCreate
from draas.deadline import Deadline
from draas.errors import PermanentError
from draas.ledger import REPLICATION, remove_records
from draas.models.results import StepResult
from draas.models.tenant import TenantConfig
from draas.models.vcenter import VmInfo
from draas.protection import build_specs
from draas.recovery.engine import EngineLimits, EngineResult
from draas.recovery.plan import failback_mapping, targets
from draas.reports.render import escape_html, format_seconds, markdown_table
from draas.reports.run_summary import Section
from draas.site import Site
from flows.failover import Approval
from flows.runbook import CrashPolicy, RequestRefused, RunContext
from tasks.cutover import cutover_records
from tasks.failback import list_site_vms, reverse_protection
from tasks.ledger import remove_recorded_object
from tasks.recovery import recover_vms
from tasks.replication import (
    commit_failover,
    create_vpg,
    get_vpg_status,
    list_recovery_points,
    start_failover,
    tag_checkpoint,
    wait_for_replication_task,
    wait_for_vpg_sync,
)
from tasks.servicedesk import close_change_record, open_change_record
from tasks.tenant import validate_tenant_config
from tasks.vcenter import destroy_vm

FLOW_NAME = "failback"
#: How long one group's reversal, move or commit may take in the manager.
OPERATION_TIMEOUT_S = 1800.0
#: Tag of the first application-consistent checkpoint once protection runs again (as setup-protection).
RESUMED_CHECKPOINT_TAG = "app-consistent"


class MaintenanceWindow(BaseModel):
    """When the switch-back may happen; times without a zone are in the tenant's timezone."""

    start: datetime = Field(description="the window opens (tenant's local time unless a zone is given)")
    end: datetime = Field(description="the window closes")

    @model_validator(mode="after")
    def _ordered(self) -> MaintenanceWindow:
        if (self.start.tzinfo is None) != (self.end.tzinfo is None):
            raise ValueError("window: give both start and end with a zone, or both without (tenant's timezone)")
        if self.end <= self.start:
            raise ValueError(f"window: end {self.end.isoformat()} is not after start {self.start.isoformat()}")
        return self

    def in_zone(self, timezone: str) -> tuple[datetime, datetime]:
        """(start, end) as UTC instants, naive times read in ``timezone``."""
        zone = ZoneInfo(timezone)
        return tuple(  # type: ignore[return-value]
            (t if t.tzinfo is not None else t.replace(tzinfo=zone)).astimezone(UTC) for t in (self.start, self.end))

    @classmethod
    def starting_in(cls, seconds: float, length_s: float = 4 * 3600.0) -> MaintenanceWindow:
        """A window opening ``seconds`` from now (UTC), ``length_s`` long."""
        start = datetime.now(UTC) + timedelta(seconds=seconds)
        return cls(start=start, end=start + timedelta(seconds=length_s))


class FailbackRefused(RequestRefused):
    """The failback cannot be carried out as asked (no committed failover, a window that is over, no approval)."""


class StageTiming(BaseModel):
    stage: str
    seconds: float
    outcome: str = Field(description="done, skipped (the systems showed it done already), waited")


class GroupFailback(BaseModel):
    group: str
    final_checkpoint_id: str | None = None
    final_checkpoint_time: datetime | None = None
    data_loss_s: float | None = Field(default=None, description="switch-back requested -> final checkpoint; "
                                                                "0 for a planned move")
    status: str | None = None
    configured_rpo_s: int | None = None
    actual_rpo_s: int | None = None


class FailbackResult(BaseModel):
    tenant: str
    run_id: str
    requested_by: str
    reuse_production_vms: bool
    resync: str = Field(description="delta (production VMs' disks seed the reverse replica) or full (reseed)")
    window_start: datetime | None = None
    window_end: datetime | None = None
    window_wait_s: float = 0.0
    approval_wait_s: float = 0.0
    stages: list[StageTiming]
    groups: list[GroupFailback]
    vms: list[dict[str, Any]]
    data_loss_s: float = Field(description="worst group; 0 for a planned failback")
    cutover_removed: int = 0
    recovery_site_vms: list[str] = Field(default_factory=list, description="tenant machines left at the recovery "
                                                                         "site (must be empty)")
    change_number: str | None = None
    steps: list[StepResult] = Field(default_factory=list)


@flow(name=FLOW_NAME)
def failback(tenant: str, requested_by: str, window: MaintenanceWindow | None = None,
             reuse_production_vms: bool = True, approval: bool = False, approval_timeout_s: float = 3600.0,
             resync_timeout_s: float = 1800.0, ticket: str | None = None, channel: str = "ui",
             config_dir: str | None = None, output_dir: str | None = None, limits: EngineLimits | None = None,
             wait_for_tenant_s: float = 0.0) -> FailbackResult:
    """Fail ``tenant`` back to its production site: reverse, resync, switch back in the window, re-protect.

    Args:
        tenant: the tenant id.
        requested_by: e-mail of an authorised person of the tenant with the ``failback`` role.
        window: the maintenance window for the switch-back (None: now); naive times are in the
            tenant's timezone. Before it opens the run pauses; after it has closed it is refused.
        reuse_production_vms: the production VMs' disks seed the reverse replica (delta resync);
            False: the production site is new or empty (full reseed).
        approval: pause for an approver's decision before the switch-back.
        approval_timeout_s: how long to wait for the decision (no answer: refused).
        resync_timeout_s: deadline of the reverse groups' resynchronisation (and of the resumed
            protection's sync).
        ticket: the service-desk ticket that asked for it.
        channel: ui, cli, webhook, schedule, api.
        config_dir: directory with tenants/, tiers.yaml and optionally site.yaml.
        output_dir: also write the failback report's files under ``<output_dir>/<tenant>/reports/``.
        limits: the recovery engine's caps (default: the site's).
        wait_for_tenant_s: how long to wait for another state-changing run of the tenant to end.
    """
    site = Site.for_config_dir(config_dir)
    run = RunContext(FLOW_NAME, action="failback", tenant=tenant, requested_by=requested_by, channel=channel,
                     policy=CrashPolicy.HOLD, exclusive=True, wait_s=wait_for_tenant_s, site=site,
                     title=f"Failback of {tenant}", artifact_key="failback",
                     parameters={"tenant": tenant, "window": window.model_dump(mode="json") if window else None,
                                 "reuse_production_vms": reuse_production_vms, "approval": approval,
                                 "ticket": ticket, "config_dir": config_dir})
    with run.admission():
        replication = site.replication_block()
        valid = validate_tenant_config(tenant, config_dir)
        config = valid.tenant
        run.authorise(config, "failback")
        window_utc = window.in_zone(config.timezone) if window else None
        if window_utc and window_utc[1] <= datetime.now(UTC):
            raise FailbackRefused(f"window: the maintenance window ended at {_local(window_utc[1], config)}; "
                                  f"give a window that has not closed")
        chosen = [g.name for g in config.protection_groups]
        groups = {g: get_vpg_status(replication, g).payload for g in chosen}
        anchor = _admit_state(run, config, groups)
    machines = [m for g in chosen for m in config.group(g).machines]
    desk = site.servicedesk_block()
    correlation = f"failback-{tenant}-{anchor}"
    stages: list[StageTiming] = []
    done_groups: dict[str, GroupFailback] = {g: GroupFailback(group=g) for g in chosen}
    engine: EngineResult | None = None
    removed = 0
    window_wait = approval_wait = 0.0
    left: list[str] = []
    change_number: str | None = None
    with run.started(total_steps=3 + 6 * len(chosen) + 2 * len(machines)):
        run.step(valid.step)
        opened = run.step(open_change_record(desk, ChangeRequestCreate(
            short_description=f"DR failback of {tenant} to its production site",
            description=f"Requested by {requested_by} via {channel}" + (f", ticket {ticket}" if ticket else "")
                        + f". Flow run {run.run_id}. Reverse protection, resync, switch-back"
                        + (f" in the window {_local(window_utc[0], config)} - {_local(window_utc[1], config)}"
                           if window_utc else "") + ", protection resumed production -> recovery.",
            type="normal", backout_plan="the tenant keeps running at the recovery site until the switch-back; "
                                        "after it, fail over again",
            correlation_id=correlation, correlation_display=f"failback {tenant}")))
        change_number = opened.payload.number if opened.payload is not None else None
        run.on_failure(lambda exc: run.step(close_change_record(
            desk, correlation, f"Failed: {type(exc).__name__}: {exc} (held for the operator; re-run to resume)",
            close_code="unsuccessful")))

        # 1. reverse protection
        with _stage(run, stages, "reverse") as stage:
            for g in chosen:
                if _status(run, replication, g).state != GroupState.RECOVERED:
                    continue  # reversed already (or further on)
                stage.outcome = "done"
                run.store.record_object(tenant_id=tenant, run_id=run.run_id, system=REPLICATION, site="recovery",
                                        kind="group", name=g, identity={"name": g})
                started = run.step(reverse_protection(replication, g))
                _wait(run, replication, started, f"reverse protection of group {g}")
        # 1b. resync: every reverse group meets its RPO
        with _stage(run, stages, "resync") as stage:
            for g in chosen:
                current = _status(run, replication, g)
                if not _needs_move(current):
                    continue
                if current.state != GroupState.MEETING_SLA:
                    stage.outcome = "done"
                    run.progress(_percent(run), f"resync of {g}: {current.substatus} {current.progress_percent}%")
                synced = run.step(wait_for_vpg_sync(replication, g, deadline=Deadline.within(
                    resync_timeout_s, f"resync of reverse group {g}")))
                group = synced.payload
                if group is not None:
                    done_groups[g].configured_rpo_s, done_groups[g].actual_rpo_s = \
                        group.configured_rpo_s, group.actual_rpo_s
        to_move = [g for g in chosen if _needs_move(_status(run, replication, g))]
        # 2. the maintenance window (and approval)
        with _stage(run, stages, "window") as stage:
            if to_move and window_utc:
                window_wait = _wait_for_window(run, config, *window_utc)
                stage.outcome = "waited" if window_wait > 0 else "done"
            if to_move and approval:
                approval_wait = _await_approval(run, approval_timeout_s)
                stage.outcome = "waited"
        # 3. switch-back
        with _stage(run, stages, "switch-back") as stage:
            moved_at = datetime.now(UTC)
            for g in chosen:
                current = _status(run, replication, g)
                moving = current.reversed and current.state == GroupState.MOVING and not current.awaiting_commit
                if not (_needs_move(current) or moving):
                    continue  # presented at production already, or committed back (a resumed run)
                stage.outcome = "done"
                started = run.step(start_failover(replication, g, FailoverOptions(
                    planned=True, shutdown_source="graceful", commit="manual")))
                _wait(run, replication, started, f"switch-back move of group {g}")
            for g in chosen:
                current = _status(run, replication, g)
                if current.reversed and current.awaiting_commit:
                    listed = run.step(list_recovery_points(replication, g)).payload
                    point = listed.latest if listed else None
                    if point is not None:
                        done_groups[g].final_checkpoint_id = point.id
                        done_groups[g].final_checkpoint_time = point.timestamp
                        # A planned move takes its final checkpoint after the shutdown: nothing is lost.
                        done_groups[g].data_loss_s = max((moved_at - point.timestamp).total_seconds(), 0.0) \
                            if g in to_move else 0.0
                        run.store.record_recovery_point(tenant_id=tenant, protection_group=g, checkpoint_id=point.id,
                                                        purpose="failback", run_id=run.run_id,
                                                        point_time=point.timestamp, tag=point.tag)
            production = site.vcenter_block("protected")
            presented = run.step(list_site_vms(production, config.folder, machines)).payload or []
            if presented:
                stage.outcome = "done"
                plan = targets(config, failback_mapping(_production_port_groups(config, presented)), machines)
                engine = recover_vms(production, config.folder, plan, limits=limits or site.recovery,
                                     resolver=resolver_for(site, "protected"),
                                     machines={m: config.machine(m) for m in machines}, deadline=Deadline.within(
                                         OPERATION_TIMEOUT_S, f"switch-back of {tenant}'s VMs at production"),
                                     record=run.record,
                                     progress=lambda v, t, what: run.progress(
                                         100.0 * v / max(t, 1), f"switch-back: {v}/{t} VMs verified ({what})"))
            records = cutover_records(run.store, tenant)
            if records:
                stage.outcome = "done"
                report = remove_records(records, lambda rec: run.step(remove_recorded_object(rec.id, site)))
                removed = len(report.removed)
                if not report.complete:
                    raise PermanentError("the failover's cutover could not be removed entirely: "
                                         + "; ".join(f"{lo.what}: {lo.error}" for lo in report.leftovers))
        # 4. resume protection production -> recovery with the tenant's settings
        with _stage(run, stages, "resume") as stage:
            for g in chosen:
                current = _status(run, replication, g)
                if current.reversed and (current.awaiting_commit or current.committing):
                    stage.outcome = "done"
                    committed = run.step(commit_failover(replication, g, reverse_protection=True))
                    _wait(run, replication, committed, f"commit of the switch-back of group {g}")
            for spec in build_specs(config, site):
                if _status(run, replication, spec.name).reversed:
                    raise PermanentError(f"group {spec.name} still replicates towards production after its commit")
                run.step(wait_for_vpg_sync(replication, spec.name, deadline=Deadline.within(
                    resync_timeout_s, f"sync of group {spec.name} (production -> recovery)")))
                converged = run.step(create_vpg(replication, spec, deadline=Deadline.within(
                    OPERATION_TIMEOUT_S, f"settings of group {spec.name}")))
                if converged.changed:
                    stage.outcome = "done"
                synced = run.step(wait_for_vpg_sync(replication, spec.name, deadline=Deadline.within(
                    resync_timeout_s, f"sync of group {spec.name} (production -> recovery)"))).payload
                run.step(tag_checkpoint(replication, spec.name, RESUMED_CHECKPOINT_TAG))
                if synced is not None:
                    done_groups[spec.name].status = synced.status
                    done_groups[spec.name].configured_rpo_s = synced.configured_rpo_s
                    done_groups[spec.name].actual_rpo_s = synced.actual_rpo_s
                    run.store.upsert_protection_group(
                        tenant_id=tenant, name=spec.name, package=str(config.group(spec.name).package.value),
                        vpg_id=synced.id, status=synced.status, rpo_target_seconds=float(spec.rpo_seconds))
            recovery = site.vcenter_block("recovery")
            for vm in run.step(list_site_vms(recovery, config.folder, machines)).payload or []:
                stage.outcome = "done"
                run.step(destroy_vm(recovery, f"{config.folder}/{vm.name}"))
            left = [vm.name for vm in run.step(list_site_vms(recovery, config.folder, machines)).payload or []]
            if left:
                raise PermanentError(f"the recovery site still holds {', '.join(left)} after the failback")
        # 5. report and change record
        data_loss = max((g.data_loss_s or 0.0) for g in done_groups.values())
        result = FailbackResult(
            tenant=tenant, run_id=run.run_id, requested_by=requested_by, reuse_production_vms=reuse_production_vms,
            resync="delta" if reuse_production_vms else "full",
            window_start=window_utc[0] if window_utc else None, window_end=window_utc[1] if window_utc else None,
            window_wait_s=round(window_wait, 3), approval_wait_s=round(approval_wait, 3), stages=stages,
            groups=list(done_groups.values()),
            vms=[v.model_dump(mode="json", exclude={"checks"}) for v in (engine.vms if engine else [])],
            data_loss_s=data_loss, cutover_removed=removed, recovery_site_vms=left, change_number=change_number)
        _store_report(run, config, result, output_dir)
        outcome = (f"{len(engine.verified) if engine else 0}/{len(machines)} VMs verified at the production site; "
                   f"data loss {data_loss:.1f} s; {removed} cutover change(s) undone; protection production -> "
                   f"recovery resumed; " + ", ".join(f"{s.stage} {s.seconds:.1f} s" for s in stages))
        run.step(close_change_record(desk, correlation, outcome))
        run.finish(f"Failback of {tenant}: {outcome}", sections=[_stages_table(stages), _groups_table(result.groups)],
                   detail={"data_loss_s": data_loss, "window_wait_s": round(window_wait, 3),
                           "stages": {s.stage: round(s.seconds, 3) for s in stages}})
    result.steps = run.steps
    return result


# --- admission ------------------------------------------------------------------------------------


def _admit_state(run: RunContext, config: TenantConfig, groups: dict[str, ReplicationGroup | None]) -> str:
    """Refuse unless there is a committed failover to fail back (or an unfinished failback to resume).

    Returns the anchor of the change record's correlation id: the failover run being failed back.
    """
    undecided = [g for g, s in groups.items() if s is not None and not s.reversed and
                 s.state in (GroupState.FAILING_OVER, GroupState.MOVING)]
    if undecided:
        raise FailbackRefused(f"the failover of {', '.join(undecided)} is not committed: commit it (failover "
                              f"commit=True) or roll it back (rollback-failover); failback needs a committed failover")
    runs = [r for r in run.store.runs(config.id) if r.flow in ("failover", FLOW_NAME)]
    failovers = [r for r in runs if r.flow == "failover" and r.outcome == "success"]
    anchor = failovers[-1].id[:8] if failovers else "manual"
    committed = [g for g, s in groups.items() if s is not None and s.failover_committed]
    if committed:
        return anchor
    failbacks = [r for r in runs if r.flow == FLOW_NAME and r.id != run.run_id]
    if failbacks and failbacks[-1].outcome != "success":
        return anchor  # an unfinished failback: resume it
    states = ", ".join(f"{g} {s.status if s else 'absent'}" for g, s in groups.items())
    raise FailbackRefused(f"tenant {config.id} has no committed failover to fail back (replication manager: "
                          f"{states}); failback follows a committed failover")


# --- stages ---------------------------------------------------------------------------------------


class _Stage:
    def __init__(self, name: str) -> None:
        self.name, self.outcome, self.started = name, "skipped", time.monotonic()


class _stage:  # noqa: N801 - used as ``with _stage(...)``
    """Time a stage, show it in the progress artifact, record it as a step when it ends."""

    def __init__(self, run: RunContext, stages: list[StageTiming], name: str) -> None:
        self.run, self.stages, self.stage = run, stages, _Stage(name)

    def __enter__(self) -> _Stage:
        self.run.progress(_percent(self.run), f"stage {self.stage.name}: started")
        return self.stage

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        seconds = time.monotonic() - self.stage.started
        if exc is None:
            self.stages.append(StageTiming(stage=self.stage.name, seconds=round(seconds, 3),
                                           outcome=self.stage.outcome))
            self.run.record(StepResult(step="failback_stage", target=self.stage.name).done(
                changed=self.stage.outcome == "done",
                detail={"seconds": round(seconds, 3), "outcome": self.stage.outcome}))
        else:
            self.run.record(StepResult(step="failback_stage", target=self.stage.name).failed(
                exc, detail={"seconds": round(seconds, 3)}))


def _percent(run: RunContext) -> float:
    return 100.0 * min(len(run.steps), run.total) / max(run.total, 1)


def _status(run: RunContext, replication: Any, group: str) -> ReplicationGroup:
    current = get_vpg_status(replication, group).payload
    assert current is not None
    return current


def _needs_move(group: ReplicationGroup) -> bool:
    """Reverse protection runs and the switch-back has not presented the group at production yet."""
    return group.reversed and not group.awaiting_commit and not group.committing and \
        group.state != GroupState.MOVING


def _wait(run: RunContext, replication: Any, started: StepResult, what: str) -> None:
    payload = started.payload
    task_id = payload.task.id if payload is not None and payload.task is not None else None
    run.step(wait_for_replication_task(replication, task_id,
                                       deadline=Deadline.within(OPERATION_TIMEOUT_S, what)))


def _production_port_groups(config: TenantConfig, presented: list[VmInfo]) -> dict[str, str]:
    """VLAN -> the production network the manager attached each presented VM's NIC to."""
    by_name = {vm.name: vm for vm in presented}
    out: dict[str, str] = {}
    for machine in config.machines:
        vm = by_name.get(machine.name)
        if vm is None:
            continue
        for nic, info in zip(machine.nics, vm.nics, strict=False):
            if info.network and nic.vlan not in out:
                out[nic.vlan] = info.network
    missing = sorted({nic.vlan for m in config.machines for nic in m.nics} - set(out))
    if missing:
        raise PermanentError(f"no production network known for VLAN(s) {', '.join(missing)}: the manager presented "
                             f"{', '.join(sorted(by_name)) or 'no VM'} at the production site")
    return out


def _wait_for_window(run: RunContext, config: TenantConfig, start: datetime, end: datetime) -> float:
    """Pause the run (Prefect ``Paused``) until ``start``; a timer resumes it. Returns the seconds waited."""
    now = datetime.now(UTC)
    if now >= end:
        raise FailbackRefused(f"window: the maintenance window closed at {_local(end, config)} before the "
                              f"switch-back could start; re-run with a new window (reverse protection is kept)")
    if now >= start:
        return 0.0
    began = time.monotonic()
    wait_s = (start - now).total_seconds()
    run.progress(_percent(run), f"waiting for the maintenance window: opens {_local(start, config)} "
                                f"(in {wait_s:.0f} s); no VM is touched at the production site until then")
    run.record(StepResult(step="wait_for_window", target=config.id).done(
        changed=False, detail={"opens": start.isoformat(), "closes": end.isoformat(), "wait_s": round(wait_s, 3)}))
    timer = threading.Timer(wait_s, _resume, args=(run.run_id,))
    timer.daemon = True
    timer.start()
    try:
        pause_flow_run(timeout=int(wait_s) + 120, poll_interval=1, key=f"failback-window-{int(start.timestamp())}")
    except RuntimeError:  # not inside a flow run (``.fn()``): wait in the open instead
        time.sleep(max((start - datetime.now(UTC)).total_seconds(), 0.0))
    finally:
        timer.cancel()
    remaining = (start - datetime.now(UTC)).total_seconds()
    if remaining > 0:  # resumed early from the UI: the window still rules
        time.sleep(remaining)
    return time.monotonic() - began


def _resume(run_id: str) -> None:
    """Resume the paused flow run (the window opened); retried while the pause is being recorded."""
    from prefect import get_client

    for _ in range(30):
        try:
            with get_client(sync_client=True) as client:
                client.resume_flow_run(UUID(run_id))
                state = client.read_flow_run(UUID(run_id)).state
            if state is None or not state.is_paused():
                return
        except Exception:  # noqa: BLE001, S110 - not paused yet, or the API blinked: try again
            pass
        time.sleep(1.0)


def _await_approval(run: RunContext, timeout_s: float) -> float:
    """Pause for an approver before the switch-back; returns the seconds waited. No or a refusal refuses."""
    started = time.monotonic()
    answer = pause_flow_run(wait_for_input=Approval, timeout=int(timeout_s), key="failback-approval")
    waited = time.monotonic() - started
    run.record(StepResult(step="approval", target=run.tenant or "").done(
        changed=False, detail={"approved": answer.approved, "approver": answer.approver, "comment": answer.comment,
                               "waited_s": round(waited, 3)}))
    if not answer.approved:
        raise FailbackRefused(f"switch-back not approved by {answer.approver}: {answer.comment or 'no reason given'}")
    return waited


def _local(moment: datetime, config: TenantConfig) -> str:
    return moment.astimezone(ZoneInfo(config.timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")


# --- report ---------------------------------------------------------------------------------------


def _stages_table(stages: list[StageTiming]) -> Section:
    return Section(heading="Stages", headers=["Stage", "Seconds", "Outcome"],
                   rows=[[s.stage, f"{s.seconds:.1f}", s.outcome] for s in stages])


def _groups_table(groups: list[GroupFailback]) -> Section:
    return Section(heading="Groups", headers=["Group", "Final checkpoint", "Time (UTC)", "Data loss (s)",
                                              "Status", "RPO (s) actual / target"],
                   rows=[_group_row(g) for g in groups])


def _group_row(g: GroupFailback) -> list[str]:
    return [g.group, g.final_checkpoint_id or "-",
            f"{g.final_checkpoint_time:%Y-%m-%d %H:%M:%S}" if g.final_checkpoint_time else "-",
            format_seconds(g.data_loss_s, 1), g.status or "-", f"{g.actual_rpo_s} / {g.configured_rpo_s}"]


def render_markdown(result: FailbackResult) -> str:
    """The failback report as Markdown (every cell escaped by the shared table helper)."""
    vm_rows = [[v.get("vm"), v.get("wave"), v.get("status"), format_seconds(v.get("verified_at"), 1)]
               for v in result.vms]
    return "\n".join([
        f"# Failback report: {result.tenant}", "",
        markdown_table(["Fact", "Value"], [
            ["Run", result.run_id], ["Requested by", result.requested_by],
            ["Resync", f"{result.resync} ({'production VMs reused' if result.reuse_production_vms else 'new site'})"],
            ["Window", f"{result.window_start or 'now'} - {result.window_end or '-'}"],
            ["Waited for the window (s)", format_seconds(result.window_wait_s, 1)],
            ["Data loss (s)", format_seconds(result.data_loss_s, 1)],
            ["Cutover changes undone", str(result.cutover_removed)],
            ["Change record", result.change_number or "-"]]), "",
        "## Stages", "", markdown_table(["Stage", "Seconds", "Outcome"],
                                       [[s.stage, f"{s.seconds:.1f}", s.outcome] for s in result.stages]), "",
        "## Groups", "", markdown_table(_groups_table([]).headers, [_group_row(g) for g in result.groups]), "",
        "## VMs at the production site", "",
        markdown_table(["VM", "Wave", "Outcome", "Verified (s)"], vm_rows, empty="No VM brought up by this run."), ""])


def render_html(result: FailbackResult) -> str:
    """The failback report as a small self-contained HTML page (every value escaped)."""
    def table(headers: list[str], rows: list[list[Any]]) -> str:
        head = "".join(f"<th>{escape_html(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{escape_html(c)}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Failback report: "
            f"{escape_html(result.tenant)}</title></head><body><h1>Failback report: {escape_html(result.tenant)}</h1>"
            + table(["Fact", "Value"], [["Run", result.run_id], ["Requested by", result.requested_by],
                                        ["Resync", result.resync], ["Data loss (s)", f"{result.data_loss_s:.1f}"],
                                        ["Change record", result.change_number or "-"]])
            + "<h2>Stages</h2>" + table(["Stage", "Seconds", "Outcome"],
                                        [[s.stage, f"{s.seconds:.1f}", s.outcome] for s in result.stages])
            + "<h2>Groups</h2>" + table(_groups_table([]).headers, [_group_row(g) for g in result.groups])
            + "<h2>VMs at the production site</h2>"
            + table(["VM", "Wave", "Outcome"], [[v.get("vm"), v.get("wave"), v.get("status")] for v in result.vms])
            + "</body></html>")


def render_json(result: FailbackResult) -> str:
    return json.dumps(result.model_dump(mode="json", exclude={"steps"}), indent=2, sort_keys=True)


def _store_report(run: RunContext, config: TenantConfig, result: FailbackResult, output_dir: str | None) -> None:
    """Keep the report in the state store (Markdown, HTML, JSON) and, with ``output_dir``, as files."""
    texts = {"markdown": render_markdown(result), "html": render_html(result), "json": render_json(result)}
    title = f"Failback report {config.id}: data loss {result.data_loss_s:.1f} s"
    for fmt, text in texts.items():
        run.store.save_report(tenant_id=config.id, kind="failback", title=title, content=text, fmt=fmt,
                              run_id=run.run_id)
    if output_dir:
        folder = Path(output_dir) / config.id / "reports"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"failback-{config.id}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
        for fmt, suffix in (("markdown", ".md"), ("html", ".html"), ("json", ".json")):
            (folder / f"{stem}{suffix}").write_text(texts[fmt], encoding="utf-8")

"""The ``drill`` flow: a DR test in an isolated bubble, isolation proven first, teardown guaranteed.

Runbook, top to bottom:

1. **admit** (a refusal changes nothing and is audited once): the tenant's config, ``requested_by``
   an authorised person with the ``request_drill`` role, the groups asked for; at least one
   replicated domain controller when the tenant uses Active Directory;
2. **sweep** the dead runs (``sweep-orphans``): a killed drill's bubble and test are removed
   before a new one is built;
3. **readiness** (``check-readiness``): nothing blocking (groups replicating, the recovery
   resource pool able to hold the VMs' reservations, port groups present); its untested
   changes since the last successful drill go into the report;
4. the run takes the tenant (exclusive) with crash policy *undo*; recovery points are chosen
   (default: latest application-consistent); optional **approval**;
5. **bubble** (draas/bubble.py): a switch without uplinks, one port group per tenant VLAN on a
   free drill VLAN, and the test-access lines on the tenant's VPN context, each recorded in the
   ledger before it is created;
6. **isolation proven before any power-on**: the switch has no physical uplink on any host, no
   port group of it carries a production VLAN, no aggregation switch or PE router declares or
   routes a bubble VLAN (from their running configs). What cannot be read fails the proof;
7. replication keeps running for continuous packages (VMR-CDP) and is **paused** for snapshot
   packages (VMR-SNAP), recorded in the ledger so that a crash resumes it;
8. the manager **starts a test** per group (recorded in the ledger: removing it stops the test)
   at the chosen checkpoint; its test VMs are created powered off, and the recovery engine (the
   failover's engine, unchanged) moves every NIC to its bubble port group before it powers
   anything on, then verifies the VMs with their checks;
9. from the NIC backings, no test VM is on anything but a bubble port group;
10. **teardown, always** (success, failure, cancellation, approval refused): the test is stopped
    in the manager with the success flag and a summary (its VMs go with it), replication resumed,
    then every object of the run removed through the ledger (:meth:`RunContext.undo`) and
    verified gone, and the recovery vCenter read again: no test VM, no bubble switch or port group;
11. the tested checkpoint is tagged ("Tested at ...") and the **DR Test Report** is built
    (:class:`~draas.reports.drill_model.DrillReportData`, verdict by ``judge``), written, published
    and stored; per-VM results are recorded. A FAIL opens one incident with the report linked
    and schedules a re-test within one calendar month inside the tenant's business hours; the
    run then ends Failed (so ``StateStore.last_successful_drill`` only counts passed drills).
"""

from __future__ import annotations

import importlib
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, pause_flow_run
from pydantic import BaseModel, Field

from draas import ledger
from draas.bubble import (
    BubblePlan,
    IsolationNotProven,
    nic_violations,
    plan_bubble,
    production_vlans,
    prove_isolation,
    require_isolation,
    routing_devices,
)
from draas.checks import resolver_for
from draas.clients.replication import RecoveryPoint
from draas.clients.servicedesk import IncidentCreate
from draas.deadline import Deadline
from draas.errors import PermanentError
from draas.ledger.replication import PAUSE, TEST
from draas.models.results import StepResult
from draas.models.tenant import TenantConfig
from draas.recovery.engine import EngineLimits, EngineResult, RecoveryFailed
from draas.recovery.plan import drill_mapping, targets
from draas.reports.drill_model import (
    ChangeInfo,
    CheckEvidence,
    DrillReportData,
    HistoryPoint,
    IsolationCheck,
    IsolationEvidence,
    Person,
    RecoveryPointInfo,
    StepEvidence,
    TeardownEvidence,
    VmRecord,
    judge,
)
from draas.reports.run_summary import Section
from draas.site import Site
from draas.validation import add_months, load_catalog
from flows.failover import Approval, RecoveryPointChoice, choose_point, select_groups
from flows.runbook import CrashPolicy, RequestRefused, RunContext, error_text
from tasks.bubble import build_bubble, read_routing_configs, read_switch, read_vm_networks
from tasks.ledger import verify_records_removed
from tasks.recovery import recover_vms
from tasks.replication import (
    list_recovery_points,
    pause_replication,
    start_failover_test,
    stop_failover_test,
    tag_checkpoint,
    wait_for_replication_task,
)
from tasks.servicedesk import active_incident_number, add_work_note, open_incident, reopen_incident, resolve_incident
from tasks.tenant import validate_tenant_config

FLOW_NAME = "drill"
#: How the replication manager names a test VM (Zerto: ``<name> - testing recovery``).
TEST_VM_SUFFIX = " - testing recovery"
#: How long one group's test start, stop, pause or resume may take in the manager.
TEST_TIMEOUT_S = 1800.0
#: Packages whose replication is paused during a drill (snapshot packages); the others keep running.
PAUSED_PACKAGES = frozenset({"VMR-SNAP"})
#: The report kind the drill stores (and reads its history from).
REPORT_KIND = "drill"


class DrillRefused(RequestRefused):
    """The drill cannot be run as asked (unknown group, no domain controller, not ready, not approved)."""


class DrillFailed(PermanentError):
    """The drill ran and its verdict is FAIL; the report names the cause."""


class DrillResult(BaseModel):
    tenant: str
    run_id: str
    verdict: str
    cause: str | None = None
    warnings: list[str] = Field(default_factory=list)
    report: DrillReportData
    report_paths: dict[str, str] = Field(default_factory=dict)
    incident: str | None = None
    retest_at: datetime | None = None
    steps: list[StepResult] = Field(default_factory=list)


def test_vm_name(machine: str) -> str:
    """The name of ``machine``'s test copy in the recovery vCenter."""
    return machine + TEST_VM_SUFFIX


def uses_active_directory(config: TenantConfig) -> bool:
    """The tenant runs Active Directory: its file declares a domain controller or an AD application.

    Windows machines alone do not say so (a workgroup file server needs no domain controller).
    """
    return any(m.is_domain_controller or "active directory" in m.application.lower() for m in config.machines)


def replicated_domain_controllers(config: TenantConfig) -> list[str]:
    protected = {m for g in config.protection_groups for m in g.machines}
    return [m.name for m in config.machines if m.is_domain_controller and m.name in protected]


def retest_slot(config: TenantConfig, failed_at: datetime) -> datetime:
    """When to repeat a failed drill: a business-hours slot of the drill's duration within one calendar month.

    The first business day a week after the failure (time to fix the cause) at the start of the
    tenant's business hours, in its time zone; earlier days when the month runs out first.
    """
    tz = config.tz
    local = failed_at.astimezone(tz)
    limit = add_months(local.date(), 1)
    duration = config.drills.duration

    def first_from(day: date) -> datetime | None:
        while day <= limit:
            start = datetime.combine(day, config.business_hours.start, tzinfo=tz)
            if start > local and config.business_hours.contains(start, duration):
                return start
            day += timedelta(days=1)
        return None

    slot = first_from(local.date() + timedelta(days=7)) or first_from(local.date())
    if slot is None:
        raise DrillRefused(f"tenants/{config.id}.yaml: business_hours: no slot of {duration} within one month "
                           f"of {local:%Y-%m-%d}")
    return slot


def _report_module() -> Any:
    """The DR Test Report renderer, or None while it is not installed (the data is stored as JSON then)."""
    try:
        module = importlib.import_module("draas.reports.drill_report")
    except ImportError:
        return None
    wanted = ("write_report", "publish_artifacts", "store_report")
    return module if all(hasattr(module, name) for name in wanted) else None


@flow(name=FLOW_NAME)
def drill(tenant: str, requested_by: str,
          recovery_point: RecoveryPointChoice = RecoveryPointChoice(kind="latest_app_consistent"),  # noqa: B008
          groups: list[str] | None = None, approval: bool = False, approval_timeout_s: float = 3600.0,
          ticket: str | None = None, channel: str = "ui", config_dir: str | None = None,
          output_dir: str = "out", budget_s: float | None = None, limits: EngineLimits | None = None,
          wait_for_tenant_s: float = 0.0, sweep: bool = True, readiness: bool = True) -> DrillResult:
    """Test ``tenant``'s recovery in an isolated bubble, prove isolation first, always tear it down, report.

    Args:
        tenant: the tenant id.
        requested_by: e-mail of an authorised person of the tenant with the ``request_drill`` role.
        recovery_point: latest application-consistent (default), latest, a bookmark, or a time.
        groups: a subset of the tenant's protection groups (default: all).
        approval: pause for an approver's decision before anything is built.
        approval_timeout_s: how long to wait for the decision (no answer: refused, torn down).
        ticket: the service-desk ticket that asked for it.
        channel: ui, cli, webhook, schedule, api.
        config_dir: directory with tenants/, tiers.yaml and optionally site.yaml.
        output_dir: the report goes under ``<output_dir>/<tenant>/reports/``.
        budget_s: the drill's deadline (default: the tenant's shortest RTO of the groups tested).
        limits: the recovery engine's caps (default: the site's).
        wait_for_tenant_s: how long to wait for another state-changing run of the tenant to end.
        sweep: sweep dead runs first (``sweep-orphans``).
        readiness: run the readiness check first; a blocking finding refuses the drill.

    Raises:
        DrillRefused / NotAuthorised / TenantBusy: refused before anything changed (audited once).
        DrillFailed: the verdict is FAIL (the report says why); everything was torn down.
    """
    accepted = time.monotonic()
    requested_at = datetime.now(UTC)
    site = Site.for_config_dir(config_dir)
    run = RunContext(FLOW_NAME, action="request_drill", kind="drill", tenant=tenant, requested_by=requested_by,
                     channel=channel, policy=CrashPolicy.UNDO, exclusive=True, wait_s=wait_for_tenant_s,
                     title=f"Drill of {tenant}", artifact_key="drill", site=site,
                     parameters={"tenant": tenant, "recovery_point": recovery_point.model_dump(mode="json"),
                                 "groups": groups, "approval": approval, "ticket": ticket, "config_dir": config_dir,
                                 "output_dir": output_dir})
    untested: list[ChangeInfo] = []
    with run.admission():
        valid = validate_tenant_config(tenant, config_dir)
        config = valid.tenant
        run.authorise(config, "request_drill")
        chosen = select_groups(config, groups, DrillRefused)
        warnings_pre: list[str] = []
        if uses_active_directory(config):
            dcs = replicated_domain_controllers(config)
            if not dcs:
                raise DrillRefused(f"tenants/{tenant}.yaml: machines: {tenant} uses Active Directory but replicates "
                                   "no domain controller (is_domain_controller); the service needs at least one "
                                   "for a test")
            if not any(m in dcs for g in chosen for m in config.group(g).machines):
                warnings_pre.append(f"no domain controller in the groups tested ({', '.join(dcs)} not in scope)")
        catalog = load_catalog(Path(config_dir) if config_dir else None)
        if sweep:
            from flows.sweep import sweep_orphans

            sweep_orphans(requested_by=requested_by, channel=channel, config_dir=config_dir)
        if readiness:
            from flows.readiness import check_readiness

            ready = check_readiness(tenant, requested_by=requested_by, channel=channel, config_dir=config_dir)
            if not ready.ready:
                raise DrillRefused(f"{tenant} is not ready for a drill: " + "; ".join(
                    f"{f.category} {f.subject}: {f.detail}" for f in ready.blocking))
        untested = [ChangeInfo(kind=c.kind, subject=c.subject, description=c.description, detected_at=c.detected_at)
                    for c in run.store.changes_since_last_successful_drill(tenant)]
    machines = [m for g in chosen for m in config.group(g).machines]
    rto_target = min(config.group(g).sla.rto.total_seconds() for g in chosen)
    rpo_target = min(config.group(g).sla.rpo.total_seconds() for g in chosen)
    run.budget_s = budget_s or rto_target
    replication = site.replication_block()
    vc = site.vcenter_block("recovery")
    state = _DrillState(run=run, config=config, groups=chosen, machines=machines)
    state.warnings += warnings_pre
    with run.started(total_steps=12 + 6 * len(chosen) + 3 * len(machines)):
        run.step(valid.step)
        try:
            # recovery points (chosen now: the request time is the RPO reference)
            for g in chosen:
                listed = run.step(list_recovery_points(replication, g)).payload
                state.points[g] = choose_point(listed.points if listed else [], recovery_point, g)
            if approval:
                state.approval_wait_s, state.approved_by = _await_approval(run, approval_timeout_s)
            # bubble, recorded before it is built
            routers = [d.name for d in routing_devices(site.devices)]
            configs = run.step(read_routing_configs(routers, site)).payload or {}
            plan = plan_bubble(config, catalog, site.devices, run_id=run.run_id,
                               taken_vlans=production_vlans(config, configs))
            state.plan = plan
            built: Exception | None = None
            try:
                build_bubble(tenant, run.run_id, plan, site, cluster=site.vcenter.recovery.cluster, step=run.step)
            except Exception as exc:  # noqa: BLE001 - e.g. a switch of that name with uplinks: prove, then fail
                built = exc
            # isolation, before anything is powered on
            switch = run.step(read_switch(vc, plan.switch)).payload
            configs = run.step(read_routing_configs(routers, site)).payload or {}
            state.isolation = prove_isolation(plan, switch, configs)
            if built is not None:
                state.isolation.append(IsolationCheck(name="bubble built as planned", passed=False,
                                                      detail=error_text(built), checked_at=datetime.now(UTC)))
            require_isolation(state.isolation)
            state.proven = True
            # replication: paused for snapshot packages, running for continuous ones
            for g in chosen:
                if config.group(g).package.value in PAUSED_PACKAGES:
                    _record_replication(run, tenant, g, PAUSE)
                    paused = run.step(pause_replication(replication, g))
                    _wait(run, replication, paused, f"pause of group {g}")
                    state.paused.add(g)
            # the manager's test copies (powered off), then the engine into the bubble
            for g in chosen:
                _record_replication(run, tenant, g, TEST)
                started = run.step(start_failover_test(replication, g, checkpoint_id=state.points[g].id))
                _wait(run, replication, started, f"test start of group {g}")
            names = [test_vm_name(m) for m in machines]
            powered = _power_states(vc, config.folder, names)
            state.isolation.append(IsolationCheck(
                name="test VMs powered off before their NICs are moved", passed=all(
                    s == "poweredOff" for s in powered.values()) and len(powered) == len(names),
                detail=", ".join(f"{n}: {powered.get(n, 'missing')}" for n in names), checked_at=datetime.now(UTC)))
            require_isolation([c for c in state.isolation if c.name.startswith("test VMs powered off")])
            plan_targets = targets(config, drill_mapping(config, plan.mapping()), machines, vm_name=test_vm_name)
            state.engine_started = time.monotonic()
            try:
                state.engine = recover_vms(vc, config.folder, plan_targets, limits=limits or site.recovery,
                                           resolver=resolver_for(site),
                                           machines={m: config.machine(m) for m in machines},
                                           deadline=run.deadline, record=state.record,
                                           progress=lambda v, t, what: run.progress(100.0 * v / max(t, 1),
                                                                                    f"{v}/{t} VMs verified ({what})"))
            except RecoveryFailed as exc:
                state.engine = exc.result
                state.cause = f"recovery in the bubble failed: {exc}"
            # NIC backings during the drill: bubble port groups only
            networks = run.step(read_vm_networks(vc, config.folder, names)).payload or {}
            state.networks = networks
            violations = nic_violations(networks, plan)
            state.nic_ok = not violations and len(networks) == len(names)
            if violations:
                state.cause = "; ".join(violations)
        except BaseException as exc:
            if not isinstance(exc, IsolationNotProven):  # judge() names the failed isolation checks itself
                state.cause = state.cause or error_text(exc)
            state.error = exc
        finally:
            _teardown(run, state, replication, vc)
        data = _report_data(run, state, requested_at, accepted, untested, rto_target, rpo_target, ticket)
        refused = isinstance(state.error, DrillRefused)  # not approved: torn down, reported, nothing to re-test
        paths = _write_files(data, output_dir)
        if data.verdict == "FAIL" and not refused:
            data = _failed_drill(run, state, data, paths, site)
            paths = _write_files(data, output_dir)  # the same files, now naming the incident and the re-test
        _publish(run, data, paths)
        run.facts.update(verdict=data.verdict, rto_s=data.rto_s, rpo_s=data.rpo_s, report=paths)
        if refused:
            raise state.error  # type: ignore[misc]
        if data.verdict == "FAIL":
            raise DrillFailed(f"drill of {tenant} failed: {data.cause}") from state.error
        _resolve_failed_drill_incident(run, site, tenant)
        run.finish(f"Drill of {tenant}: {data.verdict}", sections=[_vm_table(data)],
                   detail={"verdict": data.verdict, "rto_s": data.rto_s, "rpo_s": data.rpo_s, "report": paths})
    return DrillResult(tenant=tenant, run_id=run.run_id, verdict=data.verdict, cause=data.cause,
                       warnings=data.warnings, report=data, report_paths=paths, incident=data.incident,
                       retest_at=data.retest_scheduled_for, steps=run.steps)


class _DrillState:
    """What the drill saw and did, for the teardown and the report."""

    def __init__(self, *, run: RunContext, config: TenantConfig, groups: list[str], machines: list[str]) -> None:
        self.run, self.config, self.groups, self.machines = run, config, groups, machines
        self.points: dict[str, RecoveryPoint] = {}
        self.plan: BubblePlan | None = None
        self.isolation: list[IsolationCheck] = []
        self.proven = False
        self.paused: set[str] = set()
        self.engine: EngineResult | None = None
        self.engine_started: float | None = None
        self.networks: dict[str, list[str | None]] = {}
        self.nic_ok: bool | None = None
        self.cause: str | None = None
        self.error: BaseException | None = None
        self.warnings: list[str] = []
        self.approval_wait_s = 0.0
        self.approved_by: str | None = None
        self.teardown = TeardownEvidence()
        self.vm_steps: dict[str, list[StepResult]] = {}

    def record(self, step: StepResult) -> StepResult:
        """The engine's record callback: stored with the run and kept per machine for the report."""
        if step.machine:
            self.vm_steps.setdefault(step.machine, []).append(step)
        return self.run.record(step)


def _record_replication(run: RunContext, tenant: str, group: str, kind: str) -> None:
    run.store.record_object(tenant_id=tenant, run_id=run.run_id, system=ledger.REPLICATION, site="recovery",
                            kind=kind, name=group, identity={"name": group, "purpose": "drill"})


def _wait(run: RunContext, replication: Any, started: StepResult, what: str) -> None:
    task_id = started.payload.task.id if started.payload and started.payload.task else None
    run.step(wait_for_replication_task(replication, task_id, deadline=Deadline.of(run.deadline, TEST_TIMEOUT_S, what)))


def _power_states(vc: Any, folder: str, names: list[str]) -> dict[str, str]:
    from draas.sessions import session

    wanted = set(names)
    with session(vc) as client:
        return {vm.name: vm.power_state for vm in client.list_vms(folder) if vm.name in wanted}


def _await_approval(run: RunContext, timeout_s: float) -> tuple[float, str]:
    """Pause for an approver; returns (seconds waited, approver). No answer or a refusal refuses the drill."""
    started = time.monotonic()
    answer = pause_flow_run(wait_for_input=Approval, timeout=int(timeout_s), key="drill-approval")
    waited = time.monotonic() - started
    run.record(StepResult(step="approval", target=run.tenant or "").done(
        changed=False, detail={"approved": answer.approved, "approver": answer.approver, "comment": answer.comment,
                               "waited_s": round(waited, 3)}))
    if not answer.approved:
        raise DrillRefused(f"not approved by {answer.approver}: {answer.comment or 'no reason given'}")
    return waited, answer.approver


def _teardown(run: RunContext, state: _DrillState, replication: Any, vc: Any) -> None:
    """Stop the tests (success flag, summary), resume replication, remove everything recorded, verify.

    Never raises: what cannot be removed stays recorded (the sweeper retries it) and is a leftover
    in the report, which makes the drill FAIL.
    """
    records = run.store.run_objects(run.run_id, active_only=False)
    state.teardown.created = [ledger.describe(r) for r in reversed(records)]
    verified = len(state.engine.verified) if state.engine else 0
    success = state.cause is None and state.error is None and state.proven and \
        state.engine is not None and not state.engine.failed and state.nic_ok is not False
    summary = (f"DRaaS drill {run.run_id}: {verified}/{len(state.machines)} VMs verified in the bubble"
               + ("" if success else f"; failed: {state.cause or 'see the report'}"))[:500]
    for g in state.groups:
        try:
            stopped = run.step(stop_failover_test(replication, g, success=success, summary=summary))
            _wait(run, replication, stopped, f"test stop of group {g}")
        except Exception as exc:  # noqa: BLE001 - the ledger's removal below tries again
            run.record(StepResult(step="stop_failover_test", target=g).failed(exc))
    try:
        report = run.undo()
        state.teardown.leftovers += [f"{lo.what}: {lo.error}" for lo in report.leftovers]
    except Exception as exc:  # noqa: BLE001 - reported as a leftover, never hides the drill's own cause
        state.teardown.leftovers.append(f"teardown: {error_text(exc)}")
    records = run.store.run_objects(run.run_id, active_only=False)
    state.teardown.removed = [ledger.describe(r) for r in reversed(records) if r.removed_at is not None]
    try:
        run.step(verify_records_removed([r.id for r in records if r.id is not None], run.site))
    except Exception as exc:  # noqa: BLE001
        state.teardown.leftovers.append(error_text(exc))
    try:  # the recovery site, read again: no test VM, no bubble network
        left = _left_in_vcenter(vc, state)
        state.teardown.leftovers += left
    except Exception as exc:  # noqa: BLE001 - fail closed: an unreadable site is not a clean one
        state.teardown.leftovers.append(f"recovery vCenter could not be read after teardown: {error_text(exc)}")
    state.teardown.verified_absent = not state.teardown.leftovers
    for g in state.groups:  # tag the tested checkpoint, once replication runs again
        point = state.points.get(g)
        if point is None or state.engine is None:
            continue
        try:
            run.step(tag_checkpoint(replication, g, f"Tested at {datetime.now(UTC):%Y-%m-%d %H:%M:%S}Z "
                                                    f"(checkpoint {point.id}, drill {run.run_id[:8]} "
                                                    f"{'passed' if success else 'failed'})"))
        except Exception as exc:  # noqa: BLE001 - a missing tag is a warning, not a failed drill
            state.warnings.append(f"checkpoint of {g} not tagged: {error_text(exc)}")
    run.policy = CrashPolicy.NONE  # torn down: nothing left for the crash policy


def _left_in_vcenter(vc: Any, state: _DrillState) -> list[str]:
    from draas.sessions import session

    names = {test_vm_name(m.name) for m in state.config.machines}
    out: list[str] = []
    with session(vc) as client:
        out += [f"test VM {vm.name}" for vm in client.list_vms(state.config.folder) if vm.name in names]
        if state.plan is not None:
            if client.switch_state(state.plan.switch) is not None:
                out.append(f"bubble switch {state.plan.switch}")
            out += [f"bubble port group {pg.port_group}" for pg in state.plan.port_groups
                    if client.find("dvportgroup", pg.port_group) is not None]
    return out


def _report_data(run: RunContext, state: _DrillState, requested_at: datetime, accepted: float,
                 untested: list[ChangeInfo], rto_target: float, rpo_target: float,
                 ticket: str | None) -> DrillReportData:
    """The DR Test Report's data from what happened, judged; the per-VM results recorded in the store."""
    config = state.config
    engine = state.engine
    vms: list[VmRecord] = []
    outcome = {v.machine: v for v in engine.vms} if engine else {}
    for name in state.machines:
        m = config.machine(name)
        v = outcome.get(name)
        steps = [StepEvidence(step=s.step, target=s.target, started=s.started, finished=s.finished,
                              seconds=s.seconds if s.finished else None, status=s.status, error=s.error)
                 for s in state.vm_steps.get(name, [])]
        checks = [CheckEvidence(vm=c.vm, check=c.check, type=c.type, status=c.status, target=c.target,
                                detail=c.detail, attempts=c.attempts, started=c.started, finished=c.finished)
                  for c in (v.checks if v else [])]
        vms.append(VmRecord(machine=name, vm=test_vm_name(name), wave=v.wave if v else 1, depends_on=m.depends_on,
                            status=v.status if v else "not_started", error=v.error if v else None,
                            powered_on_at_s=v.powered_on_at if v else None, guest_up_at_s=v.guest_up_at if v else None,
                            verified_at_s=v.verified_at if v else None, steps=steps, checks=checks,
                            networks=[n or "" for n in state.networks.get(test_vm_name(name), [])]))
    points = []
    for g in state.groups:
        p = state.points.get(g)
        if p is None:
            continue
        package = str(getattr(config.group(g).package, "value", config.group(g).package))
        points.append(RecoveryPointInfo(group=g, checkpoint_id=p.id, time=p.timestamp, tag=p.tag,
                                        consistency="application" if p.app_consistent else "crash", package=package,
                                        replication_during_test="paused and resumed" if g in state.paused
                                        else "running"))
    rpo = max(((requested_at - p.timestamp).total_seconds() for p in state.points.values()), default=None)
    rto = None
    if engine is not None and engine.vms and not engine.failed and state.engine_started is not None:
        last = max((v.verified_at or 0.0) for v in engine.vms)
        rto = max(state.engine_started + last - accepted - state.approval_wait_s, 0.0)
    data = DrillReportData(
        tenant=config.id, tenant_name=config.display_name, run_id=run.run_id, started=requested_at,
        finished=datetime.now(UTC), requested_by=run.requested_by, channel=run.channel,
        approved_by=state.approved_by, ticket=ticket, scope=state.groups, verdict="PASS",
        cause=state.cause, warnings=list(state.warnings), rto_s=rto, rto_target_s=rto_target,
        machine_s=engine.seconds if engine else None, approval_wait_s=state.approval_wait_s,
        rpo_s=max(rpo, 0.0) if rpo is not None else None, rpo_target_s=rpo_target, recovery_points=points, vms=vms,
        isolation=IsolationEvidence(proven=state.proven, checks=state.isolation, nic_backings_ok=state.nic_ok),
        teardown=state.teardown, untested_changes=untested, history=_history(run, config.id),
        authorised_persons=[Person(name=p.name, email=str(p.email), roles=[str(getattr(r, "value", r))
                                                                              for r in p.roles])
                            for p in config.authorised_persons])
    verdict, cause, judged = judge(data)
    warnings = list(dict.fromkeys([*state.warnings, *judged]))  # the flow's own (no DC in scope, tag) first
    if verdict == "PASS" and warnings:
        verdict = "PASS WITH WARNINGS"
    data = data.model_copy(update={"verdict": verdict, "cause": cause, "warnings": warnings})
    for vm in vms:  # per-VM results (and each check), for the history of the tenant's drills
        run.store.record_drill_result(run_id=run.run_id, tenant_id=config.id, machine=vm.machine, check="recovered",
                                      passed=vm.status == "verified", detail=vm.error or vm.status,
                                      seconds=vm.verified_at_s)
        for c in vm.checks:
            run.store.record_drill_result(run_id=run.run_id, tenant_id=config.id, machine=vm.machine,
                                          check=c.check, passed=c.status == "passed", detail=c.detail,
                                          seconds=(c.finished - c.started).total_seconds())
    return data


def _write_files(data: DrillReportData, output_dir: str) -> dict[str, str]:
    """Write the report's files through the report module (the JSON data alone until it is installed)."""
    module = _report_module()
    if module is None:
        out = Path(output_dir) / data.tenant / "reports"
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"drill-{data.started:%Y%m%dT%H%M%SZ}-{data.run_id[:8]}.json"
        path.write_text(data.model_dump_json(indent=2))
        return {"json": str(path)}
    paths = module.write_report(data, output_dir)
    return {str(k): str(v) for k, v in (paths.items() if isinstance(paths, dict) else enumerate(paths))}


def _publish(run: RunContext, data: DrillReportData, paths: dict[str, str]) -> None:
    """Publish the report as Prefect artifacts and keep it in the state store (kind ``drill``)."""
    module = _report_module()
    if module is None:
        run.store.save_report(tenant_id=data.tenant, kind=REPORT_KIND, title=f"DR Test Report {data.verdict}",
                              content=data.model_dump_json(), fmt="json", run_id=data.run_id)
        return
    raw = {k: Path(v) for k, v in paths.items()}
    try:
        module.publish_artifacts(data, raw)
    except Exception as exc:  # noqa: BLE001 - artifacts are a view; the files and the store hold the report
        run.record(StepResult(step="publish_report", target=data.run_id).failed(exc))
    module.store_report(run.store, data, raw)


def _history(run: RunContext, tenant: str) -> list[HistoryPoint]:
    """Earlier drills of the tenant, oldest first, from their stored reports."""
    out: list[HistoryPoint] = []
    for rec in run.store.reports(tenant, kind=REPORT_KIND):
        if rec.format != "json" or rec.run_id == run.run_id:
            continue
        try:
            past = DrillReportData.model_validate_json(rec.content)
        except ValueError:
            continue
        out.append(HistoryPoint(run_id=past.run_id, started=past.started, verdict=past.verdict, rto_s=past.rto_s,
                                rpo_s=past.rpo_s))
    return sorted(out, key=lambda h: h.started)


def drill_incident_id(tenant: str) -> str:
    """The correlation id of the tenant's failed-drill incident (one at a time: reopened by a later failure)."""
    return f"drill-{tenant}"


def _resolve_failed_drill_incident(run: RunContext, site: Site, tenant: str) -> None:
    """A passing drill is the re-test the service definition asks for: it resolves the open failed-drill incident."""
    desk = site.servicedesk_block()
    cid = drill_incident_id(tenant)
    try:
        if active_incident_number(desk, cid) is not None:
            run.step(resolve_incident(desk, cid, close_notes=f"Re-test passed: drill run {run.run_id}."))
    except Exception as exc:  # noqa: BLE001 - a passing drill stays a passing drill; the audit trail has the error
        run.record(StepResult(step="resolve_incident", target=cid).failed(exc))


def _failed_drill(run: RunContext, state: _DrillState, data: DrillReportData, paths: dict[str, str],
                  site: Site) -> DrillReportData:
    """One incident with the report linked, and a re-test within a month inside business hours, noted on it."""
    config = state.config
    slot = retest_slot(config, data.finished)
    correlation = drill_incident_id(config.id)
    desk = site.servicedesk_block()
    links = "\n".join(f"{k}: {v}" for k, v in sorted(paths.items()))
    number: str | None = None
    try:
        opened = run.step(open_incident(desk, IncidentCreate(
            short_description=f"DR drill of {config.id} failed", urgency=2, impact=3,
            description=f"Drill run {run.run_id} requested by {run.requested_by}: FAIL.\nCause: {data.cause}\n"
                        f"Report:\n{links}", correlation_id=correlation, correlation_display=f"drill {config.id}")))
        number = getattr(opened.payload, "number", None) or opened.detail.get("number")
        if not opened.changed:  # the incident of an earlier failed drill: back in progress, with this failure
            run.step(reopen_incident(desk, correlation, f"Drill run {run.run_id} failed again: {data.cause}\n"
                                                        f"Report:\n{links}"))
    except Exception as exc:  # noqa: BLE001 - the failed drill's report matters more than the ticket
        run.record(StepResult(step="open_incident", target=correlation).failed(exc))
    scheduled = _schedule_retest(run, config, slot)
    try:
        run.step(add_work_note(desk, correlation, f"Re-test {scheduled} for {slot.isoformat()} "
                                                  f"({config.timezone}), drill run {run.run_id}"))
    except Exception as exc:  # noqa: BLE001
        run.record(StepResult(step="add_work_note", target=correlation).failed(exc))
    return data.model_copy(update={"incident": number, "retest_scheduled_for": slot})


def _schedule_retest(run: RunContext, config: TenantConfig, slot: datetime) -> str:
    """A scheduled flow run of the drill's deployment at ``slot``, when one is deployed; else the planned date."""
    try:
        from prefect import get_client
        from prefect.exceptions import ObjectNotFound
        from prefect.states import Scheduled

        with get_client(sync_client=True) as client:
            try:
                deployment = client.read_deployment_by_name(f"{FLOW_NAME}/{config.id}")  # deployments/deploy.py
            except ObjectNotFound:
                deployment = None
            if deployment is not None:
                flow_run = client.create_flow_run_from_deployment(
                    deployment.id, parameters={"tenant": config.id, "requested_by": run.requested_by,
                                                   "channel": "schedule"},
                    state=Scheduled(scheduled_time=slot.astimezone(UTC)))
                run.record(StepResult(step="schedule_retest", target=config.id).done(
                    changed=True, detail={"at": slot.isoformat(), "flow_run": str(flow_run.id)}))
                return f"scheduled as flow run {flow_run.id}"
    except Exception as exc:  # noqa: BLE001 - fall back to recording the planned date
        run.record(StepResult(step="schedule_retest", target=config.id).failed(exc))
        return "planned (scheduling failed)"
    run.record(StepResult(step="schedule_retest", target=config.id).done(
        changed=False, detail={"at": slot.isoformat(), "planned": True}))
    return "planned (no drill deployment)"


def _vm_table(data: DrillReportData) -> Section:
    rows = [[v.vm, str(v.wave), v.status, _s(v.powered_on_at_s), _s(v.verified_at_s), ", ".join(v.networks)]
            for v in data.vms]
    return Section(heading="Test VMs (seconds from the start of recovery)",
                   headers=["VM", "Wave", "Outcome", "Powered on", "Verified", "Networks"], rows=rows)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


__all__ = ["FLOW_NAME", "DrillFailed", "DrillRefused", "DrillResult", "drill", "retest_slot", "test_vm_name"]

"""The ``sweep-orphans`` flow: apply each crashed run's crash policy to what it left behind.

A flow that fails part way handles its own objects (undo, or hold for the operator); a flow
whose process is killed, or whose machine is lost, cannot. It leaves its run recorded as
``Running`` in the state store, and the objects it recorded in the ledger before creating them
(some created, some perhaps not). This flow finds such runs and applies their flow's crash
policy (recorded with the run):

1. list the runs the state store still has as running, and ask the Prefect API about each;
2. pick the ones that are dead: Prefect reports them Crashed, Failed or Cancelled, or has no
   such flow run at all, or has had them Cancelling for longer than ``older_than_minutes``.
   A run Prefect reports Scheduled, Pending, Running or Paused is never touched, nor one it
   reports Completed (what it built is in use), nor one of a flow Prefect has never heard of
   (probably the wrong Prefect server), nor a dead run whose tenant has a later run at work;
3. for a dead *undo* run (pre-provisioning, protection set-up, drills): remove the objects it
   recorded (newest first, through the ledger's handlers), verify none is left on its system,
   and mark the run ``Crashed`` with outcome ``swept``. When a later run of the same flow for
   the tenant succeeded, it took over the dead run's records: those objects stay;
4. for a dead *hold* run (failover, failback): remove **nothing** (recovered VMs and DNS or
   firewall cutover must never be destroyed automatically), mark the run ``NeedsOperator``
   with outcome ``held`` and list its objects for the operator; a re-run of the same flow
   resumes from the recorded state;
5. give the dead run's tenant back (its lease), and audit every decision under its tenant.

A run that cannot be fully cleaned up stays ``Running`` (so the next sweep retries it) and
the sweep ends Failed naming what is left. A second sweep changes nothing. ``dry_run=True``
lists the runs and what would happen to their objects and changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from prefect import flow, get_client, get_run_logger
from prefect.client.schemas.objects import State, StateType
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from pydantic import BaseModel

from draas.errors import PermanentError
from draas.ledger import describe, remove_records
from draas.models.results import StepResult
from draas.reports.run_summary import Section
from draas.site import Site
from draas.state.store import StateStore
from draas.state.tables import FlowRunRecord, utcnow
from flows.runbook import CrashPolicy, RunContext, error_text
from tasks.ledger import remove_recorded_object, verify_records_removed

FLOW_NAME = "sweep-orphans"
ACTION = "sweep_orphans"
#: The state a held run is left in: its objects stay, an operator decides (or a re-run resumes).
NEEDS_OPERATOR = "NeedsOperator"

#: Prefect states in which the flow's process may still be at work: such a run is never touched.
ACTIVE = frozenset({StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED})
#: Final states in which the run gave up; its own clean-up may not have happened, or not finished.
GAVE_UP = frozenset({StateType.CRASHED, StateType.FAILED, StateType.CANCELLED})


class SweepIncomplete(PermanentError):
    """Some objects of a crashed run could not be removed; the run stays for the next sweep."""


class RunVerdict(BaseModel):
    """What the sweep makes of one run the state store still has as running."""

    run_id: str
    flow: str
    tenant: str | None
    started: datetime
    prefect_state: str | None  # None: Prefect has no such flow run
    sweep: bool
    reason: str
    adopted_by: str | None = None  # a later successful run of the same flow took over its objects


class SweptRun(BaseModel):
    """A crashed run and what the sweep removed (or, in a dry run, would remove) for it."""

    run_id: str
    flow: str
    tenant: str | None
    reason: str
    objects: list[str]
    policy: str = "undo"  # undo: objects removed; hold: objects kept for the operator
    changed: int = 0  # removals that changed a system (the rest were already gone)


class SweepResult(BaseModel):
    run_id: str
    dry_run: bool
    changed: bool
    swept: list[SweptRun]
    left_alone: list[RunVerdict]
    steps: list[StepResult]


def judge_run(run: FlowRunRecord, state: State | None, *, flow_known: bool, now: datetime,
              older_than: timedelta) -> RunVerdict:
    """Decide whether a run recorded as running is dead, from what Prefect says about it.

    Args:
        run: the state store's record of the run.
        state: the Prefect flow run's current state; None when Prefect has no such flow run.
        flow_known: Prefect knows a flow of the run's name (it is the server the run ran on).
        now: the current time.
        older_than: how long a run may sit in Cancelling before it counts as dead.
    """

    def verdict(sweep: bool, reason: str) -> RunVerdict:
        return RunVerdict(run_id=run.id, flow=run.flow, tenant=run.tenant_id, started=run.started,
                          prefect_state=state.name if state else None, sweep=sweep, reason=reason)

    if state is None:
        if not flow_known:
            # Most likely the wrong Prefect server (every id would look missing there): never
            # remove a tenant's objects on that evidence alone.
            return verdict(False, f"Prefect knows neither this flow run nor a flow {run.flow!r}: "
                                  "is this the Prefect server the run ran on?")
        return verdict(True, "Prefect has no such flow run")
    if state.type in ACTIVE:
        return verdict(False, f"Prefect reports it {state.name}")
    if state.type in GAVE_UP:
        return verdict(True, f"Prefect reports it {state.name}")
    if state.type == StateType.CANCELLING:
        since = max(run.started, state.timestamp) if state.timestamp else run.started
        if now - since > older_than:
            # A cancellation nobody finished: the process that should have ended it is gone.
            return verdict(True, f"Prefect has had it {state.name} for more than "
                                 f"{older_than.total_seconds() / 60:g} minutes")
        return verdict(False, f"Prefect reports it {state.name}")
    # Completed in Prefect yet never finished in the store: whatever it built is believed to be
    # in use, so removing it on this evidence could tear down a working container.
    return verdict(False, f"Prefect reports it {state.name}, but its end was never recorded: check it by hand")


def judge_running_runs(store: StateStore, *, older_than: timedelta, exclude: str | None = None) -> list[RunVerdict]:
    """A verdict for every run the state store has as running (but ``exclude``), oldest first."""
    verdicts: list[RunVerdict] = []
    now = utcnow()
    flows_known: dict[str, bool] = {}
    with get_client(sync_client=True) as client:
        for run in store.running_runs():
            if run.id == exclude:
                continue
            state: State | None = None
            try:
                state = client.read_flow_run(UUID(run.id)).state
            except (ValueError, ObjectNotFound):  # not a flow run id at all, or no such flow run
                pass
            if state is None and run.flow not in flows_known:
                try:
                    client.read_flow_by_name(run.flow)
                    flows_known[run.flow] = True
                except (ObjectNotFound, PrefectHTTPStatusError) as exc:
                    # Prefect 3.8's sync client raises the bare 404 here, not ObjectNotFound.
                    if isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code != 404:
                        raise
                    flows_known[run.flow] = False
            verdicts.append(judge_run(run, state, flow_known=flows_known.get(run.flow, True), now=now,
                                      older_than=older_than))
    live = {v.run_id for v in verdicts if not v.sweep}
    return [weigh_later_runs(v, [r for r in store.runs(tenant_id=v.tenant) if r.started > v.started], live)
            if v.sweep and v.tenant else v for v in verdicts]


def weigh_later_runs(verdict: RunVerdict, later: list[FlowRunRecord], live: set[str]) -> RunVerdict:
    """Refine a dead run's verdict by the runs of its tenant that started after it.

    The store hands an object's existing record to whichever run records it again, so a later
    run of the same flow that succeeded has adopted the dead run's objects and built on them:
    they stay. A later run that may still be at work could be relying on them right now: the
    dead run waits for the next sweep.
    """
    busy = next((r for r in later if r.id in live), None)
    if busy is not None:
        return verdict.model_copy(update={"sweep": False, "reason": f"{verdict.reason}, but a later run "
                                          f"{busy.id} of tenant {verdict.tenant} may still be using its objects"})
    adopter = next((r for r in later if r.flow == verdict.flow and r.outcome == "success"), None)
    if adopter is not None:
        return verdict.model_copy(update={"adopted_by": adopter.id, "reason": f"{verdict.reason}; its objects "
                                          f"were adopted by the later successful run {adopter.id}"})
    return verdict


@flow(name=FLOW_NAME)
def sweep_orphans(older_than_minutes: float = 30, requested_by: str = "operator", channel: str = "schedule",
                  config_dir: str | None = None, dry_run: bool = False) -> SweepResult:
    """Apply each crashed run's crash policy: remove an *undo* run's objects, hold a *hold* run's.

    Args:
        older_than_minutes: how long a run may sit in Cancelling before it is swept.
        requested_by: who asked (audit log).
        channel: how they asked: schedule, cli, ui, api.
        config_dir: a directory whose site.yaml names the systems (default configs/site.yaml).
        dry_run: list the runs and objects that would be swept; change nothing.

    Raises:
        SweepIncomplete: some objects could not be removed (their runs stay for the next sweep).
    """
    site = Site.for_config_dir(config_dir)
    log = get_run_logger()
    run = RunContext(FLOW_NAME, action=ACTION, requested_by=requested_by, channel=channel, policy=CrashPolicy.NONE,
                     dry_run=dry_run, title="Crashed runs", site=site,
                     parameters={"older_than_minutes": older_than_minutes, "config_dir": config_dir,
                                 "dry_run": dry_run})
    swept: list[SweptRun] = []
    left_alone: list[RunVerdict] = []
    leftovers: list[str] = []
    with run.started():
        verdicts = judge_running_runs(run.store, older_than=timedelta(minutes=older_than_minutes),
                                      exclude=run.run_id)
        for v in verdicts:
            log.info("run %s (%s, tenant %s): %s: %s", v.run_id, v.flow, v.tenant,
                     "sweep" if v.sweep else "leave alone", v.reason)
        left_alone = [v for v in verdicts if not v.sweep]
        for v in (v for v in verdicts if v.sweep):
            current = run.store.get_run(v.run_id)
            if current is None or current.state != "Running":  # a concurrent sweep got there first
                continue
            policy = current.crash_policy or CrashPolicy.UNDO.value  # runs recorded before policies: undo
            # Adopted objects are in use by the run that adopted them: only the record is closed.
            records = [] if v.adopted_by else run.store.run_objects(v.run_id)
            entry = SweptRun(run_id=v.run_id, flow=v.flow, tenant=v.tenant, reason=v.reason, policy=policy,
                             objects=[describe(r) for r in records])
            if dry_run:
                swept.append(entry)
                continue
            if policy == CrashPolicy.HOLD.value:
                _hold(run, v, entry)
                swept.append(entry)
                continue
            report = remove_records(records, lambda rec: run.step(remove_recorded_object(rec.id, site)))
            errors = [f"{lo.what}: {lo.error}" for lo in report.leftovers]
            entry.changed = report.changed
            if records and not errors:
                try:
                    run.step(verify_records_removed([r.id for r in records if r.id is not None], site))
                except Exception as exc:  # noqa: BLE001 - reported below; the run stays for the next sweep
                    errors.append(error_text(exc))
            if errors:
                leftovers += [f"run {v.run_id}: {e}" for e in errors]
                run.audit("failed", {"swept_by": run.run_id, "reason": v.reason, "leftovers": errors},
                          tenant=v.tenant, about=v.run_id, action="sweep_crashed_run")
                continue
            run.store.finish_run(v.run_id, state="Crashed", outcome="swept",
                                 error=f"{v.reason}; swept by {FLOW_NAME} run {run.run_id}")
            _free_tenant(run, v)
            run.audit("swept", {"swept_by": run.run_id, "reason": v.reason, "objects": entry.objects,
                                "changed": entry.changed, "adopted_by": v.adopted_by},
                      tenant=v.tenant, about=v.run_id, action="sweep_crashed_run")
            swept.append(entry)
        run.finish(f"Crashed runs: {'would sweep' if dry_run else 'swept'} {len(swept)}, "
                   f"left {len(left_alone)} alone", sections=_sections(dry_run, swept, left_alone),
                   detail={"dry_run": dry_run, "swept": [s.run_id for s in swept],
                           "left_alone": [v.run_id for v in left_alone]})
        if leftovers:
            raise SweepIncomplete(f"{len(leftovers)} object(s) of crashed runs not removed (left for the next "
                                  "sweep):\n" + "\n".join(leftovers))
    changed = run.changed or bool(swept and not dry_run)
    return SweepResult(run_id=run.run_id, dry_run=dry_run, changed=changed, swept=swept, left_alone=left_alone,
                       steps=run.steps)


def _hold(run: RunContext, v: RunVerdict, entry: SweptRun) -> None:
    """A dead *hold* run: keep every object, mark the run for the operator (a re-run resumes)."""
    run.store.finish_run(v.run_id, state=NEEDS_OPERATOR, outcome="held",
                         error=f"{v.reason}; its objects are kept for the operator (crash policy hold): "
                               f"re-run {v.flow} to resume, found by {FLOW_NAME} run {run.run_id}")
    _free_tenant(run, v)
    run.audit("held_for_operator", {"swept_by": run.run_id, "reason": v.reason, "objects": entry.objects},
              tenant=v.tenant, about=v.run_id, action="sweep_crashed_run")


def _free_tenant(run: RunContext, v: RunVerdict) -> None:
    if v.tenant:
        run.store.release_lease(v.tenant, run_id=v.run_id)


def _sections(dry_run: bool, swept: list[SweptRun], left_alone: list[RunVerdict]) -> list[Section]:
    return [
        Section(heading="Would sweep" if dry_run else "Swept", headers=["Run", "Flow", "Tenant", "Policy", "Why",
                                                                        "Objects"],
                rows=[[f"`{s.run_id}`", s.flow, s.tenant or "", s.policy, s.reason,
                       "<br>".join(s.objects) or "none"] for s in swept]),
        Section(heading="Left alone", headers=["Run", "Flow", "Tenant", "Why"],
                rows=[[f"`{v.run_id}`", v.flow, v.tenant or "", v.reason] for v in left_alone]),
    ]

"""The ``sweep-crashed-runs`` flow: clean up what a crashed flow run left behind.

A flow that fails part way removes what it recorded itself; a flow whose process is killed,
or whose machine is lost, cannot. It leaves its run recorded as ``Running`` in the state
store, and the objects it recorded before creating them (some created, some perhaps not).
This flow finds such runs and finishes their job:

1. list the runs the state store still has as running, and ask the Prefect API about each;
2. pick the ones that are dead: Prefect reports them Crashed, Failed or Cancelled, or has no
   such flow run at all, or has had them Cancelling for longer than ``older_than_minutes``.
   A run Prefect reports Scheduled, Pending, Running or Paused is never touched, nor one it
   reports Completed (what it built is in use), nor one of a flow Prefect has never heard of
   (probably the wrong Prefect server), nor a dead run whose tenant has a later run at work;
3. for each, remove the objects that run recorded (newest first), verify none is left on a
   device or in vCenter, and mark the run ``Crashed`` with outcome ``swept``. When a later run
   of the same flow for the tenant succeeded, it took over the dead run's records (the store
   hands an object's record to whoever records it again): those objects stay;
4. audit every swept run under its tenant, and the sweep itself.

A run that cannot be fully cleaned up stays ``Running`` (so the next sweep retries it) and
the sweep ends Failed naming what is left. A second sweep changes nothing. ``dry_run=True``
lists the runs and the objects that would be removed and changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from prefect import flow, get_client, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import State, StateType
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.runtime import flow_run
from pydantic import BaseModel

from draas.errors import PermanentError
from draas.models.results import StepResult
from draas.site import Site
from draas.state.store import StateStore
from draas.state.tables import FlowRunRecord, ProvisionedObject, utcnow
from flows.runbook import error_text, steps_table
from tasks.container import remove_provisioned_object, verify_objects_removed

FLOW_NAME = "sweep-crashed-runs"
ACTION = "sweep_crashed_runs"

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
    changed: int = 0  # removals that changed a device or vCenter (the rest were already gone)


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


def describe(rec: ProvisionedObject) -> str:
    """One recorded object, for lists and the audit log (no lines: they may hold masked secrets)."""
    where = "/".join(p for p in (rec.device, rec.context) if p)
    return f"{rec.system} {rec.kind} {rec.name}" + (f" on {where}" if where and where != rec.name else "")


@flow(name=FLOW_NAME)
def sweep_crashed_runs(older_than_minutes: float = 30, requested_by: str = "operator", channel: str = "schedule",
                       config_dir: str | None = None, dry_run: bool = False) -> SweepResult:
    """Remove what crashed flow runs recorded, verify it is gone, and mark those runs Crashed.

    Args:
        older_than_minutes: how long a run may sit in Cancelling before it is swept.
        requested_by: who asked (audit log).
        channel: how they asked: schedule, cli, ui, api.
        config_dir: a directory whose site.yaml names the systems (default configs/site.yaml).
        dry_run: list the runs and objects that would be swept; change nothing.

    Raises:
        SweepIncomplete: some objects could not be removed (their runs stay for the next sweep).
    """
    run_id = str(flow_run.id)
    store = StateStore()
    site = Site.for_config_dir(config_dir)
    log = get_run_logger()
    parameters = {"older_than_minutes": older_than_minutes, "config_dir": config_dir, "dry_run": dry_run}
    steps: list[StepResult] = []
    swept: list[SweptRun] = []
    left_alone: list[RunVerdict] = []
    leftovers: list[str] = []

    def audit(outcome: str, detail: dict, *, tenant: str | None = None, about: str | None = None,
              action: str = ACTION) -> None:
        store.audit(actor=requested_by, action=action, channel=channel, outcome=outcome, tenant_id=tenant,
                    run_id=about or run_id, detail=detail)

    def step(result: StepResult) -> StepResult:
        if not dry_run:
            store.record_step(run_id, result)
        steps.append(result)
        return result

    audit("accepted", {"dry_run": dry_run, "older_than_minutes": older_than_minutes})
    if not dry_run:
        store.start_run(run_id, flow=FLOW_NAME, kind=ACTION, parameters=parameters)
    try:
        verdicts = judge_running_runs(store, older_than=timedelta(minutes=older_than_minutes), exclude=run_id)
        for v in verdicts:
            log.info("run %s (%s, tenant %s): %s: %s", v.run_id, v.flow, v.tenant,
                     "sweep" if v.sweep else "leave alone", v.reason)
        left_alone = [v for v in verdicts if not v.sweep]
        for v in (v for v in verdicts if v.sweep):
            current = store.get_run(v.run_id)
            if current is None or current.state != "Running":  # a concurrent sweep got there first
                continue
            # Adopted objects are in use by the run that adopted them: only the record is closed.
            records = [] if v.adopted_by else store.run_objects(v.run_id)
            entry = SweptRun(run_id=v.run_id, flow=v.flow, tenant=v.tenant, reason=v.reason,
                             objects=[describe(r) for r in records])
            if dry_run:
                swept.append(entry)
                continue
            errors: list[str] = []
            for rec in records:  # newest first: a block is removed before what it depends on
                assert rec.id is not None
                try:
                    entry.changed += step(remove_provisioned_object(rec.id, site)).changed
                except Exception as exc:  # noqa: BLE001 - remove what can be removed, report the rest
                    errors.append(f"{describe(rec)}: {error_text(exc)}")
            if records and not errors:
                try:
                    step(verify_objects_removed([r.id for r in records if r.id is not None], site))
                except Exception as exc:  # noqa: BLE001 - reported below; the run stays for the next sweep
                    errors.append(error_text(exc))
            if errors:
                leftovers += [f"run {v.run_id}: {e}" for e in errors]
                audit("failed", {"swept_by": run_id, "reason": v.reason, "leftovers": errors},
                      tenant=v.tenant, about=v.run_id, action="sweep_crashed_run")
                continue
            store.finish_run(v.run_id, state="Crashed", outcome="swept",
                             error=f"{v.reason}; swept by {FLOW_NAME} run {run_id}")
            audit("swept", {"swept_by": run_id, "reason": v.reason, "objects": entry.objects,
                            "changed": entry.changed, "adopted_by": v.adopted_by},
                  tenant=v.tenant, about=v.run_id, action="sweep_crashed_run")
            swept.append(entry)
        if leftovers:
            raise SweepIncomplete(f"{len(leftovers)} object(s) of crashed runs not removed (left for the next "
                                  "sweep):\n" + "\n".join(leftovers))
    except Exception as exc:
        if not dry_run:
            store.finish_run(run_id, state="Failed", outcome="failure", error=error_text(exc))
        audit("failed", {"dry_run": dry_run, "error": error_text(exc), "swept": [s.run_id for s in swept]})
        _summary(run_id, dry_run, swept, left_alone, steps, exc)
        raise
    if not dry_run:
        store.finish_run(run_id, state="Completed", outcome="success")
    changed = any(s.changed for s in steps) or bool(swept and not dry_run)
    audit("succeeded", {"dry_run": dry_run, "changed": changed, "swept": [s.run_id for s in swept],
                        "left_alone": [v.run_id for v in left_alone]})
    _summary(run_id, dry_run, swept, left_alone, steps, None)
    return SweepResult(run_id=run_id, dry_run=dry_run, changed=changed, swept=swept, left_alone=left_alone,
                       steps=steps)


def _summary(run_id: str, dry_run: bool, swept: list[SweptRun], left_alone: list[RunVerdict],
             steps: list[StepResult], exc: BaseException | None) -> None:
    verb = "would sweep" if dry_run else "swept"
    lines = [f"# Crashed runs: {verb} {len(swept)}, left {len(left_alone)} alone", "",
             f"Flow run `{run_id}`{' (dry run: nothing was changed)' if dry_run else ''}", ""]
    if exc is not None:
        lines += ["## Error", "", "```", error_text(exc), "```", ""]
    lines += ["## Swept" if not dry_run else "## Would sweep", "", "| Run | Flow | Tenant | Why | Objects |",
              "|---|---|---|---|---|"]
    lines += [f"| `{s.run_id}` | {s.flow} | {s.tenant or ''} | {s.reason} | "
              f"{'<br>'.join(o.replace('|', '/') for o in s.objects) or 'none'} |" for s in swept]
    lines += ["", "## Left alone", "", "| Run | Flow | Tenant | Why |", "|---|---|---|---|"]
    lines += [f"| `{v.run_id}` | {v.flow} | {v.tenant or ''} | {v.reason} |" for v in left_alone]
    lines += ["", "## Steps", "", *steps_table(steps), ""]
    create_markdown_artifact(markdown="\n".join(lines) + "\n", key=FLOW_NAME,
                             description=f"sweep-crashed-runs: {verb} {len(swept)}")

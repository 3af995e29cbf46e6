"""One run context for every flow: admit or refuse, record, audit, show progress, summarise, clean up.

A flow is a short runbook inside a :class:`RunContext`::

    run = RunContext(FLOW_NAME, action="preprovision_container", tenant=tenant, policy=CrashPolicy.UNDO,
                     requested_by=requested_by, channel=channel, parameters={...}, exclusive=True)
    with run.admission():                 # checks only: a failure here is audited once as "refused"
        valid = validate_tenant_config(tenant, config_dir)
    with run.started(total_steps=n):      # takes the tenant, records the run, opens shared sessions
        run.step(push_device_config(...))
        ...
        run.finish("Container for acme: complete", sections=[...])

What the context guarantees:

- **Refusals are audited** once, with the reason, before anything changes: invalid config,
  unknown tenant, unauthorised requester (:meth:`authorise`), tenant busy.
- **Run ids are the Prefect flow-run id**; the run is recorded with its flow's *crash policy*
  (:class:`CrashPolicy`) so the sweeper knows what to do if the process dies.
- **Per-tenant exclusivity** (``exclusive=True``): at most one state-changing run per tenant,
  through a lease in the state store renewed by a heartbeat while the run lives; a second run
  waits up to ``wait_s`` and is then refused naming the holder. A killed holder stops renewing,
  its lease expires (``DRAAS_LEASE_TTL_S``, default 60 s), and the tenant is free again.
- **One session per system per run**: a session pool is open for the run (draas/sessions.py).
- **Time budget**: ``budget_s`` (the tenant's RTO for recovery flows) becomes the run's deadline,
  which retries of transient errors respect.
- **On failure**, an *undo* run removes what it recorded, newest first, through the ledger; a
  *hold* run keeps everything for the operator and a resume. Either way the run is marked
  Failed with the cause, audited, summarised, and the exception propagates.

Dry runs write nothing to the state store (only the audit trail and artifacts).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any, cast
from uuid import UUID, uuid4

from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run

from draas import sessions
from draas.deadline import Deadline, set_run_deadline
from draas.errors import PermanentError
from draas.ledger import RemovalReport, remove_records
from draas.models.results import StepResult
from draas.reports.run_summary import RunSummaryView, Section, render_run_summary
from draas.state.store import StateStore


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class CrashPolicy(StrEnum):
    """What happens to a run's objects when its process dies (the sweeper applies it)."""

    UNDO = "undo"   # remove them: pre-provisioning, protection set-up, drills and their bubbles
    HOLD = "hold"   # keep them, mark the run for the operator; a re-run resumes: failover, failback
    NONE = "none"   # the flow records no objects (onboarding, sweeps)


class RequestRefused(PermanentError):
    """The request was refused before anything changed; the message says why."""


class TenantBusy(RequestRefused):
    """Another state-changing run holds the tenant."""


class UnknownTenant(RequestRefused):
    """The tenant is not known (not onboarded, no records)."""


class NotAuthorised(RequestRefused):
    """``requested_by`` is not an authorised person of the tenant with the role the action needs."""


def lease_ttl_s() -> float:
    return float(os.environ.get("DRAAS_LEASE_TTL_S", "60"))


def ticket_note(title: str, run_id: str, outcome: str, error: str | None, facts: dict[str, Any],
                ui_url: str | None) -> str:
    """The work note a requester's ticket gets when the run ends (outcome, RTO/RPO, report, links)."""
    lines = [f"DRaaS: {title} - {outcome}" + (f" ({facts['verdict']})" if facts.get("verdict") else ""),
             f"Run: {run_id}"]
    if error:
        lines.append(f"Cause: {error}")
    figures = [f"{label} {facts[key]:.1f} s" for key, label in (("rto_s", "RTO"), ("rpo_s", "RPO"), ("data_loss_s", "data loss"))
               if isinstance(facts.get(key), int | float)]
    if figures:
        lines.append(", ".join(figures))
    for kind, where in sorted((facts.get("report") or {}).items()):
        lines.append(f"Report ({kind}): {where}")
    if ui_url:
        lines.append(f"Prefect: {ui_url}")
    return "\n".join(lines)


def _ui_url(run_id: str) -> str | None:
    try:
        from prefect.settings import PREFECT_UI_URL

        base = PREFECT_UI_URL.value()
    except Exception:  # noqa: BLE001 - no UI configured
        return None
    return f"{str(base).rstrip('/')}/runs/flow-run/{run_id}" if base else None


class RunContext:
    """One flow run's admission, record, audit trail, progress, summary and clean-up."""

    def __init__(self, flow: str, *, action: str, requested_by: str, channel: str,
                 parameters: dict[str, Any], policy: CrashPolicy, tenant: str | None = None,
                 kind: str | None = None, dry_run: bool = False, exclusive: bool = False, wait_s: float = 0.0,
                 budget_s: float | None = None, title: str | None = None, artifact_key: str | None = None,
                 store: StateStore | None = None, site: Any = None) -> None:
        self.run_id = str(flow_run.id or uuid4())  # no flow run id only when called through ``.fn()``
        self.flow, self.action, self.kind = flow, action, kind or action
        self.tenant, self.requested_by, self.channel = tenant, requested_by, channel
        self.parameters, self.policy, self.dry_run = parameters, policy, dry_run
        self.exclusive, self.wait_s, self.budget_s = exclusive and tenant is not None, wait_s, budget_s
        self.title = title or (f"{flow} {tenant}" if tenant else flow)
        self.key = f"{artifact_key or flow}-{tenant}" if tenant else (artifact_key or flow)
        self.store = store or StateStore()
        self.site = site
        self.steps: list[StepResult] = []
        self.deadline: Deadline | None = None
        self.total = 1
        self._progress: UUID | None = None
        self._finished: tuple[str, list[Section], dict[str, Any]] | None = None
        self._heartbeat: threading.Thread | None = None
        self._stop = threading.Event()
        self._failure_hooks: list[Any] = []
        #: The service-desk ticket that asked for this run: it hears the outcome when the run ends.
        self.ticket: str | None = (parameters.get("ticket") or None) if not dry_run else None
        #: What the ticket's note reports besides the outcome (``rto_s``, ``rpo_s``, ``report``...).
        self.facts: dict[str, Any] = {}

    # -- audit ---------------------------------------------------------------------------------
    def audit(self, outcome: str, detail: dict[str, Any] | None = None, *, action: str | None = None,
              tenant: str | None = None, about: str | None = None) -> None:
        who = tenant if tenant is not None else self.tenant
        self.store.audit(actor=self.requested_by, action=action or self.action, channel=self.channel,
                         outcome=outcome, tenant_id=who, run_id=about or self.run_id,
                         detail={**({"tenant": who} if who else {}), **(detail or {})})

    # -- admission -----------------------------------------------------------------------------
    @contextmanager
    def admission(self) -> Iterator[RunContext]:
        """Checks that change nothing; any exception is audited once as refused, summarised, re-raised."""
        try:
            yield self
        except Exception as exc:
            self.refuse(exc)
            raise

    def refuse(self, exc: BaseException) -> None:
        """Audit a refusal with its reason and publish it; nothing else is written."""
        problems = [str(p) for p in getattr(exc, "problems", [])]
        self.audit("refused", {"reason": error_text(exc), **({"problems": problems} if problems else {})})
        self._publish(RunSummaryView(title=f"{self.title}: refused", run_id=self.run_id, dry_run=self.dry_run,
                                     refused=error_text(exc), steps=[]))
        self._tell_ticket("Refused", error_text(exc), recorded=False)

    def authorise(self, tenant_config: Any, role: str) -> None:
        """Refuse unless ``requested_by`` is an authorised person of the tenant with ``role``."""
        who = self.requested_by.strip().lower()
        for person in getattr(tenant_config, "authorised_persons", []):
            if person.email.lower() == who:
                if role in {getattr(r, "value", r) for r in person.roles}:
                    return
                raise NotAuthorised(f"{self.requested_by} is an authorised person of {tenant_config.id} but "
                                    f"lacks the role {role!r} (has: {', '.join(str(getattr(r, 'value', r)) for r in person.roles)})")
        raise NotAuthorised(f"{self.requested_by!r} is not an authorised person of tenant {tenant_config.id}")

    # -- the run -------------------------------------------------------------------------------
    @contextmanager
    def started(self, total_steps: int = 1) -> Iterator[RunContext]:
        """Take the tenant (if exclusive), record the run, open sessions; on failure undo or hold."""
        self.total = max(total_steps, 1)
        if self.exclusive and not self.dry_run:
            self._take_tenant()
        try:
            if not self.dry_run:
                self.store.start_run(self.run_id, flow=self.flow, tenant_id=self.tenant, kind=self.kind,
                                     parameters=self.parameters, crash_policy=self.policy.value)
            self.audit("accepted", {"dry_run": True} if self.dry_run else None)
            self._progress = cast(UUID, create_progress_artifact(
                progress=0.0, key=f"{self.key}-progress", description=f"{self.title}: started"))
            sessions.open_pool(self.run_id)
            if self.budget_s is not None:
                self.deadline = Deadline.within(self.budget_s, f"time budget of {self.flow} {self.tenant or ''}")
                set_run_deadline(self.run_id, self.deadline)
            try:
                yield self
            except BaseException as exc:
                self._fail(exc)
                self._tell_ticket("Failed", error_text(exc), recorded=not self.dry_run)
                raise
            self._succeed()
            self._tell_ticket("Completed", None, recorded=not self.dry_run)
        finally:
            sessions.close_pool(self.run_id)
            set_run_deadline(self.run_id, None)
            self._give_tenant_back()

    def step(self, result: StepResult) -> StepResult:
        """Record a finished step and advance the progress artifact."""
        if not self.dry_run:
            self.store.record_step(self.run_id, result)
        self.steps.append(result)
        done = min(len(self.steps), self.total)
        if self._progress is not None:
            update_progress_artifact(self._progress, progress=100.0 * done / self.total,
                                     description=f"{done}/{self.total}: {result.step} {result.target}")
        return result

    def record(self, result: StepResult) -> StepResult:
        """Record a finished step without touching the progress artifact (for steps by the hundred)."""
        if not self.dry_run:
            self.store.record_step(self.run_id, result)
        self.steps.append(result)
        return result

    def progress(self, percent: float, description: str) -> None:
        """Set the progress artifact (the recovery engine reports VMs verified / total this way)."""
        if self._progress is not None:
            update_progress_artifact(self._progress, progress=max(0.0, min(percent, 100.0)), description=description)

    def on_failure(self, hook: Any) -> None:
        """Call ``hook(exc)`` after a failed run's undo (e.g. a note on the change record)."""
        self._failure_hooks.append(hook)

    def finish(self, title: str, sections: list[Section] | None = None, detail: dict[str, Any] | None = None) -> None:
        """Set the success summary (the run ends Completed when the ``started`` block exits)."""
        self._finished = (title, sections or [], detail or {})
        self.facts.update(detail or {})

    @property
    def changed(self) -> bool:
        return any(s.changed for s in self.steps)

    # -- undo ----------------------------------------------------------------------------------
    def undo(self) -> RemovalReport:
        """Remove every object this run recorded, newest first, through the ledger (each removal a step)."""
        from tasks.ledger import remove_recorded_object

        records = self.store.run_objects(self.run_id)
        report = remove_records(records, lambda rec: self.step(remove_recorded_object(rec.id, self.site)))
        if report.leftovers:
            self.audit("rollback_incomplete", {"leftovers": [f"{lo.what}: {lo.error}" for lo in report.leftovers]})
        return report

    # -- internals -----------------------------------------------------------------------------
    def _succeed(self) -> None:
        title, sections, detail = self._finished or (f"{self.title}: done", [], {})
        if not self.dry_run:
            self.store.finish_run(self.run_id, state="Completed", outcome="success")
        self.audit("succeeded", {"changed": self.changed, **detail})
        self._publish(RunSummaryView(title=title, run_id=self.run_id, dry_run=self.dry_run, steps=self.steps,
                                     sections=sections))

    def _fail(self, exc: BaseException) -> None:
        outcome = "failure"
        title = f"{self.title}: failed"
        if not self.dry_run and self.policy == CrashPolicy.UNDO:
            report = self.undo()
            title += ", this run's objects removed" if report.complete else ", some objects left (see audit)"
        elif not self.dry_run and self.policy == CrashPolicy.HOLD:
            outcome = "held"
            title += ", everything kept for the operator (re-run to resume)"
        for hook in self._failure_hooks:
            try:
                hook(exc)
            except Exception:  # noqa: BLE001, S110 - a failing notification must not hide the cause
                pass
        if not self.dry_run:
            self.store.finish_run(self.run_id, state="Failed", outcome=outcome, error=error_text(exc))
        self.audit("failed", {"error": error_text(exc), "failed_after": self.steps[-1].step if self.steps else None})
        self._publish(RunSummaryView(title=title, run_id=self.run_id, dry_run=self.dry_run, error=error_text(exc),
                                     steps=self.steps))

    def _tell_ticket(self, outcome: str, error: str | None, *, recorded: bool) -> None:
        """A work note on the requester's ticket with the outcome; resolved when the run Completed.

        A ticket that cannot be updated never changes the run's outcome: the failure is a recorded
        step (or, for a refusal, which records nothing, an audit entry).
        """
        if not self.ticket:
            return
        from tasks.servicedesk import update_ticket

        note = ticket_note(self.title, self.run_id, outcome, error, self.facts, _ui_url(self.run_id))
        try:
            site = self.site
            if site is None:
                from draas.site import Site

                site = Site.for_config_dir(self.parameters.get("config_dir"))
            result = update_ticket(site.servicedesk_block(), self.ticket, note, resolve=outcome == "Completed",
                                   close_notes=f"{self.title}: {outcome} (run {self.run_id})")
        except Exception as exc:  # noqa: BLE001 - the run's own outcome stands
            result = StepResult(step="update_ticket", target=self.ticket).failed(exc)
        if recorded:
            self.record(result)
        else:
            self.audit("ticket_updated" if result.status != "failed" else "ticket_update_failed",
                       {"ticket": self.ticket, **({"error": result.error} if result.error else {})})

    def _publish(self, view: RunSummaryView) -> None:
        try:
            create_markdown_artifact(markdown=render_run_summary(view), key=self.key, description=view.title)
        except Exception:  # noqa: BLE001, S110 - outside a flow run (``.fn()``) there is nowhere to publish
            pass

    def _take_tenant(self) -> None:
        assert self.tenant is not None
        deadline = time.monotonic() + max(self.wait_s, 0.0)
        while True:
            taken, holder = self.store.acquire_lease(self.tenant, run_id=self.run_id, flow=self.flow,
                                                     ttl_s=lease_ttl_s())
            if taken:
                break
            held_by = self.store.get_run(holder.run_id)
            if held_by is not None and held_by.state != "Running":
                # The holder ended without giving the tenant back (a failed release): its lease is stale.
                self.store.release_lease(self.tenant, run_id=holder.run_id)
                continue
            if time.monotonic() >= deadline:
                exc = TenantBusy(f"tenant {self.tenant} is busy: {holder.flow} run {holder.run_id} holds it "
                                 f"(since {holder.acquired_at:%Y-%m-%d %H:%M:%SZ}); waited {self.wait_s:g} s")
                self.refuse(exc)
                raise exc
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        self._stop.clear()
        self._heartbeat = threading.Thread(target=self._renew, name=f"lease-{self.tenant}", daemon=True)
        self._heartbeat.start()

    def _renew(self) -> None:
        ttl = lease_ttl_s()
        while not self._stop.wait(max(ttl / 3, 0.2)):
            try:
                self.store.renew_lease(self.tenant or "", run_id=self.run_id, ttl_s=ttl)
            except Exception:  # noqa: BLE001, S112 - a missed renewal is retried at the next beat
                continue

    def _give_tenant_back(self) -> None:
        if self._heartbeat is None:
            return
        self._stop.set()
        self._heartbeat.join(timeout=5)
        self._heartbeat = None
        self.store.release_lease(self.tenant or "", run_id=self.run_id)

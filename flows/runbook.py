"""What every flow does around its steps: record the run, audit it, show progress, summarise.

A flow creates one :class:`RunRecord` after validating its input, passes each StepResult
through :meth:`RunRecord.step`, and ends with :meth:`succeeded` or :meth:`failed`. Dry runs
write nothing to the state store (only artifacts), so a dry run changes nothing anywhere.
"""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)

from draas.models.results import StepResult
from draas.state.store import StateStore


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def steps_table(steps: list[StepResult]) -> list[str]:
    """Markdown table of steps: what each changed and how long it took."""
    lines = ["| # | Step | Target | Changed | Seconds | Changes |", "|---|---|---|---|---|---|"]
    for i, s in enumerate(steps, start=1):
        changes = "<br>".join(d.replace("|", "\\|") for d in s.diff[:40]) or "none"
        if len(s.diff) > 40:
            changes += f"<br>... {len(s.diff) - 40} more"
        changed = ("would change" if s.dry_run else "yes") if s.changed else "no"
        lines.append(f"| {i} | {s.step} | {s.target.replace('|', '/')} | {changed} | {s.seconds:.2f} | {changes} |")
    return lines


class RunRecord:
    """One flow run's record in the state store, its audit trail and its artifacts."""

    def __init__(self, store: StateStore, *, run_id: str, flow: str, action: str, tenant: str,
                 requested_by: str, channel: str, total_steps: int, parameters: dict[str, Any],
                 dry_run: bool = False, kind: str | None = None, artifact_key: str | None = None) -> None:
        self.store, self.run_id, self.flow, self.action = store, run_id, flow, action
        # Artifact keys: ``<artifact_key>-<tenant>`` (summary) and ``...-progress``.
        self.key = f"{artifact_key or flow}-{tenant}"
        self.tenant, self.requested_by, self.channel = tenant, requested_by, channel
        self.total, self.dry_run = max(total_steps, 1), dry_run
        self.steps: list[StepResult] = []
        if not dry_run:
            store.start_run(run_id, flow=flow, tenant_id=tenant, kind=kind or action, parameters=parameters)
        self.audit("accepted", {"dry_run": dry_run} if dry_run else None)
        # Called from sync flows, so this is the UUID (the async variant returns a coroutine).
        self._progress = cast(UUID, create_progress_artifact(
            progress=0.0, key=f"{self.key}-progress", description=f"{flow} {tenant}: started"))

    def audit(self, outcome: str, detail: dict[str, Any] | None = None) -> None:
        self.store.audit(actor=self.requested_by, action=self.action, channel=self.channel, outcome=outcome,
                         tenant_id=self.tenant, run_id=self.run_id, detail={"tenant": self.tenant, **(detail or {})})

    def step(self, result: StepResult) -> StepResult:
        """Record a finished step and advance the progress artifact."""
        if not self.dry_run:
            self.store.record_step(self.run_id, result)
        self.steps.append(result)
        done = min(len(self.steps), self.total)
        update_progress_artifact(self._progress, progress=100.0 * done / self.total,
                                 description=f"{done}/{self.total}: {result.step} {result.target}")
        return result

    @property
    def changed(self) -> bool:
        return any(s.changed for s in self.steps)

    def succeeded(self, title: str, extra: list[str] | None = None, detail: dict[str, Any] | None = None) -> None:
        if not self.dry_run:
            self.store.finish_run(self.run_id, state="Completed", outcome="success")
        self.audit("succeeded", {"changed": self.changed, **(detail or {})})
        self._summary(title, None, extra)

    def failed(self, title: str, exc: BaseException, extra: list[str] | None = None) -> None:
        if not self.dry_run:
            self.store.finish_run(self.run_id, state="Failed", outcome="failure", error=error_text(exc))
        self.audit("failed", {"error": error_text(exc),
                              "failed_after": self.steps[-1].step if self.steps else None})
        self._summary(title, exc, extra)

    def _summary(self, title: str, exc: BaseException | None, extra: list[str] | None) -> None:
        lines = [f"# {title}", "", f"Flow run `{self.run_id}`{' (dry run: nothing was changed)' if self.dry_run else ''}",
                 ""]
        if exc is not None:
            lines += ["## Error", "", "```", error_text(exc), "```", ""]
        lines += ["## Steps", "", *steps_table(self.steps), ""]
        lines += extra or []
        create_markdown_artifact(markdown="\n".join(lines) + "\n", key=self.key,
                                 description=title)

"""What every task returns (nornir's Result): did it change anything, the diff, timings, the outcome.

``StepResult[P]`` carries a typed payload ``P`` (a pydantic model the task defines, e.g. the
replication task it started) instead of a free dict that callers read by string key;
``detail`` stays for what is only displayed. A step that failed says so (``status="failed"``
with the error), and a step of a recovery carries its ``wave`` and ``machine`` for the
reports.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

P = TypeVar("P")


def utcnow() -> datetime:
    return datetime.now(UTC)


StepStatus = Literal["ok", "failed", "skipped"]


class StepResult(BaseModel, Generic[P]):
    """Outcome of one side-effecting step; a second run of the same step has ``changed=False``."""

    step: str
    target: str = ""
    changed: bool = False
    diff: list[str] = Field(default_factory=list)
    detail: dict[str, Any] = Field(default_factory=dict)
    dry_run: bool = False
    started: datetime = Field(default_factory=utcnow)
    finished: datetime | None = None
    status: StepStatus = "ok"
    error: str | None = None
    wave: int | None = None
    machine: str | None = None
    payload: P | None = None

    def done(self, **changes: Any) -> StepResult[P]:
        """A copy marked finished now, with ``changes`` applied."""
        return self.model_copy(update={"finished": utcnow(), **changes})

    def failed(self, exc: BaseException | str, **changes: Any) -> StepResult[P]:
        """A copy marked finished now and failed with ``exc``."""
        error = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        return self.done(status="failed", error=error, **changes)

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    @property
    def seconds(self) -> float:
        end = self.finished or utcnow()
        return (end - self.started).total_seconds()

    def value(self) -> P:
        """The payload; raises when the step produced none (a programming error, not an outcome)."""
        if self.payload is None:
            raise ValueError(f"step {self.step} ({self.target}) has no payload")
        return self.payload

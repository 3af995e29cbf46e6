"""What every task returns (nornir's Result): did it change anything, the diff, timings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class StepResult(BaseModel):
    """Outcome of one side-effecting step; a second run of the same step has ``changed=False``."""

    step: str
    target: str = ""
    changed: bool = False
    diff: list[str] = Field(default_factory=list)
    detail: dict[str, Any] = Field(default_factory=dict)
    dry_run: bool = False
    started: datetime = Field(default_factory=utcnow)
    finished: datetime | None = None

    def done(self, **changes: Any) -> StepResult:
        """A copy marked finished now, with ``changes`` applied."""
        return self.model_copy(update={"finished": utcnow(), **changes})

    @property
    def seconds(self) -> float:
        end = self.finished or utcnow()
        return (end - self.started).total_seconds()

"""Bounded time: every wait takes an absolute deadline, and missing it is final.

A wait that passes its deadline raises a :class:`DeadlineExceeded` (each system has its own
subclass under its exception tree, e.g. ``ReplicationDeadlineExceeded``). It is a
*permanent* error: the retry policy never retries it, so a 15-minute wait cannot turn into an
hour by being retried three times. Transient errors are retried only while the deadline (of
the call, or of the flow run's time budget) leaves room for another attempt.

A deadline is an absolute UTC instant, so it survives being passed to a Prefect task (tasks
may run in other threads or processes) and means the same thing to every step of a run::

    deadline = Deadline.within(900)                   # 15 minutes from now
    provider.wait_task(task_id, deadline=deadline)    # raises ReplicationDeadlineExceeded
    deadline.remaining()                              # seconds left, never negative
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict

from draas.errors import PermanentError


class DeadlineExceeded(PermanentError):
    """A wait did not reach what it waited for before its deadline. Never retried."""


class Deadline(BaseModel):
    """An absolute point in time by which a wait (or a whole run) must be done."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    #: What the deadline bounds, for messages ("RTO of acme", "initial sync of acme-web").
    label: str = ""

    @classmethod
    def within(cls, seconds: float, label: str = "") -> Deadline:
        """A deadline ``seconds`` from now."""
        return cls(at=datetime.now(UTC) + timedelta(seconds=seconds), label=label)

    @classmethod
    def of(cls, deadline: Deadline | None, timeout_s: float | None, label: str = "") -> Deadline:
        """``deadline`` itself, or one ``timeout_s`` from now: the earlier of the two when both are given."""
        if deadline is None and timeout_s is None:
            raise ValueError("a wait needs a deadline or a timeout")
        if timeout_s is None:
            assert deadline is not None
            return deadline
        own = cls.within(timeout_s, label or (deadline.label if deadline else ""))
        return own if deadline is None or own.at < deadline.at else deadline

    def remaining(self) -> float:
        """Seconds left (0 once passed)."""
        return max(0.0, (self.at - datetime.now(UTC)).total_seconds())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def allows(self, seconds: float) -> bool:
        """True when ``seconds`` more (a retry's back-off, a poll interval) still fit before the deadline."""
        return self.remaining() > seconds

    def check(self, what: str, error: type[DeadlineExceeded] = DeadlineExceeded) -> None:
        """Raise ``error`` naming ``what`` when the deadline has passed."""
        if self.expired:
            raise error(f"{what}: deadline {self.describe()} passed")

    def describe(self) -> str:
        when = self.at.strftime("%Y-%m-%d %H:%M:%SZ")
        return f"{self.label} ({when})" if self.label else when

    def earlier(self, other: Deadline | None) -> Deadline:
        """The earlier of this deadline and ``other``."""
        return self if other is None or self.at <= other.at else other


# --- the time budget of a flow run (its RTO for recovery flows) ------------------------------

_RUN_DEADLINES: dict[str, Deadline] = {}


def set_run_deadline(run_id: str, deadline: Deadline | None) -> None:
    """Give flow run ``run_id`` a time budget (None removes it); its tasks' retries respect it."""
    if deadline is None:
        _RUN_DEADLINES.pop(run_id, None)
    else:
        _RUN_DEADLINES[run_id] = deadline


def run_deadline(run_id: str | None = None) -> Deadline | None:
    """The time budget of ``run_id`` (default: the flow run this code runs in), if it has one."""
    if run_id is None:
        try:
            from prefect.runtime import flow_run

            run_id = str(flow_run.id) if flow_run.id else None
        except Exception:  # noqa: BLE001 - no Prefect context: no budget
            return None
    return _RUN_DEADLINES.get(run_id) if run_id else None

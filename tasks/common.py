"""Retry policy shared by every task: retry transient errors only, with backoff."""

from __future__ import annotations

import logging
from typing import Any

from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from draas.deadline import run_deadline
from draas.errors import is_transient

#: Backoff between retries (seconds); short because the lab is local, raised in deployments.
RETRY_DELAYS: list[float] = [1, 2, 5]


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn`` for Prefect tasks: True only for TransientError (or caused by one).

    A missed deadline (DeadlineExceeded) is permanent and never retried; a transient error is
    retried only while the flow run's time budget leaves room for the back-off and another try.
    """
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - we classify, then Prefect re-raises
        if not is_transient(exc):
            return False
        budget = run_deadline()
        if budget is None:
            return True
        attempt = max(0, int(getattr(task_run, "run_count", 1) or 1) - 1)
        delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
        return budget.allows(delay)
    return False


RETRY_POLICY: dict[str, Any] = {
    "retries": len(RETRY_DELAYS),
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_condition_fn": retry_transient,
}


def task_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The task run's logger, or a module logger when a task runs through ``.fn()`` outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("draas.tasks")

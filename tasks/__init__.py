"""Prefect tasks: one external side effect each, idempotent, retrying transient errors only."""

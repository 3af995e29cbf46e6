"""Prefect flows: thin runbooks over tasks."""

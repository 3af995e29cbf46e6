"""Adapters to external systems; no Prefect imports here."""

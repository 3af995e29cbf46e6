"""Prefect blocks: endpoints and credentials, each with get_client()."""

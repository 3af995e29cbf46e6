"""Pydantic models: tenant configuration, tier catalog, plans and step results."""

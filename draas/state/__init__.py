"""State store (sqlmodel): tenants, provisioned objects, runs, drill results, audit log."""

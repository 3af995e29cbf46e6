"""Per-tenant deployments, schedules and the webhook gateway."""

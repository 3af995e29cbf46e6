"""DR-as-a-Service orchestrator core: models, validation, planning, state, clients, reports."""

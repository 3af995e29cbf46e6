"""Planning calculators: recovery waves, journal sizing, retention, achievable RPO."""

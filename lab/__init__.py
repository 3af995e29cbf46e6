"""The lab: local simulators of every external system, and their launcher."""

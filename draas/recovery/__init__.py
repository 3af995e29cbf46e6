"""Recovery: the engine that brings presented VMs up in dependency order, and its targets."""

"""Planning calculators: pure functions over validated tenant models."""

from draas.planning.journal import size_group, size_journal, target_io
from draas.planning.retention import RecoveryPoint, design_guide_example, surviving_points
from draas.planning.rpo import achievable_rpo, estimate_rpo, tenant_rpo
from draas.planning.waves import DependencyCycle, UnknownDependency, build_waves, recovery_plan

__all__ = [
    "DependencyCycle",
    "RecoveryPoint",
    "UnknownDependency",
    "achievable_rpo",
    "build_waves",
    "design_guide_example",
    "estimate_rpo",
    "recovery_plan",
    "size_group",
    "size_journal",
    "surviving_points",
    "target_io",
    "tenant_rpo",
]

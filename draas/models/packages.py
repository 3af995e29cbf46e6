"""The provider's service packages (DRaaS service definition, section 2.1) and their limits.

These are contractual limits, not tunables, so they live in code next to the model that
enforces them. Each value names where it comes from.
"""

from __future__ import annotations

from datetime import timedelta
from enum import Enum

from pydantic import BaseModel, ConfigDict


class ServicePackage(str, Enum):
    """A protection group's service package."""

    VMR_CDP = "VMR-CDP"
    VMR_SNAP = "VMR-SNAP"
    PMR = "PMR"
    SVR = "SVR"


class PackageLimits(BaseModel):
    """What a package can do, as the service definition states it."""

    model_config = ConfigDict(frozen=True)

    package: ServicePackage
    description: str
    continuous: bool
    """True for journal-based CDP (RPO in seconds); False for scheduled snapshots (RPO in hours)."""
    protects: str
    """``vm`` or ``physical`` (PMR converts physical servers to VMs, P2V)."""
    min_interval: timedelta
    """Shortest replication cadence: CDP checkpoint cadence, or the shortest snapshot schedule."""
    journal: bool
    """Keeps a journal (any point in time, sparse retention, space-based policies)."""
    min_retention: timedelta | None = None
    max_retention: timedelta | None = None
    default_retention: timedelta | None = None
    max_recovery_points: int | None = None
    max_concurrent_jobs: int | None = None
    replication_continues_during_test: bool = True
    compression: bool = False


PACKAGES: dict[ServicePackage, PackageLimits] = {
    ServicePackage.VMR_CDP: PackageLimits(
        package=ServicePackage.VMR_CDP,
        description="VM recovery, continuous data protection with a journal; RPO in seconds",
        continuous=True,
        protects="vm",
        # The replication manager writes a checkpoint every few seconds (the lab: 5 s).
        min_interval=timedelta(seconds=5),
        journal=True,
        # Design guide: smallest retention window is 1 day; customers keep one to four weeks
        # and the sparse example keeps nothing beyond 4 weeks. Service definition: 72 h standard.
        min_retention=timedelta(days=1),
        max_retention=timedelta(weeks=4),
        default_retention=timedelta(hours=72),
        replication_continues_during_test=True,
        compression=True,
    ),
    ServicePackage.VMR_SNAP: PackageLimits(
        package=ServicePackage.VMR_SNAP,
        description="VM recovery, scheduled snapshot replication; RPO in hours",
        continuous=False,
        protects="vm",
        min_interval=timedelta(hours=1),  # "Scheduled (for example, hourly or daily)"
        journal=False,
        replication_continues_during_test=False,  # "No (Paused)"
        compression=True,
    ),
    ServicePackage.PMR: PackageLimits(
        package=ServicePackage.PMR,
        description="Physical machine recovery (P2V), scheduled replication; RPO in hours",
        continuous=False,
        protects="physical",
        min_interval=timedelta(hours=1),
        journal=False,
        max_recovery_points=5,  # "Recover to any one of up to five recovery points"
        max_concurrent_jobs=10,  # "Up to 10 replication jobs can run concurrently"
        replication_continues_during_test=False,
        compression=False,  # "in native state (that is, not compressed)"
    ),
    ServicePackage.SVR: PackageLimits(
        package=ServicePackage.SVR,
        description="Storage volume recovery (SnapMirror), scheduled; RPO in hours",
        continuous=False,
        protects="vm",
        min_interval=timedelta(hours=1),
        journal=False,
        min_retention=timedelta(days=3),  # "minimum of three days snapshots"
        replication_continues_during_test=True,
        compression=True,
    ),
}

MAX_SITE_BANDWIDTH_MBPS = 100
"""Service definition: maximum supported bandwidth between one customer site and the provider."""

MAX_SITE_LATENCY_MS = 30
"""Service definition, prerequisite 17: average latency at most 30 ms."""

MAX_PUBLIC_IPS = 100
"""Service definition: up to 100 public IP addresses per customer."""

MAX_DISKS_PER_MASTER_TARGET = 40
"""Design guide, Concurrency: a maximum of 40 VMDKs/RDMs per master target."""

MAX_CHANGE_GB_PER_DAY_PER_PROCESS_SERVER = 1000
"""Design guide, Concurrency: maximum change rate per process server is 1 TB/day."""


def limits(package: ServicePackage) -> PackageLimits:
    """The limits of ``package``."""
    return PACKAGES[ServicePackage(package)]

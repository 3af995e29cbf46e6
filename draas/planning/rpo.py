"""Minimum achievable RPO from the service package and the site's bandwidth.

Model (documented in docs/configuration.md): changes arrive at the site's peak change rate
and leave over one link of at most 100 Mbps (service definition), shrunk by compression
where the package compresses. With utilisation ``u = required / available``:

- ``u >= 1``: replication falls behind without bound; no RPO is achievable.
- otherwise the worst-case data loss is one replication interval plus the time to ship the
  changes of that interval: ``interval * (1 + u)``. The interval is the CDP checkpoint
  cadence (seconds) or the snapshot schedule (hours, never shorter than the package allows).

Every protection group of a tenant shares the site's link, so utilisation counts them all.
"""

from __future__ import annotations

from datetime import timedelta

from draas.models.packages import MAX_SITE_BANDWIDTH_MBPS, ServicePackage, limits
from draas.models.plan import RpoEstimate
from draas.models.tenant import ProtectionGroup, TenantConfig

SECONDS_PER_DAY = 86400
MEGABITS_PER_GB = 8000


def change_mbps(change_gb_per_day: float, peak_factor: float = 1.0) -> float:
    """Megabits per second needed to ship ``change_gb_per_day`` at ``peak_factor`` x average."""
    return change_gb_per_day * MEGABITS_PER_GB / SECONDS_PER_DAY * peak_factor


def replication_interval(package: ServicePackage | str, interval: timedelta | None) -> timedelta:
    """The cadence a group replicates at: its own schedule, never below the package's minimum."""
    floor = limits(ServicePackage(package)).min_interval
    return floor if interval is None or interval < floor else interval


def achievable_rpo(
    package: ServicePackage | str,
    change_gb_per_day: float,
    bandwidth_mbps: float,
    *,
    interval: timedelta | None = None,
    compression_ratio: float = 1.0,
    peak_factor: float = 1.0,
) -> float | None:
    """Smallest RPO in seconds for one group alone on a link; None when it cannot keep up."""
    package = ServicePackage(package)
    ratio = compression_ratio if limits(package).compression else 1.0
    required = change_mbps(change_gb_per_day, peak_factor) / ratio
    available = min(bandwidth_mbps, MAX_SITE_BANDWIDTH_MBPS)
    return rpo_for_utilisation(replication_interval(package, interval), required / available)


def rpo_for_utilisation(interval: timedelta, utilisation: float) -> float | None:
    """``interval * (1 + utilisation)`` in seconds, or None when utilisation >= 1."""
    if utilisation >= 1:
        return None
    return interval.total_seconds() * (1 + utilisation)


def _group_change(tenant: TenantConfig, group: ProtectionGroup) -> float:
    names = set(group.machines)
    return sum(m.change_rate_gb_per_day for m in tenant.machines if m.name in names)


def site_load_mbps(tenant: TenantConfig) -> float:
    """Compressed peak megabits per second of every group sharing the tenant's site link."""
    site = tenant.protected_site
    total = 0.0
    for group in tenant.protection_groups:
        ratio = site.compression_ratio if limits(group.package).compression else 1.0
        total += change_mbps(_group_change(tenant, group), site.peak_factor) / ratio
    return total


def estimate_rpo(tenant: TenantConfig, group: ProtectionGroup) -> RpoEstimate:
    """The group's achievable RPO with every group of the tenant sharing the site's link."""
    available = min(tenant.protected_site.bandwidth_mbps, MAX_SITE_BANDWIDTH_MBPS)
    required = site_load_mbps(tenant)
    utilisation = required / available
    interval = replication_interval(group.package, group.replication_interval)
    return RpoEstimate(
        group=group.name,
        package=ServicePackage(group.package).value,
        target_seconds=group.sla.rpo.total_seconds(),
        interval_seconds=interval.total_seconds(),
        required_mbps=required,
        available_mbps=available,
        utilisation=utilisation,
        achievable_seconds=rpo_for_utilisation(interval, utilisation),
    )


def tenant_rpo(tenant: TenantConfig) -> list[RpoEstimate]:
    """RPO estimates of all the tenant's protection groups."""
    return [estimate_rpo(tenant, g) for g in tenant.protection_groups]

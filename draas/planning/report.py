"""Rich tables of a tenant's plan: waves, journal sizing, RPO (used by `draas plan`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from rich.console import Console
from rich.table import Column, Table

from draas.clients.replication.models import RecoveryPoint as ManagerPoint
from draas.models.tenant import BookmarkType, TenantConfig
from draas.models.types import describe_duration, format_duration
from draas.planning.journal import size_group
from draas.planning.retention import RecoveryPoint, surviving_points, tier_for_age, tiers
from draas.planning.rpo import tenant_rpo
from draas.planning.waves import recovery_plan


def _secs(value: float | None) -> str:
    if value is None:
        return "not achievable"
    return describe_duration(timedelta(seconds=round(value)))


def waves_table(tenant: TenantConfig) -> Table:
    plan = recovery_plan(tenant)
    table = Table(
        "wave",
        "machine",
        "os",
        "group",
        "depends on",
        "recovery IP",
        title=f"{tenant.display_name} ({tenant.id}): recovery waves",
    )
    for wave in plan.waves:
        for name in wave.machines:
            m = tenant.machine(name)
            group = tenant.group_of(name)
            ips = ", ".join(str(tenant.recovery_ip(n)) for n in m.nics)
            dc = " (DC)" if m.is_domain_controller else ""
            table.add_row(
                str(wave.index),
                name + dc,
                m.os_family.value,
                group.name if group else "-",
                ", ".join(m.depends_on) or "-",
                ips,
            )
    return table


def journal_table(tenant: TenantConfig) -> Table:
    table = Table(
        Column("group", no_wrap=True),
        "GB/day",
        "window",
        "journal GB",
        "covers",
        "source write IOPS",
        "target IOPS = journal seq-W + replica R + W",
        title="Journal sizing (each source write: 1 read + 2 writes on the target)",
    )
    for group in tenant.protection_groups:
        sizing = size_group(tenant, group)
        if sizing is None:
            window = format_duration(group.retention.window)
            table.add_row(group.name, "-", window, f"none ({group.package.value})", *["-"] * 3)
            continue
        journal = f"{sizing.capacity_gb:,.0f}"
        if sizing.provisioned_gb != sizing.capacity_gb:
            journal += f" (cap {sizing.provisioned_gb:,.0f})"
        est = "~" if sizing.iops_estimated else ""
        table.add_row(
            group.name,
            f"{sizing.change_gb_per_day:g}",
            f"{sizing.window_hours:g}h",
            journal,
            f"{sizing.hours_covered:g}h",
            f"{est}{sizing.source_write_iops:,.0f}",
            f"{sizing.target_iops:,.0f} = {sizing.journal_write_iops:,.0f} + "
            f"{sizing.replica_read_iops:,.0f} + {sizing.replica_write_iops:,.0f}",
        )
    return table


def rpo_table(tenant: TenantConfig) -> Table:
    table = Table(
        Column("group", no_wrap=True),
        "package",
        "interval",
        "link load",
        "achievable RPO",
        "target RPO",
        "ok",
        title=f"RPO on {tenant.protected_site.bandwidth_mbps:g} Mbps "
        f"({tenant.protected_site.name})",
    )
    for est in tenant_rpo(tenant):
        table.add_row(
            est.group,
            est.package,
            _secs(est.interval_seconds),
            f"{est.required_mbps:.1f}/{est.available_mbps:g} Mbps ({est.utilisation:.0%})",
            _secs(est.achievable_seconds),
            _secs(est.target_seconds),
            "yes" if est.achievable else "NO",
        )
    return table


def print_plan(tenant: TenantConfig, console: Console) -> None:
    """Print the three tables."""
    console.print(waves_table(tenant))
    console.print(journal_table(tenant))
    console.print(rpo_table(tenant))


def as_planning_point(point: ManagerPoint) -> RecoveryPoint:
    """A manager's checkpoint as the retention model sees it.

    Application-consistent checkpoints (and those tagged by the product) are application
    bookmarks; a tagged checkpoint that is not application-consistent is a user-defined
    bookmark; every other checkpoint is a plain journal write.
    """
    if point.app_consistent:
        return RecoveryPoint(at=point.timestamp, kind="bookmark", bookmark_type=BookmarkType.APPLICATION,
                             label=point.tag or "")
    if point.tag:
        return RecoveryPoint(at=point.timestamp, kind="bookmark", bookmark_type=BookmarkType.USER_DEFINED,
                             label=point.tag)
    return RecoveryPoint(at=point.timestamp, label="")


def retention_table(tenant: TenantConfig, group: str, points: list[ManagerPoint], now: datetime) -> Table:
    """Which of the manager's checkpoints of ``group`` the group's retention policy keeps at ``now``.

    One row per checkpoint, newest first: its time, tag, kind, and the sparse tier that keeps it
    (or why it goes). The manager's journal is usually shorter than the policy's window; the
    table shows what the policy would keep of what the manager has.
    """
    retention = tenant.group(group).retention
    all_tiers = tiers(retention)
    planning = [(p, as_planning_point(p)) for p in points]
    kept = {id(rp) for rp in surviving_points([rp for _, rp in planning], retention, now)}
    table = Table("checkpoint", "time (UTC)", "age", "tag", "kind", "kept by",
                  title=f"{group}: recovery points the retention policy keeps ({len(points)} in the journal)")
    for point, rp in sorted(planning, key=lambda pair: pair[1].at, reverse=True):
        age = max(now - rp.at, timedelta(0))
        tier = tier_for_age(retention, age)
        if id(rp) in kept and tier is not None:
            index = all_tiers.index(tier) + 1
            verdict = f"tier {index} (keep {tier.keep} until {format_duration(tier.until)})"
        elif tier is None:
            verdict = "beyond the window"
        else:
            verdict = f"dropped by tier {all_tiers.index(tier) + 1} (keep {tier.keep})"
        kind = rp.bookmark_type.value if rp.bookmark_type else "write"
        table.add_row(point.id, f"{rp.at:%Y-%m-%d %H:%M:%S}", describe_duration(timedelta(seconds=round(
            age.total_seconds()))), point.tag or "", kind, verdict)
    return table

"""Rich tables of a tenant's plan: waves, journal sizing, RPO (used by `draas plan`)."""

from __future__ import annotations

from datetime import timedelta

from rich.console import Console
from rich.table import Column, Table

from draas.models.tenant import TenantConfig
from draas.models.types import describe_duration, format_duration
from draas.planning.journal import size_group
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

"""Journal sizing from change rate x retention window, with the design guide's I/O profile.

Design guide, "Journal Sizing": the journal holds every change of the retention window, so
its capacity is the daily change rate times the window; and for every write on the source
volume there are three I/Os on the target side, 1 read + 2 writes: the replica volume takes
one random read and one random write, the journal one sequential write.
"""

from __future__ import annotations

from datetime import timedelta

from draas.models.packages import limits
from draas.models.plan import JournalSizing
from draas.models.tenant import ProtectionGroup, TenantConfig

DEFAULT_IO_SIZE_BYTES = 64 * 1024
"""Average write size assumed when a machine declares no write IOPS (only a change rate)."""

SECONDS_PER_DAY = 86400
MEGABITS_PER_GB = 8000  # decimal units: 1 GB = 8 * 10^9 bits


def target_io(source_write_iops: float) -> dict[str, float]:
    """Target-side I/Os per second caused by ``source_write_iops`` writes per second."""
    return {
        "journal_write_iops": source_write_iops,  # 1 sequential write
        "replica_read_iops": source_write_iops,  # 1 random read (the block before it changes)
        "replica_write_iops": source_write_iops,  # 1 random write (the new data)
        "target_iops": 3 * source_write_iops,
    }


def writes_per_second(
    change_gb_per_day: float, io_size_bytes: int = DEFAULT_IO_SIZE_BYTES
) -> float:
    """Average write IOPS implied by a daily change rate at ``io_size_bytes`` per write."""
    return change_gb_per_day * 1e9 / SECONDS_PER_DAY / io_size_bytes


def size_journal(
    group: str,
    change_gb_per_day: float,
    window: timedelta,
    *,
    source_write_iops: float | None = None,
    space_limit_gb: float | None = None,
    policy: str = "time",
    io_size_bytes: int = DEFAULT_IO_SIZE_BYTES,
) -> JournalSizing:
    """Size one journal.

    Args:
        group: protection group name (for the report).
        change_gb_per_day: summed daily change rate of the group's protected disks.
        window: retention window.
        source_write_iops: summed peak write IOPS of the sources; derived from the change
            rate at ``io_size_bytes`` per write when None.
        space_limit_gb: the cap of a ``space`` / ``time_and_space`` policy.
        policy: ``time``, ``space`` or ``time_and_space``.

    Sparse tiers do not lower the result: they prune metadata of discarded points as data
    ages, so the journal must still be able to hold the full window of writes (an upper bound).
    """
    hours = window.total_seconds() / 3600
    capacity = change_gb_per_day * hours / 24
    if policy == "time" or space_limit_gb is None:
        provisioned = capacity
    else:
        provisioned = (
            min(capacity, space_limit_gb) if policy == "time_and_space" else space_limit_gb
        )
    if change_gb_per_day > 0:
        covered = min(hours, provisioned / change_gb_per_day * 24)
    else:
        covered = hours
    estimated = source_write_iops is None
    iops = (
        writes_per_second(change_gb_per_day, io_size_bytes)
        if source_write_iops is None
        else float(source_write_iops)
    )
    return JournalSizing(
        group=group,
        change_gb_per_day=change_gb_per_day,
        window_hours=hours,
        capacity_gb=capacity,
        space_limit_gb=space_limit_gb,
        provisioned_gb=provisioned,
        hours_covered=covered,
        source_write_iops=iops,
        iops_estimated=estimated,
        journal_write_mbps=change_gb_per_day * MEGABITS_PER_GB / SECONDS_PER_DAY,
        **target_io(iops),
    )


def size_group(tenant: TenantConfig, group: ProtectionGroup) -> JournalSizing | None:
    """Journal sizing of a protection group, or None when its package keeps no journal."""
    if not limits(group.package).journal:
        return None
    members = [m for m in tenant.machines if m.name in set(group.machines)]
    change = sum(m.change_rate_gb_per_day for m in members)
    declared = [m.peak_write_iops for m in members]
    iops = None if any(v is None for v in declared) else float(sum(v or 0 for v in declared))
    return size_journal(
        group.name,
        change,
        group.retention.window,
        source_write_iops=iops,
        space_limit_gb=group.retention.max_journal_gb,
        policy=group.retention.policy,
    )

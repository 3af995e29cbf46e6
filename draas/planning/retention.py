"""Which recovery points survive a (sparse) retention policy at a given time.

Design guide, "Journal Volume Capacity Considerations", example sparse policy:
  - for the most recent 24 hours, keep all writes and bookmarks;
  - between 24 and 48 hours old, keep a recovery point every 4 hours plus all bookmarks;
  - older than 48 hours, keep only bookmarks of a certain type;
  - keep no data longer than 4 weeks.

Interval tiers keep the latest point of each interval-long bucket, with buckets aligned to
the Unix epoch (UTC). Alignment to absolute time, not to "now", makes pruning monotonic: a
point discarded at time t is never a survivor later, as the design guide requires ("once the
metadata for a particular point is discarded, that point can no longer be retroactively
created").
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from draas.models.tenant import BookmarkType, Retention, SparseTier


class RecoveryPoint(BaseModel):
    """A point the journal can recover to: any write, or a tagged consistency bookmark."""

    at: datetime
    kind: Literal["write", "bookmark"] = "write"
    bookmark_type: BookmarkType | None = None
    label: str = ""

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def is_bookmark_of(self, types: list[BookmarkType] | None) -> bool:
        return self.kind == "bookmark" and (types is None or self.bookmark_type in types)


def design_guide_example(bookmark_type: BookmarkType = BookmarkType.APPLICATION) -> Retention:
    """The design guide's example sparse policy (4 weeks, with ``bookmark_type`` kept after 48 h)."""
    return Retention(
        window=timedelta(weeks=4),
        sparse=[
            SparseTier(until=timedelta(hours=24), keep="all"),
            SparseTier(until=timedelta(hours=48), keep="interval", interval=timedelta(hours=4)),
            SparseTier(until=timedelta(weeks=4), keep="bookmarks", bookmark_types=[bookmark_type]),
        ],
    )


def tiers(retention: Retention) -> list[SparseTier]:
    """The policy's tiers; a plain (non-sparse) policy is one ``keep: all`` tier for the window."""
    if retention.sparse:
        return list(retention.sparse)
    return [SparseTier(until=retention.window, keep="all")]


def tier_for_age(retention: Retention, age: timedelta) -> SparseTier | None:
    """The tier a point of ``age`` falls in, or None when it is beyond the window."""
    index = _tier_index(tiers(retention), retention.window, age)
    return None if index is None else tiers(retention)[index]


def _tier_index(all_tiers: list[SparseTier], window: timedelta, age: timedelta) -> int | None:
    if age >= window:
        return None
    for i, tier in enumerate(all_tiers):
        if age < tier.until:
            return i
    return None


def surviving_points(
    points: Iterable[RecoveryPoint], retention: Retention, now: datetime
) -> list[RecoveryPoint]:
    """The points of ``points`` that ``retention`` still keeps at ``now``, oldest first."""
    return [p for p, _ in _survivors(points, retention, now)]


def _survivors(
    points: Iterable[RecoveryPoint], retention: Retention, now: datetime
) -> list[tuple[RecoveryPoint, int]]:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    all_tiers = tiers(retention)
    placed: list[tuple[RecoveryPoint, int]] = []
    for point in points:
        index = _tier_index(all_tiers, retention.window, max(now - point.at, timedelta(0)))
        if index is not None:
            placed.append((point, index))

    # Interval tiers: the latest write per (tier, bucket) survives.
    latest: dict[tuple[int, int], datetime] = {}
    for point, index in placed:
        tier = all_tiers[index]
        if tier.keep == "interval" and point.kind == "write":
            key = (index, _bucket(point.at, tier.interval))
            if key not in latest or point.at > latest[key]:
                latest[key] = point.at

    kept: list[tuple[RecoveryPoint, int]] = []
    for point, index in placed:
        tier = all_tiers[index]
        if tier.keep == "all":
            keep = True
        elif point.kind == "bookmark":
            keep = point.is_bookmark_of(tier.bookmark_types)
        elif tier.keep == "interval":
            keep = latest[(index, _bucket(point.at, tier.interval))] == point.at
        else:
            keep = False
        if keep:
            kept.append((point, index))
    return sorted(kept, key=lambda pair: pair[0].at)


def _bucket(at: datetime, interval: timedelta | None) -> int:
    seconds = (interval or timedelta(hours=1)).total_seconds()
    return int(at.timestamp() // seconds)


class RetentionSummary(BaseModel):
    """How many points of each kind survive per tier (for reports and `draas plan`)."""

    tier: int
    until_hours: float
    keep: str
    writes: int = Field(ge=0)
    bookmarks: int = Field(ge=0)


def summarise(
    points: Iterable[RecoveryPoint], retention: Retention, now: datetime
) -> list[RetentionSummary]:
    """Counts of surviving writes and bookmarks per tier at ``now``."""
    rows = [
        RetentionSummary(
            tier=i + 1,
            until_hours=t.until.total_seconds() / 3600,
            keep=t.keep,
            writes=0,
            bookmarks=0,
        )
        for i, t in enumerate(tiers(retention))
    ]
    for point, index in _survivors(points, retention, now):
        if point.kind == "bookmark":
            rows[index].bookmarks += 1
        else:
            rows[index].writes += 1
    return rows

"""When each tenant's flows run on their own: two drills per twelve months, the watch, the readiness check.

Pure functions (no Prefect server). The service definition asks for two DR tests in two
separate months of every 12-month period, inside the tenant's business hours. The tenant file
names its drill dates (``drills.dates``, local time); once they run out, the next drills are
computed about six months after the last one, moved to the next business day at the start of
business hours plus one hour, so a four-hour drill ends well inside the day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from draas.models.tenant import TenantConfig

#: How far a computed drill lies after the previous one.
DRILL_SPACING_MONTHS = 6
#: After the start of business hours: a drill starts one hour into the day.
START_OFFSET = timedelta(hours=1)
#: How often watch-protection samples each tenant's RPO.
WATCH_EVERY = timedelta(minutes=5)
#: check-readiness runs once a day at this local time.
READINESS_AT = time(6, 0)


class DrillSlot(BaseModel):
    """One planned drill: when it starts, in the tenant's zone and in UTC, and where the date came from."""

    local: datetime
    utc: datetime
    source: str  # "config" or "computed"


def _add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    year = day.year + month // 12
    month = month % 12 + 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def _business_start(tenant: TenantConfig, day: date) -> datetime:
    """The first business day on or after ``day``, at business start plus START_OFFSET (tenant zone)."""
    hours = tenant.business_hours
    zone = ZoneInfo(tenant.timezone)
    weekdays = {d.value if hasattr(d, "value") else str(d) for d in hours.days}
    names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    for offset in range(14):
        candidate = day + timedelta(days=offset)
        if names[candidate.weekday()] in weekdays:
            return datetime.combine(candidate, hours.start, tzinfo=zone) + START_OFFSET
    raise ValueError(f"{tenant.id}: business_hours.days names no weekday")


def next_drills(tenant: TenantConfig, now: datetime | None = None, count: int = 2) -> list[DrillSlot]:
    """The tenant's next ``count`` drills after ``now``: its configured dates first, then computed ones."""
    now = now or datetime.now(UTC)
    zone = ZoneInfo(tenant.timezone)
    configured = sorted(d if d.tzinfo else d.replace(tzinfo=zone) for d in tenant.drills.dates)
    slots = [DrillSlot(local=d.astimezone(zone), utc=d.astimezone(UTC), source="config")
             for d in configured if d > now][:count]
    last = (slots[-1].local if slots else configured[-1].astimezone(zone)) if configured else now.astimezone(zone)
    while len(slots) < count:
        start = _business_start(tenant, _add_months(last.date(), DRILL_SPACING_MONTHS))
        while start <= now:
            start = _business_start(tenant, _add_months(start.date(), DRILL_SPACING_MONTHS))
        slots.append(DrillSlot(local=start, utc=start.astimezone(UTC), source="computed"))
        last = start
    return slots


def rrule_once(at: datetime) -> str:
    """An RFC 5545 rule with exactly one occurrence at ``at`` (local wall time; the zone goes alongside)."""
    return f"DTSTART:{at:%Y%m%dT%H%M%S}\nRRULE:FREQ=YEARLY;COUNT=1"

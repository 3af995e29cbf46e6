"""Drill schedules: the tenant's dates first, then computed ones inside business hours about six months apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dateutil.rrule import rrulestr

from deployments.deploy import plan_deployments
from deployments.schedules import next_drills, rrule_once
from draas.validation import load_tenant, load_tenants


@pytest.mark.parametrize("tenant", ["acme", "globex", "initech"])
@pytest.mark.parametrize("now", [datetime(2026, 12, 3, tzinfo=UTC), datetime(2031, 2, 17, 23, tzinfo=UTC)])
def test_two_drills_in_separate_months_inside_business_hours(tenant: str, now: datetime) -> None:
    config = load_tenant(tenant)
    slots = next_drills(config, now)
    assert len(slots) == 2 and all(s.utc > now for s in slots)
    first, second = (s.local for s in slots)
    months_apart = (second.year - first.year) * 12 + second.month - first.month
    assert 5 <= months_apart <= 7
    assert second - first < timedelta(days=366)
    for slot in slots:
        assert config.business_hours.contains(slot.local.replace(tzinfo=None), config.drills.duration), slot
    if now.year == 2031:  # the configured dates have run out: computed
        assert {s.source for s in slots} == {"computed"}


def test_configured_dates_come_first() -> None:
    slots = next_drills(load_tenant("acme"), datetime(2026, 12, 3, tzinfo=UTC))
    assert [(s.local.isoformat(), s.source) for s in slots] == [
        ("2026-12-08T10:00:00+00:00", "config"), ("2027-06-08T10:00:00+01:00", "config")]


def test_every_flow_gets_a_deployment_per_tenant_and_the_drill_its_two_dates() -> None:
    flows = {"drill": "x:y", "failover": "x:y", "watch-protection": "x:y", "check-readiness": "x:y",
             "sweep-orphans": "x:y"}
    specs = {s.full_name: s for s in plan_deployments(load_tenants(), flows, frozenset({"sweep-orphans"}),
                                                        now=datetime(2026, 12, 3, tzinfo=UTC))}
    assert set(specs) == {f"{f}/{t}" for f in flows if f != "sweep-orphans" for t in ("acme", "globex", "initech")} \
        | {"sweep-orphans/all"}
    drill = specs["drill/acme"]
    assert drill.parameters == {"tenant": "acme", "requested_by": "alice.archer@acme.example.com"}
    dates = [rrulestr(s["rrule"])[0] for s in drill.schedules]
    assert dates == [datetime(2026, 12, 8, 10, 0), datetime(2027, 6, 8, 10, 0)]
    assert specs["watch-protection/acme"].schedules == [{"kind": "interval", "seconds": 300}]
    assert specs["watch-protection/acme"].concurrency_limit is None and specs["failover/acme"].concurrency_limit == 1
    assert specs["sweep-orphans/all"].schedules == [{"kind": "interval", "seconds": 3600}]
    assert list(rrulestr(rrule_once(datetime(2027, 1, 5, 9, 0)))) == [datetime(2027, 1, 5, 9, 0)]

"""Planning calculators against worked examples (design guide and service definition numbers)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from draas.cli import app
from draas.models.packages import ServicePackage
from draas.models.tenant import BookmarkType, Retention, SparseTier
from draas.planning.journal import size_group, size_journal, target_io, writes_per_second
from draas.planning.retention import (
    RecoveryPoint,
    design_guide_example,
    summarise,
    surviving_points,
    tier_for_age,
)
from draas.planning.rpo import achievable_rpo, change_mbps, tenant_rpo
from draas.planning.waves import (
    DependencyCycle,
    UnknownDependency,
    build_waves,
    find_cycle,
    recovery_plan,
)
from draas.validation import load_tenants

ROOT = Path(__file__).resolve().parents[2]
APP = BookmarkType.APPLICATION
FS = BookmarkType.FILE_SYSTEM


@pytest.fixture(scope="module")
def tenants() -> dict:
    return {t.id: t for t in load_tenants(ROOT / "configs")}


# --- waves -----------------------------------------------------------------------------------------


def test_waves_follow_the_longest_dependency_chain() -> None:
    graph = {
        "dc": [],
        "db": ["dc"],
        "app": ["db", "dc"],
        "web1": ["app"],
        "web2": ["app"],
        "mon": [],
    }
    assert build_waves(graph) == [["dc", "mon"], ["db"], ["app"], ["web1", "web2"]]


def test_diamond_and_independent_chains() -> None:
    graph = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "x": [], "y": ["x"]}
    assert build_waves(graph) == [["a", "x"], ["b", "c", "y"], ["d"]]


def test_cycle_is_reported_with_its_path() -> None:
    graph = {"a": ["c"], "b": ["a"], "c": ["b"], "d": []}
    assert find_cycle(graph) == ["a", "c", "b", "a"]
    with pytest.raises(DependencyCycle) as info:
        build_waves(graph)
    assert info.value.cycle == ["a", "c", "b", "a"]
    assert str(info.value) == "dependency cycle a -> c -> b -> a"
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_unknown_dependency_is_an_error_unless_recovering_a_subset() -> None:
    with pytest.raises(UnknownDependency, match="web depends on unknown machine app"):
        build_waves({"web": ["app"]})
    assert build_waves({"web": ["app"]}, ignore_unknown=True) == [["web"]]


def test_long_chains_do_not_recurse_deeply() -> None:
    graph = {f"m{i}": ([f"m{i - 1}"] if i else []) for i in range(5000)}
    waves = build_waves(graph)
    assert len(waves) == 5000 and waves[-1] == ["m4999"]


def test_recovery_plan_of_samples_and_of_one_group(tenants: dict) -> None:
    acme = tenants["acme"]
    assert [w.machines for w in recovery_plan(acme).waves] == [
        ["acme-dc01"],
        ["acme-sql01"],
        ["acme-app01"],
        ["acme-web01", "acme-web02"],
    ]
    linux = acme.group("acme-linux").machines
    plan = recovery_plan(acme, linux)  # the Windows group is assumed up already
    assert [w.machines for w in plan.waves] == [["acme-app01"], ["acme-web01", "acme-web02"]]
    assert plan.wave_of("acme-web02") == 2
    assert [w.machines for w in recovery_plan(tenants["globex"]).waves] == [
        ["globex-db01"],
        ["globex-app01"],
        ["globex-web01"],
    ]
    assert [w.machines for w in recovery_plan(tenants["initech"]).waves] == [
        ["initech-fs01"],
        ["initech-app01"],
    ]


# --- journal sizing ------------------------------------------------------------------------------------


def test_journal_io_profile_is_one_read_and_two_writes_per_source_write() -> None:
    """Design guide: every source write = 1 sequential journal write + 1 random read and
    1 random write on the replica volume, i.e. 1 read + 2 writes on the target side."""
    io = target_io(1000)
    assert io == {
        "journal_write_iops": 1000,
        "replica_read_iops": 1000,
        "replica_write_iops": 1000,
        "target_iops": 3000,
    }
    reads = io["replica_read_iops"]
    writes = io["journal_write_iops"] + io["replica_write_iops"]
    assert (reads, writes) == (1000, 2000)


def test_journal_capacity_is_change_rate_times_window() -> None:
    # 120 GB/day kept for the 72-hour standard window: 360 GB; 432 GB/day is exactly 40 Mbps.
    sizing = size_journal("g", 120, timedelta(hours=72), source_write_iops=1000)
    assert sizing.capacity_gb == pytest.approx(360)
    assert sizing.provisioned_gb == pytest.approx(360) and sizing.hours_covered == pytest.approx(72)
    assert (
        sizing.journal_write_iops,
        sizing.replica_read_iops,
        sizing.replica_write_iops,
        sizing.target_iops,
    ) == (1000, 1000, 1000, 3000)
    assert not sizing.iops_estimated
    assert size_journal("g", 432, timedelta(days=1)).journal_write_mbps == pytest.approx(40)
    # Design guide sparse example: 4 weeks of 50 GB/day is still sized for every write (upper bound).
    assert size_journal("g", 50, timedelta(weeks=4)).capacity_gb == pytest.approx(1400)


def test_space_based_policies_cap_the_journal_and_shorten_the_window() -> None:
    capped = size_journal(
        "g", 100, timedelta(hours=72), policy="time_and_space", space_limit_gb=150
    )
    assert (capped.capacity_gb, capped.provisioned_gb, capped.hours_covered) == (300, 150, 36)
    roomy = size_journal("g", 100, timedelta(hours=72), policy="time_and_space", space_limit_gb=500)
    assert (roomy.provisioned_gb, roomy.hours_covered) == (300, 72)
    space = size_journal("g", 100, timedelta(hours=72), policy="space", space_limit_gb=500)
    assert (space.provisioned_gb, space.hours_covered) == (500, 72)


def test_write_iops_are_estimated_from_the_change_rate_when_not_declared() -> None:
    sizing = size_journal("g", 1, timedelta(days=1))
    assert sizing.iops_estimated
    assert sizing.source_write_iops == pytest.approx(1e9 / 86400 / 65536)
    assert writes_per_second(86400 * 65536 / 1e9) == pytest.approx(1.0)


def test_journal_sizing_of_sample_groups(tenants: dict) -> None:
    acme = tenants["acme"]
    win = size_group(acme, acme.group("acme-windows"))
    assert win is not None
    assert win.change_gb_per_day == 42 and win.window_hours == 672
    assert win.capacity_gb == pytest.approx(42 * 28)
    assert (win.source_write_iops, win.target_iops) == (1350, 4050)
    db = size_group(tenants["globex"], tenants["globex"].group("globex-db"))
    assert db is not None and db.space_limit_gb == 250 and db.provisioned_gb == pytest.approx(180)
    assert size_group(tenants["globex"], tenants["globex"].group("globex-apps")) is None  # VMR-SNAP


# --- sparse retention ----------------------------------------------------------------------------------

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _history(now: datetime = NOW, days: int = 35) -> list[RecoveryPoint]:
    """A write every 15 minutes, an application bookmark every 6 h, a file-system bookmark hourly."""
    points = []
    t = now - timedelta(days=days)
    while t <= now:
        points.append(RecoveryPoint(at=t))
        if t.minute == 0 and t.hour % 6 == 0:
            points.append(
                RecoveryPoint(at=t + timedelta(minutes=1), kind="bookmark", bookmark_type=APP)
            )
        if t.minute == 30:
            points.append(RecoveryPoint(at=t, kind="bookmark", bookmark_type=FS))
        t += timedelta(minutes=15)
    return [p for p in points if p.at <= now]


def test_design_guide_sparse_retention_example() -> None:
    policy = design_guide_example()
    points = _history()
    kept = surviving_points(points, policy, NOW)

    def age(p: RecoveryPoint) -> timedelta:
        return NOW - p.at

    day1 = [p for p in points if age(p) < timedelta(hours=24)]
    assert [p for p in kept if age(p) < timedelta(hours=24)] == day1  # all writes and bookmarks
    assert len([p for p in day1 if p.kind == "write"]) == 96

    day2 = [p for p in kept if timedelta(hours=24) <= age(p) < timedelta(hours=48)]
    writes2 = [p.at.strftime("%dT%H:%M") for p in day2 if p.kind == "write"]
    # One write per 4-hour bucket (UTC-aligned), the latest of each; the window edges cut buckets.
    assert writes2 == [
        "26T15:45",
        "26T19:45",
        "26T23:45",
        "27T03:45",
        "27T07:45",
        "27T11:45",
        "27T12:00",
    ]
    all_bookmarks2 = [
        p
        for p in points
        if p.kind == "bookmark" and timedelta(hours=24) <= age(p) < timedelta(hours=48)
    ]
    assert [p for p in day2 if p.kind == "bookmark"] == all_bookmarks2  # plus all bookmarks
    assert len(all_bookmarks2) == 24 + 4

    older = [p for p in kept if age(p) >= timedelta(hours=48)]
    assert older and all(
        p.kind == "bookmark" and p.bookmark_type is APP for p in older
    )  # only one type
    expected_app = [
        p
        for p in points
        if p.kind == "bookmark"
        and p.bookmark_type is APP
        and timedelta(hours=48) <= age(p) < timedelta(weeks=4)
    ]
    assert older == expected_app
    # Every 6 h from 10-31T12:01 (4 weeks minus 1 min old) to 11-26T06:01 (11-26T12:01 is in tier 2).
    assert len(expected_app) == 2 + 25 * 4 + 2
    assert all(age(p) < timedelta(weeks=4) for p in kept)  # nothing beyond 4 weeks
    assert min(p.at for p in points) < NOW - timedelta(weeks=4)  # there was older data to drop

    summary = summarise(points, policy, NOW)
    assert [(s.keep, s.writes, s.bookmarks) for s in summary] == [
        ("all", 96, 28),
        ("interval", 7, 28),
        ("bookmarks", 0, 104),
    ]


def test_tier_boundaries() -> None:
    policy = design_guide_example()
    assert tier_for_age(policy, timedelta(hours=23, minutes=59)).keep == "all"
    assert tier_for_age(policy, timedelta(hours=24)).keep == "interval"
    assert tier_for_age(policy, timedelta(hours=48)).keep == "bookmarks"
    assert tier_for_age(policy, timedelta(weeks=4)) is None


def test_pruning_is_monotonic_a_discarded_point_never_comes_back() -> None:
    """Design guide: once a point is discarded it cannot be retroactively created."""
    policy = design_guide_example()
    rng = random.Random(7)
    points = [
        RecoveryPoint(
            at=NOW - timedelta(seconds=rng.randint(0, 40 * 86400)),
            kind=rng.choice(["write", "write", "bookmark"]),
            bookmark_type=rng.choice([APP, FS]),
        )
        for _ in range(3000)
    ]
    points = [
        p if p.kind == "bookmark" else p.model_copy(update={"bookmark_type": None}) for p in points
    ]
    for step_hours in (1, 3, 7, 24, 50):
        t1 = NOW
        t2 = NOW + timedelta(hours=step_hours)
        once = surviving_points(points, policy, t2)
        twice = surviving_points(surviving_points(points, policy, t1), policy, t2)
        assert once == twice
        assert set(map(id, once)) <= set(map(id, surviving_points(points, policy, t1)))


def test_plain_time_policy_keeps_everything_inside_the_window() -> None:
    policy = Retention(window=timedelta(hours=72))
    points = _history(days=5)
    kept = surviving_points(points, policy, NOW)
    assert kept == [p for p in points if NOW - p.at < timedelta(hours=72)]


def test_custom_sparse_policy_with_all_bookmark_types_kept() -> None:
    policy = Retention(
        window=timedelta(days=7),
        sparse=[
            SparseTier(until=timedelta(hours=1), keep="all"),
            SparseTier(until=timedelta(days=7), keep="interval", interval=timedelta(days=1)),
        ],
    )
    kept = surviving_points(_history(days=10), policy, NOW)
    older = [p for p in kept if NOW - p.at >= timedelta(hours=1)]
    assert (
        len([p for p in older if p.kind == "write"]) == 8
    )  # 6 full UTC days + 2 partial edge buckets
    assert {p.bookmark_type for p in older if p.kind == "bookmark"} == {APP, FS}


# --- RPO ----------------------------------------------------------------------------------------------------


def test_rpo_worked_examples() -> None:
    # 432 GB/day = 40 Mbps: 40% of a 100 Mbps link.
    assert change_mbps(432) == pytest.approx(40)
    assert achievable_rpo(ServicePackage.VMR_CDP, 432, 100) == pytest.approx(
        7.0
    )  # 5 s checkpoints x 1.4
    assert achievable_rpo("VMR-SNAP", 432, 100) == pytest.approx(3600 * 1.4)  # hourly at best
    assert achievable_rpo("VMR-SNAP", 432, 100, interval=timedelta(hours=4)) == pytest.approx(
        4 * 3600 * 1.4
    )
    assert achievable_rpo("VMR-SNAP", 432, 100, interval=timedelta(minutes=30)) == pytest.approx(
        3600 * 1.4
    )
    # Compression helps packages that compress, not PMR ("native state, not compressed").
    assert achievable_rpo("VMR-SNAP", 432, 100, compression_ratio=2) == pytest.approx(3600 * 1.2)
    assert achievable_rpo("PMR", 432, 100, compression_ratio=2) == pytest.approx(3600 * 1.4)
    # Peaks count: three times the average on the same link.
    assert achievable_rpo("VMR-CDP", 216, 100, peak_factor=3) == pytest.approx(5 * 1.6)


def test_rpo_is_capped_by_the_100_mbps_site_maximum_and_by_saturation() -> None:
    assert achievable_rpo("VMR-CDP", 432, 1000) == achievable_rpo("VMR-CDP", 432, 100)
    assert achievable_rpo("VMR-CDP", 1080, 100) is None  # exactly 100 Mbps: never catches up
    assert achievable_rpo("VMR-CDP", 1000, 100) == pytest.approx(
        5 * (1 + 1000 * 8000 / 86400 / 100)
    )


def test_sample_tenants_meet_their_rpo_targets(tenants: dict) -> None:
    results = {e.group: e for t in tenants.values() for e in tenant_rpo(t)}
    assert all(e.achievable for e in results.values()), results
    win = results["acme-windows"]
    # acme: 56 GB/day at 3x peak, compressed 1.5x: 10.37 Mbps of 100.
    assert win.required_mbps == pytest.approx(56 * 8000 / 86400 * 3 / 1.5)
    assert win.achievable_seconds == pytest.approx(5 * (1 + win.utilisation))
    assert results["globex-apps"].interval_seconds == 4 * 3600


def test_plan_command_prints_waves_sizing_and_rpo() -> None:
    result = CliRunner().invoke(
        app,
        ["plan", "--tenant", "acme", "--config-dir", str(ROOT / "configs")],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    out = result.output
    for text in (
        "recovery waves",
        "acme-dc01 (DC)",
        "Journal sizing",
        "1,176",
        "4,050",
        "RPO on 100 Mbps",
        "acme-windows",
        "30s",
    ):
        assert text in out, text
    assert out.index("acme-dc01") < out.index("acme-sql01") < out.index("acme-web02")
    missing = CliRunner().invoke(
        app, ["plan", "--tenant", "nobody", "--config-dir", str(ROOT / "configs")]
    )
    assert (
        missing.exit_code == 1
        and "nobody.yaml: <root>: no such file or directory" in missing.output
    )


def test_retention_table_marks_what_the_sparse_policy_keeps() -> None:
    """acme-windows keeps every point for 24 h, one per 4 h to 48 h, then application bookmarks only."""
    from rich.console import Console

    from draas.clients.replication.models import RecoveryPoint as ManagerPoint
    from draas.planning.report import retention_table
    from draas.validation import load_tenant

    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    points = [
        ManagerPoint(id="cp-recent", timestamp=now - timedelta(hours=1)),
        ManagerPoint(id="cp-30h-a", timestamp=datetime(2026, 12, 2, 5, 10, tzinfo=UTC)),
        ManagerPoint(id="cp-30h-b", timestamp=datetime(2026, 12, 2, 6, 20, tzinfo=UTC)),  # same 4 h bucket, newer
        ManagerPoint(id="cp-old-write", timestamp=now - timedelta(days=5)),
        ManagerPoint(id="cp-old-app", timestamp=now - timedelta(days=5, minutes=5), tag="app-consistent",
                     app_consistent=True),
        ManagerPoint(id="cp-ancient", timestamp=now - timedelta(weeks=5), app_consistent=True),
    ]
    console = Console(width=220, record=True)
    console.print(retention_table(load_tenant("acme"), "acme-windows", points, now))
    rows = {line.split("│")[1].strip(): line for line in console.export_text().splitlines()
            if line.count("│") > 3 and line.split("│")[1].strip().startswith("cp-")}
    assert "tier 1 (keep all" in rows["cp-recent"]
    assert "tier 2 (keep interval" in rows["cp-30h-b"] and "dropped by tier 2" in rows["cp-30h-a"]
    assert "dropped by tier 3" in rows["cp-old-write"]
    assert "tier 3 (keep bookmarks" in rows["cp-old-app"] and "application" in rows["cp-old-app"]
    assert "beyond the window" in rows["cp-ancient"]

"""The state store on SQLite and on a real PostgreSQL (started by the session fixture)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, text, update
from sqlmodel import Session

from draas.models.results import StepResult
from draas.state import AuditEntry, AuditLogAppendOnly, StateStore, default_database_url
from draas.state.store import redact_url
from draas.validation import load_tenant

ROOT = Path(__file__).resolve().parents[2]


def _url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    st = StateStore(_url(request.param, request, tmp_path))
    yield st
    st.dispose()


def test_schema_is_created_with_every_table(store: StateStore) -> None:
    counts = store.counts()
    assert set(counts) == {
        "schema_version",
        "tenants",
        "provisioned_objects",
        "protection_groups",
        "recovery_points_used",
        "flow_runs",
        "flow_steps",
        "drill_results",
        "reports",
        "changes",
        "audit_log",
        "tenant_leases",
        "rpo_samples",
    }
    assert counts["schema_version"] == 1
    assert sum(counts.values()) == 1


def test_tenant_upsert_is_idempotent_and_tracks_config_changes(store: StateStore) -> None:
    acme = load_tenant("acme", ROOT / "configs")
    first = store.upsert_tenant(acme)
    again = store.upsert_tenant(acme)
    assert (first.tier, again.config_sha256, again.updated_at) == (
        "gold",
        first.config_sha256,
        first.updated_at,
    )
    changed = store.upsert_tenant(acme.model_copy(update={"display_name": "ACME plc"}))
    assert changed.display_name == "ACME plc" and changed.config_sha256 != first.config_sha256
    row = store.get_tenant("acme")
    assert row is not None and row.config["network"]["vlans"][0]["id"] == 1011
    store.set_tenant_status("acme", "offboarded")
    assert store.tenants() == [] and [t.id for t in store.tenants(status=None)] == ["acme"]


def test_provisioned_objects_keep_enough_identity_to_remove_them(store: StateStore) -> None:
    vlan = store.record_object(
        tenant_id="acme",
        system="cisco",
        kind="vlan",
        name="1011",
        device="agg-1",
        lines=["vlan 1011", "  name acme-web"],
        run_id="run-1",
    )
    acl = store.record_object(
        tenant_id="acme",
        system="cisco",
        kind="acl",
        name="ipsec-only",
        device="fw-perimeter",
        context="acme-perimeter",
        lines=["access-list outside permit esp host 203.0.113.10 host 198.51.100.10"],
        run_id="run-1",
    )
    folder = store.record_object(
        tenant_id="acme",
        system="vcenter-recovery",
        kind="folder",
        name="acme",
        moid="group-v42",
        object_type="Folder",
        run_id="run-1",
    )
    record = store.record_object(
        tenant_id="acme",
        system="dns",
        kind="dns_record",
        name="web01",
        identity={"zone": "acme.example.com", "type": "A"},
        run_id="run-2",
    )
    # Recording the same object again (a retried task) returns the existing record.
    assert (
        store.record_object(
            tenant_id="acme",
            system="cisco",
            kind="vlan",
            name="1011",
            device="agg-1",
            run_id="run-9",
        ).id
        == vlan.id
    )
    # The same VLAN on the other switch is another object.
    other = store.record_object(
        tenant_id="acme", system="cisco", kind="vlan", name="1011", device="agg-2"
    )
    assert other.id != vlan.id
    objs = store.objects("acme")
    assert [o.id for o in objs] == [other.id, record.id, folder.id, acl.id, vlan.id]  # newest first
    got = {o.id: o for o in objs}
    assert got[acl.id].context == "acme-perimeter" and got[acl.id].lines[0].startswith(
        "access-list"
    )
    assert (got[folder.id].moid, got[folder.id].object_type) == ("group-v42", "Folder")
    assert got[record.id].identity == {"zone": "acme.example.com", "type": "A"}
    assert [o.id for o in store.objects("acme", run_id="run-1", system="cisco")] == [
        acl.id,
        vlan.id,
    ]
    store.mark_removed(vlan.id)
    store.mark_removed(vlan.id)  # idempotent
    assert vlan.id not in [o.id for o in store.objects("acme")]
    removed = next(o for o in store.objects("acme", active_only=False) if o.id == vlan.id)
    assert removed.removed_at is not None and removed.removed_at.tzinfo is not None
    # After removal the object can be created (and recorded) again.
    assert (
        store.record_object(
            tenant_id="acme", system="cisco", kind="vlan", name="1011", device="agg-1"
        ).id
        != vlan.id
    )


def test_concurrent_recording_of_one_object_gives_one_record(store: StateStore) -> None:
    """Eight runs recording the same object at the same moment: one record, which all of them get."""
    barrier = threading.Barrier(8)
    ids: list[int | None] = []

    def record(i: int) -> None:
        barrier.wait()
        row = store.record_object(tenant_id="acme", system="dns", kind="record", name="www", run_id=f"run-{i}",
                                  identity={"zone": "acme.example.com", "name": "www", "rtype": "A"})
        ids.append(row.id)

    threads = [threading.Thread(target=record, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    (only,) = store.objects("acme", system="dns")
    assert only.active_key is not None
    # Once removed, the same object can be recorded again (a new record), and only once.
    assert only.id is not None
    store.mark_removed(only.id)
    again = store.record_object(tenant_id="acme", system="dns", kind="record", name="www", run_id="run-9")
    assert again.id != only.id and store.get_object(only.id).active_key is None  # type: ignore[union-attr]
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        with Session(store.engine) as s:
            s.execute(text("INSERT INTO provisioned_objects (tenant_id, system, kind, name, identity, created_at, "
                           "active_key) VALUES ('acme', 'dns', 'record', 'www', '{}', '2026-01-01', :k)"),
                      {"k": again.active_key})
            s.commit()


def test_tenant_lease_is_exclusive_expires_and_is_only_released_by_its_holder(store: StateStore) -> None:
    taken, lease = store.acquire_lease("acme", run_id="r1", flow="preprovision-container", ttl_s=60)
    assert taken and lease.run_id == "r1"
    taken, holder = store.acquire_lease("acme", run_id="r2", flow="offboard-tenant", ttl_s=60)
    assert not taken and (holder.run_id, holder.flow) == ("r1", "preprovision-container")
    assert store.acquire_lease("globex", run_id="r2", flow="offboard-tenant", ttl_s=60)[0]  # other tenants are free
    store.release_lease("acme", run_id="r2")  # not the holder: nothing happens
    assert store.lease("acme").run_id == "r1"  # type: ignore[union-attr]
    assert store.renew_lease("acme", run_id="r1", ttl_s=0.2) and not store.renew_lease("acme", run_id="r2", ttl_s=60)
    import time

    time.sleep(0.4)  # r1 stopped renewing (its process died): the lease runs out
    taken, lease = store.acquire_lease("acme", run_id="r2", flow="offboard-tenant", ttl_s=60)
    assert taken and lease.run_id == "r2"
    assert not store.renew_lease("acme", run_id="r1", ttl_s=60)  # the old holder cannot take it back
    store.release_lease("acme", run_id="r2")
    assert store.lease("acme") is None


def test_protection_groups_and_recovery_points(store: StateStore) -> None:
    store.upsert_protection_group(
        tenant_id="acme", name="acme-windows", package="VMR-CDP", rpo_target_seconds=30
    )
    store.upsert_protection_group(
        tenant_id="acme",
        name="acme-windows",
        package="VMR-CDP",
        vpg_id="vpg-1",
        status="protecting",
    )
    (group,) = store.protection_groups("acme")
    assert (group.vpg_id, group.status, group.rpo_target_seconds) == ("vpg-1", "protecting", 30)
    at = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    store.record_recovery_point(
        tenant_id="acme",
        protection_group="acme-windows",
        checkpoint_id="cp-7",
        purpose="drill",
        run_id="run-1",
        point_time=at,
        tag="app-consistent",
    )
    (point,) = store.recovery_points_used("acme")
    assert (point.checkpoint_id, point.purpose, point.point_time) == ("cp-7", "drill", at)


def test_flow_runs_store_step_results_with_timings(store: StateStore) -> None:
    store.start_run(
        "run-1",
        flow="drill",
        tenant_id="acme",
        kind="drill",
        parameters={"tenant": "acme", "api_token": "s3cret"},
    )
    store.start_run(
        "run-1", flow="drill", tenant_id="acme", kind="drill"
    )  # a retry keeps the record
    t0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    results = [
        StepResult(
            step="start_failover_test",
            target="acme-windows",
            changed=True,
            started=t0,
            finished=t0 + timedelta(seconds=12.5),
            detail={"task": "t-1"},
        ),
        StepResult(
            step="power_on_vm",
            target="acme-dc01",
            changed=False,
            diff=["+ power on"],
            started=t0 + timedelta(seconds=13),
            finished=t0 + timedelta(seconds=15),
        ),
    ]
    for r in results:
        store.record_step("run-1", r)
    run = store.finish_run("run-1", state="Completed", outcome="success")
    steps = store.steps("run-1")
    assert [s.seq for s in steps] == [0, 1]
    assert [s.to_result() for s in steps] == results
    assert [s.seconds for s in steps] == [12.5, 2.0]
    stored = store.get_run("run-1")
    assert stored is not None and stored.parameters == {"tenant": "acme", "api_token": "***"}
    assert run.finished is not None and run.seconds is not None and run.seconds >= 0
    with pytest.raises(Exception, match="call start_run first"):
        store.record_step("nope", results[0])


def test_drill_results_reports_and_changes_since_last_successful_drill(store: StateStore) -> None:
    store.record_change(
        tenant_id="acme",
        kind="machine_added",
        subject="acme-web03",
        detected_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert [c.subject for c in store.changes_since_last_successful_drill("acme")] == ["acme-web03"]

    store.start_run("drill-1", flow="drill", tenant_id="acme", kind="drill")
    store.record_drill_result(
        run_id="drill-1",
        tenant_id="acme",
        machine="acme-dc01",
        check="heartbeat",
        passed=True,
        seconds=41.2,
    )
    store.record_drill_result(
        run_id="drill-1",
        tenant_id="acme",
        machine="acme-web01",
        check="http:80/",
        passed=False,
        detail="got 503",
    )
    store.finish_run("drill-1", state="Completed", outcome="success")
    store.save_report(
        tenant_id="acme",
        kind="dr_test_report",
        title="DR Test Report",
        content="# ok",
        run_id="drill-1",
    )
    results = store.drill_results("drill-1")
    assert [(r.machine, r.check, r.passed, r.seconds) for r in results] == [
        ("acme-dc01", "heartbeat", True, 41.2),
        ("acme-web01", "http:80/", False, None),
    ]
    assert [r.title for r in store.reports("acme", kind="dr_test_report")] == ["DR Test Report"]
    assert store.changes_since_last_successful_drill("acme") == []  # covered by the drill

    store.record_change(tenant_id="acme", kind="network_changed", subject="acme-web")
    store.start_run("drill-2", flow="drill", tenant_id="acme", kind="drill")
    store.finish_run("drill-2", state="Failed", outcome="failure")  # a failed drill covers nothing
    assert [c.subject for c in store.changes_since_last_successful_drill("acme")] == ["acme-web"]
    assert store.last_successful_drill("acme").id == "drill-1"
    assert store.changes_since_last_successful_drill("globex") == []


def test_audit_log_records_who_what_when_channel_outcome(store: StateStore) -> None:
    entry = store.audit(
        actor="alice.archer@acme.example.com",
        action="request_drill",
        channel="webhook",
        outcome="accepted",
        tenant_id="acme",
        run_id="run-1",
        detail={"reason": "half-yearly", "signature": "abc", "headers": {"Authorization": "x"}},
    )
    store.audit(
        actor="schedule", action="drill", channel="schedule", outcome="succeeded", tenant_id="acme"
    )
    store.audit(
        actor="mallory@evil.example",
        action="invoke_dr",
        channel="webhook",
        outcome="refused",
        tenant_id="globex",
    )
    log = store.audit_log("acme")
    assert [(e.actor, e.action, e.channel, e.outcome) for e in log] == [
        ("alice.archer@acme.example.com", "request_drill", "webhook", "accepted"),
        ("schedule", "drill", "schedule", "succeeded"),
    ]
    assert log[0].detail == {
        "reason": "half-yearly",
        "signature": "abc",
        "headers": {"Authorization": "***"},
    }
    assert log[0].at.tzinfo is not None and log[0].id == entry.id
    assert len(store.audit_log()) == 3
    assert store.audit_log(since=datetime.now(UTC) + timedelta(minutes=1)) == []


def test_audit_log_refuses_changes_through_the_orm(store: StateStore) -> None:
    entry = store.audit(actor="alice", action="invoke_dr", channel="cli", outcome="accepted")
    with Session(store.engine) as session:
        row = session.get(AuditEntry, entry.id)
        row.outcome = "refused"
        session.add(row)
        with pytest.raises(AuditLogAppendOnly):
            session.commit()
    with Session(store.engine) as session:
        session.delete(session.get(AuditEntry, entry.id))
        with pytest.raises(AuditLogAppendOnly):
            session.commit()
    with Session(store.engine) as session:
        with pytest.raises(AuditLogAppendOnly):
            session.exec(update(AuditEntry).values(outcome="x"))  # type: ignore[call-overload]
        with pytest.raises(AuditLogAppendOnly):
            session.exec(delete(AuditEntry))  # type: ignore[call-overload]
    with store.engine.connect() as conn, pytest.raises(AuditLogAppendOnly):
        conn.execute(text("update audit_log set outcome = 'x'"))
    assert [e.outcome for e in store.audit_log()] == ["accepted"]


def test_audit_log_refuses_changes_in_the_database_itself(store: StateStore) -> None:
    """Triggers stop writes that bypass the product's code (a raw DBAPI connection)."""
    store.audit(actor="alice", action="invoke_dr", channel="cli", outcome="accepted")
    statements = ["UPDATE audit_log SET outcome = 'refused'", "DELETE FROM audit_log"]
    if store.engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_log")
    for statement in statements:
        raw = store.engine.raw_connection()
        try:
            cur = raw.cursor()
            with pytest.raises(Exception, match="audit_log is append-only"):
                cur.execute(statement)
            raw.rollback()
        finally:
            raw.close()
    # Appending through a raw connection still works: the log is append-only, not read-only.
    other = create_engine(store.url)
    with other.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_log (at, actor, action, channel, outcome, detail) "
                "VALUES (CURRENT_TIMESTAMP, 'ops', 'note', 'cli', 'ok', '{}')"
            )
        )
    other.dispose()
    assert [e.outcome for e in store.audit_log()] == ["accepted", "ok"]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_older_schema_is_migrated_in_place(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = _url(kind, request, tmp_path)
    old = create_engine(url)
    with old.begin() as conn:
        # A flow_runs table from before the error and outcome columns existed, with a row in it.
        conn.execute(
            text(
                "CREATE TABLE flow_runs (id VARCHAR PRIMARY KEY, tenant_id VARCHAR, flow VARCHAR "
                "NOT NULL, kind VARCHAR, parameters JSON, dry_run BOOLEAN NOT NULL, state VARCHAR "
                "NOT NULL, started TIMESTAMP NOT NULL, finished TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO flow_runs (id, flow, dry_run, state, started, parameters) "
                "VALUES ('old-run', 'drill', false, 'Completed', '2026-01-01 10:00:00', '{}')"
            )
        )
    old.dispose()
    store = StateStore(url)
    try:
        run = store.get_run("old-run")
        assert run is not None and run.flow == "drill" and run.outcome is None
        store.finish_run("old-run", state="Completed", outcome="success", error=None)
        assert store.get_run("old-run").outcome == "success"
        assert store.counts()["audit_log"] == 0
        store.audit(actor="a", action="b", channel="cli", outcome="ok")
        raw = store.engine.raw_connection()  # triggers are installed on a migrated store too
        try:
            with pytest.raises(Exception, match="append-only"):
                raw.cursor().execute("DELETE FROM audit_log")
            raw.rollback()
        finally:
            raw.close()
    finally:
        store.dispose()
    reopened = StateStore(url)  # migrating again changes nothing
    try:
        assert reopened.counts()["schema_version"] == 1 and reopened.counts()["flow_runs"] == 1
    finally:
        reopened.dispose()


def test_concurrent_writers_on_sqlite(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'busy.db'}")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                store.audit(actor=f"w{n}", action="tick", channel="api", outcome=str(i))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.counts()["audit_log"] == 120
    store.dispose()


def test_url_comes_from_the_environment_and_defaults_to_a_local_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DRAAS_DATABASE_URL", raising=False)
    assert default_database_url() == f"sqlite:///{tmp_path / '.draas' / 'state.db'}"
    store = StateStore()
    store.audit(actor="a", action="b", channel="cli", outcome="ok")
    assert (tmp_path / ".draas" / "state.db").is_file()
    store.dispose()
    monkeypatch.setenv("DRAAS_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert StateStore().url.endswith("env.db")
    assert (
        redact_url("postgresql+psycopg2://draas:hunter2@db/draas")
        == "postgresql+psycopg2://draas:***@db/draas"
    )


def test_unreachable_database_is_a_clear_error_without_the_password() -> None:
    from draas.state import StateStoreError

    with pytest.raises(StateStoreError) as info:
        StateStore("postgresql+psycopg2://draas:hunter2@127.0.0.1:1/draas")
    assert "cannot open state store postgresql+psycopg2://draas:***@127.0.0.1:1/draas" in str(
        info.value
    )
    assert "hunter2" not in str(info.value)

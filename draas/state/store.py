"""The state store: SQLite by default, PostgreSQL by URL, schema created/migrated on open.

Usage::

    store = StateStore()                          # $DRAAS_DATABASE_URL or .draas/state.db
    store = StateStore("postgresql+psycopg2://u@host/db")
    store.record_object(tenant_id="acme", system="cisco", kind="vlan", name="1011", device="agg-1",
                        lines=["vlan 1011", " name acme-web"], run_id=run_id)
    store.audit(actor="alice@acme.example.com", action="request_drill", channel="webhook",
                outcome="accepted", tenant_id="acme")

The audit log is append-only three times over: the ORM refuses to flush changes or deletes
of audit entries, the engine refuses UPDATE/DELETE/TRUNCATE statements on the table, and
database triggers (SQLite and PostgreSQL) abort any that get past both.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, SQLModel, col, create_engine, select

from draas.errors import PermanentError
from draas.models.results import StepResult
from draas.reports.render import mask_secrets as scrub
from draas.state.tables import (
    SCHEMA_VERSION,
    AuditEntry,
    ChangeRecord,
    DrillResult,
    FlowRunRecord,
    ProtectionGroupRecord,
    ProvisionedObject,
    RecoveryPointUsed,
    ReportRecord,
    RpoSample,
    SchemaVersion,
    StepRecord,
    TenantLease,
    TenantRecord,
    utcnow,
)

AUDIT_TABLE = AuditEntry.__tablename__


class StateStoreError(PermanentError):
    """The state store refused an operation."""


class AuditLogAppendOnly(StateStoreError):
    """Something tried to change or delete an audit log entry."""


def default_database_url() -> str:
    """``$DRAAS_DATABASE_URL`` or a SQLite file ``.draas/state.db`` under the working directory."""
    url = os.environ.get("DRAAS_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{Path.cwd() / '.draas' / 'state.db'}"


def redact_url(url: str) -> str:
    """The URL without its password, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


def _bind_ts(engine: Engine, value: datetime) -> Any:
    """A timestamp as the UtcDateTime column stores it (naive UTC on SQLite), for raw SQL."""
    return value.replace(tzinfo=None) if engine.dialect.name == "sqlite" else value


def _payload_json(payload: Any) -> Any:
    return payload.model_dump(mode="json") if hasattr(payload, "model_dump") else payload


# --- schema migration and append-only enforcement --------------------------------------------

_SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER IF NOT EXISTS {AUDIT_TABLE}_no_update BEFORE UPDATE ON {AUDIT_TABLE}
        BEGIN SELECT RAISE(ABORT, '{AUDIT_TABLE} is append-only'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS {AUDIT_TABLE}_no_delete BEFORE DELETE ON {AUDIT_TABLE}
        BEGIN SELECT RAISE(ABORT, '{AUDIT_TABLE} is append-only'); END""",
]

_POSTGRES_TRIGGERS = [
    f"""CREATE OR REPLACE FUNCTION draas_{AUDIT_TABLE}_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION '{AUDIT_TABLE} is append-only'; END $$""",
    f"DROP TRIGGER IF EXISTS {AUDIT_TABLE}_append_only ON {AUDIT_TABLE}",
    f"""CREATE TRIGGER {AUDIT_TABLE}_append_only BEFORE UPDATE OR DELETE ON {AUDIT_TABLE}
        FOR EACH ROW EXECUTE FUNCTION draas_{AUDIT_TABLE}_append_only()""",
    f"DROP TRIGGER IF EXISTS {AUDIT_TABLE}_no_truncate ON {AUDIT_TABLE}",
    f"""CREATE TRIGGER {AUDIT_TABLE}_no_truncate BEFORE TRUNCATE ON {AUDIT_TABLE}
        FOR EACH STATEMENT EXECUTE FUNCTION draas_{AUDIT_TABLE}_append_only()""",
]

_MIGRATION_LOCK_ID = 0x64726161  # "draa": serialises concurrent migrations on PostgreSQL


def migrate(engine: Engine) -> list[str]:
    """Create missing tables, add missing columns, install the audit-log triggers.

    Schema evolution is additive: new tables and new columns (added as nullable, so old rows
    stay valid). Returns the DDL actions taken, for logging.
    """
    actions: list[str] = []
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        existing = set(inspect(conn).get_table_names())
        SQLModel.metadata.create_all(conn, tables=[t for t in _our_tables()])
        actions += [f"create table {t.name}" for t in _our_tables() if t.name not in existing]
        inspector = inspect(conn)
        for table in _our_tables():
            if table.name not in existing:
                continue
            have = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                col_type = column.type.compile(dialect=engine.dialect)
                conn.execute(
                    text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {col_type}')
                )
                actions.append(f"add column {table.name}.{column.name}")
        # Objects recorded before the active key existed get theirs, then the key becomes unique.
        for row in conn.execute(text("SELECT id, tenant_id, system, kind, name, device, context FROM "
                                     "provisioned_objects WHERE removed_at IS NULL AND active_key IS NULL")):
            conn.execute(text("UPDATE provisioned_objects SET active_key = :k WHERE id = :id"),
                         {"k": active_key(row.tenant_id, row.system, row.kind, row.name, row.device, row.context),
                          "id": row.id})
        conn.execute(text("CREATE UNIQUE INDEX IF NOT EXISTS ux_provisioned_objects_active_key "
                          "ON provisioned_objects (active_key)"))
        for ddl in _SQLITE_TRIGGERS if engine.dialect.name == "sqlite" else _POSTGRES_TRIGGERS:
            conn.execute(text(ddl))
        if (
            conn.execute(
                text("SELECT 1 FROM schema_version WHERE version = :v"), {"v": SCHEMA_VERSION}
            ).first()
            is None
        ):
            conn.execute(
                text("INSERT INTO schema_version (version, applied_at) VALUES (:v, :t)"),
                {
                    "v": SCHEMA_VERSION,
                    "t": utcnow().replace(tzinfo=None)
                    if engine.dialect.name == "sqlite"
                    else utcnow(),
                },
            )
            actions.append(f"schema version {SCHEMA_VERSION}")
    return actions


def active_key(tenant_id: str, system: str, kind: str, name: str, device: str | None,
               context: str | None) -> str:
    """The identity of an active object: unique in the store while the object is recorded active."""
    return json.dumps([tenant_id, system, kind, name, device, context], separators=(",", ":"))


def _our_tables() -> list[Any]:
    models = [
        SchemaVersion,
        TenantRecord,
        ProvisionedObject,
        ProtectionGroupRecord,
        RecoveryPointUsed,
        FlowRunRecord,
        StepRecord,
        DrillResult,
        ReportRecord,
        ChangeRecord,
        AuditEntry,
        TenantLease,
        RpoSample,
    ]
    return [m.__table__ for m in models]  # type: ignore[attr-defined]


_AUDIT_WRITE = re.compile(
    rf"^\s*(UPDATE\s+\"?{AUDIT_TABLE}\"?\b|DELETE\s+FROM\s+\"?{AUDIT_TABLE}\"?\b|TRUNCATE\b.*\b{AUDIT_TABLE}\b)",
    re.IGNORECASE | re.DOTALL,
)


def _guard_engine(engine: Engine) -> None:
    @event.listens_for(engine, "before_cursor_execute")
    def _refuse_audit_writes(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if _AUDIT_WRITE.match(statement):
            raise AuditLogAppendOnly(
                f"{AUDIT_TABLE} is append-only: refused {statement.split()[0].upper()}"
            )

    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            # WAL lets flow tasks in threads read while one writes; wait instead of "locked".
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()


@event.listens_for(OrmSession, "before_flush")
def _refuse_audit_changes(session: OrmSession, flush_context: Any, instances: Any) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditEntry) and (obj in session.deleted or session.is_modified(obj)):
            raise AuditLogAppendOnly(
                f"{AUDIT_TABLE} is append-only: entry {obj.id} cannot be changed"
            )


# --- the store -----------------------------------------------------------------------------------

_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _engine_for(url: str) -> Engine:
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            parsed = make_url(url)
            kwargs: dict[str, Any] = {"pool_pre_ping": True}
            if parsed.get_backend_name() == "sqlite":
                if parsed.database and parsed.database != ":memory:":
                    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            engine = create_engine(url, **kwargs)
            _guard_engine(engine)
            try:
                migrate(engine)
            except OperationalError as exc:
                engine.dispose()
                raise StateStoreError(
                    f"cannot open state store {redact_url(url)}: {exc.orig}"
                ) from None
            _ENGINES[url] = engine
        return engine


class StateStore:
    """Everything the product records. Thread-safe; every method is one short transaction."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_database_url()
        self.engine = _engine_for(self.url)

    def __repr__(self) -> str:
        return f"StateStore({redact_url(self.url)!r})"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success; objects stay usable after it closes."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except Exception:
                session.rollback()
                raise

    def dispose(self) -> None:
        """Close pooled connections (the engine is rebuilt on the next StateStore)."""
        with _ENGINES_LOCK:
            _ENGINES.pop(self.url, None)
        self.engine.dispose()

    # -- tenants --

    def upsert_tenant(self, config: Any) -> TenantRecord:
        """Record a tenant from its TenantConfig (or a dict of it); updates if it exists."""
        data = config.model_dump(mode="json") if hasattr(config, "model_dump") else dict(config)
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        with self.session() as s:
            row = s.get(TenantRecord, data["id"])
            if row is None:
                row = TenantRecord(
                    id=data["id"],
                    display_name=data["display_name"],
                    tier=data["network"]["tier"],
                    config_sha256=digest,
                    config=data,
                )
                s.add(row)
            elif row.config_sha256 != digest or row.status != "onboarded":
                row.display_name = data["display_name"]
                row.tier = data["network"]["tier"]
                row.config = data
                row.config_sha256 = digest
                row.status = "onboarded"
                row.updated_at = utcnow()
            return row

    def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        with self.session() as s:
            return s.get(TenantRecord, tenant_id)

    def tenants(self, status: str | None = "onboarded") -> list[TenantRecord]:
        with self.session() as s:
            query = select(TenantRecord).order_by(col(TenantRecord.id))
            if status:
                query = query.where(TenantRecord.status == status)
            return list(s.exec(query))

    def set_tenant_status(self, tenant_id: str, status: str) -> None:
        with self.session() as s:
            row = s.get(TenantRecord, tenant_id)
            if row is None:
                raise StateStoreError(f"unknown tenant {tenant_id}")
            row.status = status
            row.updated_at = utcnow()

    # -- provisioned objects --

    def record_object(
        self,
        *,
        tenant_id: str,
        system: str,
        kind: str,
        name: str,
        run_id: str | None = None,
        site: str | None = None,
        device: str | None = None,
        context: str | None = None,
        lines: list[str] | None = None,
        moid: str | None = None,
        object_type: str | None = None,
        identity: dict | None = None,
    ) -> ProvisionedObject:
        """Record an object before it is created; returns the existing active record if already recorded.

        The active key is unique, so when two runs record the same object at once one insert
        fails and that caller gets the record the other one wrote: never two records.
        """
        for _attempt in range(3):
            try:
                with self.session() as s:
                    row = self._active_object(s, tenant_id, system, kind, name, device, context)
                    if row is not None:
                        if moid and not row.moid:
                            row.moid = moid
                        return row
                    row = ProvisionedObject(
                        tenant_id=tenant_id, system=system, site=site, kind=kind, name=name, run_id=run_id,
                        device=device, context=context, lines=lines, moid=moid, object_type=object_type,
                        identity=identity or {},
                        active_key=active_key(tenant_id, system, kind, name, device, context),
                    )
                    s.add(row)
                    return row
            except IntegrityError:
                continue  # a concurrent run recorded it first: read its record
        raise StateStoreError(f"cannot record {system} {kind} {name} of {tenant_id}: concurrent writers")

    def find_object(self, *, tenant_id: str, system: str, kind: str, name: str,
                    device: str | None = None, context: str | None = None) -> ProvisionedObject | None:
        """The active record of this object, if any (read only)."""
        with self.session() as s:
            return self._active_object(s, tenant_id, system, kind, name, device, context)

    @staticmethod
    def _active_object(s: Session, tenant_id: str, system: str, kind: str, name: str,
                       device: str | None, context: str | None) -> ProvisionedObject | None:
        query = select(ProvisionedObject).where(
            ProvisionedObject.tenant_id == tenant_id,
            ProvisionedObject.system == system,
            ProvisionedObject.kind == kind,
            ProvisionedObject.name == name,
            col(ProvisionedObject.removed_at).is_(None),
        )
        query = query.where(
            ProvisionedObject.device == device
            if device is not None
            else col(ProvisionedObject.device).is_(None)
        )
        query = query.where(
            ProvisionedObject.context == context
            if context is not None
            else col(ProvisionedObject.context).is_(None)
        )
        return s.exec(query).first()

    def get_object(self, object_id: int) -> ProvisionedObject | None:
        with self.session() as s:
            return s.get(ProvisionedObject, object_id)

    def mark_removed(self, object_id: int) -> None:
        """Mark an object removed (kept for history)."""
        with self.session() as s:
            row = s.get(ProvisionedObject, object_id)
            if row is None:
                raise StateStoreError(f"no provisioned object {object_id}")
            if row.removed_at is None:
                row.removed_at = utcnow()
                row.active_key = None

    def objects(
        self,
        tenant_id: str,
        *,
        run_id: str | None = None,
        system: str | None = None,
        active_only: bool = True,
    ) -> list[ProvisionedObject]:
        """Objects created for a tenant, newest first (the order to remove them in)."""
        with self.session() as s:
            query = select(ProvisionedObject).where(ProvisionedObject.tenant_id == tenant_id)
            if run_id is not None:
                query = query.where(ProvisionedObject.run_id == run_id)
            if system is not None:
                query = query.where(ProvisionedObject.system == system)
            if active_only:
                query = query.where(col(ProvisionedObject.removed_at).is_(None))
            return list(s.exec(query.order_by(col(ProvisionedObject.id).desc())))

    # -- protection groups and recovery points --

    def upsert_protection_group(
        self,
        *,
        tenant_id: str,
        name: str,
        package: str,
        vpg_id: str | None = None,
        status: str | None = None,
        rpo_target_seconds: float | None = None,
    ) -> ProtectionGroupRecord:
        with self.session() as s:
            row = s.exec(
                select(ProtectionGroupRecord).where(
                    ProtectionGroupRecord.tenant_id == tenant_id, ProtectionGroupRecord.name == name
                )
            ).first()
            if row is None:
                row = ProtectionGroupRecord(tenant_id=tenant_id, name=name, package=package)
                s.add(row)
            row.package = package
            if vpg_id is not None:
                row.vpg_id = vpg_id
            if status is not None:
                row.status = status
            if rpo_target_seconds is not None:
                row.rpo_target_seconds = rpo_target_seconds
            row.updated_at = utcnow()
            return row

    def protection_groups(self, tenant_id: str) -> list[ProtectionGroupRecord]:
        with self.session() as s:
            return list(
                s.exec(
                    select(ProtectionGroupRecord)
                    .where(ProtectionGroupRecord.tenant_id == tenant_id)
                    .order_by(col(ProtectionGroupRecord.name))
                )
            )

    def record_recovery_point(
        self,
        *,
        tenant_id: str,
        protection_group: str,
        checkpoint_id: str,
        purpose: str,
        run_id: str | None = None,
        point_time: datetime | None = None,
        tag: str | None = None,
    ) -> RecoveryPointUsed:
        with self.session() as s:
            row = RecoveryPointUsed(
                tenant_id=tenant_id,
                protection_group=protection_group,
                checkpoint_id=checkpoint_id,
                purpose=purpose,
                run_id=run_id,
                point_time=point_time,
                tag=tag,
            )
            s.add(row)
            return row

    def recovery_points_used(self, tenant_id: str) -> list[RecoveryPointUsed]:
        with self.session() as s:
            return list(
                s.exec(
                    select(RecoveryPointUsed)
                    .where(RecoveryPointUsed.tenant_id == tenant_id)
                    .order_by(col(RecoveryPointUsed.id))
                )
            )

    # -- flow runs and steps --

    def start_run(
        self,
        run_id: str,
        *,
        flow: str,
        tenant_id: str | None = None,
        kind: str | None = None,
        parameters: dict | None = None,
        dry_run: bool = False,
        crash_policy: str | None = None,
    ) -> FlowRunRecord:
        """Record a flow run as running (idempotent: a retried flow keeps its record)."""
        with self.session() as s:
            row = s.get(FlowRunRecord, run_id)
            if row is None:
                row = FlowRunRecord(
                    id=run_id,
                    flow=flow,
                    tenant_id=tenant_id,
                    kind=kind,
                    parameters=scrub(parameters or {}),
                    dry_run=dry_run,
                    crash_policy=crash_policy,
                )
                s.add(row)
            return row

    def record_step(self, run_id: str, result: StepResult) -> StepRecord:
        """Store one StepResult of a run, in order."""
        with self.session() as s:
            if s.get(FlowRunRecord, run_id) is None:
                raise StateStoreError(f"no flow run {run_id}; call start_run first")
            seq = len(list(s.exec(select(StepRecord.id).where(StepRecord.run_id == run_id))))
            row = StepRecord(
                run_id=run_id,
                seq=seq,
                step=result.step,
                target=result.target,
                changed=result.changed,
                dry_run=result.dry_run,
                diff=list(result.diff),
                detail=json.loads(json.dumps(scrub(result.detail), default=str)),
                started=result.started,
                finished=result.finished,
                seconds=result.seconds if result.finished else None,
                status=result.status,
                error=result.error,
                wave=result.wave,
                machine=result.machine,
                payload=(json.loads(json.dumps(scrub(_payload_json(result.payload)), default=str))
                         if result.payload is not None else None),
            )
            s.add(row)
            return row

    def finish_run(
        self, run_id: str, *, state: str, outcome: str | None = None, error: str | None = None
    ) -> FlowRunRecord:
        with self.session() as s:
            row = s.get(FlowRunRecord, run_id)
            if row is None:
                raise StateStoreError(f"no flow run {run_id}")
            row.state = state
            row.outcome = outcome
            row.error = error
            row.finished = utcnow()
            return row

    def get_run(self, run_id: str) -> FlowRunRecord | None:
        with self.session() as s:
            return s.get(FlowRunRecord, run_id)

    def runs(self, tenant_id: str | None = None, kind: str | None = None) -> list[FlowRunRecord]:
        with self.session() as s:
            query = select(FlowRunRecord)
            if tenant_id is not None:
                query = query.where(FlowRunRecord.tenant_id == tenant_id)
            if kind is not None:
                query = query.where(FlowRunRecord.kind == kind)
            return list(s.exec(query.order_by(col(FlowRunRecord.started))))

    def running_runs(self) -> list[FlowRunRecord]:
        """Runs still recorded as running, oldest first (a crashed run stays here for the sweeper)."""
        with self.session() as s:
            return list(
                s.exec(
                    select(FlowRunRecord)
                    .where(FlowRunRecord.state == "Running")
                    .order_by(col(FlowRunRecord.started))
                )
            )

    # -- per-tenant leases (at most one state-changing run per tenant) --

    def acquire_lease(self, tenant_id: str, *, run_id: str, flow: str, ttl_s: float) -> tuple[bool, TenantLease]:
        """Take the tenant for ``run_id`` for ``ttl_s`` seconds, unless another live run holds it.

        A lease whose holder stopped renewing it (its process died) expires and is taken over.

        Returns:
            (True, the lease) when ``run_id`` holds it now; (False, the holder's lease) otherwise.
        """
        from datetime import timedelta

        for _attempt in range(5):
            now = utcnow()
            expires = now + timedelta(seconds=ttl_s)
            try:
                with self.session() as s:
                    row = s.get(TenantLease, tenant_id)
                    if row is None:
                        row = TenantLease(tenant_id=tenant_id, run_id=run_id, flow=flow, acquired_at=now,
                                          expires_at=expires)
                        s.add(row)
                        return True, row
                    holder = TenantLease(tenant_id=row.tenant_id, run_id=row.run_id, flow=row.flow,
                                         acquired_at=row.acquired_at, expires_at=row.expires_at)
            except IntegrityError:
                continue  # another run inserted it at the same moment: look again
            if holder.run_id != run_id and holder.expires_at > now:
                return False, holder
            with self.session() as s:  # ours already, or expired: take it over, atomically
                taken = s.connection().execute(
                    text("UPDATE tenant_leases SET run_id = :run, flow = :flow, acquired_at = :now, "
                         "expires_at = :exp WHERE tenant_id = :t AND run_id = :old AND expires_at = :old_exp"),
                    {"run": run_id, "flow": flow, "now": _bind_ts(self.engine, now),
                     "exp": _bind_ts(self.engine, expires), "t": tenant_id, "old": holder.run_id,
                     "old_exp": _bind_ts(self.engine, holder.expires_at)}).rowcount
            if taken:
                return True, TenantLease(tenant_id=tenant_id, run_id=run_id, flow=flow, acquired_at=now,
                                         expires_at=expires)
        raise StateStoreError(f"cannot take the lease of tenant {tenant_id}: too many concurrent writers")

    def renew_lease(self, tenant_id: str, *, run_id: str, ttl_s: float) -> bool:
        """Push the lease's expiry ``ttl_s`` seconds ahead; False when ``run_id`` no longer holds it."""
        from datetime import timedelta

        with self.session() as s:
            row = s.get(TenantLease, tenant_id)
            if row is None or row.run_id != run_id:
                return False
            row.expires_at = utcnow() + timedelta(seconds=ttl_s)
            return True

    def release_lease(self, tenant_id: str, *, run_id: str) -> None:
        """Give the tenant back (only the holder can)."""
        with self.session() as s:
            row = s.get(TenantLease, tenant_id)
            if row is not None and row.run_id == run_id:
                s.delete(row)

    def lease(self, tenant_id: str) -> TenantLease | None:
        """The tenant's current lease (possibly expired), if any."""
        with self.session() as s:
            return s.get(TenantLease, tenant_id)

    def run_objects(self, run_id: str, *, active_only: bool = True) -> list[ProvisionedObject]:
        """Objects one run recorded, whatever the tenant, newest first (the order to remove them in)."""
        with self.session() as s:
            query = select(ProvisionedObject).where(ProvisionedObject.run_id == run_id)
            if active_only:
                query = query.where(col(ProvisionedObject.removed_at).is_(None))
            return list(s.exec(query.order_by(col(ProvisionedObject.id).desc())))

    def steps(self, run_id: str) -> list[StepRecord]:
        with self.session() as s:
            return list(
                s.exec(
                    select(StepRecord)
                    .where(StepRecord.run_id == run_id)
                    .order_by(col(StepRecord.seq))
                )
            )

    # -- drills, reports, changes --

    def record_drill_result(
        self,
        *,
        run_id: str,
        tenant_id: str,
        machine: str,
        check: str,
        passed: bool,
        detail: str = "",
        seconds: float | None = None,
    ) -> DrillResult:
        with self.session() as s:
            row = DrillResult(
                run_id=run_id,
                tenant_id=tenant_id,
                machine=machine,
                check=check,
                passed=passed,
                detail=detail,
                seconds=seconds,
            )
            s.add(row)
            return row

    def drill_results(self, run_id: str) -> list[DrillResult]:
        with self.session() as s:
            return list(
                s.exec(
                    select(DrillResult)
                    .where(DrillResult.run_id == run_id)
                    .order_by(col(DrillResult.id))
                )
            )

    def save_report(
        self,
        *,
        tenant_id: str,
        kind: str,
        title: str,
        content: str,
        fmt: str = "markdown",
        run_id: str | None = None,
    ) -> ReportRecord:
        with self.session() as s:
            row = ReportRecord(
                tenant_id=tenant_id,
                kind=kind,
                title=title,
                content=content,
                format=fmt,
                run_id=run_id,
            )
            s.add(row)
            return row

    def reports(self, tenant_id: str, kind: str | None = None) -> list[ReportRecord]:
        with self.session() as s:
            query = select(ReportRecord).where(ReportRecord.tenant_id == tenant_id)
            if kind is not None:
                query = query.where(ReportRecord.kind == kind)
            return list(s.exec(query.order_by(col(ReportRecord.id))))

    def record_change(
        self,
        *,
        tenant_id: str,
        kind: str,
        subject: str = "",
        description: str = "",
        detected_at: datetime | None = None,
    ) -> ChangeRecord:
        with self.session() as s:
            row = ChangeRecord(
                tenant_id=tenant_id,
                kind=kind,
                subject=subject,
                description=description,
                detected_at=detected_at or utcnow(),
            )
            s.add(row)
            return row

    def last_successful_drill(self, tenant_id: str) -> FlowRunRecord | None:
        with self.session() as s:
            return s.exec(
                select(FlowRunRecord)
                .where(
                    FlowRunRecord.tenant_id == tenant_id,
                    FlowRunRecord.kind == "drill",
                    FlowRunRecord.outcome == "success",
                    col(FlowRunRecord.finished).is_not(None),
                )
                .order_by(col(FlowRunRecord.finished).desc())
            ).first()

    def changes_since_last_successful_drill(self, tenant_id: str) -> list[ChangeRecord]:
        """Changes the next drill must cover (all of them if no drill has succeeded yet)."""
        last = self.last_successful_drill(tenant_id)
        with self.session() as s:
            query = select(ChangeRecord).where(ChangeRecord.tenant_id == tenant_id)
            if last is not None and last.started is not None:
                # A change made while the drill ran was not necessarily covered by it.
                query = query.where(ChangeRecord.detected_at > last.started)
            return list(s.exec(query.order_by(col(ChangeRecord.detected_at))))

    # -- RPO samples (watch-protection) --

    def record_rpo_sample(self, *, tenant_id: str, group: str, status: str, target_rpo_s: int,
                          meeting_sla: bool, substatus: str = "", actual_rpo_s: int | None = None,
                          at: datetime | None = None) -> RpoSample:
        """Record one look at a group's status and actual RPO."""
        with self.session() as s:
            row = RpoSample(tenant_id=tenant_id, group=group, status=status, substatus=substatus,
                            actual_rpo_s=actual_rpo_s, target_rpo_s=target_rpo_s, meeting_sla=meeting_sla,
                            at=at or utcnow())
            s.add(row)
            return row

    def rpo_samples(self, tenant_id: str, group: str | None = None,
                    since: datetime | None = None) -> list[RpoSample]:
        """The tenant's RPO samples (of one group, from ``since`` on), oldest first."""
        with self.session() as s:
            query = select(RpoSample).where(RpoSample.tenant_id == tenant_id)
            if group is not None:
                query = query.where(RpoSample.group == group)
            if since is not None:
                query = query.where(RpoSample.at >= since)
            return list(s.exec(query.order_by(col(RpoSample.at), col(RpoSample.id))))

    # -- audit log --

    def audit(
        self,
        *,
        actor: str,
        action: str,
        channel: str,
        outcome: str,
        tenant_id: str | None = None,
        run_id: str | None = None,
        detail: dict | None = None,
    ) -> AuditEntry:
        """Append one audit entry (secret-looking detail keys are masked)."""
        with self.session() as s:
            row = AuditEntry(
                actor=actor,
                action=action,
                channel=channel,
                outcome=outcome,
                tenant_id=tenant_id,
                run_id=run_id,
                detail=json.loads(json.dumps(scrub(detail or {}), default=str)),
            )
            s.add(row)
            return row

    def audit_log(
        self, tenant_id: str | None = None, since: datetime | None = None
    ) -> list[AuditEntry]:
        with self.session() as s:
            query = select(AuditEntry)
            if tenant_id is not None:
                query = query.where(AuditEntry.tenant_id == tenant_id)
            if since is not None:
                query = query.where(AuditEntry.at >= since)
            return list(s.exec(query.order_by(col(AuditEntry.id))))

    def run_outcome(self, run_id: str) -> tuple[str, dict] | None:
        """How a run ended by its own audit trail: (``succeeded``/``failed``/``refused``, the entry's detail:
        RTO/RPO, report paths, error...), the last such entry; None while it has not ended."""
        with self.session() as s:
            entry = s.exec(select(AuditEntry).where(AuditEntry.run_id == run_id)
                           .where(col(AuditEntry.outcome).in_(("succeeded", "failed", "refused")))
                           .order_by(col(AuditEntry.id).desc())).first()
            return (entry.outcome, dict(entry.detail or {})) if entry is not None else None

    def counts(self) -> dict[str, int]:
        """Row count per table (tests use it to prove nothing was written)."""
        with self.engine.connect() as conn:
            return {
                t.name: conn.execute(text(f"SELECT COUNT(*) FROM {t.name}")).scalar_one()
                for t in _our_tables()
            }


__all__ = [
    "AuditLogAppendOnly",
    "StateStore",
    "StateStoreError",
    "default_database_url",
    "migrate",
    "scrub",
]

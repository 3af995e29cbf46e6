"""Tables of the state store (sqlmodel): what the product knows, did and created."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Text, TypeDecorator, UniqueConstraint
from sqlmodel import Field, SQLModel

from draas.models.results import StepResult

SCHEMA_VERSION = 1
"""Bump when a change needs more than adding tables or nullable columns (see migrate.py)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator):
    """Timestamps stored as UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        # SQLite stores text; keep it naive UTC so comparisons in SQL sort correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(*, nullable: bool = False, index: bool = False, now: bool = True) -> Any:
    kwargs: dict[str, Any] = {"sa_type": UtcDateTime, "nullable": nullable, "index": index}
    if now:
        kwargs["default_factory"] = utcnow
    else:
        kwargs["default"] = None
    return Field(**kwargs)


def _json(default: Any = dict) -> Any:
    return Field(default_factory=default, sa_type=JSON)


class SchemaVersion(SQLModel, table=True):
    __tablename__ = "schema_version"

    version: int = Field(primary_key=True)
    applied_at: datetime = _ts()


class TenantRecord(SQLModel, table=True):
    """A tenant the product has onboarded, with the config it was onboarded with."""

    __tablename__ = "tenants"

    id: str = Field(primary_key=True)
    display_name: str
    tier: str
    status: str = Field(default="onboarded", description="onboarded | offboarded")
    config_sha256: str
    config: dict = _json()
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ProvisionedObject(SQLModel, table=True):
    """Something the product created, with enough identity to find and remove it again.

    Cisco objects: ``device`` + ``context`` + the ``lines`` pushed; vCenter objects: ``moid``
    + ``name`` + ``object_type``; others (VPG, DNS record) put their keys in ``identity``.

    ``active_key`` is unique while the object is active (and NULL once removed), so two runs
    recording the same object at once cannot create two records of it.
    """

    __tablename__ = "provisioned_objects"
    __table_args__ = (Index("ux_provisioned_objects_active_key", "active_key", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(index=True)
    run_id: str | None = Field(default=None, index=True)
    system: str = Field(
        description="cisco | vcenter-recovery | vcenter-protected | replication | dns"
    )
    site: str | None = Field(default=None, description="protected | recovery (where the object lives)")
    active_key: str | None = Field(default=None, description="identity while active; NULL once removed")
    kind: str = Field(
        description="vlan, vrf, svi, context, acl, vip, port_group, folder, vm, vpg, ..."
    )
    name: str
    device: str | None = None
    context: str | None = None
    lines: list | None = Field(default=None, sa_type=JSON)
    moid: str | None = None
    object_type: str | None = None
    identity: dict = _json()
    created_at: datetime = _ts()
    removed_at: datetime | None = _ts(nullable=True, now=False)

    @property
    def active(self) -> bool:
        return self.removed_at is None


class ProtectionGroupRecord(SQLModel, table=True):
    """A protection group as set up in the replication manager."""

    __tablename__ = "protection_groups"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(index=True)
    name: str
    package: str
    vpg_id: str | None = None
    status: str = "defined"
    rpo_target_seconds: float | None = None
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class RecoveryPointUsed(SQLModel, table=True):
    """A checkpoint a drill, failover or failback recovered to."""

    __tablename__ = "recovery_points_used"

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(index=True)
    protection_group: str
    run_id: str | None = Field(default=None, index=True)
    checkpoint_id: str
    point_time: datetime | None = _ts(nullable=True, now=False)
    tag: str | None = None
    purpose: str = Field(description="drill | failover | failback")
    used_at: datetime = _ts()


class FlowRunRecord(SQLModel, table=True):
    """One run of a product flow (id: the Prefect flow run id when there is one)."""

    __tablename__ = "flow_runs"

    id: str = Field(primary_key=True)
    tenant_id: str | None = Field(default=None, index=True)
    flow: str
    kind: str | None = Field(default=None, index=True, description="onboard, drill, failover, ...")
    parameters: dict = _json()
    dry_run: bool = False
    state: str = "Running"
    outcome: str | None = Field(default=None, description="success | failure | swept | held")
    crash_policy: str | None = Field(default=None, description="undo | hold: what the sweeper does if it dies")
    error: str | None = Field(default=None, sa_type=Text)
    started: datetime = _ts()
    finished: datetime | None = _ts(nullable=True, now=False)

    @property
    def seconds(self) -> float | None:
        return None if self.finished is None else (self.finished - self.started).total_seconds()


class StepRecord(SQLModel, table=True):
    """One step of a flow run with its timing: a stored StepResult."""

    __tablename__ = "flow_steps"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="flow_runs.id", index=True)
    seq: int
    step: str
    target: str = ""
    changed: bool = False
    dry_run: bool = False
    diff: list = _json(list)
    detail: dict = _json()
    started: datetime = _ts()
    finished: datetime | None = _ts(nullable=True, now=False)
    seconds: float | None = None
    status: str | None = Field(default=None, description="ok | failed | skipped")
    error: str | None = Field(default=None, sa_type=Text)
    wave: int | None = None
    machine: str | None = None
    payload: dict | None = Field(default=None, sa_type=JSON)

    def to_result(self) -> StepResult:
        return StepResult(
            step=self.step,
            target=self.target,
            changed=self.changed,
            diff=list(self.diff),
            detail=dict(self.detail),
            dry_run=self.dry_run,
            started=self.started,
            finished=self.finished,
            status=self.status or "ok",  # type: ignore[arg-type]
            error=self.error,
            wave=self.wave,
            machine=self.machine,
            payload=self.payload,
        )


class DrillResult(SQLModel, table=True):
    """Outcome of one verification check of one machine in one drill."""

    __tablename__ = "drill_results"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True)
    tenant_id: str = Field(index=True)
    machine: str
    check: str
    passed: bool
    detail: str = Field(default="", sa_type=Text)
    seconds: float | None = Field(
        default=None, description="Time until the check passed or gave up"
    )
    checked_at: datetime = _ts()


class ReportRecord(SQLModel, table=True):
    """A generated document: DR Test Report, DR Plan, ..."""

    __tablename__ = "reports"

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(index=True)
    run_id: str | None = Field(default=None, index=True)
    kind: str = Field(description="dr_test_report | dr_plan | ...")
    title: str
    format: str = "markdown"
    content: str = Field(sa_type=Text)
    created_at: datetime = _ts()


class ChangeRecord(SQLModel, table=True):
    """A change to a tenant's protected estate, to be covered by the next drill."""

    __tablename__ = "changes"

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(index=True)
    kind: str = Field(
        description="machine_added, machine_removed, network_changed, config_changed, ..."
    )
    subject: str = ""
    description: str = Field(default="", sa_type=Text)
    detected_at: datetime = _ts(index=True)


class AuditEntry(SQLModel, table=True):
    """Who asked for what, when, through which channel, with what outcome. Append-only."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(index=True)
    actor: str = Field(description="Person, service account or schedule that asked")
    action: str = Field(description="invoke_dr, request_drill, failback, onboard_tenant, ...")
    tenant_id: str | None = Field(default=None, index=True)
    channel: str = Field(description="cli | webhook | prefect-ui | schedule | api | service-desk")
    outcome: str = Field(description="accepted | refused | succeeded | failed | ...")
    run_id: str | None = None
    detail: dict = _json()


class TenantLease(SQLModel, table=True):
    """Who holds a tenant for a state-changing run, until when (renewed while the run lives)."""

    __tablename__ = "tenant_leases"

    tenant_id: str = Field(primary_key=True)
    run_id: str
    flow: str
    acquired_at: datetime = _ts()
    expires_at: datetime = _ts()


# --- RPO watch (watch-protection) ------------------------------------------------------------


class RpoSample(SQLModel, table=True):
    """One look at a protection group's replication status and actual RPO (watch-protection)."""

    __tablename__ = "rpo_samples"
    __table_args__ = (Index("ix_rpo_samples_tenant_group_at", "tenant_id", "group", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(index=True)
    group: str
    at: datetime = _ts()
    status: str = Field(description="group state (meeting_sla, not_meeting_sla, ..., not_protected)")
    substatus: str = ""
    actual_rpo_s: int | None = None
    target_rpo_s: int
    meeting_sla: bool

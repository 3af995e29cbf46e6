"""The state store: tenants, provisioned objects, runs, drill results, reports, audit log."""

from draas.state.store import (
    AuditLogAppendOnly,
    StateStore,
    StateStoreError,
    default_database_url,
    migrate,
)
from draas.state.tables import (
    AuditEntry,
    ChangeRecord,
    DrillResult,
    FlowRunRecord,
    ProtectionGroupRecord,
    ProvisionedObject,
    RecoveryPointUsed,
    ReportRecord,
    StepRecord,
    TenantRecord,
)

__all__ = [
    "AuditEntry",
    "AuditLogAppendOnly",
    "ChangeRecord",
    "DrillResult",
    "FlowRunRecord",
    "ProtectionGroupRecord",
    "ProvisionedObject",
    "RecoveryPointUsed",
    "ReportRecord",
    "StateStore",
    "StateStoreError",
    "StepRecord",
    "TenantRecord",
    "default_database_url",
    "migrate",
]

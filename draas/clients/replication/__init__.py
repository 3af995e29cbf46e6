"""Replication adapters: the product-neutral ``ReplicationProvider`` and its Zerto implementation."""

from draas.clients.replication.base import (
    ReplicationAuthFailed,
    ReplicationCommitFailed,
    ReplicationDeadlineExceeded,
    ReplicationError,
    ReplicationFailoverFailed,
    ReplicationFailoverTestFailed,
    ReplicationNotFound,
    ReplicationProtectFailed,
    ReplicationProvider,
    ReplicationRequestRejected,
    ReplicationResponseError,
    ReplicationRollbackFailed,
    ReplicationTaskFailed,
    ReplicationTransientError,
)
from draas.clients.replication.models import (
    FailoverOptions,
    GroupOperation,
    GroupState,
    IpSettings,
    NicMapping,
    OperationKind,
    ProtectionSpec,
    ProtectResult,
    RecoveryPoint,
    RecoveryPoints,
    ReplicationGroup,
    ReplicationTask,
    TaskState,
    VmProtection,
)
from draas.clients.replication.zerto import ZertoClient

__all__ = [
    "FailoverOptions", "GroupOperation", "GroupState", "IpSettings", "NicMapping", "OperationKind",
    "ProtectResult", "ProtectionSpec", "RecoveryPoint", "RecoveryPoints", "ReplicationAuthFailed",
    "ReplicationCommitFailed", "ReplicationDeadlineExceeded", "ReplicationError", "ReplicationFailoverFailed",
    "ReplicationFailoverTestFailed", "ReplicationGroup", "ReplicationNotFound", "ReplicationProtectFailed",
    "ReplicationProvider", "ReplicationRequestRejected", "ReplicationResponseError", "ReplicationRollbackFailed",
    "ReplicationTask", "ReplicationTaskFailed", "ReplicationTransientError", "TaskState", "VmProtection",
    "ZertoClient",
]

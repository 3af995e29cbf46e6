"""Replication adapters: the product-neutral ``ReplicationProvider`` and its Zerto implementation."""

from draas.clients.replication.base import (
    ReplicationAuthFailed,
    ReplicationCommitFailed,
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
    ReplicationTimeout,
    ReplicationTransientError,
)
from draas.clients.replication.models import (
    FailoverOptions,
    GroupState,
    IpSettings,
    NicMapping,
    ProtectionSpec,
    ProtectResult,
    RecoveryPoint,
    ReplicationGroup,
    ReplicationTask,
    TaskState,
    VmProtection,
)
from draas.clients.replication.zerto import ZertoClient

__all__ = [
    "FailoverOptions", "GroupState", "IpSettings", "NicMapping", "ProtectResult", "ProtectionSpec",
    "RecoveryPoint", "ReplicationAuthFailed", "ReplicationCommitFailed", "ReplicationError",
    "ReplicationFailoverFailed", "ReplicationFailoverTestFailed", "ReplicationGroup", "ReplicationNotFound",
    "ReplicationProtectFailed", "ReplicationProvider", "ReplicationRequestRejected", "ReplicationResponseError",
    "ReplicationRollbackFailed", "ReplicationTask", "ReplicationTaskFailed", "ReplicationTimeout",
    "ReplicationTransientError", "TaskState", "VmProtection", "ZertoClient",
]

"""Pydantic models of the replication adapters: what goes in (specs) and what comes out.

They are product-neutral (a *group* is a Zerto VPG, a consistency group, a SnapMirror
relationship set, ...); each adapter maps them to its product's API.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum, IntEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class GroupState(str, Enum):
    """Where a replication group stands, whatever the product."""

    INITIALIZING = "initializing"  # initial or delta sync: no usable recovery point yet
    MEETING_SLA = "meeting_sla"
    NOT_MEETING_SLA = "not_meeting_sla"  # replicating, but RPO or history outside the SLA
    FAILING_OVER = "failing_over"
    MOVING = "moving"
    DELETING = "deleting"
    RECOVERED = "recovered"  # failed over and committed without reverse protection
    UNKNOWN = "unknown"


class TaskState(IntEnum):
    """Task states of the Zerto API (``Status.State``)."""

    IN_PROGRESS = 1
    WAITING_FOR_USER_INPUT = 2
    PAUSED = 3
    FAILED = 4
    STOPPED = 5
    COMPLETED = 6
    CANCELLING = 7

    @property
    def terminal(self) -> bool:
        return self in (TaskState.FAILED, TaskState.STOPPED, TaskState.COMPLETED)


class OperationKind(str, Enum):
    """What an asynchronous operation of the replication manager does, whatever the product calls it."""

    PROTECT = "protect"  # create or update a group
    UNPROTECT = "unprotect"  # remove a group
    TEST = "test"  # start a test recovery
    STOP_TEST = "stop_test"
    FAILOVER = "failover"  # unplanned recovery
    MOVE = "move"  # planned migration
    COMMIT = "commit"  # make a failover or move final
    ROLLBACK = "rollback"  # undo a failover or move awaiting commit
    PAUSE = "pause"  # stop replicating for a while (snapshot packages during a drill)
    RESUME = "resume"  # replicate again after a pause
    OTHER = "other"


class IpSettings(BaseModel):
    """Re-IP of one NIC at recovery (static address, or DHCP)."""

    model_config = ConfigDict(extra="forbid")

    dhcp: bool = False
    ip: str | None = None
    subnet_mask: str | None = None
    gateway: str | None = None
    primary_dns: str | None = None
    secondary_dns: str | None = None
    dns_suffix: str | None = None


class NicMapping(BaseModel):
    """Per-NIC recovery settings of one VM; unset values fall back to the group defaults."""

    model_config = ConfigDict(extra="forbid")

    nic: str = Field(default="Network adapter 1", description="NIC label as the product lists it")
    failover_network: str | None = None
    test_network: str | None = None
    failover_ip: IpSettings | None = None
    test_ip: IpSettings | None = None
    replace_mac: bool = False


class VmProtection(BaseModel):
    """One VM of a protection group, by name or by the product's identifier."""

    model_config = ConfigDict(extra="forbid")

    vm: str
    nics: list[NicMapping] = Field(default_factory=list)
    recovery_folder: str | None = None
    recovery_datastore: str | None = None
    boot_group: str | None = None


class ProtectionSpec(BaseModel):
    """What to protect and how: one replication group (a Zerto VPG).

    Inventory references (networks, folders, clusters, datastores) are names or the
    product's identifiers at the recovery site.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80)
    vms: list[VmProtection | str] = Field(min_length=1, description="VM names/ids, or VmProtection entries")
    rpo_seconds: int = Field(default=300, gt=0)
    journal_history_hours: int = Field(default=24, gt=0, le=720)
    journal_hard_limit_mb: int | None = Field(default=None, gt=0)
    journal_warning_mb: int | None = Field(default=None, gt=0)
    journal_datastore: str | None = None
    priority: Literal["Low", "Medium", "High"] = "Medium"
    test_interval_minutes: int | None = Field(default=None, gt=0)
    use_wan_compression: bool = True
    recovery_cluster: str | None = None
    recovery_host: str | None = None
    recovery_datastore: str | None = None
    recovery_folder: str | None = None
    recovery_resource_pool: str | None = None
    failover_network: str | None = None
    test_network: str | None = None

    @field_validator("vms", mode="after")
    @classmethod
    def _names_are_vms(cls, value: list[VmProtection | str]) -> list[VmProtection | str]:
        """Plain VM names (``vms=["acme-app01", ...]``) become VmProtection entries."""
        return [VmProtection(vm=v) if isinstance(v, str) else v for v in value]

    @property
    def members(self) -> list[VmProtection]:
        """The VMs, each as a VmProtection (what ``vms`` holds after validation)."""
        return [VmProtection(vm=v) if isinstance(v, str) else v for v in self.vms]


class FailoverOptions(BaseModel):
    """How to fail over (unplanned) or move (planned)."""

    model_config = ConfigDict(extra="forbid")

    planned: bool = Field(default=False, description="a planned migration (Zerto 'move'): source VMs shut down first")
    recovery_point: str | None = Field(default=None, description="checkpoint id; None = the latest")
    vms: list[str] | None = Field(default=None, description="a subset of the group's VMs (names or ids)")
    shutdown_source: Literal["none", "graceful", "force"] = "none"
    commit: Literal["manual", "auto_commit", "auto_rollback"] = "manual"
    reverse_protection: bool = False
    keep_source_vms: bool = False


class ReplicationGroup(BaseModel):
    """A replication group's status (a Zerto VPG)."""

    id: str
    name: str
    state: GroupState
    status: str = Field(description="the product's status name, e.g. MeetingSLA")
    substatus: str = Field(description="the product's sub-status name, e.g. FailingOverBeforeCommit")
    status_code: int | None = None
    substatus_code: int | None = None
    actual_rpo_s: int = 0
    configured_rpo_s: int = 0
    vm_count: int = 0
    progress_percent: int = 0
    protected_site_id: str | None = None
    recovery_site_id: str | None = None
    test_running: bool = False
    last_test: datetime | None = None
    awaiting_commit: bool = Field(default=False, description="recovered VMs exist; the operation waits for "
                                                              "commit or rollback")
    committing: bool = Field(default=False, description="a commit of a failover or move is under way")
    reversed: bool = Field(default=False, description="protected from the original recovery site back to the "
                                                      "original protected site (a failover was committed with "
                                                      "reverse protection)")

    @property
    def replicating(self) -> bool:
        return self.state in (GroupState.MEETING_SLA, GroupState.NOT_MEETING_SLA)

    @property
    def paused(self) -> bool:
        """Replication is paused (by a user or the system); resume catches up."""
        return self.substatus.startswith("ReplicationPaused")

    @property
    def failover_committed(self) -> bool:
        """A failover or move of this group was made final (not rolled back)."""
        return self.state == GroupState.RECOVERED or self.reversed


class RecoveryPoint(BaseModel):
    """One point in time the group can be recovered to (a Zerto checkpoint)."""

    id: str
    timestamp: datetime
    tag: str | None = None
    app_consistent: bool = False


class ReplicationTask(BaseModel):
    """An asynchronous operation of the replication manager."""

    id: str
    type: str = Field(default="", description="the product's task type, e.g. FailOverTest")
    kind: OperationKind | None = None
    state: TaskState
    progress: int = 0
    started: datetime | None = None
    completed: datetime | None = None
    reason: str | None = None
    group_ids: list[str] = Field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.state.terminal


class Site(BaseModel):
    id: str
    name: str


class InventoryItem(BaseModel):
    """A VM, network, folder, cluster, host, datastore or resource pool of a site."""

    id: str
    name: str


class ProtectResult(BaseModel):
    """Outcome of ``protect``: the group, whether anything changed, and what."""

    group: ReplicationGroup
    changed: bool
    diff: list[str] = Field(default_factory=list)
    task: ReplicationTask | None = None


class GroupOperation(BaseModel):
    """Payload of the replication tasks: the group as the step saw it, and the operation it started,
    found under way, or waited for (``task``; None when nothing had to be done)."""

    group: ReplicationGroup | None = None
    task: ReplicationTask | None = None

    @property
    def task_id(self) -> str | None:
        return self.task.id if self.task else None


class RecoveryPoints(BaseModel):
    """Payload of ``list_recovery_points``: the journal, oldest first, and the points worth naming."""

    points: list[RecoveryPoint] = Field(default_factory=list)
    latest: RecoveryPoint | None = None
    latest_app_consistent: RecoveryPoint | None = None

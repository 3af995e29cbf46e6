"""What the vCenter adapter takes and returns: plain pydantic, never pyVmomi objects."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

#: Kinds of inventory object the adapter finds, creates, marks and destroys.
ObjectKind = Literal["vm", "folder", "resource_pool", "network", "portgroup", "dvportgroup", "dvswitch",
                     "datastore", "cluster", "host", "datacenter"]

PowerState = Literal["poweredOn", "poweredOff", "suspended"]

#: Custom attribute names the product writes on every object it creates.
MARK_PREFIX = "draas."


class ObjectRef(BaseModel):
    """One inventory object: its kind, name (a path for folders) and managed object id."""

    kind: ObjectKind
    name: str
    moid: str


class VCenterChange(BaseModel):
    """Outcome of one idempotent operation: ``changed=False`` when nothing had to be done."""

    changed: bool
    action: str
    object: ObjectRef | None = None
    changes: list[str] = Field(default_factory=list, description="One line per difference found.")
    dry_run: bool = False
    detail: dict[str, Any] = Field(default_factory=dict)

    def diff(self) -> list[str]:
        """The differences as diff-like lines (``+`` create, ``-`` remove, ``~`` modify)."""
        return list(self.changes)


class Marks(BaseModel):
    """Who an object belongs to and why it exists, written as custom attributes ``draas.*``."""

    tenant: str = Field(min_length=1)
    purpose: str = Field(min_length=1, description="e.g. production, recovery, drill, bubble")
    run_id: str | None = Field(default=None, description="Flow run that created the object.")

    def attributes(self) -> dict[str, str]:
        """The custom attributes (name -> value) these marks stand for."""
        attrs = {f"{MARK_PREFIX}tenant": self.tenant, f"{MARK_PREFIX}purpose": self.purpose}
        if self.run_id:
            attrs[f"{MARK_PREFIX}run_id"] = self.run_id
        return attrs


class ResourceAllocation(BaseModel):
    """CPU and memory reservation/limit of a resource pool (-1 means unlimited)."""

    cpu_reservation_mhz: int = Field(default=0, ge=0)
    cpu_limit_mhz: int = Field(default=-1, ge=-1)
    cpu_expandable: bool = True
    memory_reservation_mb: int = Field(default=0, ge=0)
    memory_limit_mb: int = Field(default=-1, ge=-1)
    memory_expandable: bool = True
    shares: Literal["low", "normal", "high"] = "normal"


class IpSettings(BaseModel):
    """Static IP settings for one NIC (guest customization / re-IP)."""

    ip: ipaddress.IPv4Address
    prefix_length: int = Field(default=24, ge=1, le=32)
    gateway: ipaddress.IPv4Address | None = None
    dns_servers: list[ipaddress.IPv4Address] = Field(default_factory=list)
    dns_domain: str | None = None

    @property
    def netmask(self) -> str:
        return str(ipaddress.IPv4Network(f"0.0.0.0/{self.prefix_length}").netmask)


class GuestCustomization(BaseModel):
    """Re-IP of a VM: the host name and one IpSettings per NIC, in device order."""

    hostname: str | None = Field(default=None, description="Guest host name; None keeps the VM name.")
    domain: str | None = None
    nics: list[IpSettings] = Field(min_length=1)
    timezone: str = Field(default="UTC", description="Linux time zone (tz database name).")

    @field_validator("hostname")
    @classmethod
    def _short_hostname(cls, value: str | None) -> str | None:
        if value is not None and (not value or "." in value or len(value) > 63):
            raise ValueError("hostname must be a single DNS label (the domain goes in `domain`)")
        return value


class NicInfo(BaseModel):
    """One virtual NIC of a VM."""

    key: int
    label: str
    mac: str | None = None
    network: str | None = Field(default=None, description="Port group name the NIC is attached to.")
    connected: bool | None = None


class DiskInfo(BaseModel):
    """One virtual disk of a VM."""

    key: int
    label: str
    capacity_gb: float


class SnapshotInfo(BaseModel):
    """One snapshot of a VM."""

    name: str
    moid: str
    description: str = ""
    created: datetime | None = None
    current: bool = False


class VmInfo(BaseModel):
    """What the orchestrator needs to know about a VM."""

    name: str
    moid: str
    folder: str = Field(description="Folder path below the datacenter's VM folder.")
    power_state: PowerState
    guest_id: str | None = None
    cpus: int | None = None
    memory_mb: int | None = None
    tools_running_status: str | None = None
    heartbeat: str | None = Field(default=None, description="gray, green, yellow or red.")
    ip_address: str | None = None
    guest_ips: list[str] = Field(default_factory=list, description="Guest IPs per NIC, in order.")
    hostname: str | None = None
    nics: list[NicInfo] = Field(default_factory=list)
    disks: list[DiskInfo] = Field(default_factory=list)
    host: str | None = None
    resource_pool: str | None = None
    datastores: list[str] = Field(default_factory=list)
    attributes: dict[str, str] = Field(default_factory=dict)
    pending_customization: bool = False

    @property
    def networks(self) -> list[str]:
        return [n.network for n in self.nics if n.network]

    @property
    def is_windows(self) -> bool:
        return (self.guest_id or "").lower().startswith("win")


class VCenterEvent(BaseModel):
    """One vCenter event (from the event manager)."""

    key: int
    type: str
    created: datetime
    message: str = ""
    vm: str | None = None
    host: str | None = None
    user: str | None = None

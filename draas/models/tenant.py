"""A tenant's declared intent (configs/tenants/<tenant>.yaml) as pydantic models.

The models check the shape of each field (types, ranges, required combinations inside
one object). Rules that span objects or files (references, cycles, tier VLAN counts,
package limits, cross-tenant overlaps) live in :mod:`draas.validation`, which reports
each problem with its field path; load tenants through it, not by constructing these
models directly.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import Enum
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from draas.models.packages import (
    MAX_PUBLIC_IPS,
    MAX_SITE_BANDWIDTH_MBPS,
    MAX_SITE_LATENCY_MS,
    ServicePackage,
)
from draas.models.types import Duration, Email, Name, Slug


class _Strict(BaseModel):
    # Unknown keys are errors: a typo must not silently drop a setting.
    model_config = ConfigDict(extra="forbid")


class OsFamily(str, Enum):
    WINDOWS = "windows"
    LINUX = "linux"


class Role(str, Enum):
    """What an authorised person may ask the provider to do."""

    INVOKE_DR = "invoke_dr"
    REQUEST_DRILL = "request_drill"
    FAILBACK = "failback"
    RECEIVE_REPORTS = "receive_reports"


class BookmarkType(str, Enum):
    """Consistency bookmark types of the design guide."""

    APPLICATION = "application"
    FILE_SYSTEM = "file_system"
    USER_DEFINED = "user_defined"


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/London)") from None
    return value


def _clock(value: Any) -> Any:
    # YAML 1.1 reads an unquoted 18:00 as the base-60 integer 1080.
    if isinstance(value, int) and not isinstance(value, bool):
        # ValueError, not TypeError: pydantic turns only ValueError into a field error.
        msg = "write times in quotes, e.g. '18:00' (unquoted, YAML reads 18:00 as a number)"
        raise ValueError(msg)  # noqa: TRY004
    return value


Clock = Annotated[time, BeforeValidator(_clock)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WORKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")


# --- identity -------------------------------------------------------------------------


class BusinessHours(_Strict):
    """When drills may run, in the tenant's time zone."""

    days: list[Weekday] = Field(default_factory=lambda: list(WORKDAYS), min_length=1)
    start: Clock = time(8, 0)
    end: Clock = time(18, 0)

    def contains(self, start: datetime, duration: timedelta) -> bool:
        """True when [start, start + duration] lies inside one business day (local times)."""
        end = start + duration
        if WEEKDAYS[start.weekday()] not in self.days or end.date() != start.date():
            return False
        return self.start <= start.time() and end.time() <= self.end


class AuthorisedPerson(_Strict):
    """A person the provider accepts DR / drill / failback requests from."""

    name: str = Field(min_length=1)
    email: Email
    phone: str | None = None
    roles: list[Role] = Field(min_length=1)


# --- site and network container ------------------------------------------------------------


class ProtectedSite(_Strict):
    """The customer's production site as seen by replication."""

    name: str = Field(min_length=1)
    bandwidth_mbps: float = Field(
        gt=0,
        le=MAX_SITE_BANDWIDTH_MBPS,
        description="Replication bandwidth to the provider (max 100 Mbps)",
    )
    latency_ms: float | None = Field(default=None, ge=0, le=MAX_SITE_LATENCY_MS)
    endpoint: str | None = Field(default=None, description="Host to measure latency against")
    firewall_ipsec_capable: bool = Field(
        description="Customer firewall supports IPsec site-to-site VPN"
    )
    compression_ratio: float = Field(
        default=1.0, ge=1.0, description="Expected WAN compression (1.0 = none assumed)"
    )
    peak_factor: float = Field(
        default=1.0, ge=1.0, description="Peak over average change rate, for RPO estimates"
    )


class Vrf(_Strict):
    name: Name
    role: Literal["customer", "pvt", "dmz"]
    rd: str | None = Field(default=None, pattern=r"^\d+:\d+$", description="Route distinguisher")
    route_targets: list[Annotated[str, Field(pattern=r"^\d+:\d+$")]] = Field(default_factory=list)


class Vlan(_Strict):
    """A server VLAN of the container on the recovery site."""

    id: int = Field(ge=2, le=4094)
    name: Name
    role: Literal["web", "app", "db", "server", "dmz", "dr_control"]
    vrf: str
    subnet: IPv4Network
    gateway: IPv4Address
    svi_addresses: list[IPv4Address] = Field(
        default_factory=list,
        max_length=2,
        description="Addresses of the two aggregation switches (HSRP); default .2 and .3",
    )
    port_group: str | None = Field(
        default=None, description="Recovery port group (default: VLAN name)"
    )
    bubble_port_group: str | None = Field(
        default=None, description="Isolated drill port group (default: <VLAN name>-bubble)"
    )

    @property
    def recovery_port_group(self) -> str:
        return self.port_group or self.name

    @property
    def drill_port_group(self) -> str:
        return self.bubble_port_group or f"{self.name}-bubble"

    @property
    def hsrp_addresses(self) -> list[IPv4Address]:
        if self.svi_addresses:
            return list(self.svi_addresses)
        base = self.subnet.network_address
        return [base + 2, base + 3]


class ReIpRule(_Strict):
    """Translate a production subnet to a recovery subnet, keeping the host part."""

    name: Name
    source: IPv4Network
    target: IPv4Network

    def translate(self, ip: IPv4Address) -> IPv4Address | None:
        if ip not in self.source or self.source.prefixlen != self.target.prefixlen:
            return None
        return self.target.network_address + (int(ip) - int(self.source.network_address))


class IpsecTunnel(_Strict):
    """Site-to-site VPN between the customer's firewall and the tenant's VPN context."""

    peer: IPv4Address = Field(description="Static public IP of the customer's firewall")
    local_endpoint: IPv4Address = Field(
        description="Public IP of the tenant VPN context (in public_ips)"
    )
    remote_subnets: list[IPv4Network] = Field(
        min_length=1, description="Customer networks reached through the tunnel"
    )
    psk_secret: str = Field(
        min_length=1, description="Name of the Prefect Secret block with the PSK"
    )
    ike_version: Literal[1, 2] = 2


class PublicIp(_Strict):
    address: IPv4Address
    purpose: Literal["vpn_endpoint", "nat", "vip"]
    target: str | None = Field(default=None, description="Machine (nat) or VIP name (vip)")


class FirewallPath(_Strict):
    """A subnet-based rule ("network path"): source and destination are a VLAN name, a CIDR or any."""

    name: Name
    source: str
    destination: str
    protocol: Literal["tcp", "udp", "icmp", "ip"] = "tcp"
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(default_factory=list)
    action: Literal["permit", "deny"] = "permit"


class LbProbe(_Strict):
    type: Literal["http", "tcp"] = "tcp"
    path: str = "/"
    expected_status: int = 200


class LoadBalancerVip(_Strict):
    name: Name
    address: IPv4Address
    vlan: str
    protocol: Literal["tcp", "http", "https"] = "http"
    port: int = Field(ge=1, le=65535)
    members: list[str] = Field(min_length=1)
    member_port: int = Field(ge=1, le=65535)
    probe: LbProbe = Field(default_factory=LbProbe)


class NetworkContainer(_Strict):
    """The tenant's network container on the recovery site."""

    tier: str
    zones: list[str] = Field(
        default_factory=list, description="Optional zones turned on, e.g. [dmz]"
    )
    vrfs: list[Vrf] = Field(min_length=1)
    vlans: list[Vlan] = Field(min_length=1)
    re_ip_rules: list[ReIpRule] = Field(default_factory=list)
    ipsec: IpsecTunnel
    public_ips: list[PublicIp] = Field(default_factory=list, max_length=MAX_PUBLIC_IPS)
    firewall_paths: list[FirewallPath] = Field(default_factory=list)
    load_balancer_vips: list[LoadBalancerVip] = Field(default_factory=list)


class RecoveryPlacement(_Strict):
    """Where recovered machines and DR appliances go in the recovery vCenter."""

    folder: str | None = None
    resource_pool: str | None = None
    datastore: str | None = None


# --- DR components -------------------------------------------------------------------------


class ProcessServer(_Strict):
    """Compresses and ships changes from the protected site (design guide: CX-PS)."""

    name: Name
    os_family: OsFamily
    ip: IPv4Address = Field(description="Address on the protected site")


class MasterTarget(_Strict):
    """Receives replicated disks on the recovery site; same OS family as its machines."""

    name: Name
    os_family: OsFamily
    vlan: str
    ip: IPv4Address


class DrComponents(_Strict):
    process_servers: list[ProcessServer] = Field(default_factory=list)
    master_targets: list[MasterTarget] = Field(default_factory=list)


# --- protected machines ---------------------------------------------------------------------


class Disk(_Strict):
    name: str = Field(min_length=1)
    size_gb: float = Field(gt=0)
    excluded: bool = Field(default=False, description="Not replicated (swap, backup scratch)")


class Nic(_Strict):
    """Production address and how it maps on the recovery site."""

    ip: IPv4Address = Field(description="Production address")
    vlan: str = Field(description="Recovery VLAN (name)")
    mapping: Literal["same_ip", "re_ip"] = "same_ip"
    recovery_ip: IPv4Address | None = Field(
        default=None, description="Static recovery address (re_ip)"
    )
    re_ip_rule: str | None = Field(
        default=None, description="Name of a network.re_ip_rules entry (re_ip)"
    )


class DnsRecord(_Strict):
    name: str = Field(min_length=1, description="Owner name relative to the zone")
    zone: str | None = Field(default=None, description="Default: the tenant's first DNS zone")
    type: Literal["A"] = "A"
    ttl: int = Field(default=300, ge=1)
    nic: int = Field(default=0, ge=0)


class _Check(_Strict):
    name: str | None = None
    timeout: Duration = timedelta(minutes=5)


class HeartbeatCheck(_Check):
    type: Literal["heartbeat"]


class TcpCheck(_Check):
    type: Literal["tcp"]
    port: int = Field(ge=1, le=65535)
    nic: int = Field(default=0, ge=0)


class HttpCheck(_Check):
    type: Literal["http"]
    scheme: Literal["http", "https"] = "http"
    port: int | None = Field(default=None, ge=1, le=65535)
    path: str = "/"
    expected_status: int = Field(default=200, ge=100, le=599)
    expected_text: str | None = None
    nic: int = Field(default=0, ge=0)


class CommandCheck(_Check):
    type: Literal["command"]
    command: str = Field(min_length=1)
    expected_exit: int = 0
    expected_output: str | None = None


Check = Annotated[HeartbeatCheck | TcpCheck | HttpCheck | CommandCheck, Field(discriminator="type")]


def check_label(check: HeartbeatCheck | TcpCheck | HttpCheck | CommandCheck) -> str:
    """A readable name for a verification check (its ``name`` or one derived from it)."""
    if check.name:
        return check.name
    if isinstance(check, TcpCheck):
        return f"tcp/{check.port}"
    if isinstance(check, HttpCheck):
        return (
            f"{check.scheme}:{check.port or (443 if check.scheme == 'https' else 80)}{check.path}"
        )
    if isinstance(check, CommandCheck):
        return f"command:{check.command.split()[0]}"
    return "heartbeat"


class ProtectedMachine(_Strict):
    """A VM in the protected vCenter (or a physical host for PMR)."""

    name: Name
    kind: Literal["vm", "physical"] = "vm"
    os_family: OsFamily
    application: str = ""
    is_domain_controller: bool = False
    disks: list[Disk] = Field(min_length=1)
    change_rate_gb_per_day: float = Field(ge=0)
    peak_write_iops: int | None = Field(default=None, ge=0)
    depends_on: list[str] = Field(default_factory=list)
    nics: list[Nic] = Field(min_length=1)
    dns_records: list[DnsRecord] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)

    @property
    def protected_disks(self) -> list[Disk]:
        return [d for d in self.disks if not d.excluded]


# --- protection groups and SLA ----------------------------------------------------------------


class Sla(_Strict):
    rpo: Duration
    rto: Duration


class SparseTier(_Strict):
    """Keep points younger than ``until`` (and older than the previous tier) as ``keep`` says."""

    until: Duration
    keep: Literal["all", "interval", "bookmarks"]
    interval: Duration | None = Field(default=None, description="With keep: interval")
    bookmark_types: list[BookmarkType] | None = Field(
        default=None, description="Bookmarks kept in this tier (default: all types)"
    )


class Retention(_Strict):
    window: Duration
    policy: Literal["time", "space", "time_and_space"] = "time"
    max_journal_gb: float | None = Field(default=None, gt=0)
    recovery_points: int | None = Field(default=None, ge=1)
    sparse: list[SparseTier] = Field(default_factory=list)


class BookmarkSchedule(_Strict):
    type: BookmarkType
    every: Duration | None = Field(
        default=None, description="Period; none = on demand (user_defined)"
    )
    name: str | None = Field(default=None, description="Required for user_defined bookmarks")
    consistency: Literal["application", "file_system"] | None = Field(
        default=None, description="What a user_defined bookmark is associated with"
    )


class ProtectionGroup(_Strict):
    """Machines replicated together (a consistency group / VPG) under one package and SLA."""

    name: Name
    package: ServicePackage
    machines: list[str] = Field(min_length=1)
    master_target: str | None = None
    process_server: str | None = None
    sla: Sla
    replication_interval: Duration | None = Field(
        default=None, description="Snapshot packages only"
    )
    retention: Retention
    bookmarks: list[BookmarkSchedule] = Field(default_factory=list)
    concurrent_jobs: int | None = Field(default=None, ge=1, description="PMR only")


# --- drills ------------------------------------------------------------------------------------


class DrillSchedule(_Strict):
    """Planned DR tests: two in every 12 months from service start, the first during transition."""

    service_start: date
    transition_end: date
    duration: Duration = timedelta(hours=4)
    dates: list[datetime] = Field(min_length=1, description="Drill starts, tenant local time")


# --- the tenant ----------------------------------------------------------------------------------


class TenantConfig(_Strict):
    """One tenant, as declared in configs/tenants/<id>.yaml."""

    id: Slug
    display_name: str = Field(min_length=1)
    timezone: Annotated[str, AfterValidator(_timezone)]
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    dns_zones: list[str] = Field(min_length=1)
    authorised_persons: list[AuthorisedPerson] = Field(min_length=1)
    protected_site: ProtectedSite
    network: NetworkContainer
    placement: RecoveryPlacement = Field(default_factory=RecoveryPlacement)
    dr_components: DrComponents = Field(default_factory=DrComponents)
    machines: list[ProtectedMachine] = Field(min_length=1)
    protection_groups: list[ProtectionGroup] = Field(min_length=1)
    drills: DrillSchedule

    # -- look-ups --

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def machine(self, name: str) -> ProtectedMachine:
        for machine in self.machines:
            if machine.name == name:
                return machine
        raise KeyError(name)

    def vlan(self, name: str) -> Vlan:
        for vlan in self.network.vlans:
            if vlan.name == name:
                return vlan
        raise KeyError(name)

    def group(self, name: str) -> ProtectionGroup:
        for group in self.protection_groups:
            if group.name == name:
                return group
        raise KeyError(name)

    def group_of(self, machine: str) -> ProtectionGroup | None:
        for group in self.protection_groups:
            if machine in group.machines:
                return group
        return None

    def master_target(self, name: str) -> MasterTarget:
        for mt in self.dr_components.master_targets:
            if mt.name == name:
                return mt
        raise KeyError(name)

    def re_ip_rule(self, name: str) -> ReIpRule:
        for rule in self.network.re_ip_rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def recovery_ip(self, nic: Nic) -> IPv4Address | None:
        """The address ``nic`` gets on the recovery site (None when the rule does not apply)."""
        if nic.mapping == "same_ip":
            return nic.ip
        if nic.recovery_ip is not None:
            return nic.recovery_ip
        if nic.re_ip_rule is not None:
            try:
                return self.re_ip_rule(nic.re_ip_rule).translate(nic.ip)
            except KeyError:
                return None
        return None

    def dns_zone(self, record: DnsRecord) -> str:
        return record.zone or self.dns_zones[0]

    # -- names of what gets built --

    @property
    def folder(self) -> str:
        return self.placement.folder or self.id

    @property
    def resource_pool(self) -> str:
        return self.placement.resource_pool or self.id

    def context_name(self, role: str) -> str:
        """Name of the tenant's firewall (or ``<role>-slb`` load-balancer) context for ``role``."""
        return f"{self.id}-{role}"

    def drill_starts(self) -> list[datetime]:
        """Planned drill starts as aware datetimes in the tenant's time zone."""
        tz = self.tz
        return [d.astimezone(tz) if d.tzinfo else d.replace(tzinfo=tz) for d in self.drills.dates]

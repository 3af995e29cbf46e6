"""The tenant's DR Plan document, in Markdown and in self-contained HTML.

The service definition (section 4.4, "DR Plan") lists what a customer-specific DR plan
contains: service overview, location and access model, roles and responsibilities,
communication model, authorised persons, service level agreements, the DR test /
invocation process, its verification and the success criteria. This module fills those
sections with the tenant's own values and the planners' results (recovery waves, journal
sizing, achievable RPO), and renders them through two jinja2 templates.

Rendering is a pure function of its inputs: the same tenant, tier catalog and
``generated_at`` give byte-identical documents, so they can be compared against golden files.
Secrets never appear: the tenant model only holds the *names* of the secret blocks (the
IPsec pre-shared key, the webhook signing key), and only those names are printed.

Both templates get the same context (:class:`DrPlanContext`), already formatted as text.
The HTML environment autoescapes; the Markdown environment escapes every ``{{ }}`` output
with :func:`md_escape`, so a display name cannot inject HTML, links or headings into either.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict

from draas.errors import PermanentError
from draas.models.packages import (
    MAX_SITE_BANDWIDTH_MBPS,
    MAX_SITE_LATENCY_MS,
    ServicePackage,
    limits,
)
from draas.models.tenant import (
    BookmarkSchedule,
    BookmarkType,
    CommandCheck,
    HeartbeatCheck,
    HttpCheck,
    ProtectedMachine,
    ProtectionGroup,
    Retention,
    Role,
    TcpCheck,
    TenantConfig,
    check_label,
)
from draas.models.tiers import Tier, TierCatalog
from draas.models.types import describe_duration, format_duration
from draas.planning.journal import size_group
from draas.planning.rpo import estimate_rpo
from draas.planning.waves import recovery_plan
from draas.validation import add_months

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "configs" / "templates" / "reports"
"""Default location of ``dr_plan.md.j2`` and ``dr_plan.html.j2``."""

MARKDOWN_TEMPLATE = "dr_plan.md.j2"
HTML_TEMPLATE = "dr_plan.html.j2"

SECTIONS: tuple[tuple[str, str], ...] = (
    ("overview", "Disaster recovery service overview"),
    ("location", "Location and access model"),
    ("roles", "Roles and responsibilities"),
    ("communication", "Communication model"),
    ("persons", "Authorised persons for DR"),
    ("sla", "Service level agreements"),
    ("process", "DR test and invocation process"),
    ("waves", "Recovery plan"),
    ("verification", "DR test and invocation verification"),
    ("success", "Success criteria"),
)
"""(anchor, title) of every section, in document order (the service definition's list,
with the recovery plan waves after the process that uses them)."""

ROLE_LABELS: dict[Role, str] = {
    Role.INVOKE_DR: "Invoke DR",
    Role.REQUEST_DRILL: "Request DR test",
    Role.FAILBACK: "Request failback",
    Role.RECEIVE_REPORTS: "Receive DR test reports",
}

_BOOKMARK_LABELS: dict[BookmarkType, str] = {
    BookmarkType.APPLICATION: "application-consistent",
    BookmarkType.FILE_SYSTEM: "file-system-consistent",
    BookmarkType.USER_DEFINED: "user-defined",
}


class DrPlanError(PermanentError):
    """The DR plan cannot be rendered (unknown tier, missing or broken template)."""


class ProviderDetails(BaseModel):
    """How the tenant reaches the provider; printed in the communication model.

    Every field is optional text so an operator can fill in their own contact points; a
    missing one is printed as "given at onboarding" rather than invented.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "The DRaaS provider"
    recovery_site: str = "the provider's multi-tenant recovery datacentre"
    service_desk_phone: str | None = None
    service_desk_email: str | None = None
    support_portal_url: str | None = None
    webhook_url: str | None = None


class DrPlanDocument(BaseModel):
    """A rendered DR plan."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    title: str
    generated_at: datetime
    config_digest: str
    """First 16 hex digits of SHA-256 over the tenant's config and its tier: which config this plan describes."""
    sections: list[str]
    markdown: str
    html: str

    @property
    def markdown_filename(self) -> str:
        return f"{self.tenant}-dr-plan.md"

    @property
    def html_filename(self) -> str:
        return f"{self.tenant}-dr-plan.html"


# --- the template context -----------------------------------------------------------------------
# Plain frozen rows of text: the templates only lay them out, so Markdown and HTML cannot
# disagree about a value.


@dataclass(frozen=True)
class Fact:
    label: str
    value: str


@dataclass(frozen=True)
class PersonRow:
    name: str
    email: str
    phone: str
    roles: list[str]
    grants: list[bool]
    """One flag per :data:`ROLE_LABELS` entry, in that order."""


@dataclass(frozen=True)
class Responsibility:
    party: str
    duty: str
    source: str
    status: str = ""


@dataclass(frozen=True)
class Prerequisite:
    item: str
    declared: str
    status: str
    source: str


@dataclass(frozen=True)
class GroupRow:
    name: str
    package: str
    package_description: str
    machines: list[str]
    rpo_target: str
    rpo_achievable: str
    rpo_met: bool
    rto_target: str
    interval: str
    retention_window: str
    retention_policy: str
    retention_rules: list[str]
    bookmarks: list[str]
    protected_gb: str
    change_gb_per_day: str
    journal: list[Fact]
    during_test: str
    master_target: str
    process_server: str


@dataclass(frozen=True)
class NicRow:
    production_ip: str
    recovery_ip: str
    mapping: str
    vlan: str
    port_group: str
    test_port_group: str


@dataclass(frozen=True)
class DnsRow:
    fqdn: str
    type: str
    ttl: str
    production_ip: str
    recovery_ip: str
    machine: str


@dataclass(frozen=True)
class CheckRow:
    machine: str
    label: str
    type: str
    detail: str
    timeout: str


@dataclass(frozen=True)
class MachineRow:
    name: str
    kind: str
    os: str
    application: str
    domain_controller: bool
    group: str
    package: str
    depends_on: list[str]
    nics: list[NicRow]
    dns: list[DnsRow]
    checks: list[CheckRow]
    protected_gb: str
    excluded_disks: list[str]


@dataclass(frozen=True)
class WaveRow:
    index: int
    machines: list[MachineRow]
    after: str


@dataclass(frozen=True)
class DrillRow:
    number: int
    start_local: str
    end_local: str
    start_utc: str
    period: str
    note: str


@dataclass(frozen=True)
class Row:
    """A generic table row (network objects) as a list of cells."""

    cells: list[str]


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[Row]
    empty: str = "None."


@dataclass(frozen=True)
class DrPlanContext:
    """Everything the templates print, formatted."""

    title: str
    tenant_id: str
    display_name: str
    provider: ProviderDetails
    generated_at: str
    generated_at_local: str
    config_digest: str
    timezone: str
    sections: list[Fact]
    overview: list[Fact]
    packages: list[Fact]
    groups: list[GroupRow]
    site: list[Fact]
    container: list[Fact]
    ipsec: list[Fact]
    remote_access: list[str]
    placement: list[Fact]
    vrfs: Table
    vlans: Table
    contexts: Table
    public_ips: Table
    firewall_paths: Table
    lb_vips: Table
    re_ip_rules: Table
    dr_components: Table
    responsibilities: list[Responsibility]
    prerequisites: list[Prerequisite]
    channels: list[Fact]
    contacts: list[Fact]
    notifications: list[str]
    role_labels: list[str]
    persons: list[PersonRow]
    link: list[Fact]
    service_levels: list[Fact]
    plan_rto: str
    drills: list[DrillRow]
    drill_facts: list[Fact]
    test_steps: list[str]
    invocation_steps: list[str]
    failback_steps: list[str]
    waves: list[WaveRow]
    dns: list[DnsRow]
    checks: list[CheckRow]
    lb_probes: list[Fact]
    success_criteria: list[str]
    not_covered: list[str] = field(default_factory=list)


# --- formatting ---------------------------------------------------------------------------------

_NONE = "—"


def _dur(value: timedelta) -> str:
    return format_duration(value)


def _seconds(value: float | None) -> str:
    if value is None:
        return "not achievable"
    # Round up: the plan must not promise a better RPO than the estimate.
    return describe_duration(timedelta(seconds=math.ceil(value)))


def _gb(value: float) -> str:
    return f"{value:,.0f} GB" if value >= 10 else f"{value:,.1f} GB"


def _local(moment: datetime, fmt: str = "%a %Y-%m-%d %H:%M %Z") -> str:
    return moment.strftime(fmt)


def _join(items: Iterable[str], empty: str = _NONE) -> str:
    text = ", ".join(items)
    return text or empty


def _utc(moment: datetime) -> datetime:
    # Naive datetimes are read as UTC so callers cannot make the output depend on the host's zone.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|~])")
# An underscore between two letters or digits never starts emphasis (CommonMark), so
# "America/New_York" stays readable; any other underscore is escaped.
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_MD_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
# Block markers only count at the start of a line: list items ("- x", "1. x"), headings ("## x")
# and thematic breaks ("---").
_MD_LINE_START = re.compile(r"^(\s*)(\d{1,9}[.)](?=\s|$)|[-+](?=\s|$)|-(?=-)|#{1,6}(?=\s|$))")


def _escape_line_start(match: re.Match[str]) -> str:
    indent, marker = match.group(1), match.group(2)
    # Only ASCII punctuation can be backslash-escaped: "1." becomes "1\\.", "## x" becomes "\\## x".
    if marker.startswith("#"):
        return f"{indent}\\{marker}"
    return f"{indent}{marker[:-1]}\\{marker[-1]}"


def md_escape(value: Any) -> str:
    """Text that Markdown shows literally: no HTML, links, emphasis, table breaks or headings.

    Newlines become spaces so a value cannot start a line of its own (a heading, a list, a
    table row) and every value stays inside its table cell.
    """
    if isinstance(value, Markup):
        # Already Markdown: the output of a template macro, whose values were escaped one by one.
        return str(value)
    if value is None:
        return _NONE
    text = " ".join(str(value).split("\n")).replace("\r", " ")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _MD_UNDERSCORE.sub(r"\\_", text)
    text = _MD_ENTITY.sub(r"\\&", text)
    return _MD_LINE_START.sub(_escape_line_start, text)


def _html_finalize(value: Any) -> Any:
    return _NONE if value is None else value


def _environment(templates_dir: Path, *, html: bool) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        finalize=_html_finalize if html else md_escape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


# --- sections --------------------------------------------------------------------------------------


def _protected_gb(machines: Iterable[ProtectedMachine]) -> float:
    return sum(d.size_gb for m in machines for d in m.protected_disks)


def _bookmark(b: BookmarkSchedule) -> str:
    kind = _BOOKMARK_LABELS[b.type]
    if b.type is BookmarkType.USER_DEFINED:
        label = f"user-defined '{b.name}'" if b.name else "user-defined"
        if b.consistency:
            label += f" ({_BOOKMARK_LABELS[BookmarkType(b.consistency)]})"
        kind = label
    when = f"every {_dur(b.every)}" if b.every else "on demand"
    return f"{kind}, {when}"


def _retention_rules(group: ProtectionGroup) -> list[str]:
    r: Retention = group.retention
    pkg = limits(group.package)
    if not pkg.journal:
        cadence = group.replication_interval or pkg.min_interval
        rule = f"a recovery point every {_dur(cadence)}, kept for {_dur(r.window)}"
        if r.recovery_points:
            rule += f", at most {r.recovery_points} points"
        elif pkg.max_recovery_points:
            rule += f", at most {pkg.max_recovery_points} points (package limit)"
        return [rule]
    if not r.sparse:
        return [f"every write and bookmark, for {_dur(r.window)}"]
    rules, since = [], timedelta(0)
    for tier in r.sparse:
        span = f"{_dur(since) if since else 'now'} to {_dur(tier.until)} old"
        types = (", ".join(_BOOKMARK_LABELS[t] for t in tier.bookmark_types)
                 if tier.bookmark_types else "all")
        if tier.keep == "all":
            rules.append(f"{span}: every write and bookmark")
        elif tier.keep == "interval":
            rules.append(f"{span}: one point every {_dur(tier.interval or timedelta(hours=1))} "
                         f"plus {types} bookmarks")
        else:
            rules.append(f"{span}: {types} bookmarks only")
        since = tier.until
    rules.append(f"nothing older than {_dur(r.window)}")
    return rules


def _policy(r: Retention) -> str:
    if r.policy == "time":
        return f"time ({_dur(r.window)})"
    cap = f"{r.max_journal_gb:g} GB journal" if r.max_journal_gb else "journal cap not set"
    return f"{r.policy.replace('_', ' ')} ({_dur(r.window)}, {cap})"


def _groups(tenant: TenantConfig) -> list[GroupRow]:
    rows = []
    for g in tenant.protection_groups:
        pkg = limits(g.package)
        members = [tenant.machine(n) for n in g.machines]
        est = estimate_rpo(tenant, g)
        sizing = size_group(tenant, g)
        journal: list[Fact] = []
        if sizing is not None:
            journal = [
                Fact("Journal to provision", _gb(sizing.provisioned_gb)),
                Fact("Window the journal holds", f"{sizing.hours_covered:g} h of {sizing.window_hours:g} h"),
                Fact("Target I/O", f"{sizing.target_iops:,.0f} IOPS "
                                   f"({sizing.journal_write_iops:,.0f} journal writes, "
                                   f"{sizing.replica_read_iops:,.0f} replica reads, "
                                   f"{sizing.replica_write_iops:,.0f} replica writes"
                                   f"{', estimated' if sizing.iops_estimated else ''})"),
            ]
        rows.append(GroupRow(
            name=g.name,
            package=ServicePackage(g.package).value,
            package_description=pkg.description,
            machines=list(g.machines),
            rpo_target=_dur(g.sla.rpo),
            rpo_achievable=_seconds(est.achievable_seconds),
            rpo_met=est.achievable,
            rto_target=_dur(g.sla.rto),
            interval=describe_duration(timedelta(seconds=est.interval_seconds))
            + (" (continuous, checkpoints)" if pkg.continuous else " (scheduled)"),
            retention_window=_dur(g.retention.window),
            retention_policy=_policy(g.retention),
            retention_rules=_retention_rules(g),
            bookmarks=[_bookmark(b) for b in g.bookmarks] or ["none scheduled"],
            protected_gb=_gb(_protected_gb(members)),
            change_gb_per_day=_gb(sum(m.change_rate_gb_per_day for m in members)) + "/day",
            journal=journal,
            during_test="continues" if pkg.replication_continues_during_test else "paused",
            master_target=g.master_target or _NONE,
            process_server=g.process_server or _NONE,
        ))
    return rows


def _check_detail(tenant: TenantConfig, machine: ProtectedMachine,
                  check: HeartbeatCheck | TcpCheck | HttpCheck | CommandCheck) -> str:
    def address(nic: int) -> str:
        if nic >= len(machine.nics):
            return f"NIC {nic}"
        ip = tenant.recovery_ip(machine.nics[nic])
        return str(ip) if ip is not None else f"NIC {nic}"

    if isinstance(check, TcpCheck):
        return f"TCP connection to {address(check.nic)}:{check.port} succeeds"
    if isinstance(check, HttpCheck):
        port = check.port or (443 if check.scheme == "https" else 80)
        text = f"GET {check.scheme}://{address(check.nic)}:{port}{check.path} returns {check.expected_status}"
        if check.expected_text is not None:
            text += f" and the body contains '{check.expected_text}'"
        return text
    if isinstance(check, CommandCheck):
        text = f"'{check.command}' in the guest exits {check.expected_exit}"
        if check.expected_output is not None:
            text += f" and prints '{check.expected_output}'"
        return text
    return "VMware Tools heartbeat is green"


def _machine(tenant: TenantConfig, m: ProtectedMachine) -> MachineRow:
    group = tenant.group_of(m.name)
    nics = []
    for nic in m.nics:
        rec = tenant.recovery_ip(nic)
        try:
            vlan = tenant.vlan(nic.vlan)
            port_group, test_pg = vlan.recovery_port_group, vlan.drill_port_group
        except KeyError:
            port_group = test_pg = _NONE
        nics.append(NicRow(
            production_ip=str(nic.ip),
            recovery_ip=str(rec) if rec is not None else "unresolved",
            mapping="same address" if nic.mapping == "same_ip" else "re-IP",
            vlan=nic.vlan,
            port_group=port_group,
            test_port_group=test_pg,
        ))
    dns = []
    for r in m.dns_records:
        zone = tenant.dns_zone(r).rstrip(".")
        row = nics[r.nic] if r.nic < len(nics) else None
        dns.append(DnsRow(
            fqdn=f"{r.name}.{zone}",
            type=r.type,
            ttl=f"{r.ttl} s",
            production_ip=row.production_ip if row else _NONE,
            recovery_ip=row.recovery_ip if row else _NONE,
            machine=m.name,
        ))
    checks = [CheckRow(machine=m.name, label=check_label(c), type=c.type,
                       detail=_check_detail(tenant, m, c), timeout=_dur(c.timeout))
              for c in m.checks]
    return MachineRow(
        name=m.name,
        kind="physical (P2V)" if m.kind == "physical" else "VM",
        os=m.os_family.value.capitalize(),
        application=m.application or _NONE,
        domain_controller=m.is_domain_controller,
        group=group.name if group else _NONE,
        package=ServicePackage(group.package).value if group else _NONE,
        depends_on=list(m.depends_on),
        nics=nics,
        dns=dns,
        checks=checks,
        protected_gb=_gb(_protected_gb([m])),
        excluded_disks=[d.name for d in m.disks if d.excluded],
    )


def _waves(tenant: TenantConfig) -> list[WaveRow]:
    plan = recovery_plan(tenant)
    rows = []
    for wave in plan.waves:
        after = "starts first" if wave.index == 1 else f"starts when wave {wave.index - 1} is verified"
        rows.append(WaveRow(index=wave.index, after=after,
                            machines=[_machine(tenant, tenant.machine(n)) for n in wave.machines]))
    return rows


def _network(tenant: TenantConfig, tier: Tier) -> dict[str, Any]:
    n = tenant.network
    zones = set(n.zones)
    contexts = [Row([tenant.context_name(role), "firewall",
                     "site-to-site IPsec VPN (DRaaS)" if role == "vpn" else f"{role} zone"])
                for role in tier.expected_firewall_contexts(zones)]
    lb_roles = list(tier.load_balancer_contexts)
    for name in sorted(zones):
        if name in tier.optional_zones:
            lb_roles += tier.optional_zones[name].load_balancer_contexts
    contexts += [Row([tenant.context_name(f"{role}-slb"), "load balancer", f"{role} zone"]) for role in lb_roles]
    if tier.shared_perimeter_firewall:
        contexts.append(Row(["shared", "firewall", "perimeter context shared by all tenants of the tier"]))
    ipsec = n.ipsec
    return {
        "container": [
            Fact("Tier", f"{tier.display_name} ({tier.name})"),
            Fact("Description", tier.description or _NONE),
            Fact("Network services", tier.table_2_1.network_services),
            Fact("Optional zones", _join(n.zones, "none")),
            Fact("Validated with DRaaS by the design guide", "yes" if tier.draas_validated else "no"),
            Fact("QoS classes", _join(tier.qos_classes)),
        ],
        "ipsec": [
            Fact("Customer firewall (peer, static public IP)", str(ipsec.peer)),
            Fact("Tenant VPN context endpoint", str(ipsec.local_endpoint)),
            Fact("Customer networks through the tunnel", _join(str(s) for s in ipsec.remote_subnets)),
            Fact("IKE version", f"IKEv{ipsec.ike_version}"),
            Fact("Pre-shared key", f"held in the secret block '{ipsec.psk_secret}', never written in documents"),
        ],
        "vrfs": Table(["VRF", "Role", "Route distinguisher", "Route targets"],
                      [Row([v.name, v.role, v.rd or _NONE, _join(v.route_targets)]) for v in n.vrfs]),
        "vlans": Table(["VLAN", "Name", "Role", "VRF", "Subnet", "Gateway", "Recovery port group",
                        "Test port group"],
                       [Row([str(v.id), v.name, v.role.replace("_", " "), v.vrf, str(v.subnet), str(v.gateway),
                             v.recovery_port_group, v.drill_port_group]) for v in n.vlans]),
        "contexts": Table(["Context", "Device", "Purpose"], contexts),
        "public_ips": Table(["Address", "Purpose", "Target"],
                            [Row([str(p.address), p.purpose.replace("_", " "), p.target or _NONE])
                             for p in n.public_ips], empty="No public IP addresses."),
        "firewall_paths": Table(
            ["Rule", "Source", "Destination", "Protocol", "Ports", "Action"],
            [Row([p.name, p.source, p.destination, p.protocol, _join((str(x) for x in p.ports), "any"),
                  p.action]) for p in n.firewall_paths],
            empty="No network paths declared."),
        "lb_vips": Table(
            ["VIP", "Address", "Service", "Members", "Probe"],
            [Row([v.name, f"{v.address} (VLAN {v.vlan})", f"{v.protocol} {v.port} to member port {v.member_port}",
                  _join(v.members), f"{v.probe.type} {v.probe.path} expects {v.probe.expected_status}"
                  if v.probe.type == "http" else "tcp connect"])
             for v in n.load_balancer_vips],
            empty="No load-balancer VIPs."),
        "re_ip_rules": Table(["Rule", "Production subnet", "Recovery subnet"],
                             [Row([r.name, str(r.source), str(r.target)]) for r in n.re_ip_rules],
                             empty="No re-IP rules: machines keep their production addresses "
                                   "unless a static recovery address is given."),
    }


def _dr_components(tenant: TenantConfig) -> Table:
    dc = tenant.dr_components
    rows = [Row([p.name, "process server", p.os_family.value, "protected site", str(p.ip)])
            for p in dc.process_servers]
    rows += [Row([m.name, "master target", m.os_family.value, f"recovery site, VLAN {m.vlan}", str(m.ip)])
             for m in dc.master_targets]
    return Table(["Component", "Kind", "OS family", "Location", "Address"], rows,
                 empty="No DR control components declared.")


def _persons(tenant: TenantConfig) -> list[PersonRow]:
    return [PersonRow(name=p.name, email=p.email, phone=p.phone or _NONE,
                      roles=[ROLE_LABELS[r] for r in ROLE_LABELS if r in p.roles],
                      grants=[r in p.roles for r in ROLE_LABELS])
            for p in tenant.authorised_persons]


def _names_with(tenant: TenantConfig, role: Role) -> str:
    return _join((p.name for p in tenant.authorised_persons if role in p.roles), "nobody")


def _responsibilities(tenant: TenantConfig, provider: str) -> list[Responsibility]:
    packages = {ServicePackage(g.package) for g in tenant.protection_groups}
    dcs = [m.name for m in tenant.machines if m.is_domain_controller]
    process_servers = [p.name for p in tenant.dr_components.process_servers]
    bh = tenant.business_hours
    hours = f"{', '.join(bh.days)} {bh.start:%H:%M}-{bh.end:%H:%M} {tenant.timezone}"
    p, c = provider, "Customer"
    duties = [
        Responsibility(p, "Monitor replication and the DR infrastructure 24x7x365 and inform the nominated "
                          "contacts of service-impacting alerts and their resolution time.",
                       "Service definition 4.1"),
        Responsibility(p, f"Run two DR tests in every 12 months from service start, the first during "
                          f"transition, in business hours ({hours}), into an isolated network.",
                       "Service definition 4.3"),
        Responsibility(p, "Issue a DR Test Report after each test (timings, success criteria, SLA adherence).",
                       "Service definition 2.1.3"),
        Responsibility(p, "Repeat an unsuccessful DR test, corrected, within one calendar month.",
                       "Service definition 2.1.3"),
        Responsibility(p, "Invoke DR only on request of an authorised person with the Invoke DR role, "
                          "recovering the machines in the wave order of this plan.",
                       "Service definition 2.1.3"),
        Responsibility(p, "Re-address recovered machines, update the DNS records listed in this plan, "
                          "enable the network paths, load-balancer VIPs and public IPs of the container.",
                       "Service definition B.4"),
        Responsibility(p, "Provide remote-access VPN to the recovery environment for the customer's "
                          "administrators during tests and invocations.",
                       "Service definition 2.1.3"),
        Responsibility(p, "Include every change to protected machines, networks or protection groups in "
                          "this plan (a new revision) and in the next DR test.",
                       "Service definition 2.1.3"),
        Responsibility(c, "Adhere to the responsibilities in this plan.", "Responsibility 8"),
        Responsibility(c, "Take part in every DR test: application, network and user checks that remain "
                          "the customer's responsibility.", "Responsibility 7"),
        Responsibility(c, "Write no critical data to machines recovered in a test: test changes are "
                          "discarded at tear-down.", "Responsibility 6"),
        Responsibility(c, "Replicate at least one domain controller for use in DR tests.", "Responsibility 11",
                       status=f"met by {', '.join(dcs)}" if dcs else "no domain controller declared"),
        Responsibility(c, "Install the VPN client on every user device that needs access during DR.",
                       "Responsibility 10"),
        Responsibility(c, "Redirect user and application traffic, and change DNS records not listed in "
                          "this plan, after a recovery.", "Responsibility 9"),
        Responsibility(c, "Perform any further steps needed after recovery to make applications usable "
                          "for end users.", "Exclusion 5"),
        Responsibility(c, "Keep applications consistent (VSS or an alternative method) so that "
                          "consistency bookmarks are usable.", "Responsibilities 31, 32"),
        Responsibility(c, "Inform the provider of changes to protected machines, disks, volumes, VLANs "
                          "or addresses before they are needed in DR.", "Responsibility 18"),
        Responsibility(c, "Keep the list of authorised persons current.", "Service definition 4.2"),
    ]
    if process_servers:
        duties.append(Responsibility(
            c, f"Keep the DR components at the protected site ({', '.join(process_servers)}) running "
               "24x7x365, secured and patched.", "Responsibilities 12, 13"))
    if ServicePackage.VMR_SNAP in packages:
        duties.append(Responsibility(c, "Keep the snapshot replication software in line with the "
                                        "provider's major version.", "Responsibility 14"))
    if ServicePackage.PMR in packages:
        duties.append(Responsibility(c, "Keep the replication agents on protected physical servers running "
                                        "and untampered.", "Responsibility 16"))
    if ServicePackage.SVR in packages:
        duties.append(Responsibility(c, "Keep the storage data-collector scripts deployed and running for the "
                                        "contract term.", "Responsibility 17"))
    return duties


def _prerequisites(tenant: TenantConfig) -> list[Prerequisite]:
    site = tenant.protected_site
    if site.latency_ms is None:
        latency, lat_status = "not declared", "measured at onboarding" if site.endpoint else "not checked"
    else:
        latency = f"{site.latency_ms:g} ms"
        lat_status = "met" if site.latency_ms <= MAX_SITE_LATENCY_MS else "not met"
    invokers = sum(Role.INVOKE_DR in p.roles for p in tenant.authorised_persons)
    return [
        Prerequisite("Firewall supporting IPsec site-to-site VPN",
                     "yes" if site.firewall_ipsec_capable else "no",
                     "met" if site.firewall_ipsec_capable else "not met", "Prerequisite 15"),
        Prerequisite("Static public IP address for the site-to-site VPN", str(tenant.network.ipsec.peer),
                     "met", "Prerequisite 16"),
        Prerequisite(f"Average latency to the provider at most {MAX_SITE_LATENCY_MS} ms", latency, lat_status,
                     "Prerequisite 17"),
        Prerequisite(f"Replication bandwidth at most {MAX_SITE_BANDWIDTH_MBPS} Mbps per site",
                     f"{site.bandwidth_mbps:g} Mbps",
                     "met" if site.bandwidth_mbps <= MAX_SITE_BANDWIDTH_MBPS else "not met",
                     "Service definition 2.2.3"),
        Prerequisite("At least one authorised person who may invoke DR", f"{invokers} person(s)",
                     "met" if invokers else "not met", "Service definition 2.1"),
    ]


def _drills(tenant: TenantConfig, generated_at: datetime) -> tuple[list[DrillRow], list[Fact]]:
    d = tenant.drills
    rows, next_seen = [], False
    for k, start in enumerate(tenant.drill_starts(), start=1):
        end = start + d.duration
        period = 1
        while add_months(d.service_start, 12 * period) <= start.date():
            period += 1
        notes = []
        if d.service_start <= start.date() <= d.transition_end:
            notes.append("during transition")
        if start < generated_at:
            notes.append("past")
        elif not next_seen:
            notes.append("next")
            next_seen = True
        rows.append(DrillRow(number=k, start_local=_local(start), end_local=_local(end, "%H:%M %Z"),
                             start_utc=_local(start.astimezone(UTC), "%Y-%m-%d %H:%M UTC"),
                             period=f"year {period}", note=_join(notes, "")))
    bh = tenant.business_hours
    facts = [
        Fact("Service start", str(d.service_start)),
        Fact("Transition ends", str(d.transition_end)),
        Fact("Test duration", _dur(d.duration)),
        Fact("Business hours", f"{', '.join(bh.days)} {bh.start:%H:%M}-{bh.end:%H:%M} ({tenant.timezone})"),
    ]
    return rows, facts


def _digest(tenant: TenantConfig, tier: Tier) -> str:
    blob = tenant.model_dump_json().encode() + b"\0" + tier.model_dump_json().encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def build_dr_plan_context(
    tenant: TenantConfig,
    catalog: TierCatalog,
    *,
    generated_at: datetime,
    provider: ProviderDetails | None = None,
    webhook_secret_block: str | None = None,
) -> DrPlanContext:
    """Collect and format everything the DR plan shows (no rendering).

    Args:
        tenant: a validated tenant (load it with :func:`draas.validation.load_tenant`).
        catalog: the tier catalog the tenant was validated against.
        generated_at: the document's timestamp (naive means UTC); the only clock it reads.
        provider: the provider's contact points (defaults print "given at onboarding").
        webhook_secret_block: name of the tenant's webhook signing key block
            (default ``<tenant>-webhook-signing-key``).

    Raises:
        DrPlanError: the tenant's tier is not in the catalog.
    """
    tier = catalog.get(tenant.network.tier)
    if tier is None:
        raise DrPlanError(f"tenant {tenant.id}: tier {tenant.network.tier!r} is not in the tier catalog")
    provider = provider or ProviderDetails()
    webhook_secret_block = webhook_secret_block or f"{tenant.id}-webhook-signing-key"
    when = _utc(generated_at)
    site = tenant.protected_site
    groups = _groups(tenant)
    waves = _waves(tenant)
    machines = [m for w in waves for m in w.machines]
    network = _network(tenant, tier)
    drills, drill_facts = _drills(tenant, when)
    packages = sorted({ServicePackage(g.package) for g in tenant.protection_groups}, key=lambda p: p.value)
    link = estimate_rpo(tenant, tenant.protection_groups[0])
    continuing = [g.name for g in groups if g.during_test == "continues"]
    paused = [g.name for g in groups if g.during_test == "paused"]
    test_pgs = _join(v.drill_port_group for v in tenant.network.vlans)
    re_ip = any(n.mapping == "re_ip" for m in tenant.machines for n in m.nics)
    bh = tenant.business_hours
    given = "given at onboarding"

    overview = [
        Fact("Customer", tenant.display_name),
        Fact("Tenant id", tenant.id),
        Fact("Provider", provider.name),
        Fact("Protected site", site.name),
        Fact("Recovery site", provider.recovery_site),
        Fact("Network container", f"{tier.display_name} tier"),
        Fact("Protected machines", f"{len(tenant.machines)} in {len(tenant.protection_groups)} protection "
                                   f"group(s), recovered in {len(waves)} wave(s)"),
        Fact("Protected capacity", _gb(_protected_gb(tenant.machines))),
        Fact("Daily change rate", _gb(sum(m.change_rate_gb_per_day for m in tenant.machines)) + "/day"),
        Fact("DNS zones", _join(tenant.dns_zones)),
        Fact("Time zone", tenant.timezone),
    ]
    remote_access = [
        ("Replication and management traffic use the site-to-site IPsec VPN below, terminated on the "
        "tenant's own VPN context."),
        ("During a DR test or invocation the customer's administrators and users reach the recovered "
        "machines through the remote-access VPN (one set of credentials per user)."),
        ("Machines recovered in a DR test are attached to isolated test port groups "
        f"({test_pgs}), which reach neither production nor other tenants."),
        ("Recovered machines are re-addressed as listed in the recovery plan."
         if re_ip else "Recovered machines keep their production addresses (same subnets on the recovery site)."),
    ]
    if tier.draas.perimeter_acl_ipsec_only:
        remote_access.append("The perimeter firewall permits IPsec only between the two tunnel endpoints.")
    rp = tier.resource_pool
    placement = [
        Fact("vCenter folder", tenant.folder),
        Fact("Resource pool", f"{tenant.resource_pool} (reserved {rp.cpu_reservation_mhz:,} MHz CPU, "
                              f"{rp.memory_reservation_mb:,} MB memory"
                              f"{', expandable' if rp.expandable else ''})"),
        Fact("Datastore", tenant.placement.datastore or "provider default"),
        Fact("Default VM size", f"{tier.vm_profile.vcpus} vCPU, {tier.vm_profile.memory_gb} GB, "
                                f"{tier.vm_profile.storage}"),
    ]
    channels = [
        Fact("Service desk (24x7x365)", "incidents, change requests, DR invocation by phone or e-mail from "
                                        "authorised persons; every onboarding, provisioning, test and "
                                        "invocation opens a change record"),
        Fact("Webhook gateway (HTTPS)", f"invoke DR, request a DR test, request failback; each request is "
                                        f"signed with the tenant's key held in the secret block "
                                        f"'{webhook_secret_block}' and accepted only for the requester's roles"),
        Fact("Reports", f"DR Test Reports after every test to: {_names_with(tenant, Role.RECEIVE_REPORTS)}"),
        Fact("Audit log", "every request is recorded: who, when, through which channel, with what outcome"),
    ]
    contacts = [
        Fact("Service desk telephone", provider.service_desk_phone or given),
        Fact("Service desk e-mail", provider.service_desk_email or given),
        Fact("Self-service support portal", provider.support_portal_url or given),
        Fact("Webhook gateway", provider.webhook_url or given),
    ]
    notifications = [
        f"Service-impacting alerts and their resolution time go to: {_names_with(tenant, Role.RECEIVE_REPORTS)}.",
        f"Requests to invoke DR are accepted from: {_names_with(tenant, Role.INVOKE_DR)}.",
        f"Requests for a DR test are accepted from: {_names_with(tenant, Role.REQUEST_DRILL)}.",
        f"Requests for failback are accepted from: {_names_with(tenant, Role.FAILBACK)}.",
        ("The requester is told when the recovered environment is handed over and when the run ends; "
        "progress is published per wave."),
    ]
    service_levels = [
        Fact("DR tests", "two in every 12 months from service start, the first during transition, "
                         "ideally six months apart, in business hours"),
        Fact("Failed DR test", "repeated, corrected, within one calendar month"),
        Fact("DR Test Report", "after each test: timings per machine and wave, success criteria, SLA adherence"),
        Fact("Support", "service desk 24x7x365"),
    ]
    plan_rto = _dur(max(g.sla.rto for g in tenant.protection_groups))

    test_steps = [
        (f"A test starts on a planned date below, or on request of a person with the Request DR test role "
        f"({_names_with(tenant, Role.REQUEST_DRILL)}), within business hours "
        f"({', '.join(bh.days)} {bh.start:%H:%M}-{bh.end:%H:%M} {tenant.timezone})."),
        ("For each protection group the latest consistent recovery point is chosen, unless the request names "
        "a bookmark or a point in time inside the retention window."),
        (f"Every machine is recovered into the isolated test network ({test_pgs}) in the wave order of the "
        "recovery plan; production is not touched."),
        ("Replication continues during the test for: " + _join(continuing, "none") + "; it is paused for: "
         + _join(paused, "none") + "."),
        ("Each wave starts when every machine of the previous wave has passed its verification checks; the "
        "time of every step is recorded."),
        "The customer's administrators test their applications over the remote-access VPN.",
        "The test environment is always torn down, whatever the outcome; changes made during the test are lost.",
        f"The DR Test Report is sent to: {_names_with(tenant, Role.RECEIVE_REPORTS)}.",
    ]
    invocation_steps = [
        (f"A person with the Invoke DR role ({_names_with(tenant, Role.INVOKE_DR)}) requests DR through the "
        "service desk or the signed webhook; the provider checks the requester against this plan first."),
        ("The recovery point is the latest consistent one, unless the request names a bookmark or a point in "
        "time inside the retention window."),
        ("Machines are recovered in the wave order of the recovery plan, each wave once the previous one is "
        "verified."),
        ("Recovered machines are re-addressed and attached to the recovery port groups."
         if re_ip else "Recovered machines keep their addresses and are attached to the recovery port groups."),
        ("The DNS records of the plan are pointed to the recovery addresses; network paths, load-balancer "
        "VIPs and public IPs of the container are enabled."),
        ("Every verification check runs; the environment is handed over to the customer, and the failover "
        "is committed, or rolled back when verification fails and the requester agrees."),
        "The customer completes its own post-recovery steps (see roles and responsibilities).",
    ]
    failback_steps = [
        (f"A person with the Failback role ({_names_with(tenant, Role.FAILBACK)}) requests failback once the "
        "protected site is available again."),
        "Protection is reversed and the protected site resynchronised from the recovery site.",
        "A planned failback recovers the machines at the protected site in the same wave order.",
        "DNS records are pointed back to the production addresses and the original protection resumes.",
    ]
    lb_probes = [Fact(v.name, f"{v.protocol} {v.address}:{v.port} answers; members {', '.join(v.members)} pass "
                              + (f"the http probe {v.probe.path} ({v.probe.expected_status})"
                                 if v.probe.type == "http" else "the tcp probe"))
                 for v in tenant.network.load_balancer_vips]
    success = [
        "Every machine of the recovery plan is recovered and powered on, in wave order.",
        "Every verification check of every machine passes within its timeout.",
        ("Every DNS record of the plan resolves to its recovery address (invocation) and production records "
        "are untouched (test)."),
        "Each protection group's machines are verified within the group's RTO from the start of the run.",
        ("The recovery point used is no older than the group's RPO target at the time of the event "
        "(invocation), or is the point chosen for the test."),
        "A DR test leaves nothing behind: the test environment is torn down and production was not touched.",
        ("A test is successful when the elements unchanged since the previous successful test are recovered "
        "successfully."),
    ]
    not_covered = [
        ("Products recovered on a reasonable-endeavours basis (assisted recovery) are outside the SLAs and "
        "the success criteria."),
        "Changes to protected machines not yet included in a DR test may need remedial work when DR is invoked.",
    ]
    return DrPlanContext(
        title=f"Disaster Recovery Plan: {tenant.display_name}",
        tenant_id=tenant.id,
        display_name=tenant.display_name,
        provider=provider,
        generated_at=when.strftime("%Y-%m-%d %H:%M UTC"),
        generated_at_local=_local(when.astimezone(tenant.tz)),
        config_digest=_digest(tenant, tier),
        timezone=tenant.timezone,
        sections=[Fact(anchor, title) for anchor, title in SECTIONS],
        overview=overview,
        packages=[Fact(p.value, limits(p).description) for p in packages],
        groups=groups,
        site=[
            Fact("Name", site.name),
            Fact("Replication bandwidth", f"{site.bandwidth_mbps:g} Mbps"),
            Fact("Latency", f"{site.latency_ms:g} ms" if site.latency_ms is not None else "not declared"),
            Fact("Latency endpoint", site.endpoint or _NONE),
            Fact("IPsec-capable firewall", "yes" if site.firewall_ipsec_capable else "no"),
        ],
        container=network["container"],
        ipsec=network["ipsec"],
        remote_access=remote_access,
        placement=placement,
        vrfs=network["vrfs"],
        vlans=network["vlans"],
        contexts=network["contexts"],
        public_ips=network["public_ips"],
        firewall_paths=network["firewall_paths"],
        lb_vips=network["lb_vips"],
        re_ip_rules=network["re_ip_rules"],
        dr_components=_dr_components(tenant),
        responsibilities=_responsibilities(tenant, provider.name),
        prerequisites=_prerequisites(tenant),
        channels=channels,
        contacts=contacts,
        notifications=notifications,
        role_labels=list(ROLE_LABELS.values()),
        persons=_persons(tenant),
        link=[
            Fact("Site link", f"{link.available_mbps:g} Mbps ({site.name})"),
            Fact("Peak replication load", f"{link.required_mbps:.1f} Mbps ({link.utilisation:.0%} of the link, "
                                          f"all groups, after compression)"),
        ],
        service_levels=service_levels,
        plan_rto=plan_rto,
        drills=drills,
        drill_facts=drill_facts,
        test_steps=test_steps,
        invocation_steps=invocation_steps,
        failback_steps=failback_steps,
        waves=waves,
        dns=[r for m in machines for r in m.dns],
        checks=[c for m in machines for c in m.checks],
        lb_probes=lb_probes,
        success_criteria=success,
        not_covered=not_covered,
    )


def render_dr_plan(
    tenant: TenantConfig,
    catalog: TierCatalog,
    *,
    generated_at: datetime,
    provider: ProviderDetails | None = None,
    webhook_secret_block: str | None = None,
    templates_dir: Path | None = None,
) -> DrPlanDocument:
    """Render the tenant's DR plan as Markdown and as self-contained, printable HTML.

    Args:
        tenant: a validated tenant (load it with :func:`draas.validation.load_tenant`).
        catalog: the tier catalog the tenant was validated against.
        generated_at: the document's timestamp (naive means UTC); output depends on nothing else
            that changes, so equal inputs give identical documents.
        provider: the provider's contact points.
        webhook_secret_block: name of the tenant's webhook signing key block (its name only is printed).
        templates_dir: where ``dr_plan.md.j2`` and ``dr_plan.html.j2`` are (default configs/templates/reports).

    Raises:
        DrPlanError: unknown tier, or a template is missing, invalid or uses an undefined value.
    """
    ctx = build_dr_plan_context(tenant, catalog, generated_at=generated_at, provider=provider,
                                webhook_secret_block=webhook_secret_block)
    directory = templates_dir or TEMPLATES_DIR
    variables = {"plan": ctx}
    rendered = {}
    for name, html in ((MARKDOWN_TEMPLATE, False), (HTML_TEMPLATE, True)):
        try:
            rendered[name] = _environment(directory, html=html).get_template(name).render(**variables)
        except jinja2.TemplateNotFound as exc:
            raise DrPlanError(f"report template {name!r} not found under {directory}") from exc
        except jinja2.UndefinedError as exc:
            raise DrPlanError(f"report template {name!r}: {exc.message}") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise DrPlanError(f"report template {name!r} line {exc.lineno}: {exc.message}") from exc
    return DrPlanDocument(
        tenant=tenant.id,
        title=ctx.title,
        generated_at=_utc(generated_at),
        config_digest=ctx.config_digest,
        sections=[title for _, title in SECTIONS],
        markdown=rendered[MARKDOWN_TEMPLATE],
        html=rendered[HTML_TEMPLATE],
    )

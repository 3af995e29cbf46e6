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
The fixed prose (the process steps, responsibilities, channels, success criteria) comes from
the prose template ``dr_plan_prose.j2``, rendered as plain text into that context. Escaping,
environments and rows are the shared ones of :mod:`draas.reports.render`: the HTML
environment autoescapes; the Markdown environment escapes every ``{{ }}`` output with
:func:`~draas.reports.render.escape_md`, so a display name cannot inject HTML, links or
headings into either.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
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
from draas.reports.render import (
    NONE,
    TEMPLATES_DIR,
    Fact,
    Prose,
    Row,
    Table,
    html_env,
    load_prose,
    markdown_env,
)
from draas.reports.render import escape_md as md_escape
from draas.validation import add_months

__all__ = [
    "HTML_TEMPLATE", "MARKDOWN_TEMPLATE", "PROSE_TEMPLATE", "ROLE_LABELS", "SECTIONS", "TEMPLATES_DIR",
    "DrPlanContext", "DrPlanDocument", "DrPlanError", "Fact", "ProviderDetails", "Row", "Table",
    "build_dr_plan_context", "md_escape", "render_dr_plan",
]

MARKDOWN_TEMPLATE = "dr_plan.md.j2"
HTML_TEMPLATE = "dr_plan.html.j2"
PROSE_TEMPLATE = "dr_plan_prose.j2"
"""The plan's fixed prose; looked up in ``templates_dir`` first, then in :data:`TEMPLATES_DIR`."""

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
# disagree about a value. Fact, Row and Table are the shared ones of draas.reports.render.


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

_NONE = NONE


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


def _duties(prose: Prose, block: str, party: str) -> list[Responsibility]:
    # A paragraph: the source, then the duty, then optionally "status: ...".
    duties = []
    for lines in prose.blocks(block):
        status = lines.pop()[len("status:"):].strip() if len(lines) > 2 and lines[-1].startswith("status:") else ""
        duties.append(Responsibility(party, " ".join(lines[1:]), lines[0], status=status))
    return duties


def _template_error(name: str, directory: Any, exc: Exception) -> DrPlanError:
    if isinstance(exc, jinja2.TemplateNotFound):
        return DrPlanError(f"report template {name!r} not found under {directory}")
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return DrPlanError(f"report template {name!r} line {exc.lineno}: {exc.message}")
    return DrPlanError(f"report template {name!r}: {getattr(exc, 'message', None) or exc}")


def _load_prose(variables: dict[str, Any], templates_dir: Path | None) -> Prose:
    # A templates_dir of layout templates only still gets the shipped prose.
    search = [templates_dir, TEMPLATES_DIR] if templates_dir else [TEMPLATES_DIR]
    try:
        return load_prose(PROSE_TEMPLATE, variables, templates_dir=search)
    except (jinja2.TemplateNotFound, jinja2.TemplateSyntaxError, jinja2.UndefinedError) as exc:
        raise _template_error(PROSE_TEMPLATE, templates_dir or TEMPLATES_DIR, exc) from exc


def _prose_variables(tenant: TenantConfig, tier: Tier, provider: ProviderDetails,
                     webhook_secret_block: str) -> dict[str, Any]:
    """What the prose template ``dr_plan_prose.j2`` is rendered with."""
    bh = tenant.business_hours
    groups = tenant.protection_groups
    during_test = [(g.name, limits(g.package).replication_continues_during_test) for g in groups]
    return {
        "provider": provider,
        "webhook_secret_block": webhook_secret_block,
        "who": {role.value: _names_with(tenant, role) for role in Role},
        "hours": f"{', '.join(bh.days)} {bh.start:%H:%M}-{bh.end:%H:%M} {tenant.timezone}",
        "test_port_groups": _join(v.drill_port_group for v in tenant.network.vlans),
        "re_ip": any(n.mapping == "re_ip" for m in tenant.machines for n in m.nics),
        "perimeter_ipsec_only": tier.draas.perimeter_acl_ipsec_only,
        "continuing": _join((g for g, continues in during_test if continues), "none"),
        "paused": _join((g for g, continues in during_test if not continues), "none"),
        "domain_controllers": [m.name for m in tenant.machines if m.is_domain_controller],
        "process_servers": [p.name for p in tenant.dr_components.process_servers],
        "packages": sorted({ServicePackage(g.package).value for g in groups}),
        "lb_vips": list(tenant.network.load_balancer_vips),
    }


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
    templates_dir: Path | None = None,
) -> DrPlanContext:
    """Collect and format everything the DR plan shows (no rendering).

    Args:
        tenant: a validated tenant (load it with :func:`draas.validation.load_tenant`).
        catalog: the tier catalog the tenant was validated against.
        generated_at: the document's timestamp (naive means UTC); the only clock it reads.
        provider: the provider's contact points (defaults print "given at onboarding").
        webhook_secret_block: name of the tenant's webhook signing key block
            (default ``<tenant>-webhook-signing-key``).
        templates_dir: where to look for ``dr_plan_prose.j2`` before configs/templates/reports.

    Raises:
        DrPlanError: the tenant's tier is not in the catalog, or the prose template is broken.
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
    prose = _load_prose(_prose_variables(tenant, tier, provider, webhook_secret_block), templates_dir)

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
    plan_rto = _dur(max(g.sla.rto for g in tenant.protection_groups))

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
        remote_access=prose.items("remote_access"),
        placement=placement,
        vrfs=network["vrfs"],
        vlans=network["vlans"],
        contexts=network["contexts"],
        public_ips=network["public_ips"],
        firewall_paths=network["firewall_paths"],
        lb_vips=network["lb_vips"],
        re_ip_rules=network["re_ip_rules"],
        dr_components=_dr_components(tenant),
        responsibilities=[*_duties(prose, "provider_duties", provider.name),
                          *_duties(prose, "customer_duties", "Customer")],
        prerequisites=_prerequisites(tenant),
        channels=prose.facts("channels"),
        contacts=prose.facts("contacts"),
        notifications=prose.items("notifications"),
        role_labels=list(ROLE_LABELS.values()),
        persons=_persons(tenant),
        link=[
            Fact("Site link", f"{link.available_mbps:g} Mbps ({site.name})"),
            Fact("Peak replication load", f"{link.required_mbps:.1f} Mbps ({link.utilisation:.0%} of the link, "
                                          f"all groups, after compression)"),
        ],
        service_levels=prose.facts("service_levels"),
        plan_rto=plan_rto,
        drills=drills,
        drill_facts=drill_facts,
        test_steps=prose.items("test_steps"),
        invocation_steps=prose.items("invocation_steps"),
        failback_steps=prose.items("failback_steps"),
        waves=waves,
        dns=[r for m in machines for r in m.dns],
        checks=[c for m in machines for c in m.checks],
        lb_probes=prose.facts("lb_probes"),
        success_criteria=prose.items("success_criteria"),
        not_covered=prose.items("not_covered"),
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
        templates_dir: where ``dr_plan.md.j2`` and ``dr_plan.html.j2`` are (default configs/templates/reports);
            ``dr_plan_prose.j2`` is taken from there when present, else from the default directory.

    Raises:
        DrPlanError: unknown tier, or a template is missing, invalid or uses an undefined value.
    """
    ctx = build_dr_plan_context(tenant, catalog, generated_at=generated_at, provider=provider,
                                webhook_secret_block=webhook_secret_block, templates_dir=templates_dir)
    directory = templates_dir or TEMPLATES_DIR
    variables = {"plan": ctx}
    rendered = {}
    for name, env in ((MARKDOWN_TEMPLATE, markdown_env(directory)), (HTML_TEMPLATE, html_env(directory))):
        try:
            rendered[name] = env.get_template(name).render(**variables)
        except (jinja2.TemplateNotFound, jinja2.UndefinedError, jinja2.TemplateSyntaxError) as exc:
            raise _template_error(name, directory, exc) from exc
    return DrPlanDocument(
        tenant=tenant.id,
        title=ctx.title,
        generated_at=_utc(generated_at),
        config_digest=ctx.config_digest,
        sections=[title for _, title in SECTIONS],
        markdown=rendered[MARKDOWN_TEMPLATE],
        html=rendered[HTML_TEMPLATE],
    )

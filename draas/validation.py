"""Load and validate tenant configurations and the tier catalog.

Everything here is read-only: validation never writes state. Each problem found is a
:class:`Problem` naming the file, the field path (``network.vlans[2].id``) and the reason,
printed one per line as ``<file>: <field.path>: <reason>``. Pydantic's own errors are turned
into the same form, and nothing here lets an exception escape as a traceback.

Rules (docs/configuration.md has the full list with examples):

- per file: YAML syntax, no duplicate keys, the pydantic model (types, ranges, unknown keys);
- intra-tenant: unique names, references, dependency cycles, VLAN/VRF counts of the tier,
  master-target OS family, <= 40 protected disks per master target, <= 1 TB/day per process
  server, RPO achievable by package and bandwidth, retention fits the package, drills at
  least 5 months apart and two per 12 months inside business hours, recovery IPs inside the
  recovery subnets and unique;
- cross-tenant over the whole tenants directory: no VLAN id, VRF name, subnet, public IP
  (or DNS zone, tenant id, route distinguisher) used twice.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from ipaddress import IPv4Address, IPv4Network, ip_network
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from draas.container import ContainerRenderError, render_problems, transit_vlans
from draas.errors import PermanentError
from draas.models.packages import (
    MAX_CHANGE_GB_PER_DAY_PER_PROCESS_SERVER,
    MAX_DISKS_PER_MASTER_TARGET,
    ServicePackage,
    limits,
)
from draas.models.tenant import BookmarkType, Role, TenantConfig
from draas.models.tiers import Tier, TierCatalog, default_tier_catalog_path
from draas.models.types import describe_duration, format_duration
from draas.planning.rpo import estimate_rpo
from draas.planning.waves import find_cycle
from draas.site import PROJECT_ROOT, Site, SiteConfigError

ROOT = "<root>"
"""Field path of problems that concern the whole file."""

NOT_TENANT_FILES = ("tiers.yaml", "lab.yaml", "site.yaml")
"""Files of a config directory that are not tenant files."""

MIN_DRILL_GAP_MONTHS = 5
DRILLS_PER_YEAR = 2


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one field of one file."""

    file: str
    field_path: str
    reason: str

    def __str__(self) -> str:
        # One problem, one line, whatever the input contained.
        return f"{self.file}: {self.field_path}: {self.reason}".replace("\r", "\\r").replace(
            "\n", "\\n"
        )


class ConfigInvalid(PermanentError):
    """A configuration did not validate; ``problems`` lists why, one per field."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(str(p) for p in self.problems[:20])
        more = f"\n... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{len(self.problems)} configuration problem(s):\n{lines}{more}")


# --- locations ---------------------------------------------------------------------------------


def default_config_dir() -> Path:
    """``$DRAAS_CONFIG_DIR`` or the project's configs/ directory."""
    env = os.environ.get("DRAAS_CONFIG_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "configs"


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it, else as given."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:
        return str(path)


# --- YAML ----------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(
    loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False
) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> tuple[Any, list[Problem]]:
    """Parse one YAML file; problems instead of exceptions."""
    name = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [Problem(name, ROOT, f"cannot read file: {exc.strerror or exc}")]
    except UnicodeDecodeError as exc:
        return None, [Problem(name, ROOT, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [Problem(name, ROOT, f"invalid YAML: {where}{problem}")]
    if not isinstance(data, dict):
        return None, [Problem(name, ROOT, "expected a mapping of fields at the top level")]
    return data, []


# --- pydantic errors -> problems --------------------------------------------------------------------


def field_path(loc: Sequence[int | str], data: Any) -> str:
    """``network.vlans[2].id`` from a pydantic error location.

    Pydantic puts union tags and validator names into locations (``checks.1.http.port``);
    only segments that exist in the input (or the final, missing field) are kept.
    """
    parts: list[str] = []
    current = data
    for i, seg in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(current, dict) and seg in current:
            parts.append(f".{seg}")
            current = current[seg]
        elif isinstance(current, list) and isinstance(seg, int) and 0 <= seg < len(current):
            parts.append(f"[{seg}]")
            current = current[seg]
        elif last and isinstance(current, dict):
            parts.append(f".{seg}")
        elif last and isinstance(seg, int):
            parts.append(f"[{seg}]")
        # else: a tag or validator name, not a field of the input
    text = "".join(parts).lstrip(".")
    return text or ROOT


_MESSAGES = {
    "extra_forbidden": "unknown field (check the spelling; see docs/configuration.md)",
    "missing": "required field is missing",
}


def problems_from_validation_error(exc: ValidationError, data: Any, file: str) -> list[Problem]:
    """One problem per pydantic error."""
    problems = []
    for err in exc.errors(include_url=False):
        reason = _MESSAGES.get(err["type"], err["msg"])
        reason = reason.removeprefix("Value error, ")
        problems.append(Problem(file, field_path(err["loc"], data), reason))
    return problems


def parse_model(model: type[BaseModel], data: Any, file: str) -> tuple[Any, list[Problem]]:
    """Validate ``data`` into ``model``; (instance, []) or (None, problems)."""
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, problems_from_validation_error(exc, data, file)


# --- tier catalog -------------------------------------------------------------------------------------


def load_tier_catalog(path: Path | None = None) -> tuple[TierCatalog | None, list[Problem]]:
    """Read and validate the tier catalog (default configs/tiers.yaml)."""
    path = path or default_tier_catalog_path()
    data, problems = read_yaml(path)
    if problems:
        return None, problems
    return parse_model(TierCatalog, data, display_path(path))


# --- intra-tenant rules ---------------------------------------------------------------------------------

Finding = tuple[str, str]  # (field path, reason)


def _dupes(items: Iterable[tuple[str, Any]], what: str) -> Iterator[Finding]:
    seen: dict[Any, str] = {}
    for path, value in items:
        if value in seen:
            yield path, f"{what} {value} is already used at {seen[value]}"
        else:
            seen[value] = path


def rule_unique_names(t: TenantConfig, tier: Tier | None) -> Iterator[Finding]:
    """Names and ids are unique inside the tenant."""
    n = t.network
    yield from _dupes(
        ((f"machines[{i}].name", m.name) for i, m in enumerate(t.machines)), "machine"
    )
    yield from _dupes(
        ((f"network.vlans[{i}].name", v.name) for i, v in enumerate(n.vlans)), "VLAN name"
    )
    yield from _dupes(((f"network.vlans[{i}].id", v.id) for i, v in enumerate(n.vlans)), "VLAN id")
    yield from _dupes(((f"network.vrfs[{i}].name", v.name) for i, v in enumerate(n.vrfs)), "VRF")
    yield from _dupes(
        ((f"network.re_ip_rules[{i}].name", r.name) for i, r in enumerate(n.re_ip_rules)),
        "re-IP rule",
    )
    yield from _dupes(
        ((f"network.public_ips[{i}].address", p.address) for i, p in enumerate(n.public_ips)),
        "public IP",
    )
    yield from _dupes(
        (
            (f"network.load_balancer_vips[{i}].name", v.name)
            for i, v in enumerate(n.load_balancer_vips)
        ),
        "VIP",
    )
    yield from _dupes(
        ((f"network.firewall_paths[{i}].name", f.name) for i, f in enumerate(n.firewall_paths)),
        "network path",
    )
    yield from _dupes(
        ((f"protection_groups[{i}].name", g.name) for i, g in enumerate(t.protection_groups)),
        "protection group",
    )
    yield from _dupes(
        (
            (f"dr_components.process_servers[{i}].name", p.name)
            for i, p in enumerate(t.dr_components.process_servers)
        ),
        "process server",
    )
    yield from _dupes(
        (
            (f"dr_components.master_targets[{i}].name", m.name)
            for i, m in enumerate(t.dr_components.master_targets)
        ),
        "master target",
    )
    yield from _dupes(
        ((f"authorised_persons[{i}].email", p.email) for i, p in enumerate(t.authorised_persons)),
        "e-mail",
    )
    yield from _dupes(
        ((f"dns_zones[{i}]", z.lower().rstrip(".")) for i, z in enumerate(t.dns_zones)), "zone"
    )
    records = (
        (f"machines[{i}].dns_records[{j}].name", (r.name.lower(), t.dns_zone(r).lower()))
        for i, m in enumerate(t.machines)
        for j, r in enumerate(m.dns_records)
    )
    yield from _dupes(records, "DNS record")


def rule_authorised_persons(t: TenantConfig, tier: Tier | None) -> Iterator[Finding]:
    """Someone must be allowed to invoke DR."""
    if not any(Role.INVOKE_DR in p.roles for p in t.authorised_persons):
        yield "authorised_persons", "at least one person needs the invoke_dr role"


def rule_tier(t: TenantConfig, tier: Tier | None) -> Iterator[Finding]:
    """The container has exactly the tier's VLANs and VRFs (Table 2-1 + DRaaS modifications)."""
    n = t.network
    if tier is None:
        yield "network.tier", f"unknown tier {n.tier!r}"
        return
    zones = set(n.zones)
    for i, zone in enumerate(n.zones):
        if zone not in tier.optional_zones:
            offered = sorted(tier.optional_zones) or "none"
            yield (
                f"network.zones[{i}]",
                f"tier {tier.name} has no optional zone {zone!r} (offers: {offered})",
            )
    label = tier.name + (f" with {', '.join(sorted(zones))} zone" if zones else "")
    want_vlans = tier.expected_vlan_roles(zones)
    have_vlans = [v.role for v in n.vlans]
    if len(have_vlans) != len(want_vlans):
        yield (
            "network.vlans",
            (
                f"tier {label} has {len(want_vlans)} VLANs ({', '.join(want_vlans)}), "
                f"found {len(have_vlans)}"
            ),
        )
    elif Counter(have_vlans) != Counter(want_vlans):
        yield (
            "network.vlans",
            (f"tier {label} needs VLAN roles {sorted(want_vlans)}, found {sorted(have_vlans)}"),
        )
    want_vrfs = tier.expected_vrf_roles(zones)
    have_vrfs = [v.role for v in n.vrfs]
    if Counter(have_vrfs) != Counter(want_vrfs):
        yield (
            "network.vrfs",
            (
                f"tier {label} has {len(want_vrfs)} VRFs ({', '.join(want_vrfs)}), "
                f"found {len(have_vrfs)} ({', '.join(have_vrfs)})"
            ),
        )
    if n.load_balancer_vips and not tier.load_balancer:
        yield "network.load_balancer_vips", f"tier {tier.name} has no load balancer"
    for i, vlan in enumerate(n.vlans):
        zone_vrf = "dmz" if vlan.role == "dmz" else None
        vrf = next((v for v in n.vrfs if v.name == vlan.vrf), None)
        if vrf is None:
            continue
        if zone_vrf and vrf.role != "dmz":
            yield (
                f"network.vlans[{i}].vrf",
                f"the DMZ VLAN must be in the DMZ VRF, not {vrf.name} ({vrf.role})",
            )
        if not zone_vrf and vrf.role == "dmz":
            yield f"network.vlans[{i}].vrf", f"only the DMZ VLAN may be in the DMZ VRF {vrf.name}"
    for i, mt in enumerate(t.dr_components.master_targets):
        vlan = _find(n.vlans, mt.vlan)
        want = tier.draas.control_servers_vlan_role
        if vlan is not None and vlan.role != want:
            yield (
                f"dr_components.master_targets[{i}].vlan",
                f"DR control servers go in the {want} VLAN on tier {tier.name}, not {vlan.name} ({vlan.role})",
            )


def _find(items: Iterable[Any], name: str) -> Any:
    return next((x for x in items if x.name == name), None)


def _in_subnet(ip: IPv4Address, subnet: IPv4Network) -> bool:
    return ip in subnet and ip != subnet.network_address and ip != subnet.broadcast_address


def rule_network(t: TenantConfig, tier: Tier | None) -> Iterator[Finding]:
    """References and addresses inside the network container."""
    n = t.network
    vrf_names = {v.name for v in n.vrfs}
    vlan_names = {v.name: v for v in n.vlans}
    for i, vlan in enumerate(n.vlans):
        if vlan.vrf not in vrf_names:
            yield f"network.vlans[{i}].vrf", f"unknown VRF {vlan.vrf!r}"
        if not _in_subnet(vlan.gateway, vlan.subnet):
            yield (
                f"network.vlans[{i}].gateway",
                f"{vlan.gateway} is not a host address of {vlan.subnet}",
            )
        for j, svi in enumerate(vlan.svi_addresses):
            if not _in_subnet(svi, vlan.subnet):
                yield (
                    f"network.vlans[{i}].svi_addresses[{j}]",
                    f"{svi} is not a host address of {vlan.subnet}",
                )
    for i, a in enumerate(n.vlans):
        for j in range(i):
            if a.subnet.overlaps(n.vlans[j].subnet):
                yield (
                    f"network.vlans[{i}].subnet",
                    f"{a.subnet} overlaps {n.vlans[j].subnet} of VLAN {n.vlans[j].name}",
                )
    for i, rule in enumerate(n.re_ip_rules):
        if rule.source.prefixlen != rule.target.prefixlen:
            yield (
                f"network.re_ip_rules[{i}].target",
                (
                    f"{rule.target} must have the same prefix length as {rule.source} (host part is kept)"
                ),
            )
    public = {p.address for p in n.public_ips}
    if n.ipsec.local_endpoint not in public:
        yield (
            "network.ipsec.local_endpoint",
            f"{n.ipsec.local_endpoint} is not one of network.public_ips",
        )
    vips = {v.name for v in n.load_balancer_vips}
    machines = {m.name for m in t.machines}
    for i, p in enumerate(n.public_ips):
        if p.purpose == "vpn_endpoint" and p.address != n.ipsec.local_endpoint:
            yield (
                f"network.public_ips[{i}].address",
                "a vpn_endpoint address must be network.ipsec.local_endpoint",
            )
        if p.purpose == "vip" and p.target not in vips:
            yield f"network.public_ips[{i}].target", f"unknown VIP {p.target!r}"
        if p.purpose == "nat" and p.target not in machines:
            yield f"network.public_ips[{i}].target", f"unknown machine {p.target!r}"
    for i, path in enumerate(n.firewall_paths):
        for end in ("source", "destination"):
            value = getattr(path, end)
            if value != "any" and value not in vlan_names and not _is_cidr(value):
                yield (
                    f"network.firewall_paths[{i}].{end}",
                    f"{value!r} is not a VLAN name, a CIDR or 'any'",
                )
        if path.ports and path.protocol not in ("tcp", "udp"):
            yield (
                f"network.firewall_paths[{i}].ports",
                f"ports need protocol tcp or udp, not {path.protocol}",
            )
    for i, vip in enumerate(n.load_balancer_vips):
        vip_vlan = vlan_names.get(vip.vlan)
        if vip_vlan is None:
            yield f"network.load_balancer_vips[{i}].vlan", f"unknown VLAN {vip.vlan!r}"
        elif not _in_subnet(vip.address, vip_vlan.subnet):
            yield (
                f"network.load_balancer_vips[{i}].address",
                f"{vip.address} is not inside {vip_vlan.subnet} ({vip_vlan.name})",
            )
        for j, member in enumerate(vip.members):
            if member not in machines:
                yield f"network.load_balancer_vips[{i}].members[{j}]", f"unknown machine {member!r}"


def _is_cidr(value: str) -> bool:
    try:
        ip_network(value, strict=True)
    except ValueError:
        return False
    return True


def rule_machines(t: TenantConfig, tier: Tier | None) -> Iterator[Finding]:
    """Dependencies (known, acyclic), NIC mappings, DNS records, checks."""
    names = [m.name for m in t.machines]
    known = set(names)
    vlans = {v.name: v for v in t.network.vlans}
    rules = {r.name for r in t.network.re_ip_rules}
    zones = {z.lower().rstrip(".") for z in t.dns_zones}
    for i, m in enumerate(t.machines):
        for j, dep in enumerate(m.depends_on):
            if dep not in known:
                yield f"machines[{i}].depends_on[{j}]", f"unknown machine {dep!r}"
            elif dep == m.name:
                yield f"machines[{i}].depends_on[{j}]", "a machine cannot depend on itself"
        for j, nic in enumerate(m.nics):
            base = f"machines[{i}].nics[{j}]"
            if nic.vlan not in vlans:
                yield f"{base}.vlan", f"unknown VLAN {nic.vlan!r}"
            if nic.mapping == "same_ip":
                for extra in ("recovery_ip", "re_ip_rule"):
                    if getattr(nic, extra) is not None:
                        yield (
                            f"{base}.{extra}",
                            "only for mapping re_ip (same_ip keeps the production address)",
                        )
            else:
                given = [f for f in ("recovery_ip", "re_ip_rule") if getattr(nic, f) is not None]
                if len(given) != 1:
                    yield f"{base}.mapping", "re_ip needs exactly one of recovery_ip or re_ip_rule"
                if nic.re_ip_rule is not None:
                    if nic.re_ip_rule not in rules:
                        yield f"{base}.re_ip_rule", f"unknown re-IP rule {nic.re_ip_rule!r}"
                    elif t.re_ip_rule(nic.re_ip_rule).translate(nic.ip) is None:
                        rule = t.re_ip_rule(nic.re_ip_rule)
                        yield (
                            f"{base}.re_ip_rule",
                            f"rule {rule.name} ({rule.source}) does not cover {nic.ip}",
                        )
        for j, rec in enumerate(m.dns_records):
            if t.dns_zone(rec).lower().rstrip(".") not in zones:
                yield (
                    f"machines[{i}].dns_records[{j}].zone",
                    f"{rec.zone!r} is not one of the tenant's dns_zones",
                )
            if rec.nic >= len(m.nics):
                yield f"machines[{i}].dns_records[{j}].nic", f"machine has {len(m.nics)} NIC(s)"
        for j, check in enumerate(m.checks):
            nic_index = getattr(check, "nic", 0)
            if nic_index >= len(m.nics):
                yield f"machines[{i}].checks[{j}].nic", f"machine has {len(m.nics)} NIC(s)"
        if not m.protected_disks:
            yield f"machines[{i}].disks", "every disk is excluded; nothing would be replicated"
    graph = {m.name: [d for d in m.depends_on if d in known and d != m.name] for m in t.machines}
    cycle = find_cycle(graph)
    if cycle:
        first = min(cycle[:-1], key=names.index)
        yield (
            f"machines[{names.index(first)}].depends_on",
            "dependency cycle "
            + " -> ".join(cycle[cycle.index(first) : -1] + cycle[: cycle.index(first) + 1]),
        )


def rule_recovery_ips(t: TenantConfig, tier: Tier | None) -> Iterator[Finding]:
    """Recovery addresses lie inside their recovery VLAN's subnet and are used once."""
    vlans = {v.name: v for v in t.network.vlans}
    used: dict[IPv4Address, str] = {}

    def claim(ip: IPv4Address, path: str) -> Iterator[Finding]:
        if ip in used:
            yield path, f"recovery address {ip} is already used at {used[ip]}"
        else:
            used[ip] = path

    for i, vlan in enumerate(t.network.vlans):
        yield from claim(vlan.gateway, f"network.vlans[{i}].gateway")
        for j, svi in enumerate(vlan.hsrp_addresses):
            yield from claim(svi, f"network.vlans[{i}].svi_addresses[{j}]")
    for i, m in enumerate(t.machines):
        for j, nic in enumerate(m.nics):
            field = {"same_ip": "ip"}.get(nic.mapping) or (
                "recovery_ip" if nic.recovery_ip else "re_ip_rule"
            )
            path = f"machines[{i}].nics[{j}].{field}"
            ip = t.recovery_ip(nic)
            nic_vlan = vlans.get(nic.vlan)
            if ip is None or nic_vlan is None:
                continue  # reported by rule_machines
            if not _in_subnet(ip, nic_vlan.subnet):
                how = (
                    "L2 extension keeps the production address, so "
                    if nic.mapping == "same_ip"
                    else ""
                )
                yield (
                    path,
                    f"{how}recovery address {ip} is not inside {nic_vlan.subnet} of VLAN {nic_vlan.name}",
                )
            yield from claim(ip, path)
    for i, mt in enumerate(t.dr_components.master_targets):
        path = f"dr_components.master_targets[{i}].ip"
        mt_vlan = vlans.get(mt.vlan)
        if mt_vlan is None:
            yield f"dr_components.master_targets[{i}].vlan", f"unknown VLAN {mt.vlan!r}"
        elif not _in_subnet(mt.ip, mt_vlan.subnet):
            yield path, f"{mt.ip} is not inside {mt_vlan.subnet} of VLAN {mt_vlan.name}"
        yield from claim(mt.ip, path)
    for i, vip in enumerate(t.network.load_balancer_vips):
        yield from claim(vip.address, f"network.load_balancer_vips[{i}].address")


def rule_protection_groups(t: TenantConfig, tier: Tier | None) -> Iterator[Finding]:
    """Membership, DR components, OS families and the design guide's concurrency limits."""
    machines = {m.name: m for m in t.machines}
    mts = {m.name: m for m in t.dr_components.master_targets}
    pss = {p.name: p for p in t.dr_components.process_servers}
    owner: dict[str, str] = {}
    disks_per_mt: Counter[str] = Counter()
    change_per_ps: dict[str, float] = defaultdict(float)
    for i, g in enumerate(t.protection_groups):
        base = f"protection_groups[{i}]"
        pkg = limits(g.package)
        if g.master_target is not None and g.master_target not in mts:
            yield f"{base}.master_target", f"unknown master target {g.master_target!r}"
        if g.process_server is not None and g.process_server not in pss:
            yield f"{base}.process_server", f"unknown process server {g.process_server!r}"
        if pkg.package is ServicePackage.VMR_CDP:
            if g.master_target is None:
                yield f"{base}.master_target", "VMR-CDP needs a master target on the recovery site"
            if g.process_server is None:
                yield (
                    f"{base}.process_server",
                    "VMR-CDP needs a process server on the protected site",
                )
        mt = mts.get(g.master_target or "")
        for j, name in enumerate(g.machines):
            path = f"{base}.machines[{j}]"
            m = machines.get(name)
            if m is None:
                yield path, f"unknown machine {name!r}"
                continue
            if name in owner:
                yield path, f"{name} is already protected by group {owner[name]}"
                continue
            owner[name] = g.name
            if m.kind != pkg.protects:
                yield (
                    path,
                    f"{name} is a {m.kind}; {pkg.package.value} protects {pkg.protects} machines",
                )
            if mt is not None:
                if m.os_family != mt.os_family:
                    yield (
                        path,
                        (
                            f"{name} is {m.os_family.value} but master target {mt.name} is "
                            f"{mt.os_family.value} (the master target must be of the same OS family)"
                        ),
                    )
                disks_per_mt[mt.name] += len(m.protected_disks)
            if g.process_server in pss:
                change_per_ps[g.process_server] += m.change_rate_gb_per_day
    for i, m in enumerate(t.machines):
        if m.name not in owner:
            yield f"machines[{i}].name", f"{m.name} is in no protection group"
    for i, mt in enumerate(t.dr_components.master_targets):
        if disks_per_mt[mt.name] > MAX_DISKS_PER_MASTER_TARGET:
            yield (
                f"dr_components.master_targets[{i}]",
                (
                    f"{disks_per_mt[mt.name]} protected disks on {mt.name}; at most "
                    f"{MAX_DISKS_PER_MASTER_TARGET} per master target (add another master target)"
                ),
            )
    for i, ps in enumerate(t.dr_components.process_servers):
        if change_per_ps[ps.name] > MAX_CHANGE_GB_PER_DAY_PER_PROCESS_SERVER:
            yield (
                f"dr_components.process_servers[{i}]",
                (
                    f"{change_per_ps[ps.name]:g} GB/day of changes through {ps.name}; at most 1 TB/day "
                    f"({MAX_CHANGE_GB_PER_DAY_PER_PROCESS_SERVER} GB) per process server (add another)"
                ),
            )


def rule_retention(t: TenantConfig, tier: Tier | None) -> Iterator[Finding]:
    """Replication cadence, retention and bookmarks fit the service package."""
    total_jobs = 0
    for i, g in enumerate(t.protection_groups):
        base = f"protection_groups[{i}]"
        pkg = limits(g.package)
        name = pkg.package.value
        r = g.retention
        if pkg.continuous and g.replication_interval is not None:
            yield (
                f"{base}.replication_interval",
                f"{name} replicates continuously; remove replication_interval",
            )
        if (
            not pkg.continuous
            and g.replication_interval is not None
            and g.replication_interval < pkg.min_interval
        ):
            yield (
                f"{base}.replication_interval",
                (f"{name} replicates at most every {format_duration(pkg.min_interval)}"),
            )
        if pkg.min_retention and r.window < pkg.min_retention:
            yield (
                f"{base}.retention.window",
                (
                    f"{name} keeps at least {format_duration(pkg.min_retention)} (asked {format_duration(r.window)})"
                ),
            )
        if pkg.max_retention and r.window > pkg.max_retention:
            yield (
                f"{base}.retention.window",
                (
                    f"{name} keeps at most {format_duration(pkg.max_retention)} (asked {format_duration(r.window)})"
                ),
            )
        if r.policy != "time" and not pkg.journal:
            yield (
                f"{base}.retention.policy",
                f"space-based retention needs a journal; {name} has none",
            )
        if r.policy != "time" and r.max_journal_gb is None:
            yield f"{base}.retention.max_journal_gb", f"policy {r.policy} needs max_journal_gb"
        if r.sparse and not pkg.journal:
            yield f"{base}.retention.sparse", f"sparse retention needs a journal; {name} has none"
        yield from _sparse_tiers(base, g)
        interval = g.replication_interval or pkg.min_interval
        points = r.recovery_points or math.ceil(r.window / interval)
        if pkg.max_recovery_points is not None and points > pkg.max_recovery_points:
            field = "recovery_points" if r.recovery_points else "window"
            yield (
                f"{base}.retention.{field}",
                (
                    f"{name} keeps at most {pkg.max_recovery_points} recovery points "
                    f"({format_duration(r.window)} every {format_duration(interval)} is {points})"
                ),
            )
        if r.recovery_points is not None and pkg.journal:
            yield (
                f"{base}.retention.recovery_points",
                f"{name} keeps a journal; give a window, not a point count",
            )
        if g.concurrent_jobs is not None:
            if pkg.max_concurrent_jobs is None:
                yield (
                    f"{base}.concurrent_jobs",
                    f"only PMR runs scheduled replication jobs; not {name}",
                )
            elif g.concurrent_jobs > pkg.max_concurrent_jobs:
                yield (
                    f"{base}.concurrent_jobs",
                    f"{name} runs at most {pkg.max_concurrent_jobs} jobs concurrently",
                )
            else:
                total_jobs += g.concurrent_jobs
                if total_jobs > pkg.max_concurrent_jobs:
                    yield (
                        f"{base}.concurrent_jobs",
                        (
                            f"PMR groups together run {total_jobs} jobs; at most {pkg.max_concurrent_jobs}"
                        ),
                    )
        for j, b in enumerate(g.bookmarks):
            path = f"{base}.bookmarks[{j}]"
            if b.type is BookmarkType.USER_DEFINED:
                if not b.name:
                    yield f"{path}.name", "a user_defined bookmark needs a name"
            else:
                if b.every is None:
                    yield f"{path}.every", f"a {b.type.value} bookmark needs a schedule (every)"
                for extra in ("name", "consistency"):
                    if getattr(b, extra) is not None:
                        yield f"{path}.{extra}", "only for user_defined bookmarks"


def _sparse_tiers(base: str, g: Any) -> Iterator[Finding]:
    r = g.retention
    scheduled = {b.type for b in g.bookmarks}
    previous = timedelta(0)
    for k, tier in enumerate(r.sparse):
        path = f"{base}.retention.sparse[{k}]"
        if tier.until <= previous:
            yield (
                f"{path}.until",
                (
                    f"tiers must be in increasing order ({format_duration(tier.until)} after "
                    f"{format_duration(previous)})"
                ),
            )
        if tier.keep == "interval":
            if tier.interval is None:
                yield f"{path}.interval", "keep: interval needs an interval"
            elif tier.interval >= tier.until - previous:
                yield f"{path}.interval", "interval must be shorter than the tier"
        elif tier.interval is not None:
            yield f"{path}.interval", "only for keep: interval"
        if tier.keep == "all" and tier.bookmark_types is not None:
            yield f"{path}.bookmark_types", "keep: all keeps every bookmark"
        for m, bt in enumerate(tier.bookmark_types or []):
            if bt not in scheduled:
                yield (
                    f"{path}.bookmark_types[{m}]",
                    f"no {bt.value} bookmark is scheduled in bookmarks",
                )
        previous = max(previous, tier.until)
    if r.sparse and r.sparse[-1].until != r.window:
        yield (
            f"{base}.retention.sparse[{len(r.sparse) - 1}].until",
            (f"the last tier must end at the retention window ({format_duration(r.window)})"),
        )
    if r.sparse and r.sparse[0].keep != "all":
        yield f"{base}.retention.sparse[0].keep", "the most recent tier must keep all writes"


def rule_rpo(t: TenantConfig, tier: Tier | None) -> Iterator[Finding]:
    """Each group's RPO target is achievable by its package on the site's bandwidth."""
    for i, g in enumerate(t.protection_groups):
        est = estimate_rpo(t, g)
        target = format_duration(g.sla.rpo)
        if est.achievable_seconds is None:
            yield (
                f"protection_groups[{i}].sla.rpo",
                (
                    f"{target} is not achievable: {est.required_mbps:.1f} Mbps of peak changes exceed "
                    f"the site's {est.available_mbps:g} Mbps, replication would fall behind"
                ),
            )
        elif est.achievable_seconds > est.target_seconds:
            best = describe_duration(timedelta(seconds=math.ceil(est.achievable_seconds)))
            yield (
                f"protection_groups[{i}].sla.rpo",
                (
                    f"{target} is not achievable by {est.package} "
                    f"(interval {format_duration(timedelta(seconds=est.interval_seconds))}, "
                    f"link {est.utilisation:.0%} busy): best is {best}"
                ),
            )


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months (clamped to the month's last day)."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    for d in (day.day, 30, 29, 28):
        try:
            return day.replace(year=year, month=month, day=min(day.day, d))
        except ValueError:
            continue
    raise ValueError(day)  # pragma: no cover


def rule_drills(t: TenantConfig, tier: Tier | None) -> Iterator[Finding]:
    """Two drills in each 12 months from service start, >= 5 months apart, in business hours."""
    d = t.drills
    starts = t.drill_starts()
    if d.transition_end < d.service_start:
        yield "drills.transition_end", "is before service_start"
    for k, start in enumerate(starts):
        if k and start <= starts[k - 1]:
            yield f"drills.dates[{k}]", "dates must be in increasing order"
            continue
        if start.date() < d.service_start:
            yield f"drills.dates[{k}]", f"is before service_start {d.service_start}"
        if k and start.date() < add_months(starts[k - 1].date(), MIN_DRILL_GAP_MONTHS):
            yield (
                f"drills.dates[{k}]",
                (
                    f"only {(start - starts[k - 1]).days} days after the previous drill; drills are at least "
                    f"{MIN_DRILL_GAP_MONTHS} months apart (ideally six)"
                ),
            )
        if not t.business_hours.contains(start.replace(tzinfo=None), d.duration):
            bh = t.business_hours
            yield (
                f"drills.dates[{k}]",
                (
                    f"{start:%a %Y-%m-%d %H:%M} + {format_duration(d.duration)} is outside business hours "
                    f"({','.join(bh.days)} {bh.start:%H:%M}-{bh.end:%H:%M} {t.timezone})"
                ),
            )
    if starts and not (d.service_start <= starts[0].date() <= d.transition_end):
        yield (
            "drills.dates[0]",
            (
                f"the first drill happens during transition ({d.service_start} to {d.transition_end})"
            ),
        )
    if not starts:
        return
    last = starts[-1].date()
    period = 0
    while add_months(d.service_start, 12 * period) <= last:
        lo, hi = (
            add_months(d.service_start, 12 * period),
            add_months(d.service_start, 12 * (period + 1)),
        )
        count = sum(1 for s in starts if lo <= s.date() < hi)
        if count < DRILLS_PER_YEAR:
            yield (
                "drills.dates",
                (
                    f"{count} drill(s) between {lo} and {hi - timedelta(days=1)}; "
                    f"at least {DRILLS_PER_YEAR} in every 12 months from service_start"
                ),
            )
        period += 1


INTRA_TENANT_RULES: list[Callable[[TenantConfig, Tier | None], Iterable[Finding]]] = [
    rule_unique_names,
    rule_authorised_persons,
    rule_tier,
    rule_network,
    rule_machines,
    rule_recovery_ips,
    rule_protection_groups,
    rule_retention,
    rule_rpo,
    rule_drills,
]


def check_tenant(tenant: TenantConfig, catalog: TierCatalog | None, file: str,
                 site: Site | Problem | None = None) -> list[Problem]:
    """Every intra-tenant rule over one parsed tenant.

    ``site`` is the recovery site the container must render on (default: the default site
    file), or the problem that kept it from loading.
    """
    tier = catalog.get(tenant.network.tier) if catalog else None
    problems: list[Problem] = []
    for rule in INTRA_TENANT_RULES:
        if catalog is None and rule is rule_tier:
            continue  # the catalog's own problems are reported instead
        try:
            problems += [Problem(file, path, reason) for path, reason in rule(tenant, tier)]
        except Exception as exc:  # noqa: BLE001 - a validator bug must not become a traceback
            problems.append(Problem(file, ROOT, f"validator error in {rule.__name__}: {exc!r}"))
    if tier is not None and not problems:
        problems += _container_problems(tenant, catalog, file, site if site is not None else site_for(None))
    return problems


def site_for(config_dir: Path | None) -> Site | Problem:
    """The site of ``config_dir`` (as the flows read it: ``Site.for_config_dir``), or why it does not load."""
    try:
        return Site.for_config_dir(config_dir)
    except SiteConfigError as exc:
        site_file = Site.file_for_config_dir(config_dir)
        reason = str(exc).removeprefix(f"{site_file}: ")
        return Problem(display_path(site_file), ROOT, reason)


def _config_dir_of(tenant_file: Path) -> Path:
    """The config directory a tenant file belongs to: the one holding ``tenants/``, else its own."""
    parent = tenant_file.resolve().parent
    return parent.parent if parent.name == "tenants" else parent


def _container_problems(tenant: TenantConfig, catalog: TierCatalog | None, file: str,
                        site: Site | Problem) -> list[Problem]:
    """Why the tenant's container would not render on the recovery site's devices."""
    if isinstance(site, Problem):
        return [site]  # the site file's own problem, once per site file (problems are deduplicated)
    assert catalog is not None
    # Name the site file unless it is the project's own, so another site (a config directory's
    # site.yaml, $DRAAS_SITE_CONFIG) shows in the message.
    stock = (PROJECT_ROOT / "configs" / "site.yaml").resolve()
    where = "" if Path(site.path).resolve() == stock else f" (devices of {display_path(Path(site.path))})"
    return [Problem(file, "network", f"{reason}{where}") for reason in render_problems(tenant, catalog, site.devices)]


# --- cross-tenant rules ----------------------------------------------------------------------------


@dataclass
class _Loaded:
    file: str
    path: Path
    tenant: TenantConfig


def _claims(t: TenantConfig, catalog: TierCatalog | None) -> Iterator[tuple[str, Any, str, str]]:
    """(kind, value, field path, use) of everything that must be unique across tenants.

    ``use`` is empty when the field itself holds the value, else says how the value derives from it.
    """
    for kind, value, path in _plain_claims(t):
        yield kind, value, path, ""
    # The container's transit links take VLAN ids the tenant file does not list.
    try:
        transits = transit_vlans(t, catalog) if catalog is not None and catalog.get(t.network.tier) else {}
    except ContainerRenderError:
        transits = {}  # reported by the tenant's own container check
    index = {v.id: i for i, v in enumerate(t.network.vlans)}
    for transit, source in transits.items():
        yield ("VLAN id", transit, f"network.vlans[{index[source]}].id",
               f" as the container's transit link for VLAN {source}")


def _plain_claims(t: TenantConfig) -> Iterator[tuple[str, Any, str]]:
    yield "tenant id", t.id, "id"
    for i, v in enumerate(t.network.vlans):
        yield "VLAN id", v.id, f"network.vlans[{i}].id"
    for i, vrf in enumerate(t.network.vrfs):
        yield "VRF name", vrf.name.lower(), f"network.vrfs[{i}].name"
        if vrf.rd:
            yield "route distinguisher", vrf.rd, f"network.vrfs[{i}].rd"
    for i, p in enumerate(t.network.public_ips):
        yield "public IP", p.address, f"network.public_ips[{i}].address"
    for i, z in enumerate(t.dns_zones):
        yield "DNS zone", z.lower().rstrip("."), f"dns_zones[{i}]"


def check_cross_tenant(loaded: Sequence[_Loaded], report_on: set[str],
                       catalog: TierCatalog | None = None) -> list[Problem]:
    """Overlaps between tenants; each is reported once, on a file in ``report_on``."""
    problems: list[Problem] = []
    ordered = sorted(loaded, key=lambda x: x.file)

    def report(a: _Loaded, a_path: str, b: _Loaded, b_path: str, what: str,
               a_use: str = "", b_use: str = "") -> None:
        # a sorts before b: blame the later file unless only the earlier one is being validated.
        # ``*_use`` says how a side uses the value when it is not what its field says (a transit link).
        if b.file in report_on:
            problems.append(Problem(b.file, b_path, f"{what}{b_use} is already used by tenant {a.tenant.id} "
                                                    f"({a.file}: {a_path}){a_use}"))
        elif a.file in report_on:
            problems.append(Problem(a.file, a_path, f"{what}{a_use} is also used by tenant {b.tenant.id} "
                                                    f"({b.file}: {b_path}){b_use}"))

    owners: dict[tuple[str, Any], tuple[_Loaded, str, str]] = {}
    for item in ordered:
        for kind, value, path, use in _claims(item.tenant, catalog):
            key = (kind, value)
            if key in owners and owners[key][0] is not item:
                first, first_path, first_use = owners[key]
                if first_use and use:
                    continue  # two transit links clash only when their VLANs do, which is reported
                report(first, first_path, item, path, f"{kind} {value}", first_use, use)
            else:
                owners.setdefault(key, (item, path, use))
    subnets = [
        (item, i, v.subnet) for item in ordered for i, v in enumerate(item.tenant.network.vlans)
    ]
    for x, (a, i, net_a) in enumerate(subnets):
        for b, j, net_b in subnets[x + 1 :]:
            if a is not b and net_a.overlaps(net_b):
                report(
                    a,
                    f"network.vlans[{i}].subnet",
                    b,
                    f"network.vlans[{j}].subnet",
                    f"subnet {net_b} overlaps {net_a}, which",
                )
    return problems


# --- entry points -------------------------------------------------------------------------------------


def _expand(paths: Sequence[Path]) -> tuple[list[Path], list[Path], list[Problem]]:
    """Tenant files to validate and tier catalogs found, from files and directories."""
    tenants: list[Path] = []
    catalogs: list[Path] = []
    problems: list[Problem] = []
    for path in paths:
        if path.is_dir():
            tenant_dir = path / "tenants" if (path / "tenants").is_dir() else path
            if (path / "tiers.yaml").is_file():
                catalogs.append(path / "tiers.yaml")
            found = sorted([*tenant_dir.glob("*.yaml"), *tenant_dir.glob("*.yml")])
            if tenant_dir == path:
                found = [f for f in found if f.name not in NOT_TENANT_FILES]
            if not found:
                problems.append(Problem(display_path(path), ROOT, "no tenant files (*.yaml) found"))
            tenants += found
        elif path.is_file():
            if path.name == "tiers.yaml":
                catalogs.append(path)
            else:
                tenants.append(path)
        else:
            problems.append(Problem(display_path(path), ROOT, "no such file or directory"))
    return tenants, catalogs, problems


def _catalog_for(tenant_files: Sequence[Path], catalogs: Sequence[Path]) -> Path:
    if catalogs:
        return catalogs[0]
    for f in tenant_files:
        candidate = f.resolve().parent.parent / "tiers.yaml"
        if candidate.is_file():
            return candidate
    return default_tier_catalog_path()


def parse_tenant_file(path: Path) -> tuple[TenantConfig | None, list[Problem]]:
    """Read one tenant file into the model (shape only, no cross-object rules)."""
    name = display_path(path)
    data, problems = read_yaml(path)
    if problems:
        return None, problems
    tenant, problems = parse_model(TenantConfig, data, name)
    if tenant is not None and tenant.id != path.stem:
        problems.append(
            Problem(name, "id", f"{tenant.id!r} must match the file name {path.name!r}")
        )
    return tenant, problems


def validate_paths(paths: Sequence[Path | str] | None = None) -> list[Problem]:
    """Validate tenant files and/or directories (default: the project's configs/).

    A directory holding ``tenants/`` is a configs directory: its tier catalog and all its
    tenants are validated. Named tenant files are checked against their sibling tenants for
    cross-tenant overlaps, with the problems reported on the named files.
    """
    try:
        return _validate_paths([Path(p) for p in (paths or [default_config_dir()])])
    except Exception as exc:  # noqa: BLE001 - the promise is one line per problem, never a traceback
        return [Problem(ROOT, ROOT, f"validator error: {exc!r}")]


def _validate_paths(paths: list[Path]) -> list[Problem]:
    tenant_files, catalogs, problems = _expand(paths)
    catalog_path = _catalog_for(tenant_files, catalogs)
    catalog, catalog_problems = load_tier_catalog(catalog_path)
    if catalog_path in catalogs or catalog is None:
        problems += catalog_problems
    targets = {display_path(f) for f in tenant_files}
    siblings: set[Path] = set()
    for f in tenant_files:
        siblings |= {s for s in f.parent.glob("*.yaml") if s.name not in NOT_TENANT_FILES}
    loaded: list[_Loaded] = []
    seen: set[Path] = set()
    sites: dict[Path, Site | Problem] = {}  # per config directory: the site its flows would use
    for f in sorted(set(tenant_files) | siblings):
        key = f.resolve()
        if key in seen:
            continue
        seen.add(key)
        name = display_path(f)
        tenant, file_problems = parse_tenant_file(f)
        if name in targets:
            problems += file_problems
            if tenant is not None:
                config_dir = _config_dir_of(f)
                if config_dir not in sites:
                    sites[config_dir] = site_for(config_dir)
                problems += check_tenant(tenant, catalog, name, sites[config_dir])
        if tenant is not None:
            loaded.append(_Loaded(name, f, tenant))
    problems += check_cross_tenant(loaded, targets, catalog)
    return sorted(set(problems), key=lambda p: (p.file, p.field_path, p.reason))


def tenant_file(tenant_id: str, config_dir: Path | None = None) -> Path:
    """Path of a tenant's file in ``config_dir`` (default the project's configs/)."""
    return (config_dir or default_config_dir()) / "tenants" / f"{tenant_id}.yaml"


def load_tenant(tenant: str | Path, config_dir: Path | None = None) -> TenantConfig:
    """Load one tenant (by id or file) after validating it against the whole tenant set.

    Raises:
        ConfigInvalid: with every problem found; nothing has been touched.
    """
    path = (
        Path(tenant)
        if str(tenant).endswith((".yaml", ".yml"))
        else tenant_file(str(tenant), config_dir)
    )
    problems = validate_paths([path])
    if problems:
        raise ConfigInvalid(problems)
    model, parse_problems = parse_tenant_file(path)
    if model is None:  # pragma: no cover - validate_paths reported it already
        raise ConfigInvalid(parse_problems)
    return model


def load_tenants(config_dir: Path | None = None) -> list[TenantConfig]:
    """All tenants of ``config_dir`` after validating the whole set.

    Raises:
        ConfigInvalid: with every problem found.
    """
    config_dir = config_dir or default_config_dir()
    problems = validate_paths([config_dir])
    if problems:
        raise ConfigInvalid(problems)
    tenants = []
    for f in sorted((config_dir / "tenants").glob("*.yaml")):
        model, _ = parse_tenant_file(f)
        if model is not None:
            tenants.append(model)
    return tenants


def load_catalog(config_dir: Path | None = None) -> TierCatalog:
    """The tier catalog of ``config_dir`` (or the default one).

    Raises:
        ConfigInvalid: when the catalog does not validate.
    """
    path = (
        (config_dir / "tiers.yaml")
        if config_dir and (config_dir / "tiers.yaml").is_file()
        else None
    )
    catalog, problems = load_tier_catalog(path)
    if catalog is None:
        raise ConfigInvalid(problems)
    return catalog

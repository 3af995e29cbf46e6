"""A drill's bubble: the isolated network its test VMs run in, and the proof that it is isolated.

Pure: no network, no Prefect. The drill flow plans the bubble with :func:`plan_bubble`, builds
it through tasks (recording every object in the ledger first), reads back what the recovery
vCenter and the routing devices hold, and hands that to :func:`prove_isolation` before any test
VM is powered on. The bubble is:

- one distributed switch **without physical uplinks** (``<tenant>-drill-bubble``), joined by
  every host of the recovery cluster, so the bubble spans hosts and no frame leaves them;
- one port group per tenant VLAN on it (``VLAN.drill_port_group``, default ``<VLAN>-bubble``),
  each on a VLAN id of the drill range that no production network uses: the test VMs keep their
  production addresses, which cannot conflict because nothing outside the switch sees them;
- the tenant's **test-access path**: on the tenant's VPN context an access list
  (``<tenant>-drill-access``) that permits only the tenant's remote-access test users (the
  remote-access pool) to the tenant's subnets and denies everything else, rendered from
  ``configs/templates/drill/test-access.j2``. No line holds a secret.

Isolation is proven, and the proof **fails closed**: a switch that cannot be read, a host with a
physical NIC on the switch, a port group on a production VLAN (or not on its planned VLAN), a
routing device whose running config could not be read, or a bubble VLAN declared or routed on an
aggregation switch or PE router (``vlan``, ``interface Vlan<id>``, ``encapsulation dot1Q <id>``)
each fail a check, and one failed check fails the proof.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from draas.clients.cisco_config import render_template
from draas.container import ContainerDevice
from draas.cutover import CutoverSettings
from draas.errors import PermanentError
from draas.models.tenant import TenantConfig
from draas.models.tiers import TierCatalog
from draas.reports.drill_model import IsolationCheck

#: Where the drill's device templates live.
TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "configs" / "templates" / "drill"
#: ``identity["purpose"]`` of the ledger records a drill writes.
PURPOSE = "drill"
#: The VLAN ids bubble port groups are given (never one a production network uses).
DRILL_VLANS = range(3900, 4000)
#: Device roles whose running configs must not declare or route a bubble VLAN.
ROUTING_ROLES = ("aggregation", "pe-router")


class BubbleError(PermanentError):
    """The bubble cannot be planned (no free drill VLAN, no VPN context device)."""


class IsolationNotProven(PermanentError):
    """A check of the bubble's isolation failed or could not be made: nothing may power on."""

    def __init__(self, message: str, checks: list[IsolationCheck]) -> None:
        self.checks = checks
        super().__init__(message)


class BubblePortGroup(BaseModel):
    model_config = ConfigDict(frozen=True)

    vlan: str = Field(description="the tenant VLAN this port group stands in for")
    port_group: str
    vlan_id: int = Field(description="a drill VLAN id (no production network uses it)")
    production_vlan_id: int


class TestAccess(BaseModel):
    """The lines of the test-access path on the tenant's VPN context."""

    model_config = ConfigDict(frozen=True)

    device: str
    context: str | None
    role: str
    platform: str
    acl: str
    lines: list[str]

    @property
    def label(self) -> str:
        return f"{self.device}/{self.context}" if self.context else self.device

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class BubblePlan(BaseModel):
    """What one drill builds for its bubble."""

    tenant: str
    switch: str
    port_groups: list[BubblePortGroup]
    access: TestAccess | None = None
    production_vlans: list[int] = Field(description="VLAN ids production networks use (none may be in the bubble)")
    production_port_groups: list[str] = Field(description="the tenant's recovery port groups (no test VM may be "
                                                          "on one)")

    def mapping(self) -> dict[str, str]:
        """Tenant VLAN name -> bubble port group (for :func:`draas.recovery.plan.drill_mapping`)."""
        return {pg.vlan: pg.port_group for pg in self.port_groups}

    @property
    def bubble_vlans(self) -> list[int]:
        return [pg.vlan_id for pg in self.port_groups]


def switch_name(tenant_id: str) -> str:
    """The bubble switch of ``tenant_id`` (one drill at a time per tenant: exclusivity)."""
    return f"{tenant_id}-drill-bubble"


_VLAN_DECL = re.compile(r"^vlan\s+([\d,\-\s]+)$", re.IGNORECASE)
_SVI = re.compile(r"^interface\s+vlan\s*(\d+)\b", re.IGNORECASE)
_DOT1Q = re.compile(r"^encapsulation\s+dot1q\s+(\d+)\b", re.IGNORECASE)


def vlans_in_config(text: str) -> tuple[set[int], set[int]]:
    """(VLAN ids declared, VLAN ids routed: an SVI or a dot1Q sub-interface) in a running config."""
    declared: set[int] = set()
    routed: set[int] = set()
    for raw in text.splitlines():
        line = raw.strip()
        if m := _VLAN_DECL.match(line):
            for part in m.group(1).replace(" ", "").split(","):
                if "-" in part:
                    lo, _, hi = part.partition("-")
                    if lo.isdigit() and hi.isdigit():
                        declared.update(range(int(lo), int(hi) + 1))
                elif part.isdigit():
                    declared.add(int(part))
        elif m := _SVI.match(line):
            routed.add(int(m.group(1)))
        elif m := _DOT1Q.match(line):
            routed.add(int(m.group(1)))
    return declared, routed


def production_vlans(tenant: TenantConfig, device_configs: Mapping[str, str | None],
                     port_group_vlans: Iterable[int] = ()) -> set[int]:
    """Every VLAN id a production network uses: the tenant's, every declared or routed one, the port groups'."""
    used = {v.id for v in tenant.network.vlans} | {v for v in port_group_vlans if v}
    for text in device_configs.values():
        if text:
            declared, routed = vlans_in_config(text)
            used |= declared | routed
    return used


def routing_devices(devices: Iterable[ContainerDevice]) -> list[ContainerDevice]:
    """The devices that could route a bubble VLAN out (aggregation switches, PE routers)."""
    return [d for d in devices if d.role in ROUTING_ROLES]


def plan_bubble(tenant: TenantConfig, catalog: TierCatalog, devices: Iterable[ContainerDevice], *,
                taken_vlans: Iterable[int], run_id: str, settings: CutoverSettings | None = None,
                templates_dir: Path = TEMPLATES_DIR) -> BubblePlan:
    """The bubble for a drill of ``tenant``: switch, one port group per VLAN on a free drill VLAN, test access.

    Raises:
        BubbleError: the drill VLAN range has no free id left for every tenant VLAN.
    """
    taken = set(taken_vlans)
    free = [v for v in DRILL_VLANS if v not in taken]
    if len(free) < len(tenant.network.vlans):
        raise BubbleError(f"tenants/{tenant.id}.yaml: network.vlans: {len(tenant.network.vlans)} bubble port "
                          f"groups need free drill VLANs ({DRILL_VLANS.start}-{DRILL_VLANS.stop - 1}); "
                          f"only {len(free)} are free")
    groups = [BubblePortGroup(vlan=v.name, port_group=v.drill_port_group, vlan_id=free[i], production_vlan_id=v.id)
              for i, v in enumerate(tenant.network.vlans)]
    devices = list(devices)
    access = None
    tier = catalog.get(tenant.network.tier)
    has_vpn = tier is not None and "vpn" in tier.expected_firewall_contexts(frozenset(tenant.network.zones))
    if has_vpn:
        role = catalog.placement.vpn_context
        found = [d for d in devices if d.role == role]
        if len(found) != 1:
            raise BubbleError(f"the test-access path needs exactly one device with role {role!r}, found {len(found)}")
        device = found[0]
        pool = (settings or CutoverSettings()).ra_pool
        acl = f"{tenant.id}-drill-access"
        text = render_template("test-access.j2", {
            "acl": acl, "tenant": tenant.id, "run": run_id, "pool": _net(pool),
            "subnets": [_net(v.subnet) for v in tenant.network.vlans]}, templates_dir)
        access = TestAccess(device=device.name, context=tenant.context_name("vpn"), role=device.role,
                            platform=device.platform, acl=acl,
                            lines=[line.rstrip() for line in text.splitlines() if line.strip()])
    return BubblePlan(tenant=tenant.id, switch=switch_name(tenant.id), port_groups=groups, access=access,
                      production_vlans=sorted(taken), production_port_groups=sorted(
                          {v.recovery_port_group for v in tenant.network.vlans}))


def _net(net: IPv4Network) -> dict[str, str]:
    return {"address": str(net.network_address), "netmask": str(net.netmask)}


def prove_isolation(plan: BubblePlan, switch: Mapping[str, Any] | None, device_configs: Mapping[str, str | None],
                    *, now: datetime | None = None) -> list[IsolationCheck]:
    """Every isolation check of the bubble, passed or not (fail closed: what cannot be read fails).

    Args:
        plan: the bubble as planned.
        switch: the switch as the recovery vCenter reports it (``VCenterClient.switch_state``),
            None when it could not be found.
        device_configs: running config of each routing device by name; None where it could not be read.
    """
    at = now or datetime.now(UTC)
    checks: list[IsolationCheck] = []

    def check(name: str, passed: bool, detail: str) -> None:
        checks.append(IsolationCheck(name=name, passed=passed, detail=detail, checked_at=at))

    if switch is None:
        check("switch has no uplink", False, f"switch {plan.switch} not found in the recovery vCenter")
        return checks
    hosts: Mapping[str, list[str]] = switch.get("hosts") or {}
    uplinked = {h: p for h, p in hosts.items() if p}
    if not hosts:
        check("switch has no uplink", False, f"switch {plan.switch} has no host member: it cannot be read as "
                                             f"spanning the cluster")
    elif uplinked:
        check("switch has no uplink", False, f"switch {plan.switch} has physical uplinks: " + "; ".join(
            f"{h}: {', '.join(p)}" for h, p in sorted(uplinked.items())))
    else:
        uplink_pgs = list(switch.get("uplink_portgroups") or [])
        check("switch has no uplink", True, f"switch {plan.switch}: {len(hosts)} host(s) "
                                            f"({', '.join(sorted(hosts))}), no physical NIC on any"
              + (f"; its uplink port group ({', '.join(uplink_pgs)}) has nothing behind it" if uplink_pgs else ""))
    portgroups: Mapping[str, int | None] = switch.get("portgroups") or {}
    production = set(plan.production_vlans)
    for pg in plan.port_groups:
        vlan = portgroups.get(pg.port_group, -1)
        if vlan == -1:
            check(f"port group {pg.port_group}", False, f"{pg.port_group} is not on switch {plan.switch}")
        elif vlan is None or vlan != pg.vlan_id:
            check(f"port group {pg.port_group}", False, f"{pg.port_group} is on VLAN {vlan}, planned {pg.vlan_id}")
        elif vlan in production:
            check(f"port group {pg.port_group}", False, f"{pg.port_group} carries production VLAN {vlan}")
        else:
            check(f"port group {pg.port_group}", True, f"{pg.port_group} on VLAN {vlan} (no production network "
                                                       f"uses it; stands in for {pg.vlan} VLAN {pg.production_vlan_id})")
    for extra in sorted(set(portgroups) - {pg.port_group for pg in plan.port_groups}):
        vlan = portgroups[extra]
        if vlan is None or vlan in production:
            check(f"port group {extra}", False, f"unplanned port group {extra} on {plan.switch} carries VLAN {vlan}")
    if not device_configs:
        check("no bubble VLAN routed", False, "no aggregation switch or PE router was read")
    for device, text in sorted(device_configs.items()):
        if text is None:
            check(f"no bubble VLAN on {device}", False, f"the running config of {device} could not be read")
            continue
        declared, routed = vlans_in_config(text)
        bad = sorted((declared | routed) & set(plan.bubble_vlans))
        if bad:
            check(f"no bubble VLAN on {device}", False, f"{device} declares or routes bubble VLAN(s) "
                                                        f"{', '.join(map(str, bad))}")
        else:
            check(f"no bubble VLAN on {device}", True, f"{device}: none of VLANs "
                                                       f"{', '.join(map(str, plan.bubble_vlans))} declared or routed")
    return checks


def require_isolation(checks: list[IsolationCheck]) -> None:
    """Raise :class:`IsolationNotProven` naming every failed check (or the absence of checks)."""
    failed = [c for c in checks if not c.passed]
    if not checks or failed:
        raise IsolationNotProven("isolation of the bubble not proven: " + (
            "; ".join(f"{c.name}: {c.detail}" for c in failed) if failed else "nothing was checked"), checks)


def nic_violations(networks: Mapping[str, list[str | None]], plan: BubblePlan) -> list[str]:
    """Test VMs with a NIC anywhere but a bubble port group (a production port group named as such)."""
    allowed = {pg.port_group for pg in plan.port_groups}
    production = set(plan.production_port_groups)
    out = []
    for vm, nets in sorted(networks.items()):
        for i, net in enumerate(nets):
            if net not in allowed:
                what = "production port group" if net in production else "network outside the bubble"
                out.append(f"{vm} NIC {i + 1} on {what} {net}")
    return out

"""Render a tenant's network container (VMDC 2.3 tier + DRaaS modifications) as device configs.

Pure: no network, no Prefect. From a validated tenant, the tier catalog and the recovery
site's device inventory, :func:`render_container` produces, per device and per ASA
context, the config lines the tenant needs; :func:`removal_lines` gives the ``no``
commands that take them away again (offboarding). Templates live in
``configs/templates/container/<role>.j2`` (jinja2, ``StrictUndefined``); this module
computes their variables, so every address and name decision is made here, once.

What each device gets (design guide "VMDC 2.3 Network Containers" and "Modifications in
VMDC Network Containers for DRaaS"):

- **pe-router** (IOS-XE): the tenant's customer VRF as an MPLS-VPN (``rd``, route targets;
  route targets default to the RD), a dot1Q sub-interface on the handoff VLAN towards the
  aggregation pair, and ``address-family ipv4 vrf`` under the PE's BGP process with the
  aggregation switches as neighbours. Only the *customer* VRF reaches the PE: the Gold
  Cust-PVT and Cust-DMZ VRFs are local to the aggregation layer (the "VRF sandwich").
- **aggregation** (NX-OS pair): every VRF as ``vrf context`` (with static routes), every
  VLAN, one SVI per routed VLAN with HSRP (group = VLAN id; the first switch is active),
  and the customer VRF's BGP session to the PE announcing the tenant's subnets.
- **perimeter-firewall** (ASA, multi-context; Gold only): the ``<tenant>-perimeter``
  context between the customer VRF (outside) and the PVT VRF (inside), the
  ``<tenant>-dmz`` context when the DMZ zone is on (interconnected with the perimeter
  context), the network paths as a global subnet-based ACL, and on the perimeter context
  the ACL that lets IPsec (ESP, UDP 500/4500) pass only between the tenant's peer and its
  local tunnel endpoint, on every interface.
- **vpn-firewall** (ASA, multi-context; every tier): the ``<tenant>-vpn`` context with its
  outside interface on the tier's ``vpn_outside_vlan_role`` VLAN and its inside interface
  on ``vpn_inside_vlan_role`` (Bronze/Copper: the extra DR control VLAN), a crypto map to
  the tenant's peer for traffic between the inside VLAN and the tenant's remote subnets,
  and the tunnel group with the pre-shared key. The aggregation switches route the remote
  subnets to the context's inside address.
- **load-balancer** (ACE-like): per VIP a probe, real servers, server farm, class-map and
  policies, bound to the VIP VLAN's interface; only where the tier (or a turned-on zone)
  has a load-balancer context and the tenant declares VIPs.

Addressing conventions (documented here because every device must agree):

- Transit links are VLANs the tenant file does not list: the PE handoff (customer VRF),
  and on Gold the perimeter's inside link (PVT VRF), the DMZ context's inside link (DMZ
  VRF) and the perimeter-DMZ interconnect. Their VLAN ids are the tenant's own VLAN ids
  (sorted) plus :attr:`ContainerSettings.transit_vlan_offset`, so they are unique whenever
  tenant VLAN ids are; their subnets are consecutive /29s of
  :attr:`ContainerSettings.transit_pool`, reused by every tenant (they live inside the
  tenant's VRFs and contexts). Host numbers: handoff .1 PE, .2/.3 aggregation, .4 HSRP,
  .5 perimeter outside, .6 DMZ outside; PVT/DMZ links .1 HSRP, .2/.3 aggregation, .4
  firewall; interconnect .1 perimeter, .2 DMZ context.
- In a tenant VLAN, the VPN context takes the last host address (.254 of a /24) and the
  load balancer the one before; a clash with an address the tenant declares is an error.
- ASA sub-interfaces: the handoff VLAN on the outside trunk (towards the PE), every other
  VLAN on the inside trunk (towards the aggregation switches).

Secrets: the VPN pre-shared key is a parameter (the flow resolves it from a Prefect Secret
block). Every :class:`DeviceConfig` carries the secret values it contains in
``secret_values``; use :func:`mask` (or ``DeviceConfig.masked_lines``) before logging,
diffing or publishing lines. ``repr()`` of a DeviceConfig never shows a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from draas.clients.cisco_config import CiscoTemplateError, parse_config, render_template
from draas.errors import PermanentError
from draas.models.tenant import FirewallPath, LoadBalancerVip, TenantConfig, Vlan
from draas.models.tiers import Tier, TierCatalog
from draas.reports.render import TEXT_MASK, mask_lines

__all__ = [
    "MASK", "SYSTEM_CONTEXT", "TEMPLATES_DIR", "ContainerDevice", "ContainerRenderError",
    "ContainerSettings", "DeviceConfig", "mask", "normalize_devices", "removal_lines",
    "render_container",
]

#: Where the container templates live (one per device role, plus the ASA system context).
TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "configs" / "templates" / "container"
#: Context name of an ASA's system context (what ``changeto system`` enters).
SYSTEM_CONTEXT = "system"
#: What a secret value is replaced with in masked output (the ASA shows the same).
MASK = TEXT_MASK

#: Order in which devices are configured: along the traffic path, edge first.
ROLE_ORDER = ("pe-router", "aggregation", "perimeter-firewall", "vpn-firewall", "load-balancer")
#: Top-level blocks shared by every tenant: removal enters them and removes only children.
_SHARED_PARENT = re.compile(r"^router bgp \S+$")
#: NX-OS refuses longer VLAN names.
_MAX_VLAN_NAME = 32
_IPSEC_UDP_PORTS = (500, 4500)


class ContainerRenderError(PermanentError):
    """The container cannot be rendered from this tenant, catalog and inventory."""


class ContainerSettings(BaseModel):
    """Recovery-site facts the tenant file and the inventory do not carry.

    The defaults describe the lab's devices (configs/lab.yaml); a real site overrides them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    pe_bgp_asn: int = Field(default=65000, ge=1, description="BGP AS of the PE router")
    aggregation_bgp_asn: int = Field(default=65010, ge=1, description="BGP AS of the aggregation pair")
    pe_downlink: str = Field(default="TenGigabitEthernet0/0/0",
                             description="PE interface towards the aggregation pair (gets dot1Q sub-interfaces)")
    asa_outside_trunk: str = Field(default="TenGigabitEthernet0/9",
                                   description="ASA trunk carrying the handoff (customer VRF) VLANs")
    asa_inside_trunk: str = Field(default="TenGigabitEthernet0/8",
                                  description="ASA trunk carrying aggregation-side VLANs")
    asa_config_url: str = Field(default="disk0:/{context}.cfg",
                                description="Where an ASA context keeps its config; {context} is its name")
    transit_pool: IPv4Network = Field(default=IPv4Network("100.64.0.0/24"),
                                      description="Transit /29s inside each tenant's VRFs and contexts")
    transit_vlan_offset: int = Field(default=2000, ge=1,
                                     description="Transit VLAN id = a tenant VLAN id + this offset")
    hsrp_active_priority: int = Field(default=110, ge=1, le=255,
                                      description="HSRP priority of the first aggregation switch")
    slb_interface_acl: str | None = Field(default="ALL",
                                          description="ACL the load balancer applies on VIP interfaces")


class ContainerDevice(BaseModel):
    """One recovery-site device of the inventory (configs/lab.yaml ``cisco.devices``)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    hostname: str = ""
    platform: str
    role: str
    multi_context: bool = False


@dataclass(frozen=True, repr=False)
class DeviceConfig:
    """The lines one device (or one ASA context) needs for the tenant.

    Attributes:
        device: inventory name of the device.
        context: ASA context (``"system"`` for the system context), None elsewhere.
        role: the device's role in the inventory.
        platform: netmiko device_type.
        template: the template that produced the lines.
        lines: hierarchical config, children indented one space per level.
        owned_context: the whole context belongs to the tenant (removing the context in
            the system context removes these lines with it).
        secret_values: secret strings inside ``lines``; mask them before showing lines.
    """

    device: str
    context: str | None
    role: str
    platform: str
    template: str
    lines: list[str]
    owned_context: bool = False
    secret_values: frozenset[str] = field(default_factory=frozenset)

    @property
    def label(self) -> str:
        """``device`` or ``device/context``."""
        return f"{self.device}/{self.context}" if self.context else self.device

    @property
    def text(self) -> str:
        """The lines as config text (contains secrets: never log it)."""
        return "\n".join(self.lines) + "\n"

    @property
    def masked_lines(self) -> list[str]:
        """``lines`` with every secret value replaced by ``*****``."""
        return mask(self.lines, self.secret_values)

    def __repr__(self) -> str:
        return (f"DeviceConfig(device={self.device!r}, context={self.context!r}, role={self.role!r}, "
                f"template={self.template!r}, lines={len(self.lines)}, secrets={len(self.secret_values)})")


def mask(lines: Iterable[str], secrets: Iterable[str]) -> list[str]:
    """``lines`` with every occurrence of each secret value replaced by ``*****``."""
    return mask_lines(lines, secrets, mask=MASK)


def normalize_devices(devices: Iterable[Mapping[str, Any] | BaseModel]) -> list[ContainerDevice]:
    """Inventory entries (lab.yaml dicts, LabState devices, ContainerDevice) as ContainerDevice."""
    out = []
    for device in devices:
        data = device.model_dump() if isinstance(device, BaseModel) else dict(device)
        out.append(ContainerDevice.model_validate(data))
    return out


# --------------------------------------------------------------------------- removal

def removal_lines(config: DeviceConfig) -> list[str]:
    """The ``no`` commands that remove ``config`` from its device (offboarding).

    Blocks are removed in reverse order (BGP before the VRF it uses, a context before
    the interfaces allocated to it). A tenant-owned top-level block goes as a whole
    (``no vrf context acme``); a block shared with other tenants (``router bgp 65000``)
    is entered and only the tenant's children go (`` no address-family ipv4 vrf acme``).
    A tenant-owned ASA context returns nothing: ``no context`` in the system context
    removes its whole configuration.
    """
    if config.owned_context:
        return []
    tree = parse_config(config.lines)
    out: list[str] = []
    for top in reversed(tree.children):
        if _SHARED_PARENT.match(top.text):
            out.append(top.text)
            out.extend(f" no {child.text}" for child in reversed(top.children))
        else:
            out.append(f"no {top.text}")
    return out


# --------------------------------------------------------------------------- helpers

def _host(net: IPv4Network, n: int) -> IPv4Address:
    return net.network_address + n


def _from_end(net: IPv4Network, n: int) -> IPv4Address:
    return net.broadcast_address - n


def _asa_net(net: IPv4Network | None) -> str:
    """An ASA address operand: ``any``, ``host A`` or ``NET MASK``."""
    if net is None:
        return "any"
    if net.prefixlen == 32:
        return f"host {net.network_address}"
    return f"{net.network_address} {net.netmask}"


@dataclass(frozen=True)
class _Transit:
    kind: str  # cust | pvt | dmz | fw
    vlan: int
    name: str
    subnet: IPv4Network
    vrf: str | None  # None: layer 2 only

    def host(self, n: int) -> IPv4Address:
        return _host(self.subnet, n)


class _Builder:
    """Computes every name and address once, then feeds the templates."""

    def __init__(self, tenant: TenantConfig, catalog: TierCatalog, devices: Sequence[ContainerDevice],
                 psk: str, settings: ContainerSettings, templates_dir: Path) -> None:
        self.t = tenant
        self.tid = tenant.id
        self.catalog = catalog
        self.devices = list(devices)
        self.psk = psk
        self.s = settings
        self.templates_dir = templates_dir
        tier = catalog.get(tenant.network.tier)
        if tier is None:
            raise ContainerRenderError(f"tenant {self.tid}: unknown tier {tenant.network.tier!r}")
        self.tier: Tier = tier
        self.zones = frozenset(tenant.network.zones)
        self.vlans = sorted(tenant.network.vlans, key=lambda v: v.id)
        self.vrf_role = {v.name: v.role for v in tenant.network.vrfs}
        fw_contexts = self.tier.expected_firewall_contexts(self.zones)
        unknown = sorted(set(fw_contexts) - {"perimeter", "dmz", "vpn"})
        if unknown:
            raise ContainerRenderError(f"tier {self.tier.name}: unknown firewall context(s) {unknown}")
        self.has_perimeter = "perimeter" in fw_contexts and not self.tier.shared_perimeter_firewall
        self.has_dmz = "dmz" in fw_contexts and not self.tier.shared_perimeter_firewall
        self.has_vpn = "vpn" in fw_contexts
        self.customer_vrf = self._single_vrf("customer")
        self.transits = self._transits()
        self._check_transits()

    # -- look-ups ---------------------------------------------------------------------------
    def _single_vrf(self, role: str) -> str:
        names = [v.name for v in self.t.network.vrfs if v.role == role]
        if len(names) != 1:
            raise ContainerRenderError(f"tenant {self.tid}: expected one {role} VRF, found {len(names)}")
        return names[0]

    def _vlan_by_role(self, role: str) -> Vlan:
        found = [v for v in self.vlans if v.role == role]
        if len(found) != 1:
            raise ContainerRenderError(f"tenant {self.tid}: expected one {role} VLAN, found {len(found)}")
        return found[0]

    def _vlan_named(self, name: str) -> Vlan:
        for vlan in self.vlans:
            if vlan.name == name:
                return vlan
        raise ContainerRenderError(f"tenant {self.tid}: unknown VLAN {name!r}")

    def zone_of(self, vlan: Vlan) -> str:
        """``dmz`` for VLANs in the DMZ VRF, ``pvt`` otherwise."""
        return "dmz" if self.vrf_role.get(vlan.vrf) == "dmz" else "pvt"

    def devices_with_role(self, role: str) -> list[ContainerDevice]:
        return [d for d in self.devices if d.role == role]

    def one_device(self, role: str, what: str) -> ContainerDevice:
        found = self.devices_with_role(role)
        if len(found) != 1:
            raise ContainerRenderError(
                f"{what} needs exactly one device with role {role!r} in the inventory, found {len(found)}")
        return found[0]

    def owned(self, name: str) -> str:
        """``name`` prefixed with the tenant id unless it already is (objects on shared devices)."""
        return name if name == self.tid or name.startswith(self.tid + "-") else f"{self.tid}-{name}"

    # -- transit links ------------------------------------------------------------------------
    def _transits(self) -> dict[str, _Transit]:
        kinds: list[tuple[str, str, str | None]] = [("cust", "transit-cust", self.customer_vrf)]
        if self.has_perimeter:
            kinds.append(("pvt", "transit-pvt", self._single_vrf("pvt")))
        if self.has_dmz:
            kinds.append(("dmz", "transit-dmz", self._single_vrf("dmz")))
        if self.has_perimeter and self.has_dmz:
            kinds.append(("fw", "transit-fw", None))
        if len(kinds) > len(self.vlans):
            raise ContainerRenderError(
                f"tenant {self.tid}: {len(kinds)} transit links need as many tenant VLANs, found {len(self.vlans)}")
        subnets = list(self.s.transit_pool.subnets(new_prefix=29))
        if len(subnets) < len(kinds):
            raise ContainerRenderError(f"transit pool {self.s.transit_pool} is too small for {len(kinds)} /29s")
        out = {}
        for i, (kind, suffix, vrf) in enumerate(kinds):
            vlan_id = self.vlans[i].id + self.s.transit_vlan_offset
            out[kind] = _Transit(kind, vlan_id, f"{self.tid}-{suffix}", subnets[i], vrf)
        return out

    def _check_transits(self) -> None:
        tenant_ids = {v.id for v in self.vlans}
        used: list[IPv4Network] = [v.subnet for v in self.vlans] + list(self.t.network.ipsec.remote_subnets)
        for tr in self.transits.values():
            if tr.vlan > 4094 or tr.vlan in tenant_ids:
                raise ContainerRenderError(
                    f"tenant {self.tid}: transit VLAN id {tr.vlan} ({tr.name}) is not usable; "
                    f"change ContainerSettings.transit_vlan_offset")
            clash = next((n for n in used if n.overlaps(tr.subnet)), None)
            if clash is not None:
                raise ContainerRenderError(
                    f"tenant {self.tid}: transit subnet {tr.subnet} overlaps {clash}; "
                    f"change ContainerSettings.transit_pool")
        for name in [v.name for v in self.vlans] + [tr.name for tr in self.transits.values()]:
            if len(name) > _MAX_VLAN_NAME:
                raise ContainerRenderError(f"VLAN name {name!r} is longer than {_MAX_VLAN_NAME} characters")

    # -- addresses the devices take inside tenant VLANs -------------------------------------------
    def declared_addresses(self) -> dict[IPv4Address, str]:
        """Addresses the tenant file gives to something, and what."""
        out: dict[IPv4Address, str] = {}
        for vlan in self.vlans:
            out[vlan.gateway] = f"gateway of {vlan.name}"
            for i, svi in enumerate(vlan.hsrp_addresses):
                out[svi] = f"aggregation SVI {i + 1} of {vlan.name}"
        for vip in self.t.network.load_balancer_vips:
            out[vip.address] = f"VIP {vip.name}"
        for mt in self.t.dr_components.master_targets:
            out[mt.ip] = f"master target {mt.name}"
        for machine in self.t.machines:
            for nic in machine.nics:
                ip = self.t.recovery_ip(nic)
                if ip is not None:
                    out.setdefault(ip, f"machine {machine.name}")
        return out

    def device_address(self, vlan: Vlan, from_end: int, what: str) -> IPv4Address:
        address = _from_end(vlan.subnet, from_end)
        taken = self.declared_addresses().get(address)
        if taken is not None:
            raise ContainerRenderError(
                f"tenant {self.tid}: {what} needs {address} in {vlan.name} ({vlan.subnet}), "
                f"but it is the {taken}")
        return address

    # -- rendering -------------------------------------------------------------------------------
    def render(self, template: str, variables: Mapping[str, Any]) -> list[str]:
        text = render_template(template, variables, self.templates_dir)
        return [line.rstrip() for line in text.splitlines() if line.strip()]

    def config(self, device: ContainerDevice, context: str | None, template: str,
               variables: Mapping[str, Any], owned_context: bool = False,
               secrets: frozenset[str] = frozenset()) -> DeviceConfig:
        return DeviceConfig(device=device.name, context=context, role=device.role, platform=device.platform,
                            template=template, lines=self.render(template, variables),
                            owned_context=owned_context, secret_values=secrets)

    # -- PE ------------------------------------------------------------------------------------
    def pe(self) -> list[DeviceConfig]:
        if "pe-router" not in self.catalog.placement.vrf:
            return []
        pe = self.one_device("pe-router", "the PE handoff")
        aggs = self.aggregation_devices()
        cust = self.transits["cust"]
        vrf = next(v for v in self.t.network.vrfs if v.name == self.customer_vrf)
        if vrf.rd is None:
            raise ContainerRenderError(f"tenant {self.tid}: VRF {vrf.name} needs an rd on the PE router")
        targets = list(vrf.route_targets) or [vrf.rd]
        variables = {
            "vrfs": [{"name": vrf.name, "rd": vrf.rd, "export_targets": targets, "import_targets": targets}],
            "interfaces": [{
                "name": f"{self.s.pe_downlink}.{cust.vlan}",
                "description": f"{self.tid} handoff to aggregation",
                "vlan": cust.vlan, "vrf": vrf.name,
                "address": str(cust.host(1)), "netmask": str(cust.subnet.netmask),
            }],
            "bgp": {"asn": self.s.pe_bgp_asn, "vrfs": [{
                "vrf": vrf.name,
                "neighbors": [{"address": str(cust.host(2 + i)), "remote_as": self.s.aggregation_bgp_asn}
                              for i in range(len(aggs))],
            }]},
        }
        return [self.config(pe, None, "pe-router.j2", variables)]

    # -- aggregation ---------------------------------------------------------------------------
    def aggregation_devices(self) -> list[ContainerDevice]:
        """The switch pair carrying the VLANs (catalog ``placement.vlan``), in inventory order."""
        roles = set(self.catalog.placement.vlan)
        aggs = [d for d in self.devices if d.role in roles]
        if not 1 <= len(aggs) <= 2:
            raise ContainerRenderError(
                f"the container needs one or two devices with role {sorted(roles)}, found {len(aggs)}")
        return aggs

    def aggregation_routes(self) -> dict[str, list[dict[str, str]]]:
        """Static routes per VRF on the aggregation switches."""
        routes: dict[str, list[tuple[IPv4Network, IPv4Address]]] = {v.name: [] for v in self.t.network.vrfs}
        cust = self.transits["cust"]
        for vlan in self.vlans:
            role = self.vrf_role.get(vlan.vrf)
            if role == "pvt" and self.has_perimeter:
                routes[self.customer_vrf].append((vlan.subnet, cust.host(5)))
            elif role == "dmz" and self.has_dmz:
                routes[self.customer_vrf].append((vlan.subnet, cust.host(6)))
        for kind in ("pvt", "dmz"):
            tr = self.transits.get(kind)
            if tr is not None and tr.vrf is not None:
                routes[tr.vrf].append((IPv4Network("0.0.0.0/0"), tr.host(4)))
        if self.has_vpn:
            inside = self._vlan_by_role(self.tier.draas.vpn_inside_vlan_role)
            hop = self.device_address(inside, 1, "the VPN context's inside interface")
            for subnet in self.t.network.ipsec.remote_subnets:
                routes[inside.vrf].append((subnet, hop))
        return {vrf: [{"prefix": str(net), "next_hop": str(hop)}
                      for net, hop in sorted(items, key=lambda r: (r[0].prefixlen != 0, r[0]))]
                for vrf, items in routes.items()}

    def aggregation(self) -> list[DeviceConfig]:
        aggs = self.aggregation_devices()
        routes = self.aggregation_routes()
        order = {"customer": 0, "pvt": 1, "dmz": 2}
        vrfs = sorted(self.t.network.vrfs, key=lambda v: (order[v.role], v.name))
        vlans: list[dict[str, Any]] = [{"id": v.id, "name": v.name} for v in self.vlans]
        vlans += [{"id": tr.vlan, "name": tr.name} for tr in self.transits.values()]
        vlans.sort(key=lambda v: v["id"])
        out = []
        for i, device in enumerate(aggs):
            svis: list[dict[str, Any]] = []
            for vlan in self.vlans:
                svis.append({
                    "vlan": vlan.id, "description": vlan.name, "vrf": vlan.vrf,
                    "address": f"{vlan.hsrp_addresses[i]}/{vlan.subnet.prefixlen}",
                    "hsrp": self.hsrp(vlan.id, vlan.gateway, i),
                })
            for tr in self.transits.values():
                if tr.vrf is None:
                    continue
                # The handoff needs a virtual gateway only when a firewall context sits on it.
                gateway = None
                if tr.kind == "cust" and (self.has_perimeter or self.has_dmz):
                    gateway = tr.host(4)
                elif tr.kind in ("pvt", "dmz"):
                    gateway = tr.host(1)
                svis.append({
                    "vlan": tr.vlan, "description": tr.name, "vrf": tr.vrf,
                    "address": f"{tr.host(2 + i)}/{tr.subnet.prefixlen}",
                    "hsrp": self.hsrp(tr.vlan, gateway, i) if gateway is not None else None,
                })
            svis.sort(key=lambda s: s["vlan"])
            variables = {
                "vrfs": [{"name": v.name, "routes": routes[v.name]} for v in vrfs],
                "vlans": vlans,
                "svis": svis,
                "bgp": {
                    "asn": self.s.aggregation_bgp_asn,
                    "vrf": self.customer_vrf,
                    "networks": [str(net) for net in sorted(v.subnet for v in self.vlans)],
                    "neighbors": [{"address": str(self.transits["cust"].host(1)),
                                   "remote_as": self.s.pe_bgp_asn}],
                },
            }
            out.append(self.config(device, None, "aggregation.j2", variables))
        return out

    def hsrp(self, group: int, gateway: IPv4Address, index: int) -> dict[str, Any]:
        return {"group": group, "gateway": str(gateway),
                "priority": self.s.hsrp_active_priority if index == 0 else None}

    # -- firewalls -------------------------------------------------------------------------------
    def asa_device(self, role: str, what: str) -> ContainerDevice:
        device = self.one_device(role, what)
        if device.platform != "cisco_asa" or not device.multi_context:
            raise ContainerRenderError(
                f"{what} needs a multi-context ASA; device {device.name} is {device.platform}"
                f"{'' if device.multi_context else ' in single-context mode'}")
        return device

    def asa_interface(self, vlan: int, outside: bool) -> str:
        trunk = self.s.asa_outside_trunk if outside else self.s.asa_inside_trunk
        return f"{trunk}.{vlan}"

    def perimeter_contexts(self) -> list[dict[str, Any]]:
        """Variables of the Gold perimeter and DMZ contexts (none on other tiers)."""
        out: list[dict[str, Any]] = []
        if not (self.has_perimeter or self.has_dmz):
            return out
        cust = self.transits["cust"]
        pvt_nets = sorted(v.subnet for v in self.vlans if self.zone_of(v) == "pvt")
        dmz_nets = sorted(v.subnet for v in self.vlans if self.zone_of(v) == "dmz")
        fw = self.transits.get("fw")
        if self.has_perimeter:
            pvt = self.transits["pvt"]
            interfaces = [self.asa_if(cust, "outside", 0, 5, outside=True),
                          self.asa_if(pvt, "inside", 100, 4)]
            routes = [self.route("outside", None, cust.host(4))]
            routes += [self.route("inside", net, pvt.host(1)) for net in pvt_nets]
            if fw is not None:
                interfaces.append(self.asa_if(fw, "dmz", 50, 1))
                routes += [self.route("dmz", net, fw.host(2)) for net in dmz_nets]
            out.append({
                "zone": "perimeter", "name": self.t.context_name("perimeter"),
                "interfaces": interfaces, "routes": routes,
                "ipsec_acl": self.ipsec_acl([i["nameif"] for i in interfaces])
                if self.tier.draas.perimeter_acl_ipsec_only else None,
                "paths_acl": self.paths_acl("perimeter"),
            })
        if self.has_dmz:
            dmz = self.transits["dmz"]
            interfaces = [self.asa_if(cust, "outside", 0, 6, outside=True),
                          self.asa_if(dmz, "inside", 100, 4)]
            routes = [self.route("outside", None, cust.host(4))]
            routes += [self.route("inside", net, dmz.host(1)) for net in dmz_nets]
            if fw is not None:
                interfaces.append(self.asa_if(fw, "pvt", 50, 2))
                routes += [self.route("pvt", net, fw.host(1)) for net in pvt_nets]
            out.append({
                "zone": "dmz", "name": self.t.context_name("dmz"),
                "interfaces": interfaces, "routes": routes, "ipsec_acl": None,
                "paths_acl": self.paths_acl("dmz"),
            })
        return out

    def asa_if(self, tr: _Transit, nameif: str, level: int, host: int, outside: bool = False) -> dict[str, Any]:
        return {"name": self.asa_interface(tr.vlan, outside), "vlan": tr.vlan, "nameif": nameif,
                "security_level": level, "address": str(tr.host(host)), "netmask": str(tr.subnet.netmask)}

    @staticmethod
    def route(interface: str, net: IPv4Network | None, gateway: IPv4Address) -> dict[str, str]:
        net = net or IPv4Network("0.0.0.0/0")
        return {"interface": interface, "network": str(net.network_address), "netmask": str(net.netmask),
                "gateway": str(gateway)}

    def ipsec_acl(self, interfaces: list[str]) -> dict[str, Any]:
        """Gold DRaaS modification: IPsec passes only between the two tunnel endpoints."""
        ipsec = self.t.network.ipsec
        peer, local = IPv4Network(f"{ipsec.peer}/32"), IPv4Network(f"{ipsec.local_endpoint}/32")
        rules = []
        for src, dst in ((peer, local), (local, peer)):
            rules.append(self.rule("permit", "esp", src, dst))
            rules += [self.rule("permit", "udp", src, dst, port) for port in _IPSEC_UDP_PORTS]
        rules.append(self.rule("deny", "esp", None, None))
        rules += [self.rule("deny", "udp", None, None, port) for port in _IPSEC_UDP_PORTS]
        return {"name": f"{self.tid}-ipsec-only", "rules": rules, "interfaces": interfaces,
                "remark": f"DRaaS IPsec only between {ipsec.peer} and {ipsec.local_endpoint}"}

    @staticmethod
    def rule(action: str, protocol: str, src: IPv4Network | None, dst: IPv4Network | None,
             port: int | None = None) -> dict[str, Any]:
        return {"action": action, "protocol": protocol, "source": _asa_net(src),
                "destination": _asa_net(dst), "port": port}

    def path_end(self, value: str) -> tuple[IPv4Network | None, set[str]]:
        """A path end as a network (None = any) and the zones it touches (pvt, dmz, external)."""
        if value == "any":
            return None, {"pvt", "dmz", "external"}
        try:
            net = IPv4Network(value)
        except ValueError:
            vlan = self._vlan_named(value)
            return vlan.subnet, {self.zone_of(vlan)}
        zones = {self.zone_of(v) for v in self.vlans if v.subnet.overlaps(net)}
        if not any(net.subnet_of(v.subnet) for v in self.vlans):
            zones.add("external")
        return net, zones

    def path_rules(self, path: FirewallPath) -> list[dict[str, Any]]:
        src, _ = self.path_end(path.source)
        dst, _ = self.path_end(path.destination)
        if path.protocol in ("tcp", "udp") and path.ports:
            return [self.rule(path.action, path.protocol, src, dst, port) for port in path.ports]
        return [self.rule(path.action, path.protocol, src, dst)]

    def paths_acl(self, zone: str) -> dict[str, Any]:
        """The network paths enforced by the ``zone`` context, in declared order (ACLs are ordered)."""
        paths = []
        for path in self.t.network.firewall_paths:
            zones = self.path_end(path.source)[1] | self.path_end(path.destination)[1]
            if zone == "perimeter" and zones == {"dmz"}:
                continue
            if zone == "dmz" and "dmz" not in zones:
                continue
            paths.append({"name": path.name, "rules": self.path_rules(path)})
        return {"name": f"{self.t.context_name(zone)}-paths", "paths": paths}

    def vpn_context(self) -> dict[str, Any]:
        draas = self.tier.draas
        outside = self._vlan_by_role(draas.vpn_outside_vlan_role)
        inside = self._vlan_by_role(draas.vpn_inside_vlan_role)
        ipsec = self.t.network.ipsec
        out_ip = self.device_address(outside, 1, "the VPN context's outside interface")
        in_ip = self.device_address(inside, 1, "the VPN context's inside interface")
        return {
            "name": self.t.context_name("vpn"),
            "outside": {"name": self.asa_interface(outside.id, False), "vlan": outside.id,
                        "address": str(out_ip), "netmask": str(outside.subnet.netmask),
                        "gateway": str(outside.gateway)},
            "inside": {"name": self.asa_interface(inside.id, False), "vlan": inside.id,
                       "address": str(in_ip), "netmask": str(inside.subnet.netmask)},
            "crypto_acl": {"name": f"{self.tid}-vpn-traffic",
                           "rules": [{"source": _asa_net(inside.subnet), "destination": _asa_net(remote)}
                                     for remote in ipsec.remote_subnets]},
            "crypto_map": f"{self.tid}-map",
            "proposal": f"{self.tid}-ipsec",
            "peer": str(ipsec.peer),
            "ike_version": ipsec.ike_version,
            "psk": self.psk,
        }

    def firewalls(self) -> list[DeviceConfig]:
        """System context first, then each context's own config, per ASA device."""
        placement = self.catalog.placement
        # (device, context variables, template) in the order the contexts are built.
        planned: list[tuple[ContainerDevice, dict[str, Any], str]] = []
        perimeter = self.perimeter_contexts()
        if perimeter:
            device = self.asa_device(placement.perimeter_firewall, f"tenant {self.tid}'s perimeter context")
            planned += [(device, ctx, "perimeter-firewall.j2") for ctx in perimeter]
        if self.has_vpn:
            device = self.asa_device(placement.vpn_context, f"tenant {self.tid}'s VPN context")
            planned.append((device, self.vpn_context(), "vpn-firewall.j2"))
        out: list[DeviceConfig] = []
        for device in self.ordered({d.name: d for d, _, _ in planned}.values()):
            mine = [(ctx, tpl) for d, ctx, tpl in planned if d.name == device.name]
            out.append(self.system_context(device, [ctx for ctx, _ in mine]))
            for ctx, template in mine:
                secrets = frozenset({self.psk}) if template == "vpn-firewall.j2" else frozenset()
                out.append(self.config(device, ctx["name"], template, ctx, owned_context=True, secrets=secrets))
        return out

    def system_context(self, device: ContainerDevice, contexts: list[dict[str, Any]]) -> DeviceConfig:
        interfaces: dict[str, int] = {}
        described = []
        for ctx in contexts:
            own = ctx["interfaces"] if "interfaces" in ctx else [ctx["outside"], ctx["inside"]]
            for intf in own:
                interfaces[intf["name"]] = intf["vlan"]
            zone = ctx.get("zone", "vpn")
            what = {"perimeter": "perimeter firewall", "dmz": "DMZ firewall", "vpn": "DRaaS IPsec VPN"}[zone]
            described.append({
                "name": ctx["name"],
                "description": f"{what} of tenant {self.tid}",
                "allocate": sorted({intf["name"] for intf in own}, key=_interface_key),
                "config_url": self.s.asa_config_url.format(context=ctx["name"]),
            })
        variables = {
            "interfaces": [{"name": name, "vlan": vlan}
                           for name, vlan in sorted(interfaces.items(), key=lambda kv: _interface_key(kv[0]))],
            "contexts": described,
        }
        return self.config(device, SYSTEM_CONTEXT, "asa_system_context.j2", variables)

    # -- load balancer ---------------------------------------------------------------------------
    def vip_zone(self, vip: LoadBalancerVip) -> str:
        return self.zone_of(self._vlan_named(vip.vlan))

    def load_balancer(self) -> list[DeviceConfig]:
        vips = sorted(self.t.network.load_balancer_vips, key=lambda v: v.name)
        lb_contexts = list(self.tier.load_balancer_contexts)
        for zone in sorted(self.zones):
            if zone in self.tier.optional_zones:
                lb_contexts += self.tier.optional_zones[zone].load_balancer_contexts
        if not vips or not lb_contexts:
            return []
        for vip in vips:
            if self.vip_zone(vip) not in lb_contexts:
                raise ContainerRenderError(
                    f"tenant {self.tid}: VIP {vip.name} is in the {self.vip_zone(vip)} zone, which has no "
                    f"load-balancer context on tier {self.tier.name}")
        device = self.one_device(self.catalog.placement.load_balancer, f"tenant {self.tid}'s VIPs")
        rservers: dict[str, str] = {}
        probes: list[dict[str, Any]] = []
        farms: list[dict[str, Any]] = []
        vip_vars: list[dict[str, Any]] = []
        vip_vlans: dict[int, Vlan] = {}
        for vip in vips:
            name = self.owned(vip.name)
            members = []
            for member in vip.members:
                rname = self.owned(member)
                rservers[rname] = str(self.member_address(member))
                members.append({"name": rname, "port": vip.member_port})
            probe = f"{name}-probe"
            probes.append({"type": vip.probe.type, "name": probe, "port": vip.member_port,
                           "path": vip.probe.path, "status": vip.probe.expected_status})
            farms.append({"name": f"{name}-farm", "probe": probe, "members": members})
            vip_vars.append({"name": name, "class_map": name, "address": str(vip.address), "port": vip.port,
                             "lb_policy": f"{name}-lb", "serverfarm": f"{name}-farm", "zone": self.vip_zone(vip)})
            vlan = self._vlan_named(vip.vlan)
            vip_vlans[vlan.id] = vlan
        # One multi-match policy per load-balancer context (zone), bound to its VIPs' VLANs.
        policies = [{"name": f"{self.tid}-{zone}-slb", "vips": [v for v in vip_vars if v["zone"] == zone]}
                    for zone in sorted({v["zone"] for v in vip_vars})]
        interfaces = []
        for vlan_id in sorted(vip_vlans):
            vlan = vip_vlans[vlan_id]
            address = self.device_address(vlan, 2, "the load balancer's interface")
            interfaces.append({"vlan": vlan.id, "description": vlan.name, "address": str(address),
                               "netmask": str(vlan.subnet.netmask), "acl": self.s.slb_interface_acl,
                               "policy": f"{self.tid}-{self.zone_of(vlan)}-slb"})
        variables = {
            "probes": probes,
            "rservers": [{"name": n, "address": a} for n, a in sorted(rservers.items())],
            "serverfarms": farms,
            "vips": vip_vars,
            "policies": policies,
            "interfaces": interfaces,
        }
        return [self.config(device, None, "load-balancer.j2", variables)]

    def member_address(self, machine: str) -> IPv4Address:
        """Recovery address of a VIP member (its first NIC)."""
        try:
            nic = self.t.machine(machine).nics[0]
        except KeyError:
            raise ContainerRenderError(f"tenant {self.tid}: unknown VIP member {machine!r}") from None
        ip = self.t.recovery_ip(nic)
        if ip is None:
            raise ContainerRenderError(f"tenant {self.tid}: VIP member {machine} has no recovery address")
        return ip

    # -- all ---------------------------------------------------------------------------------------
    def ordered(self, devices: Iterable[ContainerDevice]) -> list[ContainerDevice]:
        position = {d.name: i for i, d in enumerate(self.devices)}
        return sorted(devices, key=lambda d: position[d.name])

    def build(self) -> list[DeviceConfig]:
        configs = self.pe() + self.aggregation() + self.firewalls() + self.load_balancer()
        rank = {role: i for i, role in enumerate(ROLE_ORDER)}
        position = {d.name: i for i, d in enumerate(self.devices)}
        # Stable sort: a device's own order (system context before its contexts) is kept.
        return sorted(configs, key=lambda c: (rank.get(c.role, len(rank)), position[c.device]))


def _interface_key(name: str) -> tuple[str, int]:
    base, _, sub = name.rpartition(".")
    return (base, int(sub)) if sub.isdigit() else (name, -1)


def _secret(psk: str | SecretStr) -> str:
    value = psk.get_secret_value() if isinstance(psk, SecretStr) else psk
    # The message never quotes the key.
    if not value or len(value) > 128 or any(ch.isspace() for ch in value):
        raise ContainerRenderError("the IPsec pre-shared key must be 1-128 characters without blanks")
    return value


def transit_vlans(tenant: TenantConfig, catalog: TierCatalog,
                  settings: ContainerSettings | None = None) -> dict[int, int]:
    """The transit-link VLAN ids the container will add: ``{transit VLAN id: tenant VLAN id it derives from}``.

    Raises:
        ContainerRenderError: the tenant's network cannot carry its tier's transit links.
    """
    builder = _Builder(tenant, catalog, [], "-", settings or ContainerSettings(), TEMPLATES_DIR)
    offset = builder.s.transit_vlan_offset
    return {t.vlan: t.vlan - offset for t in builder.transits.values()}


def render_problems(tenant: TenantConfig, catalog: TierCatalog, devices: Iterable[Mapping[str, Any] | BaseModel],
                    settings: ContainerSettings | None = None) -> list[str]:
    """Why the tenant's container would not render on ``devices`` (empty: it renders).

    Validation runs this so that a tenant that validates cannot fail half way through
    pre-provisioning for want of something in its own file.
    """
    try:
        render_container(tenant, catalog, devices, psk="validation-only-placeholder", settings=settings)
    except (ContainerRenderError, CiscoTemplateError) as exc:
        return [str(exc)]
    return []


def render_container(tenant: TenantConfig, catalog: TierCatalog,
                     devices: Iterable[Mapping[str, Any] | BaseModel], *, psk: str | SecretStr,
                     settings: ContainerSettings | None = None,
                     templates_dir: str | Path | None = None) -> list[DeviceConfig]:
    """Render the tenant's container for its tier, per device and ASA context.

    Args:
        tenant: a validated tenant (load it through :mod:`draas.validation`).
        catalog: the tier catalog (its ``placement`` says which device role carries what).
        devices: the recovery site's inventory (lab.yaml ``cisco.devices`` entries).
        psk: the IPsec pre-shared key of the tenant's VPN context (a secret).
        settings: site facts the inventory lacks (BGP AS numbers, trunks, transit pool).
        templates_dir: override of :data:`TEMPLATES_DIR` (tests).

    Returns:
        Configs in push order: PE, aggregation switches, then per ASA its system context
        (context creation) before each context's own config, then the load balancer.
        Reverse the list to offboard (with :func:`removal_lines`).

    Raises:
        ContainerRenderError: the inventory lacks a device, an address clashes, ...
        CiscoTemplateError: a template is missing or uses an undefined variable.
    """
    builder = _Builder(tenant, catalog, normalize_devices(devices), _secret(psk),
                       settings or ContainerSettings(), Path(templates_dir) if templates_dir else TEMPLATES_DIR)
    return builder.build()

"""Plan a tenant's failover network cutover: DNS to the recovery addresses, public IPs, remote access.

Pure: no network, no Prefect. From a validated tenant, the tier catalog and the recovery
site's device inventory, :func:`plan_cutover` decides everything the failover changes on
the network once the recovered machines are verified, so a dry run, the report and the
tasks (``tasks/cutover.py``) all see the same plan:

- **DNS** (:class:`DnsRecordChange`): one A RRset per name of every machine's
  ``dns_records``, holding the machine's recovery address (``TenantConfig.recovery_ip``:
  the production address for ``same_ip`` NICs, the re-IP rule's or the static recovery
  address otherwise). Names that several machines declare become one RRset with all their
  addresses. The tenant file has no DNS names for public IPs, so none are planned for them.
- **Firewall** (:class:`DeviceChange`, purpose ``public-ip``): for each ``network.public_ips``
  entry with a target (``vip``: a load-balancer VIP, or a machine; ``nat``: a machine), a
  network object with a static NAT of the public address to the target's recovery address,
  and access rules that permit the target's declared service ports (the VIP's port; a
  machine's TCP and HTTP check ports). They go on the context that fronts the target: on
  Gold the ``<tenant>-dmz`` context for DMZ targets and ``<tenant>-perimeter`` for the
  others (both on the ``placement.perimeter_firewall`` device), with the rules added to the
  context's global ACL (``<context>-paths``, the container's policy ACL). Tiers without a
  tenant perimeter context (Silver, Bronze, and Copper, whose perimeter is shared) publish
  through the tenant's VPN context, which already owns the tenant's IPsec endpoint address,
  with an inbound ACL on its outside interface; a target reached through the interface the
  public address arrives on gets hairpin NAT (``same-security-traffic permit intra-interface``).
  ``vpn_endpoint`` addresses need nothing: the container's VPN context serves them.
- **Remote-access VPN** (:class:`DeviceChange`, purpose ``remote-access-vpn`` and
  ``ra-return-route``): on the tenant's VPN context an AnyConnect group policy, tunnel group
  and address pool, with a split-tunnel ACL and a VPN filter that reach only the tenant's
  recovery subnets (its VLAN subnets); clients connect on the context's outside interface.
  The aggregation switches route the pool back to that interface. Users are authenticated by
  the site's AAA server group (:attr:`CutoverSettings.ra_aaa_server_group`); the plan lists
  the tenant's authorised persons (:attr:`CutoverPlan.ra_users`) for the AAA side and the
  report. No line holds a secret, so nothing needs masking; :func:`secret_free` proves it.

Lines are rendered from ``configs/templates/cutover/<template>.j2`` (jinja2,
``StrictUndefined``), one :class:`DeviceChange` per device and context, in ASA/NX-OS syntax
as ``show running-config`` prints it. Every object name starts with the tenant id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from draas.clients.cisco_config import CiscoTemplateError, mask_secrets, render_template
from draas.clients.dns import DnsRecord
from draas.container import ContainerDevice, normalize_devices
from draas.errors import PermanentError
from draas.models.tenant import HttpCheck, PublicIp, TcpCheck, TenantConfig, Vlan
from draas.models.tiers import Tier, TierCatalog

__all__ = [
    "TEMPLATES_DIR", "CutoverPlan", "CutoverPlanError", "CutoverSettings", "DeviceChange", "DnsRecordChange",
    "cutover_problems", "plan_cutover", "secret_free",
]

#: Where the cutover templates live.
TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "configs" / "templates" / "cutover"
#: ``purpose`` of the ledger records the cutover writes (``identity["purpose"]``).
PURPOSE = "cutover"


class CutoverPlanError(PermanentError):
    """The cutover cannot be planned from this tenant, catalog and inventory."""


class CutoverSettings(BaseModel):
    """Recovery-site facts of the cutover that the tenant file does not carry (defaults: the lab)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ra_pool: IPv4Network = Field(default=IPv4Network("100.64.128.0/24"),
                                 description="Remote-access client pool, inside each tenant's VRF and VPN context")
    ra_aaa_server_group: str = Field(default="DRAAS-RA-AAA", pattern=r"^\S+$",
                                     description="AAA server group that authenticates remote-access users")
    ra_protocols: tuple[str, ...] = Field(default=("ssl-client", "ikev2"), min_length=1,
                                          description="vpn-tunnel-protocol of the remote-access group policy")


class DnsRecordChange(BaseModel):
    """One A RRset the cutover sets: every recovery address of ``name`` in ``zone``."""

    model_config = ConfigDict(frozen=True)

    zone: str
    name: str
    rtype: Literal["A"] = "A"
    values: list[str] = Field(min_length=1)
    ttl: int
    machines: list[str] = Field(description="Machines whose dns_records name this RRset")

    @property
    def record(self) -> DnsRecord:
        """The RRset as the DNS adapter's desired record (normalised name and values)."""
        return DnsRecord(zone=self.zone, name=self.name, rtype=self.rtype, values=list(self.values), ttl=self.ttl)

    @property
    def label(self) -> str:
        return f"{self.record.fqdn} {self.rtype}"


class DeviceChange(BaseModel):
    """The lines one device (or ASA context) gets for one purpose of the cutover.

    ``lines`` are hierarchical (children indented one space per level) and hold no secret.
    """

    model_config = ConfigDict(frozen=True)

    device: str
    context: str | None
    role: str
    platform: str
    template: str
    purpose: Literal["public-ip", "remote-access-vpn", "ra-return-route"]
    lines: list[str]

    @property
    def label(self) -> str:
        """``device`` or ``device/context``."""
        return f"{self.device}/{self.context}" if self.context else self.device

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class CutoverPlan(BaseModel):
    """Everything a failover changes on the network, in the order it is applied.

    Apply ``firewall`` and ``vpn`` before ``dns`` (open the path, then point the names at
    it); :meth:`device_changes` gives the device part in that order.
    """

    tenant: str
    dns: list[DnsRecordChange] = Field(default_factory=list)
    firewall: list[DeviceChange] = Field(default_factory=list)
    vpn: list[DeviceChange] = Field(default_factory=list)
    ra_users: list[str] = Field(default_factory=list,
                                description="E-mail addresses of the authorised persons given remote access")

    def device_changes(self) -> list[DeviceChange]:
        return [*self.firewall, *self.vpn]


def secret_free(lines: Iterable[str]) -> bool:
    """True when no line carries a value after a secret keyword (key, password, secret...)."""
    return all(mask_secrets(line) == line for line in lines)


# --------------------------------------------------------------------------- planning

def _net(net: IPv4Network) -> dict[str, str]:
    return {"address": str(net.network_address), "netmask": str(net.netmask)}


class _Planner:
    def __init__(self, tenant: TenantConfig, catalog: TierCatalog, devices: list[ContainerDevice],
                 settings: CutoverSettings, templates_dir: Path) -> None:
        self.t = tenant
        self.tid = tenant.id
        self.where = f"tenants/{tenant.id}.yaml"
        self.catalog = catalog
        self.devices = devices
        self.s = settings
        self.templates_dir = templates_dir
        tier = catalog.get(tenant.network.tier)
        if tier is None:
            raise CutoverPlanError(f"{self.where}: network.tier: unknown tier {tenant.network.tier!r}")
        self.tier: Tier = tier
        contexts = tier.expected_firewall_contexts(frozenset(tenant.network.zones))
        self.has_perimeter = "perimeter" in contexts and not tier.shared_perimeter_firewall
        self.has_dmz = "dmz" in contexts and not tier.shared_perimeter_firewall
        self.has_vpn = "vpn" in contexts
        self.vrf_role = {v.name: v.role for v in tenant.network.vrfs}

    # -- look-ups -------------------------------------------------------------------------------
    def device(self, role: str, what: str) -> ContainerDevice:
        found = [d for d in self.devices if d.role == role]
        if len(found) != 1:
            raise CutoverPlanError(f"{what} needs exactly one device with role {role!r} in the inventory, "
                                   f"found {len(found)}")
        return found[0]

    def vlan_by_role(self, role: str) -> Vlan:
        found = [v for v in self.t.network.vlans if v.role == role]
        if len(found) != 1:
            raise CutoverPlanError(f"{self.where}: network.vlans: expected one {role} VLAN, found {len(found)}")
        return found[0]

    def zone_of(self, vlan: Vlan) -> str:
        return "dmz" if self.vrf_role.get(vlan.vrf) == "dmz" else "pvt"

    def render(self, template: str, variables: Mapping[str, Any]) -> list[str]:
        text = render_template(template, variables, self.templates_dir)
        return [line.rstrip() for line in text.splitlines() if line.strip()]

    def change(self, device: ContainerDevice, context: str | None, template: str, purpose: str,
               variables: Mapping[str, Any]) -> DeviceChange:
        return DeviceChange(device=device.name, context=context, role=device.role, platform=device.platform,
                            template=template, purpose=purpose,  # type: ignore[arg-type]
                            lines=self.render(template, variables))

    # -- DNS ------------------------------------------------------------------------------------
    def dns(self) -> list[DnsRecordChange]:
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for m_index, machine in enumerate(self.t.machines):
            for r_index, rec in enumerate(machine.dns_records):
                field = f"{self.where}: machines[{m_index}].dns_records[{r_index}]"
                if rec.nic >= len(machine.nics):
                    raise CutoverPlanError(f"{field}.nic: machine {machine.name} has no NIC {rec.nic}")
                address = self.t.recovery_ip(machine.nics[rec.nic])
                if address is None:
                    raise CutoverPlanError(f"{field}: NIC {rec.nic} of {machine.name} has no recovery address")
                zone = self.t.dns_zone(rec)
                try:
                    fqdn = DnsRecord(zone=zone, name=rec.name, rtype="A", values=[str(address)]).fqdn
                except ValueError as exc:
                    raise CutoverPlanError(f"{field}.name: {exc}") from None
                entry = merged.setdefault((zone, fqdn), {"zone": zone, "name": rec.name, "values": set(),
                                                         "ttl": rec.ttl, "machines": []})
                entry["values"].add(str(address))
                entry["ttl"] = min(entry["ttl"], rec.ttl)
                if machine.name not in entry["machines"]:
                    entry["machines"].append(machine.name)
        return [DnsRecordChange(zone=e["zone"], name=e["name"], values=sorted(e["values"], key=IPv4Address),
                                ttl=e["ttl"], machines=e["machines"])
                for _, e in sorted(merged.items())]

    # -- public IPs -----------------------------------------------------------------------------
    def machine_address(self, name: str, what: str) -> tuple[IPv4Address, Vlan]:
        try:
            machine = self.t.machine(name)
        except KeyError:
            raise CutoverPlanError(f"{what}: unknown machine or VIP {name!r}") from None
        if not machine.nics:
            raise CutoverPlanError(f"{what}: machine {name} has no NIC")
        address = self.t.recovery_ip(machine.nics[0])
        if address is None:
            raise CutoverPlanError(f"{what}: machine {name} has no recovery address")
        return address, self.t.vlan(machine.nics[0].vlan)

    def machine_ports(self, name: str, what: str) -> list[int]:
        ports: set[int] = set()
        for check in self.t.machine(name).checks:
            if isinstance(check, TcpCheck):
                ports.add(check.port)
            elif isinstance(check, HttpCheck):
                ports.add(check.port or (443 if check.scheme == "https" else 80))
        if not ports:
            raise CutoverPlanError(f"{what}: machine {name} declares no service port (a tcp or http check); "
                                   "nothing to permit to it")
        return sorted(ports)

    def target(self, pub: PublicIp, what: str) -> tuple[IPv4Address, Vlan, list[int], str]:
        """Recovery address, VLAN, permitted TCP ports and a description of a public IP's target."""
        if not pub.target:
            raise CutoverPlanError(f"{what}.target: a {pub.purpose} public IP needs a target")
        if pub.purpose == "vip":
            vip = next((v for v in self.t.network.load_balancer_vips if v.name == pub.target), None)
            if vip is not None:
                return vip.address, self.t.vlan(vip.vlan), [vip.port], f"VIP {vip.name}"
        address, vlan = self.machine_address(pub.target, f"{what}.target")
        return address, vlan, self.machine_ports(pub.target, f"{what}.target"), f"machine {pub.target}"

    def firewall(self) -> list[DeviceChange]:
        # (context, device, acl, nat entries, hairpin) per context, in first-use order.
        per_context: dict[str, dict[str, Any]] = {}
        for index, pub in enumerate(self.t.network.public_ips):
            if pub.purpose == "vpn_endpoint":
                continue
            what = f"{self.where}: network.public_ips[{index}]"
            real, vlan, ports, described = self.target(pub, what)
            ctx = self.publishing_context(vlan, what)
            entry = per_context.setdefault(ctx["name"], {**ctx, "nats": []})
            real_if = ctx["interface_of"](real)
            entry["nats"].append({
                "object": f"{self.tid}-pub-{pub.address}", "real": str(real), "public": str(pub.address),
                "real_interface": real_if, "mapped_interface": "outside",
                "remark": f"DRaaS failover: public {pub.address} to {described}",
                "rules": [{"protocol": "tcp", "port": port} for port in ports],
            })
        out = []
        for entry in per_context.values():
            hairpin = any(n["real_interface"] == n["mapped_interface"] for n in entry["nats"])
            out.append(self.change(entry["device"], entry["name"], "public-ip.j2", "public-ip",
                                   {"nats": entry["nats"], "acl": entry["acl"], "hairpin": hairpin}))
        return out

    def publishing_context(self, vlan: Vlan, what: str) -> dict[str, Any]:
        """The firewall context that publishes a target in ``vlan``, its device, ACL and interfaces."""
        zone = self.zone_of(vlan)
        if (zone == "dmz" and self.has_dmz) or (zone == "pvt" and self.has_perimeter):
            name = self.t.context_name("dmz" if zone == "dmz" else "perimeter")
            device = self.asa(self.catalog.placement.perimeter_firewall, f"{what}: the {name} context")
            return {"name": name, "device": device,
                    "acl": {"name": f"{name}-paths", "binding": "global"},
                    "interface_of": lambda _address: "inside"}
        if not self.has_vpn:
            raise CutoverPlanError(f"{what}: tier {self.tier.name} has no tenant firewall context to publish "
                                   f"a target in {vlan.name}")
        name = self.t.context_name("vpn")
        device = self.asa(self.catalog.placement.vpn_context, f"{what}: the {name} context")
        outside, inside = self.vpn_vlans()

        def interface_of(address: IPv4Address) -> str:
            return "inside" if address in inside.subnet else "outside"

        return {"name": name, "device": device,
                "acl": {"name": f"{name}-public", "binding": "in interface outside"},
                "interface_of": interface_of}

    def asa(self, role: str, what: str) -> ContainerDevice:
        device = self.device(role, what)
        if device.platform != "cisco_asa" or not device.multi_context:
            raise CutoverPlanError(f"{what} needs a multi-context ASA; device {device.name} is {device.platform}")
        return device

    # -- remote access --------------------------------------------------------------------------
    def vpn_vlans(self) -> tuple[Vlan, Vlan]:
        draas = self.tier.draas
        return self.vlan_by_role(draas.vpn_outside_vlan_role), self.vlan_by_role(draas.vpn_inside_vlan_role)

    def recovery_subnets(self) -> list[IPv4Network]:
        return sorted({v.subnet for v in self.t.network.vlans})

    def check_pool(self) -> IPv4Network:
        pool = self.s.ra_pool
        if pool.num_addresses < 4:
            raise CutoverPlanError(f"CutoverSettings.ra_pool {pool} is too small")
        used = [(v.subnet, f"VLAN {v.name}") for v in self.t.network.vlans]
        used += [(n, "network.ipsec.remote_subnets") for n in self.t.network.ipsec.remote_subnets]
        for net, what in used:
            if net.overlaps(pool):
                raise CutoverPlanError(f"{self.where}: {what} ({net}) overlaps the remote-access pool {pool}; "
                                       "change CutoverSettings.ra_pool")
        return pool

    def vpn(self) -> list[DeviceChange]:
        if not self.has_vpn:
            return []
        pool = self.check_pool()
        outside, _ = self.vpn_vlans()
        name = self.t.context_name("vpn")
        device = self.asa(self.catalog.placement.vpn_context, f"tenant {self.tid}'s remote-access VPN")
        group = f"{self.tid}-ra"
        hosts = list(pool.hosts())
        variables = {
            "pool": {"name": f"{group}-pool", "first": str(hosts[0]), "last": str(hosts[-1]), **_net(pool)},
            "subnets": [_net(n) for n in self.recovery_subnets()],
            "split_acl": f"{group}-split", "filter_acl": f"{group}-filter",
            "group": group, "protocols": list(self.s.ra_protocols),
            "aaa_server_group": self.s.ra_aaa_server_group, "interface": "outside",
        }
        out = [self.change(device, name, "remote-access-vpn.j2", "remote-access-vpn", variables)]
        # Clients arrive on the context's outside interface (the last host of its VLAN, as the
        # container addresses it): the aggregation switches route the pool back there.
        next_hop = outside.subnet.broadcast_address - 1
        roles = set(self.catalog.placement.vlan)
        for agg in [d for d in self.devices if d.role in roles]:
            out.append(self.change(agg, None, "ra-return-route.j2", "ra-return-route",
                                   {"vrf": outside.vrf, "prefix": str(pool), "next_hop": str(next_hop)}))
        return out

    def ra_users(self) -> list[str]:
        return sorted(str(p.email) for p in self.t.authorised_persons)


def plan_cutover(tenant: TenantConfig, catalog: TierCatalog,
                 devices: Iterable[Mapping[str, Any] | BaseModel], *,
                 settings: CutoverSettings | None = None,
                 templates_dir: str | Path | None = None) -> CutoverPlan:
    """The failover cutover of ``tenant``: DNS RRsets, public-IP firewall lines, remote-access VPN.

    Args:
        tenant: a validated tenant (load it through :mod:`draas.validation`).
        catalog: the tier catalog (its ``placement`` says which device role carries what).
        devices: the recovery site's inventory (``Site.devices`` or lab.yaml ``cisco.devices``).
        settings: site facts the tenant file lacks (remote-access pool, AAA server group).
        templates_dir: override of :data:`TEMPLATES_DIR` (tests).

    Raises:
        CutoverPlanError: naming the tenant file and field, or the setting, that prevents the plan.
        CiscoTemplateError: a template is missing or uses an undefined variable.
    """
    planner = _Planner(tenant, catalog, normalize_devices(devices), settings or CutoverSettings(),
                       Path(templates_dir) if templates_dir else TEMPLATES_DIR)
    plan = CutoverPlan(tenant=tenant.id, dns=planner.dns(), firewall=planner.firewall(), vpn=planner.vpn(),
                       ra_users=planner.ra_users() if planner.has_vpn else [])
    leaking = [f"{c.label}: {line}" for c in plan.device_changes() for line in c.lines if not secret_free([line])]
    if leaking:  # a template edit must never put a secret into the ledger or a log
        raise CutoverPlanError(f"cutover templates produced lines with secrets: {len(leaking)} line(s)")
    return plan


def cutover_problems(tenant: TenantConfig, catalog: TierCatalog, devices: Iterable[Mapping[str, Any] | BaseModel],
                     settings: CutoverSettings | None = None) -> list[str]:
    """Why the tenant's cutover could not be planned (empty: it can), for validation before a failover."""
    try:
        plan_cutover(tenant, catalog, devices, settings=settings)
    except (CutoverPlanError, CiscoTemplateError) as exc:
        return [str(exc)]
    return []

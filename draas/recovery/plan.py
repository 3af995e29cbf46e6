"""From a tenant's plan and a network mapping to the engine's targets (pure, no I/O).

A :class:`NetworkMapping` says where a recovery lands: the tenant's recovery port groups with
re-IP where the NIC mapping asks for it (failover), the drill's bubble port groups with the
production addresses kept (drill), or the production site's networks with the production
addresses (failback). :func:`targets` combines it with the planner's dependency graph.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Literal

from pydantic import BaseModel, Field

from draas.models.tenant import Nic, TenantConfig
from draas.models.vcenter import IpSettings
from draas.planning.waves import recovery_plan
from draas.recovery.engine import MachineTarget, NicTarget

MappingKind = Literal["failover", "drill", "failback"]


class NetworkMapping(BaseModel):
    """Which port group each of the tenant's VLANs lands on, and whether NICs are re-addressed."""

    kind: MappingKind
    port_groups: dict[str, str] = Field(description="tenant VLAN name -> port group in the target vCenter")
    re_ip: bool = Field(description="apply the NICs' recovery addresses (re_ip NICs) by guest customization")


def failover_mapping(tenant: TenantConfig) -> NetworkMapping:
    """Production recovery networks (the container's port groups), re-IP where configured."""
    return NetworkMapping(kind="failover", port_groups={v.name: v.recovery_port_group for v in tenant.network.vlans},
                          re_ip=True)


def drill_mapping(tenant: TenantConfig, port_groups: dict[str, str] | None = None) -> NetworkMapping:
    """The drill's bubble: production addresses kept, no re-IP (isolation makes that safe)."""
    return NetworkMapping(kind="drill", re_ip=False,
                          port_groups=port_groups or {v.name: v.drill_port_group for v in tenant.network.vlans})


def failback_mapping(port_groups: dict[str, str]) -> NetworkMapping:
    """The production site's networks, production addresses (re-IP back where failover re-addressed)."""
    return NetworkMapping(kind="failback", port_groups=port_groups, re_ip=True)


def nic_target(tenant: TenantConfig, nic: Nic, mapping: NetworkMapping) -> NicTarget:
    """Where one NIC goes under ``mapping``, and the address its guest must report."""
    network = mapping.port_groups.get(nic.vlan)
    if network is None:
        raise KeyError(f"the {mapping.kind} mapping has no port group for VLAN {nic.vlan}")
    vlan = tenant.vlan(nic.vlan)
    if mapping.kind == "failback":  # back to the production address
        re_ip = _settings(nic.ip, vlan.subnet, vlan.gateway) if nic.mapping == "re_ip" else None
        return NicTarget(network=network, re_ip=re_ip, address=str(nic.ip))
    if mapping.re_ip and nic.mapping == "re_ip":
        address = tenant.recovery_ip(nic)
        if address is None:
            raise KeyError(f"NIC {nic.ip} on {nic.vlan}: re_ip without a recovery address or matching rule")
        return NicTarget(network=network, re_ip=_settings(address, vlan.subnet, vlan.gateway), address=str(address))
    return NicTarget(network=network, address=str(nic.ip))


def _settings(address: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network,
              gateway: ipaddress.IPv4Address | None) -> IpSettings:
    """Static settings for ``address``: the VLAN's prefix; its gateway when the address is in its subnet."""
    if address in subnet:
        return IpSettings(ip=address, prefix_length=subnet.prefixlen, gateway=gateway)
    # A recovery address outside the production subnet (a re-IP rule): same prefix length, first host as gateway.
    network = ipaddress.IPv4Network(f"{address}/{subnet.prefixlen}", strict=False)
    return IpSettings(ip=address, prefix_length=subnet.prefixlen, gateway=next(network.hosts()))


def targets(tenant: TenantConfig, mapping: NetworkMapping, machines: Iterable[str] | None = None, *,
            vm_name: Callable[[str], str] = lambda name: name,
            optional: Iterable[str] = ()) -> list[MachineTarget]:
    """The engine's targets for ``machines`` (default: all) of ``tenant``, in wave order.

    Dependencies on machines outside ``machines`` are taken as satisfied (the planner's rule).
    ``vm_name`` maps a machine to its VM's name in the target vCenter (a drill's test copies
    carry a suffix).
    """
    plan = recovery_plan(tenant, machines)
    chosen = set(plan.machines)
    optional = set(optional)
    out: list[MachineTarget] = []
    for wave in plan.waves:
        for name in wave.machines:
            m = tenant.machine(name)
            out.append(MachineTarget(
                machine=name, vm=vm_name(name), wave=wave.index,
                depends_on=[d for d in m.depends_on if d in chosen],
                nics=[nic_target(tenant, nic, mapping) for nic in m.nics],
                checks=list(m.checks), optional=name in optional, hostname=None))
    return out

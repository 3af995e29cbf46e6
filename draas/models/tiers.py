"""The network container tier catalog (configs/tiers.yaml) as pydantic models.

A tier says what a tenant's container on the recovery site is made of: server VLANs by
role, VRFs by role, firewall / load-balancer contexts, reservations, and the DRaaS
modifications of the Cisco design guide. Adding a tier is an edit of the YAML file.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from draas.models.types import Slug

VLAN_ROLES = ("web", "app", "db", "server", "dmz", "dr_control")
VRF_ROLES = ("customer", "pvt", "dmz")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Table21Row(_Strict):
    """The tier's row of the design guide's Table 2-1, kept verbatim for traceability."""

    vlans: int = Field(ge=0, description="VLAN count in Table 2-1")
    network_services: str = Field(description="Network services column of Table 2-1")


class ZoneSpec(_Strict):
    """An optional zone (Gold's DMZ): what it adds to the container when turned on."""

    description: str = ""
    vlan_roles: list[str] = Field(default_factory=list)
    vrf_roles: list[str] = Field(default_factory=list)
    firewall_contexts: list[str] = Field(default_factory=list)
    load_balancer_contexts: list[str] = Field(default_factory=list)


class DraasModification(_Strict):
    """Design guide, "Modifications in VMDC Network Containers for DRaaS"."""

    vpn_context: bool = Field(description="Per-tenant ASA context for the site-to-site IPsec VPN")
    extra_vlan_roles: list[str] = Field(
        default_factory=list, description="VLANs added for DRaaS (Bronze: DR control servers)"
    )
    vpn_outside_vlan_role: str = Field(
        description="VLAN that is the VPN context's outside interface"
    )
    vpn_inside_vlan_role: str = Field(description="VLAN that is the VPN context's inside interface")
    control_servers_vlan_role: str = Field(
        description="VLAN hosting process server / master targets"
    )
    perimeter_acl_ipsec_only: bool = Field(
        default=False,
        description="Perimeter firewall ACL permits IPsec only between the two tunnel endpoints",
    )


class ResourcePoolSpec(_Strict):
    """Reservations of the tenant's resource pool on the recovery cluster."""

    cpu_reservation_mhz: int = Field(ge=0)
    memory_reservation_mb: int = Field(ge=0)
    expandable: bool = True


class VmProfile(_Strict):
    """Design guide VM size of the tier (used to size recovered VMs without their own size)."""

    vcpus: int = Field(ge=1)
    memory_gb: int = Field(ge=1)
    storage: str


class Tier(_Strict):
    """One container tier."""

    name: Slug
    display_name: str
    description: str = ""
    table_2_1: Table21Row
    draas_validated: bool = Field(description="False where the guide says not validated with DRaaS")
    vlan_roles: list[str] = Field(description="Server VLANs by role, in order")
    vrf_roles: list[str]
    services: list[str]
    firewall_contexts: list[str] = Field(
        default_factory=list, description="Per-tenant firewall contexts (not counting the VPN one)"
    )
    shared_perimeter_firewall: bool = False
    load_balancer_contexts: list[str] = Field(default_factory=list)
    compute_firewall: bool = Field(default=True, description="Nexus 1000V VSG (intra-tenant)")
    qos_classes: list[str]
    bandwidth_weight: int = Field(ge=0, description="Relative bandwidth guarantee (Gold 2x Silver)")
    vm_profile: VmProfile
    resource_pool: ResourcePoolSpec
    optional_zones: dict[str, ZoneSpec] = Field(default_factory=dict)
    draas: DraasModification

    @model_validator(mode="after")
    def _consistent(self) -> Tier:
        if len(self.vlan_roles) != self.table_2_1.vlans:
            raise ValueError(
                f"vlan_roles has {len(self.vlan_roles)} VLANs but Table 2-1 says {self.table_2_1.vlans}"
            )
        roles = set(self.vlan_roles) | set(self.draas.extra_vlan_roles)
        for zone in self.optional_zones.values():
            roles |= set(zone.vlan_roles)
        unknown = roles - set(VLAN_ROLES)
        if unknown:
            raise ValueError(f"unknown VLAN roles {sorted(unknown)}; known: {list(VLAN_ROLES)}")
        base = set(self.vlan_roles) | set(self.draas.extra_vlan_roles)
        for attr in ("vpn_outside_vlan_role", "vpn_inside_vlan_role", "control_servers_vlan_role"):
            if getattr(self.draas, attr) not in base:
                raise ValueError(
                    f"draas.{attr} {getattr(self.draas, attr)!r} is not a VLAN of the tier"
                )
        vrfs = set(self.vrf_roles)
        for zone in self.optional_zones.values():
            vrfs |= set(zone.vrf_roles)
        if vrfs - set(VRF_ROLES):
            raise ValueError(f"unknown VRF roles {sorted(vrfs - set(VRF_ROLES))}")
        return self

    @property
    def load_balancer(self) -> bool:
        """The tier has a load-balancer context."""
        return bool(self.load_balancer_contexts)

    def expected_vlan_roles(self, zones: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """VLAN roles a tenant of this tier has, with the given optional zones turned on."""
        roles = list(self.vlan_roles)
        for name in sorted(zones):
            if name in self.optional_zones:
                roles += self.optional_zones[name].vlan_roles
        return roles + list(self.draas.extra_vlan_roles)

    def expected_vrf_roles(self, zones: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """VRF roles a tenant of this tier has, with the given optional zones turned on."""
        roles = list(self.vrf_roles)
        for name in sorted(zones):
            if name in self.optional_zones:
                roles += self.optional_zones[name].vrf_roles
        return roles

    def expected_firewall_contexts(
        self, zones: set[str] | frozenset[str] = frozenset()
    ) -> list[str]:
        """Per-tenant firewall contexts, including the DRaaS VPN context."""
        contexts = list(self.firewall_contexts)
        for name in sorted(zones):
            if name in self.optional_zones:
                contexts += self.optional_zones[name].firewall_contexts
        if self.draas.vpn_context:
            contexts.append("vpn")
        return contexts


class DevicePlacement(_Strict):
    """Which recovery-site device role carries each part of a container."""

    vrf: list[str]
    vlan: list[str]
    perimeter_firewall: str
    vpn_context: str
    load_balancer: str


class TierCatalog(_Strict):
    """configs/tiers.yaml."""

    tiers: dict[str, Tier]
    placement: DevicePlacement

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: object) -> object:
        # The YAML keys tiers by name; copy the key into each tier so it needs no name field.
        if isinstance(data, dict) and isinstance(data.get("tiers"), dict):
            tiers = {}
            for key, value in data["tiers"].items():
                if isinstance(value, dict):
                    value = {"name": key, **value}
                tiers[key] = value
            data = {**data, "tiers": tiers}
        return data

    def get(self, name: str) -> Tier | None:
        """The tier called ``name`` (case-insensitive), or None."""
        return self.tiers.get(name.lower())


def default_tier_catalog_path() -> Path:
    """``$DRAAS_TIERS`` or configs/tiers.yaml of the project."""
    env = os.environ.get("DRAAS_TIERS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "configs" / "tiers.yaml"

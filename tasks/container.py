"""Tasks of the container flows: plan the vCenter side, record objects, verify the container.

Device pushes and vCenter creates are the adapters' tasks (tasks/network.py, tasks/vcenter.py);
what lives here is what ties them to the ledger: every object is recorded *before* it is
created, so a failure or a crash leaves a record to remove, never an unknown object. Removal
goes through the ledger's handlers (tasks/ledger.py), like every other removal.
"""

from __future__ import annotations

from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from draas import ledger
from draas.container import DeviceConfig
from draas.errors import PermanentError
from draas.models.results import StepResult
from draas.models.tenant import TenantConfig
from draas.models.tiers import TierCatalog
from draas.models.vcenter import ResourceAllocation
from draas.sessions import session
from draas.site import Site
from draas.state.store import StateStore
from tasks.common import RETRY_POLICY

#: The ledger's names of the systems container objects live in.
CISCO = ledger.CISCO
VCENTER = ledger.VCENTER_RECOVERY


class ContainerIncomplete(PermanentError):
    """Verification found objects of the container missing on a device or in vCenter."""


class VCenterObjectPlan(BaseModel):
    """One vCenter object of a tenant's container, in creation order."""

    kind: Literal["folder", "resource_pool", "dvportgroup", "vm"]
    name: str  # path for folders, pools and VMs
    vlan_id: int | None = None
    network: str | None = None
    guest_os: Literal["windows", "linux"] | None = None
    resource_pool: str | None = None
    purpose: str = "container"
    allocation: ResourceAllocation | None = None




def plan_vcenter_objects(tenant: TenantConfig, catalog: TierCatalog) -> list[VCenterObjectPlan]:
    """The recovery-site compute side of the container: folder, pool, port groups, appliances.

    Master targets run at the recovery site, in the tenant's VLAN, one per OS family the tenant
    declares (design guide: a master target serves machines of its own OS family). Process
    servers run at the tenant's site and are not deployed here.
    """
    tier = catalog.tiers[tenant.network.tier]
    folder = tenant.placement.folder or tenant.id
    pool = tenant.placement.resource_pool or tenant.id
    rp = tier.resource_pool
    plan = [
        VCenterObjectPlan(kind="folder", name=folder),
        VCenterObjectPlan(kind="resource_pool", name=pool, allocation=ResourceAllocation(
            cpu_reservation_mhz=rp.cpu_reservation_mhz, memory_reservation_mb=rp.memory_reservation_mb,
            cpu_expandable=rp.expandable, memory_expandable=rp.expandable)),
    ]
    port_group = {vlan.name: vlan.port_group or vlan.name for vlan in tenant.network.vlans}
    for vlan in tenant.network.vlans:
        plan.append(VCenterObjectPlan(kind="dvportgroup", name=port_group[vlan.name], vlan_id=vlan.id))
    for mt in tenant.dr_components.master_targets:
        plan.append(VCenterObjectPlan(kind="vm", name=f"{folder}/{mt.name}", network=port_group[mt.vlan],
                                      guest_os=mt.os_family.value, resource_pool=pool,
                                      purpose="master-target"))
    return plan


def record_device_config(store: StateStore, tenant_id: str, run_id: str, cfg: DeviceConfig) -> int:
    """Record a device config block before it is pushed (secrets masked); returns the record id."""
    row = store.record_object(
        tenant_id=tenant_id, run_id=run_id, system=CISCO, site="recovery", kind=f"config:{cfg.template}",
        name=cfg.label,
        device=cfg.device, context=cfg.context, lines=cfg.masked_lines,
        identity={"owned_context": cfg.owned_context, "role": cfg.role, "platform": cfg.platform})
    assert row.id is not None
    return row.id


def record_vcenter_object(store: StateStore, tenant_id: str, run_id: str, obj: VCenterObjectPlan,
                          dry_run: bool = False) -> str:
    """Record a vCenter object before it is created (not in a dry run).

    Returns:
        The run that owns the object: the run that first recorded it, else this run. Objects
        are marked with it, so a re-run does not re-mark what an earlier run created.
    """
    if dry_run:
        row = store.find_object(tenant_id=tenant_id, system=VCENTER, kind=obj.kind, name=obj.name)
    else:
        row = store.record_object(tenant_id=tenant_id, run_id=run_id, system=VCENTER, site="recovery", kind=obj.kind,
                                  name=obj.name, object_type=obj.kind, identity={"purpose": obj.purpose})
    return (row.run_id if row is not None else None) or run_id


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def verify_container(configs: list[DeviceConfig], vcenter_objects: list[VCenterObjectPlan],
                     site: Site | None = None) -> StepResult:
    """Read back every device config and vCenter object and prove the container is complete.

    Raises:
        ContainerIncomplete: listing every device line or vCenter object that is missing.
    """
    result = StepResult(step="verify_container", target=f"{len(configs)} configs, {len(vcenter_objects)} objects")
    site = site or Site.for_config_dir(None)
    missing: list[str] = []
    for cfg in configs:
        with session(site.device_block(cfg.device)) as client:
            check = client.apply(cfg.text, context=cfg.context, dry_run=True)
        missing += [f"{cfg.label}: {line}" for line in check.diff if line.startswith("+")]
    with session(site.vcenter_block("recovery")) as vc:
        for obj in vcenter_objects:
            if vc.find(obj.kind, obj.name) is None:
                missing.append(f"vCenter {obj.kind} {obj.name}")
    if missing:
        raise ContainerIncomplete(f"{len(missing)} container object(s) missing:\n" + "\n".join(missing[:50]))
    return result.done(changed=False, detail={"device_configs": len(configs), "vcenter_objects": len(vcenter_objects)})

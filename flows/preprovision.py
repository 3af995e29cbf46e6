"""The ``preprovision-container`` flow: build a tenant's network container at the recovery site.

Runbook, top to bottom:

1. validate the tenant's config (and its overlaps with every other tenant);
2. render the container for the tenant's tier from the tier catalog (PE router, aggregation
   pair, perimeter and VPN firewall contexts, load balancer);
3. push each device's config: read the running config, diff, push only missing lines, save;
4. build the vCenter side: tenant folder, resource pool with the tier's reservations, one
   distributed port group per VLAN, the master-target appliances in the tenant's VLAN;
5. verify: read every device config and vCenter object back and prove the container complete.

Every object is recorded in the ledger before it is created. A failure part way removes what
this run recorded (newest first, through the ledger's handlers) and leaves the flow Failed
with the cause; a crash leaves it to the sweeper (crash policy *undo*). At most one
state-changing run per tenant runs at a time. A second run changes nothing. ``dry_run=True`` shows every device diff and the vCenter objects that
would be created, and changes nothing (not even the state store).
"""

from __future__ import annotations

from prefect import flow
from prefect.blocks.system import Secret
from pydantic import BaseModel

from draas.clients.servicedesk import CHANGE_REQUEST
from draas.container import DeviceConfig, render_container
from draas.errors import PermanentError
from draas.models.results import StepResult
from draas.models.vcenter import Marks
from draas.reports.render import code_block
from draas.reports.run_summary import Section
from draas.site import Site
from flows.runbook import CrashPolicy, RunContext, error_text
from tasks.common import task_logger
from tasks.container import (
    VCenterObjectPlan,
    plan_vcenter_objects,
    record_device_config,
    record_vcenter_object,
    verify_container,
)
from tasks.network import push_device_config
from tasks.servicedesk import add_work_note, close_change_record
from tasks.tenant import validate_tenant_config
from tasks.vcenter import create_dvportgroup, create_folder, create_resource_pool, create_vm

FLOW_NAME = "preprovision-container"


class PreprovisionResult(BaseModel):
    tenant: str
    run_id: str
    dry_run: bool
    changed: bool
    steps: list[StepResult]


class TenantSecretMissing(PermanentError):
    """A secret the container needs (the IPsec PSK) does not exist: onboard the tenant first."""


def load_psk(block_name: str) -> str:
    try:
        return str(Secret.load(block_name).get())  # type: ignore[union-attr]
    except ValueError:
        raise TenantSecretMissing(f"Secret block {block_name!r} (network.ipsec.psk_secret) does not exist; "
                                  "run onboard-tenant first") from None


def create_vcenter_object(site: Site, obj: VCenterObjectPlan, marks: Marks, dry_run: bool) -> StepResult:
    """Dispatch one planned vCenter object to its task."""
    vc = site.vcenter_block("recovery")
    recovery = site.vcenter.recovery
    if obj.kind == "folder":
        return create_folder(vc, obj.name, marks=marks, dry_run=dry_run)
    if obj.kind == "resource_pool":
        assert obj.allocation is not None
        return create_resource_pool(vc, obj.name, obj.allocation, cluster=recovery.cluster, marks=marks,
                                    dry_run=dry_run)
    if obj.kind == "dvportgroup":
        assert obj.vlan_id is not None
        return create_dvportgroup(vc, obj.name, obj.vlan_id, dvswitch=recovery.dvswitch, marks=marks,
                                  dry_run=dry_run)
    assert obj.network and obj.guest_os
    folder, _, name = obj.name.rpartition("/")
    return create_vm(vc, name, folder=folder, network=obj.network, guest_os=obj.guest_os,
                     resource_pool=obj.resource_pool, datastore=recovery.datastore, power_on=True,
                     marks=marks, dry_run=dry_run)


@flow(name=FLOW_NAME)
def preprovision_container(tenant: str, dry_run: bool = False, requested_by: str = "operator",
                           channel: str = "ui", config_dir: str | None = None,
                           wait_for_tenant_s: float = 0.0) -> PreprovisionResult:
    """Build ``tenant``'s network container (devices and vCenter) at the recovery site.

    Args:
        tenant: the tenant id (``<config_dir>/tenants/<tenant>.yaml``).
        dry_run: show the per-device diffs and the vCenter objects; change nothing.
        requested_by: who asked (audit log).
        channel: how they asked: ui, cli, webhook, schedule, api, service-desk.
        config_dir: directory with tenants/, tiers.yaml and optionally site.yaml.
        wait_for_tenant_s: how long to wait when another state-changing run holds the tenant
            before refusing (0: refuse at once).

    Raises:
        ConfigInvalid: the config does not validate; nothing was changed (audited as refused).
        TenantBusy: another state-changing run holds the tenant (audited as refused).
        TenantSecretMissing: the tenant's IPsec PSK block is missing (onboard first).
        Any adapter error: what this run created has been removed again.
    """
    site = Site.for_config_dir(config_dir)
    run = RunContext(FLOW_NAME, action="preprovision_container", tenant=tenant, requested_by=requested_by,
                     channel=channel, policy=CrashPolicy.UNDO, dry_run=dry_run, exclusive=True,
                     wait_s=wait_for_tenant_s, title=f"Container for {tenant}", artifact_key="preprovision",
                     parameters={"tenant": tenant, "dry_run": dry_run, "config_dir": config_dir}, site=site)
    with run.admission():
        valid = validate_tenant_config(tenant, config_dir)
        t, catalog = valid.tenant, valid.catalog
        configs: list[DeviceConfig] = render_container(t, catalog, site.devices,
                                                       psk=load_psk(t.network.ipsec.psk_secret))
        objects = plan_vcenter_objects(t, catalog)
    if not dry_run:
        run.on_failure(lambda exc: _note_on_change(site, tenant, f"preprovision-container run {run.run_id} failed "
                                                                 f"and removed what it created: {error_text(exc)}",
                                                   close=False))
    with run.started(total_steps=2 + len(configs) + len(objects)):
        run.step(valid.step)
        for cfg in configs:
            if not dry_run:
                record_device_config(run.store, tenant, run.run_id, cfg)
            run.step(push_device_config(site.device_block(cfg.device), config=cfg.text, context=cfg.context,
                                        dry_run=dry_run))
        for obj in objects:
            owner = record_vcenter_object(run.store, tenant, run.run_id, obj, dry_run)
            run.step(create_vcenter_object(site, obj, Marks(tenant=tenant, purpose=obj.purpose, run_id=owner),
                                           dry_run))
        if not dry_run:
            run.step(verify_container(configs, objects, site))
        if run.changed and not dry_run:
            run.store.record_change(tenant_id=tenant, kind="container",
                                    subject=f"network container ({t.network.tier})",
                                    description=f"preprovision-container run {run.run_id} changed the container")
            _note_on_change(site, tenant, f"Network container ({t.network.tier}) provisioned and verified by "
                                          f"preprovision-container run {run.run_id}: {len(configs)} device configs, "
                                          f"{len(objects)} vCenter objects.", close=True)
        run.finish(f"Container for {tenant}: {'dry run' if dry_run else 'complete'}",
                   sections=[_inventory(configs, objects), *(_full_diff(run.steps) if dry_run else [])])
    return PreprovisionResult(tenant=tenant, run_id=run.run_id, dry_run=dry_run, changed=run.changed,
                              steps=run.steps)


def _note_on_change(site: Site, tenant: str, note: str, close: bool) -> None:
    """Tell the onboarding change record what happened (and close it once the container is built).

    The container is what counts: a service desk that cannot be reached is logged, not fatal.
    """
    desk = site.servicedesk_block()
    try:
        add_work_note(desk, f"onboard-{tenant}", note, table=CHANGE_REQUEST)
        if close:
            close_change_record(desk, f"onboard-{tenant}", close_notes=note)
    except Exception as exc:  # noqa: BLE001 - see docstring
        task_logger().warning("could not update the onboarding change record of %s: %s", tenant, error_text(exc))


def _full_diff(steps: list[StepResult]) -> list[Section]:
    """Every line a dry run would change, per device/context and vCenter object (secrets masked)."""
    return [Section(heading=f"Full diff: {step.target}", body=code_block(step.diff, "diff"))
            for step in steps if step.diff]


def _inventory(configs: list[DeviceConfig], objects: list[VCenterObjectPlan]) -> Section:
    rows = [[c.role, c.label, str(len(c.lines))] for c in configs]
    rows += [["vCenter", f"{o.kind} {o.name}", ""] for o in objects]
    return Section(heading="Container objects", headers=["System", "Object", "Lines"], rows=rows)

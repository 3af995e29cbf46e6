"""Tasks of a drill's bubble: build it (recorded in the ledger first), read back what proves it isolated.

- :func:`build_bubble` records the switch and each port group (system ``vcenter-recovery``,
  ``identity["purpose"] = "drill"``) *before* it creates them with the vCenter tasks, then the
  test-access lines (:func:`apply_test_access`, system ``cisco``). The ledger removes newest
  first: the access lines, the port groups, then the switch.
- :func:`read_switch`, :func:`read_routing_configs` and :func:`read_vm_networks` only read: the
  switch's hosts, physical NICs and port-group VLANs; the running configs of the aggregation
  switches and PE routers; the networks the test VMs' NICs are on. A device that cannot be read
  is reported as ``None``, which :func:`draas.bubble.prove_isolation` counts as a failed check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.vcenter import VCenterCredentials
from draas import ledger
from draas.bubble import PURPOSE, BubblePlan, TestAccess
from draas.clients.cisco_config import missing, parse_config
from draas.models.results import StepResult
from draas.models.vcenter import Marks
from draas.sessions import session
from draas.site import Site
from draas.state.store import StateStore
from tasks.common import RETRY_POLICY
from tasks.common import task_logger as _log
from tasks.vcenter import create_dvportgroup, create_isolated_switch


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def read_switch(credentials: VCenterCredentials, name: str) -> StepResult[dict[str, Any]]:
    """The switch's host members, their physical NICs on it and its port groups' VLANs (None: no switch)."""
    result: StepResult[dict[str, Any]] = StepResult(step="read_switch", target=name)
    with session(credentials) as client:
        state = client.switch_state(name)
    return result.done(changed=False, payload=state, detail=state or {"found": False})


@task(cache_policy=NO_CACHE)
def read_routing_configs(devices: list[str], site: Site | None = None) -> StepResult[dict[str, str | None]]:
    """Running config of each device (no context); a device that cannot be read maps to None (fail closed)."""
    result: StepResult[dict[str, str | None]] = StepResult(step="read_routing_configs", target=", ".join(devices))
    site = site or Site.for_config_dir(None)
    out: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    for name in devices:
        try:
            with session(site.device_block(name)) as client:
                out[name] = client.running_config(None)
        except Exception as exc:  # noqa: BLE001 - an unreadable device fails the isolation proof, not the read
            out[name] = None
            errors[name] = f"{type(exc).__name__}: {exc}"
    return result.done(changed=False, payload=out, detail={"read": [d for d, t in out.items() if t is not None],
                                                           "unreadable": errors})


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def read_vm_networks(credentials: VCenterCredentials, folder: str,
                     names: list[str]) -> StepResult[dict[str, list[str | None]]]:
    """The network of every NIC of the VMs ``names`` in ``folder`` (from their NIC backings)."""
    result: StepResult[dict[str, list[str | None]]] = StepResult(step="read_vm_networks", target=folder)
    wanted = set(names)
    with session(credentials) as client:
        found = {vm.name: [n.network for n in vm.nics] for vm in client.list_vms(folder) if vm.name in wanted}
    return result.done(changed=False, payload=found, detail={"vms": len(found)})


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def apply_test_access(tenant_id: str, run_id: str, access: TestAccess, site: Site | None = None,
                      database_url: str | None = None) -> StepResult:
    """Push the test-access lines the VPN context lacks, recorded (only those) before the push."""
    result: StepResult[None] = StepResult(step="apply_test_access", target=f"{access.acl} on {access.label}")
    site = site or Site.for_config_dir(None)
    store = StateStore(database_url)
    kind = "drill:test-access"
    with session(site.device_block(access.device)) as client:
        row = store.find_object(tenant_id=tenant_id, system=ledger.CISCO, kind=kind, name=access.label,
                                device=access.device, context=access.context)
        if row is None:
            lacking = missing(parse_config(access.lines), client.running_tree(access.context))
            if lacking.children:
                row = store.record_object(
                    tenant_id=tenant_id, run_id=run_id, system=ledger.CISCO, site="recovery", kind=kind,
                    name=access.label, device=access.device, context=access.context, lines=lacking.lines(" "),
                    identity={"owned_context": False, "role": access.role, "platform": access.platform,
                              "purpose": PURPOSE, "change": "test-access"})
        outcome = client.apply(access.text, context=access.context)
    _log().info("test access %s on %s: %s", access.acl, access.label,
                f"{len(outcome.commands)} command(s)" if outcome.commands else "nothing missing")
    return result.done(changed=outcome.changed, diff=outcome.diff,
                       detail={"record": row.id if row is not None else None, "lines": len(access.lines)})


def build_bubble(tenant_id: str, run_id: str, plan: BubblePlan, site: Site, *, cluster: str | None = None,
                 database_url: str | None = None,
                 step: Callable[[StepResult], StepResult] | None = None) -> list[StepResult]:
    """Record, then create, the bubble switch, its port groups and the test-access lines.

    Every object is in the ledger before the task that creates it runs, so a failure or a
    crash at any point leaves nothing the drill's teardown (or the sweeper) does not know of.
    """
    store = StateStore(database_url)
    vc = site.vcenter_block("recovery")
    marks = Marks(tenant=tenant_id, purpose="bubble", run_id=run_id)
    results: list[StepResult] = []

    def done(res: StepResult) -> None:
        results.append(step(res) if step else res)

    def record(kind: str, name: str, **identity: Any) -> None:
        store.record_object(tenant_id=tenant_id, run_id=run_id, system=ledger.VCENTER_RECOVERY, site="recovery",
                            kind=kind, name=name, object_type=kind,
                            identity={"purpose": PURPOSE, **({"cluster": cluster} if cluster else {}), **identity})

    first, *rest = plan.port_groups
    record("dvswitch", plan.switch)
    record("dvportgroup", first.port_group, vlan_id=first.vlan_id, switch=plan.switch)
    done(create_isolated_switch(vc, plan.switch, portgroup=first.port_group, vlan_id=first.vlan_id,
                                cluster=cluster, marks=marks))
    for pg in rest:
        record("dvportgroup", pg.port_group, vlan_id=pg.vlan_id, switch=plan.switch)
        done(create_dvportgroup(vc, pg.port_group, pg.vlan_id, plan.switch, marks=marks))
    if plan.access is not None:
        done(apply_test_access(tenant_id, run_id, plan.access, site, database_url))
    return results

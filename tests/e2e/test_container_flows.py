"""onboard → preprovision → re-run → offboard for every sample tenant, against the lab.

Every assertion reads the systems themselves (the Cisco emulator's running and startup
configs through its control API, the recovery vCenter over SOAP), never the flow's claims.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from draas.clients.cisco_config import ConfigNode, parse_config
from draas.clients.servicedesk import CHANGE_REQUEST
from draas.container import render_container
from draas.site import Site
from draas.state.store import StateStore
from draas.validation import load_catalog, load_tenant
from e2e.prefect_api import api_logs_of, artifacts_of

Snapshot = dict[str, object]


def _paths(node: ConfigNode, prefix: str = "") -> set[str]:
    """Each config line with its parents, e.g. ``router bgp 65000 > vrf acme``."""
    out: set[str] = set()
    for child in node.children:
        path = f"{prefix} > {child.text}" if prefix else child.text
        out.add(path)
        out |= _paths(child, path)
    return out


def _contexts(control: httpx.Client, device: str) -> list[str]:
    system = control.get(f"/devices/{device}/running", params={"context": "system"}).text
    return ["system"] + [top.text.split()[1] for top in parse_config(system).children if top.text.startswith("context ")]


def device_snapshot(lab) -> dict[tuple[str, str | None, str], str]:
    """Running and startup config of every device and ASA context."""
    snap: dict[tuple[str, str | None, str], str] = {}
    with httpx.Client(base_url=lab.cisco.control_url, timeout=10) as control:
        for name, dev in lab.cisco.devices.items():
            contexts: list[str | None] = list(_contexts(control, name)) if dev.multi_context else [None]
            for ctx in contexts:
                params = {"context": ctx} if ctx else {}
                for kind in ("running", "startup"):
                    snap[(name, ctx, kind)] = control.get(f"/devices/{name}/{kind}", params=params).text
    return snap


def vcenter_snapshot(lab) -> set[tuple[str, str]]:
    """(type, name) of every folder, pool, network and VM of the recovery vCenter."""
    vc = lab.vcenter["recovery"]
    si = SmartConnect(host=vc.host, port=vc.port, user=vc.username, pwd=vc.password, protocol="http")
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(
            content.rootFolder, [vim.Folder, vim.ResourcePool, vim.Network, vim.VirtualMachine], True)
        try:
            return {(type(o).__name__.split(".")[-1], o.name) for o in view.view}
        finally:
            view.Destroy()
    finally:
        Disconnect(si)


def snapshot(lab) -> Snapshot:
    return {"devices": device_snapshot(lab), "vcenter": vcenter_snapshot(lab)}


def rendered(tenant_id: str):
    from prefect.blocks.system import Secret

    tenant = load_tenant(tenant_id)
    psk = Secret.load(tenant.network.ipsec.psk_secret).get()
    return tenant, render_container(tenant, load_catalog(), Site.load().devices, psk=psk)


def new_lines(before: Snapshot, after: Snapshot, device: str, context: str | None) -> set[str]:
    key_a, key_b = (device, context, "running"), (device, context, "running")
    after_paths = _paths(parse_config(after["devices"].get(key_a, "")))  # type: ignore[union-attr]
    before_paths = _paths(parse_config(before["devices"].get(key_b, "")))  # type: ignore[union-attr]
    return after_paths - before_paths


def _norm(paths: set[str]) -> set[str]:
    return {" ".join(p.split()) for p in paths}


EXPECTED_CONTEXTS = {
    "acme": {("fw-perimeter", "acme-perimeter"), ("fw-perimeter", "acme-dmz"), ("fw-vpn", "acme-vpn")},
    "globex": {("fw-vpn", "globex-vpn")},
    "initech": {("fw-vpn", "initech-vpn")},
}


@pytest.mark.parametrize("tenant_id", ["acme", "globex", "initech"])
def test_container_lifecycle(flows_env: Path, lab, tenant_id: str) -> None:
    from flows.offboard import offboard_tenant
    from flows.onboard import onboard_tenant
    from flows.preprovision import preprovision_container

    before = snapshot(lab)
    onboard_tenant(tenant_id, output_dir=str(flows_env / "out"))
    store = StateStore()

    dry = preprovision_container(tenant_id, dry_run=True)
    assert dry.dry_run and dry.changed, "a dry run of a new container shows what it would create"
    assert any(line.startswith("+") for s in dry.steps for line in s.diff)
    assert snapshot(lab) == before, "a dry run changed a device or vCenter"
    summary = next(a for a in artifacts_of(dry.run_id) if a.key == f"preprovision-{tenant_id}")
    for step in dry.steps:  # the summary shows every line of every device's diff
        assert all(line in str(summary.data) for line in step.diff), step.target
    assert store.objects(tenant_id) == []

    first = preprovision_container(tenant_id)
    assert first.changed
    after = snapshot(lab)
    tenant, configs = rendered(tenant_id)

    # Devices: every rendered line is there, and nothing else was added.
    contexts_before = {(d, c) for (d, c, _k) in before["devices"]}  # type: ignore[union-attr]
    contexts_after = {(d, c) for (d, c, _k) in after["devices"]}  # type: ignore[union-attr]
    assert contexts_after - contexts_before == EXPECTED_CONTEXTS[tenant_id]
    touched = {(c.device, c.context) for c in configs}
    for cfg in configs:
        wanted = _norm(_paths(parse_config(cfg.masked_lines)))
        running = after["devices"][(cfg.device, cfg.context, "running")]  # type: ignore[index]
        have = _norm(_paths(parse_config(running)))
        assert wanted <= have, f"{cfg.label}: missing {sorted(wanted - have)[:5]}"
        startup = after["devices"][(cfg.device, cfg.context, "startup")]  # type: ignore[index]
        assert wanted <= _norm(_paths(parse_config(startup))), f"{cfg.label}: not saved"
    for device, context in contexts_after:
        added = _norm(new_lines(before, after, device, context))
        # A new ASA context starts with the device's own default: its hostname.
        allowed: set[str] = {f"hostname {context}"} if (device, context) not in contexts_before else set()
        for cfg in configs:
            if (cfg.device, cfg.context) == (device, context):
                allowed |= _norm(_paths(parse_config(cfg.masked_lines)))
        assert added <= allowed, f"{device}/{context}: unexpected lines {sorted(added - allowed)[:5]}"
        if (device, context) not in touched:
            assert not added

    # vCenter: exactly the tenant's folder, pool, port groups and master targets are new.
    new_objects = after["vcenter"] - before["vcenter"]  # type: ignore[operator]
    expected = {("Folder", tenant.id), ("ResourcePool", tenant.id)}
    expected |= {("DistributedVirtualPortgroup", v.port_group or v.name) for v in tenant.network.vlans}
    expected |= {("VirtualMachine", mt.name) for mt in tenant.dr_components.master_targets}
    assert new_objects == expected

    # Tier-specific content, read from the devices.
    slb_added = new_lines(before, after, "slb-1", None)
    agg_added = " ".join(new_lines(before, after, "agg-1", None))
    if tenant_id == "acme":
        perimeter = " ".join(after["devices"][("fw-perimeter", "acme-perimeter", "running")].split())  # type: ignore[index]
        peer, endpoint = str(tenant.network.ipsec.peer), str(tenant.network.ipsec.local_endpoint)
        assert f"permit esp host {peer} host {endpoint}" in perimeter
        assert slb_added, "Gold has a load balancer"
    elif tenant_id == "globex":
        assert slb_added, "Silver has a load balancer"
    else:
        assert not slb_added, "Bronze has no load balancer"
        dr_vlan = next(v for v in tenant.network.vlans if v.role == "dr_control")
        assert f"vlan {dr_vlan.id}" in agg_added
        vpn = " ".join(after["devices"][("fw-vpn", "initech-vpn", "running")].split())  # type: ignore[index]
        assert str(dr_vlan.gateway).rsplit(".", 1)[0] in vpn, "the DR control VLAN is the VPN context's inside"
    recorded = store.objects(tenant_id)
    assert {o.system for o in recorded} == {"cisco", "vcenter-recovery"}

    # The onboarding change record tells what was built, and is closed.
    with Site.load().servicedesk_block().get_client() as desk:
        change = desk.find_by_correlation_id(CHANGE_REQUEST, f"onboard-{tenant_id}")
        assert change is not None and change.is_closed
        assert any(first.run_id in n.value for n in desk.work_notes(CHANGE_REQUEST, change.sys_id))

    second = preprovision_container(tenant_id)
    assert not second.changed, [s.target for s in second.steps if s.changed]
    assert snapshot(lab) == after

    # The IPsec PSK is in the pushed config, but nowhere the product records or shows things.
    from prefect.blocks.system import Secret

    psk = Secret.load(tenant.network.ipsec.psk_secret).get()
    runs = [dry.run_id, first.run_id, second.run_id]
    shown = [json.dumps([o.model_dump(mode="json") for o in recorded]),
             *(json.dumps(s.model_dump(mode="json")) for r in runs for s in store.steps(r)),
             *(str(a.data) for r in runs for a in artifacts_of(r)), *(m for r in runs for m in api_logs_of(r))]
    assert any("crypto map" in text for text in shown), "the check reads the pushed VPN config"
    assert not [text[:80] for text in shown if psk in text]

    off = offboard_tenant(tenant_id)
    assert off.removed == len(recorded)
    assert snapshot(lab) == before, "offboarding left something behind"
    assert store.objects(tenant_id) == []
    assert store.get_tenant(tenant_id).status == "offboarded"  # type: ignore[union-attr]


def test_fault_mid_push_leaves_nothing_behind(flows_env: Path, lab) -> None:
    from flows.onboard import onboard_tenant
    from flows.preprovision import preprovision_container

    onboard_tenant("globex", output_dir=str(flows_env / "out"))
    before = snapshot(lab)
    control = httpx.Client(base_url=lab.cisco.control_url, timeout=10)
    # agg-2 is pushed after the PE router and agg-1: they have to be rolled back too.
    control.post("/faults", json={"device": "agg-2", "after_lines": 4, "message": "% Invalid input detected at '^' marker.",
                                  "times": 1}).raise_for_status()
    try:
        with pytest.raises(Exception, match="agg-2"):
            preprovision_container("globex")
    finally:
        control.delete("/faults").raise_for_status()
        control.close()
    assert snapshot(lab) == before, "a failed run left tenant lines or vCenter objects behind"
    store = StateStore()
    assert store.objects("globex") == []
    run = store.runs(tenant_id="globex", kind="preprovision_container")[-1]
    assert run.state == "Failed" and "agg-2" in (run.error or "")
    with Site.load().servicedesk_block().get_client() as desk:
        change = desk.find_by_correlation_id(CHANGE_REQUEST, "onboard-globex")
        assert change is not None
        notes = [n.value for n in desk.work_notes(CHANGE_REQUEST, change.sys_id)]
    assert any(run.id in n and "failed" in n for n in notes)

"""Ledger handlers of both vCenters against the lab's vcsim: create through the product, record,
remove through the handler, prove with plain pyVmomi that it is gone, remove again (no change)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

import draas.ledger.vcenter  # noqa: F401 - registers the handlers (handler_for imports every module)
import tasks.vcenter as vc_tasks
from draas.ledger import VCENTER_PROTECTED, VCENTER_RECOVERY, handler_for
from draas.models.vcenter import Marks, ResourceAllocation
from draas.site import Site
from draas.state.store import StateStore
from draas.state.tables import ProvisionedObject

pytestmark = pytest.mark.usefixtures("lab")

_TYPES = {"folder": vim.Folder, "resource_pool": vim.ResourcePool, "vm": vim.VirtualMachine,
          "dvportgroup": vim.dvs.DistributedVirtualPortgroup}


def _uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture()
def pyvmomi(site: Site) -> Iterator[Any]:
    """A way to look into a vCenter with pyVmomi alone (not through the product's client)."""
    opened: list[Any] = []

    def names(which: str, kind: str) -> list[str]:
        block = site.vcenter_block(which)  # type: ignore[arg-type]
        si = SmartConnect(host=block.host, port=block.port, user=block.username,
                          pwd=block.password.get_secret_value(), protocol=block.protocol)
        opened.append(si)
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [_TYPES[kind]], True)
        try:
            pc = vmodl.query.PropertyCollector
            spec = pc.FilterSpec(
                objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[
                    pc.TraversalSpec(name="v", path="view", skip=False, type=vim.view.ContainerView)])],
                propSet=[pc.PropertySpec(type=_TYPES[kind], pathSet=["name"])])
            return [p.val for o in content.propertyCollector.RetrieveContents([spec]) for p in o.propSet]
        finally:
            view.Destroy()

    yield names
    for si in opened:
        Disconnect(si)


def _record(store: StateStore, system: str, site_name: str, kind: str, name: str,
            **identity: Any) -> ProvisionedObject:
    return store.record_object(tenant_id="t-ledger", run_id="run-ledger", system=system, site=site_name,
                               kind=kind, name=name, object_type=kind, identity={"purpose": "test", **identity})


def _remove_and_prove(store: StateStore, rec: ProvisionedObject, site: Site, pyvmomi: Any, which: str,
                      leaf: str) -> None:
    handler = handler_for(rec.system)
    assert handler.exists(rec, site) is True
    assert leaf in pyvmomi(which, rec.kind)
    first = handler.remove(rec, site)
    assert first.changed is True and any(line.startswith("-") for line in first.diff), first
    assert leaf not in pyvmomi(which, rec.kind)  # vCenter itself no longer has it
    assert handler.exists(rec, site) is False
    again = handler.remove(rec, site)
    assert again.changed is False and again.diff == []


def test_recovery_vcenter_objects_are_removed_vm_powered_off_first(site: Site, store: StateStore,
                                                                   pyvmomi: Any) -> None:
    block = site.vcenter_block("recovery")
    uid = _uid()
    folder, pool, pg, vm = f"t-led-{uid}", f"t-led-pool-{uid}", f"t-led-pg-{uid}", f"t-led-vm-{uid}"
    marks = Marks(tenant="t-ledger", purpose="test", run_id="run-ledger")
    records = [
        _record(store, VCENTER_RECOVERY, "recovery", "folder", folder),
        _record(store, VCENTER_RECOVERY, "recovery", "resource_pool", pool),
        _record(store, VCENTER_RECOVERY, "recovery", "dvportgroup", pg),
        _record(store, VCENTER_RECOVERY, "recovery", "vm", f"{folder}/{vm}"),
    ]
    assert vc_tasks.create_folder.fn(block, folder, marks=marks).changed
    assert vc_tasks.create_resource_pool.fn(block, pool, ResourceAllocation(), marks=marks).changed
    assert vc_tasks.create_dvportgroup.fn(block, pg, 3977, site.vcenter.recovery.dvswitch, marks=marks).changed
    assert vc_tasks.create_vm.fn(block, vm, folder, pg, power_on=True, marks=marks).changed
    with block.get_client() as vc:
        assert vc.get_vm(f"{folder}/{vm}").power_state == "poweredOn"

    # Newest first, as the ledger removes: the VM (powered on: the handler powers it off), then the rest.
    by_kind = {r.kind: r for r in records}
    _remove_and_prove(store, by_kind["vm"], site, pyvmomi, "recovery", vm)
    _remove_and_prove(store, by_kind["dvportgroup"], site, pyvmomi, "recovery", pg)
    _remove_and_prove(store, by_kind["resource_pool"], site, pyvmomi, "recovery", pool)
    _remove_and_prove(store, by_kind["folder"], site, pyvmomi, "recovery", folder)


def test_protected_vcenter_folder_is_removed_from_the_protected_vcenter_only(site: Site, store: StateStore,
                                                                            pyvmomi: Any) -> None:
    name = f"t-led-prot-{_uid()}"
    assert vc_tasks.create_folder.fn(site.vcenter_block("protected"), name).changed
    rec = _record(store, VCENTER_PROTECTED, "protected", "folder", name)
    assert name not in pyvmomi("recovery", "folder")  # the handler must not look in the wrong vCenter
    _remove_and_prove(store, rec, site, pyvmomi, "protected", name)


def test_a_folder_that_still_holds_a_vm_is_not_removed(site: Site, store: StateStore, pyvmomi: Any) -> None:
    from draas.clients.vcenter import VCenterObjectConflict

    block = site.vcenter_block("recovery")
    uid = _uid()
    folder, vm = f"t-led-full-{uid}", f"t-led-keep-{uid}"
    pg = f"t-led-fullpg-{uid}"
    rec = _record(store, VCENTER_RECOVERY, "recovery", "folder", folder)
    with block.get_client() as vc:
        vc.create_folder(folder)
        vc.create_dvportgroup(pg, 3978, dvswitch=site.vcenter.recovery.dvswitch)
        vc.create_vm(vm, folder=folder, network=pg)
        try:
            with pytest.raises(VCenterObjectConflict, match="still holds 1 VMs"):
                handler_for(VCENTER_RECOVERY).remove(rec, site)
            assert folder in pyvmomi("recovery", "folder") and vm in pyvmomi("recovery", "vm")
        finally:
            vc.destroy_vm(f"{folder}/{vm}")
            vc.destroy("dvportgroup", pg)
            vc.destroy("folder", folder)


def test_exists_after_vcenter_ended_the_runs_session_still_sees_the_object(
        site: Site, store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """An expired session must not make an object look absent (vcsim answers such reads with nothing)."""
    from draas import sessions
    from draas.clients.vcenter import VCenterClient

    block = site.vcenter_block("recovery")
    name = f"t-led-exp-{_uid()}"
    rec = _record(store, VCENTER_RECOVERY, "recovery", "folder", name)
    handler = handler_for(VCENTER_RECOVERY)
    monkeypatch.setattr(sessions, "_current_run_id", lambda: "run-ledger-expiry")
    pool = sessions.open_pool("run-ledger-expiry")
    try:
        vc_tasks.create_folder.fn(block, name)
        assert handler.exists(rec, site) is True  # logs the run's shared session in
        with pool.lease(block) as shared:
            key = shared.content.sessionManager.currentSession.key
        si = SmartConnect(host=block.host, port=block.port, user=block.username,
                          pwd=block.password.get_secret_value(), protocol=block.protocol)
        try:
            si.RetrieveContent().sessionManager.TerminateSession([key])
        finally:
            Disconnect(si)
        before = VCenterClient.login_count()
        assert handler.exists(rec, site) is True
        assert VCenterClient.login_count() - before == 1  # renewed once, then read for real
        assert handler.remove(rec, site).changed is True
    finally:
        sessions.close_pool("run-ledger-expiry")

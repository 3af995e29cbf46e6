"""The lab's two vCenters answer real SOAP: inventory as configured, clone, power on, NIC move."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from lab.state import LabState, VCenterSite

TEST_PORTGROUP = "lab-test-pg"
TEST_CLONE = "lab-test-clone"


def wait(task: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while task.info.state in ("queued", "running"):
        assert time.monotonic() < deadline, f"task {task.info.key} did not finish"
        time.sleep(0.02)
    if task.info.state == "error":
        raise task.info.error
    return task.info.result


@pytest.fixture(scope="module")
def lab_config(lab: LabState) -> dict[str, Any]:
    with open(lab.config_path) as f:
        return dict(yaml.safe_load(f))


@pytest.fixture(scope="module")
def fresh(lab: LabState, lab_config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    """Both vCenters exactly as `lab up` leaves them (the session lab may be changed by other tests)."""
    from lab import launcher, vcsim

    lab_dir = tmp_path_factory.mktemp("fresh-vcenters")
    ctx = launcher.LabContext(lab_dir=lab_dir, config=lab_config,
                              state=LabState(lab_dir=str(lab_dir), config_path=lab.config_path))
    try:
        vcsim.start(ctx)
        yield ctx.state
    finally:
        launcher.down(lab_dir)


def connect(site: VCenterSite) -> Any:
    return SmartConnect(host=site.host, port=site.port, user=site.username, pwd=site.password,
                        protocol="http")


@pytest.fixture(scope="module")
def protected(lab: LabState) -> Iterator[Any]:
    si = connect(lab.vcenter["protected"])
    yield si.RetrieveContent()
    Disconnect(si)


def all_of(content: Any, kind: type) -> list[Any]:
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        return list(view.view)
    finally:
        view.Destroy()


@pytest.mark.parametrize("site_name", ["protected", "recovery"])
def test_start_builds_the_configured_inventory(fresh: LabState, lab_config: dict[str, Any],
                                              site_name: str) -> None:
    cfg = lab_config["vcenter"]["sites"][site_name]
    site = fresh.vcenter[site_name]
    si = connect(site)
    try:
        content = si.RetrieveContent()
        [dc] = content.rootFolder.childEntity
        assert dc.name == cfg["datacenter"] == site.datacenter
        [cluster] = dc.hostFolder.childEntity
        assert cluster.name == cfg["cluster"] == site.cluster
        assert len(cluster.host) == cfg["hosts"]
        assert sorted(ds.name for ds in dc.datastore) == sorted(cfg["datastores"])
        switches = [n for n in dc.networkFolder.childEntity if isinstance(n, vim.DistributedVirtualSwitch)]
        assert [s.name for s in switches] == [cfg["dvswitch"]]
        assert {h.name for h in switches[0].summary.hostMember} == {h.name for h in cluster.host}

        vms = {vm.name: vm for vm in all_of(content, vim.VirtualMachine)}
        expected = {vm["name"]: (tenant, vm) for tenant, lst in (cfg.get("vms") or {}).items() for vm in lst}
        assert set(vms) == set(expected)
        for name, (tenant, want) in expected.items():
            vm = vms[name]
            assert vm.parent.name == tenant
            assert vm.config.hardware.numCPU == want["cpus"]
            assert vm.config.hardware.memoryMB == want["memory_mb"]
            assert vm.config.guestId.startswith("windows" if want["guest"] == "windows" else "rhel")
            assert vm.runtime.powerState == "poweredOn"
            assert vm.guest.toolsRunningStatus == "guestToolsRunning"
            assert vm.summary.quickStats.guestHeartbeatStatus == "green"
            assert vm.guest.ipAddress == want["ip"]
            assert [n.name for n in vm.network] == [want["network"]]
    finally:
        Disconnect(si)


def test_session_lab_vcenters_carry_the_configured_names(lab: LabState, lab_config: dict[str, Any]) -> None:
    for site_name, cfg in lab_config["vcenter"]["sites"].items():
        site = lab.vcenter[site_name]
        assert (site.datacenter, site.cluster, site.datastores, site.dvswitch) == (
            cfg["datacenter"], cfg["cluster"], cfg["datastores"], cfg["dvswitch"])
        si = connect(site)
        try:
            [dc] = si.RetrieveContent().rootFolder.childEntity
            assert dc.name == cfg["datacenter"]
            assert [c.name for c in dc.hostFolder.childEntity] == [cfg["cluster"]]
        finally:
            Disconnect(si)


def test_recovery_site_starts_without_tenant_vms(fresh: LabState) -> None:
    si = connect(fresh.vcenter["recovery"])
    try:
        assert all_of(si.RetrieveContent(), vim.VirtualMachine) == []
    finally:
        Disconnect(si)


def test_wrong_password_is_refused(lab: LabState) -> None:
    site = lab.vcenter["protected"]
    with pytest.raises(vim.fault.InvalidLogin):
        SmartConnect(host=site.host, port=site.port, user=site.username, pwd="not-the-password",
                     protocol="http")


def test_clone_power_on_and_move_nic(lab: LabState, protected: Any) -> None:
    [dc] = protected.rootFolder.childEntity
    source = next(vm for vm in all_of(protected, vim.VirtualMachine) if vm.name == "acme-web01")
    host = source.runtime.host
    netsys = host.configManager.networkSystem
    netsys.AddPortGroup(portgrp=vim.host.PortGroup.Specification(
        name=TEST_PORTGROUP, vlanId=123, vswitchName="vSwitch0", policy=vim.host.NetworkPolicy()))
    clone = None
    try:
        network = next(n for n in dc.network if n.name == TEST_PORTGROUP)
        spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=source.resourcePool), powerOn=False)
        clone = wait(source.CloneVM_Task(folder=source.parent, name=TEST_CLONE, spec=spec))
        assert clone.name == TEST_CLONE and clone.parent.name == "acme"
        wait(clone.PowerOnVM_Task())
        assert clone.runtime.powerState == "poweredOn"

        nic = next(d for d in clone.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard))
        nic.backing = vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName=TEST_PORTGROUP,
                                                                          network=network)
        change = vim.vm.device.VirtualDeviceSpec(operation="edit", device=nic)
        wait(clone.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change])))

        nics = [d for d in clone.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]
        assert [getattr(n.backing, "deviceName", None) for n in nics] == [TEST_PORTGROUP]
        assert TEST_PORTGROUP in [n.name for n in clone.network]
        # The source keeps its network: the clone's NIC is its own.
        assert [n.name for n in source.network] == ["VM Network"]
    finally:
        if clone is not None:
            if clone.runtime.powerState == "poweredOn":
                wait(clone.PowerOffVM_Task())
            wait(clone.Destroy_Task())
        netsys.RemovePortGroup(pgName=TEST_PORTGROUP)
    assert TEST_CLONE not in [vm.name for vm in all_of(protected, vim.VirtualMachine)]
    assert TEST_PORTGROUP not in [n.name for n in dc.network]

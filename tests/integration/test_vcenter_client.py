"""VCenterClient and the vCenter tasks against the lab's vcsim (real SOAP, real pyVmomi)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from draas.clients.vcenter import (
    VCenterAuthFailed,
    VCenterClient,
    VCenterConnectionFailed,
    VCenterObjectConflict,
    VCenterObjectNotFound,
    VCenterOperationFailed,
)
from draas.errors import is_transient
from draas.models.vcenter import GuestCustomization, IpSettings, Marks, ResourceAllocation
from draas.site import Site
from lab.state import LabState

MARKS = Marks(tenant="acme", purpose="integration-test", run_id="it-run-1")
CLONE = "acme/it-clone-web01"


@pytest.fixture(scope="module")
def recovery(lab: LabState) -> Iterator[VCenterClient]:
    with Site.load().vcenter_block("recovery").get_client() as client:
        yield client
        # Whatever a failed test left behind (each call is a no-op when already gone).
        client.destroy("dvportgroup", "it-dvpg-100")
        client.destroy("dvswitch", "it-bubble-sw")
        client.destroy("portgroup", "it-std-pg")
        client.destroy("resource_pool", "it-acme/it-child")
        client.destroy("resource_pool", "it-acme")
        client.destroy("folder", "it-acme/dr")
        client.destroy("folder", "it-acme")


@pytest.fixture(scope="module")
def protected(lab: LabState) -> Iterator[VCenterClient]:
    with Site.load().vcenter_block("protected").get_client() as client:
        yield client
        client.destroy_vm(CLONE)
        client.destroy("dvportgroup", "it-prod-pg-210")
        client.destroy("resource_pool", "it-acme-rp")


def test_folder_is_created_once_and_marked(recovery: VCenterClient) -> None:
    first = recovery.create_folder("it-acme/dr", marks=MARKS)
    assert first.changed and first.diff()[:2] == ["+ folder it-acme", "+ folder it-acme/dr"]
    again = recovery.create_folder("it-acme/dr", marks=MARKS)
    assert not again.changed and again.diff() == []
    assert again.object is not None and again.object.moid == first.object.moid  # type: ignore[union-attr]
    assert recovery.get_attributes("folder", "it-acme/dr") == MARKS.attributes()
    found = recovery.find_by_attribute("draas.purpose", "integration-test", kind="folder")
    assert [f.name for f in found] == ["it-acme/dr"]

    dry = recovery.create_folder("it-acme/never", dry_run=True)
    assert dry.changed and dry.dry_run and recovery.find("folder", "it-acme/never") is None


def test_resource_pool_reservations_and_idempotency(recovery: VCenterClient) -> None:
    alloc = ResourceAllocation(cpu_reservation_mhz=2000, cpu_limit_mhz=8000, memory_reservation_mb=4096,
                               memory_limit_mb=16384, cpu_expandable=False)
    assert recovery.create_resource_pool("it-acme", alloc, marks=MARKS).changed
    assert not recovery.create_resource_pool("it-acme", alloc, marks=MARKS).changed
    child = recovery.create_resource_pool("it-acme/it-child", ResourceAllocation(memory_reservation_mb=512))
    assert child.changed and child.object is not None and child.object.name == "it-acme/it-child"

    bigger = alloc.model_copy(update={"cpu_reservation_mhz": 3000})
    change = recovery.create_resource_pool("it-acme", bigger)
    assert change.changed and change.diff() == ["~ cpu_reservation_mhz: 2000 -> 3000"]
    assert not recovery.create_resource_pool("it-acme", bigger).changed


def test_distributed_port_group_with_vlan(recovery: VCenterClient, lab: LabState) -> None:
    dvs = lab.vcenter["recovery"].dvswitch
    first = recovery.create_dvportgroup("it-dvpg-100", 100, dvswitch=dvs, marks=MARKS)
    assert first.changed
    second = recovery.create_dvportgroup("it-dvpg-100", 100, dvswitch=dvs, marks=MARKS)
    assert not second.changed
    assert [r.name for r in recovery.find_by_attribute("draas.run_id", "it-run-1", kind="dvportgroup")] == ["it-dvpg-100"]
    retag = recovery.create_dvportgroup("it-dvpg-100", 101, dvswitch=dvs)
    assert retag.changed and retag.diff() == ["~ distributed port group it-dvpg-100: VLAN 100 -> 101"]
    assert not recovery.create_dvportgroup("it-dvpg-100", 101, dvswitch=dvs).changed
    assert recovery.destroy("dvportgroup", "it-dvpg-100").changed
    assert not recovery.destroy("dvportgroup", "it-dvpg-100").changed
    assert recovery.find("dvportgroup", "it-dvpg-100") is None


def test_standard_port_group(recovery: VCenterClient) -> None:
    assert recovery.create_portgroup("it-std-pg", 42).changed
    assert not recovery.create_portgroup("it-std-pg", 42).changed
    with pytest.raises(VCenterObjectConflict, match="VLAN 42, wanted 43"):
        recovery.create_portgroup("it-std-pg", 43)
    assert recovery.destroy("portgroup", "it-std-pg").changed
    assert recovery.find("portgroup", "it-std-pg") is None


def test_isolated_switch_has_no_uplinks_and_is_idempotent(recovery: VCenterClient, lab: LabState) -> None:
    first = recovery.create_isolated_switch("it-bubble-sw", portgroup="it-bubble-pg", vlan_id=0, marks=MARKS)
    assert first.changed and first.object is not None
    hosts = {f"+ host esx0{i}.dr-cluster.lab joins it-bubble-sw without physical NICs"
             for i in range(1, lab_hosts(lab) + 1)}
    assert hosts <= set(first.diff())
    again = recovery.create_isolated_switch("it-bubble-sw", portgroup="it-bubble-pg", vlan_id=0, marks=MARKS)
    assert not again.changed
    assert recovery.get_attributes("dvswitch", "it-bubble-sw")["draas.purpose"] == "integration-test"
    assert recovery.find("dvportgroup", "it-bubble-pg") is not None
    assert recovery.destroy("dvswitch", "it-bubble-sw").changed


def lab_hosts(lab: LabState) -> int:
    import yaml

    with open(lab.config_path) as f:
        return int(yaml.safe_load(f)["vcenter"]["sites"]["recovery"]["hosts"])


def test_vm_lifecycle(protected: VCenterClient, lab: LabState) -> None:
    dvs = lab.vcenter["protected"].dvswitch
    protected.create_dvportgroup("it-prod-pg-210", 210, dvswitch=dvs)

    clone = protected.clone_vm("acme/acme-web01", "it-clone-web01", power_on=True, marks=MARKS)
    assert clone.changed and clone.object is not None and clone.object.name == CLONE
    again = protected.clone_vm("acme/acme-web01", "it-clone-web01", power_on=True, marks=MARKS)
    assert not again.changed
    assert [v.name for v in protected.list_vms("acme")].count("it-clone-web01") == 1
    info = protected.get_vm(CLONE)
    assert info.power_state == "poweredOn" and info.attributes == MARKS.attributes()
    assert [r.name for r in protected.find_by_attribute("draas.run_id", "it-run-1")] == ["it-clone-web01"]

    assert protected.move_vm_nic(CLONE, "it-prod-pg-210").changed
    assert not protected.move_vm_nic(CLONE, "it-prod-pg-210").changed
    assert protected.get_vm(CLONE).networks == ["it-prod-pg-210"]
    assert protected.get_vm("acme/acme-web01").networks == ["VM Network"]

    # Re-IP: refused while on, applied at the next power-on.
    custom = GuestCustomization(hostname="it-web01-dr", domain="acme.example.com",
                                nics=[IpSettings.model_validate({"ip": "10.99.3.40", "prefix_length": 24,
                                                                 "gateway": "10.99.3.1",
                                                                 "dns_servers": ["10.99.0.53"]})])
    with pytest.raises(VCenterOperationFailed, match="powered off"):
        protected.customize_vm_ip(CLONE, custom)
    assert protected.power_off_vm(CLONE).changed
    assert not protected.power_off_vm(CLONE).changed
    assert protected.customize_vm_ip(CLONE, custom).changed
    assert not protected.customize_vm_ip(CLONE, custom).changed  # pending already
    assert protected.power_on_vm(CLONE).changed
    ready = protected.wait_for_vm_ready(CLONE, ip="10.99.3.40", timeout=10)
    assert ready.ip_address == "10.99.3.40" and ready.hostname == "it-web01-dr" and ready.heartbeat == "green"
    assert not protected.customize_vm_ip(CLONE, custom).changed  # guest has it now

    protected.create_resource_pool("it-acme-rp", ResourceAllocation(memory_reservation_mb=1024))
    assert protected.relocate_vm(CLONE, resource_pool="it-acme-rp").changed
    assert not protected.relocate_vm(CLONE, resource_pool="it-acme-rp").changed
    assert protected.get_vm(CLONE).resource_pool == "it-acme-rp"

    assert protected.create_snapshot(CLONE, "before-test").changed
    assert not protected.create_snapshot(CLONE, "before-test").changed
    assert protected.create_snapshot(CLONE, "during-test").changed
    assert [s.name for s in protected.list_snapshots(CLONE)] == ["before-test", "during-test"]
    assert protected.revert_to_snapshot(CLONE, "before-test").changed  # not the current one
    assert protected.revert_to_snapshot(CLONE).changed
    assert protected.remove_snapshot(CLONE, "during-test").changed
    assert not protected.remove_snapshot(CLONE, "during-test").changed
    assert [s.name for s in protected.list_snapshots(CLONE)] == ["before-test"]

    since = datetime.now(UTC) - timedelta(minutes=5)
    events = protected.query_events(vm=CLONE, event_types=["VmPoweredOnEvent"], since=since)
    assert len(events) == 2 and all(e.type == "VmPoweredOnEvent" for e in events)

    assert protected.shutdown_vm_guest(CLONE, timeout=5).changed
    assert not protected.shutdown_vm_guest(CLONE, timeout=5).changed
    assert protected.get_vm(CLONE).tools_running_status == "guestToolsNotRunning"
    assert protected.destroy_vm(CLONE).changed
    assert not protected.destroy_vm(CLONE).changed
    assert protected.find("vm", CLONE) is None
    assert protected.destroy("resource_pool", "it-acme-rp").changed


def test_dry_run_changes_nothing_even_for_objects_not_created_yet(protected: VCenterClient) -> None:
    chained = protected.clone_vm("acme/acme-web01", "it-dry-clone", folder="it-dry/nowhere", dry_run=True)
    assert chained.changed and chained.dry_run and "it-dry" in chained.detail["unresolved"]
    assert protected.power_on_vm("it-dry/nowhere/it-dry-clone", dry_run=True).changed
    with pytest.raises(VCenterObjectNotFound):
        protected.power_on_vm("it-dry/nowhere/it-dry-clone")

    dry = protected.clone_vm("acme/acme-web01", "it-dry-clone", dry_run=True)
    assert dry.diff() == ["+ VM acme/it-dry-clone cloned from acme/acme-web01"]
    assert protected.find("vm", "acme/it-dry-clone") is None
    assert protected.move_vm_nic("acme/acme-web02", "it-nowhere-pg", dry_run=True).changed
    assert protected.power_off_vm("acme/acme-web02", dry_run=True).changed
    web02 = protected.get_vm("acme/acme-web02")
    assert web02.networks == ["VM Network"] and web02.power_state == "poweredOn"


def test_wait_for_ready_fails_fast_on_a_powered_off_vm(protected: VCenterClient) -> None:
    with pytest.raises(VCenterObjectNotFound):
        protected.wait_for_vm_ready("acme/no-such-vm", timeout=1)
    clone = protected.clone_vm("acme/acme-web02", "it-clone-web01")
    assert clone.changed
    with pytest.raises(VCenterOperationFailed, match="poweredOff"):
        protected.wait_for_vm_ready(CLONE, timeout=5)
    protected.destroy_vm(CLONE)


def test_wrong_password_fails_without_leaking_it(lab: LabState, caplog: pytest.LogCaptureFixture) -> None:
    site = lab.vcenter["protected"]
    secret = "wrong-" + site.password
    creds = Site.load().vcenter_block("protected").model_copy(update={"password": SecretStr(secret)})
    caplog.set_level(logging.DEBUG)
    with pytest.raises(VCenterAuthFailed) as err, creds.get_client():
        pass
    assert not is_transient(err.value)
    for text in (str(err.value), repr(err.value), repr(creds), caplog.text):
        assert secret not in text and site.password not in text
    assert "InvalidLogin" in str(err.value)


def test_unreachable_vcenter_is_transient(lab: LabState) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    creds = Site.load().vcenter_block("protected").model_copy(update={"port": port, "timeout": 2.0})
    with pytest.raises(VCenterConnectionFailed) as err:
        creds.get_client().open()
    assert is_transient(err.value)
    assert lab.vcenter["protected"].password not in str(err.value)


def test_tasks_return_step_results(lab: LabState) -> None:
    from tasks.vcenter import create_folder, destroy_vcenter_object

    creds = Site.load().vcenter_block("recovery")
    first = create_folder.fn(creds, "it-task-folder", marks=MARKS)
    second = create_folder.fn(creds, "it-task-folder", marks=MARKS)
    assert first.changed and first.diff[0] == "+ folder it-task-folder" and first.finished is not None
    assert not second.changed and second.diff == []
    assert destroy_vcenter_object.fn(creds, "folder", "it-task-folder").changed
    assert not destroy_vcenter_object.fn(creds, "folder", "it-task-folder").changed

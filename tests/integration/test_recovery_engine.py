"""The recovery engine against the lab's recovery vCenter and guests.

VMs are created powered off (as the replication manager presents them) with the guest
content the lab's replicas carry (``guestinfo.lab.*``: the OS's IP and its services). The
order is asserted from the recovery vCenter's own power-on events and the lab's guest
records, never from the engine's report.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from pyVmomi import vim

from draas.checks import resolver_for
from draas.clients.vcenter import VCenterClient
from draas.models.tenant import HttpCheck, TcpCheck
from draas.models.vcenter import IpSettings
from draas.recovery.engine import EngineLimits, MachineTarget, NicTarget, PlanInvalid, RecoveryEngine, RecoveryFailed
from draas.site import Site
from lab.state import LabState

NET = "engine-it-net"
APP = [{"type": "http", "port": 8080, "path": "/health", "status": 200, "body": "ok"}]
WEB = [{"type": "http", "port": 80, "path": "/", "status": 200, "body": "hello"}]
DB = [{"type": "tcp", "port": 5432}]
HEALTH = HttpCheck(type="http", port=8080, path="/health", expected_text="ok")
HOME = HttpCheck(type="http", port=80, path="/", expected_text="hello")
PG = TcpCheck(type="tcp", port=5432)
LIMITS = EngineLimits(boot_timeout_s=60, check_timeout_s=3, check_retries=1, check_poll_s=0.1, progress_every_s=0)


@pytest.fixture(scope="module")
def vc(lab: LabState) -> Iterator[VCenterClient]:
    site = Site.for_config_dir(None)
    with site.vcenter_block("recovery").get_client() as client:
        client.create_dvportgroup(NET, 3999, dvswitch=lab.vcenter["recovery"].dvswitch)
        yield client


@pytest.fixture()
def folder(vc: VCenterClient, lab: LabState) -> Iterator[str]:
    name = f"engine-it-{uuid.uuid4().hex[:6]}"
    vc.create_folder(name)
    yield name
    for vm in vc.list_vms(name):
        vc.destroy_vm(f"{name}/{vm.name}")
    httpx.delete(f"{lab.guests.url}/lab/faults")  # type: ignore[union-attr]


def present(vc: VCenterClient, lab: LabState, folder: str, name: str, ip: str, services: list[dict[str, Any]]) -> None:
    """A powered-off VM with one NIC on "VM Network", as a replica would arrive."""
    content = vc.content
    dc = next(e for e in content.rootFolder.childEntity if e.name == lab.vcenter["recovery"].datacenter)
    target = next(f for f in dc.vmFolder.childEntity if f.name == folder)
    cluster = next(e for e in dc.hostFolder.childEntity if e.name == lab.vcenter["recovery"].cluster)
    dev = vim.vm.device
    nic = dev.VirtualDeviceSpec(operation="add", device=dev.VirtualVmxnet3(
        key=-1, addressType="generated",
        backing=dev.VirtualEthernetCard.NetworkBackingInfo(deviceName="VM Network"),
        connectable=dev.VirtualDevice.ConnectInfo(startConnected=True, connected=True)))
    extra = {"guestinfo.lab.ip": ip, "guestinfo.lab.services": json.dumps(services)}
    spec = vim.vm.ConfigSpec(name=name, guestId="rhel7_64Guest", numCPUs=1, memoryMB=256, deviceChange=[nic],
                             files=vim.vm.FileInfo(vmPathName=f"[{lab.vcenter['recovery'].datastores[0]}]"),
                             extraConfig=[vim.option.OptionValue(key=k, value=v) for k, v in extra.items()])
    vc._wait(target.CreateVM_Task(config=spec, pool=cluster.resourcePool), f"create {name}")


def power_on_times(vc: VCenterClient, folder: str) -> dict[str, datetime]:
    """When vCenter says each VM of ``folder`` was powered on (its event log)."""
    names = {vm.name for vm in vc.list_vms(folder)}
    spec = vim.event.EventFilterSpec(eventTypeId=["VmPoweredOnEvent"], maxCount=1000)  # vcsim pages 10 by default
    out: dict[str, datetime] = {}
    for event in vc.content.eventManager.QueryEvents(spec):
        name = event.vm.name if event.vm else None
        if name in names:
            out[name] = min(out.get(name, event.createdTime), event.createdTime)
    return out


def guest_up_times(lab: LabState, folder_vms: set[str]) -> dict[str, float]:
    """When the lab's guests first served their services (epoch seconds)."""
    rows = httpx.get(f"{lab.guests.url}/lab/guests").json()["guests"]  # type: ignore[union-attr]
    return {r["vm"]: min(h["at"] for h in r["history"] if h["event"] == "up")
            for r in rows if r["site"] == "recovery" and r["vm"] in folder_vms and r["history"]}


def three_tier(prefix: str) -> list[MachineTarget]:
    return [
        MachineTarget(machine="db", vm=f"{prefix}-db", wave=1, nics=[NicTarget(network=NET, address="10.97.0.10")],
                      checks=[PG]),
        MachineTarget(machine="app", vm=f"{prefix}-app", wave=2, depends_on=["db"],
                      nics=[NicTarget(network=NET, address="10.97.0.20")], checks=[HEALTH]),
        MachineTarget(machine="web1", vm=f"{prefix}-web1", wave=3, depends_on=["app"],
                      nics=[NicTarget(network=NET, address="10.97.0.31")], checks=[HOME]),
        MachineTarget(machine="web2", vm=f"{prefix}-web2", wave=3, depends_on=["app"],
                      nics=[NicTarget(network=NET, address="10.98.0.42",
                                      re_ip=IpSettings(ip="10.98.0.42", prefix_length=24, gateway="10.98.0.1"))],
                      checks=[HOME]),
    ]


def present_three_tier(vc: VCenterClient, lab: LabState, folder: str) -> None:
    present(vc, lab, folder, f"{folder}-db", "10.97.0.10", DB)
    present(vc, lab, folder, f"{folder}-app", "10.97.0.20", APP)
    present(vc, lab, folder, f"{folder}-web1", "10.97.0.31", WEB)
    present(vc, lab, folder, f"{folder}-web2", "10.97.0.32", WEB)


def engine(vc: VCenterClient, folder: str, steps: list[Any] | None = None) -> RecoveryEngine:
    return RecoveryEngine(vc, folder, resolver=resolver_for(Site.for_config_dir(None)), limits=LIMITS,
                          record=(steps.append if steps is not None else None))


def test_vms_power_on_only_after_their_dependencies_verified(vc: VCenterClient, lab: LabState, folder: str) -> None:
    present_three_tier(vc, lab, folder)
    steps: list[Any] = []

    result = engine(vc, folder, steps).run(three_tier(folder))

    assert [(v.machine, v.status) for v in result.vms] == [
        ("db", "verified"), ("app", "verified"), ("web1", "verified"), ("web2", "verified")]
    on = power_on_times(vc, folder)
    up = guest_up_times(lab, set(on))
    assert set(on) == {f"{folder}-{m}" for m in ("db", "app", "web1", "web2")}
    for vm, dep in (("app", "db"), ("web1", "app"), ("web2", "app")):
        assert on[f"{folder}-{vm}"].timestamp() >= up[f"{folder}-{dep}"], f"{vm} powered on before {dep} was up"
    # NICs on the mapped network; web2 re-addressed by guest customization, the others keep theirs.
    vms = {vm.name: vm for vm in vc.list_vms(folder)}
    assert all(vm.networks == [NET] for vm in vms.values())
    assert vms[f"{folder}-web2"].ip_address == "10.98.0.42"
    assert vms[f"{folder}-web1"].ip_address == "10.97.0.31"
    # Every step is recorded with its machine and wave; the checks passed through the lab's map.
    recorded = {(s.machine, s.step) for s in steps}
    assert {("web2", "customize_vm_ip"), ("db", "power_on_vm"), ("app", "wait_guest"), ("web1", "check")} <= recorded
    assert all(s.wave is not None and s.finished is not None for s in steps)
    assert all(c.passed for v in result.vms for c in v.checks)

    # A second run (a resumed recovery) powers nothing on again and verifies the running VMs.
    again: list[Any] = []
    resumed = engine(vc, folder, again).run(three_tier(folder))
    assert all(v.status == "verified" and v.resumed for v in resumed.vms)
    assert not [s for s in again if s.step == "power_on_vm" and s.changed]
    assert power_on_times(vc, folder) == on


def test_a_failing_check_fails_the_run_naming_the_vm_and_check(vc: VCenterClient, lab: LabState,
                                                               folder: str) -> None:
    present_three_tier(vc, lab, folder)
    httpx.post(f"{lab.guests.url}/lab/faults", json={"vm": f"{folder}-app"}).raise_for_status()  # type: ignore[union-attr]

    with pytest.raises(RecoveryFailed) as info:
        engine(vc, folder).run(three_tier(folder))

    assert f"{folder}-app" in str(info.value) and "http:8080/health" in str(info.value)
    statuses = {v.machine: v.status for v in info.value.result.vms}
    assert statuses == {"db": "verified", "app": "failed", "web1": "not_started", "web2": "not_started"}
    assert set(power_on_times(vc, folder)) == {f"{folder}-db", f"{folder}-app"}  # dependents never powered on


def test_an_optional_vm_may_fail_without_failing_the_run(vc: VCenterClient, lab: LabState, folder: str) -> None:
    present_three_tier(vc, lab, folder)
    httpx.post(f"{lab.guests.url}/lab/faults", json={"vm": f"{folder}-web1"}).raise_for_status()  # type: ignore[union-attr]
    targets = three_tier(folder)
    targets[2] = targets[2].model_copy(update={"optional": True})

    result = engine(vc, folder).run(targets)

    assert {v.machine: v.status for v in result.vms} == {
        "db": "verified", "app": "verified", "web1": "optional_failed", "web2": "verified"}
    assert "http:80/" in (result.vms[2].error or "")


def test_targets_must_be_a_dag_of_presented_vms(vc: VCenterClient, folder: str) -> None:
    cyclic = [MachineTarget(machine="a", vm="a", wave=1, depends_on=["b"]),
              MachineTarget(machine="b", vm="b", wave=1, depends_on=["a"])]
    with pytest.raises(PlanInvalid, match="cycle"):
        engine(vc, folder).run(cyclic)
    with pytest.raises(PlanInvalid, match="not presented"):
        engine(vc, folder).run([MachineTarget(machine="a", vm="nowhere", wave=1)])

"""The lab's guests: a powered-on VM boots (heartbeat, IP) and its declared services answer.

Against the session lab: VMs are created in the recovery vcsim over SOAP (or recovered by
the lab ZVM), and their services are probed by the product's own check runner
(draas.checks) through the address map the site profile names, as a recovery flow does.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from draas.checks import MappedResolver, resolver_for, run_check
from draas.models.tenant import CommandCheck, HeartbeatCheck, HttpCheck, TcpCheck
from draas.site import Site
from lab.state import LabState

HTTP_OK = HttpCheck(type="http", port=8080, path="/health", expected_status=200, expected_text="ok")
TCP_DB = TcpCheck(type="tcp", port=5432)
SERVICES = [
    {"type": "http", "port": 8080, "path": "/health", "status": 200, "body": "ok from the guest"},
    {"type": "tcp", "port": 5432},
]


def _wait_task(task: Any) -> Any:
    deadline = time.monotonic() + 30
    while task.info.state not in ("success", "error"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    if task.info.state == "error":
        raise task.info.error
    return task.info.result


def _until(what: str, cond: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


@pytest.fixture(scope="module")
def recovery(lab: LabState) -> Iterator[tuple[Any, Any]]:
    """A session to the recovery vcsim and its datacenter."""
    vc = lab.vcenter["recovery"]
    si = SmartConnect(host=vc.host, port=vc.port, user=vc.username, pwd=vc.password, protocol="http")
    dc = next(e for e in si.RetrieveContent().rootFolder.childEntity if e.name == vc.datacenter)
    yield si, dc
    Disconnect(si)


@pytest.fixture(scope="module")
def guests_url(lab: LabState) -> Iterator[str]:
    assert lab.guests is not None, "the lab has no guests component"
    yield lab.guests.url
    httpx.delete(f"{lab.guests.url}/lab/faults")


@pytest.fixture(scope="module")
def resolver(lab: LabState) -> MappedResolver:
    """The product's resolver for the recovery site, found through the lab's site profile."""
    site = Site.for_config_dir(None)
    assert site.guest_address_map_url and site.guest_address_map_url.startswith(lab.guests.url)  # type: ignore[union-attr]
    found = resolver_for(site)
    assert isinstance(found, MappedResolver) and found.site == "recovery"
    return found


@pytest.fixture()
def guest_vm(recovery: tuple[Any, Any], lab: LabState) -> Iterator[Any]:
    """A powered-off VM at the recovery site whose guest runs SERVICES and is configured with 10.99.0.10."""
    si, dc = recovery
    cluster = next(e for e in dc.hostFolder.childEntity if e.name == lab.vcenter["recovery"].cluster)
    dev = vim.vm.device
    nic = dev.VirtualDeviceSpec(operation="add", device=dev.VirtualVmxnet3(
        key=-1, addressType="generated",
        backing=dev.VirtualEthernetCard.NetworkBackingInfo(deviceName="VM Network"),
        connectable=dev.VirtualDevice.ConnectInfo(startConnected=True, connected=True)))
    extra = {"guestinfo.lab.ip": "10.99.0.10", "guestinfo.lab.services": json.dumps(SERVICES)}
    spec = vim.vm.ConfigSpec(
        name=f"it-guest-{uuid.uuid4().hex[:6]}", guestId="rhel7_64Guest", numCPUs=1, memoryMB=512,
        files=vim.vm.FileInfo(vmPathName=f"[{lab.vcenter['recovery'].datastores[0]}]"), deviceChange=[nic],
        extraConfig=[vim.option.OptionValue(key=k, value=v) for k, v in extra.items()])
    vm = _wait_task(dc.vmFolder.CreateVM_Task(config=spec, pool=cluster.resourcePool))
    yield vm
    try:
        if vm.runtime.powerState == "poweredOn":
            _wait_task(vm.PowerOffVM_Task())
        _wait_task(vm.Destroy_Task())
    except vmodl.fault.ManagedObjectNotFound:
        pass  # the test destroyed it


def _booted(vm: Any, ip: str) -> bool:
    return vm.summary.quickStats.guestHeartbeatStatus == "green" and vm.guest.ipAddress == ip


def _row(url: str, name: str) -> dict[str, Any] | None:
    rows = httpx.get(f"{url}/lab/guests").json()["guests"]
    return next((r for r in rows if r["vm"] == name and r["site"] == "recovery"), None)


def _check(check: Any, vm: Any, ip: str, resolver: Any, timeout_s: float) -> Any:
    return run_check(check, vm_name=vm.name, ip=ip, heartbeat_ok=lambda: vm.summary.quickStats.guestHeartbeatStatus
                     == "green", resolver=resolver, timeout_s=timeout_s, poll_interval_s=0.1)


def test_a_powered_on_guest_boots_and_serves_its_declared_services(
        guest_vm: Any, guests_url: str, resolver: MappedResolver) -> None:
    assert guest_vm.guest.ipAddress in (None, "")  # no IP before its first boot
    _wait_task(guest_vm.PowerOnVM_Task())
    _until("heartbeat green and the guest's IP", lambda: _booted(guest_vm, "10.99.0.10"))
    assert guest_vm.guest.net[0].ipAddress == ["10.99.0.10"]

    for check in (HeartbeatCheck(type="heartbeat"), HTTP_OK, TCP_DB):
        result = _check(check, guest_vm, "10.99.0.10", resolver, timeout_s=10)
        assert result.status == "passed" and result.passed, result.summary()
    http = _check(HTTP_OK, guest_vm, "10.99.0.10", resolver, timeout_s=5)
    assert "via 127." in http.detail and http.target == "10.99.0.10:8080"

    other_path = _check(HttpCheck(type="http", port=8080, path="/missing"), guest_vm, "10.99.0.10", resolver, 0.3)
    assert other_path.status == "failed" and "HTTP 404" in other_path.detail
    wrong_text = _check(HttpCheck(type="http", port=8080, path="/health", expected_text="nope"), guest_vm,
                        "10.99.0.10", resolver, 0.3)
    assert wrong_text.status == "failed" and "does not contain" in wrong_text.detail
    nobody = _check(TCP_DB, guest_vm, "10.99.0.99", resolver, 0.3)
    assert nobody.status == "failed" and "no guest with IP 10.99.0.99" in nobody.detail

    row = _row(guests_url, guest_vm.name)
    assert row is not None and row["up"] and row["ip"] == "10.99.0.10" and row["moref"] == guest_vm._moId
    assert sorted(row["ports"]) == [5432, 8080] and row["address"].startswith("127.")
    mapped = httpx.get(f"{guests_url}/v1/addresses", params={"site": "recovery", "ip": "10.99.0.10"}).json()
    assert mapped["address"] == row["address"]
    assert httpx.get(f"{guests_url}/v1/addresses", params={"site": "protected", "ip": "10.99.0.10"}).status_code == 404

    # A fault keeps the guest's services down: the check genuinely fails, naming VM and check.
    assert httpx.post(f"{guests_url}/lab/faults", json={"vm": guest_vm.name}).status_code == 200
    down = _check(TCP_DB, guest_vm, "10.99.0.10", resolver, 0.5)
    assert down.status == "failed" and not down.passed and down.attempts >= 2
    assert down.vm == guest_vm.name and down.check == "tcp/5432" and guest_vm.name in down.summary()
    assert _check(HTTP_OK, guest_vm, "10.99.0.10", resolver, 0.3).status == "failed"
    assert _row(guests_url, guest_vm.name)["faulted"]  # type: ignore[index]
    assert httpx.delete(f"{guests_url}/lab/faults/{guest_vm.name}").status_code == 200
    assert _check(TCP_DB, guest_vm, "10.99.0.10", resolver, 10).status == "passed"

    # Powered off: nothing listens any more.
    _wait_task(guest_vm.PowerOffVM_Task())
    _until("the guest to stop serving", lambda: not _row(guests_url, guest_vm.name)["up"])  # type: ignore[index]
    off = _check(TCP_DB, guest_vm, "10.99.0.10", resolver, 0.3)
    assert off.status == "failed"
    assert _check(HeartbeatCheck(type="heartbeat"), guest_vm, "10.99.0.10", resolver, 0.3).status == "failed"


def test_customize_reip_gives_the_guest_the_new_address_across_reboots(
        guest_vm: Any, guests_url: str, resolver: MappedResolver) -> None:
    c = vim.vm.customization
    spec = c.Specification(
        identity=c.LinuxPrep(hostName=c.FixedName(name="reip"), domain="lab.example"),
        globalIPSettings=c.GlobalIPSettings(),
        nicSettingMap=[c.AdapterMapping(adapter=c.IPSettings(ip=c.FixedIp(ipAddress="10.99.1.10"),
                                                              subnetMask="255.255.255.0"))])
    _wait_task(guest_vm.CustomizeVM_Task(spec=spec))
    _wait_task(guest_vm.PowerOnVM_Task())
    _until("the customized IP", lambda: _booted(guest_vm, "10.99.1.10"))
    assert _check(HTTP_OK, guest_vm, "10.99.1.10", resolver, 10).status == "passed"
    assert _check(TCP_DB, guest_vm, "10.99.0.10", resolver, 0.3).status == "failed"  # the old IP is gone

    _wait_task(guest_vm.PowerOffVM_Task())  # a reboot keeps the customized address
    _wait_task(guest_vm.PowerOnVM_Task())
    _until("the guest to boot again", lambda: _booted(guest_vm, "10.99.1.10"))
    time.sleep(0.5)  # well past the boot delay: the address did not fall back to guestinfo.lab.ip
    assert guest_vm.guest.ipAddress == "10.99.1.10"
    assert _check(TCP_DB, guest_vm, "10.99.1.10", resolver, 10).status == "passed"


def test_a_destroyed_vm_is_forgotten(guest_vm: Any, guests_url: str, recovery: tuple[Any, Any]) -> None:
    _wait_task(guest_vm.PowerOnVM_Task())
    name = guest_vm.name
    _until("the guest to serve", lambda: (_row(guests_url, name) or {}).get("up"))
    _wait_task(guest_vm.PowerOffVM_Task())
    _wait_task(guest_vm.Destroy_Task())
    _until("the guest to be forgotten", lambda: _row(guests_url, name) is None)


def test_command_checks_are_never_reported_passed(resolver: MappedResolver) -> None:
    result = run_check(CommandCheck(type="command", command="systemctl is-active nginx"), vm_name="acme-web01",
                       ip="10.10.3.40", heartbeat_ok=True, resolver=resolver)
    assert result.status == "not_run" and not result.passed and "StartProgramInGuest" in result.detail


def test_zvm_failover_test_copies_the_guest_content(lab: LabState, recovery: tuple[Any, Any],
                                                    resolver: MappedResolver) -> None:
    """A replica recovered by the lab ZVM boots with the protected VM's IP and serves its services."""
    assert lab.replication is not None
    si, _ = recovery
    with httpx.Client(base_url=lab.replication.url, timeout=10) as zvm:
        r = zvm.post("/v1/session/add", auth=(lab.replication.username, lab.replication.password),
                     json={"AuthenticationMethod": 1})
        zvm.headers["x-zerto-session"] = r.headers["x-zerto-session"]
        local = zvm.get("/v1/localsite").json()["SiteIdentifier"]
        vms = {v["VmName"]: v["VmIdentifier"] for v in zvm.get(f"/v1/virtualizationsites/{local}/vms").json()}
        sid = zvm.post("/v1/vpgSettings", json={}).json()
        basic = zvm.get(f"/v1/vpgSettings/{sid}/basic").json()
        basic.update(Name=f"it-guests-{uuid.uuid4().hex[:6]}", RpoInSeconds=120, JournalHistoryInHours=4)
        assert zvm.put(f"/v1/vpgSettings/{sid}/basic", json=basic).status_code == 200
        assert zvm.post(f"/v1/vpgSettings/{sid}/vms", json={"VmIdentifier": vms["acme-app01"]}).status_code == 200
        vpg_id = _zvm_task(zvm, zvm.post(f"/v1/vpgSettings/{sid}/commit").json())["RelatedEntities"]["Vpgs"][0][
            "identifier"]
        try:
            _until("the VPG to replicate", lambda: zvm.get(f"/v1/vpgs/{vpg_id}").json()["Status"] == 1, 30)
            _zvm_task(zvm, zvm.post(f"/v1/vpgs/{vpg_id}/FailoverTest", json={}).json())
            content = si.RetrieveContent()
            view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
            copy = next(v for v in view.view if v.name == "acme-app01 - testing recovery")
            view.Destroy()
            keys = {o.key: o.value for o in copy.config.extraConfig}
            assert keys["guestinfo.lab.ip"] == "10.10.2.30" and "/health" in keys["guestinfo.lab.services"]
            _wait_task(copy.PowerOnVM_Task())
            _until("the replica to boot", lambda: _booted(copy, "10.10.2.30"))
            app_check = HttpCheck(type="http", port=8080, path="/health", expected_status=200, expected_text="ok")
            result = _check(app_check, copy, "10.10.2.30", resolver, 10)
            assert result.status == "passed", result.summary()
            _zvm_task(zvm, zvm.post(f"/v1/vpgs/{vpg_id}/FailoverTestStop", json={"FailoverTestSuccess": True}).json())
        finally:
            _zvm_task(zvm, zvm.request("DELETE", f"/v1/vpgs/{vpg_id}", json={"Force": True}).json())


def _zvm_task(zvm: httpx.Client, task_id: str) -> dict[str, Any]:
    task = _until(f"ZVM task {task_id}", lambda: (t := zvm.get(f"/v1/tasks/{task_id}").json())["Status"]["State"]
                  != 1 and t, 30)
    assert task["Status"]["State"] == 6, task
    return dict(task)


def test_seeded_production_guests_serve_https_and_tcp(lab: LabState) -> None:
    """The protected site's VMs serve what configs/lab.yaml declares for them (HTTPS with a lab certificate)."""
    assert lab.guests is not None
    protected = MappedResolver(f"{lab.guests.url}/v1/addresses", "protected")
    https = HttpCheck(type="http", scheme="https", port=8443, path="/status", expected_status=200, expected_text="UP")
    result = run_check(https, vm_name="globex-app01", ip="10.20.2.20", heartbeat_ok=True, resolver=protected,
                       timeout_s=10, poll_interval_s=0.1)
    assert result.status == "passed", result.summary()
    ldap = run_check(TcpCheck(type="tcp", port=389), vm_name="acme-dc01", ip="10.10.1.10", heartbeat_ok=True,
                     resolver=protected, timeout_s=10, poll_interval_s=0.1)
    assert ldap.status == "passed", ldap.summary()

"""The lab's replication manager with a plain httpx client, checked against the real vcsims."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from lab.state import LabState, VCenterSite

MEETING_SLA = 1  # index of "MeetingSLA" in GET /v1/vpgs/statuses, checked below


def _si(site: VCenterSite) -> Any:
    return SmartConnect(host=site.host, port=site.port, user=site.username, pwd=site.password, protocol="http")


def _vms(si: Any) -> dict[str, Any]:
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        return {vm.name: vm for vm in view.view}
    finally:
        view.Destroy()


def _wait_vsphere(task: Any) -> Any:
    deadline = time.monotonic() + 30
    while task.info.state not in ("success", "error"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert task.info.state == "success", task.info.error
    return task.info.result


@pytest.fixture(scope="module")
def zvm(lab: LabState) -> Iterator[httpx.Client]:
    assert lab.replication is not None
    with httpx.Client(base_url=lab.replication.url, timeout=10) as client:
        r = client.post("/v1/session/add", auth=(lab.replication.username, lab.replication.password),
                        json={"AuthenticationMethod": 1})
        assert r.status_code == 200
        client.headers["x-zerto-session"] = r.headers["x-zerto-session"]
        yield client
        client.delete("/lab/faults")


@pytest.fixture(scope="module")
def recovery_si(lab: LabState) -> Iterator[Any]:
    si = _si(lab.vcenter["recovery"])
    yield si
    Disconnect(si)


@pytest.fixture(scope="module")
def bubble(recovery_si: Any, lab: LabState) -> Iterator[tuple[str, str]]:
    """An isolated port group and a folder at the recovery site for this module's drill."""
    suffix = uuid.uuid4().hex[:6]
    content = recovery_si.RetrieveContent()
    dc = next(e for e in content.rootFolder.childEntity if e.name == lab.vcenter["recovery"].datacenter)
    dvs = next(n for n in dc.networkFolder.childEntity if isinstance(n, vim.DistributedVirtualSwitch))
    pg_name, folder_name = f"it-bubble-{suffix}", f"it-drill-{suffix}"
    _wait_vsphere(dvs.AddDVPortgroup_Task([vim.dvs.DistributedVirtualPortgroup.ConfigSpec(
        name=pg_name, numPorts=8, type="earlyBinding")]))
    folder = dc.vmFolder.CreateFolder(folder_name)
    yield pg_name, folder_name
    _wait_vsphere(folder.Destroy_Task())
    pg = next(n for n in dc.networkFolder.childEntity if n.name == pg_name)
    _wait_vsphere(pg.Destroy_Task())


def wait_task(client: httpx.Client, task_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen_progress = []
    while time.monotonic() < deadline:
        task = client.get(f"/v1/tasks/{task_id}").json()
        seen_progress.append(task["Progress"])
        if task["Status"]["State"] != 1:
            task["seen_progress"] = seen_progress
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} still running after {timeout} s")


def sites(client: httpx.Client) -> tuple[str, str]:
    local = client.get("/v1/localsite").json()["SiteIdentifier"]
    peer = next(s["SiteIdentifier"] for s in client.get("/v1/virtualizationsites").json()
                if s["SiteIdentifier"] != local)
    return local, peer


def test_unauthenticated_requests_get_401(lab: LabState) -> None:
    assert lab.replication is not None
    r = httpx.get(f"{lab.replication.url}/v1/vpgs")
    assert r.status_code == 401
    r = httpx.post(f"{lab.replication.url}/v1/session/add", auth=(lab.replication.username, "wrong"))
    assert r.status_code == 401 and "x-zerto-session" not in r.headers


def test_keycloak_bearer_token(lab: LabState) -> None:
    assert lab.replication is not None
    r = httpx.post(f"{lab.replication.url}/auth/realms/zerto/protocol/openid-connect/token", data={
        "grant_type": "password", "client_id": "zerto-client",
        "username": lab.replication.username, "password": lab.replication.password})
    assert r.status_code == 200
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    site = httpx.get(f"{lab.replication.url}/v1/localsite", headers=headers).json()
    assert site["SiteName"] == lab.replication.protected_site_name


def test_protected_vms_come_from_the_protected_vcsim(zvm: httpx.Client, lab: LabState) -> None:
    local, _ = sites(zvm)
    listed = {v["VmName"]: v["VmIdentifier"] for v in zvm.get(f"/v1/virtualizationsites/{local}/vms").json()}
    si = _si(lab.vcenter["protected"])
    try:
        real = {name: vm._moId for name, vm in _vms(si).items()}
    finally:
        Disconnect(si)
    assert set(listed) == set(real) and "acme-app01" in listed
    assert listed["acme-app01"] == f"{local}.{real['acme-app01']}"


def test_failover_test_creates_and_removes_vms_in_recovery_vcsim(
        zvm: httpx.Client, recovery_si: Any, bubble: tuple[str, str]) -> None:
    pg_name, folder_name = bubble
    local, peer = sites(zvm)
    assert zvm.get("/v1/vpgs/statuses").json()[MEETING_SLA] == "MeetingSLA"
    vms = {v["VmName"]: v["VmIdentifier"] for v in zvm.get(f"/v1/virtualizationsites/{local}/vms").json()}
    nets = {n["VirtualizationNetworkName"]: n["NetworkIdentifier"]
            for n in zvm.get(f"/v1/virtualizationsites/{peer}/networks").json()}
    folders = {f["FolderName"]: f["FolderIdentifier"] for f in zvm.get(f"/v1/virtualizationsites/{peer}/folders").json()}
    name = f"it-acme-{uuid.uuid4().hex[:6]}"

    sid = zvm.post("/v1/vpgSettings", json={}).json()
    basic = zvm.get(f"/v1/vpgSettings/{sid}/basic").json()
    basic.update(Name=name, RpoInSeconds=120, JournalHistoryInHours=4)
    assert zvm.put(f"/v1/vpgSettings/{sid}/basic", json=basic).status_code == 200
    assert zvm.put(f"/v1/vpgSettings/{sid}/recovery", json={"DefaultFolderIdentifier": folders[folder_name]}).status_code == 200
    assert zvm.put(f"/v1/vpgSettings/{sid}/networks", json={
        "Failover": {"Hypervisor": {"DefaultNetworkIdentifier": nets["VM Network"]}},
        "FailoverTest": {"Hypervisor": {"DefaultNetworkIdentifier": nets[pg_name]}}}).status_code == 200
    for vm in ("acme-app01", "acme-web01"):
        assert zvm.post(f"/v1/vpgSettings/{sid}/vms", json={"VmIdentifier": vms[vm]}).status_code == 200
    task = wait_task(zvm, zvm.post(f"/v1/vpgSettings/{sid}/commit").json())
    assert task["Status"]["State"] == 6, task
    vpg_id = task["RelatedEntities"]["Vpgs"][0]["identifier"]
    try:
        deadline = time.monotonic() + 30
        while (vpg := zvm.get(f"/v1/vpgs/{vpg_id}").json())["Status"] != MEETING_SLA:
            assert time.monotonic() < deadline, vpg
            time.sleep(0.2)
        assert vpg["VpgName"] == name and vpg["VmsCount"] == 2

        first = zvm.get(f"/v1/vpgs/{vpg_id}/checkpoints").json()
        assert first, "a replicating VPG has at least one checkpoint"
        deadline = time.monotonic() + 15
        while len(cps := zvm.get(f"/v1/vpgs/{vpg_id}/checkpoints").json()) <= len(first):
            assert time.monotonic() < deadline, "no new checkpoint appeared"
            time.sleep(0.25)
        assert cps[-1]["CheckpointIdentifier"] not in {c["CheckpointIdentifier"] for c in first}
        assert zvm.get(f"/v1/vpgs/{vpg_id}").json()["ActualRPO"] < 120

        test = wait_task(zvm, zvm.post(f"/v1/vpgs/{vpg_id}/FailoverTest",
                                       json={"CheckpointIdentifier": cps[-1]["CheckpointIdentifier"]}).json())
        assert test["Status"]["State"] == 6 and test["seen_progress"][0] < 100
        recovered = _vms(recovery_si)
        for vm in ("acme-app01", "acme-web01"):
            copy = recovered[f"{vm} - testing recovery"]
            assert copy.runtime.powerState == "poweredOff"
            assert [n.name for n in copy.network] == [pg_name]
            assert copy.parent.name == folder_name
        assert "acme-app01" not in recovered  # a test never uses the production name

        stop = wait_task(zvm, zvm.post(f"/v1/vpgs/{vpg_id}/FailoverTestStop",
                                       json={"FailoverTestSuccess": True, "FailoverTestSummary": "it"}).json())
        assert stop["Status"]["State"] == 6
        left = _vms(recovery_si)
        assert not [n for n in left if n.endswith(" - testing recovery")]
        assert zvm.get(f"/v1/vpgs/{vpg_id}").json()["LastTest"]
    finally:
        deleted = wait_task(zvm, zvm.request("DELETE", f"/v1/vpgs/{vpg_id}", json={"Force": True}).json())
        assert deleted["Status"]["State"] == 6


def test_fault_modes_over_tcp(zvm: httpx.Client) -> None:
    zvm.post("/lab/faults", json={"mode": "http503", "count": 1, "path_regex": "^/v1/localsite$"})
    assert zvm.get("/v1/localsite").status_code == 503
    assert zvm.get("/v1/localsite").status_code == 200
    zvm.post("/lab/faults", json={"mode": "drop", "count": 1, "path_regex": "^/v1/localsite$"})
    with pytest.raises(httpx.TransportError):
        zvm.get("/v1/localsite")
    assert zvm.get("/v1/localsite").status_code == 200
    zvm.post("/lab/faults", json={"mode": "slow", "count": 1, "delay_s": 0.5, "path_regex": "^/v1/localsite$"})
    with pytest.raises(httpx.ReadTimeout):
        zvm.get("/v1/localsite", timeout=0.2)


def test_expired_session_needs_a_new_login(lab: LabState) -> None:
    assert lab.replication is not None
    with httpx.Client(base_url=lab.replication.url, timeout=10) as client:
        r = client.post("/v1/session/add", auth=(lab.replication.username, lab.replication.password))
        client.headers["x-zerto-session"] = r.headers["x-zerto-session"]
        assert client.get("/v1/vpgs").status_code == 200
        assert client.post("/lab/expire-sessions").status_code == 200
        assert client.get("/v1/vpgs").status_code == 401

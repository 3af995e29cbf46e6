"""The lab's replication manager (ZVM REST API v1 imitation) over HTTP, with an in-memory vCenter."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lab.zerto.api import create_app
from lab.zerto.engine import SS, S, SimConfig, ZertoSim
from lab.zerto.vsphere import Item, NewVm, NicInfo, VmInfo, VSphereError

USER, PASSWORD = "zerto-lab", "unit-test-zvm-password"


class FakeVSphere:
    """In-memory :class:`VSphereBackend`: two sites, a few VMs, networks and folders."""

    def __init__(self) -> None:
        self._ids = itertools.count(100)
        self.vms: dict[str, dict[str, VmInfo]] = {"protected": {}, "recovery": {}}
        self.items: dict[str, dict[str, list[Item]]] = {
            "protected": {"networks": [Item(key="network-7", name="VM Network")],
                          "folders": [Item(key="folder-3", name="/"), Item(key="folder-9", name="acme")],
                          "hostclusters": [Item(key="cluster-1", name="Prod-Cluster")],
                          "hosts": [Item(key="host-1", name="esx01")],
                          "datastores": [Item(key="prod-ds-01", name="prod-ds-01")],
                          "resourcepools": [Item(key="resgroup-9", name="Resources")]},
            "recovery": {"networks": [Item(key="network-7", name="VM Network"),
                                      Item(key="dvportgroup-50", name="acme-prod"),
                                      Item(key="dvportgroup-51", name="acme-bubble")],
                         "folders": [Item(key="folder-3", name="/"), Item(key="folder-60", name="acme-dr")],
                         "hostclusters": [Item(key="cluster-2", name="DR-Cluster")],
                         "hosts": [Item(key="host-2", name="esx01.dr")],
                         "datastores": [Item(key="dr-ds-01", name="dr-ds-01")],
                         "resourcepools": [Item(key="resgroup-10", name="Resources")]},
        }
        for name in ("acme-app01", "acme-web01", "acme-db01"):
            self._add("protected", name, "folder-9", "acme", "VM Network", power="poweredOn")
        self.fail_create = False

    def _add(self, site: str, name: str, folder: str, path: str, net: str, power: str = "poweredOff",
             mac: str | None = None) -> str:
        moref = f"vm-{next(self._ids)}"
        self.vms[site][moref] = VmInfo(
            moref=moref, name=name, power_state=power, num_cpus=2, memory_mb=2048, folder_moref=folder,
            folder_path=path, pool_moref="resgroup-9", datastore="prod-ds-01",
            nics=[NicInfo(label="Network adapter 1", network=net, mac=mac or f"00:50:56:00:00:{len(self.vms[site]):02x}")])
        return moref

    def check(self, site: str) -> None:
        pass

    def list_vms(self, site: str) -> list[VmInfo]:
        return [vm.model_copy(deep=True) for vm in self.vms[site].values()]

    def get_vm(self, site: str, key: str) -> VmInfo | None:
        return self.vms[site].get(key)

    def list_items(self, site: str, kind: str) -> list[Item]:
        return list(self.items[site][kind])

    def create_vm(self, site: str, spec: NewVm) -> str:
        if self.fail_create:
            raise VSphereError("datastore full")
        if any(vm.name == spec.name for vm in self.vms[site].values()):
            raise VSphereError(f"The name '{spec.name}' already exists.")
        names = {it.key: it.name for it in self.items[site]["networks"]}
        folders = {it.key: it.name for it in self.items[site]["folders"]}
        moref = f"vm-{next(self._ids)}"
        self.vms[site][moref] = VmInfo(
            moref=moref, name=spec.name, num_cpus=spec.num_cpus, memory_mb=spec.memory_mb,
            folder_moref=spec.folder_key or "folder-3", folder_path=folders.get(spec.folder_key or "folder-3", "/"),
            datastore=spec.datastore, pool_moref=spec.pool_key,
            nics=[NicInfo(label=f"Network adapter {i + 1}", network=names[n.network_key], mac=n.mac)
                  for i, n in enumerate(spec.nics)])
        return moref

    def destroy_vm(self, site: str, key: str) -> bool:
        return self.vms[site].pop(key, None) is not None

    def set_power(self, site: str, key: str, on: bool) -> bool:
        vm = self.vms[site].get(key)
        if vm is None:
            return False
        want = "poweredOn" if on else "poweredOff"
        changed = vm.power_state != want
        vm.power_state = want
        return changed

    def names(self, site: str) -> dict[str, VmInfo]:
        return {vm.name: vm for vm in self.vms[site].values()}


class Clock:
    """Real time plus an offset the test can push forward (for RPO and journal checks)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


FAST: dict[str, Any] = {"checkpoint_interval_s": 0.05, "app_consistent_every": 3, "initial_sync_s": 0.15,
                        "task_duration_s": 0.1}


@pytest.fixture()
def env() -> Iterator[tuple[TestClient, ZertoSim, FakeVSphere, Clock]]:
    backend = FakeVSphere()
    clock = Clock()
    sim = ZertoSim(SimConfig(username=USER, password=PASSWORD, **FAST), backend, clock=clock)
    with TestClient(create_app(sim)) as client:
        yield client, sim, backend, clock
    sim.shutdown()


def login(client: TestClient) -> dict[str, str]:
    r = client.post("/v1/session/add", auth=(USER, PASSWORD), json={"AuthenticationMethod": 1})
    assert r.status_code == 200
    return {"x-zerto-session": r.headers["x-zerto-session"]}


def wait_task(client: TestClient, h: dict[str, str], task_id: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.get(f"/v1/tasks/{task_id}", headers=h).json()
        if task["Status"]["State"] != 1:
            return task
        time.sleep(0.02)
    raise AssertionError(f"task {task_id} still running")


def site_ids(client: TestClient, h: dict[str, str]) -> tuple[str, str]:
    local = client.get("/v1/localsite", headers=h).json()["SiteIdentifier"]
    peer = next(s["SiteIdentifier"] for s in client.get("/v1/virtualizationsites", headers=h).json()
                if s["SiteIdentifier"] != local)
    return local, peer


def vm_ids(client: TestClient, h: dict[str, str]) -> dict[str, str]:
    local, _ = site_ids(client, h)
    return {v["VmName"]: v["VmIdentifier"] for v in client.get(f"/v1/virtualizationsites/{local}/vms", headers=h).json()}


def create_vpg(client: TestClient, h: dict[str, str], name: str = "acme-gold", vms: tuple[str, ...] = ("acme-app01", "acme-web01"),
               rpo: int = 300, wait_sync: bool = True) -> str:
    ids = vm_ids(client, h)
    _, peer = site_ids(client, h)
    nets = {n["VirtualizationNetworkName"]: n["NetworkIdentifier"]
            for n in client.get(f"/v1/virtualizationsites/{peer}/networks", headers=h).json()}
    folders = {f["FolderName"]: f["FolderIdentifier"]
               for f in client.get(f"/v1/virtualizationsites/{peer}/folders", headers=h).json()}
    sid = client.post("/v1/vpgSettings", headers=h, json={}).json()
    basic = client.get(f"/v1/vpgSettings/{sid}/basic", headers=h).json()
    basic.update(Name=name, RpoInSeconds=rpo)
    assert client.put(f"/v1/vpgSettings/{sid}/basic", headers=h, json=basic).status_code == 200
    assert client.put(f"/v1/vpgSettings/{sid}/recovery", headers=h,
                      json={"DefaultFolderIdentifier": folders["acme-dr"]}).status_code == 200
    assert client.put(f"/v1/vpgSettings/{sid}/networks", headers=h, json={
        "Failover": {"Hypervisor": {"DefaultNetworkIdentifier": nets["acme-prod"]}},
        "FailoverTest": {"Hypervisor": {"DefaultNetworkIdentifier": nets["acme-bubble"]}}}).status_code == 200
    for vm in vms:
        assert client.post(f"/v1/vpgSettings/{sid}/vms", headers=h, json={"VmIdentifier": ids[vm]}).status_code == 200
    r = client.post(f"/v1/vpgSettings/{sid}/commit", headers=h)
    assert r.status_code == 200, r.text
    task = wait_task(client, h, r.json())
    assert task["Status"]["State"] == 6, task
    vpg_id = task["RelatedEntities"]["Vpgs"][0]["identifier"]
    if wait_sync:
        wait_status(client, h, vpg_id, S["MeetingSLA"])
    return vpg_id


def wait_status(client: TestClient, h: dict[str, str], vpg_id: str, status: int, timeout: float = 5) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        vpg = client.get(f"/v1/vpgs/{vpg_id}", headers=h).json()
        if vpg["Status"] == status:
            return vpg
        time.sleep(0.02)
    raise AssertionError(f"VPG never reached status {status}: {vpg}")


# --- authentication -------------------------------------------------------------------------


def test_session_auth_and_expiry(env: Any) -> None:
    client, *_ = env
    assert client.get("/v1/vpgs").status_code == 401
    assert client.post("/v1/session/add", auth=(USER, "wrong")).status_code == 401
    assert client.get("/v1/vpgs", headers={"x-zerto-session": "forged"}).status_code == 401
    h = login(client)
    assert client.get("/v1/vpgs", headers=h).json() == []
    assert client.post("/lab/expire-sessions").json()["expired"] >= 1
    r = client.get("/v1/vpgs", headers=h)
    assert r.status_code == 401 and r.json()["Message"].startswith("Authorization has been denied")
    assert client.get("/v1/vpgs", headers=login(client)).status_code == 200


def test_keycloak_password_grant(env: Any) -> None:
    client, *_ = env
    url = "/auth/realms/zerto/protocol/openid-connect/token"
    form = {"grant_type": "password", "client_id": "zerto-client", "username": USER, "password": PASSWORD}
    r = client.post(url, data=form)
    assert r.status_code == 200 and r.json()["token_type"] == "Bearer"
    bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert client.get("/v1/localsite", headers=bearer).status_code == 200
    assert client.post(url, data={**form, "password": "nope"}).json()["error"] == "invalid_grant"
    assert client.post(url, data={**form, "client_id": "other"}).status_code == 401
    assert client.get("/v1/localsite", headers={"Authorization": "Bearer forged"}).status_code == 401


# --- VPGs, checkpoints -------------------------------------------------------------------


def test_vpg_lifecycle_and_checkpoints(env: Any) -> None:
    client, *_ = env
    h = login(client)
    vpg_id = create_vpg(client, h, wait_sync=False)
    first = client.get(f"/v1/vpgs/{vpg_id}", headers=h).json()
    assert first["Status"] == S["Initializing"] and first["SubStatus"] in (SS["InitialSync"], SS["Creating"])
    vpg = wait_status(client, h, vpg_id, S["MeetingSLA"])
    assert vpg["VpgName"] == "acme-gold" and vpg["VmsCount"] == 2 and vpg["ConfiguredRpoSeconds"] == 300
    assert client.get("/v1/vpgs/statuses", headers=h).json()[vpg["Status"]] == "MeetingSLA"
    time.sleep(0.4)
    cps = client.get(f"/v1/vpgs/{vpg_id}/checkpoints", headers=h).json()
    assert len(cps) >= 5
    stamps = [datetime.fromisoformat(c["TimeStamp"]) for c in cps]
    assert stamps == sorted(stamps)
    assert {c["Tag"] for c in cps[2::3]} == {"VSS"} and cps[0]["Tag"] is None
    assert client.get(f"/v1/vpgs/{vpg_id}", headers=h).json()["ActualRPO"] <= 1
    later = client.get(f"/v1/vpgs/{vpg_id}/checkpoints", headers=h).json()
    assert later[-1]["CheckpointIdentifier"] != cps[0]["CheckpointIdentifier"]
    since = client.get(f"/v1/vpgs/{vpg_id}/checkpoints", headers=h,
                       params={"startDate": cps[-1]["TimeStamp"]}).json()
    assert since and since[0]["CheckpointIdentifier"] == cps[-1]["CheckpointIdentifier"]
    tagged = client.post(f"/v1/vpgs/{vpg_id}/Checkpoints", headers=h, json={"checkpointName": "pre-drill"}).json()
    assert tagged["Tag"] == "pre-drill"
    assert tagged in client.get(f"/v1/vpgs/{vpg_id}/checkpoints", headers=h).json()
    # Found by name, listed with its VMs.
    assert [v["VpgIdentifier"] for v in client.get("/v1/vpgs", headers=h, params={"name": "acme-gold"}).json()] == [vpg_id]
    assert {v["VmName"] for v in client.get("/v1/vms", headers=h).json()} == {"acme-app01", "acme-web01"}


def test_rpo_breach_when_replication_link_is_down(env: Any) -> None:
    client, _, _, clock = env
    h = login(client)
    vpg_id = create_vpg(client, h, rpo=60)
    client.post(f"/lab/vpgs/{vpg_id}/replication", json={"paused": True})
    clock.offset += 120
    vpg = client.get(f"/v1/vpgs/{vpg_id}", headers=h).json()
    assert vpg["Status"] == S["RpoNotMeetingSLA"] and vpg["ActualRPO"] >= 120
    assert vpg["SubStatus"] == SS["DisconnectedFromPeer"]
    client.post(f"/lab/vpgs/{vpg_id}/replication", json={"paused": False})
    vpg = client.get(f"/v1/vpgs/{vpg_id}", headers=h).json()
    assert vpg["Status"] == S["MeetingSLA"] and vpg["ActualRPO"] <= 1


def test_commit_validation(env: Any) -> None:
    client, *_ = env
    h = login(client)
    ids = vm_ids(client, h)
    sid = client.post("/v1/vpgSettings", headers=h, json={}).json()
    r = client.post(f"/v1/vpgSettings/{sid}/commit", headers=h)
    assert r.status_code == 400 and "name" in r.json()["Message"].lower()
    client.put(f"/v1/vpgSettings/{sid}/basic", headers=h, json={"Name": "x", "RpoInSeconds": 300})
    assert "at least one VM" in client.post(f"/v1/vpgSettings/{sid}/commit", headers=h).json()["Message"]
    client.post(f"/v1/vpgSettings/{sid}/vms", headers=h, json={"VmIdentifier": ids["acme-db01"][:-3] + "999"})
    assert "not found" in client.post(f"/v1/vpgSettings/{sid}/commit", headers=h).json()["Message"]

    create_vpg(client, h, name="taken", vms=("acme-app01",), wait_sync=False)
    sid = client.post("/v1/vpgSettings", headers=h, json={"Basic": {"Name": "taken"}, "Vms": [{"VmIdentifier": ids["acme-db01"]}]}).json()
    assert "already exists" in client.post(f"/v1/vpgSettings/{sid}/commit", headers=h).json()["Message"]
    sid = client.post("/v1/vpgSettings", headers=h, json={"basic": {"name": "other"}, "vms": [{"vmIdentifier": ids["acme-app01"]}]}).json()
    assert "already protected" in client.post(f"/v1/vpgSettings/{sid}/commit", headers=h).json()["Message"]
    sid = client.post("/v1/vpgSettings", headers=h, json={"Basic": {"Name": "n"}, "Vms": [{"VmIdentifier": ids["acme-db01"]}],
                                                          "Networks": {"Failover": {"Hypervisor": {"DefaultNetworkIdentifier": "nope"}}}}).json()
    assert "Network 'nope' not found" in client.post(f"/v1/vpgSettings/{sid}/commit", headers=h).json()["Message"]


def test_settings_sections_and_nics(env: Any) -> None:
    client, *_ = env
    h = login(client)
    ids = vm_ids(client, h)
    sid = client.post("/v1/vpgSettings", headers=h, json={}).json()
    vm = ids["acme-web01"]
    client.post(f"/v1/vpgSettings/{sid}/vms", headers=h, json={"VmIdentifier": vm})
    nics = client.get(f"/v1/vpgSettings/{sid}/vms/{vm}/nics", headers=h).json()
    assert [n["NicIdentifier"] for n in nics] == ["Network adapter 1"]
    nic = nics[0]
    nic["FailoverTest"]["Hypervisor"]["NetworkIdentifier"] = "acme-bubble"
    assert client.put(f"/v1/vpgSettings/{sid}/vms/{vm}/nics/Network adapter 1", headers=h, json=nic).status_code == 200
    got = client.get(f"/v1/vpgSettings/{sid}/vms/{vm}/nics/network%20adapter%201", headers=h).json()
    assert got["FailoverTest"]["Hypervisor"]["NetworkIdentifier"] == "acme-bubble"
    assert client.get(f"/v1/vpgSettings/{sid}/journal", headers=h).json()["Limitation"]["HardLimitInMB"] > 0
    assert client.get(f"/v1/vpgSettings/{sid}/nonsense", headers=h).status_code == 404
    assert client.delete(f"/v1/vpgSettings/{sid}", headers=h).status_code == 200
    assert client.get(f"/v1/vpgSettings/{sid}", headers=h).status_code == 404


def test_edit_existing_vpg(env: Any) -> None:
    client, *_ = env
    h = login(client)
    vpg_id = create_vpg(client, h, vms=("acme-app01",))
    sid = client.post("/v1/vpgSettings", headers=h, json={"vpgIdentifier": vpg_id}).json()
    doc = client.get(f"/v1/vpgSettings/{sid}", headers=h).json()
    assert doc["VpgIdentifier"] == vpg_id and doc["Basic"]["Name"] == "acme-gold"
    client.post(f"/v1/vpgSettings/{sid}/vms", headers=h, json={"VmIdentifier": vm_ids(client, h)["acme-db01"]})
    task = wait_task(client, h, client.post(f"/v1/vpgSettings/{sid}/commit", headers=h).json())
    assert task["Status"]["State"] == 6
    assert client.get(f"/v1/vpgs/{vpg_id}", headers=h).json()["VmsCount"] == 2
    assert len(client.get("/v1/vpgs", headers=h).json()) == 1


# --- recovery actions ---------------------------------------------------------------------


def test_failover_test_creates_then_removes_vms(env: Any) -> None:
    client, _, backend, _ = env
    h = login(client)
    vpg_id = create_vpg(client, h)
    cp = client.get(f"/v1/vpgs/{vpg_id}/checkpoints", headers=h).json()[0]["CheckpointIdentifier"]
    task_id = client.post(f"/v1/vpgs/{vpg_id}/FailoverTest", headers=h, json={"CheckpointIdentifier": cp}).json()
    running = client.get(f"/v1/tasks/{task_id}", headers=h).json()
    assert running["Status"]["State"] == 1 and running["Progress"] < 100
    assert wait_task(client, h, task_id)["Status"]["State"] == 6
    recovered = backend.names("recovery")
    assert set(recovered) == {"acme-app01 - testing recovery", "acme-web01 - testing recovery"}
    vm = recovered["acme-app01 - testing recovery"]
    assert vm.power_state == "poweredOff" and vm.folder_path == "acme-dr"
    assert [n.network for n in vm.nics] == ["acme-bubble"]
    test = client.get(f"/v1/vpgs/{vpg_id}", headers=h).json()["ActiveProcessesApi"]["RunningFailOverTestApi"]
    assert test["CheckpointIdentifier"] == cp
    # A second test while one runs is refused; so is a failover.
    assert client.post(f"/v1/vpgs/{vpg_id}/FailoverTest", headers=h, json={}).status_code == 400
    assert client.post(f"/v1/vpgs/{vpg_id}/Failover", headers=h, json={}).status_code == 400
    stop = client.post(f"/v1/vpgs/{vpg_id}/FailoverTestStop", headers=h,
                       json={"FailoverTestSuccess": True, "FailoverTestSummary": "bubble ok"}).json()
    assert wait_task(client, h, stop)["Status"]["State"] == 6
    assert backend.vms["recovery"] == {}
    vpg = client.get(f"/v1/vpgs/{vpg_id}", headers=h).json()
    assert vpg["LastTest"] and vpg["ActiveProcessesApi"]["RunningFailOverTestApi"] is None
    assert client.post(f"/v1/vpgs/{vpg_id}/FailoverTestStop", headers=h, json={}).status_code == 400


def test_failover_test_of_some_vms_with_unknown_checkpoint(env: Any) -> None:
    client, _, backend, _ = env
    h = login(client)
    vpg_id = create_vpg(client, h)
    r = client.post(f"/v1/vpgs/{vpg_id}/FailoverTest", headers=h, json={"CheckpointIdentifier": "nope"})
    assert r.status_code == 400 and "Checkpoint" in r.json()["Message"]
    web = vm_ids(client, h)["acme-web01"]
    task = client.post(f"/v1/vpgs/{vpg_id}/failovertest", headers=h, json={"vmIdentifiers": [web]}).json()
    wait_task(client, h, task)
    assert set(backend.names("recovery")) == {"acme-web01 - testing recovery"}


def test_failed_vm_creation_fails_the_task_and_cleans_up(env: Any) -> None:
    client, _, backend, _ = env
    h = login(client)
    vpg_id = create_vpg(client, h)
    backend.fail_create = True
    task = wait_task(client, h, client.post(f"/v1/vpgs/{vpg_id}/FailoverTest", headers=h, json={}).json())
    assert task["Status"]["State"] == 4 and "datastore full" in task["CompleteReason"]
    assert backend.vms["recovery"] == {}
    assert client.get(f"/v1/vpgs/{vpg_id}", headers=h).json()["ActiveProcessesApi"]["RunningFailOverTestApi"] is None


def test_failover_rollback_restores_source(env: Any) -> None:
    client, _, backend, _ = env
    h = login(client)
    vpg_id = create_vpg(client, h)
    task = client.post(f"/v1/vpgs/{vpg_id}/Failover", headers=h, json={"ShutdownPolicy": 1, "CommitPolicy": 2}).json()
    assert wait_task(client, h, task)["Status"]["State"] == 6
    vpg = client.get(f"/v1/vpgs/{vpg_id}", headers=h).json()
    assert (vpg["Status"], vpg["SubStatus"]) == (S["FailingOver"], SS["FailingOverBeforeCommit"])
    rec = backend.names("recovery")
    assert set(rec) == {"acme-app01", "acme-web01"} and rec["acme-app01"].nics[0].network == "acme-prod"
    src = backend.names("protected")
    assert src["acme-app01"].power_state == "poweredOff" and src["acme-db01"].power_state == "poweredOn"
    # The recovered VM keeps the source's MAC address on failover.
    assert rec["acme-app01"].nics[0].mac == src["acme-app01"].nics[0].mac
    assert wait_task(client, h, client.post(f"/v1/vpgs/{vpg_id}/FailoverRollback", headers=h).json())["Status"]["State"] == 6
    assert backend.vms["recovery"] == {}
    assert backend.names("protected")["acme-app01"].power_state == "poweredOn"
    wait_status(client, h, vpg_id, S["MeetingSLA"])


def test_failover_commit_with_reverse_protection_then_move_back(env: Any) -> None:
    client, _, backend, _ = env
    h = login(client)
    local, peer = site_ids(client, h)
    vpg_id = create_vpg(client, h)
    wait_task(client, h, client.post(f"/v1/vpgs/{vpg_id}/Failover", headers=h, json={"ShutdownPolicy": 2}).json())
    task = client.post(f"/v1/vpgs/{vpg_id}/FailoverCommit", headers=h, json={"IsReverseProtection": True}).json()
    assert wait_task(client, h, task)["Status"]["State"] == 6
    vpg = client.get(f"/v1/vpgs/{vpg_id}", headers=h).json()
    assert vpg["ProtectedSite"]["identifier"] == peer and vpg["RecoverySite"]["identifier"] == local
    assert (vpg["Status"], vpg["SubStatus"]) == (S["Initializing"], SS["DeltaSync"])
    assert "acme-app01" not in backend.names("protected") and "acme-app01" in backend.names("recovery")
    wait_status(client, h, vpg_id, S["MeetingSLA"])
    # Failback: a planned move to the original site, committed with reverse protection again.
    assert wait_task(client, h, client.post(f"/v1/vpgs/{vpg_id}/move", headers=h, json={}).json())["Status"]["State"] == 6
    vpg = client.get(f"/v1/vpgs/{vpg_id}", headers=h).json()
    assert (vpg["Status"], vpg["SubStatus"]) == (S["Moving"], SS["MovingBeforeCommit"])
    back = backend.names("protected")["acme-app01"]
    assert back.folder_moref == "folder-9" and back.nics[0].network == "VM Network"
    task = client.post(f"/v1/vpgs/{vpg_id}/moveCommit", headers=h, json={"ReverseProtection": True}).json()
    assert wait_task(client, h, task)["Status"]["State"] == 6
    assert "acme-app01" not in backend.names("recovery")
    assert client.get(f"/v1/vpgs/{vpg_id}", headers=h).json()["ProtectedSite"]["identifier"] == local


def test_failover_commit_without_reverse_leaves_vpg_recovered(env: Any) -> None:
    client, _, backend, _ = env
    h = login(client)
    vpg_id = create_vpg(client, h)
    task = client.post(f"/v1/vpgs/{vpg_id}/Failover", headers=h, json={"CommitPolicy": 1}).json()
    assert wait_task(client, h, task)["Status"]["State"] == 6
    vpg = client.get(f"/v1/vpgs/{vpg_id}", headers=h).json()
    assert (vpg["Status"], vpg["SubStatus"]) == (S["Recovered"], SS["NeedsConfiguration"])
    assert "acme-app01" in backend.names("recovery") and "acme-app01" in backend.names("protected")
    assert client.post(f"/v1/vpgs/{vpg_id}/FailoverRollback", headers=h).status_code == 400


def test_delete_vpg(env: Any) -> None:
    client, *_ = env
    h = login(client)
    vpg_id = create_vpg(client, h)
    wait_task(client, h, client.post(f"/v1/vpgs/{vpg_id}/FailoverTest", headers=h, json={}).json())
    assert client.delete(f"/v1/vpgs/{vpg_id}", headers=h).status_code == 400  # test running
    task = client.request("DELETE", f"/v1/vpgs/{vpg_id}", headers=h, json={"Force": True}).json()
    assert wait_task(client, h, task)["Status"]["State"] == 6
    assert client.get(f"/v1/vpgs/{vpg_id}", headers=h).status_code == 404
    assert env[2].vms["recovery"] == {}


# --- faults and protocol details -------------------------------------------------------------


def test_fault_http503_counts_down_and_honours_path_regex(env: Any) -> None:
    client, *_ = env
    h = login(client)
    client.post("/lab/faults", json={"mode": "http503", "count": 2, "path_regex": "^/v1/vpgs$"})
    assert client.get("/v1/localsite", headers=h).status_code == 200
    codes = [client.get("/v1/vpgs", headers=h).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    client.post("/lab/faults", json={"mode": "http503"})
    assert client.get("/v1/localsite", headers=h).status_code == 503
    assert client.get("/lab/state").status_code == 200  # the control API is never faulted
    client.delete("/lab/faults")
    assert client.get("/v1/localsite", headers=h).status_code == 200


def test_fault_slow_and_drop(env: Any) -> None:
    client, *_ = env
    h = login(client)
    client.post("/lab/faults", json={"mode": "slow", "count": 1, "delay_s": 0.3})
    t0 = time.monotonic()
    assert client.get("/v1/vpgs", headers=h).status_code == 200
    assert time.monotonic() - t0 >= 0.3
    client.post("/lab/faults", json={"mode": "drop", "count": 1})
    with pytest.raises(ConnectionResetError):
        client.get("/v1/vpgs", headers=h)
    assert client.get("/v1/vpgs", headers=h).status_code == 200
    assert client.post("/lab/faults", json={"mode": "explode"}).status_code == 400


def test_fault_task_failed(env: Any) -> None:
    client, _, backend, _ = env
    h = login(client)
    vpg_id = create_vpg(client, h)
    client.post("/lab/faults", json={"mode": "task_failed", "count": 1, "path_regex": "failovertest$"})
    task = wait_task(client, h, client.post(f"/v1/vpgs/{vpg_id}/FailoverTest", headers=h, json={}).json())
    assert task["Status"]["State"] == 4 and "task_failed" in task["CompleteReason"]
    assert backend.vms["recovery"] == {}
    task = wait_task(client, h, client.post(f"/v1/vpgs/{vpg_id}/FailoverTest", headers=h, json={}).json())
    assert task["Status"]["State"] == 6


def test_malformed_json_and_case_insensitive_routes(env: Any) -> None:
    client, *_ = env
    h = login(client)
    r = client.post("/v1/vpgSettings", headers={**h, "content-type": "application/json"}, content=b"{oops")
    assert r.status_code == 400 and "JSON" in r.json()["Message"]
    assert client.get("/V1/VPGS", headers=h).status_code == 200
    assert client.get("/v1/vpgs/00000000-0000-0000-0000-000000000001", headers=h).status_code == 404


def test_lab_reset_removes_recovered_vms(env: Any) -> None:
    client, _, backend, _ = env
    h = login(client)
    vpg_id = create_vpg(client, h)
    wait_task(client, h, client.post(f"/v1/vpgs/{vpg_id}/FailoverTest", headers=h, json={}).json())
    assert len(backend.vms["recovery"]) == 2
    assert client.post("/lab/reset").json() == {"removed_vpgs": 1, "removed_vms": 2}
    assert backend.vms["recovery"] == {} and client.get("/v1/vpgs", headers=h).json() == []


def test_journal_is_pruned_to_history() -> None:
    backend, clock = FakeVSphere(), Clock()
    cfg = SimConfig(username=USER, password=PASSWORD, **{**FAST, "checkpoint_interval_s": 60})
    sim = ZertoSim(cfg, backend, clock=clock)
    try:
        with TestClient(create_app(sim)) as client:
            h = login(client)
            vpg_id = create_vpg(client, h)
            sid = client.post("/v1/vpgSettings", headers=h, json={"VpgIdentifier": vpg_id}).json()
            client.put(f"/v1/vpgSettings/{sid}/basic", headers=h, json={"Name": "acme-gold", "JournalHistoryInHours": 1})
            wait_task(client, h, client.post(f"/v1/vpgSettings/{sid}/commit", headers=h).json())
            clock.offset += 3 * 3600  # three hours later: only the last hour stays in the journal
            assert client.get("/v1/vpgs", headers=h).status_code == 401  # idle sessions expire too
            h = login(client)
            cps = client.get(f"/v1/vpgs/{vpg_id}/checkpoints", headers=h).json()
            assert 55 <= len(cps) <= 61
            oldest = datetime.fromisoformat(cps[0]["TimeStamp"]).timestamp()
            assert clock() - oldest <= 3600
            vpg = client.get(f"/v1/vpgs/{vpg_id}", headers=h).json()
            assert vpg["ActualRPO"] <= 60 and vpg["ConfiguredHistoryInMinutes"] == 60
    finally:
        sim.shutdown()


# --- fidelity: error shape, list-of-values endpoints, version --------------------------------


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/no-such-resource", 404),
    ("GET", "/v1/vpgs/00000000-0000-0000-0000-000000000001/nothing/here", 404),
    ("PATCH", "/v1/vpgs", 405),
    ("DELETE", "/v1/localsite", 405),
    ("GET", "/lab/no-such-control", 404),
])
def test_every_error_has_the_zvm_body(env: Any, method: str, path: str, status: int) -> None:
    client, *_ = env
    r = client.request(method, path, headers=login(client))
    assert r.status_code == status
    body = r.json()
    assert set(body) == {"Message"} and body["Message"] and "detail" not in body
    if status == 405:
        assert method in body["Message"]


def test_list_of_values_endpoints_serve_the_documented_values(env: Any) -> None:
    client, *_ = env
    h = login(client)
    expected = {
        "priorities": ["Low", "Medium", "High"],
        "failovercommitpolicies": ["Rollback", "Commit", "None"],
        "failovershutdownpolicies": ["None", "Shutdown", "ForceShutdown"],
        "retentionpolicies": ["Backup", "Standard"],
        "entitytypes": ["VCVpg", "VCvApp", "VCDvApp", "AWS", "HyperV"],
    }
    for name, values in expected.items():
        r = client.get(f"/v1/vpgs/{name}", headers=h)
        assert r.status_code == 200 and r.json() == values, name
    statuses = client.get("/v1/vpgs/statuses", headers=h).json()
    assert statuses[:5] == ["Initializing", "MeetingSLA", "NotMeetingSLA", "HistoryNotMeetingSLA", "RpoNotMeetingSLA"]
    assert client.get("/v1/vpgs/substatuses", headers=h).json()[15] == "FailingOverBeforeCommit"
    assert client.get("/v1/VPGS/Priorities", headers=h).json() == expected["priorities"]  # IIS: any case
    assert client.get("/v1/vpgs/priorities").status_code == 401  # like every API call
    # The numbers a client sends are the indexes of these lists.
    vpg_id = create_vpg(client, h, wait_sync=True)
    vpg = client.get(f"/v1/vpgs/{vpg_id}", headers=h).json()
    assert expected["priorities"][vpg["Priority"]] == "Medium"


def test_localsite_version_matches_the_keycloak_login(env: Any) -> None:
    client, *_ = env
    token = client.post("/auth/realms/zerto/protocol/openid-connect/token", data={
        "grant_type": "password", "client_id": "zerto-client", "username": USER, "password": PASSWORD}).json()
    site = client.get("/v1/localsite", headers={"Authorization": f"Bearer {token['access_token']}"}).json()
    assert site["Version"].split(".")[0] == "10"  # Keycloak login is the 10.x appliance's
    assert all(p["Version"] == site["Version"] for p in client.get("/v1/peersites", headers=login(client)).json())


def test_fault_task_stuck_never_ends_until_forced_removal(env: Any) -> None:
    client, *_ = env
    h = login(client)
    vpg_id = create_vpg(client, h)
    client.post("/lab/faults", json={"mode": "task_stuck", "count": 1, "path_regex": "failovertest$"})
    task_id = client.post(f"/v1/vpgs/{vpg_id}/FailoverTest", headers=h, json={}).json()
    time.sleep(FAST["task_duration_s"] * 3)
    task = client.get(f"/v1/tasks/{task_id}", headers=h).json()
    assert task["Status"]["State"] == 1 and task["Progress"] < 100
    assert client.get("/lab/faults").json() == []  # used up
    busy = client.post(f"/v1/vpgs/{vpg_id}/FailoverTest", headers=h, json={})
    assert busy.status_code == 400 and "in progress" in busy.json()["Message"]
    removal = client.request("DELETE", f"/v1/vpgs/{vpg_id}", headers=h, json={"Force": True}).json()
    assert wait_task(client, h, removal)["Status"]["State"] == 6
    assert client.get(f"/v1/vpgs/{vpg_id}", headers=h).status_code == 404

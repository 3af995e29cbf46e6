"""setup-protection against the lab: settings as configured, synced, checkpointed, idempotent, undone.

Every assertion about the groups reads the replication manager's own REST API (the ZVM
simulator, over httpx with its own session), never the flow's claims.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from draas.protection import build_specs
from draas.site import Site
from draas.state.store import StateStore
from draas.validation import load_tenant

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TENANT = "globex"  # two groups (CDP with a journal, snapshots without), re-IP by rule and by address
GROUPS = ["globex-db", "globex-apps"]


def vpgs(zvm: httpx.Client) -> dict[str, dict[str, Any]]:
    response = zvm.get("/v1/vpgs")
    response.raise_for_status()
    return {v["VpgName"]: v for v in response.json()}


def settings_of(zvm: httpx.Client, vpg_id: str) -> dict[str, Any]:
    """The group's settings as the manager holds them (an edit session opened and discarded)."""
    sid = zvm.post("/v1/vpgSettings", json={"VpgIdentifier": vpg_id})
    sid.raise_for_status()
    sid_value = sid.json() if isinstance(sid.json(), str) else sid.json()["VpgSettingsIdentifier"]
    try:
        doc = zvm.get(f"/v1/vpgSettings/{sid_value}")
        doc.raise_for_status()
        return doc.json()
    finally:
        zvm.delete(f"/v1/vpgSettings/{sid_value}")


def names(zvm: httpx.Client, site_id: str, kind: str, id_field: str, name_field: str) -> dict[str, str]:
    response = zvm.get(f"/v1/virtualizationsites/{site_id}/{kind}")
    response.raise_for_status()
    return {str(i[id_field]): str(i[name_field]) for i in response.json()}


def vm_names(zvm: httpx.Client, site_id: str) -> dict[str, str]:
    return names(zvm, site_id, "vms", "VmIdentifier", "VmName")


ADDED_VM = "globex-app02"


def config_with_added_vm(tmp_path: Path) -> Path:
    """A copy of configs/ where globex-apps also protects ``ADDED_VM``."""
    configs = tmp_path / "configs-added"
    shutil.copytree(PROJECT_ROOT / "configs", configs)
    globex = configs / "tenants" / "globex.yaml"
    text = globex.read_text()
    machine = (f"  - name: {ADDED_VM}\n    os_family: linux\n    disks:\n      - {{name: root, size_gb: 20}}\n"
               "    change_rate_gb_per_day: 1\n    nics:\n"
               "      - {ip: 10.20.2.21, vlan: globex-app, mapping: re_ip, recovery_ip: 10.120.2.26}\n\n")
    assert "  - name: globex-web01\n" in text and "machines: [globex-app01, globex-web01]" in text
    text = text.replace("  - name: globex-web01\n", machine + "  - name: globex-web01\n", 1)
    globex.write_text(text.replace("machines: [globex-app01, globex-web01]",
                                   f"machines: [globex-app01, globex-web01, {ADDED_VM}]"))
    return configs


def test_capacity_violation_is_refused_and_creates_nothing(flows_env: Path, zvm: httpx.Client, tmp_path: Path) -> None:
    from draas.protection import ProtectionCapacityExceeded
    from flows.protection import setup_protection

    configs = tmp_path / "configs"
    shutil.copytree(PROJECT_ROOT / "configs", configs)
    globex = configs / "tenants" / "globex.yaml"
    line = "      - {name: data, size_gb: 400}\n"
    extra = "".join(f"      - {{name: data{i}, size_gb: 10}}\n" for i in range(39))  # 2 + 39 = 41 disks
    assert line in globex.read_text()
    globex.write_text(globex.read_text().replace(line, line + extra))

    with pytest.raises(ProtectionCapacityExceeded) as info:
        setup_protection(TENANT, config_dir=str(configs))

    assert info.value.problems == ["master target globex-mt-lnx01 (groups globex-db): 41 protected disks; "
                                   "at most 40 disks per master target"]
    assert not set(GROUPS) & set(vpgs(zvm))
    store = StateStore()
    assert store.objects(TENANT) == []
    (entry,) = [e for e in store.audit_log() if e.action == "setup_protection"]
    assert entry.outcome == "refused" and "40 disks per master target" in entry.detail["reason"]


@pytest.fixture(scope="module")
def container(flows_env: Path) -> Iterator[None]:
    """The tenant onboarded and its container built (the recovery networks, folder and pool the groups use)."""
    from flows.onboard import onboard_tenant
    from flows.preprovision import preprovision_container

    onboard_tenant(TENANT, output_dir=str(flows_env / "out"))
    preprovision_container(TENANT)
    yield


def test_failure_part_way_removes_this_runs_groups(flows_env: Path, container: None, zvm: httpx.Client) -> None:
    from draas.clients.replication import ReplicationDeadlineExceeded
    from flows.protection import setup_protection

    store = StateStore()
    # The lab's initial sync takes 3 s: a 0.5 s sync deadline fails the first group after its creation.
    with pytest.raises(ReplicationDeadlineExceeded):
        setup_protection(TENANT, sync_timeout_s=0.5)

    assert not set(GROUPS) & set(vpgs(zvm))
    (run,) = [r for r in store.runs() if r.flow == "setup-protection"]
    assert (run.state, run.outcome) == ("Failed", "failure")
    assert store.run_objects(run.id) == []  # recorded, then removed through the ledger
    steps = [(s.step, s.target) for s in store.steps(run.id)]
    assert ("create_vpg", "globex-db") in steps and ("remove_recorded_object", "replication:globex-db") in steps
    assert [c for c in store.changes_since_last_successful_drill(TENANT) if c.kind == "protection_changed"] == []
    assert store.protection_groups(TENANT) == []


def test_run_killed_during_sync_is_swept(flows_env: Path, container: None, zvm: httpx.Client) -> None:
    """SIGKILL the flow's process while its first group syncs; the sweeper removes the group."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.states import Crashed

    from flows.sweep import sweep_orphans

    store = StateStore()
    child_env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_LOGGING_LEVEL": "WARNING"}
    code = f"from flows.protection import setup_protection; setup_protection({TENANT!r}, sync_timeout_s=120)"
    with open(flows_env / "killed.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=child_env,
                                stdout=subprocess.DEVNULL, stderr=log)
    try:
        end = time.monotonic() + 120
        while "globex-db" not in vpgs(zvm):  # created: its initial sync (3 s in the lab) is under way
            assert proc.poll() is None, (flows_env / "killed.log").read_text()[-3000:]
            assert time.monotonic() < end, "the group was not created in time"
            time.sleep(0.1)
        assert vpgs(zvm)["globex-db"]["Status"] == 0, "not killed during the initial sync"  # 0: Initializing
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (run,) = [r for r in store.runs(TENANT) if r.flow == "setup-protection" and r.state == "Running"]
    assert {r.name for r in store.run_objects(run.id)} == {"globex-db"}
    with get_client(sync_client=True) as client:  # as the worker that ran it would
        client.set_flow_run_state(UUID(run.id), Crashed(message="process killed"), force=True)

    result = sweep_orphans(older_than_minutes=0, requested_by="ops@provider.example")

    assert [s.run_id for s in result.swept] == [run.id]
    assert "globex-db" not in vpgs(zvm), "the killed run's group is still protected"
    swept = store.get_run(run.id)
    assert (swept.state, swept.outcome, swept.crash_policy) == ("Crashed", "swept", "undo")
    assert store.run_objects(run.id) == []
    assert store.lease(TENANT) is None


def test_protection_lifecycle(flows_env: Path, container: None, zvm: httpx.Client, tmp_path: Path) -> None:
    from flows.offboard import offboard_tenant
    from flows.protection import setup_protection

    store = StateStore()
    tenant = load_tenant(TENANT)
    specs = {s.name: s for s in build_specs(tenant, Site.for_config_dir(None))}

    first = setup_protection(TENANT, sync_timeout_s=60)

    assert first.changed
    assert [g.name for g in first.groups] == GROUPS
    found = vpgs(zvm)
    local = zvm.get("/v1/localsite").json()["SiteIdentifier"]
    for group in first.groups:
        spec = specs[group.name]
        vpg = found[group.name]
        # The manager's view: synced, RPO as configured and within target.
        assert vpg["VpgIdentifier"] == group.group_id
        assert vpg["ConfiguredRpoSeconds"] == spec.rpo_seconds
        assert vpg["Status"] == 1  # MeetingSLA
        assert 0 <= vpg["ActualRPO"] <= spec.rpo_seconds
        assert group.actual_rpo_s <= group.rpo_target_s == spec.rpo_seconds
        # Exactly the configured settings.
        doc = settings_of(zvm, vpg["VpgIdentifier"])
        basic = doc["Basic"]
        assert basic["RpoInSeconds"] == spec.rpo_seconds
        assert basic["JournalHistoryInHours"] == spec.journal_history_hours
        assert basic["UseWanCompression"] is True
        assert basic["Priority"] == spec.priority
        limits = (doc.get("Journal") or {}).get("Limitation") or {}
        if spec.journal_hard_limit_mb is not None:  # the CDP group; snapshot groups keep the manager's default
            assert limits["HardLimitInMB"] == spec.journal_hard_limit_mb == 180_000  # 60 GB/day x 72 h
            assert limits["WarningThresholdInMB"] == spec.journal_warning_mb == 144_000
        recovery_site = basic["RecoverySiteIdentifier"]
        networks = names(zvm, recovery_site, "networks", "NetworkIdentifier", "VirtualizationNetworkName")
        folders = names(zvm, recovery_site, "folders", "FolderIdentifier", "FolderName")
        pools = names(zvm, recovery_site, "resourcepools", "ResourcePoolIdentifier", "ResourcepoolName")
        clusters = names(zvm, recovery_site, "hostclusters", "ClusterIdentifier", "VirtualizationClusterName")
        stores = names(zvm, recovery_site, "datastores", "DatastoreIdentifier", "DatastoreName")
        rec = doc["Recovery"]
        assert folders[rec["DefaultFolderIdentifier"]] == "globex"
        assert pools[rec["ResourcePoolIdentifier"]] == "globex"
        assert clusters[rec["DefaultHostClusterIdentifier"]] == "DR-Cluster"
        assert stores[rec["DefaultDatastoreIdentifier"]] == spec.recovery_datastore
        source_vms = vm_names(zvm, local)
        entries = {source_vms[str(v["VmIdentifier"])]: v for v in doc["Vms"]}
        assert sorted(entries) == sorted(m.vm for m in spec.members)
        for member in spec.members:
            nics = {n["NicIdentifier"]: n for n in entries[member.vm]["Nics"]}
            for mapping in member.nics:
                nic = nics[mapping.nic]
                for side in ("Failover", "FailoverTest"):
                    hyp = nic[side]["Hypervisor"]
                    machine = tenant.machine(member.vm)
                    assert networks[hyp["NetworkIdentifier"]] == tenant.vlan(machine.nics[0].vlan).recovery_port_group
                    assert hyp["ShouldReplaceIpConfiguration"] is True
                    assert hyp["IpConfig"]["StaticIp"] == str(tenant.recovery_ip(machine.nics[0]))
                    assert hyp["IpConfig"]["Gateway"] == str(tenant.vlan(machine.nics[0].vlan).gateway)
        # An application-consistent checkpoint exists, tagged by the run.
        points = zvm.get(f"/v1/vpgs/{vpg['VpgIdentifier']}/checkpoints").json()
        assert group.checkpoint_id in {p["CheckpointIdentifier"] for p in points}
        assert any(p.get("Tag") == "app-consistent" for p in points)
    # Globex-db01 re-IP by rule, globex-app01 by static address.
    db_nic = specs["globex-db"].members[0].nics[0].failover_ip
    app_nic = specs["globex-apps"].members[0].nics[0].failover_ip
    assert db_nic is not None and db_nic.ip == "10.120.1.10"
    assert app_nic is not None and app_nic.ip == "10.120.2.25"

    # `draas plan` reads the checkpoints back and shows which the retention policy keeps.
    from typer.testing import CliRunner

    from draas.cli import app

    shown = CliRunner().invoke(app, ["plan", "--tenant", TENANT], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    for group in first.groups:
        assert f"{group.name}: recovery points the retention policy keeps" in shown.output
        assert group.checkpoint_id is not None and group.checkpoint_id in shown.output
    assert "app-consistent" in shown.output and "tier 1 (keep all" in shown.output

    # Ledger records and the state store's groups; the changes await the next drill.
    records = [r for r in store.objects(TENANT) if r.system == "replication"]
    assert sorted(r.name for r in records) == sorted(GROUPS)
    assert {g.name: g.vpg_id for g in store.protection_groups(TENANT)} == {g.name: g.group_id for g in first.groups}
    untested = [c for c in store.changes_since_last_successful_drill(TENANT) if c.kind == "protection_changed"]
    assert sorted(c.subject for c in untested) == sorted(GROUPS)

    # A re-run changes nothing.
    second = setup_protection(TENANT, sync_timeout_s=60)
    assert not second.changed
    assert [s.step for s in second.steps if s.changed] == []
    assert {n: v["VpgIdentifier"] for n, v in vpgs(zvm).items() if n in GROUPS} == \
        {g.name: g.group_id for g in first.groups}
    assert len([c for c in store.changes_since_last_successful_drill(TENANT) if c.kind == "protection_changed"]) == 2

    # Convergence: a VM added to a group is protected, and removed again when the config drops it.
    configs = config_with_added_vm(tmp_path)
    with Site.for_config_dir(None).vcenter_block("protected").get_client() as vc:
        vc.create_vm(ADDED_VM, folder=TENANT, network="VM Network", cpus=1, memory_mb=512, disk_gb=1)
    try:
        added = setup_protection(TENANT, config_dir=str(configs), sync_timeout_s=60)
        assert [(s.target, s.diff) for s in added.steps if s.step == "create_vpg" and s.changed] == [
            ("globex-apps", [f"+ vm {ADDED_VM}"])]
        source_vms = vm_names(zvm, local)
        apps = vpgs(zvm)["globex-apps"]
        members = {source_vms[str(v["VmIdentifier"])] for v in settings_of(zvm, apps["VpgIdentifier"])["Vms"]}
        assert members == {"globex-app01", "globex-web01", ADDED_VM}
        assert apps["VpgIdentifier"] == {g.name: g.group_id for g in first.groups}["globex-apps"]
        changes = [c for c in store.changes_since_last_successful_drill(TENANT) if c.kind == "protection_changed"]
        assert [(c.subject, c.description) for c in changes[2:]] == [("globex-apps", f"+ vm {ADDED_VM}")]

        removed = setup_protection(TENANT, sync_timeout_s=60)
        assert [(s.target, s.diff) for s in removed.steps if s.step == "create_vpg" and s.changed] == [
            ("globex-apps", [f"- vm {ADDED_VM}"])]
        apps = vpgs(zvm)["globex-apps"]
        members = {source_vms[str(v["VmIdentifier"])] for v in settings_of(zvm, apps["VpgIdentifier"])["Vms"]}
        assert members == {"globex-app01", "globex-web01"}
    finally:
        with Site.for_config_dir(None).vcenter_block("protected").get_client() as vc:
            vc.destroy_vm(f"{TENANT}/{ADDED_VM}")

    # Offboarding removes the groups through the ledger.
    offboard_tenant(TENANT)
    assert not set(GROUPS) & set(vpgs(zvm))
    assert [r for r in store.objects(TENANT) if r.system == "replication"] == []

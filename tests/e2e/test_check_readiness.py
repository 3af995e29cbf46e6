"""check-readiness against the lab: ready after protection, then a VM no group protects and a moved NIC.

The tenant is onboarded, its container built and its machines protected first; the drift is
made in the protected vCenter through pyVmomi (a new VM in the tenant's folder, a NIC moved to
another port group) and undone afterwards. Offboarding at the end leaves the lab as it was.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from draas.cli import app
from draas.site import Site
from draas.state.store import StateStore
from e2e.prefect_api import artifacts_of
from e2e.tenants import protected_tenant

TENANT = "acme"
GROUPS = ["acme-windows", "acme-linux"]
ROGUE_VM = "acme-rogue01"  # created by the test, protected by nothing
MOVED_VM = "acme-web01"  # protected by acme-linux; its NIC is moved to QUARANTINE and back
QUARANTINE = "acme-quarantine"


@pytest.fixture(scope="module")
def protected(flows_env: Path) -> Iterator[None]:
    """The tenant onboarded, its container built and its groups protected; offboarded afterwards."""
    with protected_tenant(TENANT, flows_env / "out", sync_timeout_s=60):
        yield


def protected_vcenter():  # type: ignore[no-untyped-def]
    return Site.for_config_dir(None).vcenter_block("protected").get_client()


def test_a_clean_estate_is_ready_with_its_untested_changes(protected: None) -> None:
    from flows.readiness import REPORT_KIND, check_readiness

    report = check_readiness(TENANT)

    assert report.ready, report.summary()
    assert report.blocking == []
    assert report.unprotected_vms == [] and report.settings_drift == [] and report.missing_networks == []
    assert report.nic_changes == [] and report.capacity == []
    # Pre-provisioning built the container and setup-protection created both groups: untested so far.
    protection = [f.subject for f in report.untested_changes if f.detail.startswith("protection_changed at ")]
    assert sorted(protection) == sorted(GROUPS)
    assert any(f.detail.startswith("container_") or "container" in f.subject for f in report.untested_changes)
    # The lab's VMs have one disk; the config declares more: reported, not blocking.
    assert {f.subject for f in report.disk_changes} >= {"acme-dc01", "acme-sql01"}
    assert not any(f.blocking for f in report.disk_changes)
    assert {v.name for v in report.inventory} == {"acme-dc01", "acme-sql01", "acme-app01", "acme-web01",
                                                  "acme-web02"}

    stored = StateStore().reports(TENANT, kind=REPORT_KIND)
    assert len(stored) == 1 and stored[0].format == "json"
    assert json.loads(stored[0].content)["ready"] is True and stored[0].title == report.summary()
    run_id = stored[0].run_id
    assert run_id is not None
    keys = {a.key for a in artifacts_of(run_id)}
    assert {"readiness-acme", "readiness-acme-unprotected-vms", "readiness-acme-nic-changes",
            "readiness-acme-untested-changes"} <= keys


def test_an_unprotected_vm_and_a_moved_nic_are_found(protected: None) -> None:
    from flows.readiness import check_readiness

    store = StateStore()
    with protected_vcenter() as vc:
        vc.create_portgroup(QUARANTINE, 3999)
        vc.create_vm(ROGUE_VM, folder=TENANT, network="VM Network", cpus=1, memory_mb=512, disk_gb=1)
        vc.move_vm_nic(f"{TENANT}/{MOVED_VM}", QUARANTINE)
    try:
        report = check_readiness(TENANT)

        assert not report.ready
        assert [(f.subject, f.blocking) for f in report.unprotected_vms] == [(ROGUE_VM, True)]
        assert "not in the config and protected by no group" in report.unprotected_vms[0].detail
        assert [(f.subject, f.detail) for f in report.nic_changes] == [
            (MOVED_VM, f"Network adapter 1 moved VM Network -> {QUARANTINE} since the previous check")]
        # The move is an untested change from now on, in the report and in the state store.
        (change,) = [c for c in store.changes_since_last_successful_drill(TENANT) if c.kind == "nic_changed"]
        assert change.subject == MOVED_VM and QUARANTINE in change.description
        assert any(f.subject == MOVED_VM and "nic_changed" in f.detail for f in report.untested_changes)
        assert report.settings_drift == []  # the manager still holds what the config asks

        result = CliRunner().invoke(app, ["readiness", "--tenant", TENANT])
        assert result.exit_code == 1, result.output
        assert result.output.splitlines()[0].startswith("acme: NOT ready (1 blocking)")
        assert f"BLOCKING {ROGUE_VM}: in folder acme, not in the config and protected by no group" in result.output
        assert f"{MOVED_VM}: nic_changed at " in result.output  # listed as untested (no longer new)

        as_json = CliRunner().invoke(app, ["readiness", "--tenant", TENANT, "--json"])
        assert as_json.exit_code == 1, as_json.output
        data = json.loads(as_json.output)
        assert data["ready"] is False and [f["subject"] for f in data["unprotected_vms"]] == [ROGUE_VM]
    finally:
        with protected_vcenter() as vc:
            vc.destroy_vm(f"{TENANT}/{ROGUE_VM}")
            vc.move_vm_nic(f"{TENANT}/{MOVED_VM}", "VM Network")
            vc.destroy("portgroup", QUARANTINE)


def edit_group(name: str, change: Callable[[dict[str, Any], dict[str, str]], None]) -> dict[str, Any]:
    """Change a group's settings behind the product's back (an edit session committed on the ZVM).

    ``change(doc, ids)`` edits the settings document in place (``ids``: recovery network and
    protected VM name -> id). Returns the settings as they were, for :func:`restore_group`.
    """
    with Site.for_config_dir(None).replication_block().get_client() as zvm:
        group = zvm.find_group(name)
        assert group is not None and group.recovery_site_id and group.protected_site_id
        ids = {n.name: n.id for n in zvm.inventory(group.recovery_site_id, "networks")}
        ids.update({vm.name: vm.id for vm in zvm.inventory(group.protected_site_id, "vms")})
        sid = zvm.request("POST", "/v1/vpgSettings", json={"VpgIdentifier": group.id})
        doc = zvm.request("GET", f"/v1/vpgSettings/{sid}")
        before = copy.deepcopy(doc)
        change(doc, ids)
        zvm.request("PUT", f"/v1/vpgSettings/{sid}", json=doc)
        zvm.wait_task(zvm.request("POST", f"/v1/vpgSettings/{sid}/commit"), timeout_s=60)
    return before


def restore_group(name: str, before: dict[str, Any]) -> None:
    def back(doc: dict[str, Any], ids: dict[str, str]) -> None:
        doc.update({k: v for k, v in before.items() if k not in ("VpgSettingsIdentifier", "VpgIdentifier")})

    edit_group(name, back)


def test_settings_changed_in_the_manager_are_drift(protected: None) -> None:
    from flows.readiness import check_readiness

    def drift(doc: dict[str, Any], ids: dict[str, str]) -> None:
        doc["Basic"]["Priority"] = "Low"
        (web01,) = [v for v in doc["Vms"] if v["VmIdentifier"] == ids[MOVED_VM]]
        failover = web01["Nics"][0]["Failover"]["Hypervisor"]
        assert failover["NetworkIdentifier"] == ids["acme-web"]
        failover["NetworkIdentifier"] = ids["acme-app"]

    before = edit_group("acme-linux", drift)
    try:
        report = check_readiness(TENANT)
        assert not report.ready
        assert sorted((f.subject, f.detail) for f in report.settings_drift) == [
            ("acme-linux", "~ priority: Low -> High"),
            ("acme-linux", "~ vm acme-web01 nic Network adapter 1 Failover Network: acme-app -> acme-web")]
        assert all(f.blocking for f in report.settings_drift)
    finally:
        restore_group("acme-linux", before)
    assert check_readiness(TENANT).settings_drift == []


def test_the_cli_exits_0_when_ready_and_2_on_bad_input(protected: None) -> None:
    result = CliRunner().invoke(app, ["readiness", "--tenant", TENANT])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("acme: ready")
    # Both moves of the NIC are untested changes now (the move back was seen by the previous check).
    untested = result.output.split("Untested changes since the last successful drill:")[1]
    assert f"moved VM Network -> {QUARANTINE}" in untested and f"moved {QUARANTINE} -> VM Network" in untested

    unknown = CliRunner().invoke(app, ["readiness", "--tenant", "nosuchtenant"])
    assert unknown.exit_code == 2, unknown.output
    assert "nosuchtenant" in unknown.output

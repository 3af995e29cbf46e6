"""The readiness comparison (draas.readiness.assess) on the ACME sample and modified views of it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from draas.models.tenant import TenantConfig
from draas.models.vcenter import DiskInfo, NicInfo, ResourceAllocation, VmInfo
from draas.protection import build_specs
from draas.readiness import (
    CATEGORIES,
    MHZ_PER_VCPU,
    DiskState,
    ManagedGroup,
    ManagerView,
    NicState,
    ProtectedInventory,
    ReadinessReport,
    RecoveryInventory,
    UntestedChange,
    VmState,
    assess,
    recovery_networks,
    render_text,
)
from draas.site import Site
from draas.validation import load_tenant

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def acme() -> TenantConfig:
    return load_tenant("acme")


@pytest.fixture(scope="module")
def specs(acme: TenantConfig) -> list:
    return build_specs(acme, Site.for_config_dir(None))


def vm_as_configured(tenant: TenantConfig, name: str, memory_mb: int = 4096, cpus: int = 2) -> VmState:
    machine = tenant.machine(name)
    return VmState(name=name, cpus=cpus, memory_mb=memory_mb,
                   disks=[DiskState(label=f"Hard disk {i + 1}", capacity_gb=d.size_gb)
                          for i, d in enumerate(machine.disks)],
                   nics=[NicState(label=f"Network adapter {i + 1}", network="VM Network", ip=str(n.ip))
                         for i, n in enumerate(machine.nics)])


def clean(tenant: TenantConfig) -> tuple[ProtectedInventory, ManagerView, RecoveryInventory]:
    protected = ProtectedInventory(folder="acme", vms=[vm_as_configured(tenant, m.name) for m in tenant.machines])
    manager = ManagerView(groups=[ManagedGroup(name=g.name, status="MeetingSLA/None", members=list(g.machines))
                                  for g in tenant.protection_groups])
    recovery = RecoveryInventory(networks={n: True for n in recovery_networks(tenant)}, pool="acme",
                                 allocation=ResourceAllocation(memory_reservation_mb=32768, cpu_reservation_mhz=16000))
    return protected, manager, recovery


def run(tenant: TenantConfig, specs: list, protected: ProtectedInventory, manager: ManagerView,
        recovery: RecoveryInventory, **kw) -> ReadinessReport:
    return assess(tenant, specs, protected, manager, recovery, now=NOW, **kw)


def test_a_clean_estate_is_ready_and_lists_untested_changes(acme: TenantConfig, specs: list) -> None:
    change = UntestedChange(kind="protection_changed", subject="acme-linux", description="+ vpg acme-linux",
                            detected_at=NOW)
    report = run(acme, specs, *clean(acme), changes=[change])
    assert report.ready and report.blocking == []
    assert [f.category for f in report.findings()] == ["untested_changes"]
    assert report.untested_changes[0].subject == "acme-linux"
    assert "protection_changed at 2026-03-02 09:00Z: + vpg acme-linux" == report.untested_changes[0].detail
    assert [v.name for v in report.inventory] == sorted(m.name for m in acme.machines)
    assert report.summary() == "acme: ready; 1 untested changes"


def test_a_vm_no_group_protects_blocks_whether_or_not_in_the_config(acme: TenantConfig, specs: list) -> None:
    protected, manager, recovery = clean(acme)
    protected.vms.append(VmState(name="acme-new01", nics=[NicState(label="Network adapter 1")]))
    manager.groups[1].members.remove("acme-web02")
    report = run(acme, specs, protected, manager, recovery)
    assert not report.ready
    assert [(f.subject, f.blocking) for f in report.unprotected_vms] == [("acme-new01", True), ("acme-web02", True)]
    assert "not in the config" in report.unprotected_vms[0].detail
    assert "in the config but" in report.unprotected_vms[1].detail


def test_a_config_machine_missing_everywhere_is_unprotected(acme: TenantConfig, specs: list) -> None:
    protected, manager, recovery = clean(acme)
    protected.vms = [v for v in protected.vms if v.name != "acme-web02"]
    manager.groups[1].members.remove("acme-web02")
    report = run(acme, specs, protected, manager, recovery)
    assert [f.subject for f in report.unprotected_vms] == ["acme-web02"]
    assert "neither in folder acme nor protected" in report.unprotected_vms[0].detail


def test_protected_but_unknown_to_the_config_is_reported_not_blocking(acme: TenantConfig, specs: list) -> None:
    protected, manager, recovery = clean(acme)
    manager.groups[1].members.append("acme-old01")
    manager.groups.append(ManagedGroup(name="acme-legacy", members=["acme-legacy01"]))
    manager.groups.append(ManagedGroup(name="globex-db", members=["globex-db01"]))  # another tenant's
    report = run(acme, specs, protected, manager, recovery)
    assert [(f.subject, f.blocking) for f in report.unknown_protected] == [("acme-old01", False),
                                                                           ("acme-legacy", False)]
    assert report.ready


def test_a_group_the_state_store_knows_counts_as_the_tenants(acme: TenantConfig, specs: list) -> None:
    protected, manager, recovery = clean(acme)
    manager.groups.append(ManagedGroup(name="legacy-vpg", members=["x"]))
    report = run(acme, specs, protected, manager, recovery, known_groups=["legacy-vpg"])
    assert [f.subject for f in report.unknown_protected] == ["legacy-vpg"]


def test_disks_differing_from_the_config_are_warnings(acme: TenantConfig, specs: list) -> None:
    protected, manager, recovery = clean(acme)
    sql = next(v for v in protected.vms if v.name == "acme-sql01")
    sql.disks[1].capacity_gb = 750  # data: 500 GB in the config
    dc = next(v for v in protected.vms if v.name == "acme-dc01")
    dc.disks.pop()
    report = run(acme, specs, protected, manager, recovery)
    assert report.ready
    assert [(f.subject, f.detail) for f in report.disk_changes] == [
        ("acme-dc01", "1 disk(s) in vCenter, 2 in the config"),
        ("acme-sql01", "disk 2 (Hard disk 2): 750 GB in vCenter, 500 GB in the config (data)")]


def test_nic_count_or_address_differing_from_the_config_blocks(acme: TenantConfig, specs: list) -> None:
    protected, manager, recovery = clean(acme)
    app = next(v for v in protected.vms if v.name == "acme-app01")
    app.nics.append(NicState(label="Network adapter 2", network="VM Network"))
    web = next(v for v in protected.vms if v.name == "acme-web01")
    web.nics[0].ip = "10.10.3.99"
    report = run(acme, specs, protected, manager, recovery)
    assert not report.ready
    assert [(f.subject, f.blocking) for f in report.nic_changes] == [("acme-app01", True), ("acme-web01", True)]
    assert report.nic_changes[1].detail == "Network adapter 1: address 10.10.3.99 in vCenter, 10.10.3.40 in the config"


def test_changes_since_the_previous_check_are_new_untested_changes(acme: TenantConfig, specs: list) -> None:
    protected, manager, recovery = clean(acme)
    baseline = [v.model_copy(deep=True) for v in protected.vms]
    web = next(v for v in protected.vms if v.name == "acme-web01")
    web.nics[0].network = "acme-quarantine"
    web.disks.append(DiskState(label="Hard disk 9", capacity_gb=10))
    report = run(acme, specs, protected, manager, recovery, baseline=baseline)
    assert [(f.category, f.detail) for f in report.new_changes] == [
        ("disk_changes", "Hard disk 9 added (10 GB) since the previous check"),
        ("nic_changes", "Network adapter 1 moved VM Network -> acme-quarantine since the previous check")]
    assert any(f.detail.endswith("moved VM Network -> acme-quarantine since the previous check")
               for f in report.nic_changes)
    # Without a baseline nothing is "new": the first check only compares with the config.
    assert run(acme, specs, protected, manager, recovery).new_changes == []
    # The same look again: nothing new.
    again = run(acme, specs, protected, manager, recovery, baseline=report.inventory)
    assert again.new_changes == []


def test_settings_drift_and_missing_groups_block(acme: TenantConfig, specs: list) -> None:
    protected, manager, recovery = clean(acme)
    manager.groups[0].plan = ["~ rpo 300 s -> 30 s"]
    manager.groups[0].drift = ["~ vm acme-dc01 nic Network adapter 1 Failover Network: VM Network -> acme-db"]
    del manager.groups[1]
    report = run(acme, specs, protected, manager, recovery)
    assert [(f.subject, f.detail) for f in report.settings_drift] == [
        ("acme-windows", "~ rpo 300 s -> 30 s"),
        ("acme-windows", "~ vm acme-dc01 nic Network adapter 1 Failover Network: VM Network -> acme-db"),
        ("acme-linux", "not in the replication manager (run setup-protection)")]
    assert all(f.blocking for f in report.settings_drift)
    # acme-linux's VMs are now protected by nothing
    assert {f.subject for f in report.unprotected_vms} == {"acme-app01", "acme-web01", "acme-web02"}


def test_a_group_that_is_not_replicating_blocks(acme: TenantConfig, specs: list) -> None:
    protected, manager, recovery = clean(acme)
    manager.groups[0].replicating, manager.groups[0].status = False, "Initializing/InitialSync"
    report = run(acme, specs, protected, manager, recovery)
    assert [f.detail for f in report.settings_drift] == ["not replicating (status Initializing/InitialSync)"]


def test_missing_recovery_port_groups_block(acme: TenantConfig, specs: list) -> None:
    protected, manager, recovery = clean(acme)
    recovery.networks["acme-dmz"] = False
    report = run(acme, specs, protected, manager, recovery)
    assert [(f.subject, f.blocking) for f in report.missing_networks] == [("acme-dmz", True)]
    assert set(recovery_networks(acme)) == {"acme-web", "acme-app", "acme-db", "acme-dmz"}


@pytest.mark.parametrize(("allocation", "blocking", "text"), [
    (None, True, "does not exist"),
    (ResourceAllocation(memory_reservation_mb=8192), False, "12288 MB short; borrowed from the parent pool"),
    (ResourceAllocation(memory_reservation_mb=8192, memory_expandable=False), True, "cannot expand"),
    (ResourceAllocation(memory_reservation_mb=8192, memory_limit_mb=16384), True, "limited to 16384 MB"),
    (ResourceAllocation(memory_reservation_mb=32768, cpu_limit_mhz=10000), True,
     f"need about 20000 MHz ({MHZ_PER_VCPU} MHz per vCPU)"),
])
def test_capacity_of_the_recovery_pool(acme: TenantConfig, specs: list, allocation: ResourceAllocation | None,
                                       blocking: bool, text: str) -> None:
    protected, manager, recovery = clean(acme)  # 5 VMs of 2 vCPU and 4096 MB
    recovery.allocation = allocation
    report = run(acme, specs, protected, manager, recovery)
    (finding,) = report.capacity
    assert finding.blocking is blocking and text in finding.detail and finding.subject == "acme"
    assert report.ready is not blocking


def test_vm_state_names_disks_and_nics_by_order_and_reads_guest_addresses() -> None:
    vm = VmInfo(name="acme-web01", moid="vm-1", folder="acme", power_state="poweredOn", cpus=2, memory_mb=2048,
                ip_address="10.10.3.40", guest_ips=[],
                disks=[DiskInfo(key=2000, label="disk-1000-0", capacity_gb=40.0)],
                nics=[NicInfo(key=4000, label="ethernet-0", network="VM Network", mac="00:50:56:aa:bb:cc")])
    state = VmState.of(vm)
    assert state.disks == [DiskState(label="Hard disk 1", capacity_gb=40.0)]
    assert state.nics == [NicState(label="Network adapter 1", network="VM Network", mac="00:50:56:aa:bb:cc",
                                   ip="10.10.3.40")]


def test_the_report_round_trips_and_renders_every_category(acme: TenantConfig, specs: list) -> None:
    protected, manager, recovery = clean(acme)
    protected.vms.append(VmState(name="acme-new01"))
    report = run(acme, specs, protected, manager, recovery)
    assert ReadinessReport.model_validate_json(report.model_dump_json()) == report
    text = render_text(report)
    assert text.splitlines()[0] == "acme: NOT ready (1 blocking); 1 unprotected vms"
    assert "  BLOCKING acme-new01: in folder acme, not in the config and protected by no group" in text
    assert len(CATEGORIES) == 8


def test_zerto_settings_are_compared_leaf_by_leaf_and_shown_by_name() -> None:
    from draas.clients.replication.zerto import _flat_diff, _flatten

    current = {"Basic": {"Priority": "Low", "RpoInSeconds": 30},
               "Recovery": {"ResourcePoolIdentifier": "rp-1"},
               "Nics": [{"NicIdentifier": "Network adapter 1",
                         "Failover": {"Hypervisor": {"NetworkIdentifier": "net-2", "DnsSuffix": None}}}]}
    wanted = {"Basic": {"Priority": "High", "RpoInSeconds": 30},
              "Recovery": {"ResourcePoolIdentifier": "rp-1"},
              "Nics": [{"NicIdentifier": "Network adapter 1",
                        "Failover": {"Hypervisor": {"NetworkIdentifier": "net-1"}}}]}
    names = {"net-1": "acme-web", "net-2": "acme-app", "rp-1": "acme"}
    assert _flat_diff(_flatten(current), _flatten(wanted), names) == [
        "~ priority: Low -> High", "~ nic Network adapter 1 Failover Network: acme-app -> acme-web"]
    assert _flat_diff(_flatten(wanted), _flatten(wanted), names) == []

"""Protection specs and the design guide's capacity limits, on the sample tenants and modified copies."""

from __future__ import annotations

import pytest

from draas.clients.replication.models import VmProtection
from draas.models.tenant import Disk, OsFamily, TenantConfig
from draas.planning.journal import size_group
from draas.protection import (
    ProtectionCapacityExceeded,
    build_specs,
    check_capacity,
    ensure_capacity,
    nic_label,
)
from draas.site import Site
from draas.validation import load_tenant


@pytest.fixture(scope="module")
def site() -> Site:
    return Site.for_config_dir(None)


def _tenant(name: str) -> TenantConfig:
    return load_tenant(name)


@pytest.mark.parametrize("name", ["acme", "globex", "initech"])
def test_sample_tenants_fit_capacity(name: str) -> None:
    tenant = _tenant(name)
    assert check_capacity(tenant) == []
    ensure_capacity(tenant)


def test_spec_per_group_from_sla_retention_and_sizing(site: Site) -> None:
    acme = _tenant("acme")
    specs = {s.name: s for s in build_specs(acme, site)}
    assert list(specs) == ["acme-windows", "acme-linux"]
    win = specs["acme-windows"]
    assert win.rpo_seconds == 30
    assert win.journal_history_hours == 4 * 7 * 24
    sizing = size_group(acme, acme.group("acme-windows"))
    assert sizing is not None
    assert win.journal_hard_limit_mb == round(sizing.provisioned_gb * 1000)  # 42 GB/day x 28 days
    assert win.journal_hard_limit_mb == 1_176_000
    assert win.journal_warning_mb == 940_800
    assert win.priority == "High"
    assert win.use_wan_compression is True
    assert (win.recovery_cluster, win.recovery_datastore) == ("DR-Cluster", "dr-ds-01")
    assert (win.recovery_folder, win.recovery_resource_pool) == ("acme", "acme")
    assert [v.vm for v in win.members] == ["acme-dc01", "acme-sql01"]
    dc = win.members[0]
    assert [(n.nic, n.failover_network, n.test_network, n.failover_ip) for n in dc.nics] == [
        ("Network adapter 1", "acme-db", "acme-db", None)]


def test_snapshot_package_has_no_journal_limits_and_low_priority(site: Site) -> None:
    specs = {s.name: s for s in build_specs(_tenant("initech"), site)}
    files = specs["initech-files"]
    assert files.rpo_seconds == 7200
    assert files.journal_hard_limit_mb is None and files.journal_warning_mb is None
    assert files.priority == "Low"
    assert specs["initech-app"].journal_hard_limit_mb == 15_000  # 15 GB/day x 1 day


def test_re_ip_from_rule_and_static_address(site: Site) -> None:
    specs = {s.name: s for s in build_specs(_tenant("globex"), site)}
    db01 = specs["globex-db"].members[0]
    ip = db01.nics[0].failover_ip
    assert ip is not None
    assert (ip.ip, ip.subnet_mask, ip.gateway) == ("10.120.1.10", "255.255.255.0", "10.120.1.1")
    assert db01.nics[0].test_ip == ip
    apps = {v.vm: v for v in specs["globex-apps"].members}
    app_ip = apps["globex-app01"].nics[0].failover_ip
    assert app_ip is not None and app_ip.ip == "10.120.2.25"  # the NIC's static recovery_ip
    # The journal's hard limit honours the time_and_space cap of 250 GB.
    assert specs["globex-db"].journal_hard_limit_mb is not None
    assert specs["globex-db"].journal_hard_limit_mb <= 250_000


def test_port_group_override_is_used(site: Site) -> None:
    acme = _tenant("acme")
    vlans = [v.model_copy(update={"port_group": "acme-db-pg"}) if v.name == "acme-db" else v
             for v in acme.network.vlans]
    changed = acme.model_copy(update={"network": acme.network.model_copy(update={"vlans": vlans})})
    member: VmProtection = build_specs(changed, site)[0].members[0]
    assert member.nics[0].failover_network == "acme-db-pg"


def test_nic_labels() -> None:
    assert [nic_label(i) for i in range(2)] == ["Network adapter 1", "Network adapter 2"]


def _with_machine(tenant: TenantConfig, name: str, **update: object) -> TenantConfig:
    machines = [m.model_copy(update=update) if m.name == name else m for m in tenant.machines]
    return tenant.model_copy(update={"machines": machines})


def test_41_disks_on_one_master_target() -> None:
    acme = _tenant("acme")
    sql = acme.machine("acme-sql01")
    extra = [Disk(name=f"data{i}", size_gb=10) for i in range(41 - 4)]  # dc01: 1, sql01: 3 protected
    tenant = _with_machine(acme, "acme-sql01", disks=[*sql.disks, *extra])
    problems = check_capacity(tenant)
    assert problems == ["master target acme-mt-win01 (groups acme-windows): 41 protected disks; "
                        "at most 40 disks per master target"]
    with pytest.raises(ProtectionCapacityExceeded) as info:
        ensure_capacity(tenant)
    assert info.value.problems == problems
    assert "41 protected disks" in str(info.value)


def test_40_disks_are_allowed() -> None:
    acme = _tenant("acme")
    sql = acme.machine("acme-sql01")
    extra = [Disk(name=f"data{i}", size_gb=10) for i in range(40 - 4)]
    assert check_capacity(_with_machine(acme, "acme-sql01", disks=[*sql.disks, *extra])) == []


def test_more_than_1_tb_per_day_on_one_process_server() -> None:
    tenant = _with_machine(_tenant("acme"), "acme-sql01", change_rate_gb_per_day=990)
    # 2 + 990 (acme-windows) + 8 + 3 + 3 (acme-linux) = 1006 GB/day through acme-ps01
    assert check_capacity(tenant) == [
        "process server acme-ps01 (groups acme-windows, acme-linux): 1006 GB/day of change; "
        "at most 1 TB/day (1000 GB/day) per process server"]


def test_machine_of_another_os_family_than_its_master_target() -> None:
    tenant = _with_machine(_tenant("acme"), "acme-dc01", os_family=OsFamily.LINUX)
    problems = check_capacity(tenant)
    assert len(problems) == 1
    assert "acme-windows" in problems[0] and "acme-dc01 is linux" in problems[0]
    assert "master target acme-mt-win01 is windows" in problems[0]


def test_no_master_target_of_the_os_family() -> None:
    acme = _tenant("acme")
    # The Linux group names no master target, and the tenant has none of the Linux family.
    groups = [g.model_copy(update={"master_target": None}) if g.name == "acme-linux" else g
              for g in acme.protection_groups]
    mts = [m for m in acme.dr_components.master_targets if m.os_family is OsFamily.WINDOWS]
    tenant = acme.model_copy(update={"protection_groups": groups,
                                     "dr_components": acme.dr_components.model_copy(update={"master_targets": mts})})
    problems = check_capacity(tenant)
    assert problems == [
        f"group acme-linux: no master target of the linux OS family for {m}; a master target serves only "
        "machines of its own OS family" for m in ("acme-app01", "acme-web01", "acme-web02")]

"""The drill's bubble plan and isolation proof (draas/bubble.py), and the re-test slot (flows/drill.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from draas.bubble import (
    DRILL_VLANS,
    BubbleError,
    IsolationNotProven,
    nic_violations,
    plan_bubble,
    production_vlans,
    prove_isolation,
    require_isolation,
    switch_name,
    vlans_in_config,
)
from draas.container import ContainerDevice
from draas.cutover import secret_free
from draas.validation import load_catalog, load_tenant

DEVICES = [ContainerDevice(name="agg-1", platform="cisco_nxos", role="aggregation"),
           ContainerDevice(name="pe-1", platform="cisco_ios", role="pe-router"),
           ContainerDevice(name="fw-vpn", platform="cisco_asa", role="vpn-firewall", multi_context=True)]
AGG = "vlan 1,1021-1023,3900\n!\ninterface Vlan1021\n  vrf member globex\n"
PE = "interface GigabitEthernet0/0.1021\n encapsulation dot1Q 1021\n"


@pytest.fixture(scope="module")
def globex():  # noqa: ANN201
    return load_tenant("globex")


def plan_for(tenant, configs=None):  # noqa: ANN001, ANN201
    configs = configs if configs is not None else {"agg-1": AGG, "pe-1": PE}
    return plan_bubble(tenant, load_catalog(), DEVICES, run_id="run-1",
                       taken_vlans=production_vlans(tenant, configs))


def good_switch(plan):  # noqa: ANN001, ANN201
    return {"name": plan.switch, "hosts": {"esx01": [], "esx02": []},
            "portgroups": {pg.port_group: pg.vlan_id for pg in plan.port_groups},
            "uplink_portgroups": [f"{plan.switch}-DVUplinks-1"]}


def test_vlans_declared_and_routed_are_read_from_running_configs() -> None:
    declared, routed = vlans_in_config(AGG + PE)
    assert declared == {1, 1021, 1022, 1023, 3900}
    assert routed == {1021}


def test_the_plan_takes_free_drill_vlans_and_keeps_production_addresses(globex) -> None:  # noqa: ANN001
    plan = plan_for(globex)
    assert plan.switch == switch_name("globex") == "globex-drill-bubble"
    assert plan.mapping() == {v.name: v.drill_port_group for v in globex.network.vlans}
    assert plan.bubble_vlans == [3901, 3902, 3903]  # 3900 is declared on agg-1: taken
    assert not set(plan.bubble_vlans) & {v.id for v in globex.network.vlans}
    assert plan.access is not None and plan.access.context == "globex-vpn" and plan.access.device == "fw-vpn"
    assert plan.access.lines[-1] == "access-list globex-drill-access extended deny ip any any"
    assert all(" 100.64.128.0 255.255.255.0 " in line for line in plan.access.lines[:-1])
    assert len(plan.access.lines) == len(globex.network.vlans) + 1 and secret_free(plan.access.lines)


def test_no_free_drill_vlan_is_a_clear_error(globex) -> None:  # noqa: ANN001
    with pytest.raises(BubbleError, match="tenants/globex.yaml: network.vlans"):
        plan_bubble(globex, load_catalog(), DEVICES, run_id="r", taken_vlans=DRILL_VLANS)


def test_isolation_is_proven_for_a_clean_bubble(globex) -> None:  # noqa: ANN001
    plan = plan_for(globex)
    checks = prove_isolation(plan, good_switch(plan), {"agg-1": AGG, "pe-1": PE})
    assert checks and all(c.passed for c in checks), [c for c in checks if not c.passed]
    require_isolation(checks)


@pytest.mark.parametrize(("change", "reason"), [
    (lambda plan, sw, cfg: sw["hosts"].update({"esx02": ["vmnic1"]}), "physical uplinks: esx02: vmnic1"),
    (lambda plan, sw, cfg: sw["portgroups"].update({plan.port_groups[0].port_group: 1021}), "VLAN 1021, planned"),
    (lambda plan, sw, cfg: sw["portgroups"].update({"stray": 1022}), "unplanned port group stray"),
    (lambda plan, sw, cfg: sw["portgroups"].pop(plan.port_groups[1].port_group), "is not on switch"),
    (lambda plan, sw, cfg: sw.update({"hosts": {}}), "no host member"),
    (lambda plan, sw, cfg: cfg.update({"pe-1": None}), "could not be read"),
    (lambda plan, sw, cfg: cfg.update({"agg-1": AGG + "interface Vlan3901\n"}), "routes bubble VLAN(s) 3901"),
])
def test_isolation_fails_closed(globex, change, reason) -> None:  # noqa: ANN001
    plan = plan_for(globex)
    switch, configs = good_switch(plan), {"agg-1": AGG, "pe-1": PE}
    change(plan, switch, configs)
    checks = prove_isolation(plan, switch, configs)
    with pytest.raises(IsolationNotProven, match="not proven") as err:
        require_isolation(checks)
    assert reason in str(err.value)


def test_a_missing_switch_or_nothing_read_is_not_proof(globex) -> None:  # noqa: ANN001
    plan = plan_for(globex)
    with pytest.raises(IsolationNotProven, match="not found"):
        require_isolation(prove_isolation(plan, None, {"agg-1": AGG}))
    with pytest.raises(IsolationNotProven, match="no aggregation switch or PE router was read"):
        require_isolation(prove_isolation(plan, good_switch(plan), {}))
    with pytest.raises(IsolationNotProven, match="nothing was checked"):
        require_isolation([])


def test_nic_violations_name_production_port_groups(globex) -> None:  # noqa: ANN001
    plan = plan_for(globex)
    assert nic_violations({"globex-db01 - testing recovery": ["globex-db-bubble"]}, plan) == []
    assert nic_violations({"globex-db01 - testing recovery": ["globex-db"], "x": [None]}, plan) == [
        "globex-db01 - testing recovery NIC 1 on production port group globex-db",
        "x NIC 1 on network outside the bubble None"]


def test_the_retest_is_within_a_month_inside_business_hours(globex) -> None:  # noqa: ANN001
    from flows.drill import retest_slot

    for failed in (datetime(2027, 1, 12, 15, 0, tzinfo=UTC), datetime(2027, 1, 29, 22, 0, tzinfo=UTC),
                   datetime(2027, 2, 26, 12, 0, tzinfo=UTC)):
        slot = retest_slot(globex, failed)
        local = slot.astimezone(globex.tz)
        assert failed < slot <= failed + timedelta(days=31)
        assert globex.business_hours.contains(local, globex.drills.duration)
        assert local.time() == globex.business_hours.start and local.weekday() < 5


def test_a_drill_needs_a_replicated_domain_controller_only_where_active_directory_is_used() -> None:
    from flows.drill import replicated_domain_controllers, uses_active_directory

    acme, initech = load_tenant("acme"), load_tenant("initech")
    assert uses_active_directory(acme) and replicated_domain_controllers(acme) == ["acme-dc01"]
    assert not uses_active_directory(initech)  # Windows file and application servers in a workgroup
    unprotected = acme.model_copy(update={"protection_groups": [g for g in acme.protection_groups
                                                                if "acme-dc01" not in g.machines]})
    assert uses_active_directory(unprotected) and replicated_domain_controllers(unprotected) == []

"""The failover cutover plan (draas.cutover): DNS, public-IP firewall lines, remote-access VPN.

The rendered lines are typed into the in-process Cisco emulator on top of every sample
tenant's container: each line is accepted, a second push changes nothing, and removing
what the cutover added gives back the container exactly.
"""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml

from draas.clients.cisco_config import ConfigNode, commands, missing, parse_config, removals
from draas.clients.dns import DnsRecordSet
from draas.container import SYSTEM_CONTEXT, render_container
from draas.cutover import (
    TEMPLATES_DIR,
    CutoverPlan,
    CutoverPlanError,
    CutoverSettings,
    DeviceChange,
    cutover_problems,
    plan_cutover,
    secret_free,
)
from draas.ledger.dns import DnsRecordIdentityError, previous_rrset, record_identity
from draas.models.tenant import TenantConfig
from draas.models.tiers import TierCatalog
from draas.state.tables import ProvisionedObject
from draas.validation import default_config_dir, load_catalog, load_tenant
from lab.cisco.device import CliSession, Device

TENANTS = ("acme", "globex", "initech")
ERROR_MARKERS = ("Invalid input", "Invalid command", "ERROR:", "Incomplete command")


@pytest.fixture(scope="module")
def lab_cisco() -> dict:
    return yaml.safe_load((default_config_dir() / "lab.yaml").read_text())["cisco"]


@pytest.fixture(scope="module")
def devices(lab_cisco: dict) -> list[dict]:
    return lab_cisco["devices"]


@pytest.fixture(scope="module")
def catalog() -> TierCatalog:
    return load_catalog()


@pytest.fixture(scope="module")
def tenants() -> dict[str, TenantConfig]:
    return {tid: load_tenant(tid) for tid in TENANTS}


def plan(tenant: TenantConfig, catalog: TierCatalog, devices: list[dict], **kwargs: Any) -> CutoverPlan:
    return plan_cutover(tenant, catalog, devices, **kwargs)


def edited(tenant: TenantConfig, edit: Any) -> TenantConfig:
    data = tenant.model_dump(mode="json", exclude_none=True)
    edit(data)
    return TenantConfig.model_validate(data)


def by_label(changes: list[DeviceChange]) -> dict[str, DeviceChange]:
    return {f"{c.purpose} {c.label}": c for c in changes}


# --------------------------------------------------------------------------- DNS

def test_acme_names_keep_their_production_addresses(tenants: dict, catalog: TierCatalog, devices: list) -> None:
    p = plan(tenants["acme"], catalog, devices)
    assert [(c.record.fqdn, c.values, c.ttl, c.machines) for c in p.dns] == [
        ("app01.acme.example.com.", ["10.10.2.30"], 300, ["acme-app01"]),
        ("dc01.acme.example.com.", ["10.10.1.10"], 300, ["acme-dc01"]),
        ("sql01.acme.example.com.", ["10.10.2.20"], 300, ["acme-sql01"]),
        ("web01.acme.example.com.", ["10.10.3.40"], 300, ["acme-web01"]),
        ("web02.acme.example.com.", ["10.10.3.41"], 300, ["acme-web02"]),
    ]
    assert {c.rtype for c in p.dns} == {"A"}


def test_globex_names_point_at_re_ip_and_static_recovery_addresses(tenants: dict, catalog: TierCatalog,
                                                                   devices: list) -> None:
    p = plan(tenants["globex"], catalog, devices)
    assert {c.record.fqdn: (c.values, c.ttl) for c in p.dns} == {
        "db01.globex.example.com.": (["10.120.1.10"], 60),    # re-IP rule 10.20/16 -> 10.120/16
        "app01.globex.example.com.": (["10.120.2.25"], 60),   # static recovery address
        "www.globex.example.com.": (["10.120.3.30"], 60),
    }


def test_a_name_declared_by_two_machines_is_one_rrset_with_both_addresses(tenants: dict, catalog: TierCatalog,
                                                                          devices: list) -> None:
    def edit(data: dict) -> None:
        for machine in data["machines"]:
            if machine["name"] in ("acme-web01", "acme-web02"):
                machine["dns_records"].append({"name": "www", "ttl": 120 if machine["name"] == "acme-web01" else 60})

    p = plan(edited(tenants["acme"], edit), catalog, devices)
    www = next(c for c in p.dns if c.name == "www")
    assert (www.values, www.ttl, www.machines) == (["10.10.3.40", "10.10.3.41"], 60, ["acme-web01", "acme-web02"])


def test_a_dns_record_of_a_missing_nic_names_the_file_and_field(tenants: dict, catalog: TierCatalog,
                                                                devices: list) -> None:
    def edit(data: dict) -> None:
        data["machines"][1]["dns_records"][0]["nic"] = 3

    with pytest.raises(CutoverPlanError, match=r"tenants/acme\.yaml: machines\[1\]\.dns_records\[0\]\.nic: "
                                               r"machine acme-sql01 has no NIC 3"):
        plan(edited(tenants["acme"], edit), catalog, devices)
    assert cutover_problems(edited(tenants["acme"], edit), catalog, devices) == [
        "tenants/acme.yaml: machines[1].dns_records[0].nic: machine acme-sql01 has no NIC 3"]
    assert [cutover_problems(tenants[tid], catalog, devices) for tid in TENANTS] == [[], [], []]


# --------------------------------------------------------------------------- firewall

def test_acme_dmz_vip_is_published_on_the_dmz_context(tenants: dict, catalog: TierCatalog, devices: list) -> None:
    p = plan(tenants["acme"], catalog, devices)
    assert [(c.device, c.context, c.role, c.template) for c in p.firewall] == [
        ("fw-perimeter", "acme-dmz", "perimeter-firewall", "public-ip.j2")]
    assert p.firewall[0].lines == [
        "object network acme-pub-198.51.100.11",
        " host 10.10.4.100",
        " nat (inside,outside) static 198.51.100.11",
        "access-list acme-dmz-paths remark DRaaS failover: public 198.51.100.11 to VIP acme-www",
        "access-list acme-dmz-paths extended permit tcp any host 10.10.4.100 eq 80",
        "access-group acme-dmz-paths global",
    ]


def test_a_pvt_machine_is_published_on_the_perimeter_context_with_its_check_ports(
        tenants: dict, catalog: TierCatalog, devices: list) -> None:
    def edit(data: dict) -> None:
        data["network"]["public_ips"].append({"address": "198.51.100.12", "purpose": "nat", "target": "acme-app01"})

    p = plan(edited(tenants["acme"], edit), catalog, devices)
    perimeter = next(c for c in p.firewall if c.context == "acme-perimeter")
    assert perimeter.device == "fw-perimeter"
    assert " nat (inside,outside) static 198.51.100.12" in perimeter.lines
    assert "access-list acme-perimeter-paths extended permit tcp any host 10.10.2.30 eq 8080" in perimeter.lines
    assert perimeter.lines[-1] == "access-group acme-perimeter-paths global"


def test_silver_publishes_through_its_vpn_context_with_hairpin_nat(tenants: dict, catalog: TierCatalog,
                                                                   devices: list) -> None:
    p = plan(tenants["globex"], catalog, devices)
    (fw,) = p.firewall
    assert (fw.device, fw.context) == ("fw-vpn", "globex-vpn")
    # The VIP's VLAN (web) is the VPN context's outside VLAN: same-interface NAT needs the hairpin.
    assert fw.lines == [
        "object network globex-pub-198.51.100.21",
        " host 10.120.3.100",
        " nat (outside,outside) static 198.51.100.21",
        "same-security-traffic permit intra-interface",
        "access-list globex-vpn-public remark DRaaS failover: public 198.51.100.21 to VIP globex-www",
        "access-list globex-vpn-public extended permit tcp any host 10.120.3.100 eq 443",
        "access-group globex-vpn-public in interface outside",
    ]


def test_vpn_endpoint_addresses_need_no_firewall_lines(tenants: dict, catalog: TierCatalog, devices: list) -> None:
    assert plan(tenants["initech"], catalog, devices).firewall == []


def test_public_ip_problems_name_the_file_and_field(tenants: dict, catalog: TierCatalog, devices: list) -> None:
    def unknown(data: dict) -> None:
        data["network"]["public_ips"][1]["target"] = "acme-nothing"

    with pytest.raises(CutoverPlanError, match=r"tenants/acme\.yaml: network\.public_ips\[1\]\.target: "
                                               r"unknown machine or VIP 'acme-nothing'"):
        plan(edited(tenants["acme"], unknown), catalog, devices)

    def portless(data: dict) -> None:
        data["network"]["public_ips"].append({"address": "198.51.100.13", "purpose": "nat", "target": "acme-web01"})
        for machine in data["machines"]:
            if machine["name"] == "acme-web01":
                machine["checks"] = [{"type": "heartbeat"}]

    with pytest.raises(CutoverPlanError, match=r"public_ips\[2\]\.target: machine acme-web01 declares no service"):
        plan(edited(tenants["acme"], portless), catalog, devices)


# --------------------------------------------------------------------------- remote access

def test_acme_remote_access_on_its_vpn_context_and_the_return_route(tenants: dict, catalog: TierCatalog,
                                                                    devices: list) -> None:
    p = plan(tenants["acme"], catalog, devices)
    changes = by_label(p.vpn)
    assert sorted(changes) == ["ra-return-route agg-1", "ra-return-route agg-2", "remote-access-vpn fw-vpn/acme-vpn"]
    ra = changes["remote-access-vpn fw-vpn/acme-vpn"].lines
    assert ra[0] == "ip local pool acme-ra-pool 100.64.128.1-100.64.128.254 mask 255.255.255.0"
    # The split tunnel and the VPN filter reach exactly the tenant's recovery subnets.
    subnets = ["10.10.1.0", "10.10.2.0", "10.10.3.0", "10.10.4.0"]
    assert [line.split()[4] for line in ra if line.startswith("access-list acme-ra-split ")] == subnets
    assert [line.split()[7] for line in ra if line.startswith("access-list acme-ra-filter ")] == subnets
    for line in ("tunnel-group acme-ra type remote-access", " authentication-server-group DRAAS-RA-AAA",
                 " default-group-policy acme-ra", " group-lock value acme-ra", " anyconnect enable"):
        assert line in ra
    # Clients arrive on the context's outside interface (web VLAN, last host).
    assert changes["ra-return-route agg-1"].lines == ["vrf context acme-pvt", " ip route 100.64.128.0/24 10.10.3.254"]
    assert p.ra_users == ["alice.archer@acme.example.com", "bob.baker@acme.example.com"]


def test_a_pool_that_overlaps_the_tenant_is_refused(tenants: dict, catalog: TierCatalog, devices: list) -> None:
    settings = CutoverSettings(ra_pool=IPv4Network("10.10.2.0/25"))
    with pytest.raises(CutoverPlanError, match=r"VLAN acme-app \(10\.10\.2\.0/24\) overlaps the remote-access pool"):
        plan(tenants["acme"], catalog, devices, settings=settings)


# --------------------------------------------------------------------------- secrets

def test_no_line_holds_a_secret_and_a_leaking_template_is_refused(tenants: dict, catalog: TierCatalog,
                                                                  devices: list, tmp_path: Path) -> None:
    for tid in TENANTS:
        p = plan(tenants[tid], catalog, devices)
        assert all(secret_free(c.lines) for c in p.device_changes())
        assert "pre-shared-key" not in "\n".join(line for c in p.device_changes() for line in c.lines)
    assert not secret_free(["tunnel-group acme-ra ipsec-attributes", " ikev1 pre-shared-key S3cret"])
    assert not secret_free(["username alice password Hunter2"])

    for template in TEMPLATES_DIR.glob("*.j2"):
        (tmp_path / template.name).write_text(template.read_text())
    leaky = (tmp_path / "remote-access-vpn.j2").read_text() + "username {{ group }} password Hunter2-Leaked\n"
    (tmp_path / "remote-access-vpn.j2").write_text(leaky)
    with pytest.raises(CutoverPlanError, match="lines with secrets") as err:
        plan(tenants["acme"], catalog, devices, templates_dir=tmp_path)
    assert "Hunter2" not in str(err.value)


# --------------------------------------------------------------------------- ledger identity

def test_dns_identity_carries_the_previous_rrset() -> None:
    before = DnsRecordSet(fqdn="web01.acme.example.com.", rtype="A", ttl=600, values=["192.0.2.40"])
    identity = record_identity("acme.example.com", "web01", "A", ["10.10.3.40"], 300, previous=before)
    assert identity["previous"] == {"values": ["192.0.2.40"], "ttl": 600}
    rec = ProvisionedObject(tenant_id="acme", system="dns", kind="record", name="web01.acme.example.com.",
                            identity=identity)
    assert previous_rrset(rec) == (["192.0.2.40"], 600)
    assert previous_rrset(ProvisionedObject(tenant_id="acme", system="dns", kind="record", name="x",
                                            identity=record_identity("acme.example.com", "x", "A"))) is None
    broken = ProvisionedObject(tenant_id="acme", system="dns", kind="record", name="y",
                               identity={**identity, "previous": {"values": []}})
    with pytest.raises(DnsRecordIdentityError, match="identity.previous must be"):
        previous_rrset(broken)


# --------------------------------------------------------------------------- emulator

def _session(device: Device, secret: str) -> CliSession:
    session = CliSession(device)
    if not session.privileged:
        session.handle("enable")
        session.handle(secret)
    return session


def _type(session: CliSession, context: str | None, lines: list[str]) -> list[tuple[str, str]]:
    """Type ``lines`` in configuration mode of ``context``; returns the rejected ones."""
    if session.device.multi_context:
        target = "changeto system" if context in (None, SYSTEM_CONTEXT) else f"changeto context {context}"
        assert not any(m in session.handle(target).text for m in ERROR_MARKERS)
    session.handle("configure terminal")
    rejected = []
    for line in lines:
        out = session.handle(line).text
        if any(marker in out for marker in ERROR_MARKERS):
            rejected.append((line, out))
    session.handle("end")
    return rejected


def test_emulator_accepts_the_cutover_once_and_removing_it_restores_the_containers(
        lab_cisco: dict, tenants: dict, catalog: TierCatalog, devices: list[dict]) -> None:
    secret = lab_cisco["enable_secret"]
    emulated = {spec["name"]: Device(spec, i, lab_cisco["username"], lab_cisco["password"], secret)
                for i, spec in enumerate(devices)}
    sessions = {name: _session(device, secret) for name, device in emulated.items()}

    def running(device: str, context: str | None) -> ConfigNode:
        return parse_config(emulated[device].rendered(context))

    for tid in TENANTS:  # every tenant's container side by side on the shared devices
        for config in render_container(tenants[tid], catalog, devices, psk="Unit-Test-Psk-01"):
            diff = missing(parse_config(config.lines), running(config.device, config.context))
            assert _type(sessions[config.device], config.context, commands(diff)) == [], config.label
    containers = {name: {ctx: d.rendered(ctx) for ctx in d.contexts} for name, d in emulated.items()}

    added: list[tuple[DeviceChange, ConfigNode]] = []  # what a task would record: the lines that were missing
    for tid in TENANTS:
        for change in plan(tenants[tid], catalog, devices).device_changes():
            diff = missing(parse_config(change.lines), running(change.device, change.context))
            added.append((change, parse_config(ConfigNode("", diff.children).lines(" "))))
            assert _type(sessions[change.device], change.context, commands(diff)) == [], change.label
    for change, _ in added:
        assert not missing(parse_config(change.lines), running(change.device, change.context)).children, \
            f"{change.label}: a second push would change something"
    # A line the container already had is not the cutover's: it is never recorded, so never removed.
    acme_dmz = next(rec for change, rec in added if change.context == "acme-dmz")
    assert acme_dmz.find("access-group acme-dmz-paths global") is None

    for change, recorded in reversed(added):
        diff = removals(recorded, running(change.device, change.context))
        assert _type(sessions[change.device], change.context, commands(diff, negate_leaves=True)) == [], \
            change.label
    after = {name: {ctx: d.rendered(ctx) for ctx in d.contexts} for name, d in emulated.items()}
    assert after == containers

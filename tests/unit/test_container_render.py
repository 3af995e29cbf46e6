"""Rendering of tenant network containers (draas.container) against golden files and the emulator.

Golden files live in tests/unit/golden/container/<tenant>/<device>[_<context>].cfg (masked
config lines) and ``.removal.cfg`` (the offboarding ``no`` lines). After an intended
change, regenerate them with ``UPDATE_GOLDEN=1 pytest tests/unit/test_container_render.py``
and review the diff.
"""

from __future__ import annotations

import os
import re
import shutil
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from draas.clients.cisco_config import (
    CiscoTemplateError,
    ConfigNode,
    commands,
    missing,
    parse_config,
)
from draas.container import (
    MASK,
    SYSTEM_CONTEXT,
    TEMPLATES_DIR,
    ContainerRenderError,
    ContainerSettings,
    DeviceConfig,
    mask,
    removal_lines,
    render_container,
)
from draas.models.tenant import TenantConfig
from draas.models.tiers import TierCatalog
from draas.validation import default_config_dir, load_catalog, load_tenant
from lab.cisco.device import CliSession, Device

GOLDEN = Path(__file__).parent / "golden" / "container"
TENANTS = ("acme", "globex", "initech")
PSK = "Golden-Test-Psk-0123"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
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


def render(tenant: TenantConfig, catalog: TierCatalog, devices: list[dict], **kwargs: object) -> list[DeviceConfig]:
    return render_container(tenant, catalog, devices, psk=kwargs.pop("psk", PSK), **kwargs)  # type: ignore[arg-type]


def golden_name(config: DeviceConfig) -> str:
    return f"{config.device}_{config.context}" if config.context else config.device


def by_label(configs: list[DeviceConfig]) -> dict[str, DeviceConfig]:
    return {c.label: c for c in configs}


# --------------------------------------------------------------------------- golden files

@pytest.mark.parametrize("tid", TENANTS)
def test_render_matches_golden_files(tid: str, tenants: dict, catalog: TierCatalog, devices: list[dict]) -> None:
    configs = render(tenants[tid], catalog, devices)
    expected: dict[str, str] = {}
    for config in configs:
        expected[f"{golden_name(config)}.cfg"] = "\n".join(config.masked_lines) + "\n"
        removal = removal_lines(config)
        if removal:
            expected[f"{golden_name(config)}.removal.cfg"] = "\n".join(removal) + "\n"
    folder = GOLDEN / tid
    if UPDATE:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for name, text in expected.items():
            (folder / name).write_text(text)
    on_disk = {p.name: p.read_text() for p in sorted(folder.glob("*.cfg"))}
    assert sorted(on_disk) == sorted(expected), "rendered configs and golden files differ in number or name"
    for name, text in expected.items():
        assert text == on_disk[name], f"{tid}/{name} differs from its golden file (UPDATE_GOLDEN=1 regenerates)"


def test_every_template_is_covered_by_a_golden_file(tenants: dict, catalog: TierCatalog,
                                                    devices: list[dict]) -> None:
    used = {c.template for tid in TENANTS for c in render(tenants[tid], catalog, devices)}
    assert used == {p.name for p in TEMPLATES_DIR.glob("*.j2")}


def test_rendering_is_deterministic_whatever_the_declaration_order(tenants: dict, catalog: TierCatalog,
                                                                   devices: list[dict]) -> None:
    acme = tenants["acme"]
    network = acme.network.model_copy(update={
        "vlans": list(reversed(acme.network.vlans)), "vrfs": list(reversed(acme.network.vrfs)),
    })
    shuffled = acme.model_copy(update={"network": network})
    first = [(c.label, c.lines) for c in render(acme, catalog, devices)]
    assert first == [(c.label, c.lines) for c in render(acme, catalog, devices)]
    assert first == [(c.label, c.lines) for c in render(shuffled, catalog, devices)]


# --------------------------------------------------------------------------- tiers

def test_gold_renders_perimeter_dmz_and_vpn_contexts_system_context_first(
        tenants: dict, catalog: TierCatalog, devices: list[dict]) -> None:
    configs = render(tenants["acme"], catalog, devices)
    labels = [c.label for c in configs]
    assert labels == ["pe-1", "agg-1", "agg-2", "fw-perimeter/system", "fw-perimeter/acme-perimeter",
                      "fw-perimeter/acme-dmz", "fw-vpn/system", "fw-vpn/acme-vpn", "slb-1"]
    system = by_label(configs)["fw-perimeter/system"]
    assert "context acme-perimeter" in system.lines and "context acme-dmz" in system.lines
    assert "context acme-vpn" in by_label(configs)["fw-vpn/system"].lines
    for config in configs:
        if config.context not in (None, SYSTEM_CONTEXT):
            assert config.owned_context
            assert labels.index(f"{config.device}/{SYSTEM_CONTEXT}") < labels.index(config.label)
    agg = by_label(configs)["agg-1"].lines
    for vrf in ("acme", "acme-pvt", "acme-dmz"):
        assert f"vrf context {vrf}" in agg


def _acl_lines(lines: list[str], name: str) -> list[str]:
    return [line for line in lines if line.startswith(f"access-list {name} extended ")]


def test_gold_perimeter_acl_permits_ipsec_only_between_the_two_tunnel_endpoints(
        tenants: dict, catalog: TierCatalog, devices: list[dict]) -> None:
    acme = tenants["acme"]
    peer, local = str(acme.network.ipsec.peer), str(acme.network.ipsec.local_endpoint)
    perimeter = by_label(render(acme, catalog, devices))["fw-perimeter/acme-perimeter"].lines
    ipsec = _acl_lines(perimeter, "acme-ipsec-only")
    permits = [line for line in ipsec if " permit " in line]
    assert len(permits) == 6  # esp, udp 500, udp 4500 in each direction
    for line in permits:
        hosts = re.findall(r"host (\S+)", line)
        assert sorted(hosts) == sorted([peer, local]), line
    kinds = {line.split(" permit ")[1].split()[0] for line in permits}
    assert kinds == {"esp", "udp"}
    ports = sorted(re.findall(r" eq (\d+)$", line)[0] for line in permits if " eq " in line)
    assert ports == ["4500", "4500", "500", "500"]
    # Everything else IPsec is denied, and no other rule of the context lets IPsec through.
    denies = [line for line in ipsec if " deny " in line]
    assert denies and all(" any any" in line for line in denies)
    others = [line for line in perimeter if line.startswith("access-list ") and "acme-ipsec-only" not in line]
    assert not [line for line in others if " esp " in line or re.search(r" eq (500|4500)$", line)]
    assert "access-group acme-ipsec-only in interface outside" in perimeter
    # Only the perimeter context carries it (the DMZ and VPN contexts do not).
    for label, config in by_label(render(acme, catalog, devices)).items():
        if label != "fw-perimeter/acme-perimeter":
            assert not any("ipsec-only" in line for line in config.lines), label


def test_gold_network_paths_are_subnet_rules_with_a_global_access_group(
        tenants: dict, catalog: TierCatalog, devices: list[dict]) -> None:
    configs = by_label(render(tenants["acme"], catalog, devices))
    perimeter = configs["fw-perimeter/acme-perimeter"].lines
    assert ("access-list acme-perimeter-paths extended permit tcp 10.10.4.0 255.255.255.0 "
            "10.10.3.0 255.255.255.0 eq 80") in perimeter
    assert ("access-list acme-perimeter-paths extended permit tcp 10.10.2.0 255.255.255.0 "
            "host 10.10.2.20 eq 1433") in perimeter
    assert len([line for line in perimeter if "host 10.10.1.10 eq" in line]) == 3  # to-dc: 53, 88, 389
    assert "access-group acme-perimeter-paths global" in perimeter
    dmz = configs["fw-perimeter/acme-dmz"].lines
    # web-to-app never crosses the DMZ context; dmz-to-web does.
    assert not any("eq 8080" in line for line in dmz)
    assert any("10.10.4.0 255.255.255.0 10.10.3.0 255.255.255.0 eq 80" in line for line in dmz)


def test_gold_without_dmz_zone_has_no_dmz_context(tenants: dict, catalog: TierCatalog,
                                                  devices: list[dict]) -> None:
    acme = tenants["acme"]
    network = acme.network.model_copy(update={
        "zones": [],
        "vlans": [v for v in acme.network.vlans if v.role != "dmz"],
        "vrfs": [v for v in acme.network.vrfs if v.role != "dmz"],
        "firewall_paths": [p for p in acme.network.firewall_paths if "dmz" not in p.source],
        "load_balancer_vips": [],
        "public_ips": [p for p in acme.network.public_ips if p.purpose != "vip"],
    })
    configs = by_label(render(acme.model_copy(update={"network": network}), catalog, devices))
    assert sorted(configs) == ["agg-1", "agg-2", "fw-perimeter/acme-perimeter", "fw-perimeter/system",
                               "fw-vpn/acme-vpn", "fw-vpn/system", "pe-1"]
    assert not any("dmz" in line for line in configs["fw-perimeter/system"].lines)
    assert not any(line.startswith("vrf context acme-dmz") for line in configs["agg-1"].lines)
    assert any(line.startswith("access-list acme-ipsec-only") for line in configs["fw-perimeter/acme-perimeter"].lines)


def test_silver_has_no_perimeter_context_but_a_load_balancer(tenants: dict, catalog: TierCatalog,
                                                             devices: list[dict]) -> None:
    configs = render(tenants["globex"], catalog, devices)
    assert not [c for c in configs if c.role == "perimeter-firewall"]
    assert [c.label for c in configs if c.role == "vpn-firewall"] == ["fw-vpn/system", "fw-vpn/globex-vpn"]
    slb = by_label(configs)["slb-1"].lines
    for line in ("rserver host globex-web01", " ip address 10.120.3.30", "serverfarm host globex-www-farm",
                 " rserver globex-web01 443", "probe tcp globex-www-probe", "class-map match-all globex-www",
                 " 2 match virtual-address 10.120.3.100 tcp eq 443",
                 "policy-map type loadbalance first-match globex-www-lb", "policy-map multi-match globex-pvt-slb",
                 "interface vlan 1021", " service-policy input globex-pvt-slb"):
        assert line in slb, line
    agg = by_label(configs)["agg-1"].lines
    assert [line for line in agg if line.startswith("vrf context")] == ["vrf context globex"]


def test_bronze_vpn_context_uses_the_extra_dr_control_vlan_as_inside_and_has_no_load_balancer(
        tenants: dict, catalog: TierCatalog, devices: list[dict]) -> None:
    initech = tenants["initech"]
    drc = next(v for v in initech.network.vlans if v.role == "dr_control")
    server = next(v for v in initech.network.vlans if v.role == "server")
    configs = by_label(render(initech, catalog, devices))
    assert "slb-1" not in configs
    assert not [c for c in configs.values() if c.role == "perimeter-firewall"]
    vpn = configs["fw-vpn/initech-vpn"].lines
    inside = vpn.index(f"interface TenGigabitEthernet0/8.{drc.id}")
    assert vpn[inside + 1:inside + 4] == [" nameif inside", " security-level 100",
                                          " ip address 10.30.254.254 255.255.255.0"]
    outside = vpn.index(f"interface TenGigabitEthernet0/8.{server.id}")
    assert vpn[outside + 1] == " nameif outside"
    assert ("access-list initech-vpn-traffic extended permit ip 10.30.254.0 255.255.255.0 "
            "172.16.30.0 255.255.255.0") in vpn
    for agg in ("agg-1", "agg-2"):
        lines = configs[agg].lines
        assert f"vlan {drc.id}" in lines and f" name {drc.name}" in lines
        assert f"interface Vlan{drc.id}" in lines
        assert " ip route 172.16.30.0/24 10.30.254.254" in lines  # remote subnets via the VPN context


def test_copper_uses_the_shared_perimeter_and_a_per_tenant_vpn_context(
        tenants: dict, catalog: TierCatalog, devices: list[dict]) -> None:
    initech = tenants["initech"]
    copper = initech.model_copy(update={"network": initech.network.model_copy(update={"tier": "copper"})})
    configs = by_label(render(copper, catalog, devices))
    assert not [c for c in configs.values() if c.role == "perimeter-firewall"]
    assert " nameif inside" in configs["fw-vpn/initech-vpn"].lines


def test_aggregation_pair_shares_hsrp_gateway_with_own_addresses(tenants: dict, catalog: TierCatalog,
                                                                devices: list[dict]) -> None:
    configs = by_label(render(tenants["globex"], catalog, devices))
    one, two = configs["agg-1"].lines, configs["agg-2"].lines
    assert " ip address 10.120.3.2/24" in one and " ip address 10.120.3.3/24" in two
    assert one.count("  ip 10.120.3.1") == two.count("  ip 10.120.3.1") == 1
    assert "  priority 110" in one and "  priority 110" not in two


def test_ike_version_1_renders_ikev1_policy_and_key(tenants: dict, catalog: TierCatalog,
                                                    devices: list[dict]) -> None:
    globex = tenants["globex"]
    ipsec = globex.network.ipsec.model_copy(update={"ike_version": 1})
    tenant = globex.model_copy(update={"network": globex.network.model_copy(update={"ipsec": ipsec})})
    vpn = by_label(render(tenant, catalog, devices))["fw-vpn/globex-vpn"]
    assert "crypto ikev1 policy 10" in vpn.lines and "crypto ikev1 enable outside" in vpn.lines
    assert not any("ikev2" in line for line in vpn.lines)
    assert f" ikev1 pre-shared-key {PSK}" in vpn.lines
    assert " ikev1 pre-shared-key *****" in vpn.masked_lines


# --------------------------------------------------------------------------- secrets

def test_psk_is_only_in_tunnel_group_lines_and_never_in_masked_output(tenants: dict, catalog: TierCatalog,
                                                                     devices: list[dict]) -> None:
    for tid in TENANTS:
        configs = render(tenants[tid], catalog, devices, psk=SecretStr(PSK))
        for config in configs:
            assert PSK not in "\n".join(config.masked_lines)
            assert PSK not in repr(config) and PSK not in str(config)
            assert PSK not in "\n".join(removal_lines(config))
            carrying = [line for line in config.lines if PSK in line]
            if config.template == "vpn-firewall.j2":
                assert config.secret_values == frozenset({PSK})
                assert carrying == [f" ikev2 remote-authentication pre-shared-key {PSK}",
                                    f" ikev2 local-authentication pre-shared-key {PSK}"]
            else:
                assert not carrying and not config.secret_values


def test_mask_replaces_every_secret_value() -> None:
    lines = ["a key1 b", "key12 c", "none"]
    assert mask(lines, {"key1", "key12", ""}) == [f"a {MASK} b", f"{MASK} c", "none"]
    assert mask(lines, set()) == lines


def test_a_bad_psk_is_refused_without_quoting_it(tenants: dict, catalog: TierCatalog, devices: list[dict]) -> None:
    with pytest.raises(ContainerRenderError) as info:
        render(tenants["globex"], catalog, devices, psk="has a blank")
    assert "has a blank" not in str(info.value)


# --------------------------------------------------------------------------- errors

def test_template_with_missing_variable_raises_naming_the_template(
        tmp_path: Path, tenants: dict, catalog: TierCatalog, devices: list[dict]) -> None:
    for template in TEMPLATES_DIR.glob("*.j2"):
        shutil.copy(template, tmp_path / template.name)
    with (tmp_path / "vpn-firewall.j2").open("a") as f:
        f.write("crypto isakmp identity {{ identity_not_given }}\n")
    with pytest.raises(CiscoTemplateError) as info:
        render(tenants["globex"], catalog, devices, templates_dir=tmp_path)
    assert "vpn-firewall.j2" in str(info.value) and "identity_not_given" in str(info.value)
    assert PSK not in str(info.value)


def test_missing_inventory_device_is_a_clear_error(tenants: dict, catalog: TierCatalog, devices: list[dict]) -> None:
    no_slb = [d for d in devices if d["role"] != "load-balancer"]
    with pytest.raises(ContainerRenderError, match="load-balancer"):
        render(tenants["globex"], catalog, no_slb)
    single = [{**d, "multi_context": False} if d["role"] == "vpn-firewall" else d for d in devices]
    with pytest.raises(ContainerRenderError, match="multi-context"):
        render(tenants["globex"], catalog, single)
    # Bronze needs no load balancer at all.
    assert render(tenants["initech"], catalog, no_slb)


def test_device_address_clash_with_tenant_address_is_an_error(tenants: dict, catalog: TierCatalog,
                                                             devices: list[dict]) -> None:
    globex = tenants["globex"]
    mts = globex.dr_components.model_copy(update={"master_targets": [
        globex.dr_components.master_targets[0].model_copy(update={"ip": IPv4Address("10.120.2.254")})]})
    with pytest.raises(ContainerRenderError, match="10.120.2.254.*master target"):
        render(globex.model_copy(update={"dr_components": mts}), catalog, devices)


def test_transit_pool_overlapping_tenant_subnet_is_an_error(tenants: dict, catalog: TierCatalog,
                                                           devices: list[dict]) -> None:
    settings = ContainerSettings(transit_pool="10.120.1.0/24")  # type: ignore[arg-type]
    with pytest.raises(ContainerRenderError, match="transit subnet"):
        render(tenants["globex"], catalog, devices, settings=settings)


# --------------------------------------------------------------------------- removal view

def test_removal_lines_remove_owned_blocks_and_only_the_tenant_part_of_shared_ones(
        tenants: dict, catalog: TierCatalog, devices: list[dict]) -> None:
    configs = by_label(render(tenants["acme"], catalog, devices))
    agg = removal_lines(configs["agg-1"])
    assert agg[:2] == ["router bgp 65010", " no vrf acme"]
    assert "no vrf context acme" in agg and "no vlan 1011" in agg and "no interface Vlan1011" in agg
    assert agg.index("no interface Vlan1011") < agg.index("no vlan 1011") < agg.index("no vrf context acme")
    assert removal_lines(configs["pe-1"]) == [
        "router bgp 65000", " no address-family ipv4 vrf acme",
        "no interface TenGigabitEthernet0/0/0.3011", "no vrf definition acme"]
    system = removal_lines(configs["fw-vpn/system"])
    assert system[0] == "no context acme-vpn" and all(line.startswith("no ") for line in system)
    assert removal_lines(configs["fw-vpn/acme-vpn"]) == []  # goes with `no context acme-vpn`


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


def test_emulator_accepts_every_rendered_line_idempotently_and_removal_restores_baseline(
        lab_cisco: dict, tenants: dict, catalog: TierCatalog, devices: list[dict]) -> None:
    secret = lab_cisco["enable_secret"]
    emulated = {spec["name"]: Device(spec, i, lab_cisco["username"], lab_cisco["password"], secret)
                for i, spec in enumerate(devices)}
    sessions = {name: _session(device, secret) for name, device in emulated.items()}
    baseline = {name: {ctx: d.rendered(ctx) for ctx in d.contexts} for name, d in emulated.items()}
    rendered = {tid: render(tenants[tid], catalog, devices) for tid in TENANTS}

    def running(config: DeviceConfig) -> ConfigNode:
        return parse_config(emulated[config.device].rendered(config.context))

    for tid in TENANTS:  # all tenants side by side on the shared devices
        for config in rendered[tid]:
            diff = missing(parse_config(config.lines), running(config))
            assert _type(sessions[config.device], config.context, commands(diff)) == [], config.label
    for tid in TENANTS:
        for config in rendered[tid]:
            assert not missing(parse_config(config.lines), running(config)).children, \
                f"{config.label}: a second push would change something"
    for tid in TENANTS:
        for config in reversed(rendered[tid]):
            assert _type(sessions[config.device], config.context, removal_lines(config)) == [], config.label
    after = {name: {ctx: d.rendered(ctx) for ctx in d.contexts} for name, d in emulated.items()}
    assert after == baseline

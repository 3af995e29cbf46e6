"""Cisco adapter, block and tasks against the lab's SSH emulator (netmiko over real SSH)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from blocks.cisco import CiscoDeviceCredentials
from draas.clients.cisco import CiscoAuthFailed, CiscoConfigPushFailed, CiscoTransientError
from draas.errors import is_transient
from lab.process import free_port
from tasks.network import (
    push_device_config,
    read_device_config,
    remove_device_config,
    render_device_config,
)

VLAN_VARS = {"vlan_id": 1711, "vlan_name": "itest-web", "vrf": "itest", "svi_address": "10.17.11.2/24",
             "gateway": "10.17.11.1", "hsrp_group": 11, "hsrp_priority": 110}


@pytest.fixture(scope="module", autouse=True)
def clean_devices(lab) -> Iterator[None]:
    httpx.post(f"{lab.cisco.control_url}/reset").raise_for_status()
    yield
    httpx.delete(f"{lab.cisco.control_url}/faults").raise_for_status()
    httpx.post(f"{lab.cisco.control_url}/reset").raise_for_status()


def lab_device(lab, name: str) -> CiscoDeviceCredentials:
    """The block of lab device ``name`` (host key checking off: the lab's keys are new at every start)."""
    dev = lab.cisco.devices[name]
    return CiscoDeviceCredentials(device_name=dev.name, host=dev.host, port=dev.port, platform=dev.platform,
                                  username=dev.username, password=SecretStr(dev.password),
                                  enable_secret=SecretStr(dev.secret), verify_host_key=False)


def running(lab, name: str, context: str | None = None) -> str:
    params = {"context": context} if context else {}
    r = httpx.get(f"{lab.cisco.control_url}/devices/{name}/running", params=params)
    r.raise_for_status()
    return r.text


def stats(lab, name: str) -> dict[str, Any]:
    return dict(httpx.get(f"{lab.cisco.control_url}/devices/{name}").json())


def test_apply_twice_second_diff_is_empty_on_every_platform(lab) -> None:
    cases = [
        ("agg-1", None, render_device_config("nxos_vlan_svi.j2", VLAN_VARS)),
        ("pe-1", None, render_device_config("ios_vrf.j2", {
            "vrf": "itest", "rd": "65000:1711", "route_targets": ["65000:1711"], "description": "itest",
            "parent_interface": "TenGigabitEthernet0/0/0", "dot1q": 1711, "address": "10.255.17.1",
            "netmask": "255.255.255.252", "bgp_asn": 65000})),
        ("fw-perimeter", "system", render_device_config("asa_context.j2", {
            "context": "itest", "description": "integration test", "interfaces": ["TenGigabitEthernet0/8.1711"]})),
        ("fw-perimeter", "itest", render_device_config("asa_access_rule.j2", {
            "acl": "itest-in", "interface": "outside", "hosts": [{"name": "itest-web", "address": "10.17.11.40"}],
            "rules": [{"protocol": "tcp", "source": "any", "destination": "itest-web", "port": "https"}]})),
    ]
    for name, context, text in cases:
        with lab_device(lab, name).get_client() as client:
            start = time.perf_counter()
            first = client.apply(text, context=context)
            took = time.perf_counter() - start
            second = client.apply(text, context=context)
        print(f"\n{name}/{context}: {len(first.commands)} lines pushed and saved in {took:.2f} s")
        assert first.changed and first.pushed and first.saved, name
        assert not second.changed and second.diff == [] and not second.pushed, name
        shown = running(lab, name, context if context != "system" else None)
        assert text.splitlines()[0] in shown.splitlines()
    startup = httpx.get(f"{lab.cisco.control_url}/devices/fw-perimeter/startup",
                        params={"context": "itest"}).text
    assert "access-list itest-in extended permit tcp any object itest-web eq https" in startup


def test_dry_run_pushes_nothing(lab) -> None:
    before_stats = stats(lab, "agg-2")
    before = running(lab, "agg-2")
    with lab_device(lab, "agg-2").get_client() as client:
        change = client.apply(render_device_config("nxos_vlan_svi.j2", VLAN_VARS), dry_run=True)
    assert change.dry_run and change.changed and not change.pushed and not change.saved
    assert change.diff[0] == "+ vlan 1711"
    assert running(lab, "agg-2") == before
    after_stats = stats(lab, "agg-2")
    assert after_stats["config_lines"] == before_stats["config_lines"]
    assert after_stats["saves"] == before_stats["saves"]


def test_fault_mid_push_leaves_none_of_the_pushed_lines(lab) -> None:
    before = running(lab, "agg-2")
    r = httpx.post(f"{lab.cisco.control_url}/faults",
                   json={"device": "agg-2", "after_lines": 6, "message": "% Resource temporarily unavailable"})
    r.raise_for_status()
    creds = lab_device(lab, "agg-2")
    with pytest.raises(CiscoConfigPushFailed) as info, creds.get_client() as client:
        client.apply(render_device_config("nxos_vlan_svi.j2", VLAN_VARS))
    exc = info.value
    # six config lines got through (``exit`` only changes mode), the seventh was refused
    assert len([line for line in exc.pushed if line.strip() != "exit"]) == 6
    assert exc.failed_command == "no ip redirects"
    assert exc.reverted and not is_transient(exc)
    assert "% Resource temporarily unavailable" in str(exc)
    after = running(lab, "agg-2")
    assert after == before
    assert "vlan 1711" not in after and "Vlan1711" not in after


def test_asa_fault_reverts_inside_the_context(lab) -> None:
    creds = lab_device(lab, "fw-vpn")
    with creds.get_client() as client:
        client.apply("context tvpn\n config-url disk0:/tvpn.cfg\n", context="system")
    before = running(lab, "fw-vpn", "tvpn")
    httpx.post(f"{lab.cisco.control_url}/faults",
               json={"device": "fw-vpn", "context": "tvpn", "on_line_matching": "^crypto map"}).raise_for_status()
    psk = "Tenant-Psk-4711"
    config = ("tunnel-group 203.0.113.10 type ipsec-l2l\n"
              f"tunnel-group 203.0.113.10 ipsec-attributes\n ikev1 pre-shared-key {psk}\n"
              "crypto map TVPN 10 set peer 203.0.113.10\n")
    with pytest.raises(CiscoConfigPushFailed) as info, creds.get_client() as client:
        client.apply(config, context="tvpn")
    assert info.value.reverted
    assert psk not in str(info.value) and psk not in " ".join(info.value.pushed)
    assert running(lab, "fw-vpn", "tvpn") == before


def test_secrets_never_appear_in_errors_or_logs(lab, caplog: pytest.LogCaptureFixture) -> None:
    dev = lab.cisco.devices["pe-1"]
    caplog.set_level(logging.DEBUG)
    wrong = CiscoDeviceCredentials(host=dev.host, port=dev.port, platform="cisco_ios", username=dev.username,
                                   password=SecretStr("Wrong-Pw-31337"), enable_secret=SecretStr(dev.secret),
                                   verify_host_key=False, conn_timeout=5)
    with pytest.raises(CiscoAuthFailed) as auth:
        wrong.get_client().connect()
    bad_enable = lab_device(lab, "pe-1").model_copy(
        update={"enable_secret": SecretStr("Wrong-Enable-31337")})
    with pytest.raises(CiscoAuthFailed) as enable:
        bad_enable.get_client().connect()
    httpx.post(f"{lab.cisco.control_url}/faults", json={"device": "pe-1"}).raise_for_status()
    with pytest.raises(CiscoConfigPushFailed) as push, \
            lab_device(lab, "pe-1").get_client() as client:
        client.apply("crypto isakmp key Isakmp-Key-31337 address 203.0.113.10\n")
    texts = [str(e.value) + repr(e.value) + str(e.value.__cause__) for e in (auth, enable, push)]
    texts.append(caplog.text)
    for secret in ("Wrong-Pw-31337", "Wrong-Enable-31337", "Isakmp-Key-31337", dev.password, dev.secret):
        assert all(secret not in t for t in texts), secret
    assert not is_transient(auth.value) and not is_transient(enable.value)


def test_unknown_host_key_is_refused_by_default(lab) -> None:
    dev = lab.cisco.devices["agg-1"]
    creds = CiscoDeviceCredentials(host=dev.host, port=dev.port, platform="cisco_nxos", username=dev.username,
                                   password=SecretStr(dev.password))
    assert creds.verify_host_key
    with pytest.raises(CiscoAuthFailed, match="host key"):
        creds.get_client().connect()


def test_unreachable_device_is_transient(lab) -> None:
    creds = lab_device(lab, "agg-1").model_copy(update={"port": free_port(), "conn_timeout": 3})
    with pytest.raises(CiscoTransientError) as info:
        creds.get_client().connect()
    assert is_transient(info.value)


def test_tasks_against_the_lab(lab) -> None:
    creds = lab_device(lab, "agg-1")
    variables = {**VLAN_VARS, "vlan_id": 1712, "vlan_name": "itest-app", "svi_address": "10.17.12.2/24",
                 "gateway": "10.17.12.1"}
    first = push_device_config.fn(creds, template="nxos_vlan_svi.j2", variables=variables)
    second = push_device_config.fn(creds, template="nxos_vlan_svi.j2", variables=variables)
    assert first.changed and not second.changed and second.diff == []
    read = read_device_config.fn(creds, section="Vlan1712")
    assert read.detail["lines"][:2] == ["interface Vlan1712", " description itest-app"]
    removed = remove_device_config.fn(creds, template="nxos_vlan_svi.j2", variables=variables)
    assert removed.changed and removed.detail["saved"]
    assert "vlan 1712" not in running(lab, "agg-1").splitlines()
    startup = httpx.get(f"{lab.cisco.control_url}/devices/agg-1/startup").text
    assert "vlan 1712" not in startup.splitlines()
    assert not remove_device_config.fn(creds, template="nxos_vlan_svi.j2", variables=variables).changed


def test_facts_report_hostname_and_config_size(lab) -> None:
    for name, dev in lab.cisco.devices.items():
        with lab_device(lab, name).get_client() as client:
            facts = client.facts()
        assert facts.hostname == dev.hostname
        assert facts.config_lines > 5

"""The lab's Cisco emulator driven by netmiko's unmodified cisco_nxos, cisco_asa and cisco_ios drivers."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from netmiko import BaseConnection, ConnectHandler
from netmiko.exceptions import ConfigInvalidException, NetmikoAuthenticationException


@pytest.fixture(scope="module", autouse=True)
def clean_devices(lab) -> Iterator[None]:
    """Every device starts from (and is left at) its baseline config."""
    httpx.post(f"{lab.cisco.control_url}/reset").raise_for_status()
    yield
    httpx.delete(f"{lab.cisco.control_url}/faults").raise_for_status()
    httpx.post(f"{lab.cisco.control_url}/reset").raise_for_status()


def connect(lab, name: str, **overrides: object) -> BaseConnection:
    dev = lab.cisco.devices[name]
    params = {"device_type": dev.platform, "host": dev.host, "port": dev.port, "username": dev.username,
              "password": dev.password, "secret": dev.secret, "conn_timeout": 10, **overrides}
    conn = ConnectHandler(**params)
    conn.enable()
    return conn


def show(conn: BaseConnection, command: str) -> str:
    out = conn.send_command(command)
    assert isinstance(out, str)
    return out


def control(lab, path: str, **params: str) -> str:
    r = httpx.get(f"{lab.cisco.control_url}{path}", params=params)
    r.raise_for_status()
    return r.text


# device, ASA context (None: not an ASA), block as the device prints it, the `no` lines removing it
BLOCKS = [
    pytest.param("agg-1", None, [
        "vlan 3100", "  name lab-test",
        "interface Vlan3100", "  description lab test", "  ip address 10.31.0.2/24",
        "  hsrp 100", "    ip 10.31.0.1",
        "vrf context LABTEST", "  rd 65010:3100", "  address-family ipv4 unicast",
        "    route-target both 65010:3100",
    ], ["no interface Vlan3100", "no vlan 3100", "no vrf context LABTEST"], id="nxos-agg"),
    pytest.param("pe-1", None, [
        "vrf definition LABTEST", " rd 65000:3100", " address-family ipv4", "  route-target export 65000:3100",
        " exit-address-family",
        "interface TenGigabitEthernet0/0/0.3100", " encapsulation dot1Q 3100", " vrf forwarding LABTEST",
        " ip address 10.31.1.1 255.255.255.252",
    ], ["no interface TenGigabitEthernet0/0/0.3100", "no vrf definition LABTEST"], id="ios-pe"),
    pytest.param("slb-1", None, [
        "rserver host LABWEB1", " ip address 10.31.2.10", " inservice",
        "serverfarm host LABFARM", " probe PING", " rserver LABWEB1", "  inservice",
    ], ["no serverfarm host LABFARM", "no rserver host LABWEB1"], id="ios-slb"),
    pytest.param("fw-perimeter", "labtest", [
        "object network LAB-WEB", " host 10.31.3.10",
        "access-list LAB-IN extended permit tcp any object LAB-WEB eq https",
        "interface TenGigabitEthernet0/8.3100", " nameif inside", " security-level 100",
        " ip address 10.31.3.1 255.255.255.0",
    ], ["no access-list LAB-IN extended permit tcp any object LAB-WEB eq https", "no object network LAB-WEB",
        "no interface TenGigabitEthernet0/8.3100"], id="asa-context"),
]


@pytest.mark.parametrize("name, context, block, removal", BLOCKS)
def test_push_read_back_remove_and_save(lab, name: str, context: str | None, block: list[str],
                                        removal: list[str]) -> None:
    conn = connect(lab, name)
    try:
        if context:
            assert conn.base_prompt == f"{lab.cisco.devices[name].hostname}/admin"  # login lands in admin
            conn.send_command("changeto system")  # contexts are created in the system execution space
            out = conn.send_config_set([f"context {context}", " allocate-interface TenGigabitEthernet0/8.3100",
                                        f" config-url disk0:/{context}.cfg"])
            assert f"Creating context '{context}'" in out
            conn.send_command(f"changeto context {context}")
            assert conn.base_prompt == f"{lab.cisco.devices[name].hostname}/{context}"
        out = conn.send_config_set(block)
        assert "Invalid" not in out and "ERROR" not in out, out
        lines = show(conn, "show running-config").splitlines()
        start = lines.index(block[0])
        # IOS prints exit-address-family itself; every pushed line is there, in order and indented.
        assert [line for line in lines[start:] if line in block][:len(block)] == block
        assert block[0] in control(lab, f"/devices/{name}/running", **({"context": context} if context else {}))

        saved = conn.save_config()
        assert ("Copy complete." if conn.device_type == "cisco_nxos" else "[OK]") in saved
        startup = control(lab, f"/devices/{name}/startup", **({"context": context} if context else {}))
        assert all(line in startup.splitlines() for line in block)

        out = conn.send_config_set(removal)
        assert "Invalid" not in out and "ERROR" not in out, out
        shown = show(conn, "show running-config")
        assert block[0] not in shown.splitlines()
        assert block[-1].strip() not in shown
        conn.save_config()
        startup = control(lab, f"/devices/{name}/startup", **({"context": context} if context else {}))
        assert block[0] not in startup.splitlines()
    finally:
        conn.disconnect()


@pytest.mark.parametrize("name, error", [
    ("agg-1", "% Invalid command at '^' marker."),
    ("pe-1", "% Invalid input detected at '^' marker."),
    ("fw-vpn", "ERROR: % Invalid input detected at '^' marker."),
])
def test_unknown_command_is_rejected_with_the_platform_error(lab, name: str, error: str) -> None:
    conn = connect(lab, name)
    try:
        before = control(lab, f"/devices/{name}/running")
        out = conn.send_config_set(["frobnicate everything now"])
        assert error in out
        caret = next(line for line in out.splitlines() if line.strip() == "^")
        assert len(caret) - 1 == len(conn.base_prompt + "(config)#") + (1 if name == "agg-1" else 0)
        assert control(lab, f"/devices/{name}/running") == before
        with pytest.raises(ConfigInvalidException):
            conn.send_config_set(["interface Vlan9", "bogus-keyword 1"], error_pattern=r"Invalid (input|command)")
        assert error in conn.send_command("show frobnication")
    finally:
        conn.send_config_set(["no interface Vlan9"])
        conn.disconnect()


def test_asa_login_lands_in_admin_and_prompts_follow_changeto(lab) -> None:
    conn = connect(lab, "fw-vpn")
    host = lab.cisco.devices["fw-vpn"].hostname
    try:
        assert conn.find_prompt() == f"{host}/admin#"
        assert "P_PRIV" in conn.send_command("show curpriv")
        assert "management-only" in show(conn, "show running-config")  # the admin context's config
        conn.config_mode()
        assert conn.find_prompt() == f"{host}/admin(config)#"
        conn.exit_config_mode()
        conn.send_command("changeto system")
        assert conn.base_prompt == host
        assert "admin" in conn.send_command("show context")
        conn.send_command("changeto context admin")
        assert conn.find_prompt() == f"{host}/admin#"
    finally:
        conn.disconnect()


def test_wrong_password_is_an_authentication_failure(lab) -> None:
    dev = lab.cisco.devices["pe-1"]
    with pytest.raises(NetmikoAuthenticationException):
        ConnectHandler(device_type=dev.platform, host=dev.host, port=dev.port, username=dev.username,
                       password="not-the-password", conn_timeout=10)


def test_injected_fault_rejects_one_line_mid_push(lab) -> None:
    r = httpx.post(f"{lab.cisco.control_url}/faults",
                   json={"device": "agg-2", "on_line_matching": r"^vlan 3301$", "message": "% VLAN manager busy"})
    r.raise_for_status()
    conn = connect(lab, "agg-2")
    try:
        out = conn.send_config_set(["vlan 3300", "vlan 3301", "vlan 3302"])
        assert "% VLAN manager busy" in out
        running = control(lab, "/devices/agg-2/running").splitlines()
        assert "vlan 3300" in running and "vlan 3302" in running and "vlan 3301" not in running
        assert httpx.get(f"{lab.cisco.control_url}/faults").json() == []  # it fired once and cleared
        history = httpx.get(f"{lab.cisco.control_url}/devices/agg-2/history").json()
        assert {"context": "", "line": "vlan 3301", "accepted": False} in history
    finally:
        conn.send_config_set(["no vlan 3300", "no vlan 3302"])
        conn.disconnect()


def test_reset_restores_the_baseline(lab) -> None:
    httpx.post(f"{lab.cisco.control_url}/reset").raise_for_status()
    before = control(lab, "/devices/pe-1/running")
    conn = connect(lab, "pe-1")
    try:
        conn.send_config_set(["interface Vlan9", "ip route 192.0.2.0 255.255.255.0 10.255.0.1"])
        assert "192.0.2.0" in control(lab, "/devices/pe-1/running")
        httpx.post(f"{lab.cisco.control_url}/reset").raise_for_status()
        assert control(lab, "/devices/pe-1/running") == before
        assert conn.find_prompt() == "dr-pe-asr1k#"
    finally:
        conn.disconnect()


def test_a_200_line_block_in_one_write_is_applied_whole(lab) -> None:
    """Lines written without waiting for each echo all land (timings: benchmarks/cisco_push.py)."""
    conn = connect(lab, "agg-1")
    try:
        lines = [line for i in range(100) for line in (f"vlan {3400 + i}", f"  name bulk-{i}")]
        out = conn.send_config_set(lines)
        assert "Invalid" not in out

        renamed = [line.replace("bulk-", "fast-") for line in lines]
        conn.config_mode()
        conn.write_channel("\n".join(renamed) + "\n")  # no echo check: one write, one read
        conn.read_until_pattern(re.escape(renamed[-1].strip()) + r"\s*\n.*\(config[^)]*\)#", read_timeout=10)
        conn.exit_config_mode()

        running = control(lab, "/devices/agg-1/running")
        assert running.count("  name fast-") == 100 and "bulk-" not in running
        conn.send_config_set([f"no vlan {3400 + i}" for i in range(100)])
    finally:
        conn.disconnect()

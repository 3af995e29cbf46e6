"""Cisco adapter without SSH: diff logic, dry run, revert on failure, errors, secrets, templates, tasks.

The fake connection satisfies the client's ``CiscoConnection`` protocol and drives the
lab emulator's CLI state machine in-process, so prompts, errors and config semantics
are the ones the SSH integration tests see.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from netmiko.exceptions import NetmikoAuthenticationException, NetmikoTimeoutException
from pydantic import SecretStr

from blocks.cisco import CiscoDeviceCredentials
from draas.clients.cisco import (
    CiscoAuthFailed,
    CiscoClient,
    CiscoCommandRejected,
    CiscoConfigPushFailed,
    CiscoDeviceParams,
    CiscoPushInterrupted,
    CiscoTransientError,
    device_error,
)
from draas.clients.cisco_config import (
    CiscoTemplateError,
    commands,
    line_matches,
    mask_secrets,
    missing,
    parse_config,
    removals,
    restore,
)
from draas.errors import is_transient
from lab.cisco.device import CliSession, Device, Fault
from tasks.network import (
    DEVICE_TEMPLATES,
    push_device_config,
    read_device_config,
    remove_device_config,
    render_device_config,
)

PASSWORD = "ssh-Pa55word-xyz"
SECRET = "enable-S3cret-xyz"
GOLDEN = Path(__file__).parent / "golden"


class FakeConnection:
    """A netmiko-like connection whose device is the emulator's in-process CLI."""

    def __init__(self, device: Device, drop_after: int | None = None, **kwargs: Any) -> None:
        if kwargs["username"] != device.username or kwargs["password"] != device.password:
            raise NetmikoAuthenticationException("Authentication to device failed.")
        self.device = device
        self.kwargs = kwargs
        self.cli = CliSession(device)
        self.typed: list[str] = []
        self.drop_after = drop_after
        self.config_sent = 0
        self.closed = False
        self.base_prompt = self.cli.prompt().strip()[:-1]

    def _type(self, line: str) -> str:
        if self.closed:
            raise OSError("Socket is closed")
        self.typed.append(line)
        text = self.cli.handle(line).text
        prompt = self.cli.prompt()
        text = text.removesuffix(prompt)
        return text.replace("\r\n", "\n").rstrip("\n")

    def enable(self) -> str:
        if not self.cli.privileged:
            self._type("enable")
            self._type(self.kwargs["secret"])
            if not self.cli.privileged:
                raise ValueError("Failed to enter enable mode. Please ensure you pass the 'secret' argument")
        return ""

    def send_command(self, command_string: str, **kwargs: Any) -> str:
        out = self._type(command_string)
        if command_string.startswith("changeto"):
            self.base_prompt = self.cli.prompt().strip()[:-1]
        return out

    def config_mode(self) -> str:
        return self._type("configure terminal") if not self.cli.frames else ""

    def exit_config_mode(self) -> str:
        return self._type("end") if self.cli.frames else ""

    def send_config_set(self, config_commands: Sequence[str], enter_config_mode: bool = True,
                        exit_config_mode: bool = True, **kwargs: Any) -> str:
        out = [self.config_mode()] if enter_config_mode else []
        for cmd in [config_commands] if isinstance(config_commands, str) else config_commands:
            self.config_sent += 1
            if self.drop_after is not None and self.config_sent > self.drop_after:
                self.closed = True
                raise OSError("Socket is closed")
            out.append(cmd + "\n" + self._type(cmd))
        if exit_config_mode:
            out.append(self.exit_config_mode())
        return "\n".join(out)

    def save_config(self) -> str:
        cmd = "copy running-config startup-config" if self.cli.plat.name == "cisco_nxos" else "write mem"
        return self._type(cmd)

    def disconnect(self) -> None:
        self.closed = True

    def is_alive(self) -> bool:
        return not self.closed


class FakeFactory:
    """Connection factory: every connection reaches the same emulated device."""

    def __init__(self, device: Device, drop_first_after: int | None = None,
                 fail_with: BaseException | None = None) -> None:
        self.device = device
        self.drop_first_after = drop_first_after
        self.fail_with = fail_with
        self.connections: list[FakeConnection] = []

    def __call__(self, **kwargs: Any) -> FakeConnection:
        if self.fail_with is not None:
            raise self.fail_with
        drop = self.drop_first_after if not self.connections else None
        conn = FakeConnection(self.device, drop_after=drop, **kwargs)
        self.connections.append(conn)
        return conn

    @property
    def typed(self) -> list[str]:
        return [line for c in self.connections for line in c.typed]


def device(platform: str, **extra: Any) -> Device:
    spec = {"name": "dev", "hostname": "lab-sw", "platform": platform, "role": "aggregation", **extra}
    return Device(spec, 0, username="ops", password=PASSWORD, secret=SECRET)


def client(dev: Device, factory: FakeFactory | None = None) -> tuple[CiscoClient, FakeFactory]:
    factory = factory or FakeFactory(dev)
    params = CiscoDeviceParams(name=dev.name, host="127.0.0.1", port=22, platform=dev.platform.name,  # type: ignore[arg-type]
                               username="ops", password=SecretStr(PASSWORD), secret=SecretStr(SECRET))
    return CiscoClient(params, connection_factory=factory), factory


SVI = """vlan 1011
  name acme-web
interface Vlan1011
  description acme-web
  vrf member acme
  ip address 10.10.3.2/24
"""

BGP_VRF = """router bgp 65010
  vrf acme
    address-family ipv4 unicast
      redistribute direct route-map ALL
"""


# --------------------------------------------------------------------------- pure diff logic

def test_parse_config_drops_device_headers_and_closers() -> None:
    dev = device("cisco_ios")
    cli = CliSession(dev)
    cli.handle("enable")
    cli.handle(SECRET)
    shown = cli.handle("show running-config").text
    tree = parse_config(shown.replace("\r\n", "\n"))
    top = [n.text for n in tree.children]
    assert top[0] == "version 16.9"
    assert "end" not in top and not any(t.startswith(("Building", "Current configuration", "!")) for t in top)
    vrf = next(n for n in tree.children if n.text == "vrf definition Mgmt-intf")
    assert [c.text for c in vrf.children] == ["address-family ipv4"]  # exit-address-family is structure


def test_missing_keeps_present_parents_as_context() -> None:
    running = parse_config("router bgp 65010\n  router-id 1.1.1.1\ninterface Vlan1011\n  description old\n")
    candidate = parse_config(SVI + BGP_VRF)
    diff = missing(candidate, running)
    assert commands(diff) == [
        "vlan 1011", " name acme-web", "exit",
        "interface Vlan1011", " description acme-web", " vrf member acme", " ip address 10.10.3.2/24", "exit",
        "router bgp 65010", " vrf acme", "  address-family ipv4 unicast", "   redistribute direct route-map ALL",
        "  exit", " exit", "exit",
    ]
    assert [n.new for n in diff.children] == [True, False, False]


def test_ports_the_device_prints_by_name_match_rendered_numbers() -> None:
    rendered = parse_config("access-list acme-perimeter-in extended permit udp host 203.0.113.10 "
                            "host 198.51.100.10 eq 500\n"
                            "access-list acme-web extended permit tcp any any range 80 443\n"
                            "access-list acme-web remark allow eq 80\n")
    shown = parse_config("access-list acme-perimeter-in extended permit udp host 203.0.113.10 "
                         "host 198.51.100.10 eq isakmp\n"
                         "access-list acme-web extended permit tcp any any range www https\n"
                         "access-list acme-web remark allow eq www\n")
    # Ports match whatever the device calls them; a remark is free text and compared as written.
    assert [c.text for c in missing(rendered, shown).children] == ["access-list acme-web remark allow eq 80"]
    assert not line_matches("permit tcp any any eq 81", "permit tcp any any eq www")


def test_removals_take_owned_blocks_whole_and_leave_shared_parents() -> None:
    running = parse_config(SVI + "router bgp 65010\n  router-id 1.1.1.1\n" + BGP_VRF.split("\n", 1)[1]
                           + "interface Vlan1012\n  description other\n  shutdown\n")
    block = parse_config(SVI + BGP_VRF + "interface Vlan1012\n  description other\n")
    # reverse order: users of an object go before the object
    assert commands(removals(block, running), negate_leaves=True) == [
        "interface Vlan1012", " no description other", "exit", "router bgp 65010", " no vrf acme", "exit",
        "no interface Vlan1011", "no vlan 1011"]
    assert removals(block, parse_config("hostname x\n")).children == []


def test_masked_secrets_match_any_value_and_are_hidden() -> None:
    assert line_matches("ikev1 pre-shared-key Abc123", "ikev1 pre-shared-key *****")
    assert not line_matches("ikev1 pre-shared-key Abc123", "ikev2 pre-shared-key *****")
    assert mask_secrets("crypto isakmp key Abc123 address 1.2.3.4") == "crypto isakmp key ***** address 1.2.3.4"
    assert mask_secrets("username a password 0 Abc123") == "username a password 0 *****"
    assert mask_secrets("key chain KC") == "key chain KC"
    assert mask_secrets("ip ospf message-digest-key 10 md5 Abc123") == "ip ospf message-digest-key 10 md5 *****"
    assert mask_secrets("neighbor 10.0.0.1 password 7 0822455D0A16") == "neighbor 10.0.0.1 password 7 *****"
    assert mask_secrets(" ikev2 remote-authentication pre-shared-key Abc123") == \
        " ikev2 remote-authentication pre-shared-key *****"


def test_restore_undoes_additions_and_replacements() -> None:
    before = parse_config("interface Vlan5\n  description old\n  ip address 10.0.0.1/24\nhostname x\n")
    after = parse_config("interface Vlan5\n  ip address 10.0.0.1/24\n  description new\n  mtu 9000\n"
                         "vlan 5\n  name five\nhostname x\n")
    scope = parse_config("interface Vlan5\n  description new\n  mtu 9000\nvlan 5\n  name five\n")
    assert restore(before, after, scope) == [
        "no vlan 5", "interface Vlan5", " no mtu 9000", " no description new", "exit",
        "interface Vlan5", " description old", "exit"]


def test_device_error_detection() -> None:
    assert device_error("x\n          ^\n% Invalid input detected at '^' marker.\n") == \
        "% Invalid input detected at '^' marker."
    assert device_error("ERROR: % Invalid input detected at '^' marker.") is not None
    assert device_error("% Incomplete command.") is not None
    assert device_error("% Warning: the command is deprecated\nWARNING: context in use\nINFO: done") is None
    assert device_error("Creating context 'acme'... Done. (2)") is None


# --------------------------------------------------------------------------- client against the fake

def test_dry_run_returns_the_diff_and_pushes_nothing() -> None:
    dev = device("cisco_nxos")
    before = dev.rendered(None)
    c, factory = client(dev)
    with c:
        change = c.apply(SVI, dry_run=True)
    assert change.dry_run and change.changed and not change.pushed and not change.saved
    assert change.diff[:3] == ["+ vlan 1011", "+   name acme-web", "+ interface Vlan1011"]
    assert dev.rendered(None) == before
    assert dev.config_lines == 0
    assert "configure terminal" not in factory.typed


def test_apply_pushes_only_missing_lines_then_saves_and_is_idempotent() -> None:
    dev = device("cisco_nxos")
    c, factory = client(dev)
    with c:
        c.apply("vlan 1011\n  name acme-web\n", save=False)
        first = c.apply(SVI + BGP_VRF)
        typed_before = len(factory.typed)
        second = c.apply(SVI + BGP_VRF)
    assert first.pushed and first.saved and first.changed
    assert "vlan 1011" not in first.commands  # already there
    assert first.commands[0] == "interface Vlan1011"
    assert "  router bgp 65010" in first.diff and "+   vrf acme" in first.diff  # context parent, new child
    assert not second.changed and second.commands == [] and second.diff == [] and not second.saved
    assert not any(t.startswith(("configure", "copy")) for t in factory.typed[typed_before:])
    running = dev.rendered(None)
    assert "interface Vlan1011\n  description acme-web\n  vrf member acme\n  ip address 10.10.3.2/24\n" in running
    assert dev.rendered(None, "startup") == running


def test_apply_saves_when_only_the_startup_config_lacks_the_lines() -> None:
    dev = device("cisco_ios")
    c, _ = client(dev)
    with c:
        assert c.apply("ip route 10.9.0.0 255.255.0.0 10.0.0.1", save=False).pushed
        again = c.apply("ip route 10.9.0.0 255.255.0.0 10.0.0.1")
    assert not again.pushed and again.saved
    assert "ip route 10.9.0.0 255.255.0.0 10.0.0.1" in dev.rendered(None, "startup")


def test_remove_deletes_the_block_and_second_remove_changes_nothing() -> None:
    dev = device("cisco_nxos")
    baseline = dev.rendered(None)
    c, _ = client(dev)
    with c:
        c.apply(SVI + BGP_VRF)
        dry = c.remove(SVI + BGP_VRF, dry_run=True)
        assert "interface Vlan1011" in dev.rendered(None)
        gone = c.remove(SVI + BGP_VRF)
        again = c.remove(SVI + BGP_VRF)
    assert dry.commands == gone.commands == ["router bgp 65010", " no vrf acme", "exit",
                                             "no interface Vlan1011", "no vlan 1011"]
    assert "- interface Vlan1011" in gone.diff and "-   ip address 10.10.3.2/24" in gone.diff
    assert "  router bgp 65010" in gone.diff and "-   vrf acme" in gone.diff
    assert gone.saved and not again.changed
    assert dev.rendered(None) == baseline  # router bgp 65010 itself stays


def test_rejected_line_reverts_what_was_pushed() -> None:
    dev = device("cisco_nxos")
    c, _ = client(dev)
    with c:
        c.apply("interface Vlan1011\n  description old\n")
        before = dev.rendered(None)
        dev.faults.append(Fault(pattern=__import__("re").compile(r"ip address"), message="% Address overlaps"))
        with pytest.raises(CiscoConfigPushFailed) as info:
            c.apply(SVI)
    exc = info.value
    assert isinstance(exc.__cause__, CiscoCommandRejected)
    assert not is_transient(exc)
    assert exc.reverted and exc.remaining == []
    assert exc.failed_command == "ip address 10.10.3.2/24"
    assert exc.pushed[:3] == ["vlan 1011", " name acme-web", "exit"]
    assert "% Address overlaps" in str(exc) and "reverted" in str(exc)
    assert dev.rendered(None) == before  # the VLAN is gone again and the old description is back


def test_session_drop_mid_push_reverts_on_a_new_session_and_is_transient() -> None:
    dev = device("cisco_ios")
    before = dev.rendered(None)
    factory = FakeFactory(dev, drop_first_after=3)
    c, _ = client(dev, factory)
    with c, pytest.raises(CiscoPushInterrupted) as info:
        c.apply("interface Loopback10\n ip address 10.10.10.10 255.255.255.255\n"
                "ip route 10.10.0.0 255.255.0.0 Null0\nip route 10.11.0.0 255.255.0.0 Null0\n")
    exc = info.value
    assert is_transient(exc) and isinstance(exc, CiscoConfigPushFailed)
    assert exc.reverted and len(factory.connections) == 2
    assert dev.rendered(None) == before


def test_unknown_command_is_a_rejection_not_a_warning() -> None:
    dev = device("cisco_ios")
    c, _ = client(dev)
    with c:
        with pytest.raises(CiscoConfigPushFailed) as info:
            c.apply("interface Loopback3\n frobnicate on\n")
        with pytest.raises(CiscoCommandRejected, match="Invalid input"):
            c.show("show frobnication")
    assert "% Invalid input detected" in str(info.value)
    assert "interface Loopback3" not in dev.rendered(None)


def test_wrong_password_and_wrong_enable_secret_are_permanent() -> None:
    dev = device("cisco_ios")
    params = CiscoDeviceParams(host="h", platform="cisco_ios", username="ops", password=SecretStr("nope-pw"),
                               secret=SecretStr(SECRET))
    with pytest.raises(CiscoAuthFailed) as info:
        CiscoClient(params, connection_factory=FakeFactory(dev)).connect()
    assert not is_transient(info.value) and "nope-pw" not in str(info.value)
    params = params.model_copy(update={"password": SecretStr(PASSWORD), "secret": SecretStr("bad-enable")})
    with pytest.raises(CiscoAuthFailed, match="enable"):
        CiscoClient(params, connection_factory=FakeFactory(dev)).connect()


def test_connect_timeout_is_transient() -> None:
    dev = device("cisco_nxos")
    factory = FakeFactory(dev, fail_with=NetmikoTimeoutException("TCP connection to device failed."))
    c, _ = client(dev, factory)
    with pytest.raises(CiscoTransientError) as info:
        c.connect()
    assert is_transient(info.value)


def test_asa_context_changeto_masked_keys_and_idempotency() -> None:
    dev = device("cisco_asa", multi_context=True)
    c, factory = client(dev)
    tunnel = ("tunnel-group 203.0.113.10 type ipsec-l2l\n"
              "tunnel-group 203.0.113.10 ipsec-attributes\n ikev1 pre-shared-key Psk-Very-Secret-1\n")
    with c:
        c.apply("context acme\n allocate-interface TenGigabitEthernet0/8.1011\n config-url disk0:/acme.cfg\n",
                context="system")
        first = c.apply(tunnel, context="acme")
        second = c.apply(tunnel, context="acme")  # the device shows the key as *****
        removed = c.remove(tunnel, context="acme")
    assert "changeto context acme" in factory.typed
    assert first.pushed and not second.changed
    assert all("Psk-Very-Secret-1" not in line for line in first.diff + first.commands)
    assert first.diff[-1] == "+   ikev1 pre-shared-key *****"
    assert removed.commands == ["no tunnel-group 203.0.113.10 ipsec-attributes",
                                "no tunnel-group 203.0.113.10 type ipsec-l2l"]
    assert "tunnel-group" not in dev.rendered("acme")
    assert "context acme" in dev.rendered(None, "startup")


def test_asa_session_lands_in_admin_and_context_switches_are_tracked_between_calls() -> None:
    dev = device("cisco_asa", multi_context=True)
    c, factory = client(dev)
    assert CiscoClient.thread_safe is False  # draas/sessions.py serialises a shared client
    with c:
        assert c.current_context == "admin"
        assert "management-only" in c.running_config()  # context=None: the admin context it landed in
        c.apply("context acme\n config-url disk0:/acme.cfg\n", context="system")
        c.apply("object network web\n host 10.1.1.10\n", context="acme")
        c.apply("object network web\n host 10.1.1.10\n", context="acme")  # no changeto: already there
        assert c.facts().hostname == "lab-sw" and c.current_context == "admin"
        assert c.context_exists("acme") and c.current_context == "system"
        with pytest.raises(CiscoCommandRejected, match="Invalid context name"):
            c.show("show running-config", context="nope")
        assert c.current_context == "system"  # a refused changeto leaves the session where it was
        c.remove("context acme\n", context="system")
    changetos = [line for line in factory.typed if line.startswith("changeto")]
    assert changetos == ["changeto system", "changeto context acme", "changeto context admin",
                         "changeto system", "changeto context nope"]
    assert "acme" not in dev.contexts and "object network web" not in dev.rendered("admin")


def test_a_kept_session_survives_an_idle_close_and_a_transient_error() -> None:
    dev = device("cisco_asa", multi_context=True)
    c, factory = client(dev)
    with c:
        c.show("show running-config", context="system")
        factory.connections[-1].closed = True  # the device closed the idle session: noticed before the call
        assert "admin-context admin" in c.show("show running-config", context="system")
        assert len(factory.connections) == 2 and c.current_context == "system"
        dead = factory.connections[-1]
        dead.closed = True
        dead.is_alive = lambda: True  # type: ignore[method-assign] - the drop shows only mid-command
        with pytest.raises(CiscoTransientError):
            c.show("show running-config", context="acme-nope")
        assert c.current_context == "admin"  # the session was dropped: the next one starts where it lands
        assert "management-only" in c.show("show running-config")
    assert len(factory.connections) == 3
    assert [line for line in factory.connections[1].typed if line.startswith("changeto")] == ["changeto system"]
    assert not any(line.startswith("changeto") for line in factory.connections[2].typed)


def test_secrets_never_appear_in_failure_messages() -> None:
    dev = device("cisco_asa", multi_context=True)
    dev.faults.append(Fault(message=f"ERROR: refused {PASSWORD} {SECRET}"))
    c, _ = client(dev)
    with c, pytest.raises(CiscoConfigPushFailed) as info:
        c.apply("crypto isakmp key Isakmp-Secret-9 address 203.0.113.10\n")
    text = str(info.value) + repr(info.value.__cause__) + str(info.value.__cause__)
    for secret in (PASSWORD, SECRET, "Isakmp-Secret-9"):
        assert secret not in text
    assert "key *****" in text
    assert PASSWORD not in repr(c.params) and SECRET not in repr(c.params)


# --------------------------------------------------------------------------- templates

TEMPLATE_VARS: dict[str, dict[str, Any]] = {
    "nxos_vlan_svi.j2": {"vlan_id": 1011, "vlan_name": "acme-web", "vrf": "acme-pvt",
                         "svi_address": "10.10.3.2/24", "gateway": "10.10.3.1", "hsrp_group": 11,
                         "hsrp_priority": 110},
    "nxos_vrf.j2": {"vrf": "acme-pvt", "rd": "65000:11", "route_targets": ["65000:11", "65000:10"],
                    "bgp_asn": 65010},
    "ios_vrf.j2": {"vrf": "acme", "rd": "65000:10", "route_targets": ["65000:10"], "description": "tenant acme",
                   "parent_interface": "TenGigabitEthernet0/0/0", "dot1q": 1010, "address": "10.255.10.1",
                   "netmask": "255.255.255.252", "bgp_asn": 65000},
    "asa_access_rule.j2": {"acl": "acme-outside-in", "interface": "outside",
                           "hosts": [{"name": "acme-web01", "address": "10.10.3.40"},
                                     {"name": "acme-web02", "address": "10.10.3.41"}],
                           "rules": [{"protocol": "tcp", "source": "any", "destination": "acme-web01", "port": "https"},
                                     {"protocol": "tcp", "source": "any", "destination": "acme-web02", "port": "https"}]},
    "asa_context.j2": {"context": "acme-vpn", "description": "DRaaS IPsec VPN context of acme",
                       "interfaces": ["TenGigabitEthernet0/8.1012", "TenGigabitEthernet0/9.2010"]},
}


def test_every_device_template_has_golden_variables() -> None:
    assert sorted(p.name for p in DEVICE_TEMPLATES.glob("*.j2")) == sorted(TEMPLATE_VARS)


@pytest.mark.parametrize("template", sorted(TEMPLATE_VARS))
def test_template_renders_its_golden_file(template: str) -> None:
    rendered = render_device_config(template, TEMPLATE_VARS[template])
    golden = GOLDEN / (template.removesuffix(".j2") + ".txt")
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(rendered)
    assert rendered == golden.read_text()


@pytest.mark.parametrize("template", sorted(TEMPLATE_VARS))
def test_template_is_accepted_by_its_platform(template: str) -> None:
    """Each golden render goes through the emulator's grammar without an error."""
    platform = {"nxos": "cisco_nxos", "ios": "cisco_ios", "asa": "cisco_asa"}[template.split("_")[0]]
    dev = device(platform, multi_context=template == "asa_context.j2")
    context = "system" if template == "asa_context.j2" else None  # contexts are made in the system space
    c, _ = client(dev)
    with c:
        change = c.apply(render_device_config(template, TEMPLATE_VARS[template]), context=context)
        assert change.pushed
        assert not c.apply(render_device_config(template, TEMPLATE_VARS[template]), context=context).changed


def test_missing_template_variable_is_an_error() -> None:
    variables = dict(TEMPLATE_VARS["nxos_vlan_svi.j2"])
    del variables["gateway"]
    with pytest.raises(CiscoTemplateError, match="gateway"):
        render_device_config("nxos_vlan_svi.j2", variables)
    with pytest.raises(CiscoTemplateError, match="not found"):
        render_device_config("nope.j2", {})


# --------------------------------------------------------------------------- block and tasks

@pytest.fixture()
def fake_block(monkeypatch: pytest.MonkeyPatch) -> tuple[CiscoDeviceCredentials, Device]:
    dev = device("cisco_nxos")
    factory = FakeFactory(dev)
    original = CiscoDeviceCredentials.get_client
    monkeypatch.setattr(CiscoDeviceCredentials, "get_client",
                        lambda self, connection_factory=None: original(self, connection_factory=factory))
    creds = CiscoDeviceCredentials(device_name="agg-x", host="127.0.0.1", platform="cisco_nxos", username="ops",
                                   password=SecretStr(PASSWORD), enable_secret=SecretStr(SECRET))
    return creds, dev




def test_block_keeps_secrets_secret_and_verifies_host_keys_by_default() -> None:
    creds = CiscoDeviceCredentials(host="10.0.0.1", platform="cisco_ios", username="ops",
                                   password=SecretStr(PASSWORD), enable_secret=SecretStr(SECRET))
    assert creds.verify_host_key is True
    for text in (repr(creds), str(creds), creds.model_dump_json()):
        assert PASSWORD not in text and SECRET not in text
    client_ = creds.get_client()
    assert client_.params.secret is not None and client_.params.secret.get_secret_value() == SECRET


def test_tasks_push_read_remove_with_template(fake_block: tuple[CiscoDeviceCredentials, Device]) -> None:
    creds, dev = fake_block
    variables = TEMPLATE_VARS["nxos_vlan_svi.j2"]
    dry = push_device_config.fn(creds, template="nxos_vlan_svi.j2", variables=variables, dry_run=True)
    assert dry.changed and dry.dry_run and "vlan 1011" not in dev.rendered(None)
    pushed = push_device_config.fn(creds, template="nxos_vlan_svi.j2", variables=variables)
    assert pushed.changed and pushed.target == "agg-x" and pushed.detail["saved"]
    assert pushed.diff[0] == "+ vlan 1011" and pushed.finished is not None
    again = push_device_config.fn(creds, template="nxos_vlan_svi.j2", variables=variables)
    assert not again.changed and again.diff == []
    read = read_device_config.fn(creds, section="Vlan1011")
    assert read.detail["lines"][0] == "interface Vlan1011" and not read.changed
    removed = remove_device_config.fn(creds, template="nxos_vlan_svi.j2", variables=variables)
    assert removed.changed and removed.detail["commands"] == ["no interface Vlan1011", "no vlan 1011"]
    assert not remove_device_config.fn(creds, template="nxos_vlan_svi.j2", variables=variables).changed
    with pytest.raises(ValueError, match="exactly one"):
        push_device_config.fn(creds)

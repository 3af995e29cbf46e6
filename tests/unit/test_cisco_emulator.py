"""The Cisco emulator's config model and CLI state machine, without SSH."""

from __future__ import annotations

import re

import pytest

from lab.cisco.config import Node, parse, render, section, starting_with
from lab.cisco.device import CliSession, Device, Fault, Terminal

CREDS = {"username": "u", "password": "p", "secret": "enable-s3cret"}


def make(platform: str, **extra: object) -> Device:
    spec = {"name": "d", "hostname": "r1", "platform": platform, "role": "test", **extra}
    return Device(spec, 0, **CREDS)


def session(platform: str, **extra: object) -> tuple[Device, CliSession]:
    dev = make(platform, **extra)
    s = CliSession(dev)
    if not s.privileged:
        s.handle("enable")
        s.handle(CREDS["secret"])
    return dev, s


def configure(s: CliSession, *lines: str) -> list[str]:
    """Type ``lines`` in configuration mode; returns the device's answer to each line."""
    s.handle("configure terminal")
    outs = [s.handle(line).text for line in lines]
    s.handle("end")
    return outs


def running(dev: Device, context: str | None = None) -> list[str]:
    return dev.rendered(context).splitlines()


# --------------------------------------------------------------------------- config tree

def test_parse_and_render_keep_nesting_per_platform_indent() -> None:
    text = "router bgp 1\n  vrf a\n    address-family ipv4 unicast\n      redistribute direct\nvlan 10\n"
    tree = parse(text)
    assert [c.text for c in tree.children] == ["router bgp 1", "vlan 10"]
    assert tree.children[0].children[0].children[0].children[0].text == "redistribute direct"
    assert render(tree, "  ") == text.splitlines()
    assert render(tree, " ")[3] == "   redistribute direct"


def test_render_adds_ios_closers_and_separators() -> None:
    tree = parse("vrf definition X\n rd 1:1\n address-family ipv4\n  route-target export 1:1\nhostname r\n")
    lines = render(tree, " ", separators=True, extra={r"address-family ": "exit-address-family"})
    assert lines == ["vrf definition X", " rd 1:1", " address-family ipv4", "  route-target export 1:1",
                     " exit-address-family", "!", "hostname r"]


def test_parse_skips_comments_and_collapses_blanks() -> None:
    tree = parse("!\n: Saved\ninterface  Vlan1\n description   two  words\n\n")
    assert tree.children[0].text == "interface Vlan1"
    assert tree.children[0].children[0].text == "description two words"


def test_remove_exact_then_by_prefix() -> None:
    node = Node("interface Vlan1", [Node("ip address 10.0.0.1/24"), Node("description x")])
    assert [n.text for n in node.remove("ip address")] == ["ip address 10.0.0.1/24"]
    assert [c.text for c in node.children] == ["description x"]
    assert node.remove("shutdown") == []
    bgp = Node("router bgp 1", [Node("neighbor 1.1.1.1 remote-as 2"), Node("neighbor 1.1.1.1 description p"),
                                Node("neighbor 1.1.1.10 remote-as 3")])
    bgp.remove("neighbor 1.1.1.1")
    assert [c.text for c in bgp.children] == ["neighbor 1.1.1.10 remote-as 3"]


def test_section_and_prefix_filters() -> None:
    tree = parse("interface Vlan1\n vrf forwarding A\ninterface Vlan2\nvrf definition A\nhostname r\n")
    assert [c.text for c in section(tree, "vrf").children] == ["interface Vlan1", "vrf definition A"]
    assert [c.text for c in starting_with(tree, ["interface"]).children] == ["interface Vlan1", "interface Vlan2"]
    assert [c.text for c in starting_with(tree, ["INTERFACE", "vlan2"]).children] == ["interface Vlan2"]


# --------------------------------------------------------------------------- sessions and modes

def test_ios_login_lands_in_user_mode_and_enable_asks_for_the_secret() -> None:
    dev = make("cisco_ios")
    s = CliSession(dev)
    assert s.prompt() == "r1>"
    assert s.handle("configure terminal").text.startswith("   ^\r\n% Invalid")  # not before enable
    reply = s.handle("enable")
    assert reply.text == "Password: "
    bad = s.handle("wrong")
    assert not bad.echo and "Access denied" in bad.text and bad.text.endswith("r1>")
    s.handle("enable")
    ok = s.handle(CREDS["secret"])
    assert not ok.echo and ok.text == "r1#"


def test_nxos_starts_privileged_with_a_trailing_blank_prompt() -> None:
    dev = make("cisco_nxos")
    s = CliSession(dev)
    assert s.prompt() == "r1# "
    assert s.handle("configure terminal").text.endswith("r1(config)# ")
    assert s.handle("interface Vlan100").text == "r1(config-if)# "


def test_submodes_nest_and_exit_one_level_at_a_time() -> None:
    dev, s = session("cisco_nxos")
    s.handle("configure terminal")
    prompts = [s.handle(line).text.strip() for line in (
        "router bgp 65010", "vrf acme", "address-family ipv4 unicast", "redistribute direct route-map ALL",
        "exit", "neighbor 10.0.0.2 remote-as 65000", "address-family ipv4 unicast", "send-community",
        "exit", "exit", "exit", "exit")]
    assert prompts == ["r1(config-router)#", "r1(config-router-vrf)#", "r1(config-router-vrf-af)#",
                       "r1(config-router-vrf-af)#", "r1(config-router-vrf)#", "r1(config-router-vrf-neighbor)#",
                       "r1(config-router-vrf-neighbor-af)#", "r1(config-router-vrf-neighbor-af)#",
                       "r1(config-router-vrf-neighbor)#", "r1(config-router-vrf)#", "r1(config-router)#",
                       "r1(config)#"]
    text = dev.rendered(None)
    assert ("router bgp 65010\n  router-id 10.255.255.1\n  log-neighbor-changes\n  vrf acme\n"
            "    address-family ipv4 unicast\n      redistribute direct route-map ALL\n"
            "    neighbor 10.0.0.2 remote-as 65000\n      address-family ipv4 unicast\n        send-community\n") in text


def test_a_line_unknown_in_the_submode_falls_through_to_the_enclosing_mode() -> None:
    dev, s = session("cisco_nxos")
    outs = configure(s, "interface Vlan100", "  description web", "vlan 100", "  name web", "ip route 0.0.0.0/0 1.1.1.1")
    assert all("Invalid" not in o for o in outs)
    lines = running(dev)
    i = lines.index("interface Vlan100")
    assert lines[i + 1] == "  description web"
    assert lines[lines.index("vlan 100") + 1] == "  name web"
    assert "ip route 0.0.0.0/0 1.1.1.1" in lines  # top level, not inside the VLAN


def test_no_removes_a_block_or_a_line_and_is_idempotent() -> None:
    dev, s = session("cisco_ios")
    configure(s, "interface Vlan100", " description x", " ip address 10.0.0.1 255.255.255.0", "vlan 100")
    configure(s, "interface Vlan100", " no ip address")
    assert "interface Vlan100" in running(dev)
    assert not any("10.0.0.1" in line for line in running(dev))
    outs = configure(s, "no interface Vlan100", "no interface Vlan100", "no vlan 100")
    assert outs == ["r1(config)#"] * 3
    assert "interface Vlan100" not in running(dev)
    assert "vlan 100" not in running(dev)


def test_stored_negations_and_single_valued_lines() -> None:
    dev, s = session("cisco_nxos")
    configure(s, "interface Ethernet3/9", "  shutdown", "  description a", "  description b")
    configure(s, "interface Ethernet3/9", "  no shutdown")
    block = running(dev)[running(dev).index("interface Ethernet3/9"):][:3]
    assert block == ["interface Ethernet3/9", "  description b", "  no shutdown"]
    configure(s, "interface Ethernet3/9", "  shutdown")
    block = running(dev)[running(dev).index("interface Ethernet3/9"):][:3]
    assert block == ["interface Ethernet3/9", "  description b", "  shutdown"]


@pytest.mark.parametrize("platform, error", [
    ("cisco_ios", "% Invalid input detected at '^' marker."),
    ("cisco_nxos", "% Invalid command at '^' marker."),
    ("cisco_asa", "ERROR: % Invalid input detected at '^' marker."),
])
def test_unknown_commands_get_the_platform_error_with_a_caret(platform: str, error: str) -> None:
    dev, s = session(platform)
    s.handle("configure terminal")
    before = dev.rendered(None)
    prompt = s.prompt()
    out = s.handle("frobnicate the network").text
    caret, message, new_prompt = out.split("\r\n")
    assert caret == " " * len(prompt) + "^"
    assert message == error
    assert new_prompt == prompt
    assert dev.rendered(None) == before
    # A known first keyword with a bad argument points at the argument.
    out = s.handle("interface").text
    assert "Incomplete command" in out
    exec_out = s.handle("end").text
    assert exec_out.rstrip().endswith("#")
    assert error in s.handle("shwo version").text


def test_ios_exit_address_family_and_fall_through_to_global() -> None:
    dev, s = session("cisco_ios")
    configure(s, "vrf definition acme", " rd 65000:10", " address-family ipv4", "  route-target export 65000:10",
              " exit-address-family", " description tenant acme", "ip route vrf acme 0.0.0.0 0.0.0.0 10.0.0.1")
    text = dev.rendered(None)
    assert ("vrf definition acme\n rd 65000:10\n address-family ipv4\n  route-target export 65000:10\n"
            " exit-address-family\n description tenant acme\n!\n") in text
    assert "\nip route vrf acme 0.0.0.0 0.0.0.0 10.0.0.1\n" in text


def test_hostname_changes_the_prompt_and_show_hostname() -> None:
    dev, s = session("cisco_nxos")
    s.handle("configure terminal")
    assert s.handle("hostname new-name").text == "new-name(config)# "
    assert s.handle("do show hostname").text.startswith("new-name\r\n")
    assert running(dev).count("hostname new-name") == 1
    assert not any(line == "hostname r1" for line in running(dev))


def test_show_running_config_forms() -> None:
    _dev, s = session("cisco_ios")
    configure(s, "interface Vlan7", " vrf forwarding acme", "interface Vlan8")
    full = s.handle("show running-config").text
    assert full.startswith("Building configuration...")
    assert "\r\nend\r\n" in full
    sec = s.handle("show running-config | section acme").text.split("\r\n")
    assert sec == ["interface Vlan7", " vrf forwarding acme", "r1#"]
    intf = s.handle("sh run interface Vlan8").text.split("\r\n")
    assert intf == ["interface Vlan8", "r1#"]
    inc = s.handle("show run | include ^interface Vlan").text.split("\r\n")
    assert inc == ["interface Vlan7", "interface Vlan8", "r1#"]


def test_save_copies_running_to_startup() -> None:
    dev, s = session("cisco_ios")
    configure(s, "ip route 10.9.9.0 255.255.255.0 10.0.0.1")
    assert "ip route 10.9.9.0" not in dev.rendered(None, "startup")
    out = s.handle("write mem").text
    assert "[OK]" in out
    assert "ip route 10.9.9.0 255.255.255.0 10.0.0.1" in dev.rendered(None, "startup")
    # NX-OS saves with copy running-config startup-config and says so.
    nx, s2 = session("cisco_nxos")
    configure(s2, "vlan 300")
    assert "Copy complete." in s2.handle("copy running-config startup-config").text
    assert "vlan 300" in nx.rendered(None, "startup").splitlines()


def test_asa_multi_context_create_changeto_and_save_per_context() -> None:
    dev, s = session("cisco_asa", multi_context=True)
    assert s.prompt() == "r1/admin#"  # an SSH session lands in the admin context
    assert s.handle("changeto system").text == "r1#"
    outs = configure(s, "context acme", " allocate-interface TenGigabitEthernet0/8.100",
                     " config-url disk0:/acme.cfg")
    assert outs[0].startswith("Creating context 'acme'... Done.")
    assert "ERROR: Invalid context name nope" in s.handle("changeto context nope").text
    assert s.handle("changeto context acme").text == "r1/acme#"
    s.handle("configure terminal")
    assert s.handle("access-list OUTSIDE extended permit tcp any host 10.1.1.10 eq 443").text == "r1/acme(config)#"
    assert s.handle("object network web01").text == "r1/acme(config-network-object)#"
    assert s.handle(" host 10.1.1.10").text == "r1/acme(config-network-object)#"
    assert s.handle("tunnel-group 203.0.113.5 ipsec-attributes").text == "r1/acme(config-tunnel-ipsec)#"
    assert s.handle(" ikev1 pre-shared-key VerySecret1").text == "r1/acme(config-tunnel-ipsec)#"
    # the context statement only exists in the system context
    assert "Invalid input" in s.handle("context other").text
    assert s.handle("changeto system").text == "r1(config)#"
    s.handle("end")
    acme = dev.rendered("acme")
    assert "access-list OUTSIDE extended permit tcp any host 10.1.1.10 eq 443" in acme
    assert "ikev1 pre-shared-key *****" in acme and "VerySecret1" not in acme
    assert "access-list OUTSIDE" not in dev.rendered(None)
    assert "context acme\n allocate-interface TenGigabitEthernet0/8.100\n config-url disk0:/acme.cfg" \
        in dev.rendered(None)
    s.handle("changeto context acme")
    s.handle("write mem")
    assert "access-list OUTSIDE" in dev.rendered("acme", "startup")
    assert "context acme" not in dev.rendered(None, "startup")  # the system context was not saved
    s.handle("changeto system")
    configure(s, "no context acme")
    assert "acme" not in dev.contexts


def test_asa_show_curpriv_and_login() -> None:
    dev = make("cisco_asa", multi_context=True)
    s = CliSession(dev)
    assert s.prompt() == "r1/admin>"
    assert "Current privilege level : 1" in s.handle("show curpriv").text
    assert s.handle("login").text == "Username: "
    assert s.handle(CREDS["username"]).text == "Password: "
    reply = s.handle(CREDS["password"])
    assert not reply.echo and reply.text == "r1/admin#"
    assert "P_PRIV" in s.handle("show curpriv").text


def test_faults_reject_matching_lines_then_clear() -> None:
    dev, s = session("cisco_nxos")
    dev.faults.append(Fault(pattern=re.compile(r"^vlan 2\d\d"), message="% VLAN database busy"))
    outs = configure(s, "vlan 100", "vlan 200", "vlan 201")
    assert outs[0] == "r1(config-vlan)# "
    assert outs[1].startswith("% VLAN database busy")
    assert outs[2] == "r1(config-vlan)# "  # times=1: the fault cleared itself
    lines = running(dev)
    assert "vlan 100" in lines and "vlan 200" not in lines and "vlan 201" in lines
    assert dev.faults == []
    dev.faults.append(Fault(after_lines=2, times=0))
    outs = configure(s, "vlan 300", "vlan 301", "vlan 302", "vlan 303")
    assert ["Configuration rejected" in o for o in outs] == [False, False, True, True]


def test_reset_restores_baseline_and_returns_sessions_to_exec_mode() -> None:
    dev, s = session("cisco_asa", multi_context=True)
    base = dev.rendered(None)
    s.handle("changeto system")
    configure(s, "context acme")
    s.handle("changeto context acme")
    s.handle("configure terminal")
    dev.reset()
    assert dev.rendered(None) == base
    assert "acme" not in dev.contexts
    assert s.handle("").text == "r1/admin#"  # the session left the deleted context for the admin one


def test_config_mode_line_throughput() -> None:
    dev, s = session("cisco_nxos")
    s.handle("configure terminal")
    import time
    start = time.perf_counter()
    for i in range(1000):
        s.handle(f"vlan {2000 + i}")
        s.handle(f"  name tenant-{i}")
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, elapsed
    assert dev.rendered(None).count("name tenant-") == 1000


# --------------------------------------------------------------------------- terminal (keystrokes)

def typed(t: Terminal, text: str) -> str:
    """Feed ``text`` one character at a time, as a person types; returns everything printed."""
    return "".join(t.feed(ch) for ch in text)


def test_terminal_echoes_each_keystroke_as_it_arrives() -> None:
    t = Terminal(CliSession(make("cisco_nxos")))
    assert t.greeting() == "\r\nr1# "
    assert [t.feed(ch) for ch in "conf t"] == list("conf t")  # echoed before Enter
    assert t.feed("\r") == "\r\nEnter configuration commands, one per line. End with CNTL/Z.\r\nr1(config)# "


def test_terminal_backspace_erases_and_the_corrected_line_runs() -> None:
    dev = make("cisco_nxos")
    t = Terminal(CliSession(dev))
    typed(t, "configure terminal\r")
    out = typed(t, "vlam\x7f\x7fan 42\x08\x083\r")
    assert out == "vlam\b \b\b \ban 42\b \b\b \b3\r\nr1(config-vlan)# "
    assert "vlan 3" in running(dev)
    assert t.feed("\x7f") == ""  # nothing to erase at the start of a line
    assert typed(t, "name x\x15") == "name x" + "\b \b" * 6  # ^U erases the line
    assert typed(t, "name old new\x17\x17web\r").endswith("r1(config-vlan)# ")
    assert "  name web" in running(dev)


def test_terminal_does_not_echo_passwords_and_ends_lines_on_cr_lf_or_crlf() -> None:
    t = Terminal(CliSession(make("cisco_ios")))
    assert typed(t, "enable\r") == "enable\r\nPassword: "
    assert typed(t, CREDS["secret"]) == ""
    assert t.feed("\r\n") == "\r\nr1#"
    assert t.feed("\r\n") == "\r\nr1#"  # CRLF is one Enter; a later CRLF is another
    assert t.feed("\n") == "\r\nr1#"


def test_terminal_handles_a_pasted_block_like_line_by_line_typing() -> None:
    lines = [f"vlan {100 + i}\n  name v{i}" for i in range(100)]
    pasted, keyed = make("cisco_nxos"), make("cisco_nxos")
    t1, t2 = Terminal(CliSession(pasted)), Terminal(CliSession(keyed))
    block = "configure terminal\n" + "\n".join(lines) + "\nend\n"
    out1 = t1.feed(block)
    out2 = typed(t2, block)
    assert out1 == out2
    assert out1.count("r1(config-vlan)# ") == 200 and pasted.rendered(None) == keyed.rendered(None)


def test_terminal_swallows_arrow_keys_and_ctrl_c_abandons_the_line() -> None:
    dev = make("cisco_nxos")
    t = Terminal(CliSession(dev))
    assert t.feed("\x1b[A\x1bOB") == ""
    assert typed(t, "configure terminal\rvlan 7\x03") == (
        "configure terminal\r\nEnter configuration commands, one per line. End with CNTL/Z.\r\nr1(config)# "
        "vlan 7^C\r\nr1(config)# ")
    assert t.feed("\x1a") == "^Z\r\nr1# "  # ^Z is end
    assert "vlan 7" not in running(dev)


def test_terminal_closes_on_exit_and_ignores_what_follows() -> None:
    t = Terminal(CliSession(make("cisco_nxos")))
    assert t.feed("exit\nshow version\n") == "exit\r\n"
    assert t.closed

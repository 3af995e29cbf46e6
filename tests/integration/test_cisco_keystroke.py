"""Issue 14: the Cisco emulator answers a client that types one key at a time, as a person does.

A small paramiko client (no netmiko) sends one character, waits until exactly that character
comes back (the real CLIs echo each keystroke as it is typed) and only then sends the next
one or presses Enter. It logs in to every lab device, enters enable mode (IOS and ASA ask
``Password:`` and echo nothing while it is typed), configures a line, reads it back with a
``show`` command, saves, and edits a line with Backspace. The multi-context ASA starts in
its admin context and moves with ``changeto``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import paramiko
import pytest

#: A prompt at the end of the output: ``host>``, ``host/ctx#``, ``host(config-vlan)# `` (NX-OS adds a blank).
PROMPT = re.compile(r"[\w.-]+(/[\w.-]+)?(\([\w-]+\))?[#>] ?$")
DEVICES = ["agg-1", "agg-2", "fw-perimeter", "fw-vpn", "pe-1", "slb-1"]

#: Per device: config lines typed in configuration mode, and the line ``show running-config``
#: must then print (found with ``| include keyed``).
CONFIG: dict[str, tuple[list[str], str]] = {
    "agg-1": (["vlan 3901", "name keyed-agg-1"], "  name keyed-agg-1"),
    "agg-2": (["vlan 3902", "name keyed-agg-2"], "  name keyed-agg-2"),
    "fw-perimeter": (["object network keyed-web", "host 10.39.0.10"], "object network keyed-web"),
    "fw-vpn": (["object network keyed-vpn", "description keyed-vpn"], " description keyed-vpn"),
    "pe-1": (["interface Loopback391", "description keyed-pe"], " description keyed-pe"),
    "slb-1": (["rserver host KEYED1", "description keyed-slb"], " description keyed-slb"),
}


@pytest.fixture(scope="module", autouse=True)
def clean_devices(lab) -> Iterator[None]:
    httpx.post(f"{lab.cisco.control_url}/reset").raise_for_status()
    yield
    httpx.post(f"{lab.cisco.control_url}/reset").raise_for_status()


class Typist:
    """An interactive SSH shell driven one keystroke at a time."""

    def __init__(self, lab, name: str, timeout: float = 5.0) -> None:
        dev = lab.cisco.devices[name]
        self.dev = dev
        self.timeout = timeout
        self.client = paramiko.SSHClient()
        # the lab generates its SSH host keys at every start: nothing to pin
        self.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507
        self.client.connect(dev.host, port=dev.port, username=dev.username, password=dev.password,
                            look_for_keys=False, allow_agent=False, timeout=timeout)
        self.chan = self.client.invoke_shell(width=511)
        self.chan.settimeout(timeout)
        self.keys_sent = 0

    def close(self) -> None:
        self.client.close()

    def read_until(self, done: re.Pattern[str] | str) -> str:
        """Read until the output matches ``done`` (a regex), or is exactly ``done`` (a text)."""
        out = ""
        deadline = time.monotonic() + self.timeout
        while True:
            if isinstance(done, str):
                if out == done:
                    return out
                assert done.startswith(out), f"{self.dev.name}: expected exactly {done!r}, got {out!r}"
            elif done.search(out):
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.dev.name}: waited for {done!r}, got {out!r}")
            try:
                out += self.chan.recv(4096).decode()
            except TimeoutError:
                raise AssertionError(f"{self.dev.name}: no answer; waited for {done!r}, got {out!r}") from None

    def prompt(self) -> str:
        """Read up to the next prompt (or question) and return the whole output."""
        return self.read_until(re.compile(PROMPT.pattern + r"|Password: $"))

    def key(self, ch: str, echo: str | None = None) -> None:
        """Press one key and wait for its echo (``echo=""``: the device must echo nothing)."""
        self.chan.send(ch.encode())
        self.keys_sent += 1
        expected = ch if echo is None else echo
        if expected:
            assert self.read_until(expected) == expected

    def type(self, text: str) -> None:
        for ch in text:
            self.key(ch)

    def enter(self) -> str:
        """Press Enter; returns what the device printed up to its next prompt (without the newline)."""
        self.chan.send(b"\r")
        out = self.prompt()
        assert out.startswith("\r\n"), out
        return out[2:]

    def line(self, text: str) -> str:
        """Type ``text`` key by key, then Enter: the device's answer, ending with its prompt."""
        self.type(text)
        return self.enter()

    def secret(self, text: str) -> str:
        """Type a password: nothing is echoed (checked once every key is sent), then Enter."""
        for ch in text:
            self.chan.send(ch.encode())
        self.chan.send(b"\r")
        out = self.prompt()
        assert out.startswith("\r\n") and text not in out, "a secret was echoed"
        return out[2:]


def login_enable(t: Typist) -> str:
    """Log in and reach privileged mode; returns the privileged prompt (without trailing blank)."""
    first = t.prompt()
    assert first.startswith("\r\n")
    prompt = first.strip()
    if prompt.endswith(">"):
        assert t.line("enable") == "Password: "
        prompt = t.secret(t.dev.secret).strip()
    assert prompt.endswith("#"), prompt
    return prompt


def control(lab, path: str, **params: str) -> str:
    r = httpx.get(f"{lab.cisco.control_url}{path}", params=params)
    r.raise_for_status()
    return r.text


@pytest.mark.parametrize("name", DEVICES)
def test_typed_key_by_key_login_enable_configure_show_and_save(lab, name: str) -> None:
    dev = lab.cisco.devices[name]
    lines, shown = CONFIG[name]
    t = Typist(lab, name)
    try:
        prompt = login_enable(t)
        host = dev.hostname + ("/admin" if dev.multi_context else "")
        assert prompt == f"{host}#"
        assert t.line("configure terminal").rstrip().endswith(f"{host}(config)#")
        for line in lines:
            out = t.line(line)
            assert "Invalid" not in out and "ERROR" not in out, out
            assert re.search(rf"^{re.escape(host)}\(config-[\w-]+\)# ?$", out), out
        assert t.line("end").rstrip() == f"{host}#"

        out = t.line("show running-config | include keyed")
        assert shown in out.split("\r\n"), out
        saved = t.line("copy running-config startup-config" if dev.platform == "cisco_nxos" else "write memory")
        assert ("Copy complete." if dev.platform == "cisco_nxos" else "[OK]") in saved
        context = {"context": "admin"} if dev.multi_context else {}
        assert shown in control(lab, f"/devices/{name}/startup", **context).splitlines()
        # each key was sent only after the previous one came back
        assert t.keys_sent >= sum(len(line) for line in lines)
    finally:
        t.close()


@pytest.mark.parametrize("name, erase", [("agg-1", "\x7f"), ("pe-1", "\x08"), ("fw-vpn", "\x7f")])
def test_backspace_erases_the_last_character_and_the_corrected_line_is_accepted(lab, name: str,
                                                                                 erase: str) -> None:
    t = Typist(lab, name)
    try:
        host = login_enable(t)[:-1]
        t.line("configure terminal")
        wrong, right = {"agg-1": ("vlan 39x", "vlan 3911"), "pe-1": ("interface Loopback39x", "interface Loopback3911"),
                        "fw-vpn": ("object network keyex", "object network keyed-erase")}[name]
        t.type(wrong)
        t.key(erase, echo="\b \b")
        t.type(right[len(wrong) - 1:])
        out = t.enter()
        assert "Invalid" not in out and "ERROR" not in out, out
        assert out.startswith(f"{host}(config-")
        t.key(erase, echo="")  # nothing left to erase: nothing echoed
        t.line("end")
        context = {"context": "admin"} if lab.cisco.devices[name].multi_context else {}
        running = control(lab, f"/devices/{name}/running", **context).splitlines()
        assert right in running and wrong not in running and not any("\x7f" in r or "\b" in r for r in running)
        # a typo erased in an exec command: the corrected command runs
        t.type("shpw")
        t.key(erase, echo="\b \b")
        t.key(erase, echo="\b \b")
        out = t.line("ow running-config | include " + right.split()[-1])
        assert right in out.split("\r\n"), out
    finally:
        t.close()


def test_multi_context_asa_login_starts_in_the_admin_context(lab) -> None:
    dev = lab.cisco.devices["fw-perimeter"]
    host = dev.hostname
    t = Typist(lab, "fw-perimeter")
    try:
        assert t.prompt() == f"\r\n{host}/admin>"
        assert t.line("enable") == "Password: "
        assert t.secret(dev.secret) == f"{host}/admin#"
        assert "management-only" in t.line("show running-config")  # the admin context's own config
        assert t.line("changeto system") == f"{host}#"
        assert "*admin" in t.line("show context")
        t.line("configure terminal")
        assert t.line("context keyed").startswith("Creating context 'keyed'")
        t.line("config-url disk0:/keyed.cfg")
        assert t.line("end") == f"{host}#"
        assert t.line("changeto context keyed") == f"{host}/keyed#"
        assert t.line("changeto context admin") == f"{host}/admin#"
        assert t.line("changeto context nope").startswith("ERROR: Invalid context name nope")
    finally:
        t.close()
    assert "context keyed" in control(lab, "/devices/fw-perimeter/running")


def test_a_pasted_block_is_echoed_and_applied_fast(lab) -> None:
    """netmiko's send_config_set writes many lines at once: echo and answers keep their order."""
    t = Typist(lab, "agg-2", timeout=10)
    try:
        host = login_enable(t)
        t.line("configure terminal")
        lines = [line for i in range(100) for line in (f"vlan {3500 + i}", f"  name pasted-{i}")]
        start = time.perf_counter()
        t.chan.send(("\n".join(lines) + "\n").encode())
        out = t.read_until(re.compile(re.escape(f"{lines[-1]}\r\n{host[:-1]}(config-vlan)# ") + "$"))
        took = time.perf_counter() - start
        assert took < 1.0, f"200 pasted lines took {took:.2f} s"
        # every line is echoed, then answered by its prompt, in order
        assert out.count("(config-vlan)# ") == 200
        assert out.index("vlan 3599") < out.index("  name pasted-99")
        t.line("end")
    finally:
        t.close()
    assert control(lab, "/devices/agg-2/running").count("  name pasted-") == 100

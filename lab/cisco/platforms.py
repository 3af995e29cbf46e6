"""Per-platform look and feel: prompts, error texts, config headers, baselines, save output."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SYSTEM = "system"  #: name of the system context of a multi-context ASA


@dataclass(frozen=True)
class Platform:
    """What differs between NX-OS, IOS(-XE) and ASA in the emulator.

    Attributes:
        name: netmiko device_type.
        indent: indentation per config level in ``show running-config``.
        separators: ``!`` after each top-level block.
        closers: lines rendered after a matching sub-mode (IOS ``exit-address-family``).
        invalid: the error for a line nobody understands.
        prompt_tail: text after ``#``/``>`` (NX-OS prints a blank).
        starts_privileged: lands in ``#`` after login (NX-OS) instead of ``>``.
        stored_negations: ``no X`` lines the running config shows (``no shutdown``).
        single_valued: keywords of lines a new value replaces (``description``).
    """

    name: str
    indent: str
    separators: bool
    invalid: str
    closers: dict[str, str] = field(default_factory=dict)
    prompt_tail: str = ""
    starts_privileged: bool = False
    stored_negations: frozenset[str] = frozenset()
    single_valued: tuple[str, ...] = ()

    def error(self, message: str) -> str:
        """A device error line in this platform's style."""
        if self.name == "cisco_asa" and not message.startswith("ERROR:"):
            return f"ERROR: {message}"
        return message

    def single_key(self, body: str) -> str | None:
        """The keyword of a single-valued line (``ip address``), or None."""
        low = body.lower()
        if low.endswith(" secondary"):
            return None
        best = None
        for key in self.single_valued:
            if low.startswith(key + " ") and (best is None or len(key) > len(best)):
                best = key
        return best


_SINGLE_COMMON = (
    "hostname", "description", "ip address", "ipv6 address", "nameif", "security-level", "rd",
    "vrf member", "vrf forwarding", "ip vrf forwarding", "encapsulation dot1q", "switchport mode",
    "switchport access vlan", "mtu", "speed", "duplex", "name", "bgp router-id", "router-id",
    "config-url", "join-failover-group", "state", "priority", "switchname", "domain-name",
    "ip domain name", "ip domain-name", "ikev1 pre-shared-key", "default-group-policy",
    "predictor", "weight", "interval", "ip address dhcp", "standby version", "hsrp version",
)

NXOS = Platform(
    name="cisco_nxos",
    indent="  ",
    separators=False,
    invalid="% Invalid command at '^' marker.",
    prompt_tail=" ",
    starts_privileged=True,
    stored_negations=frozenset({"shutdown", "switchport", "ip redirects", "ipv6 redirects",
                                "ip domain-lookup", "feature telnet"}),
    single_valued=_SINGLE_COMMON,
)
IOS = Platform(
    name="cisco_ios",
    indent=" ",
    separators=True,
    invalid="% Invalid input detected at '^' marker.",
    closers={r"address-family ": "exit-address-family"},
    stored_negations=frozenset({"aaa new-model", "ip domain lookup", "ip http server",
                                "ip http secure-server", "cdp run", "ip redirects", "ip unreachables",
                                "ip proxy-arp", "auto-summary", "synchronization", "switchport",
                                "ip source-route", "service pad", "mop enabled", "negotiation auto",
                                "bgp default ipv4-unicast", "keepalive", "logging console"}),
    single_valued=_SINGLE_COMMON + ("negotiation",),
)
ASA = Platform(
    name="cisco_asa",
    indent=" ",
    separators=True,
    invalid="ERROR: % Invalid input detected at '^' marker.",
    stored_negations=frozenset({"failover", "names", "logging message"}),
    single_valued=_SINGLE_COMMON,
)

PLATFORMS: dict[str, Platform] = {p.name: p for p in (NXOS, IOS, ASA)}


def platform(name: str) -> Platform:
    try:
        return PLATFORMS[name]
    except KeyError:
        raise ValueError(f"unsupported Cisco platform {name!r}; expected one of {sorted(PLATFORMS)}") from None


_ASA_SECRET = re.compile(r"\b(pre-shared-key) \S+")


def mask(platform_name: str, line: str) -> str:
    """What ``show running-config`` prints for a stored line (the ASA hides pre-shared keys)."""
    if platform_name == "cisco_asa":
        return _ASA_SECRET.sub(r"\1 *****", line)
    return line


def _stamp() -> str:
    return datetime.now(UTC).strftime("%a %b %d %H:%M:%S %Y")


def config_header(platform_name: str, what: str, context: str, size: int) -> list[str]:
    """Lines printed before a full ``show running-config`` / ``show startup-config``."""
    if platform_name == "cisco_nxos":
        label = "running-config" if what == "running" else "startup-config"
        done = "Running configuration last done at" if what == "running" else "Startup config saved at"
        return ["", f"!Command: show {label}", f"!{done}: {_stamp()}", f"!Time: {_stamp()}", ""]
    if platform_name == "cisco_asa":
        return [": Saved", ":", ": Serial Number: JAD194201AB", ": Hardware:   ASA5585-SSP-60, 49152 MB RAM",
                ":", f"ASA Version 9.12(4)56 <{context or 'context'}>", "!"]
    head = ["Building configuration...", "", f"Current configuration : {size} bytes"] if what == "running" \
        else [f"Using {size} out of 33554432 bytes"]
    return head + ["!", f"! Last configuration change at {_stamp()}", "!"]


def config_footer(platform_name: str) -> list[str]:
    if platform_name == "cisco_asa":
        return [": end"]
    if platform_name == "cisco_ios":
        return ["end"]
    return []


def save_output(platform_name: str, size: int) -> str:
    if platform_name == "cisco_nxos":
        return "[########################################] 100%\r\nCopy complete."
    if platform_name == "cisco_asa":
        return ("Building configuration...\r\nCryptochecksum: 5a1c9e0f 8b2d4e61 0c3f7a92 d4e8b615 \r\n\r\n"
                f"{size} bytes copied in 0.150 secs\r\n[OK]")
    return "Building configuration...\r\n[OK]"


def version_text(platform_name: str, hostname: str, model: str) -> str:
    if platform_name == "cisco_nxos":
        return (f"Cisco Nexus Operating System (NX-OS) Software\r\n"
                f"  NXOS: version 8.4(2)\r\n\r\nHardware\r\n  cisco {model or 'Nexus7000'} Chassis\r\n\r\n"
                f"  Device name: {hostname}\r\n  bootflash:    1767480 kB\r\n"
                f"Kernel uptime is 12 day(s), 3 hour(s), 1 minute(s), 9 second(s)")
    if platform_name == "cisco_asa":
        return (f"Cisco Adaptive Security Appliance Software Version 9.12(4)56 <system>\r\n"
                f"Device Manager Version 7.12(2)\r\n\r\n{hostname} up 12 days 3 hours\r\n\r\n"
                f"Hardware:   {model or 'ASA5585'}-SSP-60, 49152 MB RAM\r\n"
                f"Security Context Mode: multiple")
    return (f"Cisco IOS XE Software, Version 16.09.08\r\n"
            f"Cisco IOS Software [Fuji], ASR1000 Software (X86_64_LINUX_IOSD-UNIVERSALK9-M), Version 16.9.8\r\n"
            f"\r\n{hostname} uptime is 12 weeks, 3 days, 1 hour, 9 minutes\r\n"
            f"cisco {model or 'ASR1006'} (RP2) processor with 3950723K/6147K bytes of memory.")


def baseline(spec: dict[str, Any], index: int) -> dict[str, str]:
    """Starting configs of one device, ``{context: text}`` (``""`` for single-context devices).

    Management addresses follow the device's position in the lab config so that every
    device differs; no tenant objects exist yet.
    """
    host = spec["hostname"]
    plat = spec["platform"]
    mgmt = f"192.168.0.{11 + index}"
    if plat == "cisco_nxos":
        peer = f"192.168.0.{12 + index if index % 2 == 0 else 10 + index}"
        return {"": f"""version 8.4(2)
hostname {host}
feature bgp
feature interface-vlan
feature hsrp
feature lacp
feature vpc
username admin password 5 $5$LABHASH$0000000000000000000000000000000000000000000 role network-admin
no ip domain-lookup
vlan 1
vrf context management
  ip route 0.0.0.0/0 192.168.0.1
vpc domain 10
  peer-switch
  role priority {10 + index}
  peer-keepalive destination {peer} source {mgmt} vrf management
  peer-gateway
interface mgmt0
  vrf member management
  ip address {mgmt}/24
interface port-channel1
  description vPC peer-link
  switchport
  switchport mode trunk
  spanning-tree port type network
  vpc peer-link
interface Ethernet3/1
  description uplink to PE
  no switchport
  ip address 10.255.{index}.1/30
  no shutdown
line console
line vty
router bgp 65010
  router-id 10.255.255.{1 + index}
  log-neighbor-changes
"""}
    if plat == "cisco_asa":
        system = f"""hostname {host}
mac-address auto
interface Management0/0
interface TenGigabitEthernet0/8
 description trunk to aggregation (tenant inside VLANs)
interface TenGigabitEthernet0/9
 description trunk to PE (tenant outside VLANs)
admin-context admin
context admin
 allocate-interface Management0/0
 config-url disk0:/admin.cfg
"""
        admin = f"""hostname admin
names
interface Management0/0
 management-only
 nameif management
 security-level 100
 ip address {mgmt} 255.255.255.0
route management 0.0.0.0 0.0.0.0 192.168.0.1 1
ssh 192.168.0.0 255.255.255.0 management
ssh timeout 30
"""
        if not spec.get("multi_context"):
            return {"": admin.replace("hostname admin", f"hostname {host}")}
        return {SYSTEM: system, "admin": admin}
    if spec.get("role") == "load-balancer":
        return {"": f"""version 16.9
hostname {host}
boot-start-marker
boot-end-marker
no aaa new-model
username admin privilege 15 secret 9 $9$LABHASH$000000000000000000000000000000
interface GigabitEthernet0
 description management
 ip address {mgmt} 255.255.255.0
interface GigabitEthernet1/1
 description one-arm trunk to aggregation
 no shutdown
probe icmp PING
 interval 5
access-list ALL line 8 extended permit ip any any
line con 0
 stopbits 1
line vty 0 4
 login local
 transport input ssh
"""}
    return {"": f"""version 16.9
service timestamps debug datetime msec
service timestamps log datetime msec
hostname {host}
boot-start-marker
boot-end-marker
vrf definition Mgmt-intf
 address-family ipv4
no aaa new-model
ip domain name dr.lab
username admin privilege 15 secret 9 $9$LABHASH$000000000000000000000000000000
mpls label protocol ldp
interface GigabitEthernet0
 vrf forwarding Mgmt-intf
 ip address {mgmt} 255.255.255.0
 negotiation auto
interface Loopback0
 ip address 10.255.255.10 255.255.255.255
interface TenGigabitEthernet0/0/0
 description link to aggregation
 ip address 10.255.0.2 255.255.255.252
 mpls ip
router bgp 65000
 bgp router-id 10.255.255.10
 bgp log-neighbor-changes
 no bgp default ipv4-unicast
line con 0
 stopbits 1
line vty 0 4
 login local
 transport input ssh
"""}

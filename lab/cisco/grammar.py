"""What each emulated platform accepts in configuration mode, mode by mode.

A :class:`Mode` knows the first keywords of the lines it accepts (one to three words,
e.g. ``ip address``) and the lines that open a sub-mode (regular expressions). A line
that the current sub-mode does not know is tried in the enclosing modes, as the real
CLIs do ("mode fall-through"): ``vlan 200`` typed inside ``interface Vlan100`` leaves
the interface and creates the VLAN. Lines no mode knows are rejected with the
platform's ``% Invalid input`` error. The vocabulary is generous (what a VMDC/DRaaS
tenant container needs, and more) but it is not the full Cisco grammar: arguments are
not validated.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field


def _phrases(text: str) -> frozenset[str]:
    return frozenset(p.strip().lower() for p in text.replace("\n", ",").split(",") if p.strip())


def _is_ip(word: str) -> bool:
    try:
        ipaddress.ip_network(word, strict=False)
    except ValueError:
        return False
    return True


@dataclass
class Mode:
    """One configuration (sub-)mode.

    Attributes:
        name: what the prompt shows, e.g. ``config-if``.
        keywords: accepted leading phrases; ``<num>``/``<ip>`` accept a number/address.
        submodes: ``(regex, mode)``; a matching line opens ``mode``.
        generous: accept any line no enclosing mode knows (modes too rich to list).
        closers: words that leave this mode like ``exit`` (IOS ``exit-address-family``).
    """

    name: str
    keywords: frozenset[str] = frozenset()
    submodes: list[tuple[re.Pattern[str], Mode]] = field(default_factory=list)
    generous: bool = False
    closers: frozenset[str] = frozenset()

    def submode_for(self, body: str) -> Mode | None:
        for rx, mode in self.submodes:
            if rx.match(body):
                return mode
        return None

    def knows(self, body: str) -> bool:
        """True when ``body`` (without a leading ``no``) is a line of this mode."""
        if self.submode_for(body) is not None:
            return True
        words = body.lower().split()
        if not words:
            return False
        for n in (3, 2, 1):
            if len(words) >= n and " ".join(words[:n]) in self.keywords:
                return True
        if "<num>" in self.keywords and words[0].isdigit():
            return True
        return "<ip>" in self.keywords and _is_ip(words[0])

    def first_words(self) -> set[str]:
        """Every first word this mode knows (to tell "incomplete" from "invalid")."""
        words = {k.split()[0] for k in self.keywords if not k.startswith("<")}
        for rx, _ in self.submodes:
            m = re.match(r"\^?\(?\??([a-z][a-z0-9-]*)", rx.pattern)
            if m:
                words.add(m.group(1))
        return words


def mode(name: str, keywords: str = "", submodes: list[tuple[str, Mode]] | None = None,
         generous: bool = False, closers: str = "") -> Mode:
    return Mode(
        name=name,
        # A leading "no" is handled by the session, never as a keyword.
        keywords=_phrases(keywords) - {"no"},
        submodes=[(re.compile(rx + r"\s*$" if not rx.endswith("$") else rx, re.IGNORECASE), m)
                  for rx, m in (submodes or [])],
        generous=generous,
        closers=_phrases(closers),
    )


# --------------------------------------------------------------------------- shared pieces

_ACL_LINES = "permit, deny, remark, statistics, <num>, fragments, ignore, evaluate, dynamic"
_ROUTE_MAP = mode("config-route-map", "match, set, description, continue")


# --------------------------------------------------------------------------- NX-OS

_NX_IF_IP = """ip address, ip router, ip access-group, ip ospf, ip helper-address, ip redirects,
    ip unreachables, ip proxy-arp, ip pim, ip policy, ip port access-group, ip igmp, ip dhcp,
    ip arp, ip mtu, ip local-proxy-arp, ip directed-broadcast, ip forward, ip unnumbered,
    ip verify, ip flow, ipv6 address, ipv6 link-local, ipv6 nd, ipv6 router, ipv6 redirects"""

_NX_HSRP = mode("config-if-hsrp",
                "ip, priority, preempt, authentication, timers, name, track, mac-address, follow")
_NX_VRRP = mode("config-if-vrrp", "address, priority, preempt, authentication, advertisement-interval,"
                " shutdown, track")
_NX_INTERFACE = mode(
    "config-if",
    _NX_IF_IP + """, description, shutdown, switchport, vrf member, mtu, speed, duplex,
    channel-group, vpc, spanning-tree, encapsulation, service-policy, bandwidth, delay,
    load-interval, storm-control, negotiate, medium, mac-address, management, cdp, lldp,
    udld, carrier-delay, fabricpath, inherit, private-vlan, flowcontrol, beacon, link,
    logging, hsrp version, hsrp bfd, hsrp use-bia, hsrp delay, vrrpv3, rate-mode, autostate,
    no, dot1q, mode, ipv6, bfd, lacp""",
    [(r"hsrp \d+( ipv4| ipv6)?", _NX_HSRP), (r"vrrp \d+", _NX_VRRP)],
)
_NX_VLAN = mode("config-vlan", "name, state, shutdown, mode, private-vlan, vn-segment, media")
_NX_VRF_AF = mode("config-vrf-af-ipv4", "route-target, import, export, maximum")
_NX_VRF = mode(
    "config-vrf",
    "ip route, ip domain-name, ip name-server, ip pim, ip igmp, ipv6 route, rd, description,"
    " shutdown, vni, ip domain-lookup",
    [(r"address-family (ipv4|ipv6) (unicast|multicast)", _NX_VRF_AF)],
)
_NX_BGP_AF = mode(
    "config-router-af",
    "network, redistribute, maximum-paths, aggregate-address, default-information, dampening,"
    " nexthop, additional-paths, client-to-client, default-metric, distance, table-map,"
    " suppress-inactive, wait-igp-convergence",
)
_NX_BGP_NBR_AF = mode(
    "config-router-neighbor-af",
    "send-community, route-map, soft-reconfiguration, next-hop-self, allowas-in, as-override,"
    " default-originate, prefix-list, maximum-prefix, route-reflector-client, weight, filter-list,"
    " unsuppress-map, disable-peer-as-check, suppress-inactive",
)
_NX_BGP_NBR = mode(
    "config-router-neighbor",
    "remote-as, description, update-source, password, timers, shutdown, ebgp-multihop, local-as,"
    " inherit, bfd, transport, disable-connected-check, remove-private-as, log-neighbor-changes,"
    " dynamic-capability, low-memory, maximum-peers",
    [(r"address-family (ipv4|ipv6|vpnv4|vpnv6|l2vpn) \S+", _NX_BGP_NBR_AF)],
)
_NX_BGP_VRF_AF = mode("config-router-vrf-af", ", ".join(sorted(_NX_BGP_AF.keywords)))
_NX_BGP_VRF_NBR = mode(
    "config-router-vrf-neighbor", ", ".join(sorted(_NX_BGP_NBR.keywords)),
    [(r"address-family (ipv4|ipv6) \S+",
      mode("config-router-vrf-neighbor-af", ", ".join(sorted(_NX_BGP_NBR_AF.keywords))))],
)
_NX_BGP_VRF = mode(
    "config-router-vrf",
    "router-id, log-neighbor-changes, bestpath, timers, graceful-restart, local-as, reconnect-interval,"
    " maxas-limit",
    [(r"address-family (ipv4|ipv6) (unicast|multicast)", _NX_BGP_VRF_AF),
     (r"neighbor \S+( remote-as \S+)?", _NX_BGP_VRF_NBR)],
)
_NX_BGP = mode(
    "config-router",
    "router-id, bestpath, log-neighbor-changes, graceful-restart, graceful-restart-helper, timers,"
    " confederation, enforce-first-as, fast-external-fallover, shutdown, cluster-id, maxas-limit,"
    " reconnect-interval",
    [(r"address-family (ipv4|ipv6|vpnv4|vpnv6|l2vpn) \S+", _NX_BGP_AF),
     (r"vrf \S+", _NX_BGP_VRF),
     (r"neighbor \S+( remote-as \S+)?", _NX_BGP_NBR),
     (r"template peer \S+", _NX_BGP_NBR)],
)
_NX_OSPF_VRF = mode("config-router-vrf", "router-id, area, log-adjacency-changes, passive-interface,"
                    " redistribute, default-information, auto-cost, timers, max-metric, maximum-paths,"
                    " distance, summary-address")
_NX_OSPF = mode("config-router", ", ".join(sorted(_NX_OSPF_VRF.keywords)) + ", shutdown",
                [(r"vrf \S+", _NX_OSPF_VRF)])
_NX_VPC = mode("config-vpc-domain",
               "peer-keepalive, peer-gateway, role, system-priority, auto-recovery, delay, ip arp,"
               " peer-switch, layer3, system-mac, graceful, track, ipv6 nd")
_NX_ACL = mode("config-acl", _ACL_LINES)
_NX_OGROUP = mode("config-ip-ogroup", "host, <num>, <ip>, group-object, description")
_NX_CMAP = mode("config-cmap-qos", "match, description")
_NX_PMAP_C = mode("config-pmap-c-qos", "police, set, bandwidth, priority, shape, queue-limit,"
                  " random-detect, service-policy")
_NX_PMAP = mode("config-pmap-qos", "description", [(r"class( type \S+)? \S+", _NX_PMAP_C)])
_NX_LINE = mode("config-line", "exec-timeout, session-limit, access-class, speed, stopbits, databits,"
                " parity, terminal")
_NX_KEY = mode("config-keychain-key", "key-string, accept-lifetime, send-lifetime")
_NX_KEYCHAIN = mode("config-keychain", "", [(r"key \d+", _NX_KEY)])
_NX_TRACK = mode("config-track", "delay, vrf member, object")

NXOS_GLOBAL = mode(
    "config",
    """feature, hostname, switchname, version, username, ip route, ip domain-name, ip domain-lookup,
    ip name-server, ip prefix-list, ip community-list, ip as-path, ip pim, ip igmp, ip arp,
    ip tacacs, ip radius, ip host, ip sla, ipv6 route, ipv6 prefix-list, spanning-tree, ntp,
    logging, snmp-server, boot, cdp, lldp, errdisable, system, clock, ssh, service, fex,
    port-channel, hsrp, aaa, tacacs-server, radius-server, copp, mac, license, power,
    hardware, role, vdc, cfs, callhome, no, password, banner, udld, bfd, evb, vtp,
    install, interface breakout, policy-map type control-plane, control-plane, rmon, qos,
    monitor, track, lacp, vpc, errdisable, nv, evpn, rate-limit, tacacs, radius""",
    [
        (r"interface \S+( \S+)?", _NX_INTERFACE),
        (r"vlan [\d,\-]+", _NX_VLAN),
        (r"vrf context \S+", _NX_VRF),
        (r"router bgp \S+", _NX_BGP),
        (r"router ospf \S+", _NX_OSPF),
        (r"vpc domain \d+", _NX_VPC),
        (r"ip access-list \S+", _NX_ACL),
        (r"ipv6 access-list \S+", _NX_ACL),
        (r"object-group (ip address|ipv6 address|ip port) \S+", _NX_OGROUP),
        (r"route-map \S+( (permit|deny))?( \d+)?", _ROUTE_MAP),
        (r"class-map( type \S+)?( match-(any|all))? \S+", _NX_CMAP),
        (r"policy-map( type \S+)? \S+", _NX_PMAP),
        (r"line (console|vty)", _NX_LINE),
        (r"key chain \S+", _NX_KEYCHAIN),
        (r"track \d+ .+", _NX_TRACK),
    ],
)


# --------------------------------------------------------------------------- IOS / IOS-XE (+ ACE-like SLB)

_IOS_IF_IP = """ip address, ip vrf forwarding, ip access-group, ip ospf, ip helper-address, ip redirects,
    ip unreachables, ip proxy-arp, ip pim, ip policy, ip nat, ip mtu, ip tcp, ip verify,
    ip igmp, ip dhcp, ip directed-broadcast, ip unnumbered, ip flow, ip route-cache,
    ip virtual-reassembly, ip router, ip sla, ipv6 address, ipv6 enable, ipv6 nd, ipv6 redirects"""

_IOS_INTERFACE = mode(
    "config-if",
    _IOS_IF_IP + """, description, shutdown, vrf forwarding, encapsulation, negotiation, mpls,
    standby, vrrp, bandwidth, mtu, speed, duplex, service-policy, load-interval, cdp,
    channel-group, switchport, carrier-delay, tunnel, keepalive, media-type, crypto map,
    pppoe, zone-member, arp, logging, authentication, spanning-tree, storm-control,
    platform, bfd, no, delay, hold-queue, lacp, ipv6, macsec, dampening, cable, access-group,
    inservice, alias, peer, fragment""",
)
_IOS_VRF_AF = mode("config-vrf-af", "route-target, import, export, maximum, route-replicate",
                   closers="exit-address-family")
_IOS_VRF_DEF = mode("config-vrf", "rd, description, route-target, vnet, vpn id",
                    [(r"address-family (ipv4|ipv6)( \S+)?", _IOS_VRF_AF)])
_IOS_IP_VRF = mode("config-vrf", "rd, route-target, description, import, export, maximum, vpn id")
_IOS_BGP_AF = mode(
    "config-router-af",
    "neighbor, network, redistribute, maximum-paths, aggregate-address, default-information,"
    " bgp, auto-summary, synchronization, default-metric, distance, table-map, import, export",
    closers="exit-address-family",
)
_IOS_BGP = mode(
    "config-router",
    "bgp, neighbor, network, redistribute, timers, default-information, distance, maximum-paths,"
    " synchronization, auto-summary, default-metric, template",
    [(r"address-family (ipv4|ipv6|vpnv4|vpnv6|l2vpn)( \S+)*", _IOS_BGP_AF)],
)
_IOS_ROUTER = mode(
    "config-router",
    "network, router-id, passive-interface, redistribute, area, default-information,"
    " log-adjacency-changes, auto-cost, maximum-paths, distance, timers, mpls, bfd, version,"
    " eigrp, metric, variance, summary-address, capability, default-metric, distribute-list",
)
_IOS_CRYPTO_MAP = mode("config-crypto-map", "set, match, description, reverse-route, qos")
_IOS_ISAKMP = mode("config-isakmp", "encr, encryption, hash, authentication, group, lifetime")
_IOS_IKEV2_PEER = mode("config-ikev2-keyring-peer", "address, pre-shared-key, identity, description")
_IOS_IKEV2 = mode(
    "config-ikev2",
    "encryption, integrity, group, prf, proposal, match, identity, authentication, keyring,"
    " lifetime, dpd, description",
    [(r"peer \S+", _IOS_IKEV2_PEER)],
)
_IOS_TSET = mode("cfg-crypto-trans", "mode")
_IOS_IPSEC_PROFILE = mode("ipsec-profile", "set, description, responder-only")
_IOS_KEYRING = mode("conf-keyring", "pre-shared-key, description, local-address")
_IOS_CMAP = mode("config-cmap", "match, description, <num>")
_IOS_PMAP_C = mode("config-pmap-c", "police, set, bandwidth, priority, shape, queue-limit, random-detect,"
                   " service-policy, drop, inspect, pass, fair-queue")
_IOS_ACL_EXT = mode("config-ext-nacl", _ACL_LINES)
_IOS_ACL_STD = mode("config-std-nacl", _ACL_LINES)
_IOS_LINE = mode("config-line", "exec-timeout, login, password, transport, logging, privilege,"
                 " session-timeout, access-class, stopbits, length, width, history,"
                 " escape-character, exec, speed, authorization, accounting, ipv6")
_IOS_TRACK = mode("config-track", "delay, ip vrf, default-state, object")
_IOS_SLA_ECHO = mode("config-ip-sla-echo", "frequency, timeout, threshold, vrf, source-interface,"
                     " request-data-size, tos, tag")
_IOS_SLA = mode("config-ip-sla", "", [(r"(icmp-echo|tcp-connect|udp-jitter|http) .+", _IOS_SLA_ECHO)])
_IOS_OBJ_NET = mode("config-network-group", "host, description, group-object, range, <ip>")
_IOS_OBJ_SVC = mode("config-service-group", "tcp, udp, icmp, ip, description, group-object, <num>")
_IOS_DHCP = mode("dhcp-config", "network, default-router, dns-server, domain-name, lease, option")
_IOS_AAA_SERVER = mode("config-server", "address, key, timeout, port, single-connection")

# ACE 4710-like load balancer objects (the lab's SLB device speaks IOS style).
_ACE_RSERVER = mode("config-rserver-host", "ip address, description, inservice, weight, probe, conn,"
                    " rate-limit, fail-on-all")
_ACE_SFARM_RS = mode("config-sfarm-host-rs", "inservice, weight, backup-rserver, probe, conn,"
                     " rate-limit, cookie-string")
_ACE_SFARM = mode("config-sfarm-host", "probe, predictor, description, failaction, retcode,"
                  " transparent, fail-on-all, partial-threshold",
                  [(r"rserver \S+( \d+)?", _ACE_SFARM_RS)])
_ACE_PROBE = mode("config-probe", "interval, passdetect, request, expect, port, faildetect, receive,"
                  " open, description, ip address, credentials, header, hash, connection, append-port-hosttag")
_ACE_PMAP_LB_C = mode("config-pmap-lb-c", "serverfarm, sticky-serverfarm, insert-http, action, drop,"
                      " forward, set, ssl-proxy")
_ACE_PMAP_LB = mode("config-pmap-lb", "description", [(r"class \S+", _ACE_PMAP_LB_C)])
_ACE_PMAP_C = mode("config-pmap-c", "loadbalance, nat, inspect, appl-parameter, ssl-proxy,"
                   " connection, kal-ap-primary-out-of-service")
_ACE_PMAP = mode("config-pmap", "description", [(r"class \S+", _ACE_PMAP_C)])
_ACE_STICKY = mode("config-sticky-ip", "serverfarm, timeout, replicate")
_ACE_PARAMMAP = mode("config-parammap", "", generous=True)

IOS_GLOBAL = mode(
    "config",
    """hostname, version, service, boot-start-marker, boot-end-marker, boot, logging, aaa, enable,
    username, ip route, ip domain name, ip domain-name, ip domain lookup, ip name-server,
    ip prefix-list, ip community-list, ip as-path, ip nat, ip ssh, ip http, ip tftp, ip ftp,
    ip cef, ip multicast-routing, ip forward-protocol, ip sla schedule, ip tacacs, ip radius,
    ip host, ip source-route, ip bgp-community, ip vrf sitemap, ip extcommunity-list,
    ipv6 route, ipv6 unicast-routing, ipv6 cef, ipv6 prefix-list, no, clock, snmp-server, ntp, mpls,
    multilink, license, spanning-tree, vtp, crypto isakmp key, crypto isakmp keepalive,
    crypto isakmp nat, crypto isakmp identity, crypto isakmp enable, crypto ikev2 nat,
    crypto ikev2 dpd, crypto ipsec security-association, crypto ipsec df-bit,
    crypto pki, banner, alias, access-list, archive, platform, memory, diagnostic,
    subscriber, cdp, lldp, errdisable, redundancy, control-plane, transport, call-home,
    cef, login, security, file, process, exception, scheduler, tacacs-server,
    radius-server, dot1x, vlan, monitor, virtual-service, wsma, netconf-yang, restconf,
    track, event, default, system, udld, vpdn, vpc, resource, sticky, arp, service-policy,
    ft, access-group, domain, class-map type, parameter-map, peer, rserver redirect,
    kalap, action-list, script, ssl-proxy, crypto chaingroup, ldap-server, snmp, secret""",
    [
        (r"interface \S+( \S+)?", _IOS_INTERFACE),
        (r"vrf definition \S+", _IOS_VRF_DEF),
        (r"ip vrf \S+", _IOS_IP_VRF),
        (r"router bgp \d+(\.\d+)?", _IOS_BGP),
        (r"router (ospf|eigrp|rip|isis|ospfv3)( .*)?", _IOS_ROUTER),
        (r"crypto map \S+ \d+( ipsec-isakmp| gdoi| ipsec-manual)?( dynamic \S+)?", _IOS_CRYPTO_MAP),
        (r"crypto dynamic-map \S+ \d+", _IOS_CRYPTO_MAP),
        (r"crypto isakmp policy \d+", _IOS_ISAKMP),
        (r"crypto ikev2 (proposal|policy|profile|keyring) \S+", _IOS_IKEV2),
        (r"crypto ipsec transform-set \S+ .+", _IOS_TSET),
        (r"crypto ipsec profile \S+", _IOS_IPSEC_PROFILE),
        (r"crypto keyring \S+( vrf \S+)?", _IOS_KEYRING),
        (r"ip access-list extended \S+", _IOS_ACL_EXT),
        (r"ip access-list standard \S+", _IOS_ACL_STD),
        (r"ipv6 access-list \S+", _IOS_ACL_EXT),
        (r"route-map \S+( (permit|deny))?( \d+)?", _ROUTE_MAP),
        ((r"class-map( type (inspect|loadbalance|management|http loadbalance|generic loadbalance|qos))?"
          r"( match-(any|all))? \S+"), _IOS_CMAP),
        (r"policy-map type loadbalance( \S+)+", _ACE_PMAP_LB),
        (r"policy-map multi-match \S+", _ACE_PMAP),
        (r"policy-map( type \S+)? \S+", mode("config-pmap", "description",
                                             [(r"class( type \S+)? \S+", _IOS_PMAP_C)])),
        (r"line (con|console|vty|aux)( \d+)*", _IOS_LINE),
        (r"track \d+ .+", _IOS_TRACK),
        (r"ip sla \d+", _IOS_SLA),
        (r"object-group network \S+", _IOS_OBJ_NET),
        (r"object-group service \S+", _IOS_OBJ_SVC),
        (r"ip dhcp pool \S+", _IOS_DHCP),
        (r"(tacacs|radius) server \S+", _IOS_AAA_SERVER),
        (r"rserver( host)? \S+", _ACE_RSERVER),
        (r"serverfarm( host)? \S+", _ACE_SFARM),
        (r"probe (http|https|tcp|icmp|udp|dns) \S+", _ACE_PROBE),
        (r"sticky (ip-netmask|http-cookie) .+", _ACE_STICKY),
        (r"parameter-map type \S+ \S+", _ACE_PARAMMAP),
    ],
)


# --------------------------------------------------------------------------- ASA (system context + user contexts)

_ASA_IF = mode(
    "config-if",
    """nameif, security-level, ip address, ipv6, shutdown, description, vlan, mac-address,
    speed, duplex, management-only, member-interface, channel-group, delay, mtu, pppoe,
    ospf, authentication, no, lacp, flowcontrol, bfd, zone-member, ddns, dhcp, dhcprelay,
    igmp, pim, ip verify""",
)
_ASA_CTX = mode("config-ctx", "allocate-interface, config-url, join-failover-group, description, member,"
                " allocate-ips, allocate-acl-partition, storage-url, scansafe")
_ASA_OBJ_NET = mode("config-network-object", "host, subnet, range, fqdn, nat, description")
_ASA_OBJ_SVC = mode("config-service-object", "service, description")
_ASA_OG_NET = mode("config-network-object-group", "network-object, group-object, description")
_ASA_OG_SVC = mode("config-service-object-group", "service-object, port-object, group-object, description")
_ASA_OG_PROTO = mode("config-protocol-object-group", "protocol-object, group-object, description")
_ASA_OG_ICMP = mode("config-icmp-object-group", "icmp-object, group-object, description")
_ASA_TG_IPSEC = mode("config-tunnel-ipsec", "ikev1, ikev2, pre-shared-key, peer-id-validate, isakmp,"
                     " chain, trust-point, authentication")
_ASA_TG_GEN = mode("config-tunnel-general", "default-group-policy, address-pool, authentication-server-group,"
                   " accounting-server-group, authorization-server-group, dhcp-server")
_ASA_TG_OTHER = mode("config-tunnel-webvpn", "", generous=True)
_ASA_GP = mode("config-group-policy", "", generous=True)
_ASA_IKEV1 = mode("config-ikev1-policy", "authentication, encryption, hash, group, lifetime")
_ASA_IKEV2 = mode("config-ikev2-policy", "encryption, integrity, group, prf, lifetime")
_ASA_IPSEC_PROP = mode("config-ipsec-proposal", "protocol")
_ASA_CMAP = mode("config-cmap", "match, description")
_ASA_PMAP_C = mode("config-pmap-c", "inspect, set, police, user-statistics, priority, shape, ips, csc,"
                   " flow-export, service-policy")
_ASA_PMAP_P = mode("config-pmap-p", "", generous=True)
_ASA_PMAP = mode("config-pmap", "description",
                 [(r"class \S+", _ASA_PMAP_C), (r"parameters", _ASA_PMAP_P)])
_ASA_BGP_AF = mode("config-router-af", "neighbor, network, redistribute, maximum-paths, aggregate-address,"
                   " default-information, bgp, auto-summary, synchronization, distance",
                   closers="exit-address-family")
_ASA_ROUTER = mode("config-router", "bgp, neighbor, network, redistribute, router-id, area,"
                   " passive-interface, log-adj-changes, default-information, timers, summary-address",
                   [(r"address-family (ipv4|ipv6)( \S+)*", _ASA_BGP_AF)])
_ASA_USER = mode("config-username", "", generous=True)
_ASA_AAA = mode("config-aaa-server", "", generous=True)
_ASA_FOVER_GROUP = mode("config-fover-group", "primary, secondary, preempt, interface-policy, replication,"
                        " mac-address, polltime")
_ASA_DNS_GROUP = mode("config-dns-server-group", "name-server, domain-name, timeout, retries")
# `enable <interface>` is a webvpn line: listed so that it does not fall through to the
# global `enable` (password) command and leave the mode, which the ASA never does.
_ASA_WEBVPN = mode("config-webvpn", "enable, anyconnect, anyconnect-essentials, tunnel-group-list,"
                   " port, dtls, cache, csd, keepalive-ignore, error-recovery", generous=True)
_ASA_DAP = mode("config-dynamic-access-policy-record", "", generous=True)
_ASA_CRYPTO_CA = mode("config-ca-trustpoint", "", generous=True)

_ASA_COMMON = """hostname, domain-name, enable, passwd, names, name, access-list, access-group, route,
    nat, global, mtu, icmp, asdm, arp, timeout, user-identity, aaa, http, snmp-server, ssh,
    telnet, console, logging, ntp, dns, same-security-traffic, failover, monitor-interface,
    pager, crypto ipsec ikev1, crypto ipsec ikev2 sa, crypto ipsec security-association,
    crypto ipsec df-bit, crypto map, crypto dynamic-map, crypto ikev1 enable, crypto ikev2 enable,
    crypto ikev1 am-disable, crypto isakmp, crypto ca trustpool, crypto ikev2 remote-access,
    tunnel-group, group-policy, service-policy, prompt, threat-detection, ip local pool,
    ip verify, ip audit, ipv6 route, ipv6 access-list, dhcpd, vpn-addr-assign, sysopt, no,
    mac-address, username, banner, ftp, clock, firewall, crashinfo, terminal, prefix-list,
    xlate, tls-proxy, ssl, dns-guard, object-group-search, arp-inspection, fragment, boot,
    vpn-sessiondb, password-policy, jumbo-frame, priority-queue, webvpn, license,
    flow-export, call-home, http-proxy, service, wccp, dynamic-filter, scansafe, mode,
    multicast-routing, checkheaps, resource, quota, limit-resource, virtual, floating-conn,
    cluster, snmp-map, tcp-map, eigrp, bgp-community, connection, track"""

_ASA_SUBMODES: list[tuple[str, Mode]] = [
    (r"interface \S+", _ASA_IF),
    (r"object network \S+", _ASA_OBJ_NET),
    (r"object service \S+", _ASA_OBJ_SVC),
    (r"object-group network \S+", _ASA_OG_NET),
    (r"object-group service \S+( (tcp|udp|tcp-udp))?", _ASA_OG_SVC),
    (r"object-group protocol \S+", _ASA_OG_PROTO),
    (r"object-group icmp-type \S+", _ASA_OG_ICMP),
    (r"tunnel-group \S+ ipsec-attributes", _ASA_TG_IPSEC),
    (r"tunnel-group \S+ general-attributes", _ASA_TG_GEN),
    (r"tunnel-group \S+ (webvpn|ppp)-attributes", _ASA_TG_OTHER),
    (r"group-policy \S+ attributes", _ASA_GP),
    (r"crypto ikev1 policy \d+", _ASA_IKEV1),
    (r"crypto ikev2 policy \d+", _ASA_IKEV2),
    (r"crypto ipsec ikev2 ipsec-proposal \S+", _ASA_IPSEC_PROP),
    (r"crypto ca trustpoint \S+", _ASA_CRYPTO_CA),
    (r"class-map( type \S+)?( match-(any|all))? \S+", _ASA_CMAP),
    (r"policy-map( type \S+)? \S+", _ASA_PMAP),
    (r"router (bgp|ospf|eigrp) \S+", _ASA_ROUTER),
    (r"route-map \S+( (permit|deny))?( \d+)?", _ROUTE_MAP),
    (r"username \S+ attributes", _ASA_USER),
    (r"aaa-server \S+ (\(\S+\) )?host \S+", _ASA_AAA),
    (r"aaa-server \S+ protocol \S+", _ASA_AAA),
    (r"dns server-group \S+", _ASA_DNS_GROUP),
    (r"webvpn", _ASA_WEBVPN),
    (r"dynamic-access-policy-record \S+", _ASA_DAP),
]

ASA_CONTEXT_GLOBAL = mode("config", _ASA_COMMON, _ASA_SUBMODES)

#: The system context of a multi-context ASA: contexts and physical interfaces live here.
ASA_SYSTEM_GLOBAL = mode(
    "config",
    _ASA_COMMON + ", admin-context, mac-address auto",
    [(r"context \S+", _ASA_CTX), (r"failover group \d+", _ASA_FOVER_GROUP)] + _ASA_SUBMODES,
)


def grammar(platform: str, system_context: bool = False) -> Mode:
    """The global configuration mode of ``platform`` (a netmiko device_type)."""
    if platform == "cisco_nxos":
        return NXOS_GLOBAL
    if platform == "cisco_asa":
        return ASA_SYSTEM_GLOBAL if system_context else ASA_CONTEXT_GLOBAL
    return IOS_GLOBAL

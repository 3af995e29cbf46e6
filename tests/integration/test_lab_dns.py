"""The lab's BIND 9: authoritative zones per tenant, dynamic updates only with the lab's TSIG key."""

from __future__ import annotations

import base64
import os
import stat
import uuid
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.update
import pytest

from lab.state import DnsLab, LabState


@pytest.fixture()
def bind(lab: LabState) -> DnsLab:
    assert lab.dns is not None, "the lab must run BIND"
    return lab.dns


def _key(bind: DnsLab, secret: str | None = None, name: str | None = None) -> dns.tsig.Key:
    return dns.tsig.Key(name or bind.tsig_name, secret or bind.tsig_secret, bind.tsig_algorithm)


def _query(bind: DnsLab, name: str, rdtype: str = "A") -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    return dns.query.udp(q, bind.host, port=bind.port, timeout=3)


def _label() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def test_every_configured_zone_is_served_authoritatively(bind: DnsLab) -> None:
    assert bind.zones == ["acme.example.com", "globex.example.com", "initech.example.com"]
    for zone in bind.zones:
        r = _query(bind, zone, "SOA")
        assert r.rcode() == dns.rcode.NOERROR
        assert r.flags & dns.flags.AA
        assert r.answer[0][0].mname.to_text() == f"ns.{zone}."
        ns = _query(bind, f"ns.{zone}", "A")
        assert [rd.address for rd in ns.answer[0]] == ["127.0.0.1"]


def test_signed_update_adds_a_record_that_a_query_returns(bind: DnsLab) -> None:
    zone = bind.zones[0]
    name = _label()
    upd = dns.update.UpdateMessage(zone, keyring=_key(bind))
    upd.replace(name, 300, "A", "10.99.0.7")
    resp = dns.query.tcp(upd, bind.host, port=bind.port, timeout=3)
    assert resp.rcode() == dns.rcode.NOERROR
    # The server signs its answer with the same key; dnspython verified it on receipt.
    assert resp.had_tsig

    r = _query(bind, f"{name}.{zone}")
    assert r.rcode() == dns.rcode.NOERROR
    assert [rd.address for rd in r.answer[0]] == ["10.99.0.7"]
    assert r.answer[0].ttl == 300


def test_unsigned_update_is_refused(bind: DnsLab) -> None:
    zone = bind.zones[1]
    name = _label()
    upd = dns.update.UpdateMessage(zone)
    upd.add(name, 300, "A", "10.99.0.8")
    resp = dns.query.udp(upd, bind.host, port=bind.port, timeout=3)
    assert resp.rcode() == dns.rcode.REFUSED
    assert _query(bind, f"{name}.{zone}").rcode() == dns.rcode.NXDOMAIN


def test_update_signed_with_wrong_secret_is_rejected(bind: DnsLab) -> None:
    zone = bind.zones[2]
    name = _label()
    wrong = base64.b64encode(os.urandom(32)).decode()
    assert wrong != bind.tsig_secret
    upd = dns.update.UpdateMessage(zone, keyring=_key(bind, secret=wrong))
    upd.add(name, 300, "A", "10.99.0.9")
    with pytest.raises(dns.tsig.PeerBadSignature):
        dns.query.udp(upd, bind.host, port=bind.port, timeout=3)
    assert _query(bind, f"{name}.{zone}").rcode() == dns.rcode.NXDOMAIN


def test_update_signed_with_unknown_key_name_is_rejected(bind: DnsLab) -> None:
    zone = bind.zones[0]
    name = _label()
    upd = dns.update.UpdateMessage(zone, keyring=_key(bind, name="not-the-lab-key"))
    upd.add(name, 300, "A", "10.99.0.10")
    with pytest.raises(dns.tsig.PeerBadKey):
        dns.query.udp(upd, bind.host, port=bind.port, timeout=3)
    assert _query(bind, f"{name}.{zone}").rcode() == dns.rcode.NXDOMAIN


def test_no_recursion_for_names_outside_the_lab_zones(bind: DnsLab) -> None:
    r = _query(bind, "www.example.org")
    assert not r.flags & dns.flags.RA
    assert r.rcode() == dns.rcode.REFUSED
    assert not r.answer


def test_secret_is_random_and_config_is_private(lab: LabState, bind: DnsLab) -> None:
    raw = base64.b64decode(bind.tsig_secret, validate=True)
    assert len(raw) == 32
    conf = Path(lab.lab_dir) / "bind" / "named.conf"
    text = conf.read_text()
    assert bind.tsig_secret in text
    assert f"listen-on port {bind.port} {{ 127.0.0.1; }};" in text
    assert "listen-on-v6 { none; };" in text
    assert "recursion no;" in text
    # The key file is readable by its owner only.
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600

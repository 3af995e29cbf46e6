"""DNS client without a network: record validation, update messages, error mapping, idempotency.

A tiny in-memory authoritative server (``FakeServer``) stands behind the client's transport
seam: it checks the TSIG signature from the wire, evaluates RFC 2136 prerequisites and
applies the update section, so these tests prove what the messages would do to a zone.
"""

from __future__ import annotations

import base64
import traceback

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.update
import pytest
from pydantic import ValidationError

from draas.clients.dns import (
    DnsClient,
    DnsError,
    DnsQueryFailed,
    DnsRecord,
    DnsRecordSet,
    DnsTransientError,
    DnsUpdateFailed,
    DnsUpdateRefused,
)
from draas.errors import is_transient

ZONE = "acme.example.com"
KEY = "draas-test-key"
SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
OTHER_SECRET = base64.b64encode(b"fedcba9876543210fedcba9876543210").decode()


def _kind(rrset: dns.rrset.RRset) -> int:
    """RFC 2136 class of a prerequisite/update RR (dnspython keeps ANY/NONE in ``deleting``)."""
    return rrset.deleting if rrset.deleting is not None else rrset.rdclass


class FakeServer:
    """Authoritative for ZONE; accepts updates signed with KEY/SECRET only."""

    def __init__(self, secret: str = SECRET) -> None:
        self.keyring = {dns.name.from_text(KEY): dns.tsig.Key(KEY, secret, "hmac-sha256")}
        self.data: dict[tuple[str, str], tuple[int, set[str]]] = {}
        self.updates: list[dns.message.Message] = []
        self.queries = 0
        self.ignore_updates = False
        self.fail_with: BaseException | None = None
        self.update_rcode: dns.rcode.Rcode | None = None

    def _rrset_text(self, rrset: dns.rrset.RRset) -> set[str]:
        return {rd.to_text() for rd in rrset}

    def send(self, message: dns.message.Message, *, tcp: bool) -> dns.message.Message:
        if self.fail_with is not None:
            raise self.fail_with
        wire = message.to_wire()
        try:
            parsed = dns.message.from_wire(wire, keyring=self.keyring)
        except dns.message.UnknownTSIGKey as exc:
            raise dns.tsig.PeerBadKey() from exc
        except dns.tsig.BadSignature as exc:
            raise dns.tsig.PeerBadSignature() from exc
        response = dns.message.make_response(parsed)
        response.flags |= dns.flags.AA
        if parsed.opcode() == dns.opcode.UPDATE:
            self.updates.append(parsed)
            assert tcp, "updates go over TCP"
            assert isinstance(parsed, dns.update.UpdateMessage)
            response.set_rcode(self._update(parsed))
            return self._over_the_wire(response, parsed)
        self.queries += 1
        q = parsed.question[0]
        key = (q.name.to_text(), dns.rdatatype.to_text(q.rdtype))
        if not q.name.is_subdomain(dns.name.from_text(ZONE)):
            response.flags &= ~dns.flags.AA
            response.set_rcode(dns.rcode.REFUSED)
        elif key in self.data:
            ttl, values = self.data[key]
            response.answer.append(dns.rrset.from_text_list(q.name, ttl, "IN", q.rdtype, sorted(values)))
        elif not any(n == key[0] for n, _ in self.data):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return self._over_the_wire(response, parsed)

    def _over_the_wire(self, response: dns.message.Message, request: dns.message.Message) -> dns.message.Message:
        # What the client gets back is what dns.query would parse: signed answers are verified.
        return dns.message.from_wire(response.to_wire(), keyring=self.keyring, request_mac=request.mac)

    def _update(self, msg: dns.update.UpdateMessage) -> dns.rcode.Rcode:
        if not msg.had_tsig:
            return dns.rcode.REFUSED
        if self.update_rcode is not None:
            return self.update_rcode
        for rrset in msg.prerequisite:  # RFC 2136 3.2
            key = (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype))
            if _kind(rrset) == dns.rdataclass.NONE and key in self.data:
                return dns.rcode.YXRRSET
            if _kind(rrset) == dns.rdataclass.ANY and key not in self.data:
                return dns.rcode.NXRRSET
            if _kind(rrset) == dns.rdataclass.IN and self.data.get(key, (0, set()))[1] != self._rrset_text(rrset):
                return dns.rcode.NXRRSET
        if self.ignore_updates:
            return dns.rcode.NOERROR
        for rrset in msg.update:  # RFC 2136 3.4
            key = (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype))
            if _kind(rrset) == dns.rdataclass.ANY:
                self.data.pop(key, None)
            elif _kind(rrset) == dns.rdataclass.NONE:
                _, values = self.data.get(key, (0, set()))
                values -= self._rrset_text(rrset)
            else:
                _, values = self.data.get(key, (0, set()))
                self.data[key] = (rrset.ttl, values | self._rrset_text(rrset))
        return dns.rcode.NOERROR


def _client(server: FakeServer, secret: str = SECRET, key: str = KEY) -> DnsClient:
    return DnsClient("192.0.2.53", 53, tsig_key_name=key, tsig_secret=secret, timeout=1, transport=server)


def _text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc)


# -- records -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["www", "WWW", "www.acme.example.com.", "www.acme.example.com", " www "])
def test_record_names_normalise_to_the_same_owner(name: str) -> None:
    rec = DnsRecord(zone="ACME.example.com.", name=name, rtype="A", values=["10.0.0.1"])
    assert rec.zone == ZONE
    assert rec.name == "www"
    assert rec.fqdn == "www.acme.example.com."


def test_apex_and_values_are_normalised() -> None:
    apex = DnsRecord(zone=ZONE, name="@", rtype="TXT", values=["v=spf1 -all", "v=spf1 -all"])
    assert apex.fqdn == "acme.example.com." and apex.values == ["v=spf1 -all"]
    v6 = DnsRecord(zone=ZONE, name="db", rtype="AAAA", values=["2001:0db8:0000::0001", "2001:db8::1"])
    assert v6.values == ["2001:db8::1"]
    cname = DnsRecord(zone=ZONE, name="portal", rtype="CNAME", values=["WWW.Acme.Example.com"])
    assert cname.values == ["www.acme.example.com."]
    a = DnsRecord(zone=ZONE, name="web", rtype="A", values=["10.0.0.2", "10.0.0.1", "10.0.0.2"])
    assert a.values == ["10.0.0.1", "10.0.0.2"]


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "www.globex.example.com.", "rtype": "A", "values": ["10.0.0.1"]}, "outside zone"),
    ({"name": "www", "rtype": "A", "values": ["10.0.0.256"]}, "not an IPv4 address"),
    ({"name": "www", "rtype": "A", "values": ["2001:db8::1"]}, "not an IPv4 address"),
    ({"name": "www", "rtype": "AAAA", "values": ["10.0.0.1"]}, "not an IPv6 address"),
    ({"name": "@", "rtype": "CNAME", "values": ["www.acme.example.com."]}, "apex"),
    ({"name": "x", "rtype": "CNAME", "values": ["a.example.", "b.example."]}, "exactly one value"),
    ({"name": "x", "rtype": "MX", "values": ["10 mail.example."]}, "rtype"),
    ({"name": "x", "rtype": "A", "values": []}, "values"),
    ({"name": "x", "rtype": "A", "values": ["10.0.0.1"], "ttl": -1}, "ttl"),
    ({"name": "bad..name", "rtype": "A", "values": ["10.0.0.1"]}, "invalid record name"),
])
def test_invalid_records_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DnsRecord(zone=ZONE, **kwargs)


def test_client_rejects_bad_key_settings_without_echoing_the_secret() -> None:
    with pytest.raises(ValueError, match="not valid base64") as info:
        DnsClient("192.0.2.53", tsig_key_name=KEY, tsig_secret="not base64!!secret-ish")
    assert "secret-ish" not in str(info.value)
    with pytest.raises(ValueError, match="unsupported TSIG algorithm"):
        DnsClient("192.0.2.53", tsig_key_name=KEY, tsig_secret=SECRET, tsig_algorithm="hmac-md4")
    client = _client(FakeServer())
    assert SECRET not in repr(client) and SECRET not in str(vars(client))


# -- update messages -------------------------------------------------------------------------------
def test_create_message_requires_absence_replaces_and_is_signed() -> None:
    client = _client(FakeServer())
    rec = DnsRecord(zone=ZONE, name="www", rtype="A", values=["10.0.0.1", "10.0.0.2"], ttl=120)
    msg = client.build_upsert(rec, current=None)
    assert msg.opcode() == dns.opcode.UPDATE
    assert msg.zone[0].name.to_text() == "acme.example.com." and msg.zone[0].rdtype == dns.rdatatype.SOA
    [prereq] = msg.prerequisite
    assert (_kind(prereq), prereq.rdtype, prereq.ttl) == (dns.rdataclass.NONE, dns.rdatatype.A, 0)
    delete, *adds = msg.update
    assert (_kind(delete), delete.rdtype) == (dns.rdataclass.ANY, dns.rdatatype.A)
    assert all(_kind(add) == dns.rdataclass.IN and add.ttl == 120 for add in adds)
    assert sorted(rd.address for add in adds for rd in add) == ["10.0.0.1", "10.0.0.2"]
    # The wire form carries a TSIG that verifies with the right key and fails with another.
    wire = msg.to_wire()
    parsed = dns.message.from_wire(wire, keyring={dns.name.from_text(KEY): dns.tsig.Key(KEY, SECRET)})
    assert parsed.had_tsig and parsed.keyname == dns.name.from_text(KEY)
    assert parsed.keyalgorithm == dns.tsig.HMAC_SHA256
    with pytest.raises(dns.tsig.BadSignature):
        dns.message.from_wire(wire, keyring={dns.name.from_text(KEY): dns.tsig.Key(KEY, OTHER_SECRET)})
    assert SECRET.encode() not in wire


def test_replace_message_has_a_value_dependent_prerequisite() -> None:
    client = _client(FakeServer())
    rec = DnsRecord(zone=ZONE, name="www", rtype="A", values=["10.9.9.9"])
    current = DnsRecordSet(fqdn="www.acme.example.com.", rtype="A", ttl=300, values=["10.0.0.1"])
    msg = client.build_upsert(rec, current)
    [prereq] = msg.prerequisite
    assert _kind(prereq) == dns.rdataclass.IN and prereq.ttl == 0  # RFC 2136 2.4.2
    assert [rd.address for rd in prereq] == ["10.0.0.1"]


def test_long_txt_values_are_split_into_255_byte_strings() -> None:
    client = _client(FakeServer())
    value = "k=" + "x" * 598
    msg = client.build_upsert(DnsRecord(zone=ZONE, name="_dkim", rtype="TXT", values=[value]), None)
    [rd] = list(msg.update[1])
    assert [len(s) for s in rd.strings] == [255, 255, 90]
    assert b"".join(rd.strings).decode() == value


def test_delete_message_requires_the_values_it_read() -> None:
    client = _client(FakeServer())
    current = DnsRecordSet(fqdn="old.acme.example.com.", rtype="CNAME", ttl=60, values=["www.acme.example.com."])
    msg = client.build_delete(ZONE, current)
    assert [rd.target.to_text() for rd in msg.prerequisite[0]] == ["www.acme.example.com."]
    [delete] = msg.update
    assert (_kind(delete), delete.rdtype) == (dns.rdataclass.ANY, dns.rdatatype.CNAME)


# -- behaviour through the transport seam ------------------------------------------------------------
def test_upsert_creates_then_changes_nothing_then_replaces() -> None:
    server = FakeServer()
    client = _client(server)
    rec = DnsRecord(zone=ZONE, name="www", rtype="A", values=["10.0.0.1"])
    first = client.upsert(rec)
    assert first.changed and first.before is None and first.after == rec.as_recordset()
    assert first.diff() == ["+ www.acme.example.com. 300 IN A 10.0.0.1"]
    second = client.upsert(rec)
    assert not second.changed and second.diff() == []
    assert len(server.updates) == 1  # the second call only read
    third = client.upsert(DnsRecord(zone=ZONE, name="www", rtype="A", values=["10.0.0.9"]))
    assert third.changed
    assert third.diff() == ["- www.acme.example.com. 300 IN A 10.0.0.1", "+ www.acme.example.com. 300 IN A 10.0.0.9"]
    assert server.data[("www.acme.example.com.", "A")] == (300, {"10.0.0.9"})


def test_ttl_change_alone_is_a_change() -> None:
    server = FakeServer()
    client = _client(server)
    client.upsert(DnsRecord(zone=ZONE, name="www", rtype="A", values=["10.0.0.1"], ttl=300))
    change = client.upsert(DnsRecord(zone=ZONE, name="www", rtype="A", values=["10.0.0.1"], ttl=60))
    assert change.changed and server.data[("www.acme.example.com.", "A")][0] == 60


def test_dry_run_reports_the_diff_and_sends_nothing() -> None:
    server = FakeServer()
    client = _client(server)
    change = client.upsert(DnsRecord(zone=ZONE, name="www", rtype="A", values=["10.0.0.1"]), dry_run=True)
    assert change.changed and change.dry_run and change.diff() == ["+ www.acme.example.com. 300 IN A 10.0.0.1"]
    assert server.updates == [] and server.data == {}
    assert client.delete(ZONE, "www", "A", dry_run=True).changed is False


def test_delete_is_idempotent() -> None:
    server = FakeServer()
    client = _client(server)
    client.upsert(DnsRecord(zone=ZONE, name="old", rtype="TXT", values=["x"]))
    assert client.delete(ZONE, "old", "TXT").changed
    assert ("old.acme.example.com.", "TXT") not in server.data
    assert not client.delete(ZONE, "old", "TXT").changed
    assert len(server.updates) == 2


def test_accepted_but_not_applied_update_is_a_failure() -> None:
    server = FakeServer()
    server.ignore_updates = True  # what BIND does with an A record next to a CNAME
    with pytest.raises(DnsUpdateFailed, match="accepted the update but serves nothing"):
        _client(server).upsert(DnsRecord(zone=ZONE, name="www", rtype="A", values=["10.0.0.1"]))


@pytest.mark.parametrize("rcode, error, transient", [
    (dns.rcode.REFUSED, DnsUpdateRefused, False),
    (dns.rcode.NOTAUTH, DnsUpdateRefused, False),
    (dns.rcode.NOTZONE, DnsUpdateFailed, False),
    (dns.rcode.FORMERR, DnsUpdateFailed, False),
    (dns.rcode.SERVFAIL, DnsTransientError, True),
    (dns.rcode.YXRRSET, DnsTransientError, True),  # lost a race: a retry re-reads
])
def test_update_rcodes_map_to_the_exception_tree(rcode: dns.rcode.Rcode, error: type[DnsError], transient: bool) -> None:
    server = FakeServer()
    server.update_rcode = rcode
    with pytest.raises(error) as info:
        _client(server).upsert(DnsRecord(zone=ZONE, name="www", rtype="A", values=["10.0.0.1"]))
    assert is_transient(info.value) is transient
    assert dns.rcode.to_text(rcode) in str(info.value)
    assert "www.acme.example.com." in str(info.value)


def test_prerequisite_catches_a_concurrent_change() -> None:
    server = FakeServer()
    client = _client(server)
    rec = DnsRecord(zone=ZONE, name="www", rtype="A", values=["10.0.0.1"])
    current = client.lookup(ZONE, "www", "A")
    server.data[("www.acme.example.com.", "A")] = (300, {"10.5.5.5"})  # someone else wrote meanwhile
    answer = server.send(client.build_upsert(rec, current), tcp=True)
    assert answer.rcode() == dns.rcode.YXRRSET
    assert server.data[("www.acme.example.com.", "A")] == (300, {"10.5.5.5"})


@pytest.mark.parametrize("secret, key, error, message", [
    (OTHER_SECRET, KEY, DnsUpdateRefused, "rejected the signature"),
    (SECRET, "unknown-key", DnsUpdateRefused, "does not know TSIG key"),
])
def test_tsig_rejections_never_show_the_secret(secret: str, key: str, error: type[DnsError], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        _client(FakeServer(), secret=secret, key=key).upsert(
            DnsRecord(zone=ZONE, name="www", rtype="A", values=["10.0.0.1"]))
    assert secret not in _text(info.value) and SECRET not in _text(info.value)
    assert not is_transient(info.value)


@pytest.mark.parametrize("failure", [dns.exception.Timeout(timeout=1), ConnectionRefusedError(111, "refused"),
                                     OSError(101, "Network is unreachable")])
def test_network_failures_are_transient(failure: BaseException) -> None:
    server = FakeServer()
    server.fail_with = failure
    with pytest.raises(DnsTransientError) as info:
        _client(server).lookup(ZONE, "www", "A")
    assert "192.0.2.53:53" in str(info.value)
    assert is_transient(info.value)
    assert SECRET not in _text(info.value)


def test_queries_outside_served_zones_fail_permanently() -> None:
    with pytest.raises(DnsQueryFailed, match="does not serve zone globex.example.com") as info:
        _client(FakeServer()).lookup("globex.example.com", "www", "A")
    assert not is_transient(info.value)
    with pytest.raises(DnsQueryFailed, match="does not serve zone globex.example.com"):
        _client(FakeServer()).zone_serial("globex.example.com")


def test_verify_compares_values_and_ttl() -> None:
    server = FakeServer()
    client = _client(server)
    rec = DnsRecord(zone=ZONE, name="www", rtype="A", values=["10.0.0.1"])
    assert not client.verify(rec).matches
    client.upsert(rec)
    assert client.verify(rec).matches
    assert not client.verify(rec.model_copy(update={"ttl": 30})).matches
    assert client.verify_absent(ZONE, "nothing-here", "A").matches

"""DNS adapter, block and tasks against the lab's BIND 9 (real RFC 2136 updates with TSIG)."""

from __future__ import annotations

import base64
import os
import uuid

import dns.message
import dns.query
import dns.rdatatype
import pytest
from pydantic import SecretStr

from blocks.dns import DnsServerCredentials
from draas.clients.dns import DnsRecord, DnsUpdateFailed, DnsUpdateRefused, DnsVerifyFailed
from draas.errors import is_transient
from draas.site import Site
from lab.state import LabState
from tasks.dns import delete_dns_record, upsert_dns_record, verify_dns_record


@pytest.fixture()
def creds(lab: LabState) -> DnsServerCredentials:
    return Site.load().dns_block()  # the lab, found through its site profile


def _label() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


def _served(lab: LabState, fqdn: str, rtype: str) -> list[str]:
    assert lab.dns is not None
    """What BIND answers, read with plain dnspython (independent of the adapter)."""
    r = dns.query.udp(dns.message.make_query(fqdn, rtype), lab.dns.host, port=lab.dns.port, timeout=3)
    wanted = dns.rdatatype.from_text(rtype)
    return sorted(rd.to_text() for rrset in r.answer if rrset.rdtype == wanted for rd in rrset)


def test_upsert_twice_creates_one_rrset_then_changes_nothing(lab: LabState, creds: DnsServerCredentials) -> None:
    rec = DnsRecord(zone="acme.example.com", name=_label(), rtype="A", values=["10.10.3.40", "10.10.3.41"])
    with creds.get_client() as client:
        first = client.upsert(rec)
        second = client.upsert(rec)
    assert first.changed and first.before is None
    assert not second.changed and second.diff() == []
    assert _served(lab, rec.fqdn, "A") == ["10.10.3.40", "10.10.3.41"]


def test_replace_changes_values_and_ttl(lab: LabState, creds: DnsServerCredentials) -> None:
    name = _label()
    with creds.get_client() as client:
        client.upsert(DnsRecord(zone="globex.example.com", name=name, rtype="A", values=["10.20.3.30"]))
        change = client.upsert(DnsRecord(zone="globex.example.com", name=name, rtype="A",
                                         values=["172.16.20.30"], ttl=60))
        found = client.lookup("globex.example.com", name, "A")
    assert change.changed
    assert change.diff() == [f"- {name}.globex.example.com. 300 IN A 10.20.3.30",
                             f"+ {name}.globex.example.com. 60 IN A 172.16.20.30"]
    assert found is not None and found.values == ["172.16.20.30"] and found.ttl == 60
    assert _served(lab, f"{name}.globex.example.com.", "A") == ["172.16.20.30"]


@pytest.mark.parametrize("rtype, values, shown", [
    ("AAAA", ["2001:db8:10::40"], ["2001:db8:10::40"]),
    ("CNAME", ["acme-web01.acme.example.com"], ["acme-web01.acme.example.com."]),
    ("TXT", ["dr-state=recovered " + "x" * 300], None),
    ("PTR", ["acme-web01.acme.example.com."], ["acme-web01.acme.example.com."]),
])
def test_every_record_type_round_trips(lab: LabState, creds: DnsServerCredentials, rtype: str, values: list[str],
                                       shown: list[str] | None) -> None:
    rec = DnsRecord(zone="initech.example.com", name=_label(), rtype=rtype, values=values)  # type: ignore[arg-type]
    with creds.get_client() as client:
        assert client.upsert(rec).changed
        assert not client.upsert(rec).changed
        assert client.verify(rec).matches
    served = _served(lab, rec.fqdn, rtype)
    if shown is not None:
        assert served == shown
    else:
        assert len(served) == 1 and "dr-state=recovered" in served[0]


def test_delete_twice_removes_once(lab: LabState, creds: DnsServerCredentials) -> None:
    rec = DnsRecord(zone="acme.example.com", name=_label(), rtype="TXT", values=["to be removed"])
    with creds.get_client() as client:
        client.upsert(rec)
        first = client.delete(rec.zone, rec.name, "TXT")
        second = client.delete(rec.zone, rec.name, "TXT")
    assert first.changed and not second.changed
    assert _served(lab, rec.fqdn, "TXT") == []


def test_a_record_next_to_a_cname_is_reported_not_silently_ignored(creds: DnsServerCredentials) -> None:
    name = _label()
    with creds.get_client() as client:
        client.upsert(DnsRecord(zone="acme.example.com", name=name, rtype="CNAME", values=["www.acme.example.com."]))
        # BIND answers NOERROR but ignores the A record (RFC 2136 3.4.2.2); the check after catches it.
        with pytest.raises(DnsUpdateFailed, match="accepted the update but serves nothing"):
            client.upsert(DnsRecord(zone="acme.example.com", name=name, rtype="A", values=["10.10.9.9"]))


def test_wrong_secret_is_refused_without_leaking_it(lab: LabState, creds: DnsServerCredentials) -> None:
    wrong = base64.b64encode(os.urandom(32)).decode()
    bad = creds.model_copy(update={"tsig_secret": SecretStr(wrong)})
    rec = DnsRecord(zone="acme.example.com", name=_label(), rtype="A", values=["10.10.1.1"])
    with bad.get_client() as client, pytest.raises(DnsUpdateRefused) as info:
        client.upsert(rec)
    text = str(info.value) + repr(info.value) + repr(bad) + repr(bad.get_client())
    assert lab.dns is not None
    assert wrong not in text and lab.dns.tsig_secret not in text
    assert not is_transient(info.value)
    assert _served(lab, rec.fqdn, "A") == []


def test_tasks_are_idempotent_and_verify(lab: LabState, creds: DnsServerCredentials) -> None:
    rec = DnsRecord(zone="acme.example.com", name=_label(), rtype="A", values=["10.10.2.30"])
    dry = upsert_dns_record.fn(creds, rec, dry_run=True)
    assert dry.changed and dry.dry_run and _served(lab, rec.fqdn, "A") == []
    first = upsert_dns_record.fn(creds, rec)
    second = upsert_dns_record.fn(creds, rec)
    assert (first.changed, second.changed) == (True, False)
    assert first.diff == [f"+ {rec.fqdn} 300 IN A 10.10.2.30"] and first.finished is not None
    ok = verify_dns_record.fn(creds, rec, deadline_s=2)
    assert ok.detail["matches"] is True
    with pytest.raises(DnsVerifyFailed, match="expected \\['10.99.99.99'\\]"):
        verify_dns_record.fn(creds, rec.model_copy(update={"values": ["10.99.99.99"]}), deadline_s=0.3,
                             interval_s=0.1)
    gone = delete_dns_record.fn(creds, rec.zone, rec.name, "A")
    again = delete_dns_record.fn(creds, rec.zone, rec.name, "A")
    assert (gone.changed, again.changed) == (True, False)
    assert _served(lab, rec.fqdn, "A") == []


def test_zone_serial_grows_with_each_update(lab: LabState, creds: DnsServerCredentials) -> None:
    assert lab.dns is not None
    with creds.get_client() as client:
        serials = {zone: client.zone_serial(zone) for zone in lab.dns.zones}
        assert all(serial >= 1 for serial in serials.values())
        client.upsert(DnsRecord(zone="globex.example.com", name=_label(), rtype="A", values=["10.20.9.9"]))
        assert client.zone_serial("globex.example.com") > serials["globex.example.com"]

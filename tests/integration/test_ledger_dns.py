"""Ledger handler of DNS against the lab's BIND 9: upsert through the product, record, remove
through the handler, prove with a plain dnspython query that BIND no longer serves it."""

from __future__ import annotations

import uuid

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

import draas.ledger.dns  # noqa: F401 - registers the handler (handler_for imports every module)
from draas.clients.dns import DnsRecord
from draas.ledger import DNS, handler_for
from draas.ledger.dns import DnsRecordIdentityError, record_identity
from draas.site import Site
from draas.state.store import StateStore
from tasks.dns import upsert_dns_record

ZONE = "acme.example.com"


def _served(site: Site, fqdn: str, rtype: str) -> tuple[int, list[str]]:
    """BIND's answer (rcode, values), read with plain dnspython, independent of the product."""
    block = site.dns_block()
    answer = dns.query.udp(dns.message.make_query(fqdn, rtype), block.server, port=block.port, timeout=3)
    wanted = dns.rdatatype.from_text(rtype)
    return answer.rcode(), sorted(rd.to_text() for rrset in answer.answer if rrset.rdtype == wanted for rd in rrset)


def test_a_record_is_removed_and_a_second_removal_changes_nothing(site: Site, store: StateStore) -> None:
    name = f"t-led-{uuid.uuid4().hex[:8]}"
    record = DnsRecord(zone=ZONE, name=name, rtype="A", values=["10.10.3.77", "10.10.3.78"])
    rec = store.record_object(tenant_id="t-ledger", run_id="run-ledger", system=DNS, site="recovery", kind="record",
                              name=f"{name}.{ZONE}",
                              identity=record_identity(ZONE, name, "A", record.values, record.ttl))
    assert upsert_dns_record.fn(site.dns_block(), record).changed
    fqdn = record.fqdn
    assert _served(site, fqdn, "A") == (dns.rcode.NOERROR, ["10.10.3.77", "10.10.3.78"])

    handler = handler_for(DNS)
    assert handler.exists(rec, site) is True
    first = handler.remove(rec, site)
    assert first.changed is True
    assert sorted(first.diff) == sorted([f"- {fqdn} 300 IN A 10.10.3.77", f"- {fqdn} 300 IN A 10.10.3.78"])
    assert _served(site, fqdn, "A")[1] == []  # BIND no longer serves it
    assert handler.exists(rec, site) is False
    again = handler.remove(rec, site)
    assert again.changed is False and again.diff == [] and "already gone" in again.note


def test_removal_deletes_only_the_recorded_type(site: Site, store: StateStore) -> None:
    name = f"t-led-{uuid.uuid4().hex[:8]}"
    a = DnsRecord(zone=ZONE, name=name, rtype="A", values=["10.10.3.90"])
    txt = DnsRecord(zone=ZONE, name=name, rtype="TXT", values=["kept by someone else"])
    block = site.dns_block()
    upsert_dns_record.fn(block, a)
    upsert_dns_record.fn(block, txt)
    rec = store.record_object(tenant_id="t-ledger", system=DNS, site="recovery", kind="record", name=a.fqdn,
                              identity=record_identity(ZONE, name, "A", a.values))
    try:
        assert handler_for(DNS).remove(rec, site).changed
        assert _served(site, a.fqdn, "A")[1] == []
        assert _served(site, a.fqdn, "TXT")[1] == ['"kept by someone else"']
    finally:
        with block.get_client() as client:
            client.delete(ZONE, name, "TXT")


def test_a_record_without_its_identity_is_a_permanent_error(site: Site, store: StateStore) -> None:
    rec = store.record_object(tenant_id="t-ledger", system=DNS, site="recovery", kind="record", name="x",
                              identity={"zone": ZONE})
    with pytest.raises(DnsRecordIdentityError, match="identity lacks name, rtype"):
        handler_for(DNS).remove(rec, site)

"""The cutover's DNS records against the lab's BIND: a replaced production RRset comes back exactly.

Read back with plain dnspython queries, independent of the product.
"""

from __future__ import annotations

import uuid

import dns.message
import dns.query
import dns.rdatatype

from draas.clients.dns import DnsRecord
from draas.cutover import DnsRecordChange
from draas.ledger import DNS, handler_for
from draas.ledger.dns import record_identity
from draas.site import Site
from draas.state.store import StateStore
from tasks.cutover import apply_dns_change, cutover_records

ZONE = "globex.example.com"


def _served(site: Site, fqdn: str) -> tuple[int | None, list[str]]:
    block = site.dns_block()
    answer = dns.query.udp(dns.message.make_query(fqdn, "A"), block.server, port=block.port, timeout=3)
    rrsets = [r for r in answer.answer if r.rdtype == dns.rdatatype.A]
    return (rrsets[0].ttl if rrsets else None), sorted(rd.to_text() for r in rrsets for rd in r)


def test_a_replaced_rrset_is_restored_and_exists_tracks_the_change(site: Site, store: StateStore) -> None:
    name = f"t-cut-{uuid.uuid4().hex[:8]}"
    production = DnsRecord(zone=ZONE, name=name, rtype="A", values=["192.0.2.10", "192.0.2.11"], ttl=900)
    block = site.dns_block()
    with block.get_client() as client:
        client.upsert(production)
        before = client.lookup(ZONE, name, "A")
    rec = store.record_object(tenant_id="t-cutover", run_id="run-a", system=DNS, site="recovery", kind="record",
                              name=production.fqdn,
                              identity=record_identity(ZONE, name, "A", ["10.120.9.9"], 60, previous=before))
    handler = handler_for(DNS)
    try:
        assert handler.exists(rec, site) is False  # recorded, not applied yet (a run killed in between)
        with block.get_client() as client:
            client.upsert(DnsRecord(zone=ZONE, name=name, rtype="A", values=["10.120.9.9"], ttl=60))
        assert handler.exists(rec, site) is True
        first = handler.remove(rec, site)
        assert first.changed and "restored the previous" in first.note
        assert _served(site, production.fqdn) == (900, ["192.0.2.10", "192.0.2.11"])
        assert handler.exists(rec, site) is False
        again = handler.remove(rec, site)
        assert again.changed is False and "already restored" in again.note
    finally:
        with block.get_client() as client:
            client.delete(ZONE, name, "A")


def test_a_run_killed_after_recording_is_completed_by_the_next_one(site: Site, store: StateStore) -> None:
    name = f"t-cut-{uuid.uuid4().hex[:8]}"
    change = DnsRecordChange(zone=ZONE, name=name, values=["10.120.9.10"], ttl=60, machines=["m"])
    # What a run killed between recording and acting left behind: the record, with no previous RRset.
    dead = store.record_object(tenant_id="t-cutover", run_id="run-dead", system=DNS, site="recovery",
                               kind="record", name=change.record.fqdn,
                               identity={**record_identity(ZONE, name, "A", change.values, 60), "purpose": "cutover"})
    try:
        result = apply_dns_change.fn("t-cutover", "run-next", change, site, store.url)
        assert result.changed and result.detail["record"] == dead.id  # adopted, not recorded twice
        assert _served(site, change.record.fqdn) == (60, ["10.120.9.10"])
        assert apply_dns_change.fn("t-cutover", "run-next", change, site, store.url).changed is False
        (rec,) = cutover_records(store, "t-cutover")
        assert rec.id == dead.id
        assert handler_for(DNS).remove(rec, site).changed
        assert _served(site, change.record.fqdn) == (None, [])  # no previous RRset: deleted
    finally:
        with site.dns_block().get_client() as client:
            client.delete(ZONE, name, "A")

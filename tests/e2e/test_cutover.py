"""The failover's network cutover against the lab: apply, re-apply, remove through the ledger.

ACME (Gold with the DMZ zone and a public VIP) is onboarded and its container built; one of
its names already has a production A record. Before the cutover, the test snapshots what
BIND serves for every name the cutover touches (plain dnspython queries) and the running
and startup config of every device and ASA context (over SSH with the product's Cisco
client). It then applies the cutover with the Prefect tasks, checks BIND and the devices,
applies it again (nothing changes, no duplicate), removes it through the ledger and proves
both snapshots are exactly as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from draas.clients.cisco_config import missing, parse_config
from draas.clients.dns import DnsRecord
from draas.cutover import CutoverPlan, plan_cutover
from draas.ledger import CISCO, DNS, remove_records
from draas.site import Site
from draas.state.store import StateStore
from draas.validation import load_catalog, load_tenant
from e2e.snapshots import config_lines, device_snapshot, running, served

TENANT = "acme"
ZONE = "acme.example.com"
#: A production record the cutover must replace and the rollback must bring back (value and TTL).
PRODUCTION = DnsRecord(zone=ZONE, name="web01", rtype="A", values=["192.0.2.40"], ttl=600)
#: A name the cutover does not touch.
BYSTANDER = DnsRecord(zone=ZONE, name="intranet", rtype="A", values=["192.0.2.80"], ttl=900)
RTYPES = ("A", "TXT", "CNAME")


@pytest.fixture(scope="module")
def site(lab) -> Site:
    return Site.for_config_dir(None)


@pytest.fixture(scope="module")
def plan(site: Site) -> CutoverPlan:
    return plan_cutover(load_tenant(TENANT), load_catalog(), site.devices)


@pytest.fixture(scope="module")
def container(flows_env: Path, site: Site) -> Iterator[None]:
    """ACME onboarded, its container built and a production record in its zone; all gone afterwards."""
    from flows.offboard import offboard_tenant
    from flows.onboard import onboard_tenant
    from flows.preprovision import preprovision_container

    onboard_tenant(TENANT, output_dir=str(flows_env / "out"))
    with site.dns_block().get_client() as client:
        client.upsert(PRODUCTION)
        client.upsert(BYSTANDER)
    try:
        preprovision_container(TENANT)
        yield
    finally:
        try:
            offboard_tenant(TENANT)
        finally:
            with site.dns_block().get_client() as client:
                client.delete(ZONE, PRODUCTION.name, "A")
                client.delete(ZONE, BYSTANDER.name, "A")


# -- the test's eyes (shared ones in e2e/snapshots.py) -------------------------------------------------

def zone_snapshot(site: Site, plan: CutoverPlan) -> dict[tuple[str, str], tuple[str, int | None, list[str]]]:
    names = {c.record.fqdn for c in plan.dns} | {PRODUCTION.fqdn, BYSTANDER.fqdn, f"ns.{ZONE}."}
    return {(name, rtype): served(site, name, rtype) for name in sorted(names) for rtype in RTYPES}


# -- the test ---------------------------------------------------------------------------------------

def test_cutover_applies_once_and_the_ledger_restores_dns_and_devices_exactly(
        container: None, site: Site, plan: CutoverPlan) -> None:
    from tasks.cutover import apply_cutover, cutover_records
    from tasks.ledger import remove_recorded_object, verify_records_removed

    store = StateStore()
    zone_before = zone_snapshot(site, plan)
    devices_before = device_snapshot(site)
    assert zone_before[(PRODUCTION.fqdn, "A")] == ("NOERROR", 600, ["192.0.2.40"])
    assert zone_before[(f"dc01.{ZONE}.", "A")][2] == []  # no production record: added, later deleted

    # -- apply ------------------------------------------------------------------------------------
    first = apply_cutover(TENANT, "cutover-run-1", plan, site)
    assert all(r.ok for r in first) and all(r.changed for r in first), [(r.target, r.changed) for r in first]
    for change in plan.dns:
        assert served(site, change.record.fqdn, "A") == ("NOERROR", change.ttl, change.values)
    assert served(site, PRODUCTION.fqdn, "A") == ("NOERROR", 300, ["10.10.3.40"])
    assert served(site, BYSTANDER.fqdn, "A") == zone_before[(BYSTANDER.fqdn, "A")]

    dmz = running(site, "fw-perimeter", "acme-dmz")
    assert "object network acme-pub-198.51.100.11\n host 10.10.4.100\n nat (inside,outside) static 198.51.100.11" \
        in dmz.replace("\r", "")
    assert "access-list acme-dmz-paths extended permit tcp any host 10.10.4.100 eq 80" in dmz
    vpn = running(site, "fw-vpn", "acme-vpn")
    assert "tunnel-group acme-ra type remote-access" in vpn and "ip local pool acme-ra-pool" in vpn
    assert " authentication-server-group DRAAS-RA-AAA" in vpn
    for change in plan.device_changes():  # every planned line is on its device or context
        assert not missing(parse_config(change.lines), parse_config(running(site, change.device, change.context))
                           ).children, change.label

    records = cutover_records(store, TENANT, "cutover-run-1")
    assert Counter(r.system for r in records) == Counter({DNS: len(plan.dns), CISCO: len(plan.device_changes())})
    web01 = next(r for r in records if r.system == DNS and r.name == PRODUCTION.fqdn)
    assert web01.identity["previous"] == {"values": ["192.0.2.40"], "ttl": 600}
    assert "previous" not in next(r for r in records if r.name == f"dc01.{ZONE}.").identity
    dmz_rec = next(r for r in records if r.context == "acme-dmz")
    # The container bound the global ACL already: not the cutover's line, so not recorded (and never removed).
    assert "access-group acme-dmz-paths global" not in dmz_rec.lines
    assert "object network acme-pub-198.51.100.11" in dmz_rec.lines
    agg_rec = next(r for r in records if r.device == "agg-1")
    assert agg_rec.lines == ["vrf context acme-pvt", " ip route 100.64.128.0/24 10.10.3.254"]

    # -- a second run (a resumed failover) changes nothing and duplicates nothing ----------------------
    again = apply_cutover(TENANT, "cutover-run-2", plan, site)
    assert [r.changed for r in again] == [False] * len(again)
    assert cutover_records(store, TENANT, "cutover-run-2") == []  # the first run's records were adopted
    assert len(cutover_records(store, TENANT)) == len(records)
    for change in plan.device_changes():
        lines = config_lines(running(site, change.device, change.context))
        counts = Counter(line.strip() for line in lines if not line.startswith(" "))
        dup = {line: n for line, n in counts.items() if n > 1}
        assert dup == {}, (change.label, dup)
    for change in plan.dns:
        assert served(site, change.record.fqdn, "A") == ("NOERROR", change.ttl, change.values)

    # -- rollback through the ledger -----------------------------------------------------------------
    report = remove_records(records, lambda rec: remove_recorded_object(rec.id, site))
    assert report.complete, report.leftovers
    assert verify_records_removed([r.id for r in records if r.id is not None], site).ok
    assert cutover_records(store, TENANT) == []

    assert zone_snapshot(site, plan) == zone_before
    devices_after = device_snapshot(site)
    assert devices_after.keys() == devices_before.keys()
    changed = [key for key in devices_before if devices_after[key] != devices_before[key]]
    assert changed == [], changed

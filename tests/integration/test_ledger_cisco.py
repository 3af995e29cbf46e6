"""The Cisco ledger handler removes what the product pushed, against the lab's SSH emulator.

Config goes on through the product's adapter (``CiscoClient.apply``), is recorded in a
temporary SQLite state store as the container flows record it, and comes off through
``draas.ledger.handler_for("cisco")``. The emulator's control API (its own view, not the
adapter's) proves the lines are gone, and a second removal changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

import draas.ledger
from draas.ledger.cisco import OWNED_CONTEXT_NOTE, CiscoRecordError
from draas.site import Site
from draas.state.store import StateStore

TENANT = "ledgertest"

NXOS_BLOCK = """vlan 3801
  name ledger-web
vrf context LEDGER
  rd 65010:3801
router bgp 65010
  vrf LEDGER
    address-family ipv4 unicast
"""
CONTEXT = "ledger-vpn"
SYSTEM_BLOCK = f"""context {CONTEXT}
 allocate-interface TenGigabitEthernet0/8.3801
 config-url disk0:/{CONTEXT}.cfg
"""
ASA_BLOCK = """object network ledger-web
 host 10.38.1.10
access-list ledger-in extended permit tcp any object ledger-web eq https
tunnel-group 203.0.113.38 type ipsec-l2l
tunnel-group 203.0.113.38 ipsec-attributes
 ikev1 pre-shared-key *****
"""


@pytest.fixture(scope="module", autouse=True)
def clean_devices(lab) -> Iterator[None]:
    httpx.post(f"{lab.cisco.control_url}/reset").raise_for_status()
    yield
    httpx.post(f"{lab.cisco.control_url}/reset").raise_for_status()


def device_view(lab, name: str, context: str | None = None, which: str = "running") -> list[str]:
    """The config as the emulator holds it (control API), not as the adapter reads it."""
    r = httpx.get(f"{lab.cisco.control_url}/devices/{name}/{which}", params={"context": context} if context else {})
    r.raise_for_status()
    return r.text.splitlines()


def contexts(lab, name: str) -> list[str]:
    return list(httpx.get(f"{lab.cisco.control_url}/devices/{name}").json()["contexts"])


def test_nxos_lines_are_removed_and_a_second_removal_changes_nothing(lab, store: StateStore, site: Site) -> None:
    before = device_view(lab, "agg-1")
    with site.device_block("agg-1").get_client() as client:
        assert client.apply(NXOS_BLOCK).pushed
    running = device_view(lab, "agg-1")
    assert "vlan 3801" in running and "vrf context LEDGER" in running and "  vrf LEDGER" in running
    record = store.record_object(tenant_id=TENANT, system="cisco", kind="config:nxos_vlan_svi.j2",
                                 name="agg-1", device="agg-1", lines=NXOS_BLOCK.splitlines(),
                                 identity={"owned_context": False, "role": "aggregation", "platform": "cisco_nxos"})
    handler = draas.ledger.handler_for("cisco")
    assert handler.system == draas.ledger.CISCO
    assert handler.exists(record, site)

    first = handler.remove(record, site)
    assert first.changed
    assert "- vlan 3801" in first.diff and "- vrf context LEDGER" in first.diff
    running = device_view(lab, "agg-1")
    assert running == before  # the shared `router bgp 65010` stays, only its `vrf LEDGER` went
    assert "router bgp 65010" in running and "  vrf LEDGER" not in running
    assert "vlan 3801" not in device_view(lab, "agg-1", which="startup")  # and the removal was saved
    assert not handler.exists(record, site)

    second = handler.remove(record, site)
    assert not second.changed and second.diff == [] and "already gone" in second.note
    assert device_view(lab, "agg-1") == before


def test_asa_context_lines_then_the_context_itself_are_removed(lab, store: StateStore, site: Site) -> None:
    psk = "Ledger-Psk-3801"
    with site.device_block("fw-vpn").get_client() as client:
        assert client.apply(SYSTEM_BLOCK, context="system").pushed
        assert client.apply(ASA_BLOCK.replace("*****", psk), context=CONTEXT).pushed
    assert CONTEXT in contexts(lab, "fw-vpn")
    assert "object network ledger-web" in device_view(lab, "fw-vpn", CONTEXT)
    identity = {"role": "vpn-firewall", "platform": "cisco_asa"}
    system_rec = store.record_object(tenant_id=TENANT, system="cisco", kind="config:asa_system_context.j2",
                                     name="fw-vpn/system", device="fw-vpn", context="system",
                                     lines=SYSTEM_BLOCK.splitlines(), identity={**identity, "owned_context": False})
    lines_rec = store.record_object(tenant_id=TENANT, system="cisco", kind="config:asa_access_rule.j2",
                                    name=f"fw-vpn/{CONTEXT}", device="fw-vpn", context=CONTEXT,
                                    lines=ASA_BLOCK.splitlines(), identity={**identity, "owned_context": False})
    owned_rec = store.record_object(tenant_id=TENANT, system="cisco", kind="config:asa_vpn_context.j2",
                                    name=f"fw-vpn/{CONTEXT}/owned", device="fw-vpn", context=CONTEXT,
                                    lines=["object network ledger-web", " host 10.38.1.10"],
                                    identity={**identity, "owned_context": True})
    handler = draas.ledger.handler_for("cisco")
    assert all(handler.exists(r, site) for r in (system_rec, lines_rec, owned_rec))

    # lines inside the tenant context: masked key lines match the real key on the device
    removed = handler.remove(lines_rec, site)
    assert removed.changed and psk not in " ".join(removed.diff)
    view = device_view(lab, "fw-vpn", CONTEXT)
    assert view == [f"hostname {CONTEXT}"], view  # what a new context starts with, and nothing else
    assert not handler.exists(lines_rec, site)
    assert not handler.remove(lines_rec, site).changed

    # the owned context's record is a note; the context goes with the system context's record
    owned = handler.remove(owned_rec, site)
    assert not owned.changed and owned.note == OWNED_CONTEXT_NOTE
    assert handler.exists(owned_rec, site)  # its context is still there
    gone = handler.remove(system_rec, site)
    assert gone.changed and f"- context {CONTEXT}" in gone.diff
    assert CONTEXT not in contexts(lab, "fw-vpn")
    assert f"context {CONTEXT}" not in device_view(lab, "fw-vpn", "system")
    assert f"context {CONTEXT}" not in device_view(lab, "fw-vpn", "system", which="startup")
    assert not handler.exists(system_rec, site) and not handler.exists(owned_rec, site)

    # everything is idempotent once the context is gone
    for rec in (system_rec, lines_rec, owned_rec):
        assert not handler.remove(rec, site).changed


def test_a_record_without_a_device_is_a_permanent_error(store: StateStore, site: Site) -> None:
    record = store.record_object(tenant_id=TENANT, system="cisco", kind="config:x", name="nowhere",
                                 lines=["vlan 1"])
    with pytest.raises(CiscoRecordError, match="names no device"):
        draas.ledger.handler_for("cisco").remove(record, site)

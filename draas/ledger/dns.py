"""Ledger handler of DNS: the records the product set on the zones' primary server.

A record of kind ``record`` carries its identity as ``{"zone", "name", "rtype"}`` (plus the
``values`` and ``ttl`` it set, for the audit trail). When the product *replaced* an RRset
that was already served (the failover cutover points a production name at its recovery
address), the identity also carries the RRset served before, ``"previous": {"values": [...],
"ttl": N}``, read just before the record was written.

Removing a record puts the name back as it was, with a TSIG-signed RFC 2136 update
conditional on the RRset the server serves at that moment: with a ``previous`` RRset the
server serves exactly that again (:meth:`DnsClient.upsert`); without one the whole RRset is
deleted (:meth:`DnsClient.delete`). A name already back as it was is ``changed=False``.
``exists`` answers whether the product's change is still in place: the server serves
something other than the previous RRset (with one), or serves the RRset at all (without).
The client is opened through :func:`draas.sessions.session` (stateless, so sharing it costs
nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from draas.clients.dns import DnsRecord, DnsRecordSet, RecordType
from draas.errors import PermanentError
from draas.ledger import DNS, Removal, register
from draas.sessions import session

if TYPE_CHECKING:
    from draas.site import Site
    from draas.state.tables import ProvisionedObject

KIND = "record"


class DnsRecordIdentityError(PermanentError):
    """A DNS record in the ledger lacks its zone, name or type, or is of another kind."""


def record_identity(zone: str, name: str, rtype: str, values: list[str] | None = None,
                    ttl: int | None = None, previous: DnsRecordSet | None = None) -> dict[str, Any]:
    """The identity to record for an RRset (what :class:`DnsHandler` needs to remove it).

    ``previous`` is the RRset the server served before the product's change (read it just
    before recording): removal then restores it instead of deleting the name.
    """
    identity: dict[str, Any] = {"zone": zone, "name": name, "rtype": rtype}
    if values is not None:
        identity["values"] = list(values)
    if ttl is not None:
        identity["ttl"] = ttl
    if previous is not None:
        identity["previous"] = {"values": list(previous.values), "ttl": previous.ttl}
    return identity


def previous_rrset(record: ProvisionedObject) -> tuple[list[str], int] | None:
    """The ``(values, ttl)`` served before the recorded change, or None when the name had none.

    Raises:
        DnsRecordIdentityError: ``previous`` is there but not ``{"values": [...], "ttl": N}``.
    """
    previous = (record.identity or {}).get("previous")
    if previous is None:
        return None
    values, ttl = (previous.get("values"), previous.get("ttl")) if isinstance(previous, dict) else (None, None)
    if not isinstance(values, list) or not values or not isinstance(ttl, int) or isinstance(ttl, bool):
        raise DnsRecordIdentityError(f"dns record {record.name!r}: identity.previous must be "
                                     "{'values': [...], 'ttl': N}")
    return [str(v) for v in values], ttl


class DnsHandler:
    """Removes and looks up the RRsets the product set."""

    system = DNS

    def __repr__(self) -> str:
        return "DnsHandler('dns')"

    @staticmethod
    def _key(record: ProvisionedObject) -> tuple[str, str, RecordType]:
        if record.kind != KIND:
            raise DnsRecordIdentityError(f"dns: cannot handle kind {record.kind!r} (only {KIND!r})")
        identity = record.identity or {}
        missing = [k for k in ("zone", "name", "rtype") if not identity.get(k)]
        if missing:
            raise DnsRecordIdentityError(f"dns record {record.name!r}: identity lacks {', '.join(missing)}")
        return str(identity["zone"]), str(identity["name"]), cast(RecordType, str(identity["rtype"]).upper())

    def remove(self, record: ProvisionedObject, site: Site) -> Removal:
        """Restore the previous RRset, or delete the RRset when there was none; done already is unchanged.

        Raises:
            DnsRecordIdentityError: the record does not say which RRset it is.
            DnsError: from the client (DnsTransientError is worth a retry).
        """
        zone, name, rtype = self._key(record)
        previous = previous_rrset(record)
        with session(site.dns_block()) as client:
            if previous is None:
                change = client.delete(zone, name, rtype)
            else:
                values, ttl = previous
                change = client.upsert(DnsRecord(zone=zone, name=name, rtype=rtype, values=values, ttl=ttl))
        recorded = (record.identity or {}).get("values")
        done = "removed all of it" if previous is None else f"restored the previous {previous[0]}"
        if not change.changed:
            note = f"{name} {rtype} in {zone} was already " + ("gone" if previous is None else "restored")
        elif change.before is not None and recorded is not None \
                and sorted(map(str, recorded)) != change.before.values:
            note = f"served {change.before.values}, recorded {sorted(map(str, recorded))}: {done}"
        else:
            note = "" if previous is None else done
        return Removal(changed=change.changed, diff=change.diff(), note=note)

    def exists(self, record: ProvisionedObject, site: Site) -> bool:
        """True while the product's change is in place: the server serves other data than before it."""
        zone, name, rtype = self._key(record)
        previous = previous_rrset(record)
        with session(site.dns_block()) as client:
            served = client.lookup(zone, name, rtype)
        if previous is None:
            return served is not None
        values, ttl = previous
        before = DnsRecord(zone=zone, name=name, rtype=rtype, values=values, ttl=ttl).as_recordset()
        return served != before


handler = register(DnsHandler())

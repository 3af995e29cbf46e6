"""Ledger handler of DNS: the records the product set on the zones' primary server.

A record of kind ``record`` carries its identity as ``{"zone", "name", "rtype"}`` (plus the
``values`` and ``ttl`` it set, for the audit trail). Removing it deletes the whole RRset
with a TSIG-signed RFC 2136 update (:meth:`DnsClient.delete`, conditional on the RRset the
server serves at that moment); an RRset already gone is ``changed=False``. The client is
opened through :func:`draas.sessions.session` (stateless, so sharing it costs nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from draas.clients.dns import RecordType
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
                    ttl: int | None = None) -> dict[str, Any]:
    """The identity to record for an RRset (what :class:`DnsHandler` needs to remove it)."""
    identity: dict[str, Any] = {"zone": zone, "name": name, "rtype": rtype}
    if values is not None:
        identity["values"] = list(values)
    if ttl is not None:
        identity["ttl"] = ttl
    return identity


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
        """Delete the RRset; absent already is ``changed=False``.

        Raises:
            DnsRecordIdentityError: the record does not say which RRset it is.
            DnsError: from the client (DnsTransientError is worth a retry).
        """
        zone, name, rtype = self._key(record)
        with session(site.dns_block()) as client:
            change = client.delete(zone, name, rtype)
        note = "" if change.changed else f"{name} {rtype} in {zone} was already gone"
        recorded = (record.identity or {}).get("values")
        if change.changed and change.before is not None and recorded is not None \
                and sorted(map(str, recorded)) != change.before.values:
            note = f"served {change.before.values}, recorded {sorted(map(str, recorded))}: removed all of it"
        return Removal(changed=change.changed, diff=change.diff(), note=note)

    def exists(self, record: ProvisionedObject, site: Site) -> bool:
        """True when the server still serves the RRset."""
        zone, name, rtype = self._key(record)
        with session(site.dns_block()) as client:
            return client.lookup(zone, name, rtype) is not None


handler = register(DnsHandler())

"""DNS adapter: RFC 2136 dynamic updates signed with TSIG (RFC 8945), via dnspython.

The client talks to the zone's primary server. Every change is check-then-act: read the
current RRset, do nothing when it already matches, otherwise send one update whose
prerequisite is the RRset that was read (so a concurrent change makes the update fail
instead of overwriting it), then query again to prove the server serves the new data.

Exceptions::

    DnsError (DraasError)
    ├── DnsTransientError (TransientError)  timeout, unreachable, SERVFAIL, lost a race
    ├── DnsUpdateRefused (PermanentError)   REFUSED / NOTAUTH / TSIG key or signature rejected
    ├── DnsUpdateFailed (PermanentError)    any other failed update, or accepted but not applied
    ├── DnsQueryFailed (PermanentError)     the server refuses or is not authoritative for the zone
    └── DnsVerifyFailed (PermanentError)    the server serves other data than expected

No message, repr or exception text contains the TSIG secret.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from types import TracebackType
from typing import ClassVar, Literal, Protocol, Self, get_args

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.update
from dns.rdtypes.ANY.TXT import TXT
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from draas.errors import DraasError, PermanentError, TransientError

RecordType = Literal["A", "AAAA", "CNAME", "TXT", "PTR"]

#: TSIG algorithms the client accepts (names as in BIND's named.conf).
TSIG_ALGORITHMS: dict[str, dns.name.Name] = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
}

_TXT_CHUNK = 255  # a TXT character-string holds at most 255 bytes


# -- exceptions --------------------------------------------------------------------------------
class DnsError(DraasError):
    """Base of every error the DNS adapter raises."""


class DnsTransientError(DnsError, TransientError):
    """Worth retrying: no answer in time, server unreachable, SERVFAIL, or a concurrent change."""


class DnsUpdateRefused(DnsError, PermanentError):
    """The server refused the update: key unknown, signature wrong, or updates not allowed."""


class DnsUpdateFailed(DnsError, PermanentError):
    """The update failed for another reason, or the server accepted it but serves other data."""


class DnsQueryFailed(DnsError, PermanentError):
    """A lookup was refused or answered by a server that is not authoritative for the zone."""


class DnsVerifyFailed(DnsError, PermanentError):
    """The server does not serve the expected data (raised by callers that require a match)."""


# -- models --------------------------------------------------------------------------------------
def _absolute(text: str) -> dns.name.Name:
    try:
        return dns.name.from_text(text.strip().rstrip(".") + ".")
    except dns.exception.DNSException as exc:
        raise ValueError(f"invalid DNS name {text!r}: {exc}") from exc


def owner_name(zone: str, name: str) -> tuple[str, str, str]:
    """Normalise a zone and an owner name: (zone without final dot, FQDN, name relative to zone).

    ``name`` may be ``@``/empty (apex), relative (``www``) or fully qualified inside the zone
    (``www.acme.example.com.``; the final dot may be omitted when the zone suffix is there).

    Raises:
        ValueError: invalid names, or a name outside the zone.
    """
    zone_name = _absolute(zone)
    if zone_name == dns.name.root:
        raise ValueError("zone must not be the root")
    zone_text = zone_name.to_text(omit_final_dot=True).lower()
    raw = name.strip()
    if raw in ("", "@"):
        owner = zone_name
    elif raw.endswith(".") or raw.lower() == zone_text or raw.lower().endswith("." + zone_text):
        owner = _absolute(raw)
    else:
        try:
            owner = dns.name.from_text(raw, origin=zone_name)
        except dns.exception.DNSException as exc:
            raise ValueError(f"invalid record name {raw!r}: {exc}") from exc
    if not owner.is_subdomain(zone_name):
        raise ValueError(f"record name {raw!r} is outside zone {zone_text}")
    rel = owner.relativize(zone_name).to_text().lower()
    return zone_text, owner.to_text().lower(), rel


class DnsRecord(BaseModel):
    """The desired content of one RRset: every value of ``rtype`` at ``name`` in ``zone``.

    ``name`` is relative to the zone (``www``, ``@`` for the apex) or fully qualified
    inside it (``www.acme.example.com.``). Values are normalised (IPv6 compressed, targets
    fully qualified and lower case) and deduplicated, so equal RRsets compare equal.
    """

    zone: str = Field(description="Zone the record lives in, e.g. acme.example.com.")
    name: str = Field(description="Owner name relative to the zone, '@' for the apex, or an FQDN in the zone.")
    rtype: RecordType = Field(description="Record type.")
    values: list[str] = Field(min_length=1, description="Record data: addresses, a target name or TXT strings.")
    ttl: int = Field(default=300, ge=0, le=2_147_483_647, description="Time to live in seconds.")

    @field_validator("zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return owner_name(v, "@")[0]

    @model_validator(mode="after")
    def _normalise(self) -> DnsRecord:
        _, _, rel = owner_name(self.zone, self.name)
        self.name = rel
        if self.rtype == "CNAME" and rel == "@":
            raise ValueError("a CNAME cannot live at the zone apex (it holds SOA and NS)")
        self.values = _normalise_values(self.rtype, self.values)
        return self

    @property
    def fqdn(self) -> str:
        """Owner name, fully qualified with the final dot."""
        return owner_name(self.zone, self.name)[1]

    def as_recordset(self) -> DnsRecordSet:
        return DnsRecordSet(fqdn=self.fqdn, rtype=self.rtype, ttl=self.ttl, values=self.values)


def _normalise_values(rtype: str, values: list[str]) -> list[str]:
    out: set[str] = set()
    for value in values:
        if rtype == "A":
            try:
                out.add(str(ipaddress.IPv4Address(value.strip())))
            except ValueError as exc:
                raise ValueError(f"not an IPv4 address: {value!r}") from exc
        elif rtype == "AAAA":
            try:
                out.add(str(ipaddress.IPv6Address(value.strip())))
            except ValueError as exc:
                raise ValueError(f"not an IPv6 address: {value!r}") from exc
        elif rtype in ("CNAME", "PTR"):
            # Targets are always taken as fully qualified, whatever the caller wrote.
            out.add(_absolute(value).to_text().lower())
        else:  # TXT
            if len(value.encode("utf-8")) > 4000:
                raise ValueError("TXT value longer than 4000 bytes")
            out.add(value)
    if rtype in ("CNAME", "PTR") and len(out) != 1:
        raise ValueError(f"a {rtype} RRset holds exactly one value, got {len(out)}")
    return sorted(out)


class DnsRecordSet(BaseModel):
    """An RRset as served: owner name (FQDN), type, TTL and sorted values."""

    fqdn: str
    rtype: RecordType
    ttl: int
    values: list[str]

    def lines(self) -> list[str]:
        return [f"{self.fqdn} {self.ttl} IN {self.rtype} {_display(self.rtype, v)}" for v in self.values]


def _display(rtype: str, value: str) -> str:
    return '"' + value.replace('"', '\\"') + '"' if rtype == "TXT" else value


class DnsChange(BaseModel):
    """Outcome of an upsert or delete: what was served before and after."""

    zone: str
    fqdn: str
    rtype: RecordType
    changed: bool
    dry_run: bool = False
    before: DnsRecordSet | None = None
    after: DnsRecordSet | None = None

    def diff(self) -> list[str]:
        """Unified-style lines: ``-`` for data removed, ``+`` for data added."""
        old = self.before.lines() if self.before else []
        new = self.after.lines() if self.after else []
        return [f"- {line}" for line in old if line not in new] + [f"+ {line}" for line in new if line not in old]


class DnsVerification(BaseModel):
    """Result of querying the server for a record: does it serve exactly what was expected?"""

    matches: bool
    expected: DnsRecordSet | None
    found: DnsRecordSet | None


# -- transport seam ----------------------------------------------------------------------------
class DnsTransport(Protocol):
    """Sends one DNS message and returns the answer (dnspython exceptions pass through)."""

    def send(self, message: dns.message.Message, *, tcp: bool) -> dns.message.Message: ...


class NetworkTransport:
    """Sends to ``server:port``: UDP with TCP fallback for queries, TCP for updates."""

    def __init__(self, server: str, port: int, timeout: float) -> None:
        self.server = server
        self.port = port
        self.timeout = timeout

    def send(self, message: dns.message.Message, *, tcp: bool) -> dns.message.Message:
        if tcp:
            return dns.query.tcp(message, self.server, port=self.port, timeout=self.timeout)
        answer, _ = dns.query.udp_with_fallback(message, self.server, port=self.port, timeout=self.timeout)
        return answer


# -- client --------------------------------------------------------------------------------------
class DnsClient:
    """Reads and changes records on a zone's primary server with TSIG-signed RFC 2136 updates.

    Args:
        server: Address of the primary server.
        port: Its DNS port.
        tsig_key_name: Name of the TSIG key, as configured on the server.
        tsig_secret: The key's base64 secret.
        tsig_algorithm: One of ``TSIG_ALGORITHMS``.
        timeout: Seconds to wait for each answer.
        transport: Seam for tests; defaults to the network.
    """

    #: Stateless (TSIG signs each message; every exchange uses its own socket): one client
    #: may serve many threads at once (draas.sessions shares it within a flow run).
    thread_safe: ClassVar[bool] = True

    def __init__(self, server: str, port: int = 53, *, tsig_key_name: str, tsig_secret: str | SecretStr,
                 tsig_algorithm: str = "hmac-sha256", timeout: float = 5.0,
                 transport: DnsTransport | None = None) -> None:
        algorithm = tsig_algorithm.lower().rstrip(".")
        if algorithm not in TSIG_ALGORITHMS:
            raise ValueError(f"unsupported TSIG algorithm {tsig_algorithm!r}; use one of {sorted(TSIG_ALGORITHMS)}")
        secret = tsig_secret if isinstance(tsig_secret, SecretStr) else SecretStr(tsig_secret)
        try:
            if not base64.b64decode(secret.get_secret_value(), validate=True):
                raise ValueError
        except (binascii.Error, ValueError):
            raise ValueError(f"TSIG secret of key {tsig_key_name!r} is not valid base64") from None
        self.server = server
        self.port = port
        self.tsig_key_name = tsig_key_name
        self.tsig_algorithm = algorithm
        self.timeout = timeout
        self._secret = secret
        self._transport: DnsTransport = transport or NetworkTransport(server, port, timeout)

    def __repr__(self) -> str:
        return (f"DnsClient(server={self.server!r}, port={self.port}, tsig_key_name={self.tsig_key_name!r}, "
                f"tsig_algorithm={self.tsig_algorithm!r})")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: every exchange uses its own socket."""

    @property
    def endpoint(self) -> str:
        return f"{self.server}:{self.port}"

    # -- reads ---------------------------------------------------------------------------------
    def lookup(self, zone: str, name: str, rtype: RecordType) -> DnsRecordSet | None:
        """The RRset the server serves for ``name``/``rtype``, or None when there is none.

        Raises:
            DnsTransientError: no answer in time, unreachable, or SERVFAIL.
            DnsQueryFailed: the server refuses the query or is not authoritative for ``zone``.
        """
        zone, fqdn, _ = owner_name(zone, name)
        return self._lookup(zone, fqdn, _check_rtype(rtype))

    def zone_serial(self, zone: str) -> int:
        """The SOA serial the server serves for ``zone`` (proves it is authoritative for it).

        Raises:
            DnsTransientError: no answer in time, unreachable, or SERVFAIL.
            DnsQueryFailed: the server does not serve ``zone``.
        """
        zone, fqdn, _ = owner_name(zone, "@")
        query = dns.message.make_query(fqdn, dns.rdatatype.SOA)
        query.flags &= ~dns.flags.RD
        what = f"query {fqdn} SOA"
        answer = self._exchange(query, what, tcp=False, update=False)
        rcode = answer.rcode()
        if rcode == dns.rcode.SERVFAIL:
            raise DnsTransientError(f"{what}: server {self.endpoint} answered SERVFAIL (zone {zone} not loaded?)")
        if rcode != dns.rcode.NOERROR:
            raise DnsQueryFailed(f"{what}: server {self.endpoint} answered {dns.rcode.to_text(rcode)}; "
                                 f"it does not serve zone {zone}")
        self._require_authoritative(answer, zone, what)
        for rrset in answer.answer:
            if rrset.rdtype == dns.rdatatype.SOA and rrset.name == dns.name.from_text(fqdn):
                return int(rrset[0].serial)
        raise DnsQueryFailed(f"{what}: server {self.endpoint} returned no SOA for zone {zone}")

    def verify(self, record: DnsRecord) -> DnsVerification:
        """Query the server and compare what it serves with ``record`` (values and TTL)."""
        found = self._lookup(record.zone, record.fqdn, record.rtype)
        expected = record.as_recordset()
        return DnsVerification(matches=found == expected, expected=expected, found=found)

    def verify_absent(self, zone: str, name: str, rtype: RecordType) -> DnsVerification:
        """Query the server and check that it serves no ``rtype`` data at ``name``."""
        found = self.lookup(zone, name, rtype)
        return DnsVerification(matches=found is None, expected=None, found=found)

    def _lookup(self, zone: str, fqdn: str, rtype: RecordType) -> DnsRecordSet | None:
        what = f"query {fqdn} {rtype}"
        query = dns.message.make_query(fqdn, rtype)
        query.flags &= ~dns.flags.RD  # ask the primary itself, never its recursion
        answer = self._exchange(query, what, tcp=False, update=False)
        rcode = answer.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            self._require_authoritative(answer, zone, what)
            return None
        if rcode == dns.rcode.SERVFAIL:
            raise DnsTransientError(f"{what}: server {self.endpoint} answered SERVFAIL (zone {zone} not loaded?)")
        if rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH):
            raise DnsQueryFailed(f"{what}: server {self.endpoint} answered {dns.rcode.to_text(rcode)}; "
                                 f"it does not serve zone {zone}")
        if rcode != dns.rcode.NOERROR:
            raise DnsQueryFailed(f"{what}: server {self.endpoint} answered {dns.rcode.to_text(rcode)}")
        self._require_authoritative(answer, zone, what)
        owner, wanted = dns.name.from_text(fqdn), dns.rdatatype.from_text(rtype)
        for rrset in answer.answer:
            if rrset.name == owner and rrset.rdtype == wanted and rrset.rdclass == dns.rdataclass.IN:
                return DnsRecordSet(fqdn=fqdn, rtype=rtype, ttl=rrset.ttl,
                                    values=sorted({_value_of(rtype, rd) for rd in rrset}))
        return None  # the name exists with other types only (or is a CNAME)

    def _require_authoritative(self, answer: dns.message.Message, zone: str, what: str) -> None:
        if not answer.flags & dns.flags.AA:
            raise DnsQueryFailed(f"{what}: server {self.endpoint} is not authoritative for zone {zone}")

    # -- changes ---------------------------------------------------------------------------------
    def upsert(self, record: DnsRecord, *, dry_run: bool = False) -> DnsChange:
        """Make the server serve exactly ``record`` (replace or create); no-op when it already does.

        Raises:
            DnsTransientError: timeout, unreachable, SERVFAIL, or the RRset changed meanwhile.
            DnsUpdateRefused: the server rejected the key, the signature or the update.
            DnsUpdateFailed: another failure, or the update was accepted but not applied
                (for instance a CNAME and other data at the same name).
        """
        current = self._lookup(record.zone, record.fqdn, record.rtype)
        desired = record.as_recordset()
        base = DnsChange(zone=record.zone, fqdn=record.fqdn, rtype=record.rtype, changed=False, dry_run=dry_run)
        if current == desired:
            return base.model_copy(update={"before": current, "after": current})
        if dry_run:
            return base.model_copy(update={"changed": True, "before": current, "after": desired})
        what = f"update {record.fqdn} {record.rtype}"
        self._send_update(self.build_upsert(record, current), record.zone, what)
        after = self._lookup(record.zone, record.fqdn, record.rtype)
        if after != desired:
            raise DnsUpdateFailed(
                f"{what}: server {self.endpoint} accepted the update but serves "
                f"{after.values if after else 'nothing'} (TTL {after.ttl if after else '-'}) instead of "
                f"{desired.values} (TTL {desired.ttl}); a CNAME or other data at this name may conflict")
        return base.model_copy(update={"changed": True, "before": current, "after": after})

    def delete(self, zone: str, name: str, rtype: RecordType, *, dry_run: bool = False) -> DnsChange:
        """Remove the whole ``rtype`` RRset at ``name``; no-op when there is none.

        Raises:
            DnsTransientError, DnsUpdateRefused, DnsUpdateFailed: as for ``upsert``.
        """
        zone, fqdn, _ = owner_name(zone, name)
        rtype = _check_rtype(rtype)
        current = self._lookup(zone, fqdn, rtype)
        base = DnsChange(zone=zone, fqdn=fqdn, rtype=rtype, changed=False, dry_run=dry_run)
        if current is None:
            return base
        if dry_run:
            return base.model_copy(update={"changed": True, "before": current})
        what = f"delete {fqdn} {rtype}"
        self._send_update(self.build_delete(zone, current), zone, what)
        after = self._lookup(zone, fqdn, rtype)
        if after is not None:
            raise DnsUpdateFailed(f"{what}: server {self.endpoint} accepted the update but still serves {after.values}")
        return base.model_copy(update={"changed": True, "before": current})

    # -- message building (pure; unit-tested without network) ------------------------------------
    def build_upsert(self, record: DnsRecord, current: DnsRecordSet | None) -> dns.update.UpdateMessage:
        """Update that replaces the RRset, on condition that it is still ``current``."""
        msg = self._new_update(record.zone)
        owner = dns.name.from_text(record.fqdn)
        if current is None:
            msg.absent(owner, record.rtype)  # prerequisite: RRset does not exist
        else:
            msg.present(owner, *_rdatas(current.rtype, current.values))  # value-dependent prerequisite
        msg.replace(owner, record.ttl, *_rdatas(record.rtype, record.values))
        return msg

    def build_delete(self, zone: str, current: DnsRecordSet) -> dns.update.UpdateMessage:
        """Update that deletes the RRset, on condition that it is still ``current``."""
        msg = self._new_update(zone)
        owner = dns.name.from_text(current.fqdn)
        msg.present(owner, *_rdatas(current.rtype, current.values))
        msg.delete(owner, current.rtype)
        return msg

    def _new_update(self, zone: str) -> dns.update.UpdateMessage:
        # The key object is built per message and never kept: its repr shows the secret.
        key = dns.tsig.Key(self.tsig_key_name, self._secret.get_secret_value(), TSIG_ALGORITHMS[self.tsig_algorithm])
        return dns.update.UpdateMessage(dns.name.from_text(zone), keyring=key)

    def _send_update(self, msg: dns.update.UpdateMessage, zone: str, what: str) -> None:
        answer = self._exchange(msg, what, tcp=True, update=True)
        rcode = answer.rcode()
        if rcode == dns.rcode.NOERROR:
            return
        text = dns.rcode.to_text(rcode)
        where = f"{what} in zone {zone} on {self.endpoint}"
        if rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH):
            raise DnsUpdateRefused(f"{where}: {text} (is key {self.tsig_key_name!r} allowed to update this zone?)")
        if rcode in (dns.rcode.YXRRSET, dns.rcode.NXRRSET, dns.rcode.YXDOMAIN, dns.rcode.NXDOMAIN):
            raise DnsTransientError(f"{where}: prerequisite failed ({text}); the record changed meanwhile")
        if rcode == dns.rcode.SERVFAIL:
            raise DnsTransientError(f"{where}: SERVFAIL")
        raise DnsUpdateFailed(f"{where}: {text}")

    def _exchange(self, msg: dns.message.Message, what: str, *, tcp: bool, update: bool) -> dns.message.Message:
        """Send ``msg``; map network and TSIG failures onto the adapter's exceptions."""
        failed = DnsUpdateFailed if update else DnsQueryFailed
        try:
            return self._transport.send(msg, tcp=tcp)
        except dns.exception.Timeout as exc:
            raise DnsTransientError(f"{what}: no answer from {self.endpoint} within {self.timeout:g} s") from exc
        except dns.tsig.PeerBadKey as exc:
            raise DnsUpdateRefused(f"{what}: server {self.endpoint} does not know TSIG key "
                                   f"{self.tsig_key_name!r}") from exc
        except dns.tsig.PeerBadSignature as exc:
            raise DnsUpdateRefused(f"{what}: server {self.endpoint} rejected the signature of TSIG key "
                                   f"{self.tsig_key_name!r} (wrong secret or algorithm)") from exc
        except dns.tsig.PeerBadTime as exc:
            raise DnsUpdateRefused(f"{what}: server {self.endpoint} rejected the TSIG time; "
                                   "check the clocks of both sides") from exc
        except dns.tsig.PeerError as exc:
            raise DnsUpdateRefused(f"{what}: server {self.endpoint} rejected TSIG: {type(exc).__name__}") from exc
        except (dns.tsig.BadSignature, dns.message.UnknownTSIGKey) as exc:
            raise failed(f"{what}: the answer from {self.endpoint} failed TSIG verification") from exc
        except ConnectionError as exc:
            raise DnsTransientError(f"{what}: {self.endpoint} unreachable ({type(exc).__name__})") from exc
        except OSError as exc:
            raise DnsTransientError(f"{what}: network error talking to {self.endpoint}: {exc.strerror or exc}") from exc
        except dns.exception.DNSException as exc:
            raise failed(f"{what}: bad answer from {self.endpoint}: {type(exc).__name__}") from exc


def _check_rtype(rtype: str) -> RecordType:
    if rtype not in get_args(RecordType):
        raise ValueError(f"unsupported record type {rtype!r}; use one of {list(get_args(RecordType))}")
    return rtype  # type: ignore[return-value]


def _rdatas(rtype: str, values: list[str]) -> list[dns.rdata.Rdata]:
    out: list[dns.rdata.Rdata] = []
    for value in values:
        if rtype == "TXT":
            raw = value.encode("utf-8")
            chunks = [raw[i:i + _TXT_CHUNK] for i in range(0, len(raw), _TXT_CHUNK)] or [b""]
            out.append(TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks))
        else:
            out.append(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rtype), value))
    return out


def _value_of(rtype: str, rd: dns.rdata.Rdata) -> str:
    if rtype in ("A", "AAAA"):
        return str(ipaddress.ip_address(rd.address))  # type: ignore[attr-defined]
    if rtype in ("CNAME", "PTR"):
        return rd.target.to_text().lower()  # type: ignore[attr-defined]
    return b"".join(rd.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]

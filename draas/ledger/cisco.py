"""Ledger handler of the Cisco devices: the config blocks the product pushed (NX-OS, ASA, IOS-XE).

A record of system ``cisco`` names the ``device``, the ASA ``context`` (``system`` for the
system execution space, None on devices without contexts) and the ``lines`` pushed, with
secret values masked (``*****`` matches any value on the device). Removing it is
:meth:`CiscoClient.remove`: a block whose running lines all belong to the record goes as a
whole (``no vrf context acme``), inside a shared parent only the recorded lines go
(``router bgp 65010`` / ``no vrf acme``); then the config is saved. Lines already gone are
``changed=False``.

When the tenant owns a whole ASA context (``identity["owned_context"]``), the lines go with
the context: removing such a record changes nothing, and the record of the system context's
config (``context acme-vpn`` ...) removes the context itself (``no context acme-vpn``). The
ledger removes newest first, so the context's own records come before it.

The client is opened through :func:`draas.sessions.session`: inside a flow run every removal
on a device shares one SSH session (serialised, the client is not thread-safe).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from draas.errors import PermanentError
from draas.ledger import CISCO, Removal, register
from draas.sessions import session

if TYPE_CHECKING:
    from draas.clients.cisco import CiscoClient
    from draas.site import Site
    from draas.state.tables import ProvisionedObject

#: What a removal of an owned context's lines says (the context record removes the context).
OWNED_CONTEXT_NOTE = "removed with its context in the system context"


class CiscoRecordError(PermanentError):
    """A Cisco record lacks its device or its lines are not a list of config lines."""


def _owned_context(record: ProvisionedObject) -> bool:
    return bool((record.identity or {}).get("owned_context"))


class CiscoHandler:
    """Removes and looks up the config lines the product pushed to Cisco devices."""

    system = CISCO

    def __repr__(self) -> str:
        return "CiscoHandler('cisco')"

    @staticmethod
    def _target(record: ProvisionedObject) -> tuple[str, list[str]]:
        if not record.device:
            raise CiscoRecordError(f"cisco record {record.id} ({record.name!r}) names no device")
        lines = record.lines or []
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            raise CiscoRecordError(f"cisco record {record.id} ({record.name!r}): lines are not config lines")
        return record.device, lines

    def remove(self, record: ProvisionedObject, site: Site) -> Removal:
        """Remove the recorded lines from the device (or ASA context) and save; gone already is unchanged.

        Raises:
            CiscoRecordError: the record does not say which device.
            CiscoError: from the client (CiscoTransientError and CiscoPushInterrupted are worth a retry;
                CiscoConfigPushFailed says whether the device was put back as before).
        """
        device, lines = self._target(record)
        if _owned_context(record):
            return Removal(changed=False, note=OWNED_CONTEXT_NOTE)
        client: CiscoClient
        with session(site.device_block(device)) as client:
            change = client.remove(lines, context=record.context)
        where = f"{device}/{record.context}" if record.context else device
        note = "" if change.changed else f"the lines were already gone from {where}"
        return Removal(changed=change.changed, diff=change.diff, note=note)

    def exists(self, record: ProvisionedObject, site: Site) -> bool:
        """True when any recorded line (or, for an owned context, the context) is still on the device.

        Read only: a dry-run removal lists the ``no`` lines that would still be sent.
        """
        device, lines = self._target(record)
        client: CiscoClient
        with session(site.device_block(device)) as client:
            if _owned_context(record):
                return bool(record.context) and client.context_exists(str(record.context))
            return bool(client.remove(lines, context=record.context, dry_run=True).commands)


handler = register(CiscoHandler())

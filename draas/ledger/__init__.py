"""The object ledger: one registry of handlers, keyed by system, that can remove what the product made.

Every object the product creates anywhere is recorded in the state store *before* it is
created (:meth:`StateStore.record_object`: system, site, kind, identity, owning run). To undo,
offboard, tear a drill down or sweep a crashed run, callers hand records to
:func:`remove_records`, which removes them newest first through the handler registered for
each record's system and collects what could not be removed. Nothing else deletes.

A handler knows, for the kinds of its system::

    remove(record, site) -> Removal    # idempotent: gone already is success (changed=False)
    exists(record, site) -> bool       # read-only: is the object still on the system?

Handlers live beside this module (``draas/ledger/<system>.py``) and register themselves with
:func:`register`; :func:`handler_for` imports them on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, Field

from draas.errors import PermanentError

if TYPE_CHECKING:
    from draas.site import Site
    from draas.state.tables import ProvisionedObject

#: The systems objects live in (``ProvisionedObject.system``).
CISCO = "cisco"
VCENTER_RECOVERY = "vcenter-recovery"
VCENTER_PROTECTED = "vcenter-protected"
REPLICATION = "replication"
DNS = "dns"

#: Modules that define handlers, imported when a handler is first asked for.
HANDLER_MODULES = ("draas.ledger.cisco", "draas.ledger.vcenter", "draas.ledger.replication", "draas.ledger.dns")


class UnknownSystem(PermanentError):
    """A record names a system no handler is registered for."""


class Removal(BaseModel):
    """What removing one record did on its system."""

    changed: bool
    diff: list[str] = Field(default_factory=list)
    note: str = ""


class Handler(Protocol):
    """Removes and looks up the objects of one system."""

    system: str

    def remove(self, record: ProvisionedObject, site: Site) -> Removal:
        """Remove the object; an object already gone is success with ``changed=False``."""
        ...

    def exists(self, record: ProvisionedObject, site: Site) -> bool:
        """True when the object is still on the system."""
        ...


_REGISTRY: dict[str, Handler] = {}


def register(handler: Handler) -> Handler:
    """Register ``handler`` for its system (a later registration replaces an earlier one)."""
    _REGISTRY[handler.system] = handler
    return handler


def _load_handlers() -> None:
    for module in HANDLER_MODULES:
        importlib.import_module(module)


def handler_for(system: str) -> Handler:
    """The handler of ``system``; raises UnknownSystem when there is none."""
    if system not in _REGISTRY:
        _load_handlers()
    try:
        return _REGISTRY[system]
    except KeyError:
        raise UnknownSystem(f"no ledger handler for system {system!r} (known: {sorted(_REGISTRY)})") from None


def systems() -> list[str]:
    """Every system with a registered handler."""
    _load_handlers()
    return sorted(_REGISTRY)


class Leftover(BaseModel):
    """A record that could not be removed, and why."""

    record_id: int
    what: str
    error: str


class RemovalReport(BaseModel):
    """What :func:`remove_records` did: removed records (with their removals) and leftovers."""

    removed: list[int] = Field(default_factory=list)
    changed: int = 0
    leftovers: list[Leftover] = Field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.leftovers


def describe(rec: ProvisionedObject) -> str:
    """One recorded object, for lists and the audit log (never its lines: they may hold masked secrets)."""
    where = "/".join(p for p in (rec.device, rec.context) if p)
    return f"{rec.system} {rec.kind} {rec.name}" + (f" on {where}" if where and where != rec.name else "")


def remove_records(records: Iterable[ProvisionedObject],
                   remove_one: Callable[[ProvisionedObject], object]) -> RemovalReport:
    """Remove ``records`` newest first through ``remove_one``; keep going past failures.

    ``remove_one`` removes one record and marks it removed (the flows pass the
    ``remove_recorded_object`` task, so each removal is a retried, visible step); it returns
    a StepResult or a :class:`Removal`. Failures are collected, never raised: the caller
    decides whether leftovers fail the run (they stay recorded, so the sweeper retries them).
    """
    report = RemovalReport()
    for rec in sorted(records, key=lambda r: r.id or 0, reverse=True):
        assert rec.id is not None
        try:
            outcome = remove_one(rec)
        except Exception as exc:  # noqa: BLE001 - collect every leftover; the caller reports them
            report.leftovers.append(Leftover(record_id=rec.id, what=describe(rec),
                                             error=f"{type(exc).__name__}: {exc}"))
            continue
        report.removed.append(rec.id)
        report.changed += int(bool(getattr(outcome, "changed", False)))
    return report

"""Ledger handlers of the two vCenters: what the product made in the recovery or the protected vCenter.

Kinds and how they go::

    vm                                          destroy_vm: powered off first if needed, then deleted
                                                (recovered and test VMs, appliances)
    folder, resource_pool, dvportgroup,         destroy(kind, name): a folder must hold no VM any
    dvswitch, portgroup                         more (the ledger removes newest first, VMs before
                                                their folder); a standard port group is removed
                                                from every host of ``identity["cluster"]`` (or the
                                                only cluster)

``record.name`` is the object's name as the client takes it: a path below the datacenter's
VM folder for folders and VMs (``acme/acme-web01``; a bare VM name must be unique), below the
cluster's root pool for pools, the name for networks and switches. An object already gone is
success with ``changed=False``. Both handlers log in through :func:`draas.sessions.session`,
so inside a flow run they use the run's shared vCenter session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, cast, get_args

from draas.errors import PermanentError
from draas.ledger import VCENTER_PROTECTED, VCENTER_RECOVERY, Removal, register
from draas.sessions import session

if TYPE_CHECKING:
    from draas.site import Site
    from draas.state.tables import ProvisionedObject

DestroyKind = Literal["folder", "resource_pool", "dvportgroup", "dvswitch", "portgroup"]
#: Every kind these handlers remove.
KINDS: frozenset[str] = frozenset({"vm", *get_args(DestroyKind)})


class UnsupportedVCenterKind(PermanentError):
    """A vCenter record of a kind the handler does not know how to remove."""


class VCenterHandler:
    """Removes and looks up the recorded objects of one vCenter (``recovery`` or ``protected``)."""

    def __init__(self, system: str, site_name: Literal["recovery", "protected"]) -> None:
        self.system = system
        self.site_name: Literal["recovery", "protected"] = site_name

    def __repr__(self) -> str:
        return f"VCenterHandler({self.system!r})"

    def _kind(self, record: ProvisionedObject) -> str:
        if record.kind not in KINDS:
            raise UnsupportedVCenterKind(
                f"{self.system}: cannot handle {record.kind!r} {record.name!r} (kinds: {sorted(KINDS)})")
        return record.kind

    def remove(self, record: ProvisionedObject, site: Site) -> Removal:
        """Destroy the object (a VM powered off first); gone already is ``changed=False``.

        Raises:
            UnsupportedVCenterKind: a kind this handler does not know.
            VCenterError: from the client (transient ones are worth a retry; a folder that
                still holds VMs is VCenterObjectConflict).
        """
        kind = self._kind(record)
        with session(site.vcenter_block(self.site_name)) as vc:
            if kind == "vm":
                change = vc.destroy_vm(record.name)
            else:
                cluster = (record.identity or {}).get("cluster")
                change = vc.destroy(cast(DestroyKind, kind), record.name, cluster=cluster)
        return Removal(changed=change.changed, diff=change.diff(),
                       note="" if change.changed else f"{kind} {record.name} was already gone")

    def exists(self, record: ProvisionedObject, site: Site) -> bool:
        """True when the vCenter still has an object of the record's kind and name."""
        kind = self._kind(record)
        with session(site.vcenter_block(self.site_name)) as vc:
            return vc.find(kind, record.name) is not None  # type: ignore[arg-type]


recovery_handler = register(VCenterHandler(VCENTER_RECOVERY, "recovery"))
protected_handler = register(VCenterHandler(VCENTER_PROTECTED, "protected"))

"""Ledger handler of the replication manager: removes the protection groups the product recorded.

Records of kind ``group`` carry the group's ``name`` in their identity, and its ``id`` once the
manager assigned one. Removing unprotects the group with ``force`` (a run that died may have
left a test or a failover of it running, whose recovered VMs go with it) and waits, within a
deadline, until the manager has removed it. A group already gone is success with
``changed=False``. The handler reaches the manager only through ``ReplicationProvider``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from draas.clients.replication import (
    GroupState,
    OperationKind,
    ReplicationGroup,
    ReplicationNotFound,
    ReplicationProvider,
)
from draas.deadline import Deadline
from draas.errors import PermanentError
from draas.ledger import REPLICATION, Removal, register
from draas.sessions import session

if TYPE_CHECKING:
    from draas.site import Site
    from draas.state.tables import ProvisionedObject

#: Kinds of replication objects the ledger knows.
GROUP = "group"
#: How long removing one group may take (the manager deletes it asynchronously).
REMOVE_TIMEOUT_S = 300.0


class UnknownReplicationKind(PermanentError):
    """A replication record of a kind this handler cannot remove."""


def _find(provider: ReplicationProvider, record: ProvisionedObject) -> ReplicationGroup | None:
    """The recorded group as the manager has it now, or None when it is gone.

    With an id, only that group counts: a group of the same name made later is not this one.
    """
    if record.kind != GROUP:
        raise UnknownReplicationKind(f"replication record {record.id}: unknown kind {record.kind!r}")
    identity = record.identity or {}
    group_id = identity.get("id")
    if group_id:
        try:
            found = provider.status(str(group_id))
        except ReplicationNotFound:
            return None
        return found if found.id == str(group_id) else None
    return provider.find_group(str(identity.get("name") or record.name))


class ReplicationHandler:
    """Removes and looks up protection groups (``system = "replication"``)."""

    system = REPLICATION

    def remove(self, record: ProvisionedObject, site: Site) -> Removal:
        """Unprotect the group (forced) and wait until it is gone; gone already is ``changed=False``."""
        with session(site.replication_block()) as provider:
            group = _find(provider, record)
            if group is None:
                return Removal(changed=False, note="group already gone")
            deadline = Deadline.within(REMOVE_TIMEOUT_S, label=f"removal of group {group.name}")
            # A removal already under way (a retry, or the dead run's own) is awaited, not repeated.
            started = provider.running_operation(group.id, OperationKind.UNPROTECT) \
                if group.state == GroupState.DELETING else None
            started = started or provider.unprotect(group.id, force=True)
            if started is None:
                return Removal(changed=False, note="group already gone")
            provider.wait_task(started, deadline=deadline)
        return Removal(changed=True, diff=[f"- replication group {group.name}"])

    def exists(self, record: ProvisionedObject, site: Site) -> bool:
        """True while the manager still has the group."""
        with session(site.replication_block()) as provider:
            return _find(provider, record) is not None


register(ReplicationHandler())

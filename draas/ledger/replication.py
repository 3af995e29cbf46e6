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
#: A test recovery (drill) of a group: removing it stops the test, which removes the test VMs.
TEST = "failover-test"
#: A pause of a group's replication (drill of a snapshot package): removing it resumes replication.
PAUSE = "replication-paused"
#: How long removing one group may take (the manager deletes it asynchronously).
REMOVE_TIMEOUT_S = 300.0


class UnknownReplicationKind(PermanentError):
    """A replication record of a kind this handler cannot remove."""


def _find(provider: ReplicationProvider, record: ProvisionedObject) -> ReplicationGroup | None:
    """The recorded group as the manager has it now, or None when it is gone.

    With an id, only that group counts: a group of the same name made later is not this one.
    """
    if record.kind not in (GROUP, TEST, PAUSE):
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
        """Unprotect the group (forced) and wait until it is gone; gone already is ``changed=False``.

        A ``failover-test`` record stops the group's test (failed, "ended by the ledger"), which
        removes its test VMs; a ``replication-paused`` record resumes the group's replication.
        """
        with session(site.replication_block()) as provider:
            group = _find(provider, record)
            if group is None:
                return Removal(changed=False, note="group already gone")
            if record.kind in (TEST, PAUSE):
                return _end(provider, group, record.kind)
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
        """True while the manager still has the group (its test running, its replication paused)."""
        with session(site.replication_block()) as provider:
            group = _find(provider, record)
            if group is None or record.kind == GROUP:
                return group is not None
            return group.test_running if record.kind == TEST else group.paused


def _end(provider: ReplicationProvider, group: ReplicationGroup, kind: str) -> Removal:
    """Stop the group's test, or resume its replication, and wait; nothing to do is ``changed=False``."""
    deadline = Deadline.within(REMOVE_TIMEOUT_S, label=f"{kind} of group {group.name}")
    if kind == TEST:
        running = provider.running_operation(group.id, OperationKind.STOP_TEST)
        if running is None and not group.test_running:
            return Removal(changed=False, note="no test running")
        provider.wait_task(running or provider.stop_test(group.id, success=False, summary="ended by the ledger"),
                           deadline=deadline)
        return Removal(changed=True, diff=[f"- failover test of {group.name}"])
    running = provider.running_operation(group.id, OperationKind.RESUME)
    if running is None and not group.paused:
        return Removal(changed=False, note="replication not paused")
    provider.wait_task(running or provider.resume(group.id), deadline=deadline)
    return Removal(changed=True, diff=[f"~ replication of {group.name} resumed"])


register(ReplicationHandler())

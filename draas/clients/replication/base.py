"""The product-neutral replication interface and its exception tree.

``ReplicationProvider`` is what flows and tasks program against: protect VMs in a group,
read its status and recovery points, run a test recovery, fail over (planned or not),
commit, roll back, reverse. ``ZertoClient`` implements it over Zerto's REST API; further
products of the source documents (hypervisor snapshot replication, storage SnapMirror)
become further subclasses.

Exceptions::

    ReplicationError (DraasError)
    ├── ReplicationTransientError (TransientError)   HTTP 5xx / 429, an HTTP call timed out, connection lost
    ├── ReplicationDeadlineExceeded (DeadlineExceeded, permanent)
    │                                                a wait's deadline passed before the task or group got
    │                                                there; never retried (the work may still finish)
    ├── ReplicationAuthFailed (PermanentError)        credentials refused, or 401 again right after login
    ├── ReplicationRequestRejected (PermanentError)   HTTP 4xx: the manager refused the request
    │   └── ReplicationNotFound                      HTTP 404, or no such group / VM / network
    ├── ReplicationResponseError (PermanentError)     malformed or unexpected answer (names the endpoint)
    └── ReplicationTaskFailed (PermanentError)        the manager's task ended Failed or Stopped
        ├── ReplicationProtectFailed
        ├── ReplicationFailoverTestFailed
        ├── ReplicationFailoverFailed
        ├── ReplicationCommitFailed
        └── ReplicationRollbackFailed

Waits (:meth:`ReplicationProvider.wait_task`, :meth:`ReplicationProvider.wait_for_state`) take an
absolute :class:`~draas.deadline.Deadline`; transient errors while polling are retried inside
the wait only while the deadline allows, and each HTTP call's own timeout is capped by the
time left. Operations are named by :class:`OperationKind`; mapping them to a product's task
types is the adapter's business.

Messages name the operation and endpoint; they never contain passwords or session tokens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import Self

from draas.clients.replication.models import (
    FailoverOptions,
    GroupState,
    OperationKind,
    ProtectionSpec,
    ProtectResult,
    RecoveryPoint,
    ReplicationGroup,
    ReplicationTask,
)
from draas.deadline import Deadline, DeadlineExceeded
from draas.errors import DraasError, PermanentError, TransientError

#: How long a wait lasts when the caller gives neither a deadline nor a timeout.
DEFAULT_WAIT_S = 600.0


class ReplicationError(DraasError):
    """Base of every error a replication adapter raises."""


class ReplicationTransientError(ReplicationError, TransientError):
    """Worth retrying: the manager is busy, restarting, or did not answer in time."""


class ReplicationDeadlineExceeded(ReplicationError, DeadlineExceeded):
    """A task or group did not get where it was awaited before the deadline. Permanent: never retried.

    The work may still finish on the manager; the caller decides (look again, roll back, report).
    """


class ReplicationAuthFailed(ReplicationError, PermanentError):
    """The credentials were refused."""


class ReplicationRequestRejected(ReplicationError, PermanentError):
    """The manager refused the request (bad settings, wrong state); its message says why."""


class ReplicationNotFound(ReplicationRequestRejected):
    """No such group, VM, checkpoint, task or inventory object."""


class ReplicationResponseError(ReplicationError, PermanentError):
    """The answer was not what the API documents (malformed JSON, missing fields)."""


class ReplicationTaskFailed(ReplicationError, PermanentError):
    """An asynchronous operation ended Failed or Stopped."""

    def __init__(self, message: str, task: ReplicationTask | None = None) -> None:
        super().__init__(message)
        self.task = task


class ReplicationProtectFailed(ReplicationTaskFailed):
    """Creating or updating a protection group failed."""


class ReplicationFailoverTestFailed(ReplicationTaskFailed):
    """Starting or stopping a test recovery failed."""


class ReplicationFailoverFailed(ReplicationTaskFailed):
    """A failover or move failed."""


class ReplicationCommitFailed(ReplicationTaskFailed):
    """Committing a failover or move failed."""


class ReplicationRollbackFailed(ReplicationTaskFailed):
    """Rolling back a failover or move failed."""


class ReplicationProvider(ABC):
    """A replication product, seen as groups of VMs replicated from a protected to a recovery site.

    Actions return the product's task (poll it with :meth:`wait_task`); reads return
    pydantic models. Implementations are context managers.
    """

    #: Short product name for logs and reports, e.g. ``"zerto"``.
    product: str = "replication"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release connections and log out."""

    # --- protection ---------------------------------------------------------------------

    @abstractmethod
    def plan_protect(self, spec: ProtectionSpec) -> list[str]:
        """What :meth:`protect` would change (empty: nothing); changes nothing itself."""

    @abstractmethod
    def protect(self, spec: ProtectionSpec, timeout_s: float | None = None, *,
                deadline: Deadline | None = None) -> ProtectResult:
        """Create the group, or bring an existing one of that name in line with ``spec``; waits for it."""

    @abstractmethod
    def unprotect(self, group: str, force: bool = False) -> ReplicationTask | None:
        """Remove the group (``force``: even while a test or failover is under way); None when it is gone."""

    @abstractmethod
    def list_groups(self) -> list[ReplicationGroup]:
        """Every group the manager knows."""

    @abstractmethod
    def find_group(self, name: str) -> ReplicationGroup | None:
        """The group called ``name``, or None."""

    @abstractmethod
    def status(self, group: str) -> ReplicationGroup:
        """The group's status and actual RPO (``group`` is its id or name); ReplicationNotFound if none."""

    @abstractmethod
    def recovery_points(self, group: str, since: datetime | None = None,
                        until: datetime | None = None) -> list[RecoveryPoint]:
        """Recovery points in the journal, oldest first."""

    @abstractmethod
    def tag_recovery_point(self, group: str, tag: str) -> RecoveryPoint:
        """Insert a tagged recovery point now (e.g. before a change or a drill)."""

    # --- recovery -----------------------------------------------------------------------

    @abstractmethod
    def start_test(self, group: str, recovery_point: str | None = None,
                   vms: Iterable[str] | None = None) -> ReplicationTask:
        """Recover copies into the test network, production untouched."""

    @abstractmethod
    def stop_test(self, group: str, success: bool = True, summary: str = "") -> ReplicationTask:
        """Remove the test copies and record the result."""

    @abstractmethod
    def failover(self, group: str, options: FailoverOptions | None = None) -> ReplicationTask:
        """Recover at the recovery site (``options.planned``: a migration with the source shut down)."""

    @abstractmethod
    def commit(self, group: str, reverse_protection: bool = False) -> ReplicationTask:
        """Make a failover or move final, optionally protecting back in the other direction."""

    @abstractmethod
    def rollback(self, group: str) -> ReplicationTask:
        """Undo a failover or move that waits for commit: remove recovered VMs, restart the source."""

    @abstractmethod
    def reverse(self, group: str) -> ReplicationTask | None:
        """Protect the group from the recovery site back to the protected one (None: already so)."""

    def pause(self, group: str) -> ReplicationTask:
        """Pause the group's replication (the journal keeps its points; resume catches up).

        Not every product can pause: the default refuses, naming the product.
        """
        raise ReplicationRequestRejected(f"{self.product}: pausing replication of {group!r} is not supported")

    def resume(self, group: str) -> ReplicationTask:
        """Resume the group's paused replication."""
        raise ReplicationRequestRejected(f"{self.product}: resuming replication of {group!r} is not supported")

    # --- operations and waiting ---------------------------------------------------------

    @abstractmethod
    def running_operation(self, group: str, kind: OperationKind) -> ReplicationTask | None:
        """The operation of ``kind`` under way on the group, if any (so a retried step does not start it twice)."""

    @abstractmethod
    def wait_task(self, task: str | ReplicationTask, timeout_s: float | None = None, *,
                  deadline: Deadline | None = None) -> ReplicationTask:
        """Poll until the task ends: Completed returns it, Failed raises ReplicationTaskFailed, and
        passing the deadline (the earlier of ``deadline`` and ``timeout_s`` from now) raises
        ReplicationDeadlineExceeded."""

    @abstractmethod
    def wait_for_state(self, group: str, states: Iterable[GroupState], timeout_s: float | None = None, *,
                       deadline: Deadline | None = None) -> ReplicationGroup:
        """Poll the group until it is in one of ``states``; the deadline raises ReplicationDeadlineExceeded."""


def wait_limit(deadline: Deadline | None, timeout_s: float | None, what: str) -> Deadline:
    """The deadline of a wait: ``deadline``, ``timeout_s`` from now, the earlier of both, or the default."""
    if deadline is None and timeout_s is None:
        timeout_s = DEFAULT_WAIT_S
    return Deadline.of(deadline, timeout_s, label=what)

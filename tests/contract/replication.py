"""The contract of ``ReplicationProvider``: every operation, through the interface only.

A backend's test module subclasses :class:`ReplicationProviderContract` and provides, at class
scope or broader:

- ``provider``: an open ``ReplicationProvider``;
- ``fresh_vms``: ``fresh_vms(n) -> list[str]``, names of ``n`` new VMs at the protected site
  that nothing protects yet (the backend removes them afterwards; some tests destroy them:
  a committed reverse protection removes the sources);
- ``recovery_vms``: ``recovery_vms() -> set[str]``, the names of the VMs at the recovery site
  (read from the recovery site itself, not from the provider);
- ``remove_recovery_vms``: ``remove_recovery_vms(names)`` removes VMs a committed failover left
  at the recovery site;
- ``spec_defaults``: ProtectionSpec fields the backend needs (networks, folders).

Timings assume the manager's operations take at least a moment (the lab's take one second),
so an operation just started is still listed as running.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from draas.clients.replication import (
    FailoverOptions,
    GroupState,
    OperationKind,
    ProtectionSpec,
    ReplicationDeadlineExceeded,
    ReplicationError,
    ReplicationGroup,
    ReplicationNotFound,
    ReplicationProvider,
    ReplicationRequestRejected,
)
from draas.deadline import Deadline, DeadlineExceeded
from draas.errors import is_transient

WAIT = 90.0  # seconds any single operation may take in a contract run


def _wait(provider: ReplicationProvider, task: Any) -> None:
    assert task is not None
    done = provider.wait_task(task, deadline=Deadline.within(WAIT, label="contract step"))
    assert done.done


class ReplicationProviderContract:
    """Subclass as ``Test<Backend>Contract`` with the fixtures named in the module docstring."""

    # --- helpers ------------------------------------------------------------------------------

    @staticmethod
    def spec(name: str, vms: list[str], defaults: dict[str, Any], **changes: Any) -> ProtectionSpec:
        return ProtectionSpec(name=name, vms=[*vms], rpo_seconds=120, journal_history_hours=2,
                              **{**defaults, **changes})

    @staticmethod
    def protect(provider: ReplicationProvider, spec: ProtectionSpec) -> ReplicationGroup:
        """Protect and wait until the group meets its SLA."""
        outcome = provider.protect(spec, deadline=Deadline.within(WAIT))
        assert outcome.changed and outcome.group.name == spec.name
        return provider.wait_for_state(outcome.group.id, [GroupState.MEETING_SLA], deadline=Deadline.within(WAIT))

    @staticmethod
    def drop(provider: ReplicationProvider, group: str) -> None:
        """Unprotect (forced) and wait; nothing to do when it is gone."""
        task = provider.unprotect(group, force=True)
        if task is not None:
            _wait(provider, task)

    @pytest.fixture(scope="class")
    def shared(self, provider: ReplicationProvider, fresh_vms: Callable[[int], list[str]],
               spec_defaults: dict[str, Any]) -> Iterator[tuple[ReplicationGroup, ProtectionSpec]]:
        """One replicating group for the tests that leave it as they found it."""
        spec = self.spec(f"ct-{uuid.uuid4().hex[:6]}", fresh_vms(2), spec_defaults)
        group = self.protect(provider, spec)
        yield group, spec
        self.drop(provider, group.id)

    @pytest.fixture()
    def own_group(self, provider: ReplicationProvider, fresh_vms: Callable[[int], list[str]],
                  spec_defaults: dict[str, Any], recovery_vms: Callable[[], set[str]],
                  remove_recovery_vms: Callable[[Iterable[str]], None]) -> Iterator[tuple[ReplicationGroup, list[str]]]:
        """A group of its own for a test that fails it over for good (recovered VMs removed after)."""
        before = recovery_vms()
        vms = fresh_vms(1)
        group = self.protect(provider, self.spec(f"ct-own-{uuid.uuid4().hex[:6]}", vms, spec_defaults))
        yield group, vms
        self.drop(provider, group.id)
        remove_recovery_vms(recovery_vms() - before)

    # --- protection ---------------------------------------------------------------------------

    def test_protect_converges(self, provider: ReplicationProvider,
                               shared: tuple[ReplicationGroup, ProtectionSpec]) -> None:
        group, spec = shared
        again = provider.protect(spec, deadline=Deadline.within(WAIT))
        assert not again.changed and again.diff == [] and again.group.id == group.id
        assert provider.plan_protect(spec) == []
        assert provider.plan_protect(spec.model_copy(update={"rpo_seconds": 60})) != []
        assert [g.id for g in provider.list_groups() if g.name == spec.name] == [group.id]

    def test_find_group_and_status(self, provider: ReplicationProvider,
                                   shared: tuple[ReplicationGroup, ProtectionSpec]) -> None:
        group, spec = shared
        found = provider.find_group(spec.name)
        assert found is not None and found.id == group.id
        by_id, by_name = provider.status(group.id), provider.status(spec.name)
        assert by_id.id == by_name.id == group.id and by_id.name == spec.name
        assert by_id.replicating and by_id.vm_count == len(spec.vms) and by_id.configured_rpo_s == 120
        assert not by_id.awaiting_commit and not by_id.failover_committed and not by_id.reversed
        assert provider.find_group(f"ct-missing-{uuid.uuid4().hex[:6]}") is None

    def test_unknown_group_is_not_found(self, provider: ReplicationProvider) -> None:
        missing = f"ct-missing-{uuid.uuid4().hex[:6]}"
        calls: list[Callable[[], object]] = [
            lambda: provider.status(missing), lambda: provider.recovery_points(missing),
            lambda: provider.tag_recovery_point(missing, "x"), lambda: provider.start_test(missing),
            lambda: provider.stop_test(missing), lambda: provider.failover(missing),
            lambda: provider.commit(missing), lambda: provider.rollback(missing), lambda: provider.reverse(missing),
        ]
        for call in calls:
            with pytest.raises(ReplicationNotFound) as err:
                call()
            assert isinstance(err.value, ReplicationError) and not is_transient(err.value)
        assert provider.running_operation(missing, OperationKind.TEST) is None

    def test_recovery_points_and_tag(self, provider: ReplicationProvider,
                                     shared: tuple[ReplicationGroup, ProtectionSpec]) -> None:
        group, _ = shared
        points = provider.recovery_points(group.id)
        assert points and points == sorted(points, key=lambda p: p.timestamp)
        tag = f"ct-{uuid.uuid4().hex[:6]}"
        tagged = provider.tag_recovery_point(group.id, tag)
        assert tagged.tag == tag
        assert tagged.id in {p.id for p in provider.recovery_points(group.id) if p.tag == tag}
        assert provider.recovery_points(group.id, since=tagged.timestamp)[0].timestamp >= tagged.timestamp

    def test_pause_then_resume(self, provider: ReplicationProvider,
                               shared: tuple[ReplicationGroup, ProtectionSpec]) -> None:
        group, _ = shared
        started = provider.pause(group.id)
        assert started.kind == OperationKind.PAUSE
        _wait(provider, started)
        paused = provider.status(group.id)
        assert paused.paused
        resumed = provider.resume(group.id)
        assert resumed.kind == OperationKind.RESUME
        _wait(provider, resumed)
        assert not provider.status(group.id).paused

    # --- recovery -----------------------------------------------------------------------------

    def test_test_copies_appear_then_vanish(self, provider: ReplicationProvider,
                                            shared: tuple[ReplicationGroup, ProtectionSpec],
                                            recovery_vms: Callable[[], set[str]]) -> None:
        group, spec = shared
        before = recovery_vms()
        started = provider.start_test(group.id)
        running = provider.running_operation(group.id, OperationKind.TEST)
        assert running is not None and running.id == started.id and running.kind == OperationKind.TEST
        assert provider.running_operation(group.id, OperationKind.FAILOVER) is None
        _wait(provider, started)
        copies = recovery_vms() - before
        assert provider.status(group.id).test_running
        for vm in spec.members:
            assert any(vm.vm in name for name in copies), (vm.vm, copies)
        assert not {vm.vm for vm in spec.members} & copies  # a test never takes the production name
        _wait(provider, provider.stop_test(group.id, success=True, summary="contract"))
        assert recovery_vms() - before == set()
        after = provider.status(group.id)
        assert not after.test_running and after.last_test is not None

    def test_failover_then_rollback(self, provider: ReplicationProvider,
                                    shared: tuple[ReplicationGroup, ProtectionSpec],
                                    recovery_vms: Callable[[], set[str]]) -> None:
        group, spec = shared
        names = {vm.vm for vm in spec.members}
        started = provider.failover(group.id, FailoverOptions())
        assert provider.running_operation(group.id, OperationKind.FAILOVER) is not None
        _wait(provider, started)
        assert names <= recovery_vms()
        waiting = provider.status(group.id)
        assert waiting.awaiting_commit and not waiting.failover_committed
        _wait(provider, provider.rollback(group.id))
        assert not names & recovery_vms()
        back = provider.wait_for_state(group.id, [GroupState.MEETING_SLA], deadline=Deadline.within(WAIT))
        assert back.replicating and not back.awaiting_commit and not back.failover_committed

    def test_failover_then_commit(self, provider: ReplicationProvider,
                                  own_group: tuple[ReplicationGroup, list[str]],
                                  recovery_vms: Callable[[], set[str]]) -> None:
        group, vms = own_group
        _wait(provider, provider.failover(group.id, FailoverOptions()))
        _wait(provider, provider.commit(group.id))
        done = provider.status(group.id)
        assert done.failover_committed and done.state == GroupState.RECOVERED and not done.awaiting_commit
        assert set(vms) <= recovery_vms()
        with pytest.raises(ReplicationRequestRejected):
            provider.rollback(group.id)  # committed: nothing awaits a rollback

    def test_reverse(self, provider: ReplicationProvider, own_group: tuple[ReplicationGroup, list[str]],
                     recovery_vms: Callable[[], set[str]]) -> None:
        group, vms = own_group
        with pytest.raises(ReplicationRequestRejected):
            provider.reverse(group.id)  # never failed over: nothing to reverse
        _wait(provider, provider.failover(group.id, FailoverOptions()))
        _wait(provider, provider.reverse(group.id))
        reversed_ = provider.wait_for_state(group.id, [GroupState.MEETING_SLA], deadline=Deadline.within(WAIT))
        assert reversed_.reversed and reversed_.failover_committed and reversed_.replicating
        assert set(vms) <= recovery_vms()
        assert provider.reverse(group.id) is None  # already protected the other way

    # --- waiting ------------------------------------------------------------------------------

    def test_wait_deadlines(self, provider: ReplicationProvider,
                            shared: tuple[ReplicationGroup, ProtectionSpec]) -> None:
        group, _ = shared
        started = provider.start_test(group.id)
        t0 = time.monotonic()
        with pytest.raises(ReplicationDeadlineExceeded) as err:
            provider.wait_task(started, deadline=Deadline.within(0.3))
        assert time.monotonic() - t0 < 2.0
        assert isinstance(err.value, DeadlineExceeded) and not is_transient(err.value)
        with pytest.raises(ReplicationDeadlineExceeded):
            provider.wait_for_state(group.id, [GroupState.RECOVERED], timeout_s=0.5)
        _wait(provider, started)  # the work itself went on
        _wait(provider, provider.stop_test(group.id))

    # --- removal ------------------------------------------------------------------------------

    def test_unprotect_is_idempotent(self, provider: ReplicationProvider, fresh_vms: Callable[[int], list[str]],
                                     spec_defaults: dict[str, Any]) -> None:
        spec = self.spec(f"ct-gone-{uuid.uuid4().hex[:6]}", fresh_vms(1), spec_defaults)
        outcome = provider.protect(spec, deadline=Deadline.within(WAIT))
        first = provider.unprotect(outcome.group.id)
        assert first is not None and first.kind == OperationKind.UNPROTECT
        _wait(provider, first)
        assert provider.find_group(spec.name) is None
        assert provider.unprotect(outcome.group.id) is None
        assert provider.unprotect(spec.name, force=True) is None
        with pytest.raises(ReplicationNotFound):
            provider.status(outcome.group.id)

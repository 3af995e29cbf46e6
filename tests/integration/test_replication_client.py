"""The Zerto adapter (and its tasks) against the lab's replication manager and vcsims."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from blocks.replication import ZertoCredentials
from draas.clients.replication import (
    FailoverOptions,
    GroupState,
    OperationKind,
    ProtectionSpec,
    ReplicationFailoverTestFailed,
    ReplicationTransientError,
)
from draas.deadline import Deadline
from draas.errors import is_transient
from draas.site import Site
from lab.state import LabState
from tasks.replication import (
    create_vpg,
    list_recovery_points,
    rollback_failover,
    start_failover,
    start_failover_test,
    stop_failover_test,
    wait_for_replication_task,
)

VMS = ["initech-fs01", "initech-app01"]


@pytest.fixture(scope="module")
def creds(lab: LabState) -> ZertoCredentials:
    """The lab's ZVM as the product finds it: through the site profile the lab writes."""
    return Site.for_config_dir(None).replication_block()


@pytest.fixture(scope="module")
def control(lab: LabState) -> Iterator[httpx.Client]:
    """The lab's control API (faults, session expiry), outside the imitated product."""
    assert lab.replication is not None
    with httpx.Client(base_url=f"{lab.replication.url}/lab", timeout=10) as client:
        yield client
        client.delete("/faults")


@pytest.fixture(scope="module")
def spec() -> ProtectionSpec:
    return ProtectionSpec(name=f"it-initech-{uuid.uuid4().hex[:6]}", vms=[*VMS], rpo_seconds=120,
                          journal_history_hours=2, failover_network="VM Network", test_network="VM Network")


@pytest.fixture(scope="module")
def vpg(creds: ZertoCredentials, spec: ProtectionSpec) -> Iterator[str]:
    """The module's VPG, created through the task (first run changes, second does not)."""
    first = create_vpg.fn(creds, spec)
    group = first.value().group
    assert first.changed and group is not None and group.name == spec.name
    yield group.id
    with creds.get_client() as zvm:
        removal = zvm.unprotect(group.id, force=True)
        assert removal is not None
        zvm.wait_task(removal, timeout_s=60)
        assert zvm.find_group(spec.name) is None


def _vms(lab: LabState, site_key: str) -> dict[str, str]:
    """VM name → power state at one of the lab's vCenters."""
    site = lab.vcenter[site_key]
    si = SmartConnect(host=site.host, port=site.port, user=site.username, pwd=site.password, protocol="http")
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        states = {vm.name: str(vm.runtime.powerState) for vm in view.view}
        view.Destroy()
        return states
    finally:
        Disconnect(si)


def recovery_vm_names(lab: LabState) -> set[str]:
    return set(_vms(lab, "recovery"))


def power_states(lab: LabState, site_key: str, names: list[str]) -> set[str]:
    states = _vms(lab, site_key)
    return {states[n] for n in names}


def test_protect_is_idempotent(creds: ZertoCredentials, spec: ProtectionSpec, vpg: str) -> None:
    again = create_vpg.fn(creds, spec)
    assert not again.changed and again.diff == [] and again.value().group.id == vpg  # type: ignore[union-attr]
    with creds.get_client() as zvm:
        assert [g.id for g in zvm.list_groups() if g.name == spec.name] == [vpg]
        assert sorted(vm.name for vm in zvm.protected_vms(vpg)) == sorted(VMS)
    dry = create_vpg.fn(creds, spec.model_copy(update={"rpo_seconds": 60}), dry_run=True)
    assert dry.changed and dry.diff == ["~ rpo 120 s -> 60 s"]


def test_happy_path_sync_checkpoints_test_and_stop(creds: ZertoCredentials, vpg: str, lab: LabState) -> None:
    with creds.get_client() as zvm:
        group = zvm.wait_for_state(vpg, [GroupState.MEETING_SLA], timeout_s=60)
        assert group.replicating and group.vm_count == 2 and 0 <= group.actual_rpo_s < group.configured_rpo_s
        points = zvm.recovery_points(vpg)
        assert points and points == sorted(points, key=lambda p: p.timestamp)
        tagged = zvm.tag_recovery_point(vpg, "before-drill")
        assert tagged.tag == "before-drill" and tagged.id in {p.id for p in zvm.recovery_points(vpg)}

    listed = list_recovery_points.fn(creds, vpg)
    assert listed.value().latest == tagged

    started = start_failover_test.fn(creds, vpg, checkpoint_id=tagged.id)
    assert started.changed and started.value().task_id
    done = wait_for_replication_task.fn(creds, started.value().task_id, timeout_s=60)
    assert done.value().state == 6 and done.value().kind == OperationKind.TEST
    assert {f"{vm} - testing recovery" for vm in VMS} <= recovery_vm_names(lab)
    assert not start_failover_test.fn(creds, vpg).changed  # a second start finds the test running

    stopped = stop_failover_test.fn(creds, vpg, success=True, summary="integration test")
    assert stopped.changed
    wait_for_replication_task.fn(creds, stopped.value().task_id, deadline=Deadline.within(60))
    assert not ({f"{vm} - testing recovery" for vm in VMS} & recovery_vm_names(lab))
    assert not stop_failover_test.fn(creds, vpg).changed
    with creds.get_client() as zvm:
        assert zvm.status(vpg).last_test is not None


def test_failover_then_rollback_restores_production(creds: ZertoCredentials, vpg: str, lab: LabState) -> None:
    options = FailoverOptions(shutdown_source="force")
    started = start_failover.fn(creds, vpg, options)
    assert started.changed
    wait_for_replication_task.fn(creds, started.value().task_id, timeout_s=60)
    assert set(VMS) <= recovery_vm_names(lab)
    assert power_states(lab, "protected", VMS) == {"poweredOff"}
    assert not start_failover.fn(creds, vpg, options).changed  # already failed over, awaiting commit

    rolled = rollback_failover.fn(creds, vpg)
    assert rolled.changed
    wait_for_replication_task.fn(creds, rolled.value().task_id, timeout_s=60)
    assert not set(VMS) & recovery_vm_names(lab)
    assert power_states(lab, "protected", VMS) == {"poweredOn"}
    assert not rollback_failover.fn(creds, vpg).changed
    with creds.get_client() as zvm:
        assert zvm.wait_for_state(vpg, [GroupState.MEETING_SLA], timeout_s=30).replicating


def test_keycloak_style_and_reauth_after_expiry(lab: LabState, creds: ZertoCredentials, vpg: str,
                                                control: httpx.Client) -> None:
    with creds.model_copy(update={"auth_style": "keycloak"}).get_client() as zvm:
        assert zvm.status(vpg).id == vpg
        control.post("/expire-sessions")
        assert zvm.status(vpg).id == vpg  # logs in again once, transparently
    with creds.get_client() as zvm:
        assert zvm.status(vpg).id == vpg
        control.post("/expire-sessions")
        assert zvm.local_site().name == lab.replication.protected_site_name  # type: ignore[union-attr]


def test_fault_503_is_a_transient_error(creds: ZertoCredentials, vpg: str, control: httpx.Client) -> None:
    control.post("/faults", json={"mode": "http503", "count": 1, "path_regex": "^/v1/vpgs/[^/]+$"})
    with creds.get_client() as zvm, pytest.raises(ReplicationTransientError) as err:
        zvm.status(vpg)
    assert is_transient(err.value) and "503" in str(err.value)
    with creds.get_client() as zvm:
        assert zvm.status(vpg).id == vpg  # the fault was used up; the next call works
    assert creds.password.get_secret_value() not in str(err.value)


def test_dropped_connection_is_transient(creds: ZertoCredentials, vpg: str, control: httpx.Client) -> None:
    control.post("/faults", json={"mode": "drop", "count": 1, "path_regex": "^/v1/vpgs/[^/]+$"})
    with creds.get_client() as zvm, pytest.raises(ReplicationTransientError, match="connection"):
        zvm.status(vpg)


def test_failed_task_raises_task_failed(creds: ZertoCredentials, vpg: str, control: httpx.Client,
                                        lab: LabState) -> None:
    control.post("/faults", json={"mode": "task_failed", "count": 1, "path_regex": "failovertest$"})
    started = start_failover_test.fn(creds, vpg)
    with pytest.raises(ReplicationFailoverTestFailed) as err:
        wait_for_replication_task.fn(creds, started.value().task_id, timeout_s=60)
    assert not is_transient(err.value)
    with creds.get_client() as zvm:
        assert not zvm.status(vpg).test_running
    assert not any(n.endswith(" - testing recovery") and n.startswith("initech") for n in recovery_vm_names(lab))


def test_polling_through_503s_and_a_drop_within_the_deadline(creds: ZertoCredentials, vpg: str,
                                                              control: httpx.Client) -> None:
    started = start_failover_test.fn(creds, vpg)
    task_id = started.value().task_id
    assert task_id
    control.post("/faults", json={"mode": "http503", "count": 2, "path_regex": "^/v1/tasks/"})
    control.post("/faults", json={"mode": "drop", "count": 1, "path_regex": "^/v1/tasks/"})
    done = wait_for_replication_task.fn(creds, task_id, deadline=Deadline.within(60))
    assert done.value().state == 6
    assert control.get("/faults").json() == []  # every fault was met and retried through
    stopped = stop_failover_test.fn(creds, vpg)
    wait_for_replication_task.fn(creds, stopped.value().task_id, timeout_s=60)

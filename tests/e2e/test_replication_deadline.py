"""A replication wait bounded by a deadline fails fast and is never retried, inside a real Prefect flow run.

The lab's ZVM is told (fault mode ``task_stuck``) to leave the next settings commit's task
InProgress for good; the flow waits for it with a 2-second deadline.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import TaskRunSort

from blocks.replication import ZertoCredentials
from draas.clients.replication import OperationKind, ProtectionSpec, ReplicationDeadlineExceeded
from draas.deadline import Deadline, DeadlineExceeded
from draas.site import Site
from lab.state import LabState
from tasks.replication import wait_for_replication_task


@flow(name="replication-deadline-probe")
def wait_with_deadline(credentials: ZertoCredentials, task_id: str, seconds: float) -> Any:
    """Wait for one replication operation within ``seconds``."""
    return wait_for_replication_task(credentials, task_id, deadline=Deadline.within(seconds, label="probe"))


@pytest.fixture
def site(lab: LabState) -> Site:
    return Site.for_config_dir(None)


@pytest.fixture
def stuck_task(lab: LabState, site: Site) -> Iterator[str]:
    """The id of a ZVM task that never ends (a VPG creation), removed with its VPG afterwards."""
    assert lab.replication is not None
    folder, vm = f"deadline-{uuid.uuid4().hex[:6]}", f"deadline-vm-{uuid.uuid4().hex[:6]}"
    with site.vcenter_block("protected").get_client() as vc:
        vc.create_folder(folder)
        vc.create_vm(vm, folder=folder, network="VM Network", cpus=1, memory_mb=512, disk_gb=1)
    control = httpx.Client(base_url=f"{lab.replication.url}/lab", timeout=10)
    control.post("/faults", json={"mode": "task_stuck", "count": 1, "path_regex": "/commit$"}).raise_for_status()
    spec = ProtectionSpec(name=f"deadline-{uuid.uuid4().hex[:6]}", vms=[vm], failover_network="VM Network")
    with site.replication_block().get_client() as provider:
        with pytest.raises(ReplicationDeadlineExceeded):
            provider.protect(spec, deadline=Deadline.within(1))
        stuck = provider.running_operation(spec.name, OperationKind.PROTECT)
        assert stuck is not None
        try:
            yield stuck.id
        finally:
            removal = provider.unprotect(spec.name, force=True)
            assert removal is not None
            provider.wait_task(removal, deadline=Deadline.within(60))
            control.delete("/faults")
            control.close()
            with site.vcenter_block("protected").get_client() as vc:
                vc.destroy_vm(f"{folder}/{vm}")
                vc.destroy("folder", folder)


def test_deadline_fails_the_flow_fast_and_is_not_retried(prefect_harness: None, site: Site, stuck_task: str) -> None:
    t0 = time.monotonic()
    state = wait_with_deadline(site.replication_block(), stuck_task, 2.0, return_state=True)
    elapsed = time.monotonic() - t0

    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, DeadlineExceeded) and isinstance(error, ReplicationDeadlineExceeded), error
    assert "probe" in str(error)
    assert 2.0 <= elapsed < 5.0, elapsed

    runs = task_runs_of(state.state_details.flow_run_id)
    assert [r.name.split("-")[0] for r in runs] == ["wait_for_replication_task"]
    assert runs[0].run_count == 1 and runs[0].state is not None and runs[0].state.is_failed()


def task_runs_of(flow_run_id: Any, timeout: float = 15.0) -> list[Any]:
    """The flow run's task runs once the server has their final state (task runs arrive as events)."""
    give_up = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=50)
        if runs and all(r.state is not None and r.state.is_final() for r in runs) or time.monotonic() > give_up:
            return runs
        time.sleep(0.25)

"""One vCenter session per flow run: tasks in the flow and in worker threads share one login.

A small flow opens the session pool for its run id, runs six vCenter tasks against the lab's
recovery vCenter (one called directly, three ``.submit``-ted and two ``.map``-ped into the
ThreadPoolTaskRunner's threads) and closes the pool. The login counter of VCenterClient says
how many times the run logged in; the folders are read back with plain pyVmomi.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prefect import flow, task, unmapped
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

import tasks.vcenter as vc_tasks
from blocks.vcenter import VCenterCredentials
from draas.clients.vcenter import VCenterClient
from draas.sessions import close_pool, current_pool, open_pool
from draas.site import Site


@pytest.fixture(scope="module")
def block(lab, prefect_harness) -> VCenterCredentials:
    return Site.for_config_dir(None).vcenter_block("recovery")


@pytest.fixture()
def pyvmomi(block: VCenterCredentials) -> Iterator[Any]:
    """The recovery vCenter's content, logged in with pyVmomi alone (not counted by the product)."""
    si = SmartConnect(host=block.host, port=block.port, user=block.username,
                      pwd=block.password.get_secret_value(), protocol=block.protocol)
    try:
        yield si.RetrieveContent()
    finally:
        Disconnect(si)


def _folders(content: Any) -> set[str]:
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Folder], True)
    try:
        return {f.name for f in view.view}
    finally:
        view.Destroy()


@task
def where_am_i() -> tuple[str | None, int, bool]:
    """The flow run id Prefect reports inside a task, the thread, and whether a pool is found."""
    return flow_run.id, threading.get_ident(), current_pool() is not None


@task
def end_the_shared_session(admin: VCenterCredentials) -> str:
    """Terminate the run's vCenter session from another session, as an administrator would."""
    pool = current_pool()
    assert pool is not None
    with pool.lease(admin) as shared:
        assert shared is not None
        key = shared.content.sessionManager.currentSession.key
    si = SmartConnect(host=admin.host, port=admin.port, user=admin.username,
                      pwd=admin.password.get_secret_value(), protocol=admin.protocol)
    try:
        si.RetrieveContent().sessionManager.TerminateSession([key])
    finally:
        Disconnect(si)
    return key


@flow(task_runner=ThreadPoolTaskRunner(max_workers=3))  # type: ignore[arg-type]  # Prefect's generic
def six_vcenter_tasks(block: VCenterCredentials, prefix: str, use_pool: bool = True,
                      expire_midway: bool = False) -> dict[str, Any]:
    run_id = flow_run.id
    if use_pool:
        open_pool(run_id)
    try:
        probes = [where_am_i.submit() for _ in range(3)]
        first = vc_tasks.create_folder(block, prefix)  # in the flow's own thread
        if expire_midway:
            end_the_shared_session(block)
        submitted = [vc_tasks.create_folder.submit(block, f"{prefix}/s{i}") for i in range(3)]
        mapped = vc_tasks.create_folder.map(unmapped(block), [f"{prefix}/m{i}" for i in range(2)])
        results = [first] + [f.result() for f in submitted] + [f.result() for f in mapped]
        return {"run_id": run_id, "flow_thread": threading.get_ident(),
                "probes": [p.result() for p in probes], "changed": [r.changed for r in results]}
    finally:
        if use_pool:
            close_pool(run_id)


def _cleanup(block: VCenterCredentials, prefix: str) -> None:
    with block.get_client() as vc:
        for leaf in ["s0", "s1", "s2", "m0", "m1"]:
            vc.destroy("folder", f"{prefix}/{leaf}")
        vc.destroy("folder", prefix)


def _run(block: VCenterCredentials, **kwargs: Any) -> tuple[int, dict[str, Any], str]:
    prefix = f"t-shared-{uuid.uuid4().hex[:8]}"
    before = VCenterClient.login_count()
    try:
        out = six_vcenter_tasks(block, prefix, **kwargs)
    finally:
        logins = VCenterClient.login_count() - before
        _cleanup(block, prefix)
    return logins, out, prefix


def test_a_run_with_a_pool_logs_in_once_for_six_tasks_in_several_threads(block: VCenterCredentials,
                                                                        pyvmomi: Any) -> None:
    before_sessions = len(pyvmomi.sessionManager.sessionList or [])
    prefix = f"t-shared-{uuid.uuid4().hex[:8]}"
    start = VCenterClient.login_count()
    try:
        out = six_vcenter_tasks(block, prefix)
        logins = VCenterClient.login_count() - start
        made = _folders(pyvmomi)
        after_sessions = len(pyvmomi.sessionManager.sessionList or [])
    finally:
        _cleanup(block, prefix)
    assert logins == 1
    assert out["changed"] == [True] * 6
    assert {prefix, *(f"s{i}" for i in range(3)), "m0", "m1"} <= made  # vCenter has them
    # Tasks in worker threads see their flow run's id, hence the pool.
    assert all(probe_run == out["run_id"] and found for probe_run, _, found in out["probes"])
    assert any(thread != out["flow_thread"] for _, thread, _ in out["probes"])
    assert before_sessions >= 1  # vcsim lists sessions (ours at least)
    assert after_sessions == before_sessions  # the pool logged out when the run ended


def test_without_sharing_every_task_logs_in(block: VCenterCredentials, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAAS_SHARED_SESSIONS", "0")
    logins, out, _ = _run(block)
    assert out["changed"] == [True] * 6
    assert logins == 6
    assert not any(found for _, _, found in out["probes"])


def test_without_a_pool_every_task_logs_in(block: VCenterCredentials) -> None:
    logins, out, _ = _run(block, use_pool=False)
    assert out["changed"] == [True] * 6 and logins == 6


def test_a_shared_session_ended_by_vcenter_is_renewed_once_for_all_threads(block: VCenterCredentials) -> None:
    logins, out, _ = _run(block, expire_midway=True)
    assert out["changed"] == [True] * 6  # every task after the termination still worked
    assert logins == 2  # the first login and one renewal, although several threads hit the dead session

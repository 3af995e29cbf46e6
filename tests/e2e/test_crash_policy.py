"""Crash policies, per-tenant exclusivity and refusals, with real processes killed by SIGKILL.

Each crashing run is a real flow run in its own Python process (tests/e2e/crash_flows.py)
talking to this session's Prefect server, the lab and a state store of the test. The test
kills the process with SIGKILL once it has created its objects, then reports the flow run
Crashed the way the process worker that started it would. Assertions read the systems
themselves: the Cisco emulator's running config and the recovery vCenter over SOAP.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect import flow, get_client
from prefect.states import Crashed
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from draas.state.store import StateStore

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CRASH_FLOWS = PROJECT_ROOT / "tests" / "e2e" / "crash_flows.py"
LEASE_TTL_S = 3


@pytest.fixture
def env(lab, prefect_harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    from prefect.settings import PREFECT_API_URL

    db = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("DRAAS_DATABASE_URL", db)
    child_env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "DRAAS_DATABASE_URL": db,
                 "DRAAS_LEASE_TTL_S": str(LEASE_TTL_S), "PREFECT_LOGGING_LEVEL": "WARNING"}
    procs: list[subprocess.Popen[bytes]] = []
    yield {"tmp": tmp_path, "store": StateStore(), "child_env": child_env, "procs": procs}
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start(env: dict[str, Any], name: str, **params: Any) -> tuple[subprocess.Popen[bytes], Path]:
    ready = env["tmp"] / f"{name}.ready"
    proc = subprocess.Popen([sys.executable, str(CRASH_FLOWS), json.dumps({"ready_file": str(ready), **params})],
                            cwd=PROJECT_ROOT, env=env["child_env"], stdout=subprocess.DEVNULL,
                            stderr=open(env["tmp"] / f"{name}.log", "wb"))  # noqa: SIM115 - closed with the process
    env["procs"].append(proc)
    return proc, ready


def wait_ready(env: dict[str, Any], proc: subprocess.Popen[bytes], ready: Path, timeout: float = 120) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ready.exists() and ready.read_text():
            return str(json.loads(ready.read_text())["run_id"])
        if proc.poll() is not None:
            log = (env["tmp"] / f"{ready.stem}.log").read_text()[-3000:]
            pytest.fail(f"crash flow exited {proc.returncode} before it was ready:\n{log}")
        time.sleep(0.2)
    pytest.fail("crash flow not ready in time")


def sigkill(proc: subprocess.Popen[bytes], run_id: str, *, report: bool = True) -> None:
    """SIGKILL the flow's process; then report the run Crashed, as the worker that ran it would."""
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    if report:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(UUID(run_id), Crashed(message="process killed"), force=True)


def has_vlan(lab, vlan: int) -> bool:
    running = httpx.get(f"{lab.cisco.control_url}/devices/agg-1/running", timeout=10).raise_for_status().text
    return re.search(rf"^vlan {vlan}$", running, re.MULTILINE) is not None


def has_folder(lab, name: str) -> bool:
    vc = lab.vcenter["recovery"]
    si = SmartConnect(host=vc.host, port=vc.port, user=vc.username, pwd=vc.password, protocol="http")
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Folder], True)
        try:
            return any(f.name == name for f in view.view)
        finally:
            view.Destroy()
    finally:
        Disconnect(si)


def test_killed_undo_run_is_swept_from_the_systems(env: dict[str, Any], lab) -> None:
    from flows.sweep import sweep_orphans

    store: StateStore = env["store"]
    proc, ready = start(env, "undo", tenant="crash-undo", policy="undo", vlan=3981, folder="crash-undo-folder")
    run_id = wait_ready(env, proc, ready)
    assert has_vlan(lab, 3981) and has_folder(lab, "crash-undo-folder")
    sigkill(proc, run_id)
    assert store.get_run(run_id).state == "Running"  # the dead process could not record its end

    result = sweep_orphans(older_than_minutes=0, requested_by="ops@provider.example")

    assert [s.run_id for s in result.swept] == [run_id] and result.swept[0].policy == "undo"
    assert not has_vlan(lab, 3981), "the undo run's VLAN is still on agg-1"
    assert not has_folder(lab, "crash-undo-folder"), "the undo run's folder is still in vCenter"
    run = store.get_run(run_id)
    assert (run.state, run.outcome, run.crash_policy) == ("Crashed", "swept", "undo")
    assert store.run_objects(run_id) == []
    assert store.lease("crash-undo") is None, "the dead run's tenant was not given back"
    assert sweep_orphans(older_than_minutes=0).swept == []  # a second sweep changes nothing


def test_killed_hold_run_keeps_its_objects_for_the_operator(env: dict[str, Any], lab) -> None:
    from flows.offboard import offboard_tenant
    from flows.sweep import NEEDS_OPERATOR, sweep_orphans

    store: StateStore = env["store"]
    proc, ready = start(env, "hold", tenant="crash-hold", policy="hold", vlan=3982, folder="crash-hold-folder")
    run_id = wait_ready(env, proc, ready)
    sigkill(proc, run_id)

    result = sweep_orphans(older_than_minutes=0, requested_by="ops@provider.example")

    assert [(s.run_id, s.policy) for s in result.swept] == [(run_id, "hold")]
    assert has_vlan(lab, 3982) and has_folder(lab, "crash-hold-folder"), "a hold run's objects were removed"
    run = store.get_run(run_id)
    assert (run.state, run.outcome) == (NEEDS_OPERATOR, "held")
    assert "re-run" in (run.error or "")
    assert len(store.run_objects(run_id)) == 2, "the hold run's records must stay for the resume"
    (held,) = [a for a in store.audit_log() if a.outcome == "held_for_operator"]
    assert held.run_id == run_id and held.tenant_id == "crash-hold" and len(held.detail["objects"]) == 2
    assert sweep_orphans(older_than_minutes=0).swept == []  # nothing more happens to it automatically
    assert has_vlan(lab, 3982)

    # The operator's decision: here, give the objects up (offboarding removes through the ledger).
    offboard_tenant("crash-hold", requested_by="ops@provider.example")
    assert not has_vlan(lab, 3982) and not has_folder(lab, "crash-hold-folder")


def test_second_run_waits_for_the_first_and_never_interleaves(env: dict[str, Any]) -> None:
    store: StateStore = env["store"]
    first, first_ready = start(env, "first", tenant="crash-wait", policy="undo", hold_s=6)
    first_id = wait_ready(env, first, first_ready)
    second, second_ready = start(env, "second", tenant="crash-wait", policy="undo", hold_s=0, wait_s=120)
    assert first.wait(timeout=120) == 0
    second_id = wait_ready(env, second, second_ready)
    assert second.wait(timeout=120) == 0

    one, two = store.get_run(first_id), store.get_run(second_id)
    assert one.state == two.state == "Completed"
    assert one.finished is not None and two.started >= one.finished, "the second run started inside the first"
    assert store.lease("crash-wait") is None


@flow(name="exclusive-probe")
def exclusive_probe(tenant: str, wait_s: float) -> str:
    """An in-process state-changing run of a tenant that creates nothing."""
    from flows.runbook import CrashPolicy, RunContext

    run = RunContext("exclusive-probe", action="exclusive_probe", tenant=tenant, requested_by="ops@provider.example",
                     channel="test", policy=CrashPolicy.UNDO, exclusive=True, wait_s=wait_s, parameters={})
    with run.started():
        pass
    return run.run_id


def test_busy_tenant_is_refused_naming_the_holder_and_a_killed_holder_frees_it(env: dict[str, Any]) -> None:
    from flows.runbook import TenantBusy

    store: StateStore = env["store"]
    holder, ready = start(env, "holder", tenant="crash-busy", policy="undo")
    holder_id = wait_ready(env, holder, ready)
    runs_before = len(store.runs())

    with pytest.raises(TenantBusy) as caught:
        exclusive_probe("crash-busy", wait_s=0)
    assert holder_id in str(caught.value) and "crash-policy-test" in str(caught.value)
    refused = [a for a in store.audit_log() if a.outcome == "refused"]
    assert len(refused) == 1 and holder_id in refused[0].detail["reason"]
    assert refused[0].tenant_id == "crash-busy"
    assert len(store.runs()) == runs_before, "a refused run was recorded"

    # The holder dies without a word (not even reported Crashed): its lease runs out.
    sigkill(holder, holder_id, report=False)
    started = time.monotonic()
    run_id = exclusive_probe("crash-busy", wait_s=LEASE_TTL_S * 10)
    assert time.monotonic() - started < LEASE_TTL_S * 10
    assert store.get_run(run_id).state == "Completed"

"""``draas stack up|down|status``: a real Prefect server, workers, gateway; runs from a deployment reach the lab.

One stack for the module (a second Prefect server in the session), on free ports, in a scratch
stack directory, using the session's lab (``$DRAAS_SITE_PROFILE``, so the stack starts none).
The CLI runs as a subprocess, as an operator runs it; the test reads the Prefect REST API itself.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from draas.state.store import StateStore

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2


def draas(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "draas.cli", *args], env=env, cwd=PROJECT_ROOT, text=True,
                          capture_output=True, timeout=timeout, check=False)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Stack:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env, self.dir = root, env, Path(env["DRAAS_STACK_DIR"])

    def state(self) -> dict[str, Any]:
        return json.loads((self.dir / "stack.json").read_text())

    def status(self) -> tuple[int, dict[str, Any]]:
        done = draas(self.env, "stack", "status", "--json")
        return done.returncode, json.loads(done.stdout)


@pytest.fixture(scope="module")
def stack(lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {"DRAAS_STACK_DIR": str(root / "stack"), "DRAAS_DATABASE_URL": f"sqlite:///{root / 'state.db'}"}
    started = draas(env, "stack", "up", "--port", "0", "--gateway-port", "auto", "--workers", str(WORKERS),
                    timeout=400)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield Stack(root, env)
    finally:
        if (root / "stack" / "stack.json").exists():
            draas(env, "stack", "down")


def test_status_json_names_endpoints_that_answer(stack: Stack) -> None:
    code, report = stack.status()
    assert code == 0 and report["state"] == "up", report
    api, ui, gateway = report["prefect_api_url"], report["prefect_ui_url"], report["gateway_url"]
    assert httpx.get(f"{api}/health", timeout=10).json() is True
    page = httpx.get(ui, timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()
    # the UI calls the API where the stack put it, not on Prefect's default port
    assert httpx.get(f"{ui}/ui-settings", timeout=10).json()["api_url"] == api
    assert httpx.get(f"{gateway}/healthz", timeout=10).status_code == 200
    assert report["work_pool"] == "draas" and report["workers"] == WORKERS
    components = report["components"]
    assert {"prefect-server", "gateway", *(f"draas-stack-{i}" for i in range(1, WORKERS + 1))} <= set(components)
    assert all(c["state"] == "up" for name, c in components.items() if name != "lab")
    # the session's lab was named by $DRAAS_SITE_PROFILE: used, not started
    assert components["lab"]["mode"] == "external"
    assert components["lab"]["site_profile"] == str(Path(os.environ["DRAAS_SITE_PROFILE"]).resolve())
    text = draas(stack.env, "stack", "status")
    assert text.returncode == 0 and f"Prefect UI {ui}" in text.stdout


def test_the_work_pool_has_its_workers_online(stack: Stack) -> None:
    api = stack.state()["prefect_api_url"]
    pool = httpx.get(f"{api}/work_pools/draas", timeout=10).json()
    assert pool["type"] == "process" and "working_dir" in pool["base_job_template"]["variables"]["properties"]
    workers = httpx.post(f"{api}/work_pools/draas/workers/filter", json={}, timeout=10).json()
    online = sorted(w["name"] for w in workers if w["status"] == "ONLINE")
    assert online == [f"draas-stack-{i}" for i in range(1, WORKERS + 1)]


def test_a_second_up_is_a_no_op(stack: Stack) -> None:
    before = stack.state()
    again = draas(stack.env, "stack", "up", "--port", "0", "--gateway-port", "0")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "stack is already up" in again.stdout and before["prefect_ui_url"] in again.stdout
    assert stack.state()["processes"] == before["processes"]


def test_env_prints_the_exports(stack: Stack) -> None:
    done = draas(stack.env, "stack", "env")
    assert done.returncode == 0
    assert f"export PREFECT_API_URL={stack.state()['prefect_api_url']}" in done.stdout.splitlines()


def test_deploy_reaches_the_stack_and_a_run_of_a_deployment_completes_against_the_lab(stack: Stack) -> None:
    api = stack.state()["prefect_api_url"]
    # no PREFECT_API_URL in the environment: `draas` finds the running stack through $DRAAS_STACK_DIR
    deployed = draas(stack.env, "deploy", timeout=300)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "create onboard-tenant/initech" in deployed.stdout
    deployment = httpx.get(f"{api}/deployments/name/onboard-tenant/initech", timeout=10).json()
    assert deployment["work_pool_name"] == "draas"

    out = stack.root / "out"
    run = httpx.post(f"{api}/deployments/{deployment['id']}/create_flow_run", timeout=10, json={"parameters": {
        "tenant": "initech", "requested_by": "ops@provider.example", "channel": "ui", "output_dir": str(out)}})
    assert run.status_code == 201, run.text
    run_id = run.json()["id"]
    deadline = time.monotonic() + 240
    state = run.json()["state"]
    while time.monotonic() < deadline and state["type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
        time.sleep(2)
        state = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()["state"]
    assert state["type"] == "COMPLETED", state
    # the worker's run used the caller's state store and the lab's site
    store = StateStore(f"sqlite:///{stack.root / 'state.db'}")
    try:
        (recorded,) = [r for r in store.runs(tenant_id="initech") if r.flow == "onboard-tenant"]
        assert recorded.state == "Completed"
    finally:
        store.dispose()
    assert (out / "initech" / "dr-plan.md").is_file()


def test_the_servers_scheduler_turns_the_schedules_into_scheduled_runs(stack: Stack) -> None:
    """The drills' dates and the watch's interval become Scheduled runs on the server (not only definitions)."""
    from deployments.schedules import next_drills
    from draas.validation import load_tenant

    api = stack.state()["prefect_api_url"]

    def scheduled(name: str) -> list[dict[str, Any]]:
        deployment = httpx.get(f"{api}/deployments/name/{name}", timeout=10).json()
        return httpx.post(f"{api}/flow_runs/filter", timeout=10, json={
            "deployments": {"id": {"any_": [deployment["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}, "sort": "EXPECTED_START_TIME_ASC"}).json()

    deadline = time.monotonic() + 120
    while not ((drills := scheduled("drill/initech")) and scheduled("watch-protection/initech")):
        assert time.monotonic() < deadline, "the scheduler made no runs (see the stack's prefect-server.log)"
        time.sleep(3)
    expected = [slot.utc for slot in next_drills(load_tenant("initech"))]
    starts = [datetime.fromisoformat(r["expected_start_time"]) for r in drills]
    assert starts[: len(expected)] == expected
    assert all(r["parameters"]["tenant"] == "initech" for r in drills)


def test_bad_options_are_refused_naming_the_option_and_never_the_secret(stack: Stack) -> None:
    other = stack.env | {"DRAAS_STACK_DIR": str(stack.root / "other")}
    busy = int(stack.state()["gateway_url"].rsplit(":", 1)[1])
    taken = draas(other, "stack", "up", "--port", str(busy), "--no-lab")
    assert taken.returncode == 1 and f"--port: port {busy}" in taken.stderr
    secret = "s3cr3t-pw"
    bad = draas(other, "stack", "up", "--port", "0", "--gateway-port", "0", "--no-lab",
                "--database-url", f"mysql://draas:{secret}@db.example/prefect")
    assert bad.returncode == 1 and "--database-url: scheme 'mysql'" in bad.stderr
    assert secret not in bad.stdout + bad.stderr
    assert not (stack.root / "other" / "stack.json").exists()


def test_down_leaves_no_process_and_no_port(stack: Stack) -> None:
    state = stack.state()
    pids = [p["pid"] for p in state["processes"]]
    ports = [p["port"] for p in state["processes"] if p["port"]]
    assert pids and all(alive(pid) for pid in pids) and len(ports) == 2
    done = draas(stack.env, "stack", "down")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stack is down" in done.stdout
    assert [pid for pid in pids if alive(pid)] == []
    assert [port for port in ports if listening(port)] == []
    code, report = stack.status()
    assert code == 1 and report["state"] == "down" and report["prefect_api_url"] is None
    again = draas(stack.env, "stack", "down")
    assert again.returncode == 0 and "not up" in again.stdout

"""Webhook gateway figures: accept latency over 1,000 signed requests, and accept -> Running.

Run: ``make bench`` (or ``.venv/bin/python -m benchmarks.gateway_bench [--requests 1000 --keys 200
--samples 8 --database postgres|sqlite]``). Needs no lab: the sampled runs are refused at the drill's admission, which only
reads the tenant's config.

What it starts, all on loopback and on free ports, with a temporary ``PREFECT_HOME`` and state store:

* a Prefect server (``prefect server start``, a subprocess) on its database: by default a throw-away
  PostgreSQL (Debian's packages, as the tests' ``postgres`` fixture starts it: durability off), the database
  Prefect advises for a production server; ``--database sqlite`` for the server's default SQLite file, where
  concurrent writers (run creation, the server's own services) make the server answer 503
  "database is locked" now and then and its client retry after about 2 s, then 4, 8, 16 s;
* the deployment ``drill/acme`` (``deployments.deploy``: ``plan_deployments`` then ``deploy``), on a
  process work pool, without its schedules, and acme's gateway key;
* the gateway as it runs in production (``draas gateway``, a subprocess under uvicorn) with the
  per-tenant rate limit raised (``DRAAS_GATEWAY_RATE_PER_MIN``) so that it does not refuse the
  benchmark's own traffic.

Accept latency: ``--requests`` signed ``POST /v1/tenants/acme/drills`` over real HTTP, sent one at a
time (sequential, one keep-alive connection), with ``--keys`` distinct ``Idempotency-Key`` values:
request *i* carries key *i* mod ``--keys``, so the first ``--keys`` requests create runs and the
rest are retries that must get the same run back. Every request is signed afresh (its own
timestamp, and an ``attempt`` number in the body so that two retries in the same second still
carry different signatures, as a service desk's delivery id would). Latency is from sending the
request to reading the whole ``202`` answer. Every answer must be a 202 and every key must map to
one run, else the benchmark fails. No worker polls the pool during this phase; its runs are
deleted afterwards, before any worker starts, so none of them is ever executed.

Accept -> Running: then a process worker starts (``prefect worker start --type process``, polling
every second, ``PREFECT_WORKER_QUERY_SECONDS=1``) and ``--samples`` more requests are sent one at
a time, each asking for a drill of a group acme does not have: the worker picks the run up, the
flow starts (Running) and refuses it at admission (Failed), lab-free. Measured from the moment the
202 was read to the timestamp of the run's first Running state (the server's state history); the
next sample is sent once the run has ended (the deployment allows one run at a time).

Figures (printed and written to bench/results.json): p50/p95/p99/max of the accept latency, p95
of first requests and of retries apart, and the median and max of accept -> Pending (worker
pick-up) and accept -> Running. Targets: p95 < 100 ms; accept -> Running < 5 s (max of the samples).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.results import record

COMMAND = ".venv/bin/python -m benchmarks.gateway_bench"
ROOT = Path(__file__).resolve().parent.parent
TENANT = "acme"
POOL = "draas-gateway-bench"
#: The gateway's per-tenant limit during the benchmark (requests a minute): far above what it sends.
BENCH_RATE_PER_MIN = 1_000_000
TARGETS = {"p95": "< 100 ms", "running": "< 5 s"}
#: A protection group acme does not have: the drill refuses it at admission, before any system is reached.
NO_SUCH_GROUP = "bench-no-such-group"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@contextmanager
def started(name: str, argv: list[str], env: dict[str, str], log: Path, ready: Any, timeout_s: float) -> Iterator[
        subprocess.Popen[bytes]]:
    """Run ``argv`` in its own process group until the block ends; ``ready()`` true within ``timeout_s``."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield proc
    except BaseException:
        print(f"--- {name} log (last lines) ---\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own group: the worker's flow-run children go with it
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def signed_post(http: Any, key: str, idem: str, body: dict[str, Any]) -> tuple[Any, float]:
    """POST ``body`` signed with ``key`` now; the answer and its latency (s)."""
    from deployments.gateway import sign

    raw = json.dumps(body).encode()
    stamp = int(time.time())
    headers = {"Content-Type": "application/json", "X-DRaaS-Timestamp": str(stamp),
               "X-DRaaS-Signature": sign(key, stamp, raw), "Idempotency-Key": idem}
    t0 = time.perf_counter()
    response = http.post(f"/v1/tenants/{TENANT}/drills", content=raw, headers=headers)
    return response, time.perf_counter() - t0


def latency_phase(http: Any, key: str, requester: str, requests: int, keys: int) -> dict[str, list[float]]:
    """``requests`` signed requests over ``keys`` idempotency keys; per-request latency, first and retry apart."""
    run_of: dict[str, str] = {}
    out: dict[str, list[float]] = {"all": [], "first": [], "retry": []}
    for i in range(requests):
        idem = f"bench-{i % keys:04d}"
        body = {"requested_by": requester, "ticket": f"BENCH{i % keys:04d}", "attempt": i // keys + 1,
                "parameters": {"groups": [NO_SUCH_GROUP]}}
        response, took = signed_post(http, key, idem, body)
        if response.status_code != 202:
            raise RuntimeError(f"request {i} ({idem}): {response.status_code} {response.text}")
        run_id = response.json()["run_id"]
        if run_of.setdefault(idem, run_id) != run_id:
            raise RuntimeError(f"request {i}: a retry of {idem} got run {run_id}, not {run_of[idem]}")
        out["all"].append(took)
        out["retry" if i >= keys else "first"].append(took)
    if len(set(run_of.values())) != min(keys, requests):
        raise RuntimeError(f"{len(set(run_of.values()))} runs for {min(keys, requests)} keys")
    return out


def delete_runs(deployment_id: Any) -> int:
    """Delete every run of the deployment (none has been picked up: no worker was polling)."""
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    deleted = 0
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])), limit=200,
                sort=FlowRunSort.ID_DESC)
            if not page:
                return deleted
            for run in page:
                if run.state_type is not None and run.state_type.value not in ("SCHEDULED", "PENDING"):
                    raise RuntimeError(f"run {run.id} is {run.state_name}: a worker picked it up")
                client.delete_flow_run(run.id)
                deleted += 1


def worker_online() -> bool:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        workers = client.read_workers_for_work_pool(POOL, limit=10, offset=0)
    return any(getattr(w.status, "value", w.status) == "ONLINE" for w in workers)


def sample_phase(http: Any, key: str, requester: str, samples: int) -> dict[str, list[float]]:
    """``samples`` requests one at a time; accept -> Pending and accept -> Running of each (s)."""
    from uuid import UUID

    from prefect import get_client

    out: dict[str, list[float]] = {"pending": [], "running": []}
    with get_client(sync_client=True) as client:
        for i in range(samples):
            body = {"requested_by": requester, "ticket": f"BENCHRUN{i}", "parameters": {"groups": [NO_SUCH_GROUP]}}
            response, _ = signed_post(http, key, f"bench-sample-{i}", body)
            accepted = time.time()
            if response.status_code != 202:
                raise RuntimeError(f"sample {i}: {response.status_code} {response.text}")
            run_id = UUID(response.json()["run_id"])
            deadline = time.monotonic() + 120
            while True:
                run = client.read_flow_run(run_id)
                if run.state is not None and run.state.is_final():
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sample {i}: run {run_id} still {run.state_name} after 120 s")
                time.sleep(0.1)
            states = sorted(client.read_flow_run_states(run_id), key=lambda s: s.timestamp)
            first = {}
            for s in states:
                first.setdefault(s.type.value, s.timestamp.timestamp())
            if "RUNNING" not in first:
                raise RuntimeError(f"sample {i}: run {run_id} never ran: {[s.name for s in states]}")
            out["pending"].append(first.get("PENDING", first["RUNNING"]) - accepted)
            out["running"].append(first["RUNNING"] - accepted)
            print(f"  sample {i + 1}/{samples}: Running after {out['running'][-1]:.2f} s, ended {run.state_name} "
                  f"({(run.state.message or '')[:90]})", flush=True)
    return out


def record_latency(lat: dict[str, list[float]], label: str, db: str, command: str) -> None:
    ms = {k: [v * 1000 for v in vs] for k, vs in lat.items()}
    for p in (50, 95, 99):
        record(f"gateway accept latency p{p}, {label}", round(percentile(ms["all"], p), 2), "ms",
               target=TARGETS["p95"] if p == 95 else None, command=command)
    record(f"gateway accept latency max, {label}", round(max(ms["all"]), 2), "ms", command=command)
    for kind, what in (("first", "first request of a key (creates the run)"), ("retry", "retry (same run)")):
        if ms[kind]:
            record(f"gateway accept latency p95, {what}, {db}", round(percentile(ms[kind], 95), 2), "ms",
                   command=command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="signed requests timed (default 1000)")
    parser.add_argument("--keys", type=int, default=200, help="distinct Idempotency-Key values (default 200)")
    parser.add_argument("--samples", type=int, default=8, help="runs timed from accept to Running (default 8)")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres",
                        help="the Prefect server's database (default postgres)")
    args = parser.parse_args()
    if args.requests < 1 or not 1 <= args.keys <= args.requests or args.samples < 1:
        parser.error("--requests >= --keys >= 1 and --samples >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        api_port, gateway_port = free_port(), free_port()
        api = f"http://127.0.0.1:{api_port}/api"
        # Before anything imports prefect: its settings are read once.
        os.environ.update({"PREFECT_HOME": str(root / "prefect"), "PREFECT_API_URL": api,
                           "DRAAS_DATABASE_URL": f"sqlite:///{root / 'state.db'}",
                           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
                           "PREFECT_SERVER_UI_ENABLED": "false"})
        for name in ("DRAAS_SITE_PROFILE", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING", "PREFECT_PROFILE"):
            os.environ.pop(name, None)
        with prefect_database(args.database) as url:
            if url:
                os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = url
            run(args, root, api, api_port, gateway_port)


@contextmanager
def prefect_database(kind: str) -> Iterator[str | None]:
    """The Prefect server's database URL for ``kind`` (None: its default SQLite file in ``PREFECT_HOME``)."""
    if kind == "sqlite":
        yield None
        return
    import importlib.util

    spec = importlib.util.spec_from_file_location("draas_test_postgres", ROOT / "tests" / "postgres.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = module.PostgresServer().start()
    try:
        yield server.create_database("prefect_bench").replace("postgresql+psycopg2://", "postgresql+asyncpg://")
    finally:
        server.stop()


def run(args: argparse.Namespace, root: Path, api: str, api_port: int, gateway_port: int) -> None:
    """Server, deployment, key and gateway up; then the two phases; figures recorded as they are known."""
    env = dict(os.environ)
    bin_dir = Path(sys.executable).parent
    db = "PostgreSQL" if args.database == "postgres" else "SQLite"
    command = COMMAND + ("" if args.database == "postgres" else " --database sqlite")
    with started("prefect server", [str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                                    str(api_port), "--no-ui"], env, root / "server.log",
                 lambda: answers(f"{api}/health"), 180):
        from prefect import get_client

        from deployments.deploy import _person_with, deploy, plan_deployments
        from deployments.gateway import KeyStore
        from draas.validation import load_tenant

        tenant = load_tenant(TENANT)
        requester = _person_with(tenant, "request_drill")
        if requester is None:
            raise RuntimeError(f"tenants/{TENANT}.yaml: authorised_persons: nobody has the role request_drill")
        specs = plan_deployments([tenant], {"drill": "flows.drill:drill"}, frozenset())
        for spec in specs:
            spec.schedules = []  # the benchmark's runs only: no drill dates
        deploy(specs, POOL)
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(f"drill/{TENANT}")
        key = KeyStore().rotate(TENANT).current
        gw_env = {**env, "DRAAS_GATEWAY_RATE_PER_MIN": str(BENCH_RATE_PER_MIN)}
        base = f"http://127.0.0.1:{gateway_port}"
        with started("gateway", [str(bin_dir / "draas"), "gateway", "--port", str(gateway_port)], gw_env,
                     root / "gateway.log", lambda: answers(f"{base}/healthz"), 60):
            import httpx

            with httpx.Client(base_url=base, timeout=120) as http:
                signed_post(http, key, "bench-warm-up", {"requested_by": requester, "parameters": {
                    "groups": [NO_SUCH_GROUP]}})  # first request: imports, first block read
                print(f"sending {args.requests} signed requests over {args.keys} keys, sequential, Prefect on {db} ...",
                      flush=True)
                t0 = time.perf_counter()
                lat = latency_phase(http, key, requester, args.requests, args.keys)
                wall = time.perf_counter() - t0
                deleted = delete_runs(deployment.id)
                print(f"  {args.requests} requests in {wall:.1f} s; {deleted} runs deleted unexecuted", flush=True)
                record_latency(lat, f"{args.requests} signed requests, {args.keys} keys, sequential, Prefect on {db}",
                               f"Prefect on {db}", command)
                worker_env = {**env, "PREFECT_WORKER_QUERY_SECONDS": "1"}
                with started("worker", [str(bin_dir / "prefect"), "worker", "start", "--pool", POOL, "--type",
                                        "process"], worker_env, root / "worker.log", worker_online, 120):
                    print(f"timing {args.samples} runs from accept to Running (process worker, 1 s poll) ...",
                          flush=True)
                    runs = sample_phase(http, key, requester, args.samples)
    n = args.samples
    label = f"{n} runs (process worker, 1 s poll), Prefect on {db}"
    record(f"gateway accept -> Pending (worker pick-up), median of {label}",
           round(statistics.median(runs["pending"]), 3), "s", command=command)
    record(f"gateway accept -> Running, median of {label}", round(statistics.median(runs["running"]), 3), "s",
           command=command)
    record(f"gateway accept -> Running, max of {label}", round(max(runs["running"]), 3), "s",
           target=TARGETS["running"], command=command)


if __name__ == "__main__":
    main()

"""The demo's service paths: the stack, drills through their deployments, a failover through the gateway.

``make demo`` uses the product the way its users do: ``draas stack up`` serves a Prefect server,
a process worker and the webhook gateway next to the lab; ``draas deploy`` makes the per-tenant
deployments; every tenant's drill is a flow run of ``drill/<tenant>`` (what the UI's Run button
creates), executed by the worker; the Gold tenant's failover is asked for by a service-desk
incident through a signed request to the gateway, and the incident gets the outcome back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def _stack(*args: str, stack_dir: Path, capture: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "draas.cli", "stack", *args, "--stack-dir", str(stack_dir)],
                          capture_output=capture, text=True, check=False)


def stack_up(stack_dir: Path, console: Console) -> dict[str, Any]:
    """``draas stack up`` next to the running lab; this process then talks to that Prefect server.

    Must run before Prefect is imported here (its settings are read at import).
    """
    started = time.monotonic()
    up = _stack("up", "--port", "0", "--gateway-port", "0", stack_dir=stack_dir)
    if up.returncode != 0:
        raise SystemExit(f"draas stack up failed (exit {up.returncode}); logs in {stack_dir}")
    status = _stack("status", "--json", stack_dir=stack_dir, capture=True)
    endpoints = json.loads(status.stdout)
    os.environ["PREFECT_API_URL"] = endpoints["prefect_api_url"]
    os.environ.pop("PREFECT_HOME", None)
    console.print(f"stack up in {time.monotonic() - started:.1f} s: Prefect UI {endpoints['prefect_ui_url']}, "
                  f"gateway {endpoints['gateway_url']}, work pool {endpoints['work_pool']}")
    return endpoints


def stack_down(stack_dir: Path, console: Console) -> None:
    down = _stack("down", stack_dir=stack_dir)
    console.print("stack down" if down.returncode == 0 else f"draas stack down: exit {down.returncode}")


def deploy_all(tenants: list[str], work_pool: str, console: Console) -> None:
    """``draas deploy`` for the demo's tenants: every flow, ``<flow>/<tenant>``, with its schedules."""
    from deployments.deploy import deploy, plan_deployments
    from draas.validation import load_tenant
    from flows import FLOWS, TENANTLESS

    specs = plan_deployments([load_tenant(t) for t in tenants], FLOWS, TENANTLESS)
    changes = deploy(specs, work_pool)
    console.print(f"draas deploy: {len(changes['create'])} deployments created, {len(changes['update'])} updated "
                  f"on work pool {work_pool}")


def _wait(run_id: Any, timeout_s: float = 1800.0) -> str:
    from prefect import get_client

    end = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(run_id).state
            if state is not None and state.type.value in TERMINAL:
                return state.name
            if time.monotonic() > end:
                raise SystemExit(f"flow run {run_id} did not end within {timeout_s:g} s")
            time.sleep(2)


def drills_through_deployments(tenants: list[str], output_dir: Path, console: Console) -> Table:
    """A flow run of every tenant's ``drill/<tenant>`` deployment with its defaults (as the UI's Run
    button makes it), executed by the stack's worker; the verdict and report read back from the state store."""
    from prefect import get_client

    from draas.state.store import StateStore

    table = Table("tenant", "flow run", "state", "verdict", "RTO (s)", "RPO (s)", "report (HTML)",
                  title="DR drills: flow runs of drill/<tenant> run by the worker, in isolated bubbles")
    store = StateStore()
    for tenant in tenants:
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(f"drill/{tenant}")
            flow_run = client.create_flow_run_from_deployment(
                deployment.id, parameters={"output_dir": str(output_dir)}, tags=["demo"])
        state = _wait(flow_run.id)
        ended = store.run_outcome(str(flow_run.id))
        facts = ended[1] if ended else {}
        report = facts.get("report") or {}
        table.add_row(tenant, str(flow_run.id)[:8], state, str(facts.get("verdict", "-")), _f(facts.get("rto_s")),
                      _f(facts.get("rpo_s")), report.get("html", "-"))
        for fmt, path in sorted(report.items()):
            console.print(f"{tenant}: DR Test Report ({fmt}) {path}")
        if state != "Completed":
            raise SystemExit(f"drill/{tenant} ended {state}: {facts.get('error', 'see the run in the Prefect UI')}")
    return table


def _f(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "-"


def _signed(key: str, body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    mac = hmac.new(key.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-DRaaS-Timestamp": stamp, "X-DRaaS-Signature": f"v1={mac}", "Content-Type": "application/json"}


def failover_through_gateway(tenant: str, gateway_url: str, console: Console) -> None:
    """The service desk asks for a committed planned failover of ``tenant``: an incident, a signed request
    to the gateway naming it, the run executed by the worker, and the incident's work note and state after."""
    from deployments.gateway import KeyStore
    from draas.clients.servicedesk import IncidentCreate
    from draas.site import Site
    from draas.state.store import StateStore
    from draas.validation import load_tenant

    config = load_tenant(tenant)
    who = next(p.email for p in config.authorised_persons if "invoke_dr" in {getattr(r, "value", r) for r in p.roles})
    desk_block = Site.load().servicedesk_block()
    with desk_block.get_client() as desk:
        incident = desk.create_incident(IncidentCreate(
            short_description=f"Invoke DR for {tenant}: planned failover", caller_id=who, urgency=1, impact=2))
    key = KeyStore().ensure(tenant).current
    body = json.dumps({"requested_by": who, "ticket": incident.number,
                       "parameters": {"mode": "planned", "commit": True}}).encode()
    with httpx.Client(base_url=gateway_url, timeout=30) as gateway:
        answer = gateway.post(f"/v1/tenants/{tenant}/failovers", content=body,
                              headers={**_signed(key, body), "Idempotency-Key": f"{incident.number}-failover"})
        if answer.status_code != 202:
            raise SystemExit(f"gateway refused the failover of {tenant}: {answer.status_code} {answer.text}")
        run_id = answer.json()["run_id"]
        console.print(f"{incident.number}: gateway accepted the failover of {tenant}: run {run_id}")
        retry = gateway.post(f"/v1/tenants/{tenant}/failovers", content=body,
                             headers={**_signed(key, body), "Idempotency-Key": f"{incident.number}-failover"})
        console.print(f"{incident.number}: the same request retried -> run {retry.json().get('run_id')} "
                      f"({'the same run' if retry.json().get('run_id') == run_id else 'A SECOND RUN'})")
    state = _wait(run_id)
    ended = StateStore().run_outcome(run_id)
    facts = ended[1] if ended else {}
    with desk_block.get_client() as desk:
        after = desk.get_incident(incident.sys_id)
        notes = [n.value for n in desk.work_notes("incident", incident.sys_id) if run_id in n.value]
    table = Table("run", "state", "RTO (s)", "RPO (s)", "incident", "incident state", title=(
        f"Planned failover of {tenant} through the webhook gateway (committed)"))
    table.add_row(run_id[:8], state, _f(facts.get("rto_s")), _f(facts.get("rpo_s")), incident.number,
                  "resolved" if after.is_resolved else str(after.state))
    console.print(table)
    for note in notes:
        console.print(f"{incident.number} work note:\n{note}")
    if state != "Completed":
        raise SystemExit(f"failover/{tenant} ended {state}: {facts.get('error', 'see the run in the Prefect UI')}")


__all__ = ["deploy_all", "drills_through_deployments", "failover_through_gateway", "stack_down", "stack_up"]

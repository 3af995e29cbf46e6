"""The failback flow against the lab with the Gold sample tenant (acme).

After a committed planned failover, everything asserted is read from the systems: both
vCenters' VMs and events (pyVmomi through the product's client, read-only), the lab's guest
records, BIND (dnspython), the devices' running configs (SSH), the replication manager's REST
API, and Prefect's own record of the flow run's state while it waits for its window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from draas.cutover import CutoverPlan, plan_cutover
from draas.site import Site
from draas.state.store import StateStore
from draas.validation import load_catalog, load_tenant
from e2e.tenants import destroy_recovered, protected_tenant
from lab.state import LabState

try:  # the snapshots may live in their own module or beside the cutover tests
    from e2e.snapshots import device_snapshot, zone_snapshot  # type: ignore[attr-defined]
except ImportError:
    from e2e.snapshots import device_snapshot
    from e2e.test_cutover import zone_snapshot

TENANT = "acme"
ALICE = "alice.archer@acme.example.com"  # invoke_dr, failback
BOB = "bob.baker@acme.example.com"  # request_drill only
MACHINES = ["acme-dc01", "acme-sql01", "acme-app01", "acme-web01", "acme-web02"]
GROUPS = ["acme-windows", "acme-linux"]


@pytest.fixture(scope="module")
def site(lab: LabState) -> Site:
    return Site.for_config_dir(None)


@pytest.fixture(scope="module")
def cutover_plan(site: Site) -> CutoverPlan:
    return plan_cutover(load_tenant(TENANT), load_catalog(), site.devices)


@pytest.fixture(scope="module")
def protected(flows_env: Path, site: Site) -> Iterator[None]:
    """acme onboarded, its container built and its groups protected; everything removed afterwards."""
    with protected_tenant(TENANT, flows_env / "out",
                          before_offboard=lambda: destroy_recovered(site, TENANT, MACHINES)):
        yield


def site_vms(site: Site, which: str) -> dict[str, Any]:
    with site.vcenter_block(which).get_client() as vc:  # type: ignore[arg-type]
        return {vm.name: vm for vm in vc.list_vms(TENANT) if vm.name in MACHINES}


def power_on_events(site: Site, which: str, since: float = 0.0) -> dict[str, list[float]]:
    """The vCenter's own record of when each acme VM was powered on (since ``since``)."""
    with site.vcenter_block(which).get_client() as vc:  # type: ignore[arg-type]
        events = vc.query_events(event_types=["VmPoweredOnEvent"], since=datetime.fromtimestamp(since, UTC),
                                 max_count=1000)
    out: dict[str, list[float]] = {}
    for event in events:
        if event.vm in MACHINES:
            out.setdefault(event.vm, []).append(event.created.timestamp())
    return out


def guest_up(lab: LabState, where: str) -> dict[str, float]:
    """When the lab's guests at ``where`` last came up (their services answering)."""
    rows = httpx.get(f"{lab.guests.url}/lab/guests").json()["guests"]  # type: ignore[union-attr]
    out: dict[str, float] = {}
    for r in rows:
        ups = [h["at"] for h in r["history"] if h["event"] == "up"]
        if r["site"] == where and r["vm"] in MACHINES and ups:
            out[r["vm"]] = max(out.get(r["vm"], 0.0), *ups)
    return out


def groups_now(zvm: httpx.Client) -> dict[str, dict[str, Any]]:
    return {v["VpgName"]: v for v in zvm.get("/v1/vpgs").json() if v["VpgName"] in GROUPS}


def failback_audits(store: StateStore) -> list[Any]:
    return [e for e in store.audit_log() if e.action == "failback"]


def test_failback_without_a_committed_failover_or_the_role_is_refused(protected: None, site: Site,
                                                                     zvm: httpx.Client) -> None:
    from flows.failback import FailbackRefused, failback
    from flows.runbook import NotAuthorised

    store = StateStore()
    before_groups = {g: (v["Status"], v["ProtectedSite"]["identifier"]) for g, v in groups_now(zvm).items()}
    before_vms = sorted(site_vms(site, "protected"))
    for who, error, reason in ((ALICE, FailbackRefused, "no committed failover"),
                               (BOB, NotAuthorised, "lacks the role 'failback'"),
                               ("mallory@evil.example.com", NotAuthorised, "not an authorised person")):
        before = len(failback_audits(store))
        with pytest.raises(error, match=reason):
            failback(TENANT, requested_by=who)
        entries = failback_audits(store)
        assert len(entries) == before + 1 and entries[-1].outcome == "refused" and entries[-1].actor == who
        assert reason in entries[-1].detail["reason"]
    assert [r for r in store.runs(TENANT) if r.flow == "failback"] == []
    assert {g: (v["Status"], v["ProtectedSite"]["identifier"]) for g, v in groups_now(zvm).items()} == before_groups
    assert sorted(site_vms(site, "protected")) == before_vms and site_vms(site, "recovery") == {}


def _flow_state(run_id: str) -> str | None:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(run_id)).state
    return state.type.value if state else None


def test_committed_failover_then_failback_in_a_window(protected: None, site: Site, lab: LabState,
                                                      cutover_plan: CutoverPlan, zvm: httpx.Client,
                                                      flows_env: Path) -> None:
    from flows.failback import MaintenanceWindow, failback
    from flows.failover import failover

    store = StateStore()
    zone_before, devices_before = zone_snapshot(site, cutover_plan), device_snapshot(site)
    settings_before = {g: (v["ConfiguredRpoSeconds"], v["VmsCount"], v["Priority"]) for g, v in groups_now(zvm).items()}
    sites = zvm.get("/v1/localsite").json()["SiteIdentifier"]

    done = failover(TENANT, requested_by=ALICE, mode="planned", commit=True)
    assert done.committed and sorted(site_vms(site, "recovery")) == sorted(MACHINES)
    assert all(v["Status"] == 8 for v in groups_now(zvm).values())  # Recovered: committed, not reversed

    # The switch-back may only start in a window that opens a little later: the run waits, paused.
    window = MaintenanceWindow.starting_in(30, length_s=3600)
    outcome: dict[str, Any] = {}
    known = {r.id for r in store.runs(TENANT)}

    def run() -> None:
        try:
            outcome["result"] = failback(TENANT, requested_by=ALICE, window=window,
                                         output_dir=str(flows_env / "out"), resync_timeout_s=120)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="failback", daemon=True)
    worker.start()
    end = time.monotonic() + 120
    run_id = None
    while time.monotonic() < end and "error" not in outcome:
        runs = [r for r in store.runs(TENANT) if r.id not in known and r.flow == "failback"]
        if runs and _flow_state(runs[0].id) == "PAUSED":
            run_id = runs[0].id
            break
        time.sleep(0.5)
    assert "error" not in outcome, outcome.get("error")
    assert run_id is not None, "the failback never paused for its window"
    paused_at = time.time()
    assert datetime.now(UTC) < window.start
    # While it waits: reverse protection runs (recovery -> production), nothing is presented or
    # started at the production site, the tenant still runs at the recovery site.
    groups = groups_now(zvm)
    assert all(v["ProtectedSite"]["identifier"] != sites for v in groups.values()), groups
    assert site_vms(site, "protected") == {}
    recovery = site_vms(site, "recovery")
    assert sorted(recovery) == sorted(MACHINES) and all(v.power_state == "poweredOn" for v in recovery.values())
    time.sleep(3)
    assert _flow_state(run_id) == "PAUSED" and site_vms(site, "protected") == {}

    worker.join(timeout=600)
    assert not worker.is_alive(), "the failback did not finish"
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]

    # It went on when the window opened, not before.
    on = power_on_events(site, "protected", since=paused_at)
    assert set(on) == set(MACHINES), on
    assert min(min(v) for v in on.values()) >= window.start.timestamp() - 1
    assert all(len(v) == 1 for v in on.values()), f"a VM was powered on twice: {on}"
    # Every VM back at the production site, in dependency order, with its production address.
    tenant = load_tenant(TENANT)
    prod = site_vms(site, "protected")
    assert sorted(prod) == sorted(MACHINES) and all(v.power_state == "poweredOn" for v in prod.values())
    assert all(v.heartbeat == "green" for v in prod.values())
    for name, vm in prod.items():
        assert vm.ip_address == str(tenant.machine(name).nics[0].ip)
    up = guest_up(lab, "protected")
    first_on = {name: min(times) for name, times in on.items()}
    for name in MACHINES:
        for dep in tenant.machine(name).depends_on:
            assert first_on[name] >= up[dep], f"{name} was powered on before {dep} was up"
    assert {v["status"] for v in result.vms} == {"verified"}
    # DNS and the firewall contexts exactly as before the failover.
    assert zone_snapshot(site, cutover_plan) == zone_before
    assert device_snapshot(site) == devices_before
    assert result.cutover_removed > 0
    # Protection production -> recovery again, with the configured settings, read from the manager.
    groups = groups_now(zvm)
    assert all(v["ProtectedSite"]["identifier"] == sites for v in groups.values()), groups
    assert all(v["Status"] in (0, 1) for v in groups.values())
    assert {g: (v["ConfiguredRpoSeconds"], v["VmsCount"], v["Priority"]) for g, v in groups.items()} == \
        settings_before
    for spec_group in tenant.protection_groups:
        assert groups[spec_group.name]["ConfiguredRpoSeconds"] == int(spec_group.sla.rpo.total_seconds())
    protected_vms = {v["VmName"]: v["VpgName"] for v in zvm.get("/v1/vms").json() if v["VpgName"] in GROUPS}
    assert protected_vms == {m: g.name for g in tenant.protection_groups for m in g.machines}
    # Nothing of the tenant's machines is left at the recovery site.
    assert site_vms(site, "recovery") == {} and result.recovery_site_vms == []
    # Zero data loss, stage timings, the report in three formats.
    assert result.data_loss_s == 0.0
    assert [s.stage for s in result.stages] == ["reverse", "resync", "window", "switch-back", "resume"]
    assert next(s for s in result.stages if s.stage == "window").seconds >= 3
    reports = {r.format: r for r in store.reports(TENANT, kind="failback") if r.run_id == result.run_id}
    assert set(reports) == {"markdown", "html", "json"}
    assert "# Failback report: acme" in reports["markdown"].content
    assert list((flows_env / "out" / TENANT / "reports").glob("failback-acme-*.html"))

    # A second failback finds nothing to fail back and changes nothing.
    from flows.failback import FailbackRefused

    with pytest.raises(FailbackRefused, match="no committed failover"):
        failback(TENANT, requested_by=ALICE)


def _safely(ready: Any) -> bool:
    """``ready()``, False when a read races with the systems (a VM deleted while being listed)."""
    try:
        return bool(ready())
    except Exception:  # noqa: BLE001 - look again on the next poll
        return False


def _kill_failback_when(flows_env: Path, ready: Any, what: str) -> str:
    """Run a failback (window open now) in a child process and SIGKILL it once ``ready()``; returns its run id."""
    import os
    import signal
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    store = StateStore()
    known = {r.id for r in store.runs(TENANT)}
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_LOGGING_LEVEL": "WARNING"}
    code = f"from flows.failback import failback; failback({TENANT!r}, requested_by={ALICE!r}, resync_timeout_s=120)"
    log_path = flows_env / f"killed-failback-{what}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], env=env,
                                stdout=subprocess.DEVNULL, stderr=log)
    try:
        end = time.monotonic() + 300
        while not _safely(ready):
            assert proc.poll() is None, f"finished before {what}: " + log_path.read_text()[-2000:]
            assert time.monotonic() < end, f"never reached: {what}"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (killed,) = [r for r in store.runs(TENANT) if r.id not in known and r.flow == "failback"]
    return killed.id


@pytest.mark.parametrize("stage", ["reverse", "resync", "switch-back", "resume"])
def test_a_failback_killed_in_each_stage_resumes_without_duplicates(stage: str, protected: None, site: Site,
                                                                    cutover_plan: CutoverPlan, zvm: httpx.Client,
                                                                    flows_env: Path) -> None:
    from prefect import get_client
    from prefect.states import Crashed

    from flows.failback import failback
    from flows.failover import failover
    from flows.sweep import sweep_orphans

    zone_before, devices_before = zone_snapshot(site, cutover_plan), device_snapshot(site)
    local = zvm.get("/v1/localsite").json()["SiteIdentifier"]
    failover(TENANT, requested_by=ALICE, mode="planned", commit=True)

    def reversed_groups() -> dict[str, dict[str, Any]]:
        return {g: v for g, v in groups_now(zvm).items() if v["ProtectedSite"]["identifier"] != local}

    def reversing() -> bool:  # one group reversed, the other not yet
        return len(reversed_groups()) == 1

    def resyncing() -> bool:  # every group reversed, one still syncing back
        now = reversed_groups()
        return len(now) == 2 and any(v["Status"] == 0 for v in now.values())

    def switching_back() -> bool:  # a VM up at production, another not yet
        vms = site_vms(site, "protected")
        return any(v.power_state == "poweredOn" for v in vms.values()) and \
            sum(v.power_state == "poweredOn" for v in vms.values()) < len(MACHINES)

    def resuming() -> bool:  # a group protects production -> recovery again
        groups = groups_now(zvm)
        return len(groups) == 2 and len(reversed_groups()) < 2 and not any(
            v["Status"] == 8 for v in groups.values()) and bool(site_vms(site, "protected")) and \
            any(v["ProtectedSite"]["identifier"] == local and v["Status"] == 0 for v in groups.values())

    ready = {"reverse": reversing, "resync": resyncing, "switch-back": switching_back, "resume": resuming}[stage]
    started = time.time()
    killed = _kill_failback_when(flows_env, ready, stage)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(killed), Crashed(message="process killed"), force=True)
    swept = sweep_orphans(older_than_minutes=0, requested_by="ops@provider.example")
    assert killed in [s.run_id for s in swept.swept]
    store = StateStore()
    assert (store.get_run(killed).outcome, store.lease(TENANT)) == ("held", None)

    result = failback(TENANT, requested_by=ALICE, resync_timeout_s=120)

    # One VM per machine at production, each powered on once; nothing left at the recovery site.
    prod = site_vms(site, "protected")
    assert sorted(prod) == sorted(MACHINES) and all(v.power_state == "poweredOn" for v in prod.values())
    with site.vcenter_block("protected").get_client() as vc:
        names = [vm.name for vm in vc.list_vms(TENANT)]
    assert sorted(n for n in names if n in MACHINES) == sorted(MACHINES)
    on = power_on_events(site, "protected", since=started)
    assert all(len(v) == 1 for v in on.values()), f"a VM was powered on twice: {on}"
    assert site_vms(site, "recovery") == {} and result.data_loss_s == 0.0
    # Two groups, protecting production -> recovery; DNS and devices as before the failover.
    groups = groups_now(zvm)
    assert sorted(groups) == sorted(GROUPS) and len(zvm.get("/v1/vpgs").json()) == len(
        {v["VpgIdentifier"] for v in zvm.get("/v1/vpgs").json()})
    assert all(v["ProtectedSite"]["identifier"] == local and v["Status"] in (0, 1) for v in groups.values())
    assert zone_snapshot(site, cutover_plan) == zone_before
    assert device_snapshot(site) == devices_before

"""The failover flow against the lab with the Gold sample tenant (acme).

Everything asserted is read from the systems: the recovery vCenter's events and VMs
(pyVmomi through the product's client, read-only), the lab's guest records, BIND (dnspython),
the devices' running configs (SSH), the replication manager's REST API.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyVmomi import vim

from draas.cutover import CutoverPlan, plan_cutover
from draas.site import Site
from draas.state.store import StateStore
from draas.validation import load_catalog, load_tenant
from e2e.snapshots import device_snapshot, served
from e2e.tenants import destroy_recovered, protected_tenant
from e2e.test_cutover import zone_snapshot
from lab.state import LabState

TENANT = "acme"
ALICE = "alice.archer@acme.example.com"  # invoke_dr
BOB = "bob.baker@acme.example.com"  # request_drill only
MACHINES = ["acme-dc01", "acme-sql01", "acme-app01", "acme-web01", "acme-web02"]


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


def recovery_vms(site: Site) -> dict[str, Any]:
    with site.vcenter_block("recovery").get_client() as vc:
        return {vm.name: vm for vm in vc.list_vms(TENANT) if vm.name in MACHINES}


def power_on_events(site: Site) -> dict[str, float]:
    """The recovery vCenter's own record of when each acme VM was last powered on."""
    with site.vcenter_block("recovery").get_client() as vc:
        spec = vim.event.EventFilterSpec(eventTypeId=["VmPoweredOnEvent"], maxCount=1000)  # vcsim pages 10 by default
        out: dict[str, float] = {}
        for event in vc.content.eventManager.QueryEvents(spec):
            if event.vm and event.vm.name in MACHINES:
                out[event.vm.name] = max(out.get(event.vm.name, 0.0), event.createdTime.timestamp())
        return out


def guest_up(lab: LabState) -> dict[str, float]:
    """When the lab's recovery-site guests last came up (their services answering)."""
    rows = httpx.get(f"{lab.guests.url}/lab/guests").json()["guests"]  # type: ignore[union-attr]
    return {r["vm"]: max(h["at"] for h in r["history"] if h["event"] == "up")
            for r in rows if r["site"] == "recovery" and r["vm"] in MACHINES and r["history"]}


def assert_dependency_order(site: Site, lab: LabState) -> None:
    tenant = load_tenant(TENANT)
    on, up = power_on_events(site), guest_up(lab)
    assert set(on) == set(MACHINES), on
    for name in MACHINES:
        for dep in tenant.machine(name).depends_on:
            assert on[name] >= up[dep], f"{name} was powered on before {dep} was up"


def test_requests_without_the_role_are_refused_and_change_nothing(protected: None, site: Site) -> None:
    from flows.failover import failover
    from flows.runbook import NotAuthorised

    store = StateStore()
    for who in (BOB, "mallory@evil.example.com", "ops@globex.example.com"):
        before = len([e for e in store.audit_log() if e.action == "invoke_dr"])
        with pytest.raises(NotAuthorised):
            failover(TENANT, requested_by=who)
        entries = [e for e in store.audit_log() if e.action == "invoke_dr"]
        assert len(entries) == before + 1 and entries[-1].outcome == "refused" and entries[-1].actor == who
    assert recovery_vms(site) == {}
    assert [r for r in store.runs(TENANT) if r.flow == "failover"] == []


def test_planned_failover_then_rollback_restores_everything(protected: None, site: Site, lab: LabState,
                                                             cutover_plan: CutoverPlan, zvm: httpx.Client) -> None:
    from flows.failover import failover, rollback_failover

    zone_before, devices_before = zone_snapshot(site, cutover_plan), device_snapshot(site)

    result = failover(TENANT, requested_by=ALICE, mode="planned", commit=False)

    # Every VM up at the recovery site, in dependency order, from the systems' own records.
    vms = recovery_vms(site)
    assert sorted(vms) == sorted(MACHINES) and all(v.power_state == "poweredOn" for v in vms.values())
    assert all(v.heartbeat == "green" for v in vms.values())
    assert_dependency_order(site, lab)
    tenant = load_tenant(TENANT)
    for name, vm in vms.items():
        assert vm.ip_address == str(tenant.recovery_ip(tenant.machine(name).nics[0]))
        assert vm.networks == [tenant.vlan(tenant.machine(name).nics[0].vlan).recovery_port_group]
    # DNS answers with the recovery addresses; the firewall and VPN contexts carry the cutover.
    for change in cutover_plan.dns:
        rcode, _, values = served(site, change.record.fqdn, change.record.rtype)
        assert rcode == "NOERROR" and values == sorted(change.record.values)
    after = device_snapshot(site)
    for change in cutover_plan.device_changes():
        running = after[(change.device, change.context, "running")]
        assert all(line.strip() in {r.strip() for r in running} for line in change.lines if not line.startswith(" ")), \
            change.device
    # Achieved RTO and RPO are recorded against the targets; a planned failover loses nothing.
    assert result.rpo_s == 0.0 and 0 < result.rto_s <= result.rto_target_s
    assert {g.group for g in result.groups} == {"acme-windows", "acme-linux"} and not result.committed
    assert {g["status"] for g in result.vms} == {"verified"}

    rolled = rollback_failover(TENANT, requested_by=ALICE)

    assert rolled.cutover_removed > 0
    assert recovery_vms(site) == {}
    assert zone_snapshot(site, cutover_plan) == zone_before
    assert device_snapshot(site) == devices_before
    groups = {v["VpgName"]: v for v in zvm.get("/v1/vpgs").json()}
    assert all(groups[g]["Status"] in (0, 1) for g in ("acme-windows", "acme-linux"))  # replicating again


def test_a_failing_check_fails_the_failover_and_rolls_it_back(protected: None, site: Site, lab: LabState,
                                                              cutover_plan: CutoverPlan) -> None:
    from draas.recovery.engine import EngineLimits, RecoveryFailed
    from flows.failover import failover

    zone_before, devices_before = zone_snapshot(site, cutover_plan), device_snapshot(site)
    httpx.post(f"{lab.guests.url}/lab/faults", json={"vm": "acme-sql01"}).raise_for_status()  # type: ignore[union-attr]
    try:
        with pytest.raises(RecoveryFailed, match=r"acme-sql01 failed its checks: tcp/1433"):
            failover(TENANT, requested_by=ALICE, mode="unplanned", groups=["acme-windows"],
                     limits=EngineLimits(check_timeout_s=3, check_retries=1, check_poll_s=0.2))
    finally:
        httpx.delete(f"{lab.guests.url}/lab/faults")  # type: ignore[union-attr]
    assert recovery_vms(site) == {}
    assert zone_snapshot(site, cutover_plan) == zone_before and device_snapshot(site) == devices_before
    (run,) = [r for r in StateStore().runs(TENANT) if r.flow == "failover" and r.state == "Failed"]
    assert run.outcome == "failure" and "acme-sql01" in (run.error or "")


def _kill_failover_when(flows_env: Path, ready: Any, what: str) -> str:
    """Run a planned failover (no commit) in a child process and SIGKILL it once ``ready()``; returns its run id."""
    import subprocess
    import sys
    import time

    from prefect.settings import PREFECT_API_URL

    store = StateStore()
    known = {r.id for r in store.runs(TENANT)}
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_LOGGING_LEVEL": "WARNING"}
    code = (f"from flows.failover import failover; failover({TENANT!r}, requested_by={ALICE!r}, mode='planned', "
            f"commit=False)")
    log_path = flows_env / f"killed-{what}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], env=env,
                                stdout=subprocess.DEVNULL, stderr=log)
    try:
        end = time.monotonic() + 240
        while not ready():
            assert proc.poll() is None, f"finished before {what}: " + log_path.read_text()[-2000:]
            assert time.monotonic() < end, f"never reached: {what}"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (run,) = [r for r in store.runs(TENANT) if r.id not in known and r.flow == "failover"]
    return run.id


@pytest.mark.parametrize("point", ["presentation", "between waves", "after DNS cutover"])
def test_a_killed_failover_resumes_without_duplicates(point: str, protected: None, site: Site, lab: LabState,
                                                       cutover_plan: CutoverPlan, flows_env: Path,
                                                       zvm: httpx.Client) -> None:
    from uuid import UUID

    from prefect import get_client
    from prefect.states import Crashed

    from flows.failover import failover, rollback_failover
    from flows.sweep import sweep_orphans

    dns_name = cutover_plan.dns[0].record
    before_dns = served(site, dns_name.fqdn, dns_name.rtype)

    def presenting() -> bool:
        return any(v["Status"] not in (0, 1) for v in zvm.get("/v1/vpgs").json() if v["VpgName"].startswith("acme"))

    def between_waves() -> bool:
        vms = recovery_vms(site)
        return vms.get("acme-dc01") is not None and vms["acme-dc01"].power_state == "poweredOn" and \
            vms.get("acme-web01") is not None and vms["acme-web01"].power_state != "poweredOn"

    def dns_cut_over() -> bool:
        return served(site, dns_name.fqdn, dns_name.rtype) != before_dns

    ready = {"presentation": presenting, "between waves": between_waves, "after DNS cutover": dns_cut_over}[point]
    started = __import__("time").time()
    killed = _kill_failover_when(flows_env, ready, point)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(killed), Crashed(message="process killed"), force=True)
    swept = sweep_orphans(older_than_minutes=0, requested_by="ops@provider.example")
    assert killed in [s.run_id for s in swept.swept]
    store = StateStore()
    assert (store.get_run(killed).outcome, store.lease(TENANT)) == ("held", None)

    result = failover(TENANT, requested_by=ALICE, mode="planned", commit=False)

    assert {g["status"] for g in result.vms} == {"verified"}
    vms = recovery_vms(site)
    assert sorted(vms) == sorted(MACHINES) and all(v.power_state == "poweredOn" for v in vms.values())
    with site.vcenter_block("recovery").get_client() as vc:  # one VM per machine, never presented twice
        names = [vm.name for vm in vc.list_vms(TENANT)]
        spec = vim.event.EventFilterSpec(eventTypeId=["VmPoweredOnEvent"], maxCount=1000)  # vcsim pages 10 by default
        powered = [e.vm.name for e in vc.content.eventManager.QueryEvents(spec)
                   if e.vm and e.vm.name in MACHINES and e.createdTime.timestamp() >= started - 1]
    assert sorted(n for n in names if n in MACHINES) == sorted(MACHINES)
    assert sorted(powered) == sorted(MACHINES), "a VM was powered on twice"
    for change in cutover_plan.dns:
        assert served(site, change.record.fqdn, change.record.rtype)[2] == sorted(change.record.values)
    after = device_snapshot(site)
    for change in cutover_plan.device_changes():
        running = [r.strip() for r in after[(change.device, change.context, "running")]]
        for line in change.lines:
            if not line.startswith(" "):
                assert running.count(line.strip()) == 1, (change.device, line)
    assert len({r.name for r in store.objects(TENANT) if (r.identity or {}).get("purpose") == "cutover"}) == \
        len([r for r in store.objects(TENANT) if (r.identity or {}).get("purpose") == "cutover"])

    rollback_failover(TENANT, requested_by=ALICE)
    assert recovery_vms(site) == {}


def test_a_refused_approval_changes_nothing_and_records_the_wait(protected: None, site: Site,
                                                                 zvm: httpx.Client) -> None:
    """The approver's answer arrives through Prefect's own resume API while the flow waits, paused."""
    import threading
    import time
    from uuid import UUID

    from prefect import get_client
    from prefect.flow_runs import resume_flow_run

    from flows.failover import FailoverRefused, failover

    store = StateStore()
    known = {r.id for r in store.runs(TENANT)}
    answered: dict[str, Any] = {}

    def approver() -> None:
        end = time.monotonic() + 120
        while time.monotonic() < end:
            runs = [r for r in store.runs(TENANT) if r.id not in known and r.flow == "failover"]
            if runs:
                with get_client(sync_client=True) as client:
                    state = client.read_flow_run(UUID(runs[0].id)).state
                if state is not None and state.is_paused():
                    time.sleep(0.5)
                    resume_flow_run(UUID(runs[0].id), run_input={"approved": False, "approver": "cto@acme.example.com",
                                                                 "comment": "not during quarter close"})
                    answered["run"] = runs[0].id
                    return
            time.sleep(0.2)

    thread = threading.Thread(target=approver, daemon=True)
    thread.start()
    with pytest.raises(FailoverRefused, match="not approved by cto@acme.example.com: not during quarter close"):
        failover(TENANT, requested_by=ALICE, mode="unplanned", approval=True, approval_timeout_s=120)
    thread.join(timeout=10)
    assert "run" in answered
    (approval,) = [s for s in store.steps(answered["run"]) if s.step == "approval"]
    assert approval.detail["approved"] is False and approval.detail["waited_s"] > 0.4
    assert not [s for s in store.steps(answered["run"]) if s.step == "start_failover"]
    assert recovery_vms(site) == {}
    assert all(v["Status"] in (0, 1) for v in zvm.get("/v1/vpgs").json() if v["VpgName"].startswith("acme"))


# Last: it commits acme-windows's failover, which no later test of this module could undo.
def test_unplanned_failover_completes_with_the_protected_vcenter_stopped(protected: None, site: Site,
                                                                        lab: LabState, zvm: httpx.Client) -> None:
    from flows.failover import failover

    groups = {v["VpgName"]: v["VpgIdentifier"] for v in zvm.get("/v1/vpgs").json()}
    protected_vcsim = lab.vcenter["protected"].pid
    os.kill(protected_vcsim, signal.SIGSTOP)  # the protected site is lost: it answers nothing
    try:
        result = failover(TENANT, requested_by=ALICE, mode="unplanned", groups=["acme-windows"],
                          recovery_point="latest-app-consistent")
    finally:
        os.kill(protected_vcsim, signal.SIGCONT)
    used = {g.group: g for g in result.groups}["acme-windows"]
    # The manager's journal: the point used is application-consistent (VSS, or the tag setup-protection
    # inserted) and no later checkpoint before the failover is.
    journal = zvm.get(f"/v1/vpgs/{groups['acme-windows']}/checkpoints").json()
    consistent = [p["CheckpointIdentifier"] for p in journal if p.get("Tag") in ("VSS", "app-consistent")]
    assert consistent and used.checkpoint_id == consistent[-1], (used.checkpoint_id, journal[-5:])
    assert result.committed and result.rpo_s > 0
    vms = recovery_vms(site)
    assert sorted(vms) == ["acme-dc01", "acme-sql01"] and all(v.heartbeat == "green" for v in vms.values())
    # The manager created the recovered VMs from the chosen checkpoint (it says so on each VM).
    with site.vcenter_block("recovery").get_client() as vc:
        notes = {vm.name: vc._prop(vc._vm(f"{TENANT}/{vm.name}"), vim.VirtualMachine, "config.annotation")
                 for vm in vms.values()}
    assert all(f"checkpoint {used.checkpoint_id} " in note for note in notes.values()), notes
    status = zvm.get(f"/v1/vpgs/{groups['acme-windows']}").json()
    assert status["Status"] not in (0, 1)  # failed over and committed: no longer replicating

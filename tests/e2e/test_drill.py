"""The drill flow against the lab with the Silver sample tenant (globex).

Everything asserted is read from the systems: the recovery vCenter's VMs, switches and port
groups (pyVmomi, read-only) before, during and after the drill; the running and startup config of
every device and ASA context (SSH); the replication manager's REST API; the state store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyVmomi import vim

from draas.reports.drill_model import DrillReportData
from draas.site import Site
from draas.state.store import StateStore
from draas.validation import load_tenant
from e2e.snapshots import device_snapshot, vcenter_snapshot
from e2e.tenants import protected_tenant
from lab.state import LabState

TENANT = "globex"
CAROL = "carol.chen@globex.example.com"  # request_drill
HANK = "hank.scorpio@globex.example.com"  # invoke_dr, failback: no request_drill
MACHINES = ["globex-db01", "globex-app01", "globex-web01"]
SUFFIX = " - testing recovery"
BUBBLE = {"globex-web-bubble", "globex-app-bubble", "globex-db-bubble"}
PRODUCTION_PGS = {"globex-web", "globex-app", "globex-db"}


@pytest.fixture(scope="module")
def site(lab: LabState) -> Site:
    return Site.for_config_dir(None)


@pytest.fixture(scope="module")
def protected(flows_env: Path, site: Site) -> Iterator[Path]:
    """globex onboarded, its container built and its groups protected; everything removed afterwards."""
    with protected_tenant(TENANT, flows_env / "out") as out:
        yield out


class NicWatcher:
    """Polls the recovery vCenter while a drill runs: every test VM seen, its power state and networks."""

    def __init__(self, site: Site, zvm: httpx.Client | None = None) -> None:
        self.site, self.zvm = site, zvm
        self.seen: list[tuple[str, str, list[str]]] = []
        self.substatus: dict[str, set[str]] = {}  # VPG -> every sub-status seen during the drill
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> NicWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with self.site.vcenter_block("recovery").get_client() as vc:
            while not self._stop.is_set():
                try:
                    for vm in vc.list_vms(TENANT):
                        if vm.name.endswith(SUFFIX):
                            self.seen.append((vm.name, vm.power_state, [n.network or "" for n in vm.nics]))
                    if self.zvm is not None:
                        names = self.zvm.get("/v1/vpgs/substatuses").json()
                        for v in self.zvm.get("/v1/vpgs").json():
                            self.substatus.setdefault(v["VpgName"], set()).add(names[v["SubStatus"]])
                except Exception:  # noqa: BLE001, S112 - a VM removed under the read; look again
                    continue
                self._stop.wait(0.1)

    def powered_on(self) -> list[tuple[str, str, list[str]]]:
        return [s for s in self.seen if s[1] == "poweredOn"]


def latest_report(store: StateStore) -> DrillReportData:
    rows = [r for r in store.reports(TENANT, kind="drill") if r.format == "json"]
    assert rows, "no drill report stored"
    return DrillReportData.model_validate_json(rows[-1].content)


def power_ons_since(site: Site, since: datetime) -> list[str]:
    """Test VMs the recovery vCenter's own events say were powered on since ``since``."""
    with site.vcenter_block("recovery").get_client() as vc:
        spec = vim.event.EventFilterSpec(eventTypeId=["VmPoweredOnEvent"], maxCount=1000)  # vcsim pages 10
        return [e.vm.name for e in vc.content.eventManager.QueryEvents(spec)
                if e.vm and e.vm.name.endswith(SUFFIX) and e.createdTime.timestamp() >= since.timestamp()]


def _wait(task: Any) -> Any:
    while task.info.state not in ("success", "error"):
        time.sleep(0.05)
    assert task.info.state == "success", task.info.error
    return task.info.result


def uplinked_switch(content: Any, datacenter: str, name: str, pnic: str) -> Callable[[], None]:
    """A distributed switch ``name`` on every host, each host's ``pnic`` behind it (its proxy switch's backing)."""
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Datacenter], True)
    dc = next(d for d in view.view if d.name == datacenter)
    view.Destroy()
    view = content.viewManager.CreateContainerView(dc, [vim.HostSystem], True)
    hosts = list(view.view)
    view.Destroy()
    dvs = _wait(dc.networkFolder.CreateDVS_Task(vim.DistributedVirtualSwitch.CreateSpec(
        configSpec=vim.dvs.VmwareDistributedVirtualSwitch.ConfigSpec(name=name))))
    _wait(dvs.ReconfigureDvs_Task(vim.DistributedVirtualSwitch.ConfigSpec(
        configVersion=dvs.config.configVersion, host=[vim.dvs.HostMember.ConfigSpec(
            operation="add", host=h, backing=vim.dvs.HostMember.PnicBacking(
                pnicSpec=[vim.dvs.HostMember.PnicSpec(pnicDevice=pnic)])) for h in hosts])))
    for h in hosts:  # what the host itself reports: the proxy switch of ``name`` with the physical NIC
        h.configManager.networkSystem.UpdateNetworkConfig(vim.host.NetworkConfig(proxySwitch=[
            vim.host.HostProxySwitch.Config(changeOperation="add", uuid=dvs.uuid, spec=vim.host.HostProxySwitch.Specification(
                backing=vim.dvs.HostMember.PnicBacking(pnicSpec=[vim.dvs.HostMember.PnicSpec(pnicDevice=pnic)])))]),
            "modify")

    def restore() -> None:  # the hosts' proxy switch configs as the lab had them: none
        for h in hosts:
            h.configManager.networkSystem.UpdateNetworkConfig(vim.host.NetworkConfig(), "replace")

    return restore


def assert_site_unchanged(site: Site, vc_before: dict[str, Any], devices_before: dict[Any, list[str]]) -> None:
    vc_after = vcenter_snapshot(site)
    assert vc_after == vc_before, {k: (vc_before[k], vc_after[k]) for k in vc_before if vc_before[k] != vc_after[k]}
    devices_after = device_snapshot(site)
    assert devices_after == devices_before, [k for k in devices_before if devices_before[k] != devices_after.get(k)]


def test_requests_without_the_role_are_refused(protected: Path) -> None:
    from flows.drill import drill
    from flows.runbook import NotAuthorised

    store = StateStore()
    with pytest.raises(NotAuthorised):
        drill(TENANT, requested_by=HANK)
    entries = [e for e in store.audit_log() if e.action == "request_drill"]
    assert entries[-1].outcome == "refused" and entries[-1].actor == HANK
    assert [r for r in store.runs(TENANT) if r.flow == "drill"] == []


def test_drill_passes_in_an_isolated_bubble_and_leaves_the_site_as_it_was(
        protected: Path, site: Site, zvm: httpx.Client) -> None:
    from flows.drill import drill

    vc_before, devices_before = vcenter_snapshot(site), device_snapshot(site)
    with NicWatcher(site, zvm) as watcher:
        result = drill(TENANT, requested_by=CAROL, output_dir=str(protected))

    assert result.verdict in ("PASS", "PASS WITH WARNINGS"), (result.cause, result.warnings)
    # During the drill every test VM was up, and only ever on bubble port groups while powered on.
    on = watcher.powered_on()
    assert {name for name, _, _ in on} == {m + SUFFIX for m in MACHINES}
    assert all(set(nets) <= BUBBLE and not set(nets) & PRODUCTION_PGS for _, _, nets in on), on
    assert {vm.vm: vm.networks for vm in result.report.vms} == {
        m + SUFFIX: [load_tenant(TENANT).vlan(load_tenant(TENANT).machine(m).nics[0].vlan).drill_port_group]
        for m in MACHINES}
    # Isolation was proven before the first power-on; nothing is left; the site is as it was.
    report = result.report
    assert report.isolation.proven and report.isolation.nic_backings_ok
    assert {c.name for c in report.isolation.checks} >= {"switch has no uplink", "no bubble VLAN on agg-1",
                                                         "no bubble VLAN on pe-1"}
    first_power_on = min(s.started for v in report.vms for s in v.steps if s.step == "power_on_vm")
    assert all(c.checked_at <= first_power_on for c in report.isolation.checks)
    assert report.teardown.verified_absent and not report.teardown.leftovers
    assert any("dvswitch globex-drill-bubble" in c or "globex-drill-bubble" in c for c in report.teardown.created)
    assert any("test-access" in c or "fw-vpn/globex-vpn" in c for c in report.teardown.created)
    assert_site_unchanged(site, vc_before, devices_before)
    # Replication: the snapshot group was paused and resumed; the continuous one kept running.
    modes = {p.group: p.replication_during_test for p in report.recovery_points}
    assert modes == {"globex-db": "running", "globex-apps": "paused and resumed"}
    assert all(p.consistency == "application" for p in report.recovery_points)
    assert "ReplicationPausedUserInitiated" in watcher.substatus["globex-apps"]
    assert "ReplicationPausedUserInitiated" not in watcher.substatus["globex-db"]
    vpgs = {v["VpgName"]: v for v in zvm.get("/v1/vpgs").json()}
    names = zvm.get("/v1/vpgs/substatuses").json()
    assert not any(names[vpgs[g]["SubStatus"]].startswith("ReplicationPaused") for g in modes)
    for group in modes:
        points = zvm.get(f"/v1/vpgs/{vpgs[group]['VpgIdentifier']}/checkpoints").json()
        assert any((p.get("Tag") or "").startswith("Tested at") for p in points), group
        assert vpgs[group]["LastTest"] is not None
    # Recorded: the run counts as the last successful drill, with a result per VM.
    store = StateStore()
    last = store.last_successful_drill(TENANT)
    assert last is not None and last.id == result.run_id
    recovered = {r.machine: r.passed for r in store.drill_results(result.run_id) if r.check == "recovered"}
    assert recovered == dict.fromkeys(MACHINES, True)
    assert result.report_paths and all(Path(p).is_file() for p in result.report_paths.values())


def test_a_bubble_switch_with_an_uplink_fails_the_drill_before_any_power_on(protected: Path, site: Site) -> None:
    from flows.drill import DrillFailed, drill

    vc_before, devices_before = vcenter_snapshot(site), device_snapshot(site)
    started = datetime.now(UTC) - timedelta(seconds=1)
    with site.vcenter_block("recovery").get_client() as vc:  # the fixture: a switch of the bubble's name, uplinked
        restore = uplinked_switch(vc.content, site.vcenter.recovery.datacenter, f"{TENANT}-drill-bubble", "vmnic1")
        try:
            with pytest.raises(DrillFailed, match="uplink"):
                drill(TENANT, requested_by=CAROL, output_dir=str(protected))
        finally:
            restore()

    report = latest_report(StateStore())
    assert report.verdict == "FAIL" and not report.isolation.proven
    assert "uplink" in (report.cause or "")
    failed = [c for c in report.isolation.checks if not c.passed]
    assert any(c.name == "switch has no uplink" and "vmnic1" in c.detail for c in failed), failed
    assert power_ons_since(site, started) == []
    steps = [s.step for s in StateStore().steps(report.run_id)]
    assert "start_failover_test" not in steps and "power_on_vm" not in steps
    assert report.teardown.verified_absent
    assert_site_unchanged(site, vc_before, devices_before)  # the uplinked switch went with the teardown


def test_a_failing_check_ends_fail_with_zero_leftovers_an_incident_and_a_retest(
        protected: Path, site: Site, lab: LabState) -> None:
    from draas.recovery.engine import EngineLimits
    from flows.drill import DrillFailed, drill

    vc_before, devices_before = vcenter_snapshot(site), device_snapshot(site)
    guests = lab.guests
    assert guests is not None
    httpx.post(f"{guests.url}/lab/faults", json={"vm": f"globex-db01{SUFFIX}"}).raise_for_status()
    try:
        with pytest.raises(DrillFailed, match="globex-db01"):
            drill(TENANT, requested_by=CAROL, output_dir=str(protected),
                  limits=EngineLimits(check_timeout_s=3, check_retries=1, check_poll_s=0.2))
    finally:
        httpx.delete(f"{guests.url}/lab/faults")

    report = latest_report(StateStore())
    assert report.verdict == "FAIL" and "globex-db01" in (report.cause or "")
    db = next(v for v in report.vms if v.machine == "globex-db01")
    assert db.status == "failed" and any(c.status == "failed" for c in db.checks)
    assert report.isolation.proven and report.teardown.verified_absent and not report.teardown.leftovers
    assert_site_unchanged(site, vc_before, devices_before)
    # One incident, a re-test within a month inside the tenant's business hours.
    tenant = load_tenant(TENANT)
    assert report.incident
    assert report.retest_scheduled_for is not None
    local = report.retest_scheduled_for.astimezone(tenant.tz)
    assert report.finished < report.retest_scheduled_for <= report.finished + timedelta(days=31)
    assert tenant.business_hours.contains(local, tenant.drills.duration)
    assert StateStore().last_successful_drill(TENANT) is None or \
        StateStore().last_successful_drill(TENANT).id != report.run_id  # type: ignore[union-attr]


def test_a_failed_test_task_in_the_manager_ends_fail_with_zero_leftovers(protected: Path, site: Site,
                                                                         lab: LabState) -> None:
    from flows.drill import DrillFailed, drill

    vc_before, devices_before = vcenter_snapshot(site), device_snapshot(site)
    assert lab.replication is not None
    control = httpx.Client(base_url=f"{lab.replication.url}/lab", timeout=10)
    control.post("/faults", json={"mode": "task_failed", "count": 1, "path_regex": "/failovertest$"}).raise_for_status()
    try:
        with pytest.raises(DrillFailed, match="(?i)failover ?test"):
            drill(TENANT, requested_by=CAROL, output_dir=str(protected))
    finally:
        control.delete("/faults")
    report = latest_report(StateStore())
    assert report.verdict == "FAIL" and report.isolation.proven and report.teardown.verified_absent
    assert report.incident and report.retest_scheduled_for is not None
    assert_site_unchanged(site, vc_before, devices_before)


def test_a_killed_drill_is_swept_to_zero_leftovers(protected: Path, site: Site, flows_env: Path,
                                                   zvm: httpx.Client) -> None:
    from uuid import UUID

    from prefect import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.states import Crashed

    from flows.sweep import sweep_orphans

    vc_before, devices_before = vcenter_snapshot(site), device_snapshot(site)
    store = StateStore()
    known = {r.id for r in store.runs(TENANT)}
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_LOGGING_LEVEL": "WARNING"}
    code = f"from flows.drill import drill; drill({TENANT!r}, requested_by={CAROL!r}, output_dir={str(protected)!r})"
    log_path = flows_env / "killed-drill.log"

    def test_vms_up() -> bool:
        with site.vcenter_block("recovery").get_client() as vc:
            return any(vm.name.endswith(SUFFIX) and vm.power_state == "poweredOn" for vm in vc.list_vms(TENANT))

    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], env=env,
                                stdout=subprocess.DEVNULL, stderr=log)
    try:
        end = time.monotonic() + 300
        while not test_vms_up():
            assert proc.poll() is None, "finished before a test VM was up: " + log_path.read_text()[-2000:]
            assert time.monotonic() < end, "no test VM came up"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (killed,) = [r.id for r in store.runs(TENANT) if r.id not in known and r.flow == "drill"]
    assert store.run_objects(killed), "the killed drill recorded nothing"
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(killed), Crashed(message="process killed"), force=True)

    swept = sweep_orphans(older_than_minutes=0, requested_by="ops@provider.example")

    assert killed in [r.run_id for r in swept.swept]
    assert store.get_run(killed).outcome == "swept" and store.run_objects(killed) == []  # type: ignore[union-attr]
    assert_site_unchanged(site, vc_before, devices_before)
    vpgs = {v["VpgName"]: v for v in zvm.get("/v1/vpgs").json()}
    names = zvm.get("/v1/vpgs/substatuses").json()
    for group in ("globex-db", "globex-apps"):  # no test left running, replication resumed
        assert vpgs[group]["ActiveProcessesApi"]["RunningFailOverTestApi"] is None
        assert not names[vpgs[group]["SubStatus"]].startswith("ReplicationPaused")


def test_a_passing_retest_resolves_the_failed_drill_incident(protected: Path, site: Site) -> None:
    """The failed drills above share one incident (reopened by each failure); the next passing drill resolves it."""
    from draas.clients.servicedesk import INCIDENT
    from flows.drill import drill, drill_incident_id

    def incidents() -> list[Any]:
        with site.servicedesk_block().get_client() as desk:
            return [desk.get_incident(r.sys_id) for r in desk.query(INCIDENT,
                                                                    {"correlation_id": drill_incident_id(TENANT)})]

    (before,) = incidents()
    assert not before.is_resolved
    result = drill(TENANT, requested_by=CAROL, output_dir=str(protected))
    assert result.verdict in ("PASS", "PASS WITH WARNINGS")
    (after,) = incidents()
    assert after.number == before.number and after.is_resolved


@pytest.fixture(scope="module")
def drill_deployment(protected: Path) -> Iterator[str]:
    """``drill/globex`` deployed on the session's server (a pool no worker polls until a test starts one)."""
    from prefect import get_client

    from deployments.deploy import deploy, existing, plan_deployments
    from flows import FLOWS

    pool = "draas-drill-test"
    deploy(plan_deployments([load_tenant(TENANT)], {"drill": FLOWS["drill"]}, frozenset()), pool)
    try:
        yield pool
    finally:
        with get_client(sync_client=True) as client:
            for d in existing().values():
                client.delete_deployment(d.id)


def test_a_failed_drills_retest_is_a_scheduled_run_of_the_drill_deployment(drill_deployment: str) -> None:
    from prefect import get_client

    from flows.drill import _schedule_retest, retest_slot
    from flows.runbook import CrashPolicy, RunContext

    config = load_tenant(TENANT)
    slot = retest_slot(config, datetime.now(UTC))
    run = RunContext("drill", action="request_drill", tenant=TENANT, requested_by=CAROL, channel="test",
                     parameters={"tenant": TENANT}, policy=CrashPolicy.NONE, dry_run=True)
    said = _schedule_retest(run, config, slot)
    (step,) = [s for s in run.steps if s.step == "schedule_retest"]
    assert said.startswith("scheduled as flow run") and step.ok, (said, step.error)
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(step.detail["flow_run"])
        deployment = client.read_deployment(flow_run.deployment_id)
    assert deployment.name == TENANT and flow_run.state_type.value == "SCHEDULED"
    assert abs((flow_run.next_scheduled_start_time - slot).total_seconds()) < 1
    assert flow_run.parameters == {"tenant": TENANT, "requested_by": CAROL, "channel": "schedule"}
    local = slot.astimezone(config.tz)
    assert config.business_hours.start <= local.time() <= config.business_hours.end


def test_a_drill_asked_for_by_a_ticket_through_the_gateway_notes_and_resolves_the_ticket(
        lab: LabState, protected: Path, drill_deployment: str, flows_env: Path) -> None:
    """A ServiceNow-style caller: opens an incident, signs a request as docs/service-desk.md says, and its
    ticket gets the outcome, RTO/RPO and the report when the run (executed by a process worker) ends."""
    import hashlib
    import hmac
    import json
    import socket

    import uvicorn
    from prefect.settings import PREFECT_API_URL

    from deployments.gateway import KeyStore, build_app

    def sign(key: str, stamp: int, body: bytes) -> str:  # as docs/service-desk.md says (openssl dgst -hmac)
        return "v1=" + hmac.new(key.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()

    sd = lab.servicedesk
    assert sd is not None
    desk = httpx.Client(base_url=sd.url, auth=(sd.username, sd.password), timeout=30,
                        headers={"Accept": "application/json"})
    incident = desk.post("/api/now/table/incident", json={"short_description": "Please run the DR test of globex",
                                                          "caller_id": CAROL}).json()["result"]
    keys = KeyStore().get(TENANT)
    assert keys is not None, "onboarding created no signing key"
    key = keys.current
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_LOGGING_LEVEL": "WARNING",
           "PREFECT_WORKER_QUERY_SECONDS": "1"}
    worker: subprocess.Popen[bytes] | None = None
    try:
        while not server.started:
            time.sleep(0.05)
        body = json.dumps({"requested_by": CAROL, "ticket": incident["number"],
                           "parameters": {"output_dir": str(protected)}}).encode()
        stamp = int(time.time())
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/tenants/{TENANT}/drills", content=body,
                            headers={"Content-Type": "application/json", "X-DRaaS-Timestamp": str(stamp),
                                     "X-DRaaS-Signature": sign(key, stamp, body),
                                     "Idempotency-Key": f"{incident['number']}-drill"})
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        with open(flows_env / "worker.log", "wb") as log:
            worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", drill_deployment,
                                       "--type", "process"], cwd=Path(__file__).resolve().parents[2], env=env,
                                      stdout=log, stderr=subprocess.STDOUT)

        def status() -> dict[str, Any]:
            stamp = int(time.time())
            return httpx.get(f"http://127.0.0.1:{port}/v1/runs/{run_id}", headers={
                "X-DRaaS-Tenant": TENANT, "X-DRaaS-Timestamp": str(stamp),
                "X-DRaaS-Signature": sign(key, stamp, run_id.encode())}).json()

        end = time.monotonic() + 600
        while (state := status())["state"] not in ("Completed", "Failed", "Crashed", "Cancelled"):
            assert time.monotonic() < end, f"run {run_id} did not end: {state}"
            assert worker.poll() is None, (flows_env / "worker.log").read_text()[-3000:]
            time.sleep(2)
        assert state["state"] == "Completed", (flows_env / "worker.log").read_text()[-3000:]
        assert state["verdict"] in ("PASS", "PASS WITH WARNINGS") and state["rto_s"] > 0, state
        assert Path(state["reports"]["pdf"]).is_file(), state
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        server.should_exit = True
        thread.join(timeout=10)

    notes = desk.get("/api/now/table/sys_journal_field", params={
        "sysparm_query": f"element_id={incident['sys_id']}^element=work_notes"}).json()["result"]
    (note,) = [n["value"] for n in notes if run_id in n["value"]]
    assert "Completed (PASS" in note and "RTO " in note and "RPO " in note, note
    (report,) = [line.split(": ", 1)[1] for line in note.splitlines() if line.startswith("Report (html)")]
    assert Path(report).is_file()
    after = desk.get(f"/api/now/table/incident/{incident['sys_id']}").json()["result"]
    assert after["state"] == "6" and run_id in after["close_notes"]  # Resolved
    record = StateStore().get_run(run_id)
    assert record is not None and record.outcome == "success"
    assert [s.step for s in StateStore().steps(run_id)][-1] == "update_ticket"

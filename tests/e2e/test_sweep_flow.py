"""The crash sweeper against the lab: what a killed run left on the devices and in vCenter goes.

A crash is staged the way preprovision-container leaves one: the run is recorded as running,
each object is recorded and then created (one recorded but never created), and the process
"dies": its Prefect flow run is set Crashed, or never existed on this server. Assertions read
the Cisco emulator's running config through its control API and the recovery vCenter.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from prefect import get_client
from prefect.states import Cancelling, Completed, Crashed, Failed, Paused, Pending, Running, Scheduled
from typer.testing import CliRunner

from draas.container import DeviceConfig
from draas.site import Site
from draas.state.store import StateStore
from draas.state.tables import FlowRunRecord, utcnow
from tasks.container import VCenterObjectPlan, record_device_config, record_vcenter_object

TENANT = "sweeptest"
PREPROVISION = "preprovision-container"


@pytest.fixture
def store(lab, prefect_harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateStore:
    monkeypatch.setenv("DRAAS_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    return StateStore()


# --- staging a crash ----------------------------------------------------------------------------


def new_flow_run() -> str:
    """A real preprovision-container flow run on the Prefect server, in state Running."""
    from flows.preprovision import preprovision_container

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(preprovision_container, parameters={"tenant": TENANT}, state=Pending())
        client.set_flow_run_state(run.id, Running(), force=True)
    return str(run.id)


def kill(run_id: str) -> None:
    """What Prefect records when the flow's process dies."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(run_id), Crashed(), force=True)


def agg_vlan(vlan: int, name: str) -> DeviceConfig:
    return DeviceConfig(device="agg-1", context=None, role="aggregation", platform="cisco_nxos",
                        template="test-vlan", lines=[f"vlan {vlan}", f" name {name}"])


def provision(store: StateStore, lab, run_id: str, tenant: str, *, vlan: int | None = None,
              folder: str | None = None, create_folder: bool = True, flow: str = PREPROVISION) -> None:
    """Record then create a VLAN on agg-1 and a vCenter folder, exactly as preprovision does."""
    store.start_run(run_id, flow=flow, tenant_id=tenant, kind="preprovision_container")
    if vlan is not None:
        cfg = agg_vlan(vlan, tenant)
        record_device_config(store, tenant, run_id, cfg)
        with Site.load().device_block("agg-1").get_client() as device:
            device.apply(cfg.text)
    if folder is not None:
        record_vcenter_object(store, tenant, run_id, VCenterObjectPlan(kind="folder", name=folder))
        if create_folder:  # else the crash came between recording the folder and creating it
            with Site.load().vcenter_block("recovery").get_client() as vc:
                assert vc.create_folder(folder).changed


# --- reading the systems ------------------------------------------------------------------------


def agg_running(lab) -> str:
    return httpx.get(f"{lab.cisco.control_url}/devices/agg-1/running", timeout=10).raise_for_status().text


def has_vlan(lab, vlan: int) -> bool:
    return re.search(rf"^vlan {vlan}$", agg_running(lab), re.MULTILINE) is not None


def folders(lab, *names: str) -> set[str]:
    with Site.load().vcenter_block("recovery").get_client() as vc:
        return {n for n in names if vc.find("folder", n) is not None}


def world(lab, store: StateStore) -> tuple:
    """Everything a sweep could change: device, vCenter, and the store (but the audit log)."""
    counts = {t: n for t, n in store.counts().items() if t != "audit_log"}
    runs = [(r.id, r.state, r.outcome) for r in store.runs()]
    objects = [(o.id, o.removed_at) for r in store.runs() for o in store.run_objects(r.id, active_only=False)]
    return agg_running(lab), folders(lab, *FOLDERS), counts, runs, objects


FOLDERS = ("sweep-crashed", "sweep-ghost", "sweep-alive", "sweep-waiting")


# --- the tests ----------------------------------------------------------------------------------


def test_sweep_removes_what_crashed_runs_left_and_nothing_else(store: StateStore, lab) -> None:
    from flows.sweep import sweep_orphans

    crashed = new_flow_run()  # killed mid-run
    provision(store, lab, crashed, "sweep-a", vlan=3991, folder="sweep-crashed")
    kill(crashed)
    ghost = str(uuid.uuid4())  # its flow run is gone from the server
    provision(store, lab, ghost, "sweep-b", vlan=3992, folder="sweep-ghost", create_folder=False)
    waiting = new_flow_run()  # dead, but a later run of its tenant is still at work
    provision(store, lab, waiting, "sweep-c", folder="sweep-waiting", create_folder=False)
    kill(waiting)
    alive = new_flow_run()  # still running: must not be touched
    provision(store, lab, alive, "sweep-c", vlan=3993, folder="sweep-alive")
    adopted = new_flow_run()  # dead, then a re-run of the same flow converged on its objects
    provision(store, lab, adopted, "sweep-d", vlan=3994)
    kill(adopted)
    rerun = str(uuid.uuid4())
    provision(store, lab, rerun, "sweep-d", vlan=3994)
    store.finish_run(rerun, state="Completed", outcome="success")
    # A run of a flow this Prefect server has never seen: probably another server's run.
    elsewhere = str(uuid.uuid4())
    store.start_run(elsewhere, flow="flow-of-another-server", tenant_id="sweep-e")
    assert all(has_vlan(lab, v) for v in (3991, 3992, 3993, 3994))
    assert folders(lab, *FOLDERS) == {"sweep-crashed", "sweep-alive"}
    adopted_records = store.run_objects(adopted)
    assert len(adopted_records) == 1 and store.run_objects(rerun) == [], "the re-run reused the record"

    # Dry run: names the dead runs and their objects, changes nothing.
    before = world(lab, store)
    dry = sweep_orphans(dry_run=True, older_than_minutes=0, requested_by="ops")
    assert world(lab, store) == before, "a dry run changed something"
    assert {s.run_id for s in dry.swept} == {crashed, ghost, adopted}
    by_id = {s.run_id: s for s in dry.swept}
    assert by_id[crashed].objects == ["vcenter-recovery folder sweep-crashed",
                                      "cisco config:test-vlan agg-1"], "newest first"
    assert "vcenter-recovery folder sweep-ghost" in by_id[ghost].objects
    assert by_id[adopted].objects == [] and rerun in by_id[adopted].reason
    assert {v.run_id for v in dry.left_alone} == {waiting, alive, elsewhere}
    assert dry.steps == []

    result = sweep_orphans(older_than_minutes=0, requested_by="ops", channel="cli")
    assert {s.run_id for s in result.swept} == {crashed, ghost, adopted} and result.changed
    left = {v.run_id: v.reason for v in result.left_alone}
    assert set(left) == {waiting, alive, elsewhere}
    assert "Running" in left[alive] and "server" in left[elsewhere] and alive in left[waiting]

    # The systems: the dead runs' VLANs and folder are gone; the live and the adopted ones stay.
    assert not has_vlan(lab, 3991) and not has_vlan(lab, 3992)
    assert has_vlan(lab, 3993) and has_vlan(lab, 3994)
    assert folders(lab, *FOLDERS) == {"sweep-alive"}
    # The store: records marked removed, runs Crashed/swept; the others untouched.
    for dead in (crashed, ghost):
        recorded = store.run_objects(dead, active_only=False)
        assert len(recorded) == 2 and all(o.removed_at is not None for o in recorded)
    for dead in (crashed, ghost, adopted):
        run = store.get_run(dead)
        assert run is not None and (run.state, run.outcome) == ("Crashed", "swept")
        assert result.run_id in (run.error or "")
    assert store.run_objects(adopted) == adopted_records
    assert len(store.run_objects(alive)) == 2 and len(store.run_objects(waiting)) == 1
    for untouched in (waiting, alive, elsewhere):
        assert store.get_run(untouched).state == "Running"  # type: ignore[union-attr]
    sweep_run = store.get_run(result.run_id)
    assert sweep_run is not None and (sweep_run.state, sweep_run.outcome) == ("Completed", "success")
    assert [s.step for s in store.steps(result.run_id)].count("remove_recorded_object") == 4

    # The audit log: the sweep itself, and each swept run under its tenant.
    entries = store.audit_log()
    per_run = [(e.run_id, e.outcome, e.tenant_id) for e in entries if e.action == "sweep_crashed_run"]
    assert sorted(per_run) == sorted([(crashed, "swept", "sweep-a"), (ghost, "swept", "sweep-b"),
                                      (adopted, "swept", "sweep-d")])
    own = [e for e in entries if e.action == "sweep_orphans" and e.run_id == result.run_id]
    assert [e.outcome for e in own] == ["accepted", "succeeded"]
    assert set(own[-1].detail["swept"]) == {crashed, ghost, adopted} and own[-1].actor == "ops"

    # A second sweep changes nothing.
    before = world(lab, store)
    again = sweep_orphans(older_than_minutes=0)
    assert again.swept == [] and not again.changed and again.steps == []
    assert {v.run_id for v in again.left_alone} == {waiting, alive, elsewhere}
    after = world(lab, store)
    assert after[:2] == before[:2] and after[4] == before[4]
    assert [r for r in after[3] if r[0] != again.run_id] == before[3]

    # Once the live run dies, the next sweep takes it and the run that waited for it.
    kill(alive)
    last = sweep_orphans()
    assert {s.run_id for s in last.swept} == {alive, waiting}
    assert not has_vlan(lab, 3993) and folders(lab, *FOLDERS) == set()
    with Site.load().device_block("agg-1").get_client() as device:  # leave the lab as found
        device.remove(agg_vlan(3994, "sweep-d").lines)
    assert not has_vlan(lab, 3994)


def test_a_failed_removal_leaves_the_run_for_the_next_sweep(store: StateStore, lab) -> None:
    from flows.sweep import SweepIncomplete, sweep_orphans

    crashed = new_flow_run()
    provision(store, lab, crashed, "sweep-g", vlan=3996, folder="sweep-stuck")
    kill(crashed)
    control = httpx.Client(base_url=lab.cisco.control_url, timeout=10)
    control.post("/faults", json={"device": "agg-1", "on_line_matching": "no vlan 3996", "times": 1,
                                  "message": "% VLAN 3996 is in use"}).raise_for_status()
    try:
        with pytest.raises(SweepIncomplete, match="3996 is in use"):
            sweep_orphans()
    finally:
        control.delete("/faults").raise_for_status()
        control.close()
    # What could go went (newest first: the folder); the run waits for the next sweep.
    assert folders(lab, "sweep-stuck") == set() and has_vlan(lab, 3996)
    assert [o.kind for o in store.run_objects(crashed)] == ["config:test-vlan"]
    assert store.get_run(crashed).state == "Running"  # type: ignore[union-attr]
    failed = [e for e in store.audit_log() if e.action == "sweep_crashed_run"]
    assert [(e.run_id, e.outcome, e.tenant_id) for e in failed] == [(crashed, "failed", "sweep-g")]
    sweeps = [r for r in store.runs() if r.flow == "sweep-orphans"]
    assert [(r.state, r.outcome) for r in sweeps] == [("Failed", "failure")]

    again = sweep_orphans()
    assert [s.run_id for s in again.swept] == [crashed] and not has_vlan(lab, 3996)
    assert store.get_run(crashed).state == "Crashed"  # type: ignore[union-attr]


def test_cli_sweep_dry_run(store: StateStore, lab) -> None:
    from draas.cli import app

    ghost = new_flow_run()
    provision(store, lab, ghost, "sweep-f", vlan=3995, folder="sweep-cli", create_folder=False)
    kill(ghost)
    try:
        before = world(lab, store)
        out = CliRunner().invoke(app, ["sweep", "--dry-run", "--older-than", "5"])
        assert out.exit_code == 0, out.output
        assert f"would sweep {ghost}" in out.output and "would remove cisco config:test-vlan agg-1" in out.output
        assert "would sweep 1 run(s)" in out.output
        assert world(lab, store) == before
        assert has_vlan(lab, 3995)
    finally:
        out = CliRunner().invoke(app, ["sweep"])
    assert out.exit_code == 0, out.output
    assert "swept 1 run(s)" in out.output and not has_vlan(lab, 3995)


# --- the verdict, state by state (no lab needed) -----------------------------------------------


@pytest.mark.parametrize(("state", "age_minutes", "sweep"), [
    (Crashed(), 1, True), (Failed(), 1, True), (Completed(), 1, False), (Completed(), 600, False),
    (Running(), 600, False), (Pending(), 600, False), (Scheduled(), 600, False), (Paused(), 600, False),
    (Cancelling(), 1, False), (Cancelling(), 600, True), (None, 1, True),
])
def test_judge_run(state, age_minutes: float, sweep: bool) -> None:
    from flows.sweep import judge_run

    now = utcnow()
    run = FlowRunRecord(id=str(uuid.uuid4()), flow=PREPROVISION, tenant_id=TENANT,
                        started=now - timedelta(minutes=age_minutes))
    if state is not None:
        state.timestamp = run.started
    verdict = judge_run(run, state, flow_known=True, now=now, older_than=timedelta(minutes=30))
    assert verdict.sweep is sweep, verdict.reason
    assert not judge_run(run, None, flow_known=False, now=now, older_than=timedelta(0)).sweep

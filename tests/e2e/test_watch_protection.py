"""The ``watch-protection`` flow against the lab: one incident per lagging group, notes, resolution.

A VPG for acme's ``acme-windows`` group is created directly through the replication provider
(as protection set-up would), with a 10-second configured RPO so the lab's ZVM reports it
``RpoNotMeetingSLA`` soon after its replication link is cut (the lab's link control). The
flow runs as real Prefect flow runs; assertions read the service desk simulator over its
Table API and the test's own state store.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from draas.clients.replication import GroupState, ProtectionSpec, ReplicationNotFound
from draas.clients.servicedesk import INCIDENT
from draas.deadline import Deadline
from draas.site import Site
from draas.state.store import StateStore
from draas.state.tables import RpoSample
from flows.watch import correlation_id, decide_breach, not_meeting_since, watch_protection
from lab.state import LabState
from tasks.tenant import validate_tenant_config

TENANT, GROUP = "acme", "acme-windows"
VPG_RPO_S = 10  # the VPG's configured RPO: short, so a cut link makes it miss its SLA quickly


@pytest.fixture
def store(lab: LabState, prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateStore:
    monkeypatch.setenv("DRAAS_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    return StateStore()


@pytest.fixture
def vpg(lab: LabState, store: StateStore) -> Iterator[dict[str, Any]]:
    """acme-windows protected and meeting its SLA; the link restored and the VPG removed afterwards."""
    assert lab.replication is not None
    machines = validate_tenant_config.fn(TENANT).tenant.group(GROUP).machines
    spec = ProtectionSpec(name=GROUP, vms=machines, rpo_seconds=VPG_RPO_S, failover_network="VM Network")
    control = httpx.Client(base_url=f"{lab.replication.url}/lab", timeout=10)
    with Site.for_config_dir(None).replication_block().get_client() as provider:
        provider.protect(spec, deadline=Deadline.within(60))
        group = provider.wait_for_state(GROUP, [GroupState.MEETING_SLA], deadline=Deadline.within(60))
        try:
            yield {"provider": provider, "control": control, "id": group.id}
        finally:
            control.post(f"/vpgs/{group.id}/replication", json={"paused": False})
            control.close()
            removal = provider.unprotect(GROUP, force=True)
            if removal is not None:
                provider.wait_task(removal, deadline=Deadline.within(60))
            with pytest.raises(ReplicationNotFound):
                provider.status(GROUP)


def _incidents(cid: str) -> list[Any]:
    with Site.for_config_dir(None).servicedesk_block().get_client() as desk:
        return [(r, desk.get_incident(r.sys_id), [n.value for n in desk.work_notes(INCIDENT, r.sys_id)])
                for r in desk.query(INCIDENT, {"correlation_id": cid})]


def test_a_lagging_group_gets_one_incident_with_notes_resolved_on_recovery(store: StateStore,
                                                                         vpg: dict[str, Any]) -> None:
    cid = correlation_id(TENANT, GROUP)

    healthy = watch_protection(TENANT)
    by_group = {g.group: g for g in healthy.groups}
    assert by_group[GROUP].status == GroupState.MEETING_SLA.value and not by_group[GROUP].breach
    assert by_group[GROUP].target_rpo_s == 30 and by_group[GROUP].actual_rpo_s is not None
    assert by_group["acme-linux"].status == "not_protected" and not by_group["acme-linux"].breach
    assert _incidents(cid) == []

    # Cut the replication link: the RPO grows until the ZVM reports the VPG not meeting its SLA.
    vpg["control"].post(f"/vpgs/{vpg['id']}/replication", json={"paused": True}).raise_for_status()
    vpg["provider"].wait_for_state(GROUP, [GroupState.NOT_MEETING_SLA], deadline=Deadline.within(60))

    runs = [watch_protection(TENANT, grace_minutes=0.0) for _ in range(10)]
    watched = [next(g for g in r.groups if g.group == GROUP) for r in runs]
    assert all(w.status == GroupState.NOT_MEETING_SLA.value for w in watched)
    breaches = [w for w in watched if w.breach]
    # The first lagging sample starts the clock (grace 0: the next run is past it), unless the RPO is over already.
    assert len(breaches) >= 9 and all(watched[i].breach for i in range(1, 10))
    assert [w.incident_action for w in breaches] == ["opened"] + ["noted"] * (len(breaches) - 1)
    numbers = {w.incident for w in breaches}
    assert len(numbers) == 1 and None not in numbers

    incidents = _incidents(cid)
    assert len(incidents) == 1, incidents
    record, incident, notes = incidents[0]
    assert record.number in numbers and not incident.is_resolved
    assert "RPO breach" in incident.short_description
    assert len([n for n in notes if "Still in breach" in n]) == len(breaches) - 1
    assert all(any(r.run_id in n for n in notes) for r in runs[-3:])

    samples = store.rpo_samples(TENANT, GROUP)
    assert len(samples) == 11 and [s.meeting_sla for s in samples] == [True] + [False] * 10
    assert samples[-1].actual_rpo_s is not None and samples[-1].actual_rpo_s > VPG_RPO_S
    assert {s.status for s in store.rpo_samples(TENANT, "acme-linux")} == {"not_protected"}

    # Restore the link: the group meets its SLA again and the incident is resolved.
    vpg["control"].post(f"/vpgs/{vpg['id']}/replication", json={"paused": False}).raise_for_status()
    vpg["provider"].wait_for_state(GROUP, [GroupState.MEETING_SLA], deadline=Deadline.within(60))
    recovered = next(g for g in watch_protection(TENANT, grace_minutes=0.0).groups if g.group == GROUP)
    assert (recovered.breach, recovered.incident_action, recovered.incident) == (False, "resolved", record.number)
    incidents = _incidents(cid)
    assert len(incidents) == 1 and incidents[0][1].is_resolved

    again = next(g for g in watch_protection(TENANT).groups if g.group == GROUP)
    assert (again.breach, again.incident_action) == (False, "none")
    assert len(_incidents(cid)) == 1

    # A later breach reopens the group's incident rather than leaving it resolved.
    vpg["control"].post(f"/vpgs/{vpg['id']}/replication", json={"paused": True}).raise_for_status()
    vpg["provider"].wait_for_state(GROUP, [GroupState.NOT_MEETING_SLA], deadline=Deadline.within(60))
    relapse = [next(g for g in watch_protection(TENANT, grace_minutes=0.0).groups if g.group == GROUP)
               for _ in range(2)]
    assert relapse[-1].breach and relapse[-1].incident_action == "reopened"
    assert relapse[-1].incident == record.number
    incidents = _incidents(cid)
    assert len(incidents) == 1 and not incidents[0][1].is_resolved
    assert any(n.startswith("Breach again") for n in incidents[0][2])


def test_breach_decision_from_the_samples() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)

    def sample(minutes_ago: float, status: str) -> RpoSample:
        return RpoSample(tenant_id=TENANT, group=GROUP, at=now - timedelta(minutes=minutes_ago), status=status,
                         target_rpo_s=30, meeting_sla=status == "meeting_sla")

    lagging = [sample(20, "not_meeting_sla"), sample(15, "meeting_sla"), sample(12, "not_meeting_sla"),
               sample(5, "not_meeting_sla"), sample(0, "not_meeting_sla")]
    since = not_meeting_since(lagging)
    assert since == now - timedelta(minutes=12)
    assert "not meeting SLA" in decide_breach(20, 30, since, now, grace_minutes=10)
    assert decide_breach(20, 30, since, now, grace_minutes=15) == ""
    assert "above the target" in decide_breach(31, 30, None, now, grace_minutes=10)
    assert not_meeting_since([*lagging, sample(0, "meeting_sla")]) is None
    assert not_meeting_since([sample(3, "not_meeting_sla"), sample(1, "not_protected")]) is None

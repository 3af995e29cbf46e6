"""Service desk adapter, block and tasks against the lab's ServiceNow Table API simulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from blocks.servicedesk import ServiceDeskCredentials
from draas.clients.servicedesk import (
    ChangeRequestCreate,
    IncidentCreate,
    IncidentState,
    Notification,
    ServiceDeskAuthFailed,
    ServiceDeskClient,
    ServiceDeskRecordNotFound,
    ServiceDeskRequestFailed,
    ServiceDeskTransientError,
)
from draas.errors import is_transient
from draas.site import Site
from lab.state import LabState
from tasks.servicedesk import (
    add_work_note,
    close_change_record,
    open_change_record,
    open_incident,
    resolve_incident,
    send_notification,
)


@pytest.fixture()
def creds(lab: LabState) -> ServiceDeskCredentials:
    return Site.load().servicedesk_block()  # the lab, found through its site profile


@pytest.fixture()
def client(creds: ServiceDeskCredentials) -> Iterator[ServiceDeskClient]:
    with creds.get_client() as c:
        yield c


def _received(lab: LabState) -> dict[str, Any]:
    sd = lab.servicedesk
    assert sd is not None
    return httpx.get(f"{sd.url}/api/lab/received", auth=(sd.username, sd.password), timeout=5).json()


def _faults(lab: LabState, **fault: Any) -> None:
    sd = lab.servicedesk
    assert sd is not None
    httpx.post(f"{sd.url}/api/lab/faults", json=fault, auth=(sd.username, sd.password), timeout=5).raise_for_status()


def _corr(kind: str) -> str:
    return f"draas:{kind}:acme:{uuid.uuid4().hex[:8]}"


def test_incident_happy_path(client: ServiceDeskClient) -> None:
    corr = _corr("drill")
    inc = client.create_incident(IncidentCreate(short_description="Drill failed for acme", urgency=2,
                                                assignment_group="DR Operations", correlation_id=corr))
    assert inc.number.startswith("INC") and inc.state == IncidentState.NEW and inc.active
    client.add_work_note("incident", inc.sys_id, "acme-web01 did not get an IP")
    client.add_work_note("incident", inc.sys_id, "re-ran verification")
    notes = client.work_notes("incident", inc.sys_id)
    assert [n.value for n in notes] == ["acme-web01 did not get an IP", "re-ran verification"]
    found = client.find_incident(corr)
    assert found is not None and found.sys_id == inc.sys_id
    resolved = client.resolve_incident(inc.sys_id, "verification passed on re-run")
    assert resolved.is_resolved and not resolved.active
    got = client.get_incident(inc.sys_id)
    assert got.state == IncidentState.RESOLVED and got.close_notes == "verification passed on re-run"
    assert "re-ran verification" in got.work_notes


def test_change_request_happy_path(client: ServiceDeskClient) -> None:
    corr = _corr("failover")
    chg, created = client.ensure_change_request(ChangeRequestCreate(
        short_description="DR invocation for acme", type="emergency", correlation_id=corr,
        implementation_plan="failover flow", backout_plan="rollback flow"))
    assert created and chg.number.startswith("CHG") and chg.type == "emergency"
    again, created_again = client.ensure_change_request(ChangeRequestCreate(
        short_description="DR invocation for acme (retry)", type="emergency", correlation_id=corr))
    assert not created_again and again.sys_id == chg.sys_id
    closed = client.close_change_request(chg.sys_id, "recovered in 14 min")
    assert closed.is_closed


def test_tasks_open_each_record_once(lab: LabState, creds: ServiceDeskCredentials) -> None:
    change_id, incident_id = _corr("failover"), _corr("rpo")
    change = ChangeRequestCreate(short_description="Planned failover acme", correlation_id=change_id)
    incident = IncidentCreate(short_description="RPO breach acme", correlation_id=incident_id)
    dry = open_change_record.fn(creds, change, dry_run=True)
    first, second = open_change_record.fn(creds, change), open_change_record.fn(creds, change)
    assert (dry.changed, first.changed, second.changed) == (True, True, False)
    assert first.detail["sys_id"] == second.detail["sys_id"]
    inc1, inc2 = open_incident.fn(creds, incident), open_incident.fn(creds, incident)
    assert (inc1.changed, inc2.changed) == (True, False)

    received = _received(lab)
    assert [r["correlation_id"] for r in received["records"]["change_request"]].count(change_id) == 1
    assert [r["correlation_id"] for r in received["records"]["incident"]].count(incident_id) == 1

    note = f"RPO back under target (run {uuid.uuid4().hex[:6]})"
    n1 = add_work_note.fn(creds, incident_id, note)
    n2 = add_work_note.fn(creds, incident_id, note)
    assert (n1.changed, n2.changed) == (True, False)
    entries = [j for j in _received(lab)["journal"] if j["element_id"] == inc1.detail["sys_id"]]
    assert [j["value"] for j in entries] == [note]

    r1 = resolve_incident.fn(creds, incident_id, "RPO recovered")
    r2 = resolve_incident.fn(creds, incident_id, "RPO recovered")
    assert (r1.changed, r2.changed) == (True, False) and r2.detail["state"] == "6"
    c1 = close_change_record.fn(creds, change_id, "done")
    c2 = close_change_record.fn(creds, change_id, "done")
    assert (c1.changed, c2.changed) == (True, False) and c2.detail["state"] == "3"
    with pytest.raises(ServiceDeskRecordNotFound):
        resolve_incident.fn(creds, _corr("never-opened"), "x")


def test_notification_reaches_the_webhook(lab: LabState, creds: ServiceDeskCredentials) -> None:
    marker = uuid.uuid4().hex
    result = send_notification.fn(creds, Notification(event="drill_failed", subject="Drill failed for acme",
                                                      tenant="acme", details={"marker": marker}))
    assert result.detail["webhook"] is True
    bodies = [n["body"] for n in _received(lab)["notifications"]]
    mine = [b for b in bodies if isinstance(b, dict) and b.get("details", {}).get("marker") == marker]
    assert len(mine) == 1 and mine[0]["event"] == "drill_failed" and mine[0]["tenant"] == "acme"


def test_wrong_password_is_auth_failed_without_leaking_it(lab: LabState, creds: ServiceDeskCredentials) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    bad = creds.model_copy(update={"password": SecretStr(wrong)})
    with creds.get_client() as good:
        good.check_connection()
    with bad.get_client() as client, pytest.raises(ServiceDeskAuthFailed, match="HTTP 401") as info:
        client.check_connection()
    text = str(info.value) + repr(info.value) + repr(bad)
    assert lab.servicedesk is not None
    assert wrong not in text and lab.servicedesk.password not in text


def test_lab_faults_map_to_transient_and_permanent_errors(lab: LabState, creds: ServiceDeskCredentials) -> None:
    with creds.get_client() as client:
        _faults(lab, status=503, count=1)
        with pytest.raises(ServiceDeskTransientError, match="HTTP 503") as info:
            client.find_incident("x")
        assert is_transient(info.value)
        _faults(lab, malformed=True, count=1)
        with pytest.raises(ServiceDeskRequestFailed, match="GET /api/now/table/incident: HTTP 200 answer is not JSON"):
            client.find_incident("x")
        assert client.find_incident(_corr("none")) is None  # faults are spent
    slow = creds.model_copy(update={"timeout": 0.3})
    _faults(lab, delay_s=1.0, count=1)
    with slow.get_client() as client, pytest.raises(ServiceDeskTransientError, match="timed out"):
        client.find_incident("x")

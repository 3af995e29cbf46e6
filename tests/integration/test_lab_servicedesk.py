"""The lab's service desk simulator speaks ServiceNow's Table API shape (raw HTTP, no product client)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from lab.state import LabState


@pytest.fixture()
def desk(lab: LabState) -> Iterator[httpx.Client]:
    sd = lab.servicedesk
    assert sd is not None, "the lab must run the service desk"
    with httpx.Client(base_url=sd.url, auth=(sd.username, sd.password), timeout=10) as client:
        yield client


def test_incident_lifecycle_create_note_query_resolve(desk: httpx.Client) -> None:
    corr = f"drill-{uuid.uuid4().hex[:8]}"
    r = desk.post("/api/now/table/incident", json={
        "short_description": "Drill failed for tenant acme", "description": "VM acme-web01 did not boot",
        "assignment_group": "DR Operations", "correlation_id": corr, "urgency": 2,
        "not_a_field": "ignored like ServiceNow does",
    })
    assert r.status_code == 201
    inc = r.json()["result"]
    assert re.fullmatch(r"[0-9a-f]{32}", inc["sys_id"])
    assert re.fullmatch(r"INC\d{7}", inc["number"])
    assert inc["state"] == "1"
    assert inc["urgency"] == "2"  # values come back as strings, as in ServiceNow
    assert inc["correlation_id"] == corr
    assert "not_a_field" not in inc
    assert r.headers["location"].endswith(f"/api/now/table/incident/{inc['sys_id']}")

    r = desk.patch(f"/api/now/table/incident/{inc['sys_id']}", json={"work_notes": "first note"})
    assert r.status_code == 200
    r = desk.patch(f"/api/now/table/incident/{inc['sys_id']}", json={"work_notes": "second note"})
    assert r.status_code == 200
    notes = r.json()["result"]["work_notes"]
    # Journal: both entries kept, newest first.
    assert notes.index("second note") < notes.index("first note")
    journal = desk.get("/api/now/table/sys_journal_field", params={
        "sysparm_query": f"element_id={inc['sys_id']}^element=work_notes^ORDERBYsys_created_on"}).json()["result"]
    assert [j["value"] for j in journal] == ["first note", "second note"]

    found = desk.get("/api/now/table/incident", params={
        "sysparm_query": f"correlation_id={corr}^active=true", "sysparm_limit": 5}).json()["result"]
    assert [f["sys_id"] for f in found] == [inc["sys_id"]]

    r = desk.patch(f"/api/now/table/incident/{inc['sys_id']}", json={
        "state": "6", "close_code": "Solved (Permanently)", "close_notes": "re-run passed"})
    resolved = r.json()["result"]
    assert resolved["state"] == "6"
    assert resolved["active"] == "false"
    assert resolved["resolved_at"]
    assert desk.get("/api/now/table/incident", params={
        "sysparm_query": f"correlation_id={corr}^active=true"}).json()["result"] == []
    got = desk.get(f"/api/now/table/incident/{inc['sys_id']}").json()["result"]
    assert got["close_notes"] == "re-run passed"
    assert "first note" in got["work_notes"]


def test_change_request_numbers_and_limit(desk: httpx.Client) -> None:
    corr = f"failover-{uuid.uuid4().hex[:8]}"
    numbers = []
    for i in range(3):
        r = desk.post("/api/now/table/change_request", json={"short_description": f"DR invocation {i}",
                                                             "correlation_id": corr, "type": "emergency"})
        assert r.status_code == 201
        chg = r.json()["result"]
        assert chg["state"] == "-5" and chg["type"] == "emergency"
        numbers.append(chg["number"])
    assert all(re.fullmatch(r"CHG\d{7}", n) for n in numbers)
    assert len(set(numbers)) == 3
    r = desk.get("/api/now/table/change_request", params={"sysparm_query": f"correlation_id={corr}",
                                                          "sysparm_limit": 2, "sysparm_fields": "number,state"})
    assert r.headers["x-total-count"] == "3"
    assert r.json()["result"] == [{"number": numbers[0], "state": "-5"}, {"number": numbers[1], "state": "-5"}]


def test_requests_without_or_with_wrong_credentials_get_401(lab: LabState, desk: httpx.Client) -> None:
    assert lab.servicedesk is not None
    url = lab.servicedesk.url
    before = len(desk.get("/api/now/table/incident").json()["result"])
    r = httpx.post(f"{url}/api/now/table/incident", json={"short_description": "x"})
    assert r.status_code == 401
    assert r.json()["error"]["message"] == "User Not Authenticated"
    assert r.headers["www-authenticate"].startswith("Basic")
    r = httpx.get(f"{url}/api/now/table/incident", auth=(lab.servicedesk.username, "wrong-password"))
    assert r.status_code == 401
    assert httpx.get(f"{url}/api/lab/received").status_code == 401
    assert len(desk.get("/api/now/table/incident").json()["result"]) == before


def test_errors_have_servicenow_shape(desk: httpx.Client) -> None:
    r = desk.get(f"/api/now/table/incident/{uuid.uuid4().hex}")
    assert r.status_code == 404
    assert r.json() == {"error": {"message": "No Record found",
                                  "detail": "Record doesn't exist or ACL restricts the record retrieval"},
                        "status": "failure"}
    assert desk.get("/api/now/table/no_such_table").status_code == 400
    r = desk.post("/api/now/table/incident", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert desk.get("/api/now/table/incident", params={"sysparm_query": "stateIN1,2"}).status_code == 400


def test_notifications_and_received_log(lab: LabState, desk: httpx.Client) -> None:
    marker = uuid.uuid4().hex
    assert lab.servicedesk is not None
    r = httpx.post(f"{lab.servicedesk.url}/api/lab/notifications",
                   json={"event": "rpo_breach", "tenant": "acme", "marker": marker},
                   headers={"Authorization": "Bearer must-not-be-logged"})
    assert r.status_code == 202
    desk.post("/api/now/table/incident", json={"short_description": marker})
    got = desk.get("/api/lab/received").json()
    notes = [n for n in got["notifications"] if isinstance(n["body"], dict) and n["body"].get("marker") == marker]
    assert len(notes) == 1
    assert "authorization" not in notes[0]["headers"]
    posts = [q for q in got["requests"] if q["method"] == "POST" and isinstance(q["body"], dict)
             and q["body"].get("short_description") == marker]
    assert len(posts) == 1 and posts[0]["status"] == 201
    assert any(rec["short_description"] == marker for rec in got["records"]["incident"])


def test_fault_injection_503_for_one_request(desk: httpx.Client) -> None:
    assert desk.post("/api/lab/faults", json={"status": 503, "count": 1}).status_code == 200
    assert desk.get("/api/now/table/incident").status_code == 503
    assert desk.get("/api/now/table/incident").status_code == 200

"""Service desk simulator: the subset of ServiceNow's Table API the product uses.

Imitates ``/api/now/table/{incident,change_request}`` (create, read, query, update, delete)
and ``/api/now/table/sys_journal_field`` (read work notes), with HTTP Basic auth, the
``{"result": ...}`` envelope, ``sys_id``/``number`` generation and journal fields
(``work_notes``, ``comments``) that append on every write. Lab-only extras under
``/api/lab/``: a plain webhook receiver for notifications, a log of everything received,
a reset, and switchable faults for reliability tests.

Run: ``python -m lab.servicedesk.server --port 0 --ready-file ready.json``; credentials come
from ``DRAAS_SERVICEDESK_USERNAME`` / ``DRAAS_SERVICEDESK_PASSWORD`` (kept out of argv).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import os
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from lab.http import serve

#: Journal fields: a write appends an entry instead of replacing the value.
JOURNAL_FIELDS = ("work_notes", "comments")

_TASK_FIELDS = (
    "short_description", "description", "assignment_group", "assigned_to", "priority", "impact",
    "urgency", "category", "subcategory", "cmdb_ci", "business_service", "company", "contact_type",
    "correlation_id", "correlation_display", "close_code", "close_notes", "state", "opened_by",
    "watch_list", "active",
)
_TABLE_FIELDS: dict[str, tuple[str, ...]] = {
    "incident": _TASK_FIELDS + ("caller_id", "incident_state", "hold_reason", "resolved_by"),
    "change_request": _TASK_FIELDS + (
        "type", "risk", "start_date", "end_date", "justification", "implementation_plan",
        "backout_plan", "test_plan", "requested_by", "chg_model",
    ),
}
_DEFAULTS: dict[str, dict[str, str]] = {
    "incident": {"state": "1", "impact": "3", "urgency": "3", "priority": "5", "active": "true"},
    "change_request": {"state": "-5", "type": "normal", "risk": "3", "impact": "3", "urgency": "3",
                       "priority": "4", "active": "true"},
}
_PREFIX = {"incident": ("INC", 10001), "change_request": ("CHG", 30001)}
#: States after which a record is no longer active (incident: 6 Resolved, 7 Closed, 8 Canceled;
#: change_request: 3 Closed, 4 Canceled).
_INACTIVE_STATES = {"incident": {"6", "7", "8"}, "change_request": {"3", "4"}}
_QUERY_TERM = re.compile(r"^(?P<field>[A-Za-z0-9_.]+?)(?P<op>!=|=|STARTSWITH|ENDSWITH|LIKE|ISEMPTY|ISNOTEMPTY)(?P<value>.*)$")


def _now() -> str:
    # ServiceNow's Table API returns UTC timestamps in this format.
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _error(status: int, message: str, detail: str = "") -> JSONResponse:
    """An error in ServiceNow's shape."""
    return JSONResponse({"error": {"message": message, "detail": detail}, "status": "failure"},
                        status_code=status)


@dataclass
class Faults:
    """Switchable faults applied to ``/api/now`` requests (lab reliability tests)."""

    status: int = 0           # respond with this HTTP status instead (e.g. 503)
    malformed: bool = False   # respond 200 with a body that is not JSON
    delay_s: float = 0.0      # sleep before answering (client timeouts)
    count: int = 0            # how many requests get the fault; 0 = until cleared

    def active(self) -> bool:
        return bool(self.status or self.malformed or self.delay_s)


@dataclass
class Desk:
    """All state of the simulator, in memory."""

    username: str
    password: str
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {t: {} for t in _TABLE_FIELDS})
    journal: list[dict[str, str]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: {t: n for t, (_, n) in _PREFIX.items()})
    requests: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)

    def reset(self) -> None:
        self.records = {t: {} for t in _TABLE_FIELDS}
        self.journal = []
        self.counters = {t: n for t, (_, n) in _PREFIX.items()}
        self.requests = []
        self.notifications = []
        self.faults = Faults()

    # -- records -------------------------------------------------------------------------------
    def next_number(self, table: str) -> str:
        prefix, _ = _PREFIX[table]
        n = self.counters[table]
        self.counters[table] = n + 1
        return f"{prefix}{n:07d}"

    def journal_for(self, sys_id: str, element: str) -> list[dict[str, str]]:
        return [j for j in self.journal if j["element_id"] == sys_id and j["element"] == element]

    def render(self, table: str, rec: dict[str, Any]) -> dict[str, Any]:
        """The record as the API returns it; journal fields show their entries, newest first."""
        out = dict(rec)
        for element in JOURNAL_FIELDS:
            entries = sorted(self.journal_for(rec["sys_id"], element),
                             key=lambda j: j["sys_created_on"] + j["seq"], reverse=True)
            label = "Work notes" if element == "work_notes" else "Additional comments"
            out[element] = "".join(
                f"{j['sys_created_on']} - {j['sys_created_by']} ({label})\n{j['value']}\n\n" for j in entries
            )
        return out

    def apply(self, table: str, rec: dict[str, Any], body: dict[str, Any], user: str) -> None:
        """Write ``body`` into ``rec``: known fields are set, journal fields append, others are ignored."""
        now = _now()
        allowed = _TABLE_FIELDS[table]
        for key, value in body.items():
            if key in JOURNAL_FIELDS:
                if value not in (None, ""):
                    self.journal.append({
                        "sys_id": uuid.uuid4().hex, "element": key, "element_id": rec["sys_id"],
                        "name": table, "value": str(value), "sys_created_on": now,
                        "sys_created_by": user, "seq": f"{len(self.journal):08d}",
                    })
                continue
            # Like ServiceNow, unknown fields are silently ignored (but kept in the request log).
            if key in allowed or key.startswith("u_"):
                rec[key] = "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
        state = rec.get("state", "")
        if state in _INACTIVE_STATES[table]:
            rec["active"] = "false"
            if table == "incident" and state == "6" and not rec.get("resolved_at"):
                rec["resolved_at"] = now
            if state in ("7", "3") and not rec.get("closed_at"):
                rec["closed_at"] = now
        rec["sys_updated_on"] = now
        rec["sys_updated_by"] = user
        rec["sys_mod_count"] = str(int(rec.get("sys_mod_count", "-1")) + 1)

    def create(self, table: str, body: dict[str, Any], user: str) -> dict[str, Any]:
        now = _now()
        sys_id = uuid.uuid4().hex
        rec: dict[str, Any] = {f: "" for f in _TABLE_FIELDS[table]}
        rec.update(_DEFAULTS[table])
        rec.update({
            "sys_id": sys_id, "number": self.next_number(table), "sys_class_name": table,
            "opened_at": now, "sys_created_on": now, "sys_created_by": user,
            "resolved_at": "", "closed_at": "", "sys_mod_count": "-1",
        })
        self.apply(table, rec, body, user)
        self.records[table][sys_id] = rec
        return rec


def parse_query(query: str) -> tuple[list[tuple[str, str, str]], list[tuple[str, bool]]]:
    """Split an encoded query (``a=b^c!=d^ORDERBYe``) into conditions and sort keys.

    Raises:
        ValueError: a term that is not a supported condition (``^OR`` and ``^NQ`` are not).
    """
    conds: list[tuple[str, str, str]] = []
    order: list[tuple[str, bool]] = []
    if not query:
        return conds, order
    for term in query.split("^"):
        if not term or term == "EQ":
            continue
        if term.startswith("ORDERBYDESC"):
            order.append((term[len("ORDERBYDESC"):], True))
            continue
        if term.startswith("ORDERBY"):
            order.append((term[len("ORDERBY"):], False))
            continue
        # Field names are lower case, so an upper-case OR/NQ prefix is always an operator.
        if term.startswith(("OR", "NQ")):
            raise ValueError(f"unsupported query term {term!r}")
        m = _QUERY_TERM.match(term)
        if not m:
            raise ValueError(f"unsupported query term {term!r}")
        conds.append((m["field"], m["op"], m["value"]))
    return conds, order


def _matches(rec: dict[str, Any], conds: list[tuple[str, str, str]]) -> bool:
    for name, op, value in conds:
        have = str(rec.get(name, ""))
        ok = {
            "=": have == value,
            "!=": have != value,
            "STARTSWITH": have.startswith(value),
            "ENDSWITH": have.endswith(value),
            "LIKE": value.lower() in have.lower(),
            "ISEMPTY": have == "",
            "ISNOTEMPTY": have != "",
        }[op]
        if not ok:
            return False
    return True


def _select(rows: list[dict[str, Any]], request: Request) -> tuple[list[dict[str, Any]], int] | JSONResponse:
    """Apply sysparm_query / sysparm_limit / sysparm_offset / sysparm_fields."""
    params = request.query_params
    try:
        conds, order = parse_query(params.get("sysparm_query", ""))
        limit = int(params.get("sysparm_limit", "10000"))
        offset = int(params.get("sysparm_offset", "0"))
    except ValueError as exc:
        return _error(400, "Invalid query", str(exc))
    hits = [r for r in rows if _matches(r, conds)]
    for key, desc in reversed(order or [("sys_created_on", False)]):
        hits.sort(key=lambda r: str(r.get(key, "")), reverse=desc)
    total = len(hits)
    hits = hits[offset:offset + max(limit, 0)]
    fields = [f for f in params.get("sysparm_fields", "").split(",") if f]
    if fields:
        hits = [{f: r.get(f, "") for f in fields} for r in hits]
    return hits, total


def create_app(username: str, password: str) -> FastAPI:
    """The FastAPI application; one in-memory desk per app."""
    desk = Desk(username=username, password=password)
    app = FastAPI(title="DRaaS lab service desk (ServiceNow Table API subset)", docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.desk = desk

    def authenticate(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            user, _, pw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if secrets.compare_digest(user.encode(), desk.username.encode()) and \
                secrets.compare_digest(pw.encode(), desk.password.encode()):
            return user
        return None

    def unauthorized() -> JSONResponse:
        resp = _error(401, "User Not Authenticated", "Required to provide Auth information")
        resp.headers["WWW-Authenticate"] = 'Basic realm="Service-now"'
        return resp

    @app.middleware("http")
    async def record_and_fault(request: Request, call_next: Any) -> Response:
        if not request.url.path.startswith("/api/now/"):
            return await call_next(request)
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        entry: dict[str, Any] = {"at": _now(), "method": request.method, "path": request.url.path,
                                 "query": dict(request.query_params), "body": body}
        desk.requests.append(entry)
        faults = desk.faults
        if faults.active():
            if faults.count > 0:
                faults.count -= 1
                if faults.count == 0:
                    desk.faults = Faults()
            if faults.delay_s:
                await asyncio.sleep(faults.delay_s)
            if faults.status:
                entry["status"] = faults.status
                return _error(faults.status, "Service Unavailable" if faults.status == 503 else "Injected fault",
                              "lab fault injection")
            if faults.malformed:
                entry["status"] = 200
                return Response("<html><body>Instance Hibernating</body></html>", status_code=200,
                                media_type="application/json")
        response = await call_next(request)
        entry["status"] = response.status_code
        return response

    async def json_body(request: Request) -> dict[str, Any] | JSONResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "Exception while reading request", "The payload is not valid JSON.")
        if not isinstance(body, dict):
            return _error(400, "Exception while reading request", "The payload must be a JSON object.")
        return body

    def unknown_table(table: str) -> JSONResponse:
        return _error(400, f"Invalid table {table}", "")

    def not_found() -> JSONResponse:
        return _error(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")

    @app.get("/api/now/table/{table}")
    async def list_records(table: str, request: Request) -> Response:
        user = authenticate(request)
        if user is None:
            return unauthorized()
        if table == "sys_journal_field":
            rows: list[dict[str, Any]] = [{k: v for k, v in j.items() if k != "seq"} for j in desk.journal]
        elif table in desk.records:
            rows = [desk.render(table, r) for r in desk.records[table].values()]
        else:
            return unknown_table(table)
        selected = _select(rows, request)
        if isinstance(selected, JSONResponse):
            return selected
        hits, total = selected
        return JSONResponse({"result": hits}, headers={"X-Total-Count": str(total)})

    @app.get("/api/now/table/{table}/{sys_id}")
    async def get_record(table: str, sys_id: str, request: Request) -> Response:
        if authenticate(request) is None:
            return unauthorized()
        if table not in desk.records:
            return unknown_table(table)
        rec = desk.records[table].get(sys_id)
        if rec is None:
            return not_found()
        return JSONResponse({"result": desk.render(table, rec)})

    @app.post("/api/now/table/{table}")
    async def create_record(table: str, request: Request) -> Response:
        user = authenticate(request)
        if user is None:
            return unauthorized()
        if table not in desk.records:
            return unknown_table(table)
        body = await json_body(request)
        if isinstance(body, JSONResponse):
            return body
        rec = desk.create(table, body, user)
        return JSONResponse({"result": desk.render(table, rec)}, status_code=201,
                            headers={"Location": f"{request.base_url}api/now/table/{table}/{rec['sys_id']}"})

    @app.api_route("/api/now/table/{table}/{sys_id}", methods=["PATCH", "PUT"])
    async def update_record(table: str, sys_id: str, request: Request) -> Response:
        user = authenticate(request)
        if user is None:
            return unauthorized()
        if table not in desk.records:
            return unknown_table(table)
        rec = desk.records[table].get(sys_id)
        if rec is None:
            return not_found()
        body = await json_body(request)
        if isinstance(body, JSONResponse):
            return body
        desk.apply(table, rec, body, user)
        return JSONResponse({"result": desk.render(table, rec)})

    @app.delete("/api/now/table/{table}/{sys_id}")
    async def delete_record(table: str, sys_id: str, request: Request) -> Response:
        if authenticate(request) is None:
            return unauthorized()
        if table not in desk.records:
            return unknown_table(table)
        if desk.records[table].pop(sys_id, None) is None:
            return not_found()
        desk.journal = [j for j in desk.journal if j["element_id"] != sys_id]
        return Response(status_code=204)

    # -- lab-only endpoints ------------------------------------------------------------------------
    @app.post("/api/lab/notifications")
    async def notify(request: Request) -> Response:
        """Plain webhook receiver: records whatever is posted (JSON or text)."""
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        # Authorization is dropped so the log never holds a credential.
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("authorization", "cookie")}
        desk.notifications.append({"at": _now(), "body": body, "headers": headers})
        return JSONResponse({"status": "received", "id": len(desk.notifications)}, status_code=202)

    @app.get("/api/lab/received")
    async def received(request: Request) -> Response:
        if authenticate(request) is None:
            return unauthorized()
        return JSONResponse({
            "requests": desk.requests,
            "notifications": desk.notifications,
            "records": {t: [desk.render(t, r) for r in recs.values()] for t, recs in desk.records.items()},
            "journal": [{k: v for k, v in j.items() if k != "seq"} for j in desk.journal],
        })

    @app.post("/api/lab/reset")
    async def reset(request: Request) -> Response:
        if authenticate(request) is None:
            return unauthorized()
        desk.reset()
        return JSONResponse({"status": "reset"})

    @app.post("/api/lab/faults")
    async def set_faults(request: Request) -> Response:
        """Set faults for ``/api/now``: ``{"status": 503, "malformed": false, "delay_s": 0, "count": 1}``; ``{}`` clears."""
        if authenticate(request) is None:
            return unauthorized()
        body = await json_body(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            desk.faults = Faults(status=int(body.get("status", 0)), malformed=bool(body.get("malformed", False)),
                                 delay_s=float(body.get("delay_s", 0.0)), count=int(body.get("count", 0)))
        except (TypeError, ValueError) as exc:
            return _error(400, "Invalid fault", str(exc))
        return JSONResponse({"faults": desk.faults.__dict__})

    @app.get("/api/lab/health")
    async def health() -> Response:
        return JSONResponse({"status": "ok"})

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    username = os.environ.get("DRAAS_SERVICEDESK_USERNAME", "")
    password = os.environ.get("DRAAS_SERVICEDESK_PASSWORD", "")
    if not username or not password:
        parser.error("set DRAAS_SERVICEDESK_USERNAME and DRAAS_SERVICEDESK_PASSWORD")
    asyncio.run(serve(create_app(username, password), args.host, args.port, args.ready_file))


if __name__ == "__main__":
    main()

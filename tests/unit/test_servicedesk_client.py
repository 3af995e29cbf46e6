"""Service desk client and notifier: every HTTP/SMTP error path, without a network (respx, fakes)."""

from __future__ import annotations

import json
import logging
import smtplib
import traceback
from typing import Any, ClassVar, Self

import httpx
import pytest
import respx
from pydantic import ValidationError

from draas.clients.servicedesk import (
    ChangeRequestCreate,
    IncidentCreate,
    Notification,
    Notifier,
    ServiceDeskAuthFailed,
    ServiceDeskClient,
    ServiceDeskError,
    ServiceDeskRecordNotFound,
    ServiceDeskRequestFailed,
    ServiceDeskTransientError,
)
from draas.errors import is_transient

BASE = "https://desk.example.test"
PASSWORD = "s3cret-Desk-Passw0rd"
TOKEN = "webhook-T0ken-value"
INCIDENTS = f"{BASE}/api/now/table/incident"
SYS_ID = "0123456789abcdef0123456789abcdef"


def _record(**over: Any) -> dict[str, Any]:
    rec = {"sys_id": SYS_ID, "number": "INC0010001", "state": "1", "short_description": "x",
           "correlation_id": "drill:acme:1", "active": "true",
           "assignment_group": {"link": f"{BASE}/api/now/table/sys_user_group/abc", "value": "abc"}}
    rec.update(over)
    return rec


@pytest.fixture()
def client() -> ServiceDeskClient:
    return ServiceDeskClient(BASE, "integration", PASSWORD, timeout=2)


def _all_text(exc: BaseException) -> str:
    """Everything an operator could see of an exception: message, repr, chain, traceback."""
    return "".join(traceback.format_exception(exc)) + repr(exc)


@respx.mock
def test_401_is_auth_failed_naming_the_endpoint(client: ServiceDeskClient) -> None:
    respx.post(INCIDENTS).mock(return_value=httpx.Response(
        401, json={"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
                   "status": "failure"}))
    with pytest.raises(ServiceDeskAuthFailed) as info:
        client.create_incident(IncidentCreate(short_description="x"))
    assert "POST /api/now/table/incident: HTTP 401 User Not Authenticated" in str(info.value)
    assert not is_transient(info.value)


@respx.mock
@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_5xx_and_429_are_transient(client: ServiceDeskClient, status: int) -> None:
    respx.get(INCIDENTS).mock(return_value=httpx.Response(status, text="busy"))
    with pytest.raises(ServiceDeskTransientError) as info:
        client.find_incident("drill:acme:1")
    assert f"GET /api/now/table/incident: HTTP {status}" in str(info.value)
    assert is_transient(info.value)


@respx.mock
@pytest.mark.parametrize("error", [httpx.ReadTimeout("read timed out"), httpx.ConnectTimeout("connect timed out"),
                                   httpx.ConnectError("connection refused"), httpx.RemoteProtocolError("dropped")])
def test_timeouts_and_dropped_connections_are_transient(client: ServiceDeskClient, error: Exception) -> None:
    respx.patch(f"{INCIDENTS}/{SYS_ID}").mock(side_effect=error)
    with pytest.raises(ServiceDeskTransientError) as info:
        client.add_work_note("incident", SYS_ID, "note")
    assert f"PATCH /api/now/table/incident/{SYS_ID}" in str(info.value)
    assert is_transient(info.value)


@respx.mock
def test_malformed_json_is_permanent_and_names_the_endpoint(client: ServiceDeskClient) -> None:
    # A hibernating developer instance answers 200 with an HTML page.
    respx.get(INCIDENTS).mock(return_value=httpx.Response(
        200, text="<html><body>Instance Hibernating</body></html>", headers={"content-type": "text/html"}))
    with pytest.raises(ServiceDeskRequestFailed) as info:
        client.find_incident("drill:acme:1")
    assert "GET /api/now/table/incident" in str(info.value)
    assert "not JSON" in str(info.value)
    assert not is_transient(info.value)


@respx.mock
@pytest.mark.parametrize("body", [{"results": []}, {"result": "nope"}, [1, 2]])
def test_json_without_the_result_envelope_is_permanent(client: ServiceDeskClient, body: Any) -> None:
    respx.get(INCIDENTS).mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(ServiceDeskRequestFailed, match="GET /api/now/table/incident"):
        client.find_incident("drill:acme:1")


@respx.mock
def test_record_missing_sys_id_is_permanent(client: ServiceDeskClient) -> None:
    respx.post(INCIDENTS).mock(return_value=httpx.Response(201, json={"result": {"number": "INC1"}}))
    with pytest.raises(ServiceDeskRequestFailed, match=r"lacks or has invalid fields \['sys_id'\]"):
        client.create_incident(IncidentCreate(short_description="x"))


@respx.mock
def test_404_is_record_not_found_and_400_carries_servicenow_message(client: ServiceDeskClient) -> None:
    respx.get(f"{INCIDENTS}/{SYS_ID}").mock(return_value=httpx.Response(
        404, json={"error": {"message": "No Record found", "detail": ""}, "status": "failure"}))
    with pytest.raises(ServiceDeskRecordNotFound, match="No Record found"):
        client.get_incident(SYS_ID)
    respx.post(INCIDENTS).mock(return_value=httpx.Response(
        400, json={"error": {"message": "Invalid table incident", "detail": ""}, "status": "failure"}))
    with pytest.raises(ServiceDeskRequestFailed, match="HTTP 400 Invalid table incident") as info:
        client.create_incident(IncidentCreate(short_description="x"))
    assert not isinstance(info.value, ServiceDeskRecordNotFound)


@respx.mock
@pytest.mark.parametrize("response", [
    httpx.Response(401, json={"error": {"message": f"bad password {PASSWORD}"}}),
    httpx.Response(503, text=f"proxy error for integration:{PASSWORD}"),
    httpx.Response(500, json={"error": {"message": "x", "detail": f"echo {PASSWORD}"}}),
    httpx.Response(200, text=f"not json {PASSWORD}"),
])
def test_password_never_appears_in_errors_or_logs(client: ServiceDeskClient, response: httpx.Response,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    route = respx.post(INCIDENTS).mock(return_value=response)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ServiceDeskError) as info:
        client.create_incident(IncidentCreate(short_description="x"))
    assert PASSWORD not in _all_text(info.value)
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(client)
    # The password did go out, in the Basic auth header only.
    assert route.calls.last.request.headers["authorization"].startswith("Basic ")


def test_password_never_appears_when_the_transport_fails(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with (ServiceDeskClient(BASE, "integration", PASSWORD, transport=httpx.MockTransport(boom)) as c,
          pytest.raises(ServiceDeskTransientError) as info):
        c.find_change_request("failover:acme:1")
    assert PASSWORD not in _all_text(info.value) + caplog.text


def test_url_with_credentials_or_bad_scheme_is_rejected() -> None:
    with pytest.raises(ValueError, match="must not contain credentials") as info:
        ServiceDeskClient(f"https://integration:{PASSWORD}@desk.example.test", "integration", PASSWORD)
    assert PASSWORD not in str(info.value)
    with pytest.raises(ValueError):
        ServiceDeskClient("ftp://desk.example.test", "u", "p")


@respx.mock
def test_ensure_incident_finds_before_creating(client: ServiceDeskClient) -> None:
    created: list[dict[str, Any]] = []

    def query(request: httpx.Request) -> httpx.Response:
        q = request.url.params["sysparm_query"]
        assert q == "correlation_id=drill:acme:1^ORDERBYsys_created_on"
        assert request.url.params["sysparm_limit"] == "1"
        return httpx.Response(200, json={"result": created[:1]})

    def create(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        created.append(_record(**body))
        return httpx.Response(201, json={"result": created[-1]})

    respx.get(INCIDENTS).mock(side_effect=query)
    post = respx.post(INCIDENTS).mock(side_effect=create)
    new = IncidentCreate(short_description="Drill failed", correlation_id="drill:acme:1", urgency=2)
    first, was_created = client.ensure_incident(new)
    second, again = client.ensure_incident(new)
    assert (was_created, again) == (True, False)
    assert post.call_count == 1
    assert first.sys_id == second.sys_id == SYS_ID
    sent = json.loads(post.calls.last.request.content)
    assert sent == {"short_description": "Drill failed", "urgency": "2", "impact": "3",
                    "correlation_id": "drill:acme:1"}
    # Reference fields come back as {"link", "value"} on real instances.
    assert first.assignment_group == "abc"
    assert first.active is True


def test_models_refuse_what_would_break_an_encoded_query() -> None:
    with pytest.raises(ValidationError):
        IncidentCreate(short_description="x", correlation_id="a^ORactive=true")
    with pytest.raises(ValidationError):
        ChangeRequestCreate(short_description="x", type="whenever")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        IncidentCreate(short_description="x", bogus="y")  # type: ignore[call-arg]
    c = ServiceDeskClient(BASE, "u", "p")
    with pytest.raises(ValueError):
        c.query("incident", {"correlation_id": "a^b"})
    with pytest.raises(ValueError, match="not a sys_id"):
        c.get_incident("../sys_user/1")


@respx.mock
def test_resolve_and_close_send_servicenow_states(client: ServiceDeskClient) -> None:
    inc = respx.patch(f"{INCIDENTS}/{SYS_ID}").mock(return_value=httpx.Response(
        200, json={"result": _record(state="6", active="false")}))
    chg = respx.patch(f"{BASE}/api/now/table/change_request/{SYS_ID}").mock(return_value=httpx.Response(
        200, json={"result": _record(number="CHG0030001", state="3", active="false")}))
    resolved = client.resolve_incident(SYS_ID, "re-run passed")
    closed = client.close_change_request(SYS_ID, "DR invocation complete")
    assert json.loads(inc.calls.last.request.content) == {
        "state": "6", "close_code": "Solved (Permanently)", "close_notes": "re-run passed"}
    assert json.loads(chg.calls.last.request.content) == {
        "state": "3", "close_code": "successful", "close_notes": "DR invocation complete"}
    assert resolved.is_resolved and not resolved.active
    assert closed.is_closed


# -- notifier ----------------------------------------------------------------------------------
NOTE = Notification(event="rpo_breach", subject="RPO breached for acme", message="RPO 900 s > 300 s",
                    severity="critical", tenant="acme", details={"vpg": "acme-gold"})


@respx.mock
def test_webhook_posts_json_with_bearer_token() -> None:
    route = respx.post("https://hooks.example.test/draas").mock(return_value=httpx.Response(202))
    with Notifier("https://hooks.example.test/draas", webhook_token=TOKEN) as n:
        receipt = n.send(NOTE)
    assert receipt.webhook and not receipt.email
    req = route.calls.last.request
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    body = json.loads(req.content)
    assert body["event"] == "rpo_breach" and body["tenant"] == "acme" and body["details"] == {"vpg": "acme-gold"}
    assert TOKEN not in repr(n)


@respx.mock
def test_webhook_failures_are_classified_without_leaking_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    respx.post("https://hooks.example.test/draas").mock(
        side_effect=[httpx.Response(503, text=f"token {TOKEN} rejected upstream"), httpx.Response(403),
                     httpx.ReadTimeout("slow")])
    n = Notifier("https://hooks.example.test/draas", webhook_token=TOKEN)
    for expected in (ServiceDeskTransientError, ServiceDeskAuthFailed, ServiceDeskTransientError):
        with pytest.raises(expected) as info:
            n.send(NOTE)
        assert "POST /draas (webhook)" in str(info.value)
        assert TOKEN not in _all_text(info.value)
    assert TOKEN not in caplog.text


class FakeSMTP:
    """Stands in for smtplib.SMTP; records what the notifier did."""

    instances: ClassVar[list[FakeSMTP]] = []

    def __init__(self, host: str, port: int, timeout: float, fail_login: bool = False) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.fail_login = fail_login
        self.logins: list[tuple[str, str]] = []
        self.sent: list[Any] = []
        FakeSMTP.instances.append(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def starttls(self, context: Any = None) -> None:
        raise AssertionError("STARTTLS not configured")

    def login(self, user: str, password: str) -> None:
        self.logins.append((user, password))
        if self.fail_login:
            raise smtplib.SMTPAuthenticationError(535, b"5.7.8 Authentication credentials invalid")

    def send_message(self, msg: Any) -> dict[str, Any]:
        self.sent.append(msg)
        return {}


def test_email_goes_through_the_smtp_relay() -> None:
    FakeSMTP.instances.clear()
    n = Notifier(smtp_host="relay.example.test", smtp_port=2525, smtp_username="draas", smtp_password=PASSWORD,
                 email_from="draas@sp.example", email_to=["noc@sp.example", "dr@sp.example"],
                 smtp_factory=lambda h, p, t: FakeSMTP(h, p, t))  # type: ignore[arg-type,return-value]
    receipt = n.send(NOTE)
    assert receipt.email and not receipt.webhook
    assert receipt.email_recipients == ["noc@sp.example", "dr@sp.example"]
    smtp = FakeSMTP.instances[-1]
    assert (smtp.host, smtp.port) == ("relay.example.test", 2525)
    assert smtp.logins == [("draas", PASSWORD)]
    msg = smtp.sent[0]
    assert msg["Subject"] == "[DRaaS critical] RPO breached for acme"
    assert msg["To"] == "noc@sp.example, dr@sp.example"
    assert "tenant: acme" in msg.get_content() and "vpg: acme-gold" in msg.get_content()


def test_smtp_login_refused_is_auth_failed_without_password() -> None:
    n = Notifier(smtp_host="relay.example.test", smtp_username="draas", smtp_password=PASSWORD,
                 email_to=["noc@sp.example"],
                 smtp_factory=lambda h, p, t: FakeSMTP(h, p, t, fail_login=True))  # type: ignore[arg-type,return-value]
    with pytest.raises(ServiceDeskAuthFailed, match="login refused") as info:
        n.send(NOTE)
    assert PASSWORD not in _all_text(info.value)


def test_smtp_unreachable_is_transient() -> None:
    def refuse(host: str, port: int, timeout: float) -> smtplib.SMTP:
        raise ConnectionRefusedError(111, "Connection refused")

    n = Notifier(smtp_host="relay.example.test", email_to=["noc@sp.example"], smtp_factory=refuse)
    with pytest.raises(ServiceDeskTransientError, match="SMTP relay.example.test:25"):
        n.send(NOTE)


def test_notifier_needs_a_channel() -> None:
    with pytest.raises(ValueError, match="no notification channel"):
        Notifier().send(NOTE)
    with pytest.raises(ValueError, match="recipient"):
        Notifier(smtp_host="relay.example.test")

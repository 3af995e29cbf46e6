"""Service desk adapter: incidents and change records over ServiceNow's Table API, plus notifications.

``ServiceDeskClient`` creates, updates, queries and resolves ``incident`` and
``change_request`` records and appends work notes. Records the product opens carry a
``correlation_id`` (for instance ``draas:drill:acme:<run id>``); ``ensure_incident`` and
``ensure_change_request`` look that id up first, so a retried step never opens a duplicate.

``Notifier`` sends plain notifications: a JSON webhook and/or an email over SMTP.

Exceptions::

    ServiceDeskError (DraasError)
    ├── ServiceDeskTransientError (TransientError)  HTTP 5xx / 429, timeout, connection lost
    ├── ServiceDeskAuthFailed (PermanentError)      HTTP 401 / 403, SMTP authentication refused
    └── ServiceDeskRequestFailed (PermanentError)   other HTTP 4xx, unexpected or malformed answer
        └── ServiceDeskRecordNotFound               no record with that sys_id / correlation id

Messages name the method and endpoint; they never contain credentials.
"""

from __future__ import annotations

import json
import re
import smtplib
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from enum import Enum
from types import TracebackType
from typing import Any, ClassVar, Literal, Self, cast

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from draas.errors import DraasError, PermanentError, TransientError

Table = Literal["incident", "change_request"]
INCIDENT: Table = "incident"
CHANGE_REQUEST: Table = "change_request"


# -- exceptions --------------------------------------------------------------------------------
class ServiceDeskError(DraasError):
    """Base of every error the service desk adapter raises."""


class ServiceDeskTransientError(ServiceDeskError, TransientError):
    """Worth retrying: the service desk is busy, down, or did not answer in time."""


class ServiceDeskAuthFailed(ServiceDeskError, PermanentError):
    """The credentials were refused (or lack the role for the table)."""


class ServiceDeskRequestFailed(ServiceDeskError, PermanentError):
    """The request was rejected, or the answer was not what the Table API returns."""


class ServiceDeskRecordNotFound(ServiceDeskRequestFailed):
    """No record matches the sys_id or correlation id."""


# -- states ----------------------------------------------------------------------------------------
class IncidentState(str, Enum):
    """ServiceNow incident states (values as the API returns them)."""

    NEW = "1"
    IN_PROGRESS = "2"
    ON_HOLD = "3"
    RESOLVED = "6"
    CLOSED = "7"
    CANCELED = "8"


class ChangeState(str, Enum):
    """ServiceNow change_request states (values as the API returns them)."""

    NEW = "-5"
    ASSESS = "-4"
    AUTHORIZE = "-3"
    SCHEDULED = "-2"
    IMPLEMENT = "-1"
    REVIEW = "0"
    CLOSED = "3"
    CANCELED = "4"


# -- models ------------------------------------------------------------------------------------------
_CORRELATION = r"^[^\^\r\n]{1,100}$"  # '^' separates encoded-query terms, so it cannot be matched


def _sn_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def payload(self) -> dict[str, str]:
        """The request body: set fields only, as strings (the Table API stores strings)."""
        out: dict[str, str] = {}
        for key, value in self.model_dump(exclude_none=True).items():
            if isinstance(value, datetime):
                out[key] = _sn_time(value) or ""
            elif isinstance(value, Enum):
                out[key] = str(value.value)
            else:
                out[key] = str(value)
        return out


class IncidentCreate(_Fields):
    """A new incident."""

    short_description: str = Field(min_length=1, max_length=160)
    description: str | None = None
    urgency: Literal[1, 2, 3] = 3
    impact: Literal[1, 2, 3] = 3
    assignment_group: str | None = None
    caller_id: str | None = None
    category: str | None = None
    correlation_id: str | None = Field(default=None, pattern=_CORRELATION)
    correlation_display: str | None = Field(default=None, max_length=100)
    work_notes: str | None = None


class ChangeRequestCreate(_Fields):
    """A new change record (a DR invocation, a drill, a failback)."""

    short_description: str = Field(min_length=1, max_length=160)
    description: str | None = None
    type: Literal["normal", "standard", "emergency"] = "normal"
    risk: Literal[1, 2, 3, 4] | None = None
    impact: Literal[1, 2, 3] | None = None
    assignment_group: str | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    justification: str | None = None
    implementation_plan: str | None = None
    backout_plan: str | None = None
    test_plan: str | None = None
    correlation_id: str | None = Field(default=None, pattern=_CORRELATION)
    correlation_display: str | None = Field(default=None, max_length=100)
    work_notes: str | None = None


class ServiceDeskRecord(BaseModel):
    """A record as the Table API returns it (reference fields reduced to their value)."""

    model_config = ConfigDict(extra="ignore")

    table: str = ""
    sys_id: str
    number: str
    state: str = ""
    short_description: str = ""
    description: str = ""
    assignment_group: str = ""
    correlation_id: str = ""
    correlation_display: str = ""
    close_code: str = ""
    close_notes: str = ""
    work_notes: str = ""
    active: bool = True
    opened_at: str = ""
    sys_updated_on: str = ""

    @field_validator("*", mode="before")
    @classmethod
    def _reference_value(cls, v: Any) -> Any:
        # Real instances return references as {"link": ..., "value": sys_id}; keep the value.
        if isinstance(v, dict) and "value" in v:
            return v["value"]
        return v

    @field_validator("active", mode="before")
    @classmethod
    def _bool(cls, v: Any) -> Any:
        if isinstance(v, str):
            return v.strip().lower() == "true"
        return v


class Incident(ServiceDeskRecord):
    """An incident."""

    urgency: str = ""
    impact: str = ""
    priority: str = ""
    caller_id: str = ""
    resolved_at: str = ""
    closed_at: str = ""

    @property
    def is_resolved(self) -> bool:
        return self.state in (IncidentState.RESOLVED, IncidentState.CLOSED, IncidentState.CANCELED)


class ChangeRequest(ServiceDeskRecord):
    """A change record."""

    type: str = ""
    risk: str = ""
    start_date: str = ""
    end_date: str = ""
    closed_at: str = ""

    @property
    def is_closed(self) -> bool:
        return self.state in (ChangeState.CLOSED, ChangeState.CANCELED)


class WorkNote(BaseModel):
    """One journal entry of a record's work notes."""

    model_config = ConfigDict(extra="ignore")

    sys_id: str
    value: str
    sys_created_on: str = ""
    sys_created_by: str = ""


_MODELS: dict[str, type[ServiceDeskRecord]] = {INCIDENT: Incident, CHANGE_REQUEST: ChangeRequest}


# -- HTTP helpers shared by the client and the notifier ----------------------------------------
def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _check_base_url(url: str) -> str:
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("service desk URL must be http(s)://host[:port][/path]")
    if parsed.userinfo:
        # Credentials in a URL end up in logs and exception texts; they go in the auth fields.
        raise ValueError("service desk URL must not contain credentials")
    return url.rstrip("/")


def _error_detail(response: httpx.Response) -> str:
    """ServiceNow's ``error.message`` (and detail) when present, else the reason phrase."""
    try:
        body = response.json()
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            parts = [str(err.get("message") or ""), str(err.get("detail") or "")]
            text = ": ".join(p for p in parts if p)
            if text:
                return text[:300]
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        pass
    return response.reason_phrase or ""


def _raise_for_status(response: httpx.Response, what: str, secrets: list[str]) -> None:
    status = response.status_code
    if status < 400:
        return
    detail = _redact(_error_detail(response), secrets)
    text = f"{what}: HTTP {status}" + (f" {detail}" if detail else "")
    if status in (401, 403):
        raise ServiceDeskAuthFailed(text)
    if status == 404:
        raise ServiceDeskRecordNotFound(text)
    if status == 429 or status >= 500:
        raise ServiceDeskTransientError(text)
    raise ServiceDeskRequestFailed(text)


def _send(client: httpx.Client, method: str, path: str, what: str, secrets: list[str],
          **kwargs: Any) -> httpx.Response:
    """One HTTP exchange with transport failures mapped onto the adapter's exceptions."""
    try:
        response = client.request(method, path, **kwargs)
    except httpx.TimeoutException as exc:
        raise ServiceDeskTransientError(f"{what}: timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise ServiceDeskTransientError(f"{what}: connection failed ({type(exc).__name__})") from exc
    _raise_for_status(response, what, secrets)
    return response


# -- client --------------------------------------------------------------------------------------------
class ServiceDeskClient:
    """ServiceNow Table API client for incidents, change records and their work notes.

    Args:
        url: Instance base URL, e.g. ``https://example.service-now.com``.
        username: Integration user (Basic auth).
        password: Its password.
        verify_tls: Verify the server certificate (keep on outside the lab).
        timeout: Seconds per request.
        transport: httpx transport seam for tests.
    """

    #: Basic auth on every request over one httpx.Client (thread-safe connection pool): one
    #: client may serve many threads at once (draas.sessions shares it within a flow run).
    thread_safe: ClassVar[bool] = True

    def __init__(self, url: str, username: str, password: str | SecretStr, *, verify_tls: bool = True,
                 timeout: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = _check_base_url(url)
        self.username = username
        self._password = password if isinstance(password, SecretStr) else SecretStr(password)
        self._http = httpx.Client(
            base_url=self.url, auth=httpx.BasicAuth(username, self._password.get_secret_value()),
            verify=verify_tls, timeout=timeout, transport=transport,
            headers={"Accept": "application/json", "Content-Type": "application/json"},
        )

    def __repr__(self) -> str:
        return f"ServiceDeskClient(url={self.url!r}, username={self.username!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def check_connection(self) -> None:
        """Read one incident: proves the URL, the credentials and the table role in one request.

        Raises:
            ServiceDeskAuthFailed, ServiceDeskTransientError, ServiceDeskRequestFailed.
        """
        path = "/api/now/table/incident"
        rows = self._call("GET", path, params={"sysparm_limit": "1", "sysparm_fields": "sys_id"})
        if not isinstance(rows, list):
            raise ServiceDeskRequestFailed(f"GET {path}: expected a list of records")

    # -- generic Table API -----------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and return the ``result`` member of the answer."""
        what = f"{method} {path}"
        response = _send(self._http, method, path, what, [self._password.get_secret_value()], **kwargs)
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ServiceDeskRequestFailed(
                f"{what}: HTTP {response.status_code} answer is not JSON "
                f"(content-type {response.headers.get('content-type', '?')!r})") from exc
        if not isinstance(body, dict) or "result" not in body:
            raise ServiceDeskRequestFailed(f"{what}: answer has no 'result' member")
        return body["result"]

    def _record(self, table: str, data: Any, what: str) -> ServiceDeskRecord:
        model = _MODELS[table]
        if not isinstance(data, dict):
            raise ServiceDeskRequestFailed(f"{what}: expected one record, got {type(data).__name__}")
        try:
            return model.model_validate({**data, "table": table})
        except ValidationError as exc:
            fields = sorted({str(e["loc"][0]) for e in exc.errors() if e.get("loc")})
            raise ServiceDeskRequestFailed(f"{what}: record lacks or has invalid fields {fields}") from exc

    def create(self, table: Table, fields: dict[str, str]) -> ServiceDeskRecord:
        """POST a new record to ``table``."""
        path = f"/api/now/table/{table}"
        return self._record(table, self._call("POST", path, json=fields), f"POST {path}")

    def get(self, table: Table, sys_id: str) -> ServiceDeskRecord:
        """GET one record by sys_id.

        Raises:
            ServiceDeskRecordNotFound: no such record.
        """
        path = f"/api/now/table/{table}/{_sys_id(sys_id)}"
        return self._record(table, self._call("GET", path), f"GET {path}")

    def update(self, table: Table, sys_id: str, fields: dict[str, str]) -> ServiceDeskRecord:
        """PATCH fields of one record (journal fields such as work_notes append)."""
        path = f"/api/now/table/{table}/{_sys_id(sys_id)}"
        return self._record(table, self._call("PATCH", path, json=fields), f"PATCH {path}")

    def query(self, table: Table, conditions: dict[str, str], *, limit: int = 100,
              order_by: str = "sys_created_on") -> list[ServiceDeskRecord]:
        """Records whose fields equal ``conditions`` (an encoded query ``a=b^c=d``), oldest first."""
        for key, value in conditions.items():
            if not re.fullmatch(r"[a-z0-9_.]+", key) or "^" in value or "\n" in value:
                raise ValueError(f"cannot query {key!r}: names are lower case, values must not contain '^'")
        terms = [f"{k}={v}" for k, v in conditions.items()] + [f"ORDERBY{order_by}"]
        path = f"/api/now/table/{table}"
        what = f"GET {path}"
        rows = self._call("GET", path, params={"sysparm_query": "^".join(terms), "sysparm_limit": str(limit)})
        if not isinstance(rows, list):
            raise ServiceDeskRequestFailed(f"{what}: expected a list of records")
        return [self._record(table, row, what) for row in rows]

    def find_by_correlation_id(self, table: Table, correlation_id: str) -> ServiceDeskRecord | None:
        """The oldest record of ``table`` carrying ``correlation_id``, active or not, or None."""
        found = self.query(table, {"correlation_id": correlation_id}, limit=1)
        return found[0] if found else None

    def add_work_note(self, table: Table, sys_id: str, note: str) -> ServiceDeskRecord:
        """Append a work note (visible to the desk, not to the customer)."""
        if not note.strip():
            raise ValueError("work note is empty")
        return self.update(table, sys_id, {"work_notes": note})

    def work_notes(self, table: Table, sys_id: str) -> list[WorkNote]:
        """The record's work notes, oldest first (read from sys_journal_field)."""
        path = "/api/now/table/sys_journal_field"
        query = f"element_id={_sys_id(sys_id)}^element=work_notes^name={table}^ORDERBYsys_created_on"
        rows = self._call("GET", path, params={"sysparm_query": query,
                                              "sysparm_fields": "sys_id,value,sys_created_on,sys_created_by"})
        if not isinstance(rows, list):
            raise ServiceDeskRequestFailed(f"GET {path}: expected a list of journal entries")
        try:
            return [WorkNote.model_validate(r) for r in rows]
        except ValidationError as exc:
            raise ServiceDeskRequestFailed(f"GET {path}: malformed journal entry") from exc

    # -- incidents -------------------------------------------------------------------------------------
    def create_incident(self, incident: IncidentCreate) -> Incident:
        return cast(Incident, self.create(INCIDENT, incident.payload()))

    def get_incident(self, sys_id: str) -> Incident:
        return cast(Incident, self.get(INCIDENT, sys_id))

    def update_incident(self, sys_id: str, fields: dict[str, str]) -> Incident:
        return cast(Incident, self.update(INCIDENT, sys_id, fields))

    def find_incident(self, correlation_id: str) -> Incident | None:
        return cast("Incident | None", self.find_by_correlation_id(INCIDENT, correlation_id))

    def ensure_incident(self, incident: IncidentCreate) -> tuple[Incident, bool]:
        """The incident with ``incident.correlation_id``, created when there is none; (record, created)."""
        if not incident.correlation_id:
            raise ValueError("ensure_incident needs a correlation_id to find an earlier attempt")
        found = self.find_incident(incident.correlation_id)
        if found is not None:
            return found, False
        return self.create_incident(incident), True

    def resolve_incident(self, sys_id: str, close_notes: str,
                         close_code: str = "Solved (Permanently)") -> Incident:
        """Set the incident to Resolved with a resolution code and notes."""
        return self.update_incident(sys_id, {"state": IncidentState.RESOLVED.value, "close_code": close_code,
                                             "close_notes": close_notes})

    def close_incident(self, sys_id: str, close_notes: str, close_code: str = "Solved (Permanently)") -> Incident:
        """Set the incident to Closed (most instances close resolved incidents by themselves)."""
        return self.update_incident(sys_id, {"state": IncidentState.CLOSED.value, "close_code": close_code,
                                             "close_notes": close_notes})

    # -- change requests -------------------------------------------------------------------------------
    def create_change_request(self, change: ChangeRequestCreate) -> ChangeRequest:
        return cast(ChangeRequest, self.create(CHANGE_REQUEST, change.payload()))

    def get_change_request(self, sys_id: str) -> ChangeRequest:
        return cast(ChangeRequest, self.get(CHANGE_REQUEST, sys_id))

    def update_change_request(self, sys_id: str, fields: dict[str, str]) -> ChangeRequest:
        return cast(ChangeRequest, self.update(CHANGE_REQUEST, sys_id, fields))

    def find_change_request(self, correlation_id: str) -> ChangeRequest | None:
        return cast("ChangeRequest | None", self.find_by_correlation_id(CHANGE_REQUEST, correlation_id))

    def ensure_change_request(self, change: ChangeRequestCreate) -> tuple[ChangeRequest, bool]:
        """The change with ``change.correlation_id``, created when there is none; (record, created)."""
        if not change.correlation_id:
            raise ValueError("ensure_change_request needs a correlation_id to find an earlier attempt")
        found = self.find_change_request(change.correlation_id)
        if found is not None:
            return found, False
        return self.create_change_request(change), True

    def close_change_request(self, sys_id: str, close_notes: str, close_code: str = "successful") -> ChangeRequest:
        """Set the change to Closed with a close code (successful, successful_issues, unsuccessful)."""
        return self.update_change_request(sys_id, {"state": ChangeState.CLOSED.value, "close_code": close_code,
                                                   "close_notes": close_notes})


def _sys_id(sys_id: str) -> str:
    # A sys_id goes into the URL path; refuse anything that could change the path.
    if not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", sys_id):
        raise ValueError(f"not a sys_id: {sys_id!r}")
    return sys_id


# -- notifications ----------------------------------------------------------------------------------------
class Notification(BaseModel):
    """A plain notification: an RPO breach, a drill result, a DR invocation."""

    event: str = Field(min_length=1, description="Machine-readable event, e.g. rpo_breach.")
    subject: str = Field(min_length=1, max_length=200)
    message: str = ""
    severity: Literal["info", "warning", "critical"] = "info"
    tenant: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class NotificationReceipt(BaseModel):
    """Which channels accepted the notification."""

    webhook: bool = False
    email: bool = False
    email_recipients: list[str] = Field(default_factory=list)


SmtpFactory = Callable[[str, int, float], smtplib.SMTP]


class Notifier:
    """Sends notifications to a JSON webhook and/or by email (SMTP); either channel may be off.

    Args:
        webhook_url: URL that receives a POST of the notification as JSON.
        webhook_token: Optional bearer token for the webhook.
        smtp_host: SMTP relay; email is off when unset.
        smtp_port: Its port.
        smtp_starttls: Upgrade the SMTP session with STARTTLS (verified unless ``verify_tls`` is off).
        smtp_username: Optional SMTP login.
        smtp_password: Its password.
        email_from: Sender address.
        email_to: Recipients.
        verify_tls: Verify certificates (webhook and STARTTLS).
        timeout: Seconds per request.
        transport: httpx transport seam for tests.
        smtp_factory: SMTP connection seam for tests: ``(host, port, timeout) -> smtplib.SMTP``.
    """

    def __init__(self, webhook_url: str | None = None, *, webhook_token: str | SecretStr | None = None,
                 smtp_host: str | None = None, smtp_port: int = 25, smtp_starttls: bool = False,
                 smtp_username: str | None = None, smtp_password: str | SecretStr | None = None,
                 email_from: str = "draas@localhost", email_to: list[str] | None = None,
                 verify_tls: bool = True, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None, smtp_factory: SmtpFactory | None = None) -> None:
        self.webhook_url = _check_base_url(webhook_url) if webhook_url else None
        self._token = SecretStr(webhook_token) if isinstance(webhook_token, str) else webhook_token
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port
        self.smtp_starttls = smtp_starttls
        self.smtp_username = smtp_username
        self._smtp_password = SecretStr(smtp_password) if isinstance(smtp_password, str) else smtp_password
        self.email_from = email_from
        self.email_to = list(email_to or [])
        self.verify_tls = verify_tls
        self.timeout = timeout
        self._smtp_factory: SmtpFactory = smtp_factory or (lambda h, p, t: smtplib.SMTP(h, p, timeout=t))
        self._http = httpx.Client(verify=verify_tls, timeout=timeout, transport=transport)
        if self.smtp_host and not self.email_to:
            raise ValueError("email notifications need at least one recipient")

    def __repr__(self) -> str:
        return f"Notifier(webhook_url={self.webhook_url!r}, smtp_host={self.smtp_host!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _secrets(self) -> list[str]:
        return [s.get_secret_value() for s in (self._token, self._smtp_password) if s is not None]

    def send(self, notification: Notification) -> NotificationReceipt:
        """Send on every configured channel.

        Raises:
            ValueError: no channel is configured.
            ServiceDeskError: a channel failed (transient for 5xx/timeouts/SMTP connection errors).
        """
        if not self.webhook_url and not self.smtp_host:
            raise ValueError("no notification channel configured (webhook_url or smtp_host)")
        receipt = NotificationReceipt()
        if self.webhook_url:
            self.send_webhook(notification)
            receipt.webhook = True
        if self.smtp_host:
            receipt.email_recipients = self.send_email(notification)
            receipt.email = True
        return receipt

    def send_webhook(self, notification: Notification) -> None:
        """POST the notification as JSON to the webhook."""
        if not self.webhook_url:
            raise ValueError("no webhook_url configured")
        headers = {"Content-Type": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        path = httpx.URL(self.webhook_url).path or "/"
        _send(self._http, "POST", self.webhook_url, f"POST {path} (webhook)", self._secrets(),
              content=notification.model_dump_json(), headers=headers)

    def send_email(self, notification: Notification) -> list[str]:
        """Email the notification; returns the recipients the relay accepted."""
        if not self.smtp_host:
            raise ValueError("no smtp_host configured")
        msg = EmailMessage()
        msg["Subject"] = f"[DRaaS {notification.severity}] {notification.subject}"
        msg["From"] = self.email_from
        msg["To"] = ", ".join(self.email_to)
        lines = [notification.message, "", f"event: {notification.event}", f"at: {notification.at.isoformat()}"]
        if notification.tenant:
            lines.append(f"tenant: {notification.tenant}")
        lines += [f"{k}: {v}" for k, v in notification.details.items()]
        msg.set_content("\n".join(lines).strip() + "\n")
        what = f"SMTP {self.smtp_host}:{self.smtp_port}"
        try:
            with self._smtp_factory(self.smtp_host, self.smtp_port, self.timeout) as smtp:
                if self.smtp_starttls:
                    ctx = ssl.create_default_context()
                    if not self.verify_tls:
                        ctx.check_hostname = False
                        ctx.verify_mode = ssl.CERT_NONE
                    smtp.starttls(context=ctx)
                if self.smtp_username and self._smtp_password is not None:
                    smtp.login(self.smtp_username, self._smtp_password.get_secret_value())
                refused = smtp.send_message(msg)
        except smtplib.SMTPAuthenticationError as exc:
            raise ServiceDeskAuthFailed(f"{what}: login refused (code {exc.smtp_code})") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise ServiceDeskRequestFailed(f"{what}: every recipient was refused") from exc
        except smtplib.SMTPResponseException as exc:
            kind = ServiceDeskTransientError if 400 <= exc.smtp_code < 500 else ServiceDeskRequestFailed
            raise kind(f"{what}: code {exc.smtp_code}") from exc
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError) as exc:
            raise ServiceDeskTransientError(f"{what}: connection failed ({type(exc).__name__})") from exc
        except smtplib.SMTPException as exc:
            raise ServiceDeskRequestFailed(f"{what}: {type(exc).__name__}") from exc
        return [r for r in self.email_to if r not in (refused or {})]

"""No secret appears in an exception (message, repr, traceback) or a log record when a call fails.

One failing call per adapter, made the way the product makes it (block -> client), with
every logger of the adapters and of the libraries under them (httpx, httpcore, paramiko,
netmiko, pyVmomi, ...) at DEBUG. A secret counts as leaked in any of its usual disguises:
as is, regex-escaped (netmiko logs the patterns it waits for), URL-encoded (form bodies)
and inside an HTTP Basic credential.

Networks used: loopback only — closed ports, a throwaway HTTP server that answers 401, and
the lab's Cisco CLI emulator served over SSH in this process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import smtplib
import socket
import threading
import traceback
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Literal, Self

import dns.flags
import dns.message
import dns.rcode
import dns.tsig
import httpx
import pytest
import respx
from netmiko.exceptions import NetmikoAuthenticationException
from pydantic import SecretStr
from pyVmomi import vim

from blocks.cisco import CiscoDeviceCredentials
from blocks.dns import DnsServerCredentials
from blocks.replication import ZertoCredentials
from blocks.servicedesk import ServiceDeskCredentials
from blocks.vcenter import VCenterCredentials
from draas.clients.cisco import CiscoAuthFailed, CiscoConfigPushFailed
from draas.clients.dns import (
    DnsClient,
    DnsRecord,
    DnsTransientError,
    DnsUpdateRefused,
    NetworkTransport,
)
from draas.clients.replication import ReplicationAuthFailed, ReplicationTransientError, ZertoClient
from draas.clients.servicedesk import (
    IncidentCreate,
    Notification,
    Notifier,
    ServiceDeskAuthFailed,
    ServiceDeskClient,
    ServiceDeskTransientError,
)
from draas.clients.vcenter import VCenterAuthFailed, VCenterClient, VCenterConnectionFailed
from draas.errors import DraasError, is_transient

#: Loggers set to DEBUG (the root logger too, for anything else).
LOGGERS = ("draas", "blocks", "tasks", "httpx", "httpcore", "paramiko", "netmiko", "pyVmomi", "urllib3", "dns",
           "smtplib", "prefect")
#: Records from the in-process test servers (the device's side), not from the product.
SERVER_SIDE = ("lab", "asyncssh", "asyncio")

USER = "svc-draas"
RECORD = DnsRecord(zone="acme.example.com", name="www", rtype="A", values=["10.10.3.40"])


# -- helpers ---------------------------------------------------------------------------------------


def disguises(secret: str) -> set[str]:
    """The forms a secret takes in logs and messages."""
    return {secret, re.escape(secret), urllib.parse.quote(secret), urllib.parse.quote_plus(secret)}


def basic(user: str, password: str) -> str:
    """The token of an HTTP Basic Authorization header."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Leaks:
    """Collects what an operator could see and checks it for secrets."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def product_records(self) -> list[logging.LogRecord]:
        return [r for r in self.caplog.records if not r.name.startswith(SERVER_SIDE)]

    def records_of(self, prefix: str) -> list[logging.LogRecord]:
        return [r for r in self.product_records() if r.name == prefix or r.name.startswith(prefix + ".")]

    def assert_hidden(self, exc: BaseException, *secrets: str) -> None:
        assert isinstance(exc, DraasError), f"not an adapter error: {type(exc).__name__}: {exc}"
        texts = {"message": str(exc), "repr": repr(exc),
                 "traceback": "".join(traceback.format_exception(exc))}  # what a failed task run logs
        for attr in ("command", "output", "failed_command", "pushed", "remaining"):  # Cisco's extra fields
            if hasattr(exc, attr):
                texts[f"exc.{attr}"] = str(getattr(exc, attr))
        for i, record in enumerate(self.product_records()):
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            texts[f"log {i} ({record.name})"] = text
        for secret in secrets:
            assert len(secret) >= 8, "secrets in this test must be distinctive"
            for form in disguises(secret):
                for where, text in texts.items():
                    assert form not in text, f"secret leaked ({form!r}) in {where}: {text[:500]}"


@pytest.fixture
def leaks(caplog: pytest.LogCaptureFixture) -> Iterator[Leaks]:
    caplog.set_level(logging.DEBUG)
    extra: list[logging.Logger] = []
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
        logger = logging.getLogger(name)
        if not logger.propagate:  # e.g. prefect's own loggers: hand them caplog's handler directly
            logger.addHandler(caplog.handler)
            extra.append(logger)
    yield Leaks(caplog)
    for logger in extra:
        logger.removeHandler(caplog.handler)


class Answer401(BaseHTTPRequestHandler):
    """Answers every request 401 with a ServiceNow-style body; remembers what it received."""

    received: ClassVar[list[dict[str, str]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace") if length else ""
        type(self).received.append({"authorization": self.headers.get("Authorization", ""), "body": body})
        payload = json.dumps({"error": {"message": "User Not Authenticated",
                                        "detail": "Required to provide Auth information"},
                              "status": "failure"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_401() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A real HTTP server on loopback that refuses everyone (so httpcore really runs)."""
    Answer401.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer401)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Answer401.received
    finally:
        server.shutdown()
        server.server_close()


# -- vCenter -------------------------------------------------------------------------------------------

VC_PASSWORD = "vc-Pass-8f2e-secret"


@pytest.mark.parametrize("protocol", ["http", "https"])
def test_vcenter_unreachable_with_a_password(leaks: Leaks, protocol: Literal["http", "https"]) -> None:
    creds = VCenterCredentials(host="127.0.0.1", port=closed_port(), username=USER,
                               password=SecretStr(VC_PASSWORD), protocol=protocol, timeout=2.0)
    with pytest.raises(VCenterConnectionFailed) as err, creds.get_client():
        pass
    assert is_transient(err.value)
    leaks.assert_hidden(err.value, VC_PASSWORD)


def test_vcenter_login_refused(leaks: Leaks) -> None:
    def refuse(params: Any) -> Any:
        assert params.password.get_secret_value() == VC_PASSWORD  # the factory did get the secret
        # vCenter's own text (the lab's vcsim answers the same; see the integration tests).
        raise vim.fault.InvalidLogin(msg="Cannot complete login due to an incorrect user name or password.")

    with pytest.raises(VCenterAuthFailed) as err, VCenterClient("vc.example.net", username=USER,
                                                                  password=VC_PASSWORD, connect=refuse):
        pass
    assert not is_transient(err.value)
    assert "InvalidLogin" in str(err.value)
    leaks.assert_hidden(err.value, VC_PASSWORD)


# -- DNS ------------------------------------------------------------------------------------------------

TSIG_SECRET = base64.b64encode(b"draas-unit-tsig-secret-32-bytes!").decode()
SERVER_TSIG_SECRET = base64.b64encode(b"the-primary-has-another-secret!!").decode()


def authoritative_nxdomain(message: dns.message.Message) -> dns.message.Message:
    query = dns.message.from_wire(message.to_wire())
    answer = dns.message.make_response(query)
    answer.flags |= dns.flags.AA
    answer.set_rcode(dns.rcode.NXDOMAIN)
    return dns.message.from_wire(answer.to_wire())


class PrimaryWithAnotherKey:
    """A primary whose copy of the TSIG key has another secret, answering as BIND does (BADSIG)."""

    def __init__(self, key_name: str) -> None:
        self.key = dns.tsig.Key(key_name, SERVER_TSIG_SECRET, dns.tsig.HMAC_SHA256)
        self.updates = 0

    def send(self, message: dns.message.Message, *, tcp: bool) -> dns.message.Message:
        if not tcp:
            return authoritative_nxdomain(message)
        self.updates += 1
        wire = message.to_wire()  # signed with the client's secret
        with pytest.raises(dns.tsig.BadSignature):
            dns.message.from_wire(wire, keyring=self.key)
        request = dns.message.from_wire(wire, keyring=False)  # read it without checking the MAC
        answer = dns.message.make_response(request)
        answer.use_tsig(self.key, tsig_error=dns.rcode.BADSIG)
        answer.set_rcode(dns.rcode.NOTAUTH)
        return dns.message.from_wire(answer.to_wire(), keyring=message.keyring, request_mac=message.mac)


class QueriesHereUpdatesToTheNetwork:
    """Answers queries (the record is absent) and sends the signed update to a real (closed) port."""

    def __init__(self, port: int) -> None:
        self.network = NetworkTransport("127.0.0.1", port, timeout=1.0)

    def send(self, message: dns.message.Message, *, tcp: bool) -> dns.message.Message:
        return self.network.send(message, tcp=tcp) if tcp else authoritative_nxdomain(message)


def test_dns_server_unreachable(leaks: Leaks) -> None:
    creds = DnsServerCredentials(server="127.0.0.1", port=closed_port(), tsig_key_name="draas-key",
                                 tsig_secret=SecretStr(TSIG_SECRET), timeout=0.3)
    with pytest.raises(DnsTransientError) as err, creds.get_client() as client:
        client.upsert(RECORD)
    leaks.assert_hidden(err.value, TSIG_SECRET)


def test_dns_signed_update_to_a_closed_port(leaks: Leaks) -> None:
    client = DnsClient("127.0.0.1", tsig_key_name="draas-key", tsig_secret=SecretStr(TSIG_SECRET),
                       transport=QueriesHereUpdatesToTheNetwork(closed_port()))
    with pytest.raises(DnsTransientError, match="unreachable|network error") as err, client:
        client.upsert(RECORD)
    leaks.assert_hidden(err.value, TSIG_SECRET)


def test_dns_update_with_a_bad_tsig_secret(leaks: Leaks) -> None:
    primary = PrimaryWithAnotherKey("draas-key")
    client = DnsClient("127.0.0.1", tsig_key_name="draas-key", tsig_secret=SecretStr(TSIG_SECRET), transport=primary)
    with pytest.raises(DnsUpdateRefused, match="signature") as err, client:
        client.upsert(RECORD)
    assert primary.updates == 1 and not is_transient(err.value)
    leaks.assert_hidden(err.value, TSIG_SECRET, SERVER_TSIG_SECRET)


# -- service desk and notifications -------------------------------------------------------------------------

SD_URL = "https://example.service-now.com"
SD_PASSWORD = "sd-Pass-41c7-secret"
WEBHOOK_TOKEN = "hook-Token-9a3b-secret"
SMTP_PASSWORD = "smtp-Pass-27d0-secret"
SN_401 = {"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
          "status": "failure"}


def test_servicedesk_401(leaks: Leaks) -> None:
    creds = ServiceDeskCredentials(url=SD_URL, username=USER, password=SecretStr(SD_PASSWORD))
    with respx.mock(base_url=SD_URL) as mock:
        route = mock.get(path="/api/now/table/incident").respond(401, json=SN_401)
        with pytest.raises(ServiceDeskAuthFailed) as err, creds.get_client() as client:
            client.ensure_incident(IncidentCreate(short_description="drill failed", correlation_id="draas:t:1"))
    assert route.call_count == 1
    assert route.calls.last.request.headers["Authorization"] == f"Basic {basic(USER, SD_PASSWORD)}"
    assert not is_transient(err.value) and "User Not Authenticated" in str(err.value)
    assert leaks.records_of("httpx"), "httpx logged nothing: is the capture at DEBUG?"
    leaks.assert_hidden(err.value, SD_PASSWORD, basic(USER, SD_PASSWORD))


def test_servicedesk_401_over_a_real_socket(leaks: Leaks, http_401: tuple[str, list[dict[str, str]]]) -> None:
    url, received = http_401
    with pytest.raises(ServiceDeskAuthFailed) as err, ServiceDeskClient(url, USER, SD_PASSWORD) as client:
        client.check_connection()
    assert received and received[0]["authorization"] == f"Basic {basic(USER, SD_PASSWORD)}"
    assert leaks.records_of("httpcore"), "httpcore logged nothing: is the capture at DEBUG?"
    leaks.assert_hidden(err.value, SD_PASSWORD, basic(USER, SD_PASSWORD))


def test_servicedesk_unreachable(leaks: Leaks) -> None:
    client = ServiceDeskClient(f"http://127.0.0.1:{closed_port()}", USER, SD_PASSWORD, timeout=2.0)
    with pytest.raises(ServiceDeskTransientError) as err, client:
        client.check_connection()
    leaks.assert_hidden(err.value, SD_PASSWORD, basic(USER, SD_PASSWORD))


def test_webhook_401_with_a_bearer_token(leaks: Leaks) -> None:
    creds = ServiceDeskCredentials(url=SD_URL, username=USER, password=SecretStr(SD_PASSWORD),
                                   webhook_url="https://hooks.example.net/draas",
                                   webhook_token=SecretStr(WEBHOOK_TOKEN))
    with respx.mock() as mock:
        route = mock.post("https://hooks.example.net/draas").respond(401, json={"error": "invalid token"})
        with pytest.raises(ServiceDeskAuthFailed) as err, creds.get_notifier() as notifier:
            notifier.send(Notification(event="drill_failed", subject="Drill failed", message="acme drill failed"))
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {WEBHOOK_TOKEN}"
    leaks.assert_hidden(err.value, WEBHOOK_TOKEN, SD_PASSWORD)


class RefusingSmtp:
    """An SMTP relay that refuses the login (the seam replaces smtplib.SMTP)."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.logins: list[str] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def login(self, user: str, password: str) -> None:
        self.logins.append(password)
        raise smtplib.SMTPAuthenticationError(535, b"5.7.8 Authentication credentials invalid")


def test_smtp_login_refused(leaks: Leaks) -> None:
    relays: list[RefusingSmtp] = []

    def factory(host: str, port: int, timeout: float) -> Any:
        relays.append(RefusingSmtp(host, port, timeout))
        return relays[-1]

    notifier = Notifier(smtp_host="smtp.example.net", smtp_username=USER, smtp_password=SMTP_PASSWORD,
                        email_to=["noc@example.net"], smtp_factory=factory)
    with pytest.raises(ServiceDeskAuthFailed, match="login refused") as err, notifier:
        notifier.send(Notification(event="rpo_breach", subject="RPO breach", message="acme RPO 900 s"))
    assert relays[0].logins == [SMTP_PASSWORD]
    leaks.assert_hidden(err.value, SMTP_PASSWORD)


# -- replication manager (Zerto) ----------------------------------------------------------------------------

ZVM_URL = "https://zvm.example.net:9669"
ZVM_PASSWORD = "zvm-Pass-6b1d-secret"
ZVM_SESSION = "zvm-session-token-f00dcafe"
ZVM_401 = {"Message": "Authorization has been denied for this request."}


def test_replication_session_login_401(leaks: Leaks) -> None:
    creds = ZertoCredentials(url=ZVM_URL, username=USER, password=SecretStr(ZVM_PASSWORD))
    with respx.mock(base_url=ZVM_URL) as mock:
        route = mock.post("/v1/session/add").respond(401, json=ZVM_401)
        with pytest.raises(ReplicationAuthFailed) as err, creds.get_client() as zvm:
            zvm.list_groups()
    assert route.calls.last.request.headers["Authorization"] == f"Basic {basic(USER, ZVM_PASSWORD)}"
    assert not is_transient(err.value)
    leaks.assert_hidden(err.value, ZVM_PASSWORD, basic(USER, ZVM_PASSWORD))


def test_replication_keycloak_login_401(leaks: Leaks) -> None:
    creds = ZertoCredentials(url=ZVM_URL, username=USER, password=SecretStr(ZVM_PASSWORD), auth_style="keycloak")
    with respx.mock(base_url=ZVM_URL) as mock:
        route = mock.post("/auth/realms/zerto/protocol/openid-connect/token").respond(
            401, json={"error": "invalid_grant", "error_description": "Invalid user credentials"})
        with pytest.raises(ReplicationAuthFailed) as err, creds.get_client() as zvm:
            zvm.list_groups()
    assert urllib.parse.quote_plus(ZVM_PASSWORD) in route.calls.last.request.content.decode()
    leaks.assert_hidden(err.value, ZVM_PASSWORD)


def test_replication_401_again_after_a_new_login_hides_the_session_token(leaks: Leaks) -> None:
    with respx.mock(base_url=ZVM_URL) as mock:
        login = mock.post("/v1/session/add").respond(200, headers={"x-zerto-session": ZVM_SESSION})
        vpgs = mock.get("/v1/vpgs").respond(401, json=ZVM_401)
        mock.delete("/v1/session").respond(200)
        with pytest.raises(ReplicationAuthFailed, match="again") as err, \
                ZertoClient(ZVM_URL, USER, ZVM_PASSWORD) as zvm:
            zvm.list_groups()
    assert login.call_count == 2 and vpgs.call_count == 2
    assert vpgs.calls.last.request.headers["x-zerto-session"] == ZVM_SESSION
    leaks.assert_hidden(err.value, ZVM_PASSWORD, basic(USER, ZVM_PASSWORD), ZVM_SESSION)


def test_replication_401_over_a_real_socket(leaks: Leaks, http_401: tuple[str, list[dict[str, str]]]) -> None:
    url, received = http_401
    with pytest.raises(ReplicationAuthFailed) as err, ZertoClient(url, USER, ZVM_PASSWORD) as zvm:
        zvm.list_groups()
    assert received[0]["authorization"] == f"Basic {basic(USER, ZVM_PASSWORD)}"
    assert leaks.records_of("httpcore")
    leaks.assert_hidden(err.value, ZVM_PASSWORD, basic(USER, ZVM_PASSWORD))


def test_replication_unreachable(leaks: Leaks) -> None:
    with pytest.raises(ReplicationTransientError) as err, \
            ZertoClient(f"http://127.0.0.1:{closed_port()}", USER, ZVM_PASSWORD, connect_timeout_s=2.0) as zvm:
        zvm.list_groups()
    leaks.assert_hidden(err.value, ZVM_PASSWORD, basic(USER, ZVM_PASSWORD))


# -- Cisco (netmiko over SSH to the lab's CLI emulator, in this process) -----------------------------------

SSH_PASSWORD = "ssh-Pass-3c9a-secret"
ENABLE_SECRET = "enable-Sec-77e1-secret"
COMMUNITY = "snmp-Comm-5d2f-secret"


@pytest.fixture(scope="module")
def ssh_device() -> Iterator[tuple[Any, int]]:
    """One emulated IOS-XE router (the lab's CLI state machine) behind a real SSH listener."""
    import asyncssh

    from lab.cisco.device import Device
    from lab.cisco.server import start_ssh

    device = Device({"name": "pe-x", "hostname": "dr-pe-x", "platform": "cisco_ios", "role": "pe-router"}, 0,
                    username=USER, password=SSH_PASSWORD, secret=ENABLE_SECRET)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    acceptor: dict[str, Any] = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        acceptor["server"] = loop.run_until_complete(start_ssh(device, asyncssh.generate_private_key("ssh-ed25519")))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10), "the SSH emulator did not start"
    port = int(acceptor["server"].sockets[0].getsockname()[1])
    try:
        yield device, port
    finally:
        acceptor["server"].close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def cisco_creds(port: int, password: str = SSH_PASSWORD, secret: str = ENABLE_SECRET) -> CiscoDeviceCredentials:
    # The emulator's host key is new at every start: host key checking off, as for the lab.
    return CiscoDeviceCredentials(device_name="pe-x", host="127.0.0.1", port=port, platform="cisco_ios",
                                  username=USER, password=SecretStr(password), enable_secret=SecretStr(secret),
                                  verify_host_key=False, conn_timeout=5.0, read_timeout=10.0)


def test_cisco_wrong_ssh_password(leaks: Leaks, ssh_device: tuple[Any, int]) -> None:
    _, port = ssh_device
    wrong = "wrong-" + SSH_PASSWORD
    with pytest.raises(CiscoAuthFailed, match="authentication refused") as err, \
            cisco_creds(port, password=wrong).get_client():
        pass
    assert leaks.records_of("paramiko"), "paramiko logged nothing: is the capture at DEBUG?"
    leaks.assert_hidden(err.value, wrong, SSH_PASSWORD, ENABLE_SECRET)


def test_cisco_wrong_enable_secret(leaks: Leaks, ssh_device: tuple[Any, int]) -> None:
    _, port = ssh_device
    wrong = "wrong-" + ENABLE_SECRET
    with pytest.raises(CiscoAuthFailed, match="enable") as err, cisco_creds(port, secret=wrong).get_client():
        pass
    # netmiko did type the secret (and logged the keystrokes, masked).
    assert any("write_channel" in r.getMessage() and "****" in r.getMessage() for r in leaks.records_of("netmiko"))
    leaks.assert_hidden(err.value, wrong, SSH_PASSWORD, ENABLE_SECRET)


def test_cisco_rejected_config_line_with_a_secret(leaks: Leaks, ssh_device: tuple[Any, int]) -> None:
    from lab.cisco.device import Fault

    device, port = ssh_device
    device.faults.append(Fault(pattern=re.compile("community"), times=1))
    with pytest.raises(CiscoConfigPushFailed) as err, cisco_creds(port).get_client() as client:
        client.apply(f"snmp-server community {COMMUNITY} RO\n")
    assert err.value.reverted
    leaks.assert_hidden(err.value, COMMUNITY, SSH_PASSWORD, ENABLE_SECRET)


def test_cisco_auth_failure_through_the_connection_factory(leaks: Leaks) -> None:
    seen: dict[str, Any] = {}

    def refuse(**kwargs: Any) -> Any:
        seen.update(kwargs)
        # What netmiko raises, with the text it uses.
        raise NetmikoAuthenticationException(
            f"Authentication to device failed.\n\nCommon causes of this problem are:\n"
            f"1. Invalid username and password\n2. Incorrect SSH-key file\n"
            f"3. Connecting to the wrong device\n\nDevice settings: {kwargs['device_type']} "
            f"{kwargs['host']}:{kwargs['port']}\n\n\nAuthentication failed.")

    creds = CiscoDeviceCredentials(host="10.0.0.1", platform="cisco_asa", username=USER,
                                   password=SecretStr(SSH_PASSWORD), enable_secret=SecretStr(ENABLE_SECRET))
    with pytest.raises(CiscoAuthFailed) as err, creds.get_client(connection_factory=refuse):
        pass
    assert seen["password"] == SSH_PASSWORD and seen["secret"] == ENABLE_SECRET
    assert seen["ssh_strict"] is True  # host keys are verified outside the lab
    leaks.assert_hidden(err.value, SSH_PASSWORD, ENABLE_SECRET)


def test_the_checker_itself_finds_a_leak(caplog: pytest.LogCaptureFixture) -> None:
    """Guard against a checker that can never fail."""
    checker = Leaks(caplog)
    # A logger without the adapters' masking filters: what an unfiltered library would log.
    with caplog.at_level(logging.DEBUG, logger="draas.tests.unfiltered"):
        logging.getLogger("draas.tests.unfiltered").debug("Pattern found: %s", re.escape(f"community {COMMUNITY} RO"))
    with pytest.raises(AssertionError, match="secret leaked"):
        checker.assert_hidden(DraasError("harmless"), COMMUNITY)
    caplog.clear()
    with pytest.raises(AssertionError, match="secret leaked"):
        checker.assert_hidden(DraasError(f"login as {basic(USER, SD_PASSWORD)}"), basic(USER, SD_PASSWORD))
    with pytest.raises(AssertionError, match="not an adapter error"):
        checker.assert_hidden(httpx.ConnectError("x"))

"""draas.checks: verification checks pass, fail and are not run honestly, within their time.

Each test starts its own small TCP/HTTP servers on loopback (and a tiny address map for the
mapped resolver); nothing else of the lab runs here.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from draas.checks import DirectResolver, MappedResolver, resolver_for, run_check, run_checks
from draas.deadline import Deadline
from draas.models.tenant import CommandCheck, HeartbeatCheck, HttpCheck, ProtectedMachine, TcpCheck
from draas.site import Site

FAST = {"poll_interval_s": 0.05}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tcp_server() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield int(sock.getsockname()[1])
    sock.close()


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, str]] = {}

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path == "/v1/addresses":  # a tiny guest address map: 10.0.0.5 -> this loopback, port 80 -> ours
            query = dict(p.split("=", 1) for p in self.path.split("?", 1)[1].split("&"))
            if query.get("ip") != "10.0.0.5" or query.get("site") != "recovery":
                return self._send(404, json.dumps({"detail": "no guest"}))
            port = self.server.server_address[1]
            return self._send(200, json.dumps({"address": "127.0.0.1", "ports": {"80": port}}))
        status, body = self.routes.get(path, (404, "not found"))
        self._send(status, body)

    def _send(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[int]:
    _Handler.routes = {"/health": (200, "all ok here"), "/broken": (503, "down")}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _run(check: Any, port_ip: str = "127.0.0.1", **kw: Any) -> Any:
    kw.setdefault("resolver", DirectResolver())
    kw.setdefault("heartbeat_ok", True)
    return run_check(check, vm_name="acme-app01", ip=port_ip, **FAST, **kw)


def test_tcp_passes_on_a_listening_port_and_fails_on_a_closed_one(tcp_server: int) -> None:
    ok = _run(TcpCheck(type="tcp", port=tcp_server), timeout_s=2)
    assert ok.status == "passed" and ok.passed and ok.attempts == 1
    assert ok.target == f"127.0.0.1:{tcp_server}" and ok.check == f"tcp/{tcp_server}" and ok.vm == "acme-app01"

    closed = _free_port()
    started = time.monotonic()
    bad = _run(TcpCheck(type="tcp", port=closed), timeout_s=0.4)
    assert time.monotonic() - started < 3
    assert bad.status == "failed" and not bad.passed and bad.attempts >= 2
    assert f"127.0.0.1:{closed}" in bad.detail and "acme-app01" in bad.summary()
    assert bad.model_dump()["passed"] is False  # serialized for reports


def test_a_failing_check_is_polled_until_it_passes() -> None:
    port = _free_port()
    sock = socket.socket()

    def open_later() -> None:
        time.sleep(0.4)
        sock.bind(("127.0.0.1", port))
        sock.listen(1)

    thread = threading.Thread(target=open_later)
    thread.start()
    try:
        result = _run(TcpCheck(type="tcp", port=port), timeout_s=10)
    finally:
        thread.join()
        sock.close()
    assert result.status == "passed" and result.attempts >= 2


def test_http_status_and_text(http_server: int) -> None:
    ok = _run(HttpCheck(type="http", port=http_server, path="/health", expected_text="ok"), timeout_s=2)
    assert ok.status == "passed" and "HTTP 200" in ok.detail
    wrong_status = _run(HttpCheck(type="http", port=http_server, path="/broken"), timeout_s=0.2)
    assert wrong_status.status == "failed" and "HTTP 503, expected 200" in wrong_status.detail
    expects_503 = _run(HttpCheck(type="http", port=http_server, path="/broken", expected_status=503), timeout_s=1)
    assert expects_503.status == "passed"
    no_text = _run(HttpCheck(type="http", port=http_server, path="/health", expected_text="ACME"), timeout_s=0.2)
    assert no_text.status == "failed" and "does not contain 'ACME'" in no_text.detail
    assert no_text.check == f"http:{http_server}/health"


def test_heartbeat_from_the_callers_value_or_polled() -> None:
    assert _run(HeartbeatCheck(type="heartbeat"), heartbeat_ok=True).status == "passed"
    gray = _run(HeartbeatCheck(type="heartbeat"), heartbeat_ok=False, timeout_s=5)
    assert gray.status == "failed" and gray.attempts == 1  # a fixed value is judged once
    assert _run(HeartbeatCheck(type="heartbeat"), heartbeat_ok=None).status == "failed"
    calls = iter([False, False, True])
    polled = _run(HeartbeatCheck(type="heartbeat"), heartbeat_ok=lambda: next(calls), timeout_s=5)
    assert polled.status == "passed" and polled.attempts == 3


def test_command_checks_are_not_run_never_passed() -> None:
    result = _run(CommandCheck(type="command", command="systemctl is-active nginx"))
    assert result.status == "not_run" and result.passed is False
    assert "StartProgramInGuest" in result.detail and "systemctl is-active nginx" in result.detail


def test_the_deadline_bounds_polling_and_an_expired_one_runs_nothing() -> None:
    check = TcpCheck(type="tcp", port=_free_port(), timeout=timedelta(minutes=5))
    started = time.monotonic()
    result = _run(check, deadline=Deadline.within(0.4, "RTO of acme"))
    assert result.status == "failed" and time.monotonic() - started < 3
    gone = _run(check, deadline=Deadline.within(-1, "RTO of acme"))
    assert gone.status == "not_run" and "RTO of acme" in gone.detail and gone.attempts == 0


def test_no_ip_fails_clearly() -> None:
    result = run_check(TcpCheck(type="tcp", port=22), vm_name="acme-app01", ip=None, heartbeat_ok=True,
                       resolver=DirectResolver())
    assert result.status == "failed" and "no IP address" in result.detail


def test_mapped_resolver_asks_the_address_map(http_server: int) -> None:
    resolver = MappedResolver(f"http://127.0.0.1:{http_server}/v1/addresses", "recovery")
    check = HttpCheck(type="http", port=80, path="/health", expected_text="ok")
    ok = _run(check, port_ip="10.0.0.5", resolver=resolver, timeout_s=2)
    assert ok.status == "passed" and ok.target == "10.0.0.5:80" and f"via 127.0.0.1:{http_server}" in ok.detail
    unknown = _run(check, port_ip="10.0.0.6", resolver=resolver, timeout_s=0.2)
    assert unknown.status == "failed" and "no guest with IP 10.0.0.6" in unknown.detail
    down = MappedResolver(f"http://127.0.0.1:{_free_port()}/v1/addresses")
    assert "not reachable" in _run(check, port_ip="10.0.0.5", resolver=down, timeout_s=0.2).detail


def test_run_checks_runs_every_check_of_a_machine(tcp_server: int, http_server: int) -> None:
    machine = ProtectedMachine.model_validate({
        "name": "acme-app01", "os_family": "linux", "disks": [{"name": "root", "size_gb": 10}],
        "change_rate_gb_per_day": 1, "nics": [{"ip": "10.10.2.30", "vlan": "acme-app"}],
        "checks": [{"type": "heartbeat"}, {"type": "tcp", "port": tcp_server},
                   {"type": "http", "port": http_server, "path": "/health", "expected_text": "ok"},
                   {"type": "command", "command": "true"}],
    })
    results = run_checks(machine, ips=["127.0.0.1"], heartbeat_ok=True, resolver=DirectResolver(),
                         vm_name="acme-app01 - testing recovery", timeout_s=2, **FAST)
    assert [r.status for r in results] == ["passed", "passed", "passed", "not_run"]
    assert {r.vm for r in results} == {"acme-app01 - testing recovery"}


def test_resolver_for_a_site_maps_only_with_a_guest_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.state import GuestsLab, LabState, site_profile

    state = LabState(lab_dir=str(tmp_path), config_path="x", guests=GuestsLab(pid=1, url="http://127.0.0.1:9"))
    profile = site_profile(state)
    assert profile["guest_network"] == {"url": "http://127.0.0.1:9"}
    for var in ("DRAAS_SITE_CONFIG", "DRAAS_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "profile.yaml"
    path.write_text(json.dumps(profile))
    monkeypatch.setenv("DRAAS_SITE_PROFILE", str(path))
    site = Site.load()
    assert site.guest_address_map_url == "http://127.0.0.1:9/v1/addresses"
    mapped = resolver_for(site)
    assert isinstance(mapped, MappedResolver) and mapped.site == "recovery"

    path.write_text(json.dumps({"source": "a real site"}))
    real = Site.load()
    assert real.guest_address_map_url is None and isinstance(resolver_for(real), DirectResolver)

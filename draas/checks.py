"""Verification checks of recovered machines: is the guest up, and do its services answer?

A tenant machine declares its ``checks`` (draas.models.tenant): heartbeat, TCP port, HTTP(S)
path, command. :func:`run_check` runs one against a recovered VM and returns a
:class:`CheckResult` that says ``passed``, ``failed`` or ``not_run`` (never "passed" for a
check that was not run), with the VM and the check named. A failing check is polled, with
small sleeps, until it passes or its time is up: the check's own ``timeout``, the caller's
``timeout_s`` and ``deadline`` (draas.deadline), whichever comes first.

Where to probe is an :class:`AddressResolver`'s answer: :class:`DirectResolver` probes the
VM's own address (real sites); :class:`MappedResolver` asks a site's guest address map
(``guest_network`` of the site profile, :attr:`draas.site.Site.guest_address_map_url`), which
only a site whose guests are not reachable at their IPs has: the lab. :func:`resolver_for`
picks the right one for a site.

Heartbeat checks use the value the caller read in vCenter (a bool, or a callable that reads
it again, so it can be polled). Command checks need vSphere guest operations
(StartProgramInGuest with guest credentials), which this product does not drive: they are
reported ``not_run``.
"""

from __future__ import annotations

import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, NamedTuple

import httpx
from pydantic import BaseModel, computed_field

from draas.deadline import Deadline
from draas.errors import DraasError
from draas.models.tenant import CommandCheck, HeartbeatCheck, HttpCheck, TcpCheck, check_label

if TYPE_CHECKING:
    from draas.models.tenant import ProtectedMachine
    from draas.site import Site

AnyCheck = HeartbeatCheck | TcpCheck | HttpCheck | CommandCheck
CheckStatus = Literal["passed", "failed", "not_run"]
HeartbeatSource = bool | Callable[[], bool] | None

#: Longest single probe (connect, or HTTP request); the poll loop retries within the check's time.
PROBE_TIMEOUT_S = 5.0
DEFAULT_POLL_INTERVAL_S = 1.0


class CheckResult(BaseModel):
    """The outcome of one check of one VM."""

    vm: str
    check: str  # check_label(): "tcp/1433", "http:8080/health", "heartbeat", ...
    type: str
    status: CheckStatus
    detail: str
    #: The address probed as the tenant knows it (``ip:port``), not a lab mapping.
    target: str | None = None
    attempts: int = 0
    started: datetime
    finished: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def summary(self) -> str:
        return f"{self.vm} {self.check}: {self.status} - {self.detail}"


class AddressUnavailable(DraasError):
    """The resolver knows no reachable address for an IP (yet): the probe fails, polling goes on."""


class Endpoint(NamedTuple):
    host: str
    port: int


class AddressResolver(ABC):
    """Where to connect to reach ``ip:port`` of a recovered guest."""

    @abstractmethod
    def resolve(self, ip: str, port: int) -> Endpoint:
        """The endpoint to probe; raises :class:`AddressUnavailable` when there is none."""


class DirectResolver(AddressResolver):
    """Probe the real address: a real site's guests answer at their own IPs."""

    def resolve(self, ip: str, port: int) -> Endpoint:
        return Endpoint(ip, port)


class MappedResolver(AddressResolver):
    """Ask a guest address map (``GET <url>?site=&ip=``) where a guest's IP is reachable.

    Used only for a site whose profile has ``guest_network`` (the lab): there the guests'
    services listen on other addresses than their VMs' IPs.
    """

    def __init__(self, url: str, site: str = "recovery", timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self.url = url
        self.site = site
        self.timeout_s = timeout_s
        # One client (connection pool) for every lookup: a new one per lookup costs ~50 ms of CPU.
        self._http: httpx.Client | None = None

    def resolve(self, ip: str, port: int) -> Endpoint:
        if self._http is None:
            self._http = httpx.Client(timeout=self.timeout_s)
        try:
            resp = self._http.get(self.url, params={"site": self.site, "ip": ip})
        except httpx.HTTPError as exc:
            raise AddressUnavailable(f"guest address map {self.url} not reachable: {type(exc).__name__}") from None
        if resp.status_code == 404:
            raise AddressUnavailable(f"no guest with IP {ip} at the {self.site} site (guest address map)")
        if resp.status_code != 200:
            raise AddressUnavailable(f"guest address map {self.url} answered HTTP {resp.status_code}")
        try:
            data = resp.json()
            ports = data.get("ports") or {}
            return Endpoint(str(data["address"]), int(ports.get(str(port), port)))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise AddressUnavailable(f"guest address map {self.url} gave an unreadable answer") from None


def resolver_for(site: Site, vcenter_site: Literal["protected", "recovery"] = "recovery") -> AddressResolver:
    """The resolver for a site: mapped when its profile has a guest address map, else direct."""
    url = site.guest_address_map_url
    return MappedResolver(url, vcenter_site) if url else DirectResolver()


# --- probes: one attempt each, (ok, detail) -------------------------------------------------------


def _where(ip: str, port: int, ep: Endpoint) -> str:
    return f"{ip}:{port}" if (ep.host, ep.port) == (ip, port) else f"{ip}:{port} (via {ep.host}:{ep.port})"


def _probe_tcp(check: TcpCheck, ip: str, resolver: AddressResolver, timeout: float) -> tuple[bool, str]:
    try:
        ep = resolver.resolve(ip, check.port)
    except AddressUnavailable as exc:
        return False, str(exc)
    try:
        with socket.create_connection((ep.host, ep.port), timeout=timeout):
            return True, f"TCP {_where(ip, check.port, ep)} accepts connections"
    except TimeoutError:
        return False, f"TCP {_where(ip, check.port, ep)}: no answer within {timeout:.1f} s"
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return False, f"TCP {_where(ip, check.port, ep)}: {reason}"


def _probe_http(check: HttpCheck, ip: str, resolver: AddressResolver, timeout: float,
                verify_tls: bool) -> tuple[bool, str]:
    port = check.port or (443 if check.scheme == "https" else 80)
    try:
        ep = resolver.resolve(ip, port)
    except AddressUnavailable as exc:
        return False, str(exc)
    url = f"{check.scheme}://{ep.host}:{ep.port}{check.path}"
    what = f"{check.scheme.upper()} GET {check.path} on {_where(ip, port, ep)}"
    try:
        with httpx.Client(verify=verify_tls, timeout=timeout, follow_redirects=False) as client:
            resp = client.get(url, headers={"Host": f"{ip}:{port}"})
    except httpx.TimeoutException:
        return False, f"{what}: no answer within {timeout:.1f} s"
    except httpx.HTTPError as exc:
        return False, f"{what}: {type(exc).__name__}: {exc}"
    if resp.status_code != check.expected_status:
        return False, f"{what}: HTTP {resp.status_code}, expected {check.expected_status}"
    if check.expected_text is not None and check.expected_text not in resp.text:
        return False, f"{what}: HTTP {resp.status_code} but the body does not contain {check.expected_text!r}"
    text = f", body contains {check.expected_text!r}" if check.expected_text is not None else ""
    return True, f"{what}: HTTP {resp.status_code}{text}"


def _probe_heartbeat(heartbeat_ok: HeartbeatSource) -> tuple[bool, str]:
    if heartbeat_ok is None:
        return False, "the VM's heartbeat was not read"
    try:
        ok = heartbeat_ok() if callable(heartbeat_ok) else bool(heartbeat_ok)
    except Exception as exc:  # noqa: BLE001 - reading vCenter failed: this attempt fails
        return False, f"reading the heartbeat failed: {type(exc).__name__}: {exc}"
    return (True, "VMware Tools heartbeat is green") if ok else (False, "VMware Tools heartbeat is not green")


# --- running checks ---------------------------------------------------------------------------------


def run_check(
    check: AnyCheck,
    *,
    vm_name: str,
    ip: str | None,
    heartbeat_ok: HeartbeatSource,
    resolver: AddressResolver,
    timeout_s: float | None = None,
    deadline: Deadline | None = None,
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
    verify_tls: bool = False,
) -> CheckResult:
    """Run ``check`` against VM ``vm_name`` at ``ip``; poll until it passes or its time is up.

    Its time is the check's ``timeout``, cut to ``timeout_s`` and to ``deadline`` when given.
    A fixed heartbeat value (a bool) is judged once; a callable is read again at every poll.
    HTTPS certificates are not verified by default (``verify_tls``): the check asks whether
    the service answers, and a recovered guest is probed by IP, which its certificate seldom
    names. Never raises for a failing check; the result says ``failed`` or ``not_run``.
    """
    started = datetime.now(UTC)
    label = check_label(check)

    def result(status: CheckStatus, detail: str, attempts: int = 0, target: str | None = None) -> CheckResult:
        return CheckResult(vm=vm_name, check=label, type=check.type, status=status, detail=detail,
                           target=target, attempts=attempts, started=started, finished=datetime.now(UTC))

    if isinstance(check, CommandCheck):
        return result("not_run", f"command checks need vSphere guest operations (StartProgramInGuest), which "
                                 f"are not available here; verify {check.command!r} by hand")
    if deadline is not None and deadline.expired:
        return result("not_run", f"deadline {deadline.describe()} passed before the check could run")

    limit = check.timeout.total_seconds()
    if timeout_s is not None:
        limit = min(limit, max(timeout_s, 0.0))
    window = Deadline.of(deadline, limit, label=f"{vm_name} {label}")

    target: str | None = None
    probe: Callable[[float], tuple[bool, str]]
    if isinstance(check, HeartbeatCheck):
        probe = lambda _t: _probe_heartbeat(heartbeat_ok)  # noqa: E731
        if not callable(heartbeat_ok):
            ok, detail = probe(0)
            return result("passed" if ok else "failed", detail, 1)
    else:
        port = check.port if isinstance(check, TcpCheck) else (
            check.port or (443 if check.scheme == "https" else 80))
        if not ip:
            return result("failed", f"no IP address known for NIC {check.nic} of the VM")
        target = f"{ip}:{port}"
        if isinstance(check, TcpCheck):
            probe = lambda t: _probe_tcp(check, ip, resolver, t)  # noqa: E731
        else:
            probe = lambda t: _probe_http(check, ip, resolver, t, verify_tls)  # noqa: E731

    attempts = 0
    begun = time.monotonic()
    while True:
        attempts += 1
        ok, detail = probe(min(PROBE_TIMEOUT_S, max(window.remaining(), 0.5)))
        if ok:
            return result("passed", detail, attempts, target)
        if not window.allows(poll_interval_s):
            waited = time.monotonic() - begun
            return result("failed", f"{detail} (still failing after {attempts} attempt(s) in {waited:.1f} s)",
                          attempts, target)
        time.sleep(poll_interval_s)


def run_checks(
    machine: ProtectedMachine,
    *,
    ips: str | Sequence[str | None] | None,
    heartbeat_ok: HeartbeatSource,
    resolver: AddressResolver,
    vm_name: str | None = None,
    timeout_s: float | None = None,
    deadline: Deadline | None = None,
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
    verify_tls: bool = False,
) -> list[CheckResult]:
    """Every check of ``machine``, in its order; ``ips`` are the recovered VM's addresses by NIC.

    ``vm_name`` is the recovered VM's name (default: the machine's). Each check gets its own
    time window, all bounded by ``deadline``.
    """
    addresses: list[str | None] = [ips] if isinstance(ips, str) else list(ips or [])
    out: list[CheckResult] = []
    for check in machine.checks:
        nic = getattr(check, "nic", 0)
        ip = addresses[nic] if nic < len(addresses) else None
        out.append(run_check(check, vm_name=vm_name or machine.name, ip=ip, heartbeat_ok=heartbeat_ok,
                             resolver=resolver, timeout_s=timeout_s, deadline=deadline,
                             poll_interval_s=poll_interval_s, verify_tls=verify_tls))
    return out

"""The lab's guests: the services of powered-on VMs, served on loopback addresses.

``python -m lab.guests.server --config guests.json --ready-file guests.ready.json``

It reads both vCenters (a short poll over SOAP with pyVmomi, like any client) and, for every
VM that is powered on, has a green heartbeat, an IP address and declared services (extraConfig
``guestinfo.lab.services``, see :mod:`lab.guests.spec`), serves those services on a loopback
address of its own (``127.x.y.z``, stable per lab, site and VM name): a TCP listener for
``tcp`` services, an HTTP(S) server answering the declared path with the declared status and
body (other paths: 404). It stops serving a VM when it is powered off, loses its heartbeat or
is destroyed. When the declared port cannot be bound on that address (a privileged port
without the right to bind it, or taken), the service listens on a free port instead and the
address map says which.

HTTP API on 127.0.0.1 (lab only):

- ``GET /v1/addresses?site=<site>&ip=<ip>`` -> ``{"address": "127.…", "ports": {"80": 80}}``
  or 404: where the guest that has ``ip`` at ``site`` (``protected``/``recovery``) is reachable
  in the lab. The product uses only this, through the site profile's ``guest_network``.
- ``GET /lab/guests``: every known guest (site, vm, moref, ip, address, ports, listen, up,
  faulted).
- ``POST /lab/faults {"vm": "<name>"}`` keeps that VM's services down (not listening) until
  ``DELETE /lab/faults/<name>`` or ``DELETE /lab/faults``; ``GET /lab/faults``;
  ``POST /lab/reset`` clears every fault.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import ipaddress
import json
import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from lab.guests.spec import IP_KEY, PREFIX, Service, services_from_extra
from lab.http import bind_loopback, start_app, write_ready

log = logging.getLogger("lab.guests")

#: VM properties read at every poll (small: a poll of a thousand VMs stays cheap).
VM_PATHS = ["name", "runtime.powerState", "guest.ipAddress", "summary.quickStats.guestHeartbeatStatus"]
#: Read once per VM and boot (new VM, or powered on again): the guest content it carries.
CONTENT_PATHS = ["config.extraConfig"]


@dataclass
class Observed:
    """A VM as the last poll of its vCenter saw it."""

    moref: str
    name: str
    powered_on: bool
    heartbeat: str
    ip: str
    services: list[Service]
    os_ip: str = ""  # guestinfo.lab.ip: the address its OS is configured with


@dataclass
class Guest:
    """A VM with declared services, and what is served for it."""

    site: str
    moref: str
    name: str
    address: str
    seen: Observed
    servers: list[asyncio.Server] = field(default_factory=list)
    listen: dict[int, int] = field(default_factory=dict)  # declared port -> port listened on
    history: list[dict[str, Any]] = field(default_factory=list)  # {"event": "up"|"down", "at": epoch seconds}

    @property
    def serving(self) -> bool:
        return bool(self.servers)

    def row(self, faulted: bool) -> dict[str, Any]:
        s = self.seen
        return {
            "site": self.site, "vm": self.name, "moref": self.moref, "ip": s.ip or None,
            "address": self.address, "ports": [svc.port for svc in s.services],
            "services": [svc.model_dump() for svc in s.services],
            "listen": {str(k): v for k, v in self.listen.items()},
            "powered_on": s.powered_on, "heartbeat": s.heartbeat, "faulted": faulted, "up": self.serving,
            "history": list(self.history),
        }


# --- reading a vCenter ------------------------------------------------------------------------------


class VCenterReader:
    """One vCenter's VMs, read with pyVmomi (one session, logged in again when it breaks)."""

    def __init__(self, site: str, endpoint: dict[str, Any]) -> None:
        self.site = site
        self.ep = endpoint
        self._si: Any = None
        self._view: Any = None
        self._lock = threading.Lock()
        self._content: dict[str, dict[str, str]] = {}  # moref -> its guestinfo.lab.* keys
        self._on: set[str] = set()  # morefs seen powered on at the last poll

    def _connect(self) -> None:
        from pyVim.connect import SmartConnect

        ep = self.ep
        self._si = SmartConnect(host=ep["host"], port=int(ep["port"]), user=ep["username"], pwd=ep["password"],
                                protocol="http", disableSslCertValidation=True, connectionPoolTimeout=30,
                                httpConnectionTimeout=10)
        from pyVmomi import vim

        content = self._si.content
        self._view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)

    def read(self) -> dict[str, Observed]:
        """Every VM of the vCenter, by moref."""
        with self._lock:
            try:
                if self._si is None:
                    self._connect()
                return self._read()
            except Exception:
                self.close()
                raise

    def _read(self) -> dict[str, Observed]:
        """One poll: the small properties of every VM, plus the guest content of the VMs not known yet.

        A VM's extraConfig (its ``guestinfo.lab.*`` content) is the largest property and does not
        change while it runs: it is read when the VM is first seen and again after it was seen
        powered off, so a poll of a thousand idle VMs costs four properties each.
        """
        from pyVmomi import vim, vmodl

        pc = vmodl.query.PropertyCollector
        spec = pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=self._view, skip=True, selectSet=[
                pc.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)])],
            propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=VM_PATHS, all=False)],
        )
        rows = self._retrieve(spec)
        for moref in [m for m in self._content if m not in rows]:
            del self._content[moref]  # destroyed
        for moref, p in rows.items():
            on = str(p.get("runtime.powerState")) == "poweredOn"
            if not on and moref in self._on:
                self._content.pop(moref, None)  # powered off: read its content again at the next boot
            (self._on.add if on else self._on.discard)(moref)
        missing = [m for m in rows if m not in self._content]
        if missing:
            self._content.update(self._read_content(missing))
        out: dict[str, Observed] = {}
        for moref, p in rows.items():
            extra = self._content.get(moref, {})
            out[moref] = Observed(
                moref=moref, name=str(p.get("name") or ""),
                powered_on=str(p.get("runtime.powerState")) == "poweredOn",
                heartbeat=str(p.get("summary.quickStats.guestHeartbeatStatus") or "gray"),
                ip=str(p.get("guest.ipAddress") or ""), services=services_from_extra(extra),
                os_ip=extra.get(IP_KEY, ""),
            )
        return out

    def _read_content(self, morefs: list[str]) -> dict[str, dict[str, str]]:
        """The ``guestinfo.lab.*`` extraConfig of these VMs (all VMs' at once when many are new)."""
        from pyVmomi import vim, vmodl

        pc = vmodl.query.PropertyCollector
        if len(morefs) > 50:
            objects = [pc.ObjectSpec(obj=self._view, skip=True, selectSet=[
                pc.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)])]
        else:
            objects = [pc.ObjectSpec(obj=vim.VirtualMachine(m, self._si._stub)) for m in morefs]
        spec = pc.FilterSpec(objectSet=objects,
                             propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=CONTENT_PATHS, all=False)])
        try:
            rows = self._retrieve(spec)
        except vmodl.fault.ManagedObjectNotFound:
            return {}  # one was destroyed meanwhile: the next poll reads the others again
        return {m: {str(o.key): str(o.value) for o in p.get("config.extraConfig") or []
                    if str(o.key).startswith(PREFIX)} for m, p in rows.items()}

    def _retrieve(self, spec: Any) -> dict[str, dict[str, Any]]:
        from pyVmomi import vmodl

        collector = self._si.content.propertyCollector
        out: dict[str, dict[str, Any]] = {}
        result = collector.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
        while result is not None:
            for oc in result.objects:
                out[oc.obj._moId] = {prop.name: prop.val for prop in (oc.propSet or [])}
            if not result.token:
                break
            result = collector.ContinueRetrievePropertiesEx(result.token)
        return out

    def close(self) -> None:
        from pyVim.connect import Disconnect

        si, self._si, self._view = self._si, None, None
        if si is not None:
            try:
                Disconnect(si)
            except Exception as exc:  # noqa: BLE001 - best effort
                log.debug("logout from the %s vCenter failed: %s", self.site, exc)


# --- serving ----------------------------------------------------------------------------------------


def loopback_address(salt: str, site: str, name: str, taken: set[str]) -> str:
    """A 127.x.y.z address for ``site``/``name``: the same for the same lab, never one in ``taken``.

    The lab's own directory is part of the hash, so two labs on one machine seldom meet; x is
    never 0, so 127.0.0.1 (where every other lab service listens) is never used.
    """
    n = 0
    while True:
        h = hashlib.sha256(f"{salt}|{site}|{name}|{n}".encode()).digest()
        addr = f"127.{1 + h[0] % 254}.{h[1]}.{1 + h[2] % 254}"
        if addr not in taken:
            return addr
        n += 1


def self_signed_context(run_dir: Path) -> ssl.SSLContext:
    """A TLS server context with a new self-signed certificate (the lab's HTTPS guests)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "draas-lab-guest")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = run_dir / "guests-tls.crt", run_dir / "guests-tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


async def _tcp_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A TCP service: accept, read until the client is done (at most a while), close."""
    try:
        async with asyncio.timeout(30):
            while await reader.read(4096):
                pass
    except (TimeoutError, OSError, ConnectionError):
        pass
    finally:
        writer.close()


def _http_handler(svc: Service, vm_name: str) -> Any:
    """An HTTP/1.1 responder for one service: its path answers its status and body; others 404."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split()
            method, target = (parts[0], parts[1]) if len(parts) >= 2 else ("GET", "")
            path = target.split("?", 1)[0]
            if "://" in path:  # absolute-form target
                path = "/" + path.split("://", 1)[1].partition("/")[2]
            if path == svc.path:
                status, body = svc.status, svc.body
            else:
                status, body = 404, f"{path} not found on {vm_name}\n"
            data = body.encode()
            reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(data)}\r\nServer: draas-lab-guest\r\nConnection: close\r\n\r\n".encode()
                + (b"" if method == "HEAD" else data))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, ConnectionError,
                ssl.SSLError):
            pass
        finally:
            writer.close()

    return handle


class Guests:
    """Every known guest of both sites, its loopback address, its listeners, and the faults."""

    def __init__(self, salt: str, tls: ssl.SSLContext | None) -> None:
        self.salt = salt
        self.tls = tls
        self.guests: dict[tuple[str, str], Guest] = {}
        self.addresses: dict[tuple[str, str], str] = {}  # (site, vm name) -> address, for the lab's life
        self.faults: set[str] = set()
        self.lock = asyncio.Lock()
        self.polled: dict[str, float] = {}
        self.by_ip: dict[tuple[str, str], list[Guest]] = {}

    def address_of(self, site: str, name: str) -> str:
        key = (site, name)
        if key not in self.addresses:
            self.addresses[key] = loopback_address(self.salt, site, name, set(self.addresses.values()))
        return self.addresses[key]

    def wanted(self, guest: Guest) -> bool:
        s = guest.seen
        return (s.powered_on and s.heartbeat == "green" and bool(s.ip) and bool(s.services)
                and guest.name not in self.faults)

    async def update(self, site: str, seen: dict[str, Observed]) -> None:
        """Apply one poll of ``site``: start and stop serving as the VMs' states say."""
        async with self.lock:
            for key in [k for k in self.guests if k[0] == site and k[1] not in seen]:
                await self._stop(self.guests.pop(key))  # destroyed
            for moref, obs in seen.items():
                key = (site, moref)
                guest = self.guests.get(key)
                if not obs.services:
                    if guest is not None:
                        await self._stop(self.guests.pop(key))
                    continue
                if guest is None or guest.name != obs.name:
                    if guest is not None:
                        await self._stop(guest)
                    guest = self.guests[key] = Guest(site=site, moref=moref, name=obs.name,
                                                     address=self.address_of(site, obs.name), seen=obs)
                restart = guest.seen.services != obs.services
                guest.seen = obs
                if restart:
                    await self._stop(guest)
            await self._converge()
            self.index()
            self.polled[site] = time.monotonic()

    def index(self) -> None:
        """Rebuild the (site, IP) -> guests index that address lookups use (a thousand guests, many lookups)."""
        by_ip: dict[tuple[str, str], list[Guest]] = {}
        for g in self.guests.values():
            if g.seen.ip:
                by_ip.setdefault((g.site, g.seen.ip), []).append(g)
        self.by_ip = by_ip

    async def _converge(self) -> None:
        for guest in self.guests.values():
            want = self.wanted(guest)
            if want and not guest.serving:
                await self._start(guest)
            elif not want and guest.serving:
                await self._stop(guest)

    async def set_fault(self, name: str, on: bool) -> None:
        async with self.lock:
            (self.faults.add if on else self.faults.discard)(name)
            await self._converge()

    async def clear_faults(self) -> None:
        async with self.lock:
            self.faults.clear()
            await self._converge()

    async def _start(self, guest: Guest) -> None:
        for svc in guest.seen.services:
            if svc.type == "tcp":
                handler, tls = _tcp_session, None
            else:
                handler, tls = _http_handler(svc, guest.name), (self.tls if svc.scheme == "https" else None)
            server: asyncio.Server | None = None
            for port in (svc.port, 0):  # the declared port, else any free one (reported in the map)
                try:
                    server = await asyncio.start_server(handler, guest.address, port, ssl=tls, reuse_address=True)
                    break
                except OSError as exc:
                    log.info("%s %s: cannot listen on %s:%s (%s)", guest.site, guest.name, guest.address, port, exc)
            if server is None:
                log.warning("%s %s: no listener for port %s", guest.site, guest.name, svc.port)
                continue
            guest.servers.append(server)
            guest.listen[svc.port] = int(server.sockets[0].getsockname()[1])
        if guest.servers:
            guest.history.append({"event": "up", "at": time.time()})
        log.info("%s %s up at %s %s", guest.site, guest.name, guest.address, guest.listen)

    @staticmethod
    async def _stop(guest: Guest) -> None:
        servers, guest.servers, guest.listen = guest.servers, [], {}
        for server in servers:
            server.close()
            # Established connections are not waited for: "down" means not listening, now.
        if servers:
            guest.history.append({"event": "down", "at": time.time()})
            log.info("%s %s down", guest.site, guest.name)

    async def stop_all(self) -> None:
        async with self.lock:
            for guest in self.guests.values():
                await self._stop(guest)

    def lookup(self, site: str, ip: str) -> Guest | None:
        """The guest with ``ip`` at ``site``; a powered-on one first."""
        hits = list(self.by_ip.get((site, ip), []))
        hits.sort(key=lambda g: (not g.serving, not g.seen.powered_on, g.name))
        return hits[0] if hits else None


# --- the process ------------------------------------------------------------------------------------


def build_app(guests: Guests) -> FastAPI:
    app = FastAPI(title="DRaaS lab guests", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/v1/addresses")
    async def address(site: str, ip: str) -> Response:
        guest = guests.lookup(site, ip)
        if guest is None:
            return JSONResponse({"detail": f"no guest with IP {ip} at site {site}"}, status_code=404)
        ports = {str(svc.port): guest.listen.get(svc.port, svc.port) for svc in guest.seen.services}
        return JSONResponse({"site": site, "ip": ip, "address": guest.address, "ports": ports})

    @app.get("/lab/guests")
    async def list_guests() -> Response:
        rows = [g.row(g.name in guests.faults) for g in guests.guests.values()]
        rows.sort(key=lambda r: (r["site"], r["vm"]))
        return JSONResponse({"guests": rows})

    @app.get("/lab/faults")
    async def get_faults() -> Response:
        return JSONResponse({"faults": sorted(guests.faults)})

    @app.post("/lab/faults")
    async def add_fault(request: Request) -> Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("vm"), str) or not body["vm"]:
            return JSONResponse({"detail": 'body must be {"vm": "<VM name>"}'}, status_code=400)
        await guests.set_fault(body["vm"], True)
        return JSONResponse({"faults": sorted(guests.faults)})

    @app.delete("/lab/faults")
    async def clear_faults() -> Response:
        await guests.clear_faults()
        return JSONResponse({"faults": []})

    @app.delete("/lab/faults/{name}")
    async def clear_fault(name: str) -> Response:
        await guests.set_fault(name, False)
        return JSONResponse({"faults": sorted(guests.faults)})

    @app.post("/lab/reset")
    async def reset() -> Response:
        await guests.clear_faults()
        return JSONResponse({"status": "reset"})

    @app.get("/lab/health")
    async def health() -> Response:
        return JSONResponse({"status": "ok", "polled": sorted(guests.polled)})

    return app


async def watch(guests: Guests, reader: VCenterReader, interval: float) -> None:
    """Poll one vCenter for ever; a failed read is logged and retried at the next interval."""
    failing = False
    while True:
        try:
            seen = await asyncio.to_thread(reader.read)
        except Exception as exc:  # noqa: BLE001 - the vCenter may be busy or restarting
            if not failing:
                log.warning("reading the %s vCenter failed: %s: %s", reader.site, type(exc).__name__, exc)
            failing = True
        else:
            failing = False
            await guests.update(reader.site, seen)
        await asyncio.sleep(interval)


async def run(config: dict[str, Any], ready_file: Path, host: str = "127.0.0.1") -> None:
    run_dir = ready_file.parent
    guests = Guests(salt=str(config.get("salt", "")), tls=self_signed_context(run_dir))
    interval = float(config.get("poll_interval_s", 0.2))
    readers = [VCenterReader(site, ep) for site, ep in config["vcenters"].items()]
    watchers = [asyncio.create_task(watch(guests, r, interval)) for r in readers]
    sock, port = bind_loopback(host)
    try:
        _server, serving = await start_app(build_app(guests), sock)
        deadline = time.monotonic() + 30
        while len(guests.polled) < len(readers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # ready once both vCenters have been read
        write_ready(ready_file, {"pid": os.getpid(), "url": f"http://{host}:{port}", "host": host, "port": port})
        log.warning("guests lab ready on port %s", port)
        await serving
    finally:
        for task in watchers:
            task.cancel()
        await guests.stop_all()
        for r in readers:
            r.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Lab guests: the services of powered-on VMs on loopback")
    parser.add_argument("--config", type=Path, required=True, help="JSON config written by lab.guests.start")
    parser.add_argument("--ready-file", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(run(json.loads(args.config.read_text()), args.ready_file))


if __name__ == "__main__":
    main()

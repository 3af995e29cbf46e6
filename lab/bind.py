"""The lab's DNS server: BIND 9 (`named`) on loopback, one zone per tenant, TSIG-only updates.

named runs in the foreground (``-g``: logs go to ``logs/dns.log``) from a configuration that
is generated at each start in ``<lab_dir>/bind/``, with a fresh random TSIG secret. It has its
own directory, pid file and session key, no rndc control channel, listens on 127.0.0.1 only,
serves no recursion and accepts dynamic updates only when signed with the lab key.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from lab.process import LabStartError, free_port, spawn, stop_pids
from lab.state import DnsLab

NAME = "dns"
HOST = "127.0.0.1"
START_ATTEMPTS = 5
READY_TIMEOUT_S = 30.0

# named keeps running when it cannot bind a socket, so a lost port race shows only in its log.
_BIND_FAILURE = re.compile(r"(address in use|could not listen|unable to listen)", re.IGNORECASE)
_ZONE_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")


def named_binary() -> str:
    """Path of `named` (Debian installs it in /usr/sbin, which is not always on PATH)."""
    found = shutil.which("named") or shutil.which("named", path="/usr/sbin:/usr/local/sbin:/sbin")
    if not found:
        raise LabStartError("BIND 9 `named` not found; install Debian's bind9 package (make setup does)")
    return found


def new_tsig_secret() -> str:
    """A fresh random HMAC-SHA256 key (256 bits, base64)."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _port_free(port: int) -> bool:
    """True when both UDP and TCP ``port`` can be bound on loopback right now."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                return False
    return True


def _free_dns_port() -> int:
    for _ in range(50):
        port = free_port()
        if _port_free(port):
            return port
    raise LabStartError("no free loopback port for DNS (UDP and TCP)")


def zone_file(zone: str) -> str:
    """Minimal authoritative zone: SOA, NS and the name server's A record."""
    return (
        "$TTL 300\n"
        f"@\tIN\tSOA\tns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60\n"
        f"@\tIN\tNS\tns.{zone}.\n"
        f"ns\tIN\tA\t{HOST}\n"
    )


def named_conf(bind_dir: Path, port: int, key_name: str, algorithm: str, secret: str,
               zones: list[str]) -> str:
    """named.conf for the lab: loopback only, no recursion, no rndc, TSIG-only updates."""
    d = str(bind_dir)
    lines = [
        "options {",
        f'    directory "{d}";',
        f'    pid-file "{d}/named.pid";',
        f'    session-keyfile "{d}/session.key";',
        f'    managed-keys-directory "{d}";',
        f'    dump-file "{d}/cache_dump.db";',
        f'    statistics-file "{d}/named.stats";',
        f'    memstatistics-file "{d}/named.memstats";',
        f"    listen-on port {port} {{ {HOST}; }};",
        "    listen-on-v6 { none; };",
        "    recursion no;",
        "    allow-recursion { none; };",
        "    allow-transfer { none; };",
        "    dnssec-validation no;",
        "    notify no;",
        "    querylog no;",
        "};",
        "",
        "# No control channel: the lab stops named with a signal, not with rndc.",
        "controls { };",
        "",
        f'key "{key_name}" {{',
        f"    algorithm {algorithm};",
        f'    secret "{secret}";',
        "};",
        "",
    ]
    for zone in zones:
        lines += [
            f'zone "{zone}" {{',
            "    type primary;",
            f'    file "zones/{zone}.zone";',
            f'    allow-update {{ key "{key_name}"; }};',
            "};",
            "",
        ]
    return "\n".join(lines)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def prepare(bind_dir: Path, port: int, key_name: str, algorithm: str, secret: str,
            zones: list[str]) -> Path:
    """Write a fresh named.conf and zone files (old journals go: each start is a clean zone)."""
    shutil.rmtree(bind_dir, ignore_errors=True)
    (bind_dir / "zones").mkdir(parents=True)
    os.chmod(bind_dir, 0o700)
    for zone in zones:
        (bind_dir / "zones" / f"{zone}.zone").write_text(zone_file(zone))
    conf = bind_dir / "named.conf"
    _write_private(conf, named_conf(bind_dir, port, key_name, algorithm, secret, zones))
    return conf


def _soa_answers(port: int, zone: str) -> bool:
    """True when an authoritative SOA answer for ``zone`` comes back over UDP and TCP."""
    q = dns.message.make_query(zone, dns.rdatatype.SOA)
    try:
        for send in (dns.query.udp, dns.query.tcp):
            r = send(q, HOST, port=port, timeout=0.5)
            if r.rcode() != dns.rcode.NOERROR or not (r.flags & dns.flags.AA) or not r.answer:
                return False
    except (dns.exception.DNSException, OSError):
        return False
    return True


def _log_since(log: Path, offset: int) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _wait_ready(proc: subprocess.Popen[bytes], port: int, zones: list[str], log: Path,
                offset: int) -> bool:
    """True when every zone answers; False when named lost the port; raises when it died."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabStartError(f"lab component {NAME!r} exited with code {proc.returncode}; "
                                f"see its log in logs/{NAME}.log")
        if _BIND_FAILURE.search(_log_since(log, offset)):
            return False
        if all(_soa_answers(port, z) for z in zones):
            # Re-check the log: a port taken by someone else could have answered the query.
            return not _BIND_FAILURE.search(_log_since(log, offset))
        time.sleep(0.05)
    raise LabStartError(f"lab component {NAME!r} not answering SOA queries on {HOST}:{port} "
                        f"after {READY_TIMEOUT_S:.0f} s; see logs/{NAME}.log")


def _settings(config: dict[str, Any]) -> tuple[str, str, list[str]]:
    cfg = config.get("dns") or {}
    key_name = str(cfg.get("tsig_name", "draas-lab-key"))
    algorithm = str(cfg.get("tsig_algorithm", "hmac-sha256")).lower()
    zones = [str(z).rstrip(".").lower() for z in cfg.get("zones") or []]
    if not zones:
        raise LabStartError("lab config: dns.zones is empty")
    for zone in zones:
        if not _ZONE_NAME.match(zone):
            raise LabStartError(f"lab config: invalid DNS zone name {zone!r}")
    if not _KEY_NAME.match(key_name):
        raise LabStartError(f"lab config: invalid TSIG key name {key_name!r}")
    if algorithm not in ("hmac-sha256", "hmac-sha512", "hmac-sha384", "hmac-sha224", "hmac-sha1"):
        raise LabStartError(f"lab config: unsupported TSIG algorithm {algorithm!r}")
    return key_name, algorithm, zones


def start(ctx: Any) -> None:
    """Start named for the lab, wait until every zone answers, record it in ``ctx.state.dns``."""
    key_name, algorithm, zones = _settings(ctx.config)
    secret = new_tsig_secret()
    bind_dir = Path(ctx.lab_dir) / "bind"
    log = Path(ctx.lab_dir) / "logs" / f"{NAME}.log"
    binary = named_binary()
    for _attempt in range(START_ATTEMPTS):
        port = _free_dns_port()
        conf = prepare(bind_dir, port, key_name, algorithm, secret, zones)
        offset = log.stat().st_size if log.exists() else 0
        # -g: foreground, log to stderr; -4: IPv4 only; -n 1: one worker is plenty for a lab.
        proc = spawn(Path(ctx.lab_dir), NAME, [binary, "-g", "-4", "-n", "1", "-c", str(conf)])
        try:
            ready = _wait_ready(proc, port, zones, log, offset)
        except BaseException:
            stop_pids([proc.pid])
            raise
        if ready:
            ctx.state.dns = DnsLab(pid=proc.pid, host=HOST, port=port, tsig_name=key_name,
                                   tsig_secret=secret, tsig_algorithm=algorithm, zones=zones)
            return
        stop_pids([proc.pid])  # lost the port to another process: try another one
    raise LabStartError(f"lab component {NAME!r} could not bind a port after {START_ATTEMPTS} attempts")

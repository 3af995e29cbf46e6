"""Starting and stopping simulator processes; readiness via a ready file the child writes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PIDS_FILE = "pids"


class LabStartError(RuntimeError):
    """A lab component did not come up; the message names it and points at its log."""


def free_port() -> int:
    """A currently free TCP port on loopback (for servers that cannot bind port 0 themselves)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(lab_dir: Path, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, logging to ``<lab_dir>/logs/<name>.log``.

    The pid is appended to ``<lab_dir>/pids`` at once so `lab down` can stop it even when
    the start fails before the state file is written.
    """
    logs = lab_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = open(logs / f"{name}.log", "ab")
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, env=full_env, cwd=lab_dir,
    )
    log.close()
    with open(lab_dir / PIDS_FILE, "a") as f:
        f.write(f"{proc.pid} {name}\n")
    return proc


def python_argv(module: str, *args: str) -> list[str]:
    """argv that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def wait_ready_file(path: Path, proc: subprocess.Popen[bytes], name: str, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until the child writes its ready file (JSON), or fail naming the component."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text()
            if text.strip():
                try:
                    return dict(json.loads(text))
                except json.JSONDecodeError:
                    pass  # being written
        if proc.poll() is not None:
            raise LabStartError(f"lab component {name!r} exited with code {proc.returncode}: "
                                f"{_log_tail(path.parent, name)} (log: logs/{name}.log)")
        time.sleep(0.05)
    raise LabStartError(f"lab component {name!r} not ready after {timeout:.0f} s; see logs/{name}.log")


def _log_tail(near: Path, name: str) -> str:
    """The last line of a component's log: usually the reason it stopped."""
    for base in (near, *near.parents):
        log = base / "logs" / f"{name}.log"
        if log.exists():
            lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            return lines[-1].strip()[:300] if lines else "(empty log)"
    return "(no log)"


def wait_port(host: str, port: int, proc: subprocess.Popen[bytes], name: str, timeout: float = 60.0) -> None:
    """Wait until a TCP port accepts connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabStartError(f"lab component {name!r} exited with code {proc.returncode}; see logs/{name}.log")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise LabStartError(f"lab component {name!r} not listening on {host}:{port} after {timeout:.0f} s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still "exists"; reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def stop_pids(pids: list[int], timeout: float = 10.0) -> None:
    """SIGTERM each process group, then SIGKILL what is left after ``timeout``."""
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            try:  # not a group leader (or already gone): signal the process itself
                os.kill(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)


def recorded_pids(lab_dir: Path) -> list[int]:
    path = lab_dir / PIDS_FILE
    if not path.exists():
        return []
    return [int(line.split()[0]) for line in path.read_text().splitlines() if line.strip()]

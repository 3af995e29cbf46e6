"""``draas stack up|down|status``: the whole product on this machine.

``up`` starts, in this order: the lab (unless real systems are configured, or a site profile is
already named by ``$DRAAS_SITE_PROFILE``), a Prefect server with its UI (SQLite under the stack
directory, or the PostgreSQL database given), the process work pool ``draas`` with N workers,
and the webhook gateway. ``down`` stops what ``up`` started; ``status`` reports each component.

What it guarantees:

- **Every process is findable.** Each runs in a session (process group) of its own and is
  recorded in ``<stack dir>/stack.json`` as soon as it is started, so ``down`` stops it even
  after an ``up`` that failed half way or was interrupted.
- **``up`` is idempotent and all-or-nothing.** A stack that is up is reported, not started
  again; one found partly up is stopped and started afresh. A start that fails stops what it
  started and raises :class:`StackError` naming the component, the cause and its log file.
- **``down`` leaves nothing.** SIGTERM, then SIGKILL after a timeout, to each recorded process
  group and to every descendant (flow runs started by a worker have sessions of their own);
  then it checks that no such process is alive and no port of the stack is listening. A lab
  the stack did not start (found running, or named by ``$DRAAS_SITE_PROFILE``) is left alone.
- **Workers reach the caller's systems.** Workers and the gateway inherit the caller's
  environment (``DRAAS_DATABASE_URL``, ``DRAAS_SITE_PROFILE``, ...), with the state store's
  default resolved to an absolute path, and run in the project directory, so flow runs started
  from the UI use the same state store and site as the ``draas`` command.
- **No secret leaves the environment.** The database URL and an API auth string go to the
  processes through their environment only; neither is written to stack.json nor printed.

The stack directory (``--stack-dir``, else ``$DRAAS_STACK_DIR``, else ``.draas/stack`` under the
project) holds ``prefect/`` (PREFECT_HOME: the SQLite database, the UI build), ``logs/`` (one
log per process), ``lab/`` (the lab, when the stack starts one) and ``stack.json``.

The module imports nothing from Prefect at import time: the CLI calls :func:`running_api_url`
before Prefect is imported, so that Prefect's settings pick up the stack's API.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field, ValidationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STACK_DIR_ENV = "DRAAS_STACK_DIR"
STATE_FILE = "stack.json"
DEFAULT_PREFECT_PORT = 4200
DEFAULT_GATEWAY_PORT = 8788
DEFAULT_WORK_POOL = "draas"
#: Seconds each component may take to answer (the Prefect server alone needs ~20 s on a slow machine).
DEFAULT_TIMEOUT_S = 90.0
#: How often a worker asks for scheduled runs: a run submitted in the UI starts within seconds.
WORKER_QUERY_SECONDS = 2
#: How far ahead the server's scheduler creates runs: 13 months, so both of a tenant's next drills show.
SCHEDULE_AHEAD_DAYS = 396
HOST = "127.0.0.1"
#: Environment variables that may carry the Prefect API's basic-auth string ("user:password").
AUTH_ENV = ("PREFECT_SERVER_API_AUTH_STRING", "PREFECT_API_AUTH_STRING")

Echo = Callable[[str], None]


class StackError(RuntimeError):
    """The stack could not be started, read or stopped; the message names the cause (and a log file)."""


class Process(BaseModel):
    """One process the stack started: the leader of its own process group."""

    name: str
    pid: int
    start_ticks: int | None = Field(default=None, description="/proc start time: tells a reused pid apart")
    log: str
    port: int | None = None


class LabRecord(BaseModel):
    """Where the flows' systems are, and whether ``down`` stops the lab."""

    mode: Literal["started", "found", "external", "real"]
    lab_dir: str | None = None
    site_profile: str | None = None


#: How ``up`` reports where the flows' systems are, per :attr:`LabRecord.mode`.
SITE_MODES = {"started": "the lab, started by the stack", "found": "the lab, found running (left running by down)",
              "external": "the site profile named by $DRAAS_SITE_PROFILE",
              "real": "the systems configs/site.yaml names (no lab)"}


class StackState(BaseModel):
    """``stack.json``: what ``up`` started and where it answers (no secrets)."""

    version: int = 1
    phase: Literal["starting", "up"] = "starting"
    project_root: str
    prefect_home: str
    prefect_api_url: str
    prefect_ui_url: str
    gateway_url: str
    work_pool: str
    workers: int
    database: Literal["sqlite", "postgresql"]
    lab: LabRecord
    processes: list[Process] = Field(default_factory=list)
    started_at: datetime

    def process(self, name: str) -> Process | None:
        return next((p for p in self.processes if p.name == name), None)

    @property
    def ports(self) -> list[int]:
        return [p.port for p in self.processes if p.port]


class StackOptions(BaseModel):
    """What ``up`` was asked for (CLI options; the defaults are the CLI's)."""

    stack_dir: Path | None = None
    port: int = DEFAULT_PREFECT_PORT  # 0: any free port
    gateway_port: int = DEFAULT_GATEWAY_PORT  # 0: any free port
    workers: int = 1
    work_pool: str = DEFAULT_WORK_POOL
    database_url: str | None = Field(default=None, repr=False)  # may hold a password: never printed
    lab: bool | None = None  # None: start one unless real systems are configured
    lab_dir: Path | None = None
    timeout: float = DEFAULT_TIMEOUT_S


# --- the stack directory and its state file --------------------------------------------------------------


def default_stack_dir() -> Path:
    """``$DRAAS_STACK_DIR``, else ``.draas/stack`` under the project."""
    env = os.environ.get(STACK_DIR_ENV)
    return Path(env).expanduser().resolve() if env else PROJECT_ROOT / ".draas" / "stack"


def resolve_dir(stack_dir: Path | str | None) -> Path:
    return Path(stack_dir).expanduser().resolve() if stack_dir else default_stack_dir()


def load_state(stack_dir: Path | str | None = None) -> StackState | None:
    """The stack's state file, or None when there is none; an unreadable one is a :class:`StackError`."""
    path = resolve_dir(stack_dir) / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StackError(f"{path}: cannot read the stack state: {exc.strerror}") from None
    try:
        return StackState.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise StackError(f"{path}: {where + ': ' if where else ''}{first['msg']} (remove the file once no "
                         "process of the stack is left)") from None


def _save(stack_dir: Path, state: StackState) -> None:
    tmp = stack_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(state.model_dump_json(indent=2) + "\n")
    tmp.replace(stack_dir / STATE_FILE)


def running_api_url(stack_dir: Path | str | None = None) -> str | None:
    """The Prefect API URL of the stack whose server is running, else None (never raises).

    Cheap (no HTTP, no Prefect import): the CLI calls it for every command.
    """
    try:
        state = load_state(stack_dir)
    except StackError:
        return None
    server = state.process("prefect-server") if state else None
    return state.prefect_api_url if state and server and _is_running(server) else None


# --- processes -----------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], ppid [1], pgrp [2])."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_ticks(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie child of ours is reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    except ChildProcessError:
        pass
    fields = _proc_stat(pid)
    return fields is None or fields[0] != "Z"


def _is_running(proc: Process) -> bool:
    """The recorded process is alive and is still the one the stack started (not a reused pid)."""
    if not _alive(proc.pid):
        return False
    return proc.start_ticks is None or _start_ticks(proc.pid) in (None, proc.start_ticks)


def _all_processes() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgrp) of every live process (zombies left out)."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields and fields[0] != "Z":
                table[int(entry)] = (int(fields[1]), int(fields[2]))
    return table


def _family(leaders: Iterable[int]) -> set[int]:
    """The leaders, every process in their groups, and every descendant of those (in any session)."""
    table = _all_processes()
    leaders = set(leaders)
    found = {pid for pid, (_, pgrp) in table.items() if pgrp in leaders} | {p for p in leaders if p in table}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _) in table.items() if ppid in found and pid not in found}
        found |= more
        grew = bool(more)
    return found


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.killpg(pid, sig)  # a group leader takes its group with it
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop_processes(processes: list[Process], timeout: float = 15.0) -> list[int]:
    """SIGTERM each recorded group and its descendants, SIGKILL what is left after ``timeout``.

    Returns the pids still alive afterwards (empty when everything stopped).
    """
    leaders = [p.pid for p in processes if _is_running(p)]
    if not leaders:
        return []
    family = _family(leaders)
    _signal(family, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in family):
        time.sleep(0.1)
    family = {p for p in family | _family(leaders) if _alive(p)}
    _signal(family, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in family):
        time.sleep(0.05)
    return sorted(p for p in family if _alive(p))


def _spawn(stack_dir: Path, name: str, argv: list[str], env: dict[str, str], *,
           port: int | None = None) -> Process:
    """Start ``argv`` in a session of its own, output to ``<stack dir>/logs/<name>.log``."""
    logs = stack_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with open(log_path, "ab") as log:
        log.write(f"--- {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} starting {name}\n".encode())
        log.flush()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env, cwd=PROJECT_ROOT)
    return Process(name=name, pid=proc.pid, start_ticks=_start_ticks(proc.pid), log=str(log_path), port=port)


def _log_tail(log: str | Path, lines: int = 3) -> str:
    try:
        text = Path(log).read_text(errors="replace")
    except OSError:
        return "(no log)"
    kept = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("--- ")]
    return " | ".join(kept[-lines:])[-600:] or "(empty log)"


def _wait(proc: Process, what: str, ready: Callable[[], bool], timeout: float) -> None:
    """Wait until ``ready()``; fail at once if the process exits, or after ``timeout``, naming its log."""
    deadline = time.monotonic() + timeout
    while True:
        if not _is_running(proc):
            raise StackError(f"{what} exited during start: {_log_tail(proc.log)} (log: {proc.log})")
        if ready():
            return
        if time.monotonic() >= deadline:
            raise StackError(f"{what} not ready after {timeout:.0f} s (log: {proc.log})")
        time.sleep(0.5)


# --- ports and URLs ------------------------------------------------------------------------------------


def parse_port(value: str | int, option: str) -> int:
    """A port option's value: a number 0-65535, or ``auto`` (0: any free port)."""
    text = str(value).strip().lower()
    if text == "auto":
        return 0
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise StackError(f"{option}: expected a port number (0-65535) or 'auto', got {value!r}")
    return int(text)


def free_port() -> int:
    """A currently free TCP port on loopback."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def listening(port: int, host: str = HOST) -> bool:
    """Something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _port(requested: int, option: str, taken: set[int]) -> int:
    if requested == 0:
        port = free_port()
        while port in taken:
            port = free_port()
        return port
    if listening(requested) or requested in taken:
        raise StackError(f"{option}: port {requested} on {HOST} is already in use (another Prefect server or "
                         f"gateway?); pick another with {option} N, or {option} auto")
    return requested


def prefect_database_url(url: str) -> tuple[str, Literal["sqlite", "postgresql"]]:
    """The Prefect server's connection URL (async driver) for ``--database-url``, and its kind.

    ``postgresql://user:password@host:5432/prefect`` becomes ``postgresql+asyncpg://...``. The
    message of a refusal never repeats the URL (it may hold a password).
    """
    scheme, sep, rest = url.partition("://")
    base = scheme.split("+", 1)[0].lower()
    if not sep or not rest:
        raise StackError("--database-url: not a URL; expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    if base in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}", "postgresql"
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}", "sqlite"
    raise StackError(f"--database-url: scheme {scheme!r} is not supported; use postgresql://... (or sqlite:///...)")


def _auth() -> httpx.BasicAuth | None:
    value = next((os.environ[k] for k in AUTH_ENV if os.environ.get(k)), None)
    if not value:
        return None
    user, _, password = value.partition(":")
    return httpx.BasicAuth(user, password)


def _get_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3, auth=_auth()).status_code == 200
    except httpx.HTTPError:
        return False


def workers_online(api_url: str, pool: str) -> dict[str, str]:
    """Worker name -> status (``ONLINE``/``OFFLINE``) of the pool, read from the Prefect REST API."""
    try:
        response = httpx.post(f"{api_url}/work_pools/{pool}/workers/filter", json={"limit": 200}, timeout=5,
                              auth=_auth())
    except httpx.HTTPError:
        return {}
    if response.status_code != 200:
        return {}
    return {w["name"]: str(w.get("status") or "").upper() for w in response.json()}


# --- the lab -------------------------------------------------------------------------------------------


def _lab(command: str, lab_dir: Path, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m lab <command> --lab-dir D`` (the product never imports the lab)."""
    done = subprocess.run([sys.executable, "-m", "lab", command, "--lab-dir", str(lab_dir)], check=False,
                          capture_output=True, text=True, cwd=PROJECT_ROOT, env={**os.environ, "COLUMNS": "200"})
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(f"--- {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} lab {command}\n{done.stdout}{done.stderr}")
    return done


def lab_running(lab_dir: Path) -> bool:
    """Every component of the lab in ``lab_dir`` is alive (per ``python -m lab status``)."""
    done = _lab("status", lab_dir)
    return done.returncode == 0 and not re.search(r"\bNO\b", done.stdout)


def _lab_plan(opts: StackOptions, stack_dir: Path) -> LabRecord:
    """Whether to start a lab: not when a profile is named, real systems are configured, or ``--no-lab``."""
    from draas.site import LAB_PROFILE_FILE, Site

    named = os.environ.get("DRAAS_SITE_PROFILE")
    if named and opts.lab is not True:
        return LabRecord(mode="external", site_profile=str(Path(named).expanduser().resolve()))
    if opts.lab is False:
        return LabRecord(mode="real")
    if opts.lab is None:
        site = Site.load()  # SiteConfigError names the file and field
        if site.connections == "blocks" or site.profile:
            return LabRecord(mode="real")
    lab_dir = (opts.lab_dir or stack_dir / "lab").expanduser().resolve()
    return LabRecord(mode="started", lab_dir=str(lab_dir), site_profile=str(lab_dir / LAB_PROFILE_FILE))


# --- up, down, status ----------------------------------------------------------------------------------


def _child_env(state: StackState, database_url: str) -> dict[str, str]:
    """The caller's environment for workers and the gateway, pointed at the stack's API, site and store."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_UI_URL")}
    env.update(PREFECT_API_URL=state.prefect_api_url, PREFECT_UI_URL=state.prefect_ui_url,
               PREFECT_HOME=state.prefect_home, DRAAS_DATABASE_URL=database_url,
               DRAAS_PROJECT_DIR=state.project_root, PREFECT_CLI_PROMPT="false",
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    if state.lab.site_profile:
        env["DRAAS_SITE_PROFILE"] = state.lab.site_profile
    auth = next((os.environ[k] for k in AUTH_ENV if os.environ.get(k)), None)
    if auth:
        env["PREFECT_API_AUTH_STRING"] = auth
    return env


def _ensure_pool(state: StackState) -> None:
    """Create the process work pool with the process worker's job template (so the UI shows its variables)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    updates: dict[Any, Any] = {PREFECT_API_URL: state.prefect_api_url}
    auth = next((os.environ[k] for k in AUTH_ENV if os.environ.get(k)), None)
    if auth:
        updates[PREFECT_API_AUTH_STRING] = auth
    with temporary_settings(updates=updates), get_client(sync_client=True) as client:
        try:
            client.read_work_pool(state.work_pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(
                name=state.work_pool, type="process",
                base_job_template=ProcessWorker.get_default_base_job_template(),
                description="draas: flow runs of the <flow>/<tenant> deployments"))


def up(opts: StackOptions, echo: Echo = print) -> tuple[StackState, bool]:
    """Start the stack (or find it up); returns its state and whether it was already up.

    On any failure (or an interrupt) everything started so far is stopped and the state file
    removed before the error propagates.
    """
    if opts.workers < 1:
        raise StackError(f"--workers: at least 1 worker, got {opts.workers}")
    stack_dir = resolve_dir(opts.stack_dir)
    current = load_state(stack_dir)
    if current is not None:
        report = status(stack_dir)
        if report["state"] == "up":
            return current, True
        echo(f"stack in {stack_dir} is {report['state']}: stopping what is left before starting it again")
        down(stack_dir, echo=echo)

    stack_dir.mkdir(parents=True, exist_ok=True)
    prefect_port = _port(opts.port, "--port", set())
    gateway_port = _port(opts.gateway_port, "--gateway-port", {prefect_port})
    db_url, db_kind = prefect_database_url(opts.database_url) if opts.database_url else (None, "sqlite")
    lab = _lab_plan(opts, stack_dir)
    if lab.mode == "started" and lab_running(Path(str(lab.lab_dir))):
        lab.mode = "found"
    state = StackState(
        project_root=str(PROJECT_ROOT), prefect_home=str(stack_dir / "prefect"),
        prefect_api_url=f"http://{HOST}:{prefect_port}/api", prefect_ui_url=f"http://{HOST}:{prefect_port}",
        gateway_url=f"http://{HOST}:{gateway_port}", work_pool=opts.work_pool, workers=opts.workers,
        database=db_kind, lab=lab, started_at=datetime.now(UTC))
    _save(stack_dir, state)
    try:
        _start(state, stack_dir, opts, db_url, echo)
    except BaseException:
        echo("start failed: stopping what was started")
        _teardown(state, stack_dir, echo=lambda _msg: None)
        raise
    state.phase = "up"
    _save(stack_dir, state)
    return state, False


def _start(state: StackState, stack_dir: Path, opts: StackOptions, db_url: str | None, echo: Echo) -> None:
    if state.lab.mode == "started":
        echo(f"starting the lab in {state.lab.lab_dir}")
        log = stack_dir / "logs" / "lab.log"
        if _lab("up", Path(str(state.lab.lab_dir)), log).returncode:
            raise StackError(f"the lab did not start: {_log_tail(log)} (log: {log})")
    from draas.state.store import default_database_url

    child_env = _child_env(state, default_database_url())  # the caller's store, as an absolute URL

    echo(f"starting the Prefect server on {state.prefect_ui_url} ({state.database})")
    Path(state.prefect_home).mkdir(parents=True, exist_ok=True)
    port = int(state.prefect_api_url.rsplit(":", 1)[1].split("/")[0])
    server_env = {**child_env, "PREFECT_SERVER_UI_API_URL": state.prefect_api_url,
                  "PREFECT_SERVER_API_HOST": HOST, "PREFECT_SERVER_API_PORT": str(port),
                  "PREFECT_SERVER_UI_ENABLED": "true",
                  # Drills are about six months apart: the scheduler looks 13 months ahead (Prefect's
                  # default is 100 days), so the next two drills are Scheduled runs the UI shows.
                  "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_SCHEDULED_TIME": f"P{SCHEDULE_AHEAD_DAYS}D"}
    server_env.pop("PREFECT_API_URL", None)  # the server is the API; its own client settings are its defaults
    server_env.pop("PREFECT_SERVER_DATABASE_CONNECTION_URL", None)
    server_env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
    if db_url:
        server_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = db_url
    auth = next((os.environ[k] for k in AUTH_ENV if os.environ.get(k)), None)
    if auth:
        server_env["PREFECT_SERVER_API_AUTH_STRING"] = auth
    server = _spawn(stack_dir, "prefect-server", [sys.executable, "-m", "prefect", "server", "start", "--host",
                                                  HOST, "--port", str(port), "--no-background"], server_env, port=port)
    state.processes.append(server)
    _save(stack_dir, state)
    _wait(server, "the Prefect server", lambda: _get_ok(f"{state.prefect_api_url}/health"), opts.timeout)

    _ensure_pool(state)
    names = [f"draas-stack-{i}" for i in range(1, state.workers + 1)]
    echo(f"starting {len(names)} worker(s) on the process work pool {state.work_pool!r}")
    worker_env = {**child_env, "PREFECT_WORKER_QUERY_SECONDS": str(WORKER_QUERY_SECONDS)}
    for name in names:
        state.processes.append(_spawn(stack_dir, name, [
            sys.executable, "-m", "prefect", "worker", "start", "--pool", state.work_pool, "--type", "process",
            "--name", name, "--install-policy", "never"], worker_env))
        _save(stack_dir, state)

    gateway_port = int(state.gateway_url.rsplit(":", 1)[1])
    echo(f"starting the gateway on {state.gateway_url}")
    gateway = _spawn(stack_dir, "gateway", [sys.executable, "-m", "draas.cli", "gateway", "--host", HOST, "--port",
                                            str(gateway_port), "--ui-url", state.prefect_ui_url], child_env,
                     port=gateway_port)
    state.processes.append(gateway)
    _save(stack_dir, state)

    for name in names:
        worker = state.process(name)
        assert worker is not None
        _wait(worker, f"worker {name}",
              lambda n=name: workers_online(state.prefect_api_url, state.work_pool).get(n) == "ONLINE", opts.timeout)
    _wait(gateway, "the gateway", lambda: _get_ok(f"{state.gateway_url}/healthz"), opts.timeout)


def _teardown(state: StackState, stack_dir: Path, echo: Echo) -> list[str]:
    """Stop the stack's processes (then the lab it started); the problems left, if any."""
    problems: list[str] = []
    front = [p for p in state.processes if p.name != "prefect-server"]
    server = [p for p in state.processes if p.name == "prefect-server"]
    for batch, timeout in ((front, 15.0), (server, 20.0)):
        if batch:
            echo(f"stopping {', '.join(p.name for p in batch)}")
        left = stop_processes(batch, timeout=timeout)
        problems += [f"process {pid} is still alive" for pid in left]
    if state.lab.mode == "started" and state.lab.lab_dir:
        echo(f"stopping the lab in {state.lab.lab_dir}")
        log = stack_dir / "logs" / "lab.log"
        if _lab("down", Path(state.lab.lab_dir), log).returncode:
            problems.append(f"the lab did not stop cleanly (log: {log})")
    problems += [f"{p.name}: pid {p.pid} is still alive" for p in state.processes if _is_running(p)]
    problems += [f"port {port} is still listening" for port in state.ports if listening(port)]
    if not problems:
        (stack_dir / STATE_FILE).unlink(missing_ok=True)
    return problems


def down(stack_dir: Path | str | None = None, echo: Echo = print) -> bool:
    """Stop what ``up`` started; False when there was no stack. Raises :class:`StackError` if anything is left."""
    stack_dir = resolve_dir(stack_dir)
    state = load_state(stack_dir)
    if state is None:
        return False
    problems = _teardown(state, stack_dir, echo)
    if problems:
        raise StackError(f"stack in {stack_dir} not fully stopped: {'; '.join(problems)}")
    return True


def status(stack_dir: Path | str | None = None) -> dict[str, Any]:
    """Endpoints and each component's state; ``state`` is ``up``, ``partly up`` or ``down``."""
    stack_dir = resolve_dir(stack_dir)
    state = load_state(stack_dir)
    if state is None:
        return {"state": "down", "stack_dir": str(stack_dir), "prefect_api_url": None, "prefect_ui_url": None,
                "gateway_url": None, "work_pool": None, "workers": 0, "components": {}}
    components: dict[str, dict[str, Any]] = {}
    lab: dict[str, Any] = {"mode": state.lab.mode, "site_profile": state.lab.site_profile}
    if state.lab.mode in ("started", "found") and state.lab.lab_dir:
        lab |= {"state": "up" if lab_running(Path(state.lab.lab_dir)) else "down", "lab_dir": state.lab.lab_dir}
    else:
        lab["state"] = "not managed"
    components["lab"] = lab
    online = workers_online(state.prefect_api_url, state.work_pool)
    for proc in state.processes:
        running = _is_running(proc)
        entry: dict[str, Any] = {"pid": proc.pid, "log": proc.log}
        if proc.name == "prefect-server":
            ok = running and _get_ok(f"{state.prefect_api_url}/health")
            entry |= {"url": state.prefect_ui_url, "api_url": state.prefect_api_url, "database": state.database}
        elif proc.name == "gateway":
            ok = running and _get_ok(f"{state.gateway_url}/healthz")
            entry["url"] = state.gateway_url
        else:
            entry |= {"work_pool": state.work_pool, "status": online.get(proc.name, "UNKNOWN")}
            ok = running and online.get(proc.name) == "ONLINE"
        components[proc.name] = {"state": "up" if ok else "down", **entry}
    expected = 2 + state.workers
    managed = [c for c in components.values() if c["state"] != "not managed"]
    all_up = state.phase == "up" and len(state.processes) == expected and all(c["state"] == "up" for c in managed)
    any_up = any(c["state"] == "up" for c in managed)
    return {"state": "up" if all_up else "partly up" if any_up else "down", "stack_dir": str(stack_dir),
            "prefect_api_url": state.prefect_api_url, "prefect_ui_url": state.prefect_ui_url,
            "gateway_url": state.gateway_url, "work_pool": state.work_pool, "workers": state.workers,
            "components": components}


def env_lines(stack_dir: Path | str | None = None) -> list[str]:
    """Shell lines that point Prefect and ``draas`` at the stack (no secrets)."""
    state = load_state(stack_dir)
    if state is None:
        raise StackError(f"no stack in {resolve_dir(stack_dir)}: run `draas stack up` first")
    lines = [f"export PREFECT_API_URL={state.prefect_api_url}", f"export PREFECT_UI_URL={state.prefect_ui_url}"]
    if state.lab.site_profile:
        lines.append(f"export DRAAS_SITE_PROFILE={state.lab.site_profile}")
    return lines

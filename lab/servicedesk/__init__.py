"""The lab's service desk: a ServiceNow Table API simulator (see ``lab.servicedesk.server``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.process import LabStartError, python_argv, spawn, stop_pids, wait_ready_file
from lab.state import ServiceDeskLab

NAME = "servicedesk"


def start(ctx: Any) -> None:
    """Start the simulator on a free loopback port and record it in ``ctx.state.servicedesk``."""
    cfg = ctx.config.get("servicedesk") or {}
    username = str(cfg.get("username", ""))
    password = str(cfg.get("password", ""))
    if not username or not password:
        raise LabStartError("lab config: servicedesk.username and servicedesk.password are required")
    lab_dir = Path(ctx.lab_dir)
    run_dir = lab_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    ready = run_dir / f"{NAME}.ready.json"
    ready.unlink(missing_ok=True)
    # Credentials go through the environment, not argv, so `ps` does not show them.
    proc = spawn(lab_dir, NAME, python_argv("lab.servicedesk.server", "--host", "127.0.0.1", "--port", "0",
                                            "--ready-file", str(ready)),
                 env={"DRAAS_SERVICEDESK_USERNAME": username, "DRAAS_SERVICEDESK_PASSWORD": password})
    try:
        info = wait_ready_file(ready, proc, NAME, timeout=60.0)
    except BaseException:
        stop_pids([proc.pid])
        raise
    ctx.state.servicedesk = ServiceDeskLab(pid=proc.pid, url=str(info["url"]), username=username,
                                           password=password)

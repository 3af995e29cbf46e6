"""The lab's Cisco devices: a stateful CLI emulator over SSH (NX-OS, ASA multi-context, IOS-XE).

``start(ctx)`` runs ``python -m lab.cisco.server`` (one process for every device in the
lab config's ``cisco`` section), waits for its ready file and records the endpoints in
the lab state.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from lab.process import python_argv, spawn, wait_ready_file
from lab.state import CiscoDevice, CiscoLab

if TYPE_CHECKING:
    from lab.launcher import LabContext

READY_FILE = "cisco.json"


def start(ctx: LabContext) -> None:
    """Start the emulator and set ``ctx.state.cisco``."""
    cfg = ctx.config["cisco"]
    run_dir = ctx.lab_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    ready = run_dir / READY_FILE
    ready.unlink(missing_ok=True)
    # The child runs with cwd=lab_dir: make sure it imports this project's `lab` package.
    pythonpath = os.pathsep.join(p for p in (str(ctx.project_root), os.environ.get("PYTHONPATH", "")) if p)
    proc = spawn(ctx.lab_dir, "cisco",
                 python_argv("lab.cisco.server", "--lab-config", ctx.state.config_path, "--ready-file", str(ready)),
                 env={"PYTHONPATH": pythonpath})
    info = wait_ready_file(ready, proc, "cisco", timeout=60)
    devices = {}
    for spec in cfg["devices"]:
        devices[spec["name"]] = CiscoDevice(
            name=spec["name"], hostname=spec["hostname"], platform=spec["platform"],
            role=spec.get("role", ""), model=spec.get("model", ""),
            multi_context=bool(spec.get("multi_context", False)),
            port=int(info["devices"][spec["name"]]),
            username=cfg["username"], password=cfg["password"], secret=cfg["enable_secret"],
        )
    ctx.state.cisco = CiscoLab(pid=proc.pid, control_url=info["control_url"], devices=devices)

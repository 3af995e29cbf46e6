"""The lab's guests: the declared services of powered-on VMs, served on loopback (see ``lab.guests.server``).

A recovered VM "boots" in the recovery vcsim (heartbeat green, its IP set); this component
then serves the services its guest declares (``guestinfo.lab.*``, see ``lab.guests.spec``)
on a loopback address of its own, and maps the VM's IP to that address for the product's
verification checks (the site profile's ``guest_network``, the product's only knowledge of it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lab.process import LabStartError, python_argv, spawn, stop_pids, wait_ready_file
from lab.state import GuestsLab

NAME = "guests"


def guests_config(ctx: Any) -> dict[str, Any]:
    """The child's JSON config: both vCenters' endpoints, the poll interval, the address salt."""
    cfg = ctx.config.get("guests") or {}
    try:
        interval = float(cfg.get("poll_interval_s", 0.2))
    except (TypeError, ValueError):
        raise LabStartError("lab config: guests.poll_interval_s must be a number of seconds") from None
    if interval <= 0:
        raise LabStartError("lab config: guests.poll_interval_s must be positive")
    if not ctx.state.vcenter:
        raise LabStartError("the guests need the vCenters; start `vcenter` first")
    vcenters = {site: {"host": vc.host, "port": vc.port, "username": vc.username, "password": vc.password}
                for site, vc in ctx.state.vcenter.items()}
    return {"vcenters": vcenters, "poll_interval_s": interval, "salt": str(ctx.lab_dir)}


def start(ctx: Any) -> None:
    """Start the guests process, wait until it has read both vCenters, record it in ``ctx.state.guests``."""
    config = guests_config(ctx)
    lab_dir = Path(ctx.lab_dir)
    run_dir = lab_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "guests.json"
    # The file holds the lab's vCenter password: private, and never on the command line.
    fd = os.open(cfg_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)
    ready = run_dir / "guests.ready.json"
    ready.unlink(missing_ok=True)
    proc = spawn(lab_dir, NAME, python_argv("lab.guests.server", "--config", str(cfg_path),
                                            "--ready-file", str(ready)))
    try:
        info = wait_ready_file(ready, proc, NAME, timeout=60.0)
    except BaseException:
        stop_pids([proc.pid])
        raise
    ctx.state.guests = GuestsLab(pid=proc.pid, url=str(info["url"]))

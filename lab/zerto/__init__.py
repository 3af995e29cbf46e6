"""The lab's replication manager: an imitation of Zerto's ZVM REST API v1 (see ``lab.zerto.api``).

It reads the protected vCenter's VMs, keeps VPGs with a continuously growing checkpoint
journal, and on recovery actions creates the recovered VMs in the recovery vCenter.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lab.process import LabStartError, python_argv, spawn, stop_pids, wait_ready_file
from lab.state import ReplicationLab

NAME = "replication"

#: ``replication`` keys of the lab config passed to the simulator, with their defaults.
SIM_KEYS: dict[str, Any] = {
    "checkpoint_interval_s": 5.0,
    "app_consistent_every": 6,
    "app_consistent_tag": "VSS",
    "initial_sync_s": 3.0,
    "task_duration_s": 1.0,
    "session_ttl_s": 1800.0,
    "token_ttl_s": 300.0,
}


def sim_config(ctx: Any) -> dict[str, Any]:
    """The child's JSON config: credentials, timings and both vCenters' endpoints."""
    cfg = ctx.config.get("replication") or {}
    for key in ("username", "password"):
        if not cfg.get(key):
            raise LabStartError(f"lab config: replication.{key} is required")
    vcenters = {}
    for key in ("protected", "recovery"):
        site = ctx.state.vcenter.get(key)
        if site is None:
            raise LabStartError(f"the replication simulator needs the {key} vCenter; start `vcenter` first")
        vcenters[key] = {"host": site.host, "port": site.port, "username": site.username,
                         "password": site.password, "datacenter": site.datacenter, "cluster": site.cluster,
                         "datastores": list(site.datastores)}
    sim = {k: cfg.get(k, default) for k, default in SIM_KEYS.items()}
    sim.update(username=str(cfg["username"]), password=str(cfg["password"]),
               protected_site_name=str(cfg.get("protected_site_name", "Protected-Site")),
               recovery_site_name=str(cfg.get("recovery_site_name", "Recovery-Site")),
               protected_site_key="protected", recovery_site_key="recovery")
    return {"sim": sim, "vcenters": vcenters}


def start(ctx: Any) -> None:
    """Start the simulator, wait until it serves, and record it in ``ctx.state.replication``."""
    config = sim_config(ctx)
    lab_dir = Path(ctx.lab_dir)
    run_dir = lab_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "zerto.json"
    # The file holds lab passwords: private, and never on the command line.
    fd = os.open(cfg_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)
    ready = run_dir / "zerto.ready.json"
    ready.unlink(missing_ok=True)
    proc = spawn(lab_dir, NAME, python_argv("lab.zerto.server", "--config", str(cfg_path),
                                            "--ready-file", str(ready)))
    try:
        info = wait_ready_file(ready, proc, NAME, timeout=60.0)
    except BaseException:
        stop_pids([proc.pid])
        raise
    sim = config["sim"]
    ctx.state.replication = ReplicationLab(
        pid=proc.pid, url=str(info["url"]), username=sim["username"], password=sim["password"],
        protected_site_name=sim["protected_site_name"], recovery_site_name=sim["recovery_site_name"],
    )

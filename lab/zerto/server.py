"""Run the lab's replication manager (a ZVM REST API v1 imitation) as a process.

``python -m lab.zerto.server --config zerto.json --ready-file zerto.ready.json``

The config file (written by ``lab.zerto.start``, mode 0600) holds the lab credentials, the
``replication`` settings and both vCenters' endpoints, so no secret appears on the command
line. The server binds 127.0.0.1 on a free port and announces it in the ready file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from lab.http import serve
from lab.zerto.api import create_app
from lab.zerto.engine import SimConfig, ZertoSim
from lab.zerto.vsphere import PyVmomiBackend, SiteEndpoint, VSphereError

log = logging.getLogger("lab.zerto")


def build(config: dict[str, Any]) -> tuple[ZertoSim, PyVmomiBackend]:
    """The simulator and its vSphere backend from the JSON config."""
    sites = {key: SiteEndpoint.model_validate(ep) for key, ep in config["vcenters"].items()}
    backend = PyVmomiBackend(sites)
    sim = ZertoSim(SimConfig.model_validate(config["sim"]), backend)
    return sim, backend


def wait_for_vcenters(backend: PyVmomiBackend, sites: list[str], timeout: float = 30.0) -> None:
    """Fail fast (and clearly) when a vCenter is not reachable at start-up."""
    deadline = time.monotonic() + timeout
    for site in sites:
        while True:
            try:
                backend.check(site)
                break
            except (VSphereError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise SystemExit(f"lab zvm: {site} vCenter not reachable: {exc}") from None
                time.sleep(0.2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Lab replication manager (Zerto ZVM REST API v1 subset)")
    parser.add_argument("--config", type=Path, required=True, help="JSON config written by lab.zerto.start")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = json.loads(args.config.read_text())
    sim, backend = build(config)
    wait_for_vcenters(backend, list(config["vcenters"]))
    try:
        asyncio.run(serve(create_app(sim), args.host, args.port, args.ready_file))
    finally:
        sim.shutdown()
        backend.close()


if __name__ == "__main__":
    main()

"""Recovery-ready core figures: vCenter logins and wall time of a Gold pre-provisioning.

Run: ``make bench`` (or ``.venv/bin/python -m benchmarks.core_bench``). Starts a lab of its
own and a temporary Prefect server (ephemeral), onboards the Gold sample tenant ``acme``, then
pre-provisions and offboards it twice: once with one session per task (``DRAAS_SHARED_SESSIONS=0``,
the behaviour before shared sessions) and once with the run's shared sessions. Prints and
records in bench/results.json the vCenter logins of each pre-provisioning and its wall time.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks.results import record

COMMAND = ".venv/bin/python -m benchmarks.core_bench"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.update({"DRAAS_LAB_DIR": str(root / "lab"), "PREFECT_HOME": str(root / "prefect"),
                           "DRAAS_DATABASE_URL": f"sqlite:///{root / 'state.db'}",
                           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"})
        os.environ.pop("DRAAS_SITE_PROFILE", None)
        from lab import launcher  # the benchmark starts the lab; the product only reads its site profile

        launcher.up(lab_dir=root / "lab")
        try:
            from draas.clients.vcenter import VCenterClient
            from flows.offboard import offboard_tenant
            from flows.onboard import onboard_tenant
            from flows.preprovision import preprovision_container

            onboard_tenant("acme", requested_by="bench", output_dir=str(root / "out"))
            for label, shared in (("one session per task (before)", "0"), ("shared per run", "1")):
                os.environ["DRAAS_SHARED_SESSIONS"] = shared
                before = VCenterClient.login_count()
                start = time.perf_counter()
                result = preprovision_container("acme", requested_by="bench")
                took = time.perf_counter() - start
                logins = VCenterClient.login_count() - before
                record(f"vCenter logins, Gold pre-provisioning, {label}", logins, "logins",
                       target="1" if shared == "1" else None, command=COMMAND)
                record(f"wall time, Gold pre-provisioning ({len(result.steps)} steps), {label}", took, "s",
                       command=COMMAND)
                offboard_tenant("acme", requested_by="bench")
        finally:
            launcher.down(root / "lab")


if __name__ == "__main__":
    main()

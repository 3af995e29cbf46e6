"""Lab speed figures: start/stop of the whole lab and pushing 200 config lines over SSH.

Run: ``make bench`` (or ``.venv/bin/python -m benchmarks.lab_bench [--rounds N]``). Prints one
line per figure: the median and the spread over the rounds.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.results import record
from draas.site import Site
from lab import launcher
from lab.state import SITE_PROFILE_FILE, LabState

COMMAND = ".venv/bin/python -m benchmarks.lab_bench"
#: What each figure should stay within (the emulator's own cost must stay well under a second).
TARGETS = {"emulator, 200 lines in one write (no per-line wait)": "< 1 s"}


def measure(label: str, rounds: int, fn: Callable[[int], None]) -> None:
    took = []
    for i in range(rounds):
        start = time.perf_counter()
        fn(i)
        took.append(time.perf_counter() - start)
    record(f"{label} (median of {rounds}, min {min(took):.3f}, max {max(took):.3f})", statistics.median(took), "s", target=TARGETS.get(label), command=COMMAND)


def vlan_block(i: int, prefix: str) -> list[str]:
    return [line for v in range(100) for line in (f"vlan {3000 + v}", f"  name {prefix}-{i}-{v}")]


def cisco_figures(state: LabState, rounds: int) -> None:
    from netmiko import ConnectHandler

    dev = state.cisco.devices["agg-1"]  # type: ignore[union-attr]
    conn = ConnectHandler(device_type=dev.platform, host=dev.host, port=dev.port, username=dev.username,
                          password=dev.password, secret=dev.secret)
    try:
        measure("netmiko send_config_set, 200 lines (echo check per line)", rounds,
                lambda i: conn.send_config_set(vlan_block(i, "echo")))

        def one_write(i: int) -> None:
            lines = vlan_block(i, "bulk")
            conn.config_mode()
            conn.write_channel("\n".join(lines) + "\n")
            conn.read_until_pattern(re.escape(lines[-1].strip()) + r"\s*\n.*\(config[^)]*\)#", read_timeout=10)
            conn.exit_config_mode()

        measure("emulator, 200 lines in one write (no per-line wait)", rounds, one_write)
        conn.send_config_set([f"no vlan {3000 + v}" for v in range(100)])
    finally:
        conn.disconnect()
    # The adapter finds the device as the flows do: through the site profile the lab wrote.
    os.environ["DRAAS_SITE_PROFILE"] = str(Path(state.lab_dir) / SITE_PROFILE_FILE)
    block = Site.load().device_block("agg-1")

    def adapter_apply(i: int) -> None:
        with block.get_client() as client:
            client.apply("\n".join(vlan_block(i, "adapter")) + "\n")

    measure("CiscoClient.apply, 200 lines (read, diff, push, save)", rounds, adapter_apply)
    with block.get_client() as client:
        client.remove("\n".join(f"vlan {3000 + v}" for v in range(100)) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lab_dir = Path(tmp)
        measure("lab up + down (2 vcsim, 6 SSH devices, ZVM, BIND, desk)", args.rounds,
                lambda i: (launcher.up(lab_dir=lab_dir / str(i)), launcher.down(lab_dir / str(i))))
        state = launcher.up(lab_dir=lab_dir / "bench")
        try:
            cisco_figures(state, args.rounds)
        finally:
            start = time.perf_counter()
            launcher.down(lab_dir / "bench")
            record("lab down", time.perf_counter() - start, "s", command=COMMAND)


if __name__ == "__main__":
    main()

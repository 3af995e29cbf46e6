"""`python -m lab up|down|status [--lab-dir DIR]`: the lab's own command line.

This is the seam between the product and the lab: `draas lab ...` and `draas demo` run
this module as a subprocess and never import the lab. What the product then reads is the
site profile `up` writes (``<lab dir>/site-profile.yaml``), like any site's profile.
Exit status 0 on success, 1 on a failed start or (for `status`) when no lab is up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lab import launcher
from lab.process import LabStartError
from lab.state import SITE_PROFILE_FILE, STATE_FILE, default_lab_dir


def _status_table(lab_dir: Path) -> Table:
    table = Table("component", "pid", "alive", "endpoint")
    for row in launcher.status(lab_dir=lab_dir):
        table.add_row(row["component"], str(row["pid"]), "yes" if row["alive"] else "NO", row["endpoint"])
    return table


def main(argv: list[str] | None = None) -> int:
    """Run one lab command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m lab", description="The embedded lab.")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--lab-dir", type=Path, default=None, help="Lab directory (default $DRAAS_LAB_DIR or ./.lab).")
    parser.add_argument("--config", type=Path, default=None, help="Lab config for `up` (default configs/lab.yaml).")
    args = parser.parse_args(argv)
    console = Console()
    lab_dir = (args.lab_dir or default_lab_dir()).resolve()
    if args.command == "up":
        try:
            launcher.up(lab_dir=lab_dir, config_path=args.config)
        except LabStartError as exc:
            console.print(f"[red]lab up failed:[/red] {exc}", soft_wrap=True)
            return 1
        console.print(f"lab is up; state file: {lab_dir / STATE_FILE}; site profile: {lab_dir / SITE_PROFILE_FILE}",
                      soft_wrap=True)
        console.print(_status_table(lab_dir))
    elif args.command == "down":
        pids = launcher.down(lab_dir=lab_dir)
        console.print(f"lab is down ({len(pids)} process groups stopped)")
    else:
        try:
            console.print(_status_table(lab_dir))
        except FileNotFoundError as exc:
            console.print(str(exc), soft_wrap=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

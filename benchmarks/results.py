"""Figures of ``make bench``: printed as they are measured and collected in bench/results.json.

Each figure is ``{name, value, unit, target, command}``; ``target`` says what the figure should
stay within (or null where it is informative only). Tests never assert timings: this file is
where speed is tracked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results.json"


def record(name: str, value: float, unit: str, *, target: str | None = None, command: str) -> None:
    """Print one figure and merge it into bench/results.json (replacing an earlier value of that name)."""
    shown = f"{value:.3f}" if isinstance(value, float) else str(value)
    print(f"{name:<62} {shown:>10} {unit:<8}{'  target ' + target if target else ''}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    figures: list[dict[str, Any]] = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    figures = [f for f in figures if f.get("name") != name]
    figures.append({"name": name, "value": value, "unit": unit, "target": target, "command": command})
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")

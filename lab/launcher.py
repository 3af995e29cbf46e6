"""`python -m lab up|down|status` (run by `draas lab ...`): start every simulator, publish the site profile, stop them all."""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.process import PIDS_FILE, LabStartError, _alive, recorded_pids, stop_pids
from lab.state import (
    SITE_PROFILE_FILE,
    STATE_FILE,
    LabState,
    default_lab_config,
    default_lab_dir,
    read_partial,
    write_site_profile,
)


@dataclass
class LabContext:
    """What a component's ``start`` gets: where to write, its config, the state so far."""

    lab_dir: Path
    config: dict[str, Any]
    state: LabState
    project_root: Path = field(default_factory=lambda: Path(__file__).resolve().parent.parent)


# Order matters: the replication simulator and the guests read both vCenters' state.
COMPONENTS: list[tuple[str, str]] = [
    ("vcenter", "lab.vcsim"),
    ("cisco", "lab.cisco"),
    ("dns", "lab.bind"),
    ("servicedesk", "lab.servicedesk"),
    ("replication", "lab.zerto"),
    ("guests", "lab.guests"),
]


def load_config(path: Path) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as exc:
        raise LabStartError(f"{path}: cannot read the lab config: {exc}") from None
    if not isinstance(data, dict):
        raise LabStartError(f"{path}: the lab config must be a mapping")
    return data


def running_state(lab_dir: Path) -> LabState | None:
    """The state of a lab that is up and whose every process is alive, else None."""
    try:
        state = LabState.load(lab_dir)
    except (FileNotFoundError, ValueError):
        return None
    if all(_alive(pid) for pid in state.pids()):
        return state
    return None


def up(lab_dir: Path | None = None, config_path: Path | None = None,
       only: list[str] | None = None) -> LabState:
    """Start the lab (or return the running one) and write its site profile.

    A failed start stops what it started.
    """
    lab_dir = (lab_dir or default_lab_dir()).resolve()
    config_path = (config_path or default_lab_config()).resolve()
    existing = running_state(lab_dir)
    if existing is not None:
        write_site_profile(existing)  # e.g. removed by hand: the product must still find the lab
        return existing
    down(lab_dir)
    lab_dir.mkdir(parents=True, exist_ok=True)
    ctx = LabContext(lab_dir=lab_dir, config=load_config(config_path),
                     state=LabState(lab_dir=str(lab_dir), config_path=str(config_path)))
    try:
        for name, module in COMPONENTS:
            if only is not None and name not in only:
                continue
            start: Callable[[LabContext], None] = importlib.import_module(module).start
            try:
                start(ctx)
            except LabStartError as exc:
                raise LabStartError(f"{config_path}: {exc}") from exc
            except (KeyError, TypeError, ValueError) as exc:
                # A setting missing from (or malformed in) the lab config: name the file and part.
                raise LabStartError(f"{config_path}: {name}: missing or invalid setting: "
                                    f"{type(exc).__name__}: {exc}") from exc
            ctx.state.save()
            write_site_profile(ctx.state)
    except BaseException:
        down(lab_dir)
        raise
    return ctx.state


def down(lab_dir: Path | None = None) -> list[int]:
    """Stop every lab process (from the state file and the pid log); returns the pids stopped."""
    lab_dir = (lab_dir or default_lab_dir()).resolve()
    pids = set(recorded_pids(lab_dir))
    raw = read_partial(lab_dir)
    if raw:
        try:
            pids.update(LabState.model_validate(raw).pids())
        except ValueError:
            pass
    stop_pids(sorted(pids))
    for name in (STATE_FILE, SITE_PROFILE_FILE, PIDS_FILE):
        (lab_dir / name).unlink(missing_ok=True)
    for sub in ("run",):
        shutil.rmtree(lab_dir / sub, ignore_errors=True)
    return sorted(pids)


def status(lab_dir: Path | None = None) -> list[dict[str, Any]]:
    """One row per component: name, pid, alive, endpoint."""
    lab_dir = (lab_dir or default_lab_dir()).resolve()
    state = LabState.load(lab_dir)
    rows: list[dict[str, Any]] = []
    for site, vc in state.vcenter.items():
        rows.append({"component": f"vcenter-{site}", "pid": vc.pid, "alive": _alive(vc.pid), "endpoint": vc.sdk_url})
    if state.cisco:
        for dev in state.cisco.devices.values():
            rows.append({"component": f"ssh {dev.name} ({dev.platform})", "pid": state.cisco.pid,
                         "alive": _alive(state.cisco.pid), "endpoint": f"ssh://{dev.host}:{dev.port}"})
    if state.dns:
        rows.append({"component": "dns (BIND)", "pid": state.dns.pid, "alive": _alive(state.dns.pid),
                     "endpoint": f"dns://{state.dns.host}:{state.dns.port}"})
    if state.servicedesk:
        rows.append({"component": "servicedesk", "pid": state.servicedesk.pid,
                     "alive": _alive(state.servicedesk.pid), "endpoint": state.servicedesk.url})
    if state.replication:
        rows.append({"component": "replication (ZVM API)", "pid": state.replication.pid,
                     "alive": _alive(state.replication.pid), "endpoint": state.replication.url})
    if state.guests:
        rows.append({"component": "guests", "pid": state.guests.pid, "alive": _alive(state.guests.pid),
                     "endpoint": state.guests.url})
    return rows

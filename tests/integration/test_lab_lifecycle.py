"""`draas lab up|status|down` through the CLI: down leaves no process and no listening port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from lab.state import LabState

DRAAS = [sys.executable, "-c", "from draas.cli import main; main()"]


def _draas(*args: str, lab_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DRAAS, *args, "--lab-dir", str(lab_dir)], capture_output=True, text=True,
                          timeout=180, env={**os.environ, "COLUMNS": "200"})


def _tcp_ports(state: LabState) -> list[int]:
    ports = [vc.port for vc in state.vcenter.values()]
    assert state.cisco and state.dns and state.servicedesk and state.replication and state.guests
    ports += [d.port for d in state.cisco.devices.values()]
    ports += [int(urlparse(u).port or 0) for u in (state.cisco.control_url, state.servicedesk.url, state.replication.url,
                                                   state.guests.url)]
    return ports + [state.dns.port]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_cli_up_status_down_leaves_nothing(tmp_path: Path) -> None:
    up = _draas("lab", "up", lab_dir=tmp_path)
    assert up.returncode == 0, up.stdout + up.stderr
    state = LabState.load(tmp_path)
    assert oct((tmp_path / "state.json").stat().st_mode & 0o777) == "0o600"
    pids, ports = state.pids(), _tcp_ports(state)
    assert len(set(pids)) == 7 and all(_alive(p) for p in pids)
    assert all(_listening(p) for p in ports)

    again = _draas("lab", "up", lab_dir=tmp_path)  # a running lab is reported, not restarted
    assert again.returncode == 0 and LabState.load(tmp_path).pids() == pids

    status = _draas("lab", "status", lab_dir=tmp_path)
    assert status.returncode == 0 and "NO" not in status.stdout.split()
    assert "vcenter-recovery" in status.stdout and "replication" in status.stdout

    down = _draas("lab", "down", lab_dir=tmp_path)
    assert down.returncode == 0, down.stderr
    assert [p for p in pids if _alive(p)] == []
    assert [p for p in ports if _listening(p)] == []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:  # BIND's UDP port is free again
        udp.bind(("127.0.0.1", state.dns.port))  # type: ignore[union-attr]
    assert _draas("lab", "status", lab_dir=tmp_path).returncode == 1


def test_a_bad_lab_config_names_file_and_part_and_leaves_nothing(tmp_path: Path) -> None:
    import yaml

    from lab import launcher
    from lab.process import LabStartError, recorded_pids
    from lab.state import default_lab_config

    config = yaml.safe_load(default_lab_config().read_text())
    del config["cisco"]["devices"]
    bad = tmp_path / "lab.yaml"
    bad.write_text(yaml.safe_dump(config))
    lab_dir = tmp_path / "lab"
    with pytest.raises(LabStartError) as err:
        launcher.up(lab_dir=lab_dir, config_path=bad)
    assert str(bad) in str(err.value) and "cisco" in str(err.value)
    assert not (lab_dir / "state.json").exists()
    assert recorded_pids(lab_dir) == []  # the vCenters it had started were stopped again

    cli = _draas("lab", "up", "--config", str(bad), lab_dir=tmp_path / "lab2")
    assert cli.returncode == 1 and str(bad) in cli.stdout.replace("\n", "") and "Traceback" not in cli.stderr

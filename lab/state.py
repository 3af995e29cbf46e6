"""The lab state file: what clients read to find the lab's endpoints and lab-only credentials."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

STATE_FILE = "state.json"


def default_lab_dir() -> Path:
    """The lab directory: ``$DRAAS_LAB_DIR`` or ``.lab`` under the current directory."""
    return Path(os.environ.get("DRAAS_LAB_DIR", ".lab")).resolve()


def default_lab_config() -> Path:
    """The lab config file: ``$DRAAS_LAB_CONFIG`` or ``configs/lab.yaml`` of the project."""
    env = os.environ.get("DRAAS_LAB_CONFIG")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parent.parent / "configs" / "lab.yaml"


class VCenterSite(BaseModel):
    """One vcsim instance (a vCenter of the protected or the recovery site)."""

    site: str
    host: str = "127.0.0.1"
    port: int
    username: str
    password: str
    datacenter: str
    cluster: str
    datastores: list[str]
    dvswitch: str
    pid: int

    @property
    def sdk_url(self) -> str:
        return f"http://{self.host}:{self.port}/sdk"


class CiscoDevice(BaseModel):
    """One emulated Cisco device reachable over SSH."""

    name: str
    hostname: str
    platform: str  # netmiko device_type: cisco_nxos | cisco_asa | cisco_ios
    role: str
    model: str = ""
    multi_context: bool = False
    host: str = "127.0.0.1"
    port: int
    username: str
    password: str
    secret: str


class CiscoLab(BaseModel):
    pid: int
    control_url: str = Field(description="HTTP control API: read configs, inject faults, reset")
    devices: dict[str, CiscoDevice]


class ReplicationLab(BaseModel):
    pid: int
    url: str
    username: str
    password: str
    protected_site_name: str
    recovery_site_name: str


class DnsLab(BaseModel):
    pid: int
    host: str = "127.0.0.1"
    port: int
    tsig_name: str
    tsig_secret: str
    tsig_algorithm: str
    zones: list[str]


class ServiceDeskLab(BaseModel):
    pid: int
    url: str
    username: str
    password: str


class LabState(BaseModel):
    """Everything a client needs to reach the running lab."""

    lab_dir: str
    config_path: str
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    vcenter: dict[str, VCenterSite] = Field(default_factory=dict)
    cisco: CiscoLab | None = None
    replication: ReplicationLab | None = None
    dns: DnsLab | None = None
    servicedesk: ServiceDeskLab | None = None

    def pids(self) -> list[int]:
        pids = [s.pid for s in self.vcenter.values()]
        for part in (self.cisco, self.replication, self.dns, self.servicedesk):
            if part is not None:
                pids.append(part.pid)
        return pids

    def save(self) -> Path:
        path = Path(self.lab_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, lab_dir: Path | None = None) -> LabState:
        path = (lab_dir or default_lab_dir()) / STATE_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: no lab state; run `draas lab up` first")
        return cls.model_validate(json.loads(path.read_text()))


def read_partial(lab_dir: Path) -> dict[str, Any]:
    """The raw state file, or an empty dict; used by `lab down` after a failed start."""
    path = lab_dir / STATE_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}

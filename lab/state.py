"""The lab's state file (the launcher's own record) and the site profile it publishes for the product.

``state.json`` is the lab's private record: pids, endpoints, lab-only credentials. The
product never reads it. What the product reads is ``site-profile.yaml``, written next to
it: the connection values of every system in the fields of the product's blocks, in the
format of docs/configuration.md ("Site profile"), exactly as an operator would write one
by hand for real systems. The lab does not import the product; it writes plain YAML.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

STATE_FILE = "state.json"
#: The site profile the lab publishes (the product finds it as ``$DRAAS_LAB_DIR/site-profile.yaml``).
SITE_PROFILE_FILE = "site-profile.yaml"


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


class GuestsLab(BaseModel):
    """The guests of powered-on VMs (lab.guests): their services on loopback, and the address map."""

    pid: int
    url: str


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
    guests: GuestsLab | None = None

    def pids(self) -> list[int]:
        pids = [s.pid for s in self.vcenter.values()]
        for part in (self.cisco, self.replication, self.dns, self.servicedesk, self.guests):
            if part is not None:
                pids.append(part.pid)
        return pids

    def save(self) -> Path:
        path = Path(self.lab_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        # Created 0600, never readable by others, even for a moment.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(self.model_dump_json(indent=2))
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


# --- the site profile: the lab's systems as the product is configured for any site -------------------

_PROFILE_HEADER = """\
# Site profile written by `draas lab up` for the lab in {lab_dir}.
# The connection values of every system, in the fields of the product's blocks
# (see docs/configuration.md, "Site profile"). Lab-only credentials, valid nowhere else;
# rewritten at every start, removed by `draas lab down`.
"""


def site_profile(state: LabState) -> dict[str, Any]:
    """The lab's systems as a site profile: block field values, the devices and the vCenter layout.

    Host keys and certificates of the lab are new at every start (and vcsim serves plain
    HTTP on loopback), so the lab's profile turns verification off; a real site keeps it on.
    """
    profile: dict[str, Any] = {"source": f"lab {state.lab_dir}"}
    if state.vcenter:
        profile["vcenter"] = {
            site: {
                "credentials": {"host": vc.host, "port": vc.port, "username": vc.username,
                                "password": vc.password, "protocol": "http", "verify_tls": False,
                                "datacenter": vc.datacenter},
                "datacenter": vc.datacenter, "cluster": vc.cluster, "dvswitch": vc.dvswitch,
                "datastore": vc.datastores[0] if vc.datastores else "",
            }
            for site, vc in state.vcenter.items()
        }
    if state.cisco is not None:
        profile["devices"] = [
            {"name": dev.name, "hostname": dev.hostname, "platform": dev.platform, "role": dev.role,
             "multi_context": dev.multi_context,
             "credentials": {"device_name": dev.name, "host": dev.host, "port": dev.port,
                             "platform": dev.platform, "username": dev.username, "password": dev.password,
                             "enable_secret": dev.secret, "verify_host_key": False}}
            for dev in state.cisco.devices.values()
        ]
    if state.replication is not None:
        rep = state.replication
        profile["replication"] = {"credentials": {"url": rep.url, "username": rep.username,
                                                  "password": rep.password, "auth_style": "session",
                                                  "task_poll_interval": 0.25}}
    if state.dns is not None:
        dns = state.dns
        profile["dns"] = {"credentials": {"server": dns.host, "port": dns.port, "tsig_key_name": dns.tsig_name,
                                          "tsig_secret": dns.tsig_secret, "tsig_algorithm": dns.tsig_algorithm}}
    if state.servicedesk is not None:
        sd = state.servicedesk
        profile["servicedesk"] = {"credentials": {"url": sd.url, "username": sd.username, "password": sd.password,
                                                  "webhook_url": f"{sd.url.rstrip('/')}/api/lab/notifications"}}
    if state.guests is not None:
        # The lab's guests answer on loopback addresses, not on their VMs' IPs: the product asks
        # this map where an IP is reachable (a real site has no guest_network: the IP itself).
        profile["guest_network"] = {"url": state.guests.url}
    return profile


def write_site_profile(state: LabState, path: Path | None = None) -> Path:
    """Write the site profile (mode 0600, atomically) next to the state file; returns its path."""
    path = path or Path(state.lab_dir) / SITE_PROFILE_FILE
    text = _PROFILE_HEADER.format(lab_dir=state.lab_dir) + yaml.safe_dump(
        site_profile(state), sort_keys=False, default_flow_style=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".site-profile.", suffix=".tmp")  # created 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

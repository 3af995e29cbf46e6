"""The recovery site the flows drive: devices, vCenter layout, and where their blocks come from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from draas.errors import PermanentError

if TYPE_CHECKING:
    from blocks.cisco import CiscoDeviceCredentials
    from blocks.dns import DnsServerCredentials
    from blocks.replication import ZertoCredentials
    from blocks.servicedesk import ServiceDeskCredentials
    from blocks.vcenter import VCenterCredentials
    from lab.state import LabState

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SiteConfigError(PermanentError):
    """configs/site.yaml is missing or invalid; the message names the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BlockRef(_Strict):
    block: str = Field(description="Name of the saved Prefect block")


class RecoveryVCenter(BlockRef):
    datacenter: str
    cluster: str
    dvswitch: str
    datastore: str


class VCenters(_Strict):
    protected: BlockRef
    recovery: RecoveryVCenter


class Device(_Strict):
    """One recovery-site network device."""

    name: str
    hostname: str
    platform: Literal["cisco_nxos", "cisco_asa", "cisco_ios"]
    role: str
    multi_context: bool = False
    block: str = ""


class Site(_Strict):
    """configs/site.yaml: the recovery site's systems and their block names."""

    connections: Literal["lab", "blocks"] = "lab"
    vcenter: VCenters
    replication: BlockRef
    dns: BlockRef
    servicedesk: BlockRef
    devices: list[Device] = Field(min_length=1)

    @classmethod
    def load(cls, path: Path | str | None = None) -> Site:
        """Read the site file (``$DRAAS_SITE_CONFIG`` or configs/site.yaml)."""
        path = Path(path or os.environ.get("DRAAS_SITE_CONFIG") or PROJECT_ROOT / "configs" / "site.yaml")
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise SiteConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise SiteConfigError(f"{path}: not valid YAML: {exc}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top)"
            raise SiteConfigError(f"{path}: {where}: {first['msg']}") from None

    @classmethod
    def for_config_dir(cls, config_dir: str | Path | None) -> Site:
        """The site file of ``config_dir`` when it has one, else the default site file."""
        candidate = Path(config_dir) / "site.yaml" if config_dir else None
        return cls.load(candidate if candidate and candidate.is_file() else None)

    # -- the lab's state, read once -------------------------------------------------------
    def _lab(self) -> LabState:
        from lab.state import LabState

        return LabState.load()

    def device(self, name: str) -> Device:
        for dev in self.devices:
            if dev.name == name:
                return dev
        raise SiteConfigError(f"configs/site.yaml: devices: no device named {name!r}")

    def devices_with_role(self, role: str) -> list[Device]:
        return [d for d in self.devices if d.role == role]

    # -- blocks ---------------------------------------------------------------------------
    def vcenter_block(self, site: Literal["protected", "recovery"] = "recovery") -> VCenterCredentials:
        from blocks.vcenter import VCenterCredentials

        if self.connections == "lab":
            return VCenterCredentials.from_lab(self._lab(), site=site)
        ref = self.vcenter.recovery if site == "recovery" else self.vcenter.protected
        return VCenterCredentials.load(ref.block)  # type: ignore[return-value]

    def device_block(self, name: str) -> CiscoDeviceCredentials:
        from blocks.cisco import CiscoDeviceCredentials

        dev = self.device(name)
        if self.connections == "lab":
            return CiscoDeviceCredentials.from_lab(self._lab(), device_name=name)
        return CiscoDeviceCredentials.load(dev.block)  # type: ignore[return-value]

    def replication_block(self) -> ZertoCredentials:
        from blocks.replication import ZertoCredentials

        if self.connections == "lab":
            return ZertoCredentials.from_lab(self._lab())
        return ZertoCredentials.load(self.replication.block)  # type: ignore[return-value]

    def dns_block(self) -> DnsServerCredentials:
        from blocks.dns import DnsServerCredentials

        if self.connections == "lab":
            return DnsServerCredentials.from_lab(self._lab())
        return DnsServerCredentials.load(self.dns.block)  # type: ignore[return-value]

    def servicedesk_block(self) -> ServiceDeskCredentials:
        from blocks.servicedesk import ServiceDeskCredentials

        if self.connections == "lab":
            return ServiceDeskCredentials.from_lab(self._lab())
        return ServiceDeskCredentials.load(self.servicedesk.block)  # type: ignore[return-value]

"""The recovery site the flows drive: devices, vCenter layout, and where their connections come from.

``configs/site.yaml`` (or ``<config_dir>/site.yaml``) names the site's systems. Their
connection values come from one of two places, chosen by ``connections:``:

- ``profile``: a *site profile*, a YAML file (mode 0600) holding, per system, the field
  values of the product's block (``VCenterCredentials`` per vCenter, ``CiscoDeviceCredentials``
  per device, ``ZertoCredentials``, ``DnsServerCredentials``, ``ServiceDeskCredentials``).
  The lab writes one at every start (``<lab dir>/site-profile.yaml``); for real systems an
  operator writes it by hand. Found at ``$DRAAS_SITE_PROFILE``, else the file's
  ``profile:`` (relative to the site file), else ``$DRAAS_LAB_DIR/site-profile.yaml``
  (``./.lab`` when unset).
- ``blocks``: saved Prefect blocks, loaded by the names the site file gives.

The product does not know the lab: it reads a profile like any other site's. A ``Site``
builds or loads each block once and hands out the same object afterwards.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from draas.errors import PermanentError
from draas.recovery.limits import EngineLimits

if TYPE_CHECKING:
    from prefect.blocks.core import Block

    from blocks.cisco import CiscoDeviceCredentials
    from blocks.dns import DnsServerCredentials
    from blocks.replication import ZertoCredentials
    from blocks.servicedesk import ServiceDeskCredentials
    from blocks.vcenter import VCenterCredentials

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Name of the profile the lab writes in its directory.
LAB_PROFILE_FILE = "site-profile.yaml"

B = TypeVar("B", bound="Block")
_CACHE_LOCK = threading.Lock()  # module-wide: a Site stays picklable and copyable


class SiteConfigError(PermanentError):
    """The site file or the site profile is missing or invalid; the message names the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _first_error(path: Path | str, exc: ValidationError, prefix: str = "") -> str:
    """``<file>: <field>: <message>`` for the first error; never the input value (it may be a secret)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in (*([prefix] if prefix else []), *first["loc"]))
    msg = first["msg"].removeprefix("Value error, ")
    return f"{path}: {where}: {msg}" if where else f"{path}: {msg}"


def _read_yaml(path: Path, what: str) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SiteConfigError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SiteConfigError(f"{path}: not valid YAML: {exc}") from None


# --- the site file -------------------------------------------------------------------------------------


class BlockRef(_Strict):
    block: str = Field(default="", description="Name of the saved Prefect block (connections: blocks)")


class RecoveryVCenter(BlockRef):
    datacenter: str
    cluster: str
    dvswitch: str
    datastore: str


class VCenters(_Strict):
    protected: BlockRef = Field(default_factory=BlockRef)
    recovery: RecoveryVCenter


class Device(_Strict):
    """One recovery-site network device."""

    name: str
    hostname: str
    platform: Literal["cisco_nxos", "cisco_asa", "cisco_ios"]
    role: str
    multi_context: bool = False
    block: str = ""


# --- the site profile ----------------------------------------------------------------------------------


class ProfileSystem(_Strict):
    """One system of a site profile: the field values of its block."""

    credentials: dict[str, Any]


class ProfileVCenter(ProfileSystem):
    """A vCenter of a site profile and its layout (what it holds; site.yaml says what is used)."""

    datacenter: str = ""
    cluster: str = ""
    dvswitch: str = ""
    datastore: str = ""


class ProfileDevice(ProfileSystem):
    """A device of a site profile: as in site.yaml, with ``credentials`` instead of ``block``."""

    name: str
    hostname: str = ""
    platform: str = ""
    role: str = ""
    multi_context: bool = False


class GuestNetwork(_Strict):
    """Where a site's recovered guests are reachable when not at their own IPs (the lab's address map).

    ``url`` serves ``GET <url>/v1/addresses?site=<protected|recovery>&ip=<ip>`` ->
    ``{"address": ..., "ports": {"<port>": <port>}}``. A real site has no ``guest_network``:
    verification checks probe the VMs' own addresses.
    """

    url: str = Field(min_length=1, pattern=r"^https?://")


class SiteProfile(_Strict):
    """A site profile: where each system is and how to log in, in the fields of the product's blocks."""

    source: str = ""
    vcenter: dict[Literal["protected", "recovery"], ProfileVCenter] = Field(default_factory=dict)
    devices: list[ProfileDevice] = Field(default_factory=list)
    replication: ProfileSystem | None = None
    dns: ProfileSystem | None = None
    servicedesk: ProfileSystem | None = None
    guest_network: GuestNetwork | None = None

    @classmethod
    def load(cls, path: Path) -> SiteProfile:
        """Read and check a profile file (the values themselves are checked when a block is built)."""
        data = _read_yaml(path, "site profile")
        try:
            return cls.model_validate(data if data is not None else {})
        except ValidationError as exc:
            raise SiteConfigError(_first_error(path, exc)) from None

    def device(self, name: str) -> ProfileDevice | None:
        return next((d for d in self.devices if d.name == name), None)


def _default_config_dir() -> Path:
    """``$DRAAS_CONFIG_DIR`` or the project's configs/ (the rule of draas.validation.default_config_dir)."""
    return Path(os.environ.get("DRAAS_CONFIG_DIR") or PROJECT_ROOT / "configs")


def default_profile_path() -> Path:
    """The lab's profile: ``$DRAAS_LAB_DIR/site-profile.yaml`` (``./.lab`` when unset)."""
    return Path(os.environ.get("DRAAS_LAB_DIR") or ".lab").expanduser().resolve() / LAB_PROFILE_FILE


class Site(_Strict):
    """configs/site.yaml: the recovery site's systems and where their connections come from."""

    connections: Literal["profile", "blocks"] = "profile"
    profile: str | None = Field(default=None, description="Site profile file (connections: profile)")
    vcenter: VCenters
    replication: BlockRef = Field(default_factory=BlockRef)
    dns: BlockRef = Field(default_factory=BlockRef)
    servicedesk: BlockRef = Field(default_factory=BlockRef)
    devices: list[Device] = Field(min_length=1)
    recovery: EngineLimits = Field(default_factory=EngineLimits,
                                   description="The recovery engine's concurrency caps and patience")

    _path: Path | None = PrivateAttr(default=None)
    _profile: SiteProfile | None = PrivateAttr(default=None)
    _profile_path: Path | None = PrivateAttr(default=None)
    _blocks: dict[tuple[str, str], Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _names_for_blocks(self) -> Site:
        names = {d.name for d in self.devices}
        if len(names) != len(self.devices):
            raise ValueError("devices: two devices share a name")
        if self.connections == "blocks":
            missing = [where for where, ref in (
                ("vcenter.protected.block", self.vcenter.protected), ("vcenter.recovery.block", self.vcenter.recovery),
                ("replication.block", self.replication), ("dns.block", self.dns),
                ("servicedesk.block", self.servicedesk)) if not ref.block]
            missing += [f"devices[{i}].block" for i, d in enumerate(self.devices) if not d.block]
            if missing:
                raise ValueError(f"connections: blocks needs a block name in {', '.join(missing)}")
        return self

    @staticmethod
    def default_path() -> Path:
        """The default site file: ``$DRAAS_SITE_CONFIG``, else site.yaml of the default config directory.

        The default config directory is ``$DRAAS_CONFIG_DIR`` or the project's configs/ (as
        in draas.validation); it falls back to configs/site.yaml when it has no site.yaml.
        """
        env = os.environ.get("DRAAS_SITE_CONFIG")
        if env:
            return Path(env)
        candidate = _default_config_dir() / "site.yaml"
        return candidate if candidate.is_file() else PROJECT_ROOT / "configs" / "site.yaml"

    @classmethod
    def load(cls, path: Path | str | None = None) -> Site:
        """Read the site file ``path`` (default :meth:`default_path`)."""
        path = Path(path) if path else cls.default_path()
        data = _read_yaml(path, "site file")
        try:
            site = cls.model_validate(data)
        except ValidationError as exc:
            raise SiteConfigError(_first_error(path, exc)) from None
        site._path = path
        return site

    @classmethod
    def for_config_dir(cls, config_dir: str | Path | None) -> Site:
        """The site file of ``config_dir`` when it has one, else the default site file.

        Validation, rendering and every flow take their site from here, so they all see the
        same devices for a given ``config_dir``. The default config directory (None, or
        the directory itself) means the default site file, so ``$DRAAS_SITE_CONFIG`` applies.
        """
        return cls.load(cls.file_for_config_dir(config_dir))

    @classmethod
    def file_for_config_dir(cls, config_dir: str | Path | None) -> Path:
        """The site file :meth:`for_config_dir` reads."""
        if config_dir is None or Path(config_dir).resolve() == _default_config_dir().resolve():
            return cls.default_path()
        candidate = Path(config_dir) / "site.yaml"
        return candidate if candidate.is_file() else cls.default_path()

    @property
    def path(self) -> str:
        """The file this site was read from (for messages)."""
        return str(self._path) if self._path else "configs/site.yaml"

    # -- inventory --------------------------------------------------------------------------------------
    def device(self, name: str) -> Device:
        for dev in self.devices:
            if dev.name == name:
                return dev
        raise SiteConfigError(f"{self.path}: devices: no device named {name!r}")

    def devices_with_role(self, role: str) -> list[Device]:
        return [d for d in self.devices if d.role == role]

    # -- the profile ------------------------------------------------------------------------------------
    def profile_path(self) -> Path:
        """Where this site's profile is: ``$DRAAS_SITE_PROFILE``, ``profile:``, or the lab's."""
        env = os.environ.get("DRAAS_SITE_PROFILE")
        if env:
            return Path(env).expanduser()
        if self.profile:
            configured = Path(self.profile).expanduser()
            base = self._path.parent if self._path else Path.cwd()
            return configured if configured.is_absolute() else base / configured
        return default_profile_path()

    def site_profile(self) -> SiteProfile:
        """The site profile, read once per Site."""
        if self.connections != "profile":
            raise SiteConfigError(f"{self.path}: connections: is {self.connections!r}, not 'profile'")
        if self._profile is None:
            path = self.profile_path()
            if not path.is_file():
                raise SiteConfigError(
                    f"{path}: no site profile ({self.path}: connections: profile); start the lab with "
                    "`draas lab up`, or write the profile (docs/configuration.md) and point "
                    "$DRAAS_SITE_PROFILE or `profile:` at it")
            self._profile, self._profile_path = SiteProfile.load(path), path
        return self._profile

    def _from_profile(self, cls: type[B], where: str, system: ProfileSystem | None) -> B:
        path = self._profile_path or self.profile_path()
        if system is None:
            raise SiteConfigError(f"{path}: {where}: missing (the site {self.path} uses it)")
        try:
            return cls(**system.credentials)
        except ValidationError as exc:
            raise SiteConfigError(_first_error(path, exc, f"{where}.credentials")) from None

    @property
    def guest_address_map_url(self) -> str | None:
        """The URL of the site's guest address map (``.../v1/addresses``), or None: probe VMs at their IPs.

        Only a profile with ``guest_network`` (the lab's) has one; ``connections: blocks``
        never does.
        """
        if self.connections != "profile":
            return None
        net = self.site_profile().guest_network
        return f"{net.url.rstrip('/')}/v1/addresses" if net is not None else None

    # -- blocks, built or loaded once per Site ----------------------------------------------------------
    def _cached(self, key: tuple[str, str], make: Callable[[], B]) -> B:
        with _CACHE_LOCK:
            if key not in self._blocks:
                self._blocks[key] = make()
            return self._blocks[key]  # type: ignore[no-any-return]

    def vcenter_block(self, site: Literal["protected", "recovery"] = "recovery") -> VCenterCredentials:
        """The vCenter of the ``protected`` or ``recovery`` site."""
        from blocks.vcenter import VCenterCredentials

        if site not in ("protected", "recovery"):
            raise SiteConfigError(f"{self.path}: vcenter: no {site!r} vCenter (protected or recovery)")

        def make() -> VCenterCredentials:
            if self.connections == "profile":
                return self._from_profile(VCenterCredentials, f"vcenter.{site}",
                                          self.site_profile().vcenter.get(site))
            ref = self.vcenter.recovery if site == "recovery" else self.vcenter.protected
            return VCenterCredentials.load(ref.block)  # type: ignore[return-value]

        return self._cached(("vcenter", site), make)

    def device_block(self, name: str) -> CiscoDeviceCredentials:
        """The Cisco device ``name`` of ``devices``."""
        from blocks.cisco import CiscoDeviceCredentials

        dev = self.device(name)

        def make() -> CiscoDeviceCredentials:
            if self.connections == "blocks":
                return CiscoDeviceCredentials.load(dev.block)  # type: ignore[return-value]
            profile = self.site_profile()
            entry = profile.device(name)
            index = next((i for i, d in enumerate(profile.devices) if d.name == name), len(profile.devices))
            block = self._from_profile(CiscoDeviceCredentials, f"devices[{index}]", entry)
            if block.platform != dev.platform:
                raise SiteConfigError(
                    f"{self._profile_path}: devices[{index}].credentials.platform: {block.platform!r} "
                    f"but {self.path} says device {name!r} is {dev.platform!r}")
            return block

        return self._cached(("device", name), make)

    def replication_block(self) -> ZertoCredentials:
        """The replication manager (Zerto ZVM)."""
        from blocks.replication import ZertoCredentials

        def make() -> ZertoCredentials:
            if self.connections == "profile":
                return self._from_profile(ZertoCredentials, "replication", self.site_profile().replication)
            return ZertoCredentials.load(self.replication.block)  # type: ignore[return-value]

        return self._cached(("replication", ""), make)

    def dns_block(self) -> DnsServerCredentials:
        """The tenants' primary DNS server."""
        from blocks.dns import DnsServerCredentials

        def make() -> DnsServerCredentials:
            if self.connections == "profile":
                return self._from_profile(DnsServerCredentials, "dns", self.site_profile().dns)
            return DnsServerCredentials.load(self.dns.block)  # type: ignore[return-value]

        return self._cached(("dns", ""), make)

    def servicedesk_block(self) -> ServiceDeskCredentials:
        """The service desk and notification channels."""
        from blocks.servicedesk import ServiceDeskCredentials

        def make() -> ServiceDeskCredentials:
            if self.connections == "profile":
                return self._from_profile(ServiceDeskCredentials, "servicedesk", self.site_profile().servicedesk)
            return ServiceDeskCredentials.load(self.servicedesk.block)  # type: ignore[return-value]

        return self._cached(("servicedesk", ""), make)

"""draas.site: where the product finds the systems it drives, and that everyone reads the same site.

The lab side is exercised through what it writes (``lab.state.write_site_profile``); the
product side reads only that file, as it would a hand-written profile for real systems.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from typer.testing import CliRunner

from blocks.cisco import CiscoDeviceCredentials
from blocks.replication import ZertoCredentials
from blocks.vcenter import VCenterCredentials
from draas.site import Site, SiteConfigError, SiteProfile
from draas.validation import validate_paths
from lab.state import (
    SITE_PROFILE_FILE,
    CiscoDevice,
    CiscoLab,
    DnsLab,
    LabState,
    ReplicationLab,
    ServiceDeskLab,
    VCenterSite,
    write_site_profile,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
VC_PASSWORD = "unit-vcenter-Pw-1b2c"
SSH_PASSWORD = "unit-ssh-Pw-77aa"
TSIG = "dW5pdC10c2lnLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm"


def lab_state(lab_dir: Path) -> LabState:
    """A state as `lab up` records it; nothing runs (unit tests have no network)."""
    def vc(site: str, port: int, dc: str) -> VCenterSite:
        return VCenterSite(site=site, port=port, username="administrator@vsphere.local", password=VC_PASSWORD,
                           datacenter=dc, cluster=f"{dc}-cluster", datastores=[f"{site}-ds-01", f"{site}-ds-02"],
                           dvswitch=f"dvs-{site}", pid=1)

    site_file = yaml.safe_load((CONFIGS / "site.yaml").read_text())
    devices = {d["name"]: CiscoDevice(name=d["name"], hostname=d["hostname"], platform=d["platform"], role=d["role"],
                                      multi_context=d.get("multi_context", False), port=20000 + i,
                                      username="labadmin", password=SSH_PASSWORD, secret="unit-enable")
               for i, d in enumerate(site_file["devices"])}
    return LabState(
        lab_dir=str(lab_dir), config_path="configs/lab.yaml",
        vcenter={"protected": vc("protected", 18001, "Protected-DC"), "recovery": vc("recovery", 18002, "Recovery-DC")},
        cisco=CiscoLab(pid=2, control_url="http://127.0.0.1:18080", devices=devices),
        replication=ReplicationLab(pid=3, url="http://127.0.0.1:19669", username="zerto-lab", password="unit-zvm",
                                   protected_site_name="Protected-Site", recovery_site_name="Recovery-Site"),
        dns=DnsLab(pid=4, port=18053, tsig_name="draas-key", tsig_secret=TSIG, tsig_algorithm="hmac-sha256",
                   zones=["acme.example.com"]),
        servicedesk=ServiceDeskLab(pid=5, url="http://127.0.0.1:18081", username="draas-integration",
                                   password="unit-desk"),
    )


@pytest.fixture
def profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The profile a lab in ``tmp_path/lab`` wrote, found the default way ($DRAAS_LAB_DIR)."""
    lab_dir = tmp_path / "lab"
    lab_dir.mkdir()
    path = write_site_profile(lab_state(lab_dir))
    for var in ("DRAAS_SITE_PROFILE", "DRAAS_SITE_CONFIG", "DRAAS_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DRAAS_LAB_DIR", str(lab_dir))
    return path


def write_site(path: Path, **changes: Any) -> Path:
    data = yaml.safe_load((CONFIGS / "site.yaml").read_text())
    data.update(changes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


# --- the site profile -------------------------------------------------------------------------------


def test_lab_profile_is_private_and_in_the_products_format(profile: Path) -> None:
    assert profile.name == SITE_PROFILE_FILE and profile.parent.name == "lab"
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600
    parsed = SiteProfile.load(profile)  # the product's own model reads it, strictly
    assert sorted(parsed.vcenter) == ["protected", "recovery"]
    assert parsed.vcenter["recovery"].datastore == "recovery-ds-01"
    assert [d.name for d in parsed.devices] == [d.name for d in Site.load().devices]
    assert not list(profile.parent.glob("*.tmp"))


def test_blocks_are_built_from_the_profile(profile: Path) -> None:
    site = Site.load()
    assert site.connections == "profile" and site.profile_path() == profile
    vc = site.vcenter_block("recovery")
    assert (vc.host, vc.port, vc.protocol, vc.verify_tls, vc.datacenter) == ("127.0.0.1", 18002, "http", False,
                                                                           "Recovery-DC")
    assert isinstance(vc.password, SecretStr) and vc.password.get_secret_value() == VC_PASSWORD
    assert site.vcenter_block("protected").port == 18001
    agg = site.device_block("agg-2")
    assert (agg.device_name, agg.port, agg.platform, agg.verify_host_key) == ("agg-2", 20001, "cisco_nxos", False)
    assert agg.enable_secret is not None and agg.enable_secret.get_secret_value() == "unit-enable"
    zvm = site.replication_block()
    assert (zvm.url, zvm.auth_style, zvm.task_poll_interval) == ("http://127.0.0.1:19669", "session", 0.25)
    dns = site.dns_block()
    assert (dns.server, dns.port, dns.tsig_key_name) == ("127.0.0.1", 18053, "draas-key")
    desk = site.servicedesk_block()
    assert desk.webhook_url == "http://127.0.0.1:18081/api/lab/notifications"


def test_profile_path_precedence(profile: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "etc" / "real-profile.yaml"
    other.parent.mkdir()
    shutil.copy(profile, other)
    site_file = write_site(tmp_path / "etc" / "site.yaml", profile="real-profile.yaml")
    assert Site.load(site_file).profile_path() == other  # relative to the site file
    monkeypatch.setenv("DRAAS_SITE_PROFILE", str(profile))
    assert Site.load(site_file).profile_path() == profile  # the environment wins
    monkeypatch.delenv("DRAAS_SITE_PROFILE")
    monkeypatch.setenv("DRAAS_LAB_DIR", str(tmp_path / "elsewhere"))
    assert Site.load().profile_path() == tmp_path / "elsewhere" / SITE_PROFILE_FILE  # the lab's, by default


def test_missing_profile_says_where_it_looked_and_how_to_get_one(profile: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("DRAAS_SITE_PROFILE", str(tmp_path / "nope.yaml"))
    with pytest.raises(SiteConfigError) as err:
        Site.load().vcenter_block()
    assert str(tmp_path / "nope.yaml") in str(err.value) and "draas lab up" in str(err.value)


def test_profile_problems_name_file_and_field_never_the_secret(profile: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    data = yaml.safe_load(profile.read_text())
    data["devices"] = [d for d in data["devices"] if d["name"] != "pe-1"]
    data["vcenter"]["recovery"]["credentials"]["port"] = VC_PASSWORD  # a secret where a number belongs
    data["dns"]["credentials"]["tsig_algorithm"] = "md5"
    data["devices"][0]["credentials"]["platform"] = "cisco_ios"
    bad = tmp_path / "bad-profile.yaml"
    bad.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("DRAAS_SITE_PROFILE", str(bad))
    site = Site.load()
    with pytest.raises(SiteConfigError) as err:
        site.vcenter_block("recovery")
    assert f"{bad}: vcenter.recovery.credentials.port:" in str(err.value)
    assert VC_PASSWORD not in str(err.value)
    with pytest.raises(SiteConfigError, match=r"dns\.credentials\.tsig_algorithm"):
        site.dns_block()
    with pytest.raises(SiteConfigError, match="devices.*missing"):
        site.device_block("pe-1")
    with pytest.raises(SiteConfigError, match=r"devices\[0\]\.credentials\.platform: 'cisco_ios' but .* 'cisco_nxos'"):
        site.device_block("agg-1")
    with pytest.raises(SiteConfigError, match="no device named 'core-9'"):
        site.device_block("core-9")
    bad.write_text("vcenter: {recovery: {credentials: {}, colour: blue}}\n")
    with pytest.raises(SiteConfigError, match=r"vcenter\.recovery\.colour: Extra inputs"):
        Site.load().vcenter_block("recovery")


# --- each block once --------------------------------------------------------------------------------


def test_each_block_is_built_once_per_site(profile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[Path] = []
    real = SiteProfile.load.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(SiteProfile, "load", classmethod(lambda cls, path: reads.append(path) or real(cls, path)))
    site = Site.load()
    first = site.vcenter_block("recovery")
    assert all(site.vcenter_block("recovery") is first for _ in range(50))
    assert site.vcenter_block("protected") is not first
    assert site.device_block("agg-1") is site.device_block("agg-1") is not site.device_block("agg-2")
    assert site.replication_block() is site.replication_block()
    assert reads == [profile]  # the profile is read once, too
    assert Site.load().vcenter_block("recovery") is not first  # per Site instance


def test_saved_blocks_are_loaded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []

    def fake_load(cls: type[VCenterCredentials], name: str, *args: Any, **kwargs: Any) -> VCenterCredentials:
        loads.append(name)
        return cls(host=f"{name}.example.net", username="svc", password=SecretStr("x"))

    def fake_device(cls: type[CiscoDeviceCredentials], name: str, *args: Any, **kwargs: Any) -> Any:
        loads.append(name)
        return cls(host="10.0.0.1", platform="cisco_nxos", username="svc", password=SecretStr("x"))

    monkeypatch.setattr(VCenterCredentials, "load", classmethod(fake_load))
    monkeypatch.setattr(CiscoDeviceCredentials, "load", classmethod(fake_device))
    monkeypatch.setattr(ZertoCredentials, "load", classmethod(lambda cls, name, **_: pytest.fail("not asked for")))
    site = Site.load(write_site(tmp_path / "site.yaml", connections="blocks"))
    blocks = [site.vcenter_block("recovery") for _ in range(50)] + [site.device_block("agg-1") for _ in range(50)]
    assert loads == ["recovery-vcenter", "dr-agg-1"]
    assert blocks[0].host == "recovery-vcenter.example.net" and len({id(b) for b in blocks}) == 2


def test_blocks_mode_needs_every_block_name(tmp_path: Path) -> None:
    data = yaml.safe_load((CONFIGS / "site.yaml").read_text())
    del data["dns"]
    del data["devices"][2]["block"]
    path = write_site(tmp_path / "site.yaml", connections="blocks", dns={}, devices=data["devices"])
    with pytest.raises(SiteConfigError) as err:
        Site.load(path)
    assert str(err.value) == f"{path}: connections: blocks needs a block name in dns.block, devices[2].block"
    assert Site.load(write_site(tmp_path / "p.yaml", dns={}, devices=data["devices"])).connections == "profile"


# --- the same site everywhere -----------------------------------------------------------------------


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of configs/ (tenants and tier catalog) that validates against the default site."""
    for var in ("DRAAS_SITE_CONFIG", "DRAAS_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    target = tmp_path / "configs"
    shutil.copytree(CONFIGS / "tenants", target / "tenants")
    shutil.copy(CONFIGS / "tiers.yaml", target / "tiers.yaml")
    assert validate_paths([target]) == []
    return target


def without_aggregation() -> list[dict[str, Any]]:
    devices = yaml.safe_load((CONFIGS / "site.yaml").read_text())["devices"]
    return [d for d in devices if d["role"] != "aggregation"]


def test_validation_reads_the_config_dirs_site(config_dir: Path) -> None:
    site_file = write_site(config_dir / "site.yaml", devices=without_aggregation())
    problems = validate_paths([config_dir])
    assert problems and {p.field_path for p in problems} == {"network"}
    assert {Path(p.file).stem for p in problems} == {"acme", "globex", "initech"}
    assert all("role ['aggregation']" in p.reason and str(site_file) in p.reason for p in problems), problems
    # a named tenant file of that directory is checked against the same site
    one = validate_paths([config_dir / "tenants" / "acme.yaml"])
    assert len(one) == 1 and str(site_file) in one[0].reason
    # and the flows' reading of that directory gives the same devices
    assert [d.name for d in Site.for_config_dir(config_dir).devices] == [d["name"] for d in without_aggregation()]


def test_draas_validate_command_sees_the_config_dirs_site(config_dir: Path) -> None:
    from draas.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(config_dir)])
    assert ok.exit_code == 0, ok.output
    write_site(config_dir / "site.yaml", devices=without_aggregation())
    failed = runner.invoke(app, ["validate", str(config_dir)])
    assert failed.exit_code == 1 and "acme.yaml: network:" in failed.output
    assert str(config_dir / "site.yaml") in failed.output


def test_a_broken_site_file_is_one_problem_naming_file_and_field(config_dir: Path) -> None:
    devices = yaml.safe_load((CONFIGS / "site.yaml").read_text())["devices"]
    devices[1]["platform"] = "cisco_xr"
    write_site(config_dir / "site.yaml", devices=devices)
    problems = validate_paths([config_dir])
    assert len(problems) == 1, problems
    assert problems[0].file.endswith("configs/site.yaml") and str(config_dir) in str(Path(problems[0].file).resolve())
    assert problems[0].reason.startswith("devices.1.platform: Input should be")


def test_the_default_config_dir_means_the_default_site_file(config_dir: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    other = write_site(tmp_path / "other-site.yaml", devices=without_aggregation())
    monkeypatch.setenv("DRAAS_SITE_CONFIG", str(other))
    # flows given no config dir, or the default one, and validation of the default one: all the same file
    assert Site.for_config_dir(None).path == Site.for_config_dir(CONFIGS).path == str(other)
    monkeypatch.setenv("DRAAS_CONFIG_DIR", str(config_dir))
    assert Site.for_config_dir(config_dir).path == str(other)
    problems = validate_paths([config_dir])
    assert problems and all(str(other) in p.reason for p in problems)
    # a config dir that is not the default one keeps its own site file
    monkeypatch.delenv("DRAAS_CONFIG_DIR")
    own = write_site(config_dir / "site.yaml")
    assert Site.for_config_dir(config_dir).path == str(own) and validate_paths([config_dir]) == []


def test_lab_down_removes_the_profile(profile: Path) -> None:
    from lab import launcher

    launcher.down(profile.parent)  # no process recorded: only the files go
    assert not profile.exists()
    with pytest.raises(SiteConfigError, match="no site profile"):
        Site.load().servicedesk_block()

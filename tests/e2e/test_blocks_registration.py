"""Every block registers with `prefect block register`, and a saved block keeps its secrets secret.

Runs the real CLI (one process per module: it takes one ``-m`` at a time) against the
session's Prefect server, then reads the block types and schemas back over the API, saves
one block document per type with the values a site profile gives (the one a lab writes, read by
``draas.site.Site``), and loads it again.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect.blocks.core import Block
from pydantic import SecretStr

from blocks.cisco import CiscoDeviceCredentials
from blocks.dns import DnsServerCredentials
from blocks.replication import ZertoCredentials
from blocks.servicedesk import ServiceDeskCredentials
from blocks.vcenter import VCenterCredentials
from draas.site import Site
from lab.state import (
    CiscoDevice,
    CiscoLab,
    DnsLab,
    LabState,
    ReplicationLab,
    ServiceDeskLab,
    VCenterSite,
    write_site_profile,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PREFECT_CLI = Path(sys.executable).with_name("prefect")

#: Module -> the block class it must register.
MODULES: dict[str, type[Block]] = {
    "blocks.vcenter": VCenterCredentials,
    "blocks.dns": DnsServerCredentials,
    "blocks.servicedesk": ServiceDeskCredentials,
    "blocks.cisco": CiscoDeviceCredentials,
    "blocks.replication": ZertoCredentials,
}

#: Distinct secret values, so a leak names the field it came from.
SECRETS = {
    "vcenter": "e2e-vcenter-Pw-71c3",
    "tsig": base64.b64encode(b"e2e-tsig-secret-0123456789abcdef").decode(),
    "servicedesk": "e2e-servicedesk-Pw-93aa",
    "cisco": "e2e-cisco-ssh-Pw-5e02",
    "enable": "e2e-cisco-enable-S3c-4b71",
    "zerto": "e2e-zvm-Pw-0d9f",
}


def lab_state() -> LabState:
    """A lab state as `draas lab up` writes it (no simulator needs to run for blocks)."""
    return LabState(
        lab_dir="/nonexistent-lab", config_path="configs/lab.yaml",
        vcenter={"recovery": VCenterSite(
            site="recovery", port=18443, username="administrator@vsphere.local", password=SECRETS["vcenter"],
            datacenter="Recovery-DC", cluster="DR-Cluster", datastores=["dr-ds-01", "dr-ds-02"],
            dvswitch="dvs-recovery", pid=1)},
        cisco=CiscoLab(pid=2, control_url="http://127.0.0.1:18080", devices={"agg-1": CiscoDevice(
            name="agg-1", hostname="dr-agg-n7k-1", platform="cisco_nxos", role="aggregation", port=18022,
            username="draas", password=SECRETS["cisco"], secret=SECRETS["enable"])}),
        replication=ReplicationLab(pid=3, url="http://127.0.0.1:19669", username="zerto-lab",
                                   password=SECRETS["zerto"], protected_site_name="Protected-Site",
                                   recovery_site_name="Recovery-Site"),
        dns=DnsLab(pid=4, port=18053, tsig_name="draas-key", tsig_secret=SECRETS["tsig"],
                   tsig_algorithm="hmac-sha256", zones=["acme.example.com"]),
        servicedesk=ServiceDeskLab(pid=5, url="http://127.0.0.1:18081", username="draas-integration",
                                   password=SECRETS["servicedesk"]),
    )


#: Block class -> how the site hands it out.
FROM_SITE: dict[type[Block], Callable[[Site], Block]] = {
    VCenterCredentials: lambda site: site.vcenter_block("recovery"),
    CiscoDeviceCredentials: lambda site: site.device_block("agg-1"),
    ZertoCredentials: lambda site: site.replication_block(),
    DnsServerCredentials: lambda site: site.dns_block(),
    ServiceDeskCredentials: lambda site: site.servicedesk_block(),
}


def from_profile(block: type[Block], state: LabState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Block:
    """``block`` as the product builds it from the site profile a lab in ``state`` writes."""
    profile = write_site_profile(state, tmp_path / "site-profile.yaml")
    monkeypatch.setenv("DRAAS_SITE_PROFILE", str(profile))
    return FROM_SITE[block](Site.load())


def secret_fields(block: Block) -> dict[str, str]:
    """Field name -> revealed value of every SecretStr field that is set."""
    return {name: value.get_secret_value() for name in type(block).model_fields
            if isinstance(value := getattr(block, name), SecretStr)}


@pytest.fixture(scope="module")
def registration(prefect_harness: None) -> Iterator[dict[str, Any]]:
    """Run `prefect block register -m <module>` for every module against the session's server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    assert api_url, "the Prefect harness did not set an API URL"
    with get_client(sync_client=True) as client:
        before = {cls.get_block_type_slug(): _exists(client, cls.get_block_type_slug()) for cls in MODULES.values()}
    env = dict(os.environ, PREFECT_API_URL=api_url,
               # Fail instead of quietly registering into a throwaway server if the URL were ignored.
               PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="false",
               PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])))
    started = datetime.now(UTC) - timedelta(seconds=1)  # server clock granularity
    # The CLI is mostly import time: run the five at once.
    procs = {module: subprocess.Popen([str(PREFECT_CLI), "block", "register", "-m", module], cwd=PROJECT_ROOT,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for module in MODULES}
    outputs: dict[str, tuple[int, str]] = {}
    for module, proc in procs.items():
        out, _ = proc.communicate(timeout=180)
        outputs[module] = (proc.returncode, out)
    yield {"outputs": outputs, "before": before, "started": started}


def _exists(client: Any, slug: str) -> bool:
    from prefect.exceptions import ObjectNotFound

    try:
        client.read_block_type_by_slug(slug)
    except ObjectNotFound:
        return False
    return True


@pytest.mark.parametrize("module", list(MODULES))
def test_cli_registers_the_module_block(registration: dict[str, Any], module: str) -> None:
    from prefect.client.orchestration import get_client

    block = MODULES[module]
    code, out = registration["outputs"][module]
    assert code == 0, f"prefect block register -m {module} failed:\n{out}"
    assert "Successfully registered 1 block" in out, out
    assert block.get_block_type_name() in out, out

    slug = block.get_block_type_slug()
    with get_client(sync_client=True) as client:
        block_type = client.read_block_type_by_slug(slug)
        schema = client.read_block_schema_by_checksum(block._calculate_schema_checksum())
    assert block_type.name == block.get_block_type_name()
    assert block_type.description and block_type.code_example and "BLOCK_NAME" in block_type.code_example
    if not registration["before"][slug]:
        # Created by the CLI run, not by an earlier test that saved a block of this type.
        assert block_type.created is not None and block_type.created >= registration["started"]
    assert schema.block_type_id == block_type.id
    properties = schema.fields["properties"]
    assert set(block.model_fields) <= set(properties), "schema lacks fields"
    for name, field in block.model_fields.items():
        assert properties[name].get("description") == field.description, name
    wanted_secrets = {name for name, field in block.model_fields.items() if "SecretStr" in str(field.annotation)}
    assert wanted_secrets and set(schema.fields["secret_fields"]) == wanted_secrets


@pytest.mark.parametrize("block", list(MODULES.values()), ids=lambda b: b.__name__)
def test_saved_block_round_trips_and_keeps_secrets_hidden(registration: dict[str, Any], block: type[Block],
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import get_client

    original = from_profile(block, lab_state(), tmp_path, monkeypatch)
    secrets = secret_fields(original)
    assert secrets, f"{block.__name__} from the site profile has no secret"
    name = f"e2e-{block.get_block_type_slug()}"
    original.save(name, overwrite=True)

    loaded = block.load(name)
    assert type(loaded) is block
    for field in block.model_fields:
        want, got = getattr(original, field), getattr(loaded, field)
        if isinstance(want, SecretStr):
            assert isinstance(got, SecretStr) and got.get_secret_value() == want.get_secret_value(), field
        else:
            assert got == want, field
    client_of_loaded = loaded.get_client()  # type: ignore[attr-defined]
    shown = [repr(loaded), str(loaded), loaded.model_dump_json(), str(loaded.model_dump()), repr(client_of_loaded)]
    for field, value in secrets.items():
        for text in shown:
            assert value not in text, f"{block.__name__}.{field} shows its secret"

    with get_client(sync_client=True) as client:
        hidden = client.read_block_document_by_name(name, block.get_block_type_slug(), include_secrets=False)
        revealed = client.read_block_document_by_name(name, block.get_block_type_slug(), include_secrets=True)
    for field, value in secrets.items():
        assert value not in str(hidden.data), f"the API shows {field} without include_secrets"
        assert hidden.data[field] != value
        assert revealed.data[field] == value  # stored, and only handed out on request

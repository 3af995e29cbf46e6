"""The replication ledger handler against the lab: a recorded group is removed, proven by the ZVM's own API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import draas.ledger.replication  # noqa: F401 - registers the handler
from draas.clients.replication import GroupState, ProtectionSpec
from draas.deadline import Deadline
from draas.ledger import REPLICATION, handler_for
from draas.site import Site
from draas.state.store import StateStore
from lab.state import LabState
from tasks.replication import create_vpg, start_failover_test, wait_for_replication_task

TENANT = "ledgertest"


@pytest.fixture(scope="module")
def site(lab: LabState) -> Site:
    return Site.for_config_dir(None)


@pytest.fixture(scope="module")
def source_vm(site: Site) -> Iterator[str]:
    """A VM of its own at the protected site (nothing else protects it)."""
    folder, name = f"ledger-{uuid.uuid4().hex[:6]}", f"ledger-vm-{uuid.uuid4().hex[:6]}"
    with site.vcenter_block("protected").get_client() as vc:
        vc.create_folder(folder)
        vc.create_vm(name, folder=folder, network="VM Network", cpus=1, memory_mb=512, disk_gb=1)
    yield name
    with site.vcenter_block("protected").get_client() as vc:
        vc.destroy_vm(f"{folder}/{name}")
        vc.destroy("folder", folder)


def zvm_vpgs(lab: LabState) -> dict[str, str]:
    """VPG id → name, read with a plain HTTP client from the ZVM API itself."""
    assert lab.replication is not None
    with httpx.Client(base_url=lab.replication.url, timeout=10) as client:
        login = client.post("/v1/session/add", auth=(lab.replication.username, lab.replication.password),
                            json={"AuthenticationMethod": 1})
        assert login.status_code == 200
        vpgs = client.get("/v1/vpgs", headers={"x-zerto-session": login.headers["x-zerto-session"]})
        assert vpgs.status_code == 200
        return {v["VpgIdentifier"]: v["VpgName"] for v in vpgs.json()}


def recovery_vm_names(site: Site) -> set[str]:
    with site.vcenter_block("recovery").get_client() as vc:
        return {vm.name for vm in vc.list_vms()}


def test_recorded_group_is_removed_even_with_a_test_running(lab: LabState, site: Site, source_vm: str,
                                                            tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    spec = ProtectionSpec(name=f"ledger-{uuid.uuid4().hex[:6]}", vms=[source_vm], rpo_seconds=120,
                          journal_history_hours=2, failover_network="VM Network", test_network="VM Network")
    creds = site.replication_block()
    # Recorded before it is created (name only), then completed with the id the manager gave it.
    store.record_object(tenant_id=TENANT, system=REPLICATION, kind="group", name=spec.name, site="protected",
                        identity={"name": spec.name})
    created = create_vpg.fn(creds, spec, deadline=Deadline.within(60))
    group = created.value().group
    assert created.changed and group is not None
    record = store.find_object(tenant_id=TENANT, system=REPLICATION, kind="group", name=spec.name)
    assert record is not None and record.site == "protected"
    handler = handler_for(REPLICATION)
    assert handler.system == "replication" and handler.exists(record, site)
    assert zvm_vpgs(lab).get(group.id) == spec.name

    # A run that died mid-drill leaves a test running: removal must not be refused for it.
    with creds.get_client() as provider:
        provider.wait_for_state(group.id, [GroupState.MEETING_SLA], deadline=Deadline.within(60))
    before = recovery_vm_names(site)
    test = start_failover_test.fn(creds, group.id)
    wait_for_replication_task.fn(creds, test.value().task_id, deadline=Deadline.within(60))
    assert any(source_vm in name for name in recovery_vm_names(site) - before)

    removal = handler.remove(record, site)
    assert removal.changed and removal.diff == [f"- replication group {spec.name}"]
    assert group.id not in zvm_vpgs(lab) and spec.name not in zvm_vpgs(lab).values()
    assert not {n for n in recovery_vm_names(site) if source_vm in n}  # the test copies went with it
    assert not handler.exists(record, site)

    again = handler.remove(record, site)
    assert not again.changed

    # With the id recorded, a later group of the same name is another one: never removed for this record.
    later = create_vpg.fn(creds, spec, deadline=Deadline.within(60)).value().group
    assert later is not None and later.id != group.id
    record.identity = {"name": spec.name, "id": group.id}
    assert not handler.exists(record, site) and not handler.remove(record, site).changed
    assert zvm_vpgs(lab).get(later.id) == spec.name
    record.identity = {"name": spec.name, "id": later.id}
    assert handler.remove(record, site).changed and later.id not in zvm_vpgs(lab)

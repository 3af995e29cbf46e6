"""The ReplicationProvider contract (tests/contract/replication.py) run against the Zerto adapter and the lab's ZVM.

The VMs it protects are made for it in the protected vcsim (a committed reverse protection
destroys its sources), and what it recovers is read from, and removed in, the recovery vcsim.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from contract.replication import ReplicationProviderContract

from draas.clients.replication import ReplicationProvider
from draas.clients.vcenter import VCenterClient
from draas.site import Site
from lab.state import LabState


@pytest.fixture(scope="class")
def provider(lab: LabState) -> Iterator[ReplicationProvider]:
    with Site.for_config_dir(None).replication_block().get_client() as client:
        yield client


@pytest.fixture(scope="class")
def protected_vc(lab: LabState) -> Iterator[VCenterClient]:
    with Site.for_config_dir(None).vcenter_block("protected").get_client() as vc:
        yield vc


@pytest.fixture(scope="class")
def recovery_vc(lab: LabState) -> Iterator[VCenterClient]:
    with Site.for_config_dir(None).vcenter_block("recovery").get_client() as vc:
        yield vc


@pytest.fixture(scope="class")
def fresh_vms(protected_vc: VCenterClient) -> Iterator[Callable[[int], list[str]]]:
    folder = f"contract-{uuid.uuid4().hex[:6]}"
    protected_vc.create_folder(folder)
    made: list[str] = []

    def make(count: int) -> list[str]:
        names = [f"ct-vm-{uuid.uuid4().hex[:6]}" for _ in range(count)]
        for name in names:
            protected_vc.create_vm(name, folder=folder, network="VM Network", cpus=1, memory_mb=512, disk_gb=1)
            made.append(name)
        return names

    yield make
    for name in made:  # a committed reverse protection removed some already: changed=False then
        protected_vc.destroy_vm(f"{folder}/{name}")
    protected_vc.destroy("folder", folder)


@pytest.fixture(scope="class")
def recovery_vms(recovery_vc: VCenterClient) -> Callable[[], set[str]]:
    return lambda: {vm.name for vm in recovery_vc.list_vms()}


@pytest.fixture(scope="class")
def remove_recovery_vms(recovery_vc: VCenterClient) -> Callable[[Iterable[str]], None]:
    def remove(names: Iterable[str]) -> None:
        for name in names:
            recovery_vc.destroy_vm(name)
    return remove


@pytest.fixture(scope="class")
def spec_defaults() -> dict[str, Any]:
    return {"failover_network": "VM Network", "test_network": "VM Network"}


class TestZertoContract(ReplicationProviderContract):
    """Every ReplicationProvider operation, through the interface, on the lab's ZVM."""

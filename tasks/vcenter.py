"""vCenter tasks: one side effect each, check-then-act, returning a StepResult.

Every task opens its client with ``draas.sessions.session(credentials)``: inside a flow run
that opened a session pool, all tasks and threads of the run share one logged-in client per
vCenter (renewed by the client if vCenter expires it); elsewhere the task logs in for itself.
Either way a task can be retried (only transient errors are) or run in another worker.
Caching is off: a cached "changed" result must never stand in for a fresh look at vCenter,
and the same call may legitimately be made twice in one flow run (power off, ..., power
off again).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.vcenter import VCenterCredentials
from draas.clients.vcenter import VCenterClient
from draas.deadline import Deadline
from draas.models.results import StepResult
from draas.models.vcenter import (
    GuestCustomization,
    Marks,
    ObjectKind,
    ResourceAllocation,
    VCenterChange,
)
from draas.sessions import session
from tasks.common import RETRY_POLICY
from tasks.common import task_logger as _logger


def _run(step: str, target: str, credentials: VCenterCredentials, dry_run: bool,
         call: Callable[[VCenterClient], VCenterChange]) -> StepResult:
    result: StepResult[None] = StepResult(step=step, target=target, dry_run=dry_run)
    with session(credentials) as client:
        change = call(client)
    _logger().info("%s %s: %s%s", step, target,
                   "would change" if dry_run and change.changed else "changed" if change.changed else "no change",
                   "".join(f"\n  {line}" for line in change.diff()))
    return result.done(changed=change.changed, diff=change.diff(), detail=change.model_dump(mode="json"))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def create_folder(credentials: VCenterCredentials, path: str, marks: Marks | None = None,
                  dry_run: bool = False) -> StepResult:
    """Make the VM folder ``path`` exist (parents too), marked with ``marks``."""
    return _run("create_folder", path, credentials, dry_run,
                lambda c: c.create_folder(path, marks=marks, dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def create_resource_pool(credentials: VCenterCredentials, path: str, allocation: ResourceAllocation,
                         cluster: str | None = None, marks: Marks | None = None,
                         dry_run: bool = False) -> StepResult:
    """Make resource pool ``path`` exist with these reservations and limits."""
    return _run("create_resource_pool", path, credentials, dry_run,
                lambda c: c.create_resource_pool(path, allocation, cluster=cluster, marks=marks, dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def create_portgroup(credentials: VCenterCredentials, name: str, vlan_id: int = 0, vswitch: str = "vSwitch0",
                     cluster: str | None = None, marks: Marks | None = None, dry_run: bool = False) -> StepResult:
    """Make a standard port group with ``vlan_id`` exist on every host of the cluster."""
    return _run("create_portgroup", name, credentials, dry_run,
                lambda c: c.create_portgroup(name, vlan_id, vswitch=vswitch, cluster=cluster, marks=marks,
                                             dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def create_dvportgroup(credentials: VCenterCredentials, name: str, vlan_id: int, dvswitch: str,
                       ports: int = 8, marks: Marks | None = None, dry_run: bool = False) -> StepResult:
    """Make a distributed port group with ``vlan_id`` exist on ``dvswitch``."""
    return _run("create_dvportgroup", name, credentials, dry_run,
                lambda c: c.create_dvportgroup(name, vlan_id, dvswitch=dvswitch, ports=ports, marks=marks,
                                               dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def create_isolated_switch(credentials: VCenterCredentials, name: str, portgroup: str | None = None,
                           vlan_id: int = 0, cluster: str | None = None, marks: Marks | None = None,
                           dry_run: bool = False) -> StepResult:
    """Make a switch without physical uplinks (bubble network) and its port group exist."""
    return _run("create_isolated_switch", name, credentials, dry_run,
                lambda c: c.create_isolated_switch(name, portgroup=portgroup, vlan_id=vlan_id, cluster=cluster,
                                                   marks=marks, dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def mark_vcenter_object(credentials: VCenterCredentials, kind: ObjectKind, name: str, marks: Marks,
                        dry_run: bool = False) -> StepResult:
    """Write the tenant / purpose / run id custom attributes on an existing object."""
    return _run("mark_vcenter_object", f"{kind} {name}", credentials, dry_run,
                lambda c: c.set_attributes(kind, name, marks, dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def clone_vm(credentials: VCenterCredentials, source: str, name: str, folder: str | None = None,
             resource_pool: str | None = None, datastore: str | None = None, host: str | None = None,
             power_on: bool = False, marks: Marks | None = None, dry_run: bool = False) -> StepResult:
    """Clone ``source`` to ``folder/name``; a clone that already exists is left as it is."""
    return _run("clone_vm", f"{folder + '/' if folder else ''}{name}", credentials, dry_run,
                lambda c: c.clone_vm(source, name, folder=folder, resource_pool=resource_pool, datastore=datastore,
                                     host=host, power_on=power_on, marks=marks, dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def create_vm(credentials: VCenterCredentials, name: str, folder: str, network: str,
              guest_os: Literal["windows", "linux"] = "linux", cpus: int = 2, memory_mb: int = 4096,
              disk_gb: int = 40, resource_pool: str | None = None, datastore: str | None = None,
              power_on: bool = False, marks: Marks | None = None, dry_run: bool = False) -> StepResult:
    """Make the VM ``folder/name`` exist (a new appliance VM on ``network``)."""
    return _run("create_vm", f"{folder}/{name}", credentials, dry_run,
                lambda c: c.create_vm(name, folder=folder, network=network, guest_os=guest_os, cpus=cpus,
                                      memory_mb=memory_mb, disk_gb=disk_gb, resource_pool=resource_pool,
                                      datastore=datastore, power_on=power_on, marks=marks, dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def relocate_vm(credentials: VCenterCredentials, vm: str, resource_pool: str | None = None,
                datastore: str | None = None, host: str | None = None, dry_run: bool = False) -> StepResult:
    """Move a VM to another resource pool, datastore or host (only what differs)."""
    return _run("relocate_vm", vm, credentials, dry_run,
                lambda c: c.relocate_vm(vm, resource_pool=resource_pool, datastore=datastore, host=host,
                                        dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def power_on_vm(credentials: VCenterCredentials, vm: str, dry_run: bool = False) -> StepResult:
    """Power a VM on."""
    return _run("power_on_vm", vm, credentials, dry_run, lambda c: c.power_on_vm(vm, dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def power_off_vm(credentials: VCenterCredentials, vm: str, dry_run: bool = False) -> StepResult:
    """Power a VM off (hard)."""
    return _run("power_off_vm", vm, credentials, dry_run, lambda c: c.power_off_vm(vm, dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def shutdown_vm_guest(credentials: VCenterCredentials, vm: str, timeout_s: float = 300.0,
                      hard_fallback: bool = False, dry_run: bool = False) -> StepResult:
    """Shut the guest OS down cleanly and wait until the VM is off."""
    return _run("shutdown_vm_guest", vm, credentials, dry_run,
                lambda c: c.shutdown_vm_guest(vm, timeout=timeout_s, hard_fallback=hard_fallback, dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def move_vm_nic(credentials: VCenterCredentials, vm: str, network: str, nic: int = 0,
                dry_run: bool = False) -> StepResult:
    """Attach the VM's ``nic``-th adapter to port group ``network``."""
    return _run("move_vm_nic", f"{vm} NIC {nic}", credentials, dry_run,
                lambda c: c.move_vm_nic(vm, network, nic=nic, dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def customize_vm_ip(credentials: VCenterCredentials, vm: str, customization: GuestCustomization,
                    dry_run: bool = False) -> StepResult:
    """Re-IP a powered-off VM by guest customization (applied at its next power-on)."""
    return _run("customize_vm_ip", vm, credentials, dry_run,
                lambda c: c.customize_vm_ip(vm, customization, dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def wait_for_vm_heartbeat(credentials: VCenterCredentials, vm: str, ip: bool | str = False,
                          timeout_s: float | None = None, deadline: Deadline | None = None) -> StepResult:
    """Poll until the VM runs Tools with a green heartbeat (and the IP, if given); changes nothing.

    The wait ends at ``deadline`` or after ``timeout_s`` (300 s when neither is given); missing it
    raises VCenterDeadlineExceeded, which is never retried.
    """
    result: StepResult[None] = StepResult(step="wait_for_vm_heartbeat", target=vm)
    with session(credentials) as client:
        info = client.wait_for_vm_ready(vm, ip=ip, timeout=timeout_s, deadline=deadline)
    _logger().info("%s ready: tools %s, heartbeat %s, IP %s", vm, info.tools_running_status, info.heartbeat,
                   info.ip_address)
    return result.done(changed=False, detail=info.model_dump(mode="json"))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def create_vm_snapshot(credentials: VCenterCredentials, vm: str, name: str, description: str = "",
                       dry_run: bool = False) -> StepResult:
    """Take snapshot ``name`` of a VM (once)."""
    return _run("create_vm_snapshot", f"{vm}@{name}", credentials, dry_run,
                lambda c: c.create_snapshot(vm, name, description=description, dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def revert_vm_snapshot(credentials: VCenterCredentials, vm: str, name: str | None = None,
                       dry_run: bool = False) -> StepResult:
    """Revert a VM to snapshot ``name`` (default: its current snapshot)."""
    return _run("revert_vm_snapshot", f"{vm}@{name or 'current'}", credentials, dry_run,
                lambda c: c.revert_to_snapshot(vm, name, dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def remove_vm_snapshot(credentials: VCenterCredentials, vm: str, name: str, dry_run: bool = False) -> StepResult:
    """Delete snapshot ``name`` of a VM."""
    return _run("remove_vm_snapshot", f"{vm}@{name}", credentials, dry_run,
                lambda c: c.remove_snapshot(vm, name, dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def destroy_vm(credentials: VCenterCredentials, vm: str, dry_run: bool = False) -> StepResult:
    """Power off and delete a VM (nothing to do if it is gone)."""
    return _run("destroy_vm", vm, credentials, dry_run, lambda c: c.destroy_vm(vm, dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def destroy_vcenter_object(credentials: VCenterCredentials,
                           kind: Literal["folder", "resource_pool", "dvportgroup", "dvswitch", "portgroup"],
                           name: str, dry_run: bool = False) -> StepResult:
    """Remove a folder (holding no VM), resource pool, port group or switch."""
    return _run(f"destroy_{kind}", name, credentials, dry_run, lambda c: c.destroy(kind, name, dry_run=dry_run))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def collect_vm_events(credentials: VCenterCredentials, vm: str | None = None,
                      event_types: list[str] | None = None, since: datetime | None = None) -> StepResult:
    """Read vCenter events (for reports and audits); changes nothing."""
    result: StepResult[None] = StepResult(step="collect_vm_events", target=vm or "datacenter")
    with session(credentials) as client:
        events = client.query_events(vm=vm, event_types=event_types, since=since)
    detail: dict[str, Any] = {"events": [e.model_dump(mode="json") for e in events]}
    return result.done(changed=False, detail=detail)

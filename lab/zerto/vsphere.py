"""The simulator's view of the two vCenters, behind a small interface the tests can fake.

The replication simulator reads the protected site's VMs and creates, powers and destroys
recovered VMs at the other site, over SOAP with pyVmomi, as a real ZVM does through its
vCenter. Engine code only sees :class:`VSphereBackend`; :class:`PyVmomiBackend` is the real
one, and unit tests pass an in-memory fake.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")
log = logging.getLogger(__name__)

#: extraConfig keys that hold a guest's content (see lab.guests.spec); copied to recovered VMs.
GUESTINFO_PREFIX = "guestinfo.lab."

#: Inventory kinds the ZVM API lists per virtualization site.
ITEM_KINDS = ("networks", "folders", "hostclusters", "hosts", "datastores", "resourcepools")


class NicInfo(BaseModel):
    """One virtual NIC of a VM, in device order."""

    label: str
    network: str = ""
    device_type: str = "VirtualVmxnet3"
    mac: str | None = None


class VmInfo(BaseModel):
    """What the simulator needs to know about a VM."""

    moref: str
    name: str
    power_state: str = "poweredOff"
    num_cpus: int = 1
    memory_mb: int = 1024
    guest_id: str = "otherGuest64"
    folder_moref: str | None = None
    folder_path: str = "/"
    pool_moref: str | None = None
    datastore: str | None = None
    nics: list[NicInfo] = Field(default_factory=list)
    annotation: str = ""
    #: The guest's content (extraConfig ``guestinfo.lab.*``), which travels with its replicas.
    guestinfo: dict[str, str] = Field(default_factory=dict)


class Item(BaseModel):
    """An inventory object of a site: ``key`` is the moref (the name for datastores)."""

    key: str
    name: str


class NewNic(BaseModel):
    network_key: str
    device_type: str = "VirtualVmxnet3"
    mac: str | None = None


class NewVm(BaseModel):
    """A VM to create (powered off), as the ZVM creates recovered VMs."""

    name: str
    folder_key: str | None = None
    pool_key: str | None = None
    cluster_key: str | None = None
    host_key: str | None = None
    datastore: str | None = None
    num_cpus: int = 1
    memory_mb: int = 1024
    guest_id: str = "otherGuest64"
    nics: list[NewNic] = Field(default_factory=list)
    annotation: str = ""
    #: extraConfig entries of the new VM (the replicated guest's ``guestinfo.lab.*`` keys).
    extra_config: dict[str, str] = Field(default_factory=dict)


class VSphereError(RuntimeError):
    """A vCenter operation failed; the message is safe to show (no credentials)."""


class VSphereBackend(Protocol):
    """The vCenter operations the simulator needs, per site key (``protected``/``recovery``)."""

    def check(self, site: str) -> None: ...

    def list_vms(self, site: str) -> list[VmInfo]: ...

    def get_vm(self, site: str, key: str) -> VmInfo | None: ...

    def list_items(self, site: str, kind: str) -> list[Item]: ...

    def create_vm(self, site: str, spec: NewVm) -> str: ...

    def destroy_vm(self, site: str, key: str) -> bool: ...

    def set_power(self, site: str, key: str, on: bool) -> bool: ...


class SiteEndpoint(BaseModel):
    """Where one vcsim listens and how to log in (lab-only credentials)."""

    host: str = "127.0.0.1"
    port: int
    username: str
    password: str
    datacenter: str
    cluster: str
    datastores: list[str] = Field(default_factory=list)


class PyVmomiBackend:
    """:class:`VSphereBackend` over SOAP to vcsim (or a vCenter) with pyVmomi."""

    #: Socket timeout of every call: a site that stopped answering (a disaster) fails a call
    #: after this long instead of hanging the failover that reads it.
    call_timeout_s: float = 10.0

    def __init__(self, sites: dict[str, SiteEndpoint], protocol: str = "http") -> None:
        self._sites = sites
        self._protocol = protocol
        self._si: dict[str, Any] = {}
        # pyVmomi stubs share one HTTP connection pool; one lock per site keeps calls simple.
        self._locks = {site: threading.RLock() for site in sites}

    # --- connection -------------------------------------------------------------------

    def _connect(self, site: str) -> Any:
        from pyVim.connect import SmartConnect

        ep = self._sites[site]
        try:
            return SmartConnect(host=ep.host, port=ep.port, user=ep.username, pwd=ep.password,
                                protocol=self._protocol, disableSslCertValidation=True,
                                connectionPoolTimeout=30, httpConnectionTimeout=self.call_timeout_s)
        except Exception as exc:  # noqa: BLE001 - re-raised without the credentials
            raise VSphereError(f"cannot log in to the {site} vCenter at {ep.host}:{ep.port}: "
                               f"{type(exc).__name__}") from None

    def _call(self, site: str, fn: Callable[[Any, Any], T]) -> T:
        """Run ``fn(si, datacenter)`` with a live session; log in again once if it expired."""
        from pyVmomi import vim

        if site not in self._sites:
            raise VSphereError(f"unknown site {site!r}")
        with self._locks[site]:
            for attempt in (1, 2):
                si = self._si.get(site)
                if si is None:
                    si = self._si[site] = self._connect(site)
                try:
                    return fn(si, self._datacenter(si, site))
                except (vim.fault.NotAuthenticated, ConnectionError, OSError):
                    self._si.pop(site, None)
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def _datacenter(self, si: Any, site: str) -> Any:
        name = self._sites[site].datacenter
        for entity in si.content.rootFolder.childEntity:
            if entity.name == name:
                return entity
        raise VSphereError(f"datacenter {name!r} not found at the {site} vCenter")

    @staticmethod
    def _collect(si: Any, root: Any, obj_type: Any, paths: list[str]) -> list[tuple[Any, dict[str, Any]]]:
        """All objects of ``obj_type`` under ``root`` with ``paths``, in one property-collector call."""
        from pyVmomi import vmodl

        content = si.content
        view = content.viewManager.CreateContainerView(root, [obj_type], True)
        try:
            pc = vmodl.query.PropertyCollector
            spec = pc.FilterSpec(
                objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[
                    pc.TraversalSpec(name="view", path="view", skip=False, type=type(view))])],
                propSet=[pc.PropertySpec(type=obj_type, pathSet=paths, all=False)],
            )
            out: list[tuple[Any, dict[str, Any]]] = []
            result = content.propertyCollector.RetrievePropertiesEx([spec], pc.RetrieveOptions())
            while result is not None:
                for oc in result.objects:
                    out.append((oc.obj, {p.name: p.val for p in (oc.propSet or [])}))
                if not result.token:
                    break
                result = content.propertyCollector.ContinueRetrievePropertiesEx(result.token)
            return out
        finally:
            view.Destroy()

    @staticmethod
    def _wait(task: Any, timeout: float = 120.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            info = task.info
            if info.state == "success":
                return info.result
            if info.state == "error":
                msg = getattr(info.error, "msg", None) or type(info.error).__name__
                raise VSphereError(msg)
            if time.monotonic() > deadline:
                raise VSphereError(f"vCenter task {info.key} still {info.state} after {timeout:.0f} s")
            time.sleep(0.02)

    # --- reads -----------------------------------------------------------------------

    def check(self, site: str) -> None:
        self._call(site, lambda si, dc: dc.name)

    def _folder_paths(self, si: Any, dc: Any) -> dict[str, str]:
        from pyVmomi import vim

        root = dc.vmFolder
        rows = self._collect(si, root, vim.Folder, ["name", "parent"])
        parents = {obj._moId: (props.get("name", ""), props.get("parent")) for obj, props in rows}
        paths: dict[str, str] = {root._moId: "/"}

        def path(moid: str, depth: int = 0) -> str:
            if moid in paths:
                return paths[moid]
            name, parent = parents.get(moid, ("?", None))
            if parent is None or depth > 30:
                return name
            base = path(parent._moId, depth + 1)
            paths[moid] = name if base == "/" else f"{base}/{name}"
            return paths[moid]

        for moid in parents:
            path(moid)
        return paths

    def _portgroup_names(self, si: Any, dc: Any) -> dict[str, str]:
        from pyVmomi import vim

        rows = self._collect(si, dc.networkFolder, vim.dvs.DistributedVirtualPortgroup, ["name", "key"])
        return {props.get("key", obj._moId): props.get("name", "") for obj, props in rows}

    def _vm_infos(self, si: Any, dc: Any, root: Any) -> list[VmInfo]:
        from pyVmomi import vim

        paths = [
            "name", "runtime.powerState", "config.hardware.numCPU", "config.hardware.memoryMB",
            "config.guestId", "config.hardware.device", "config.template", "parent", "resourcePool",
            "datastore", "config.extraConfig",
        ]
        rows = self._collect(si, root, vim.VirtualMachine, paths)
        folders = self._folder_paths(si, dc)
        pgs = self._portgroup_names(si, dc)
        out: list[VmInfo] = []
        for obj, p in rows:
            if p.get("config.template"):
                continue
            nics: list[NicInfo] = []
            for dev in p.get("config.hardware.device") or []:
                if not isinstance(dev, vim.vm.device.VirtualEthernetCard):
                    continue
                backing = dev.backing
                if isinstance(backing, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
                    pg_key = str(backing.port.portgroupKey or "")
                    net = pgs.get(pg_key, pg_key)
                else:
                    net = getattr(backing, "deviceName", "") or ""
                nics.append(NicInfo(label=f"Network adapter {len(nics) + 1}", network=net,
                                    device_type=type(dev).__name__.split(".")[-1],
                                    mac=getattr(dev, "macAddress", None)))
            parent = p.get("parent")
            pool = p.get("resourcePool")
            datastores = p.get("datastore") or []
            guestinfo = {str(o.key): str(o.value) for o in p.get("config.extraConfig") or []
                         if str(o.key).startswith(GUESTINFO_PREFIX)}
            out.append(VmInfo(
                moref=obj._moId, name=p.get("name", ""), power_state=str(p.get("runtime.powerState", "")),
                num_cpus=int(p.get("config.hardware.numCPU") or 1),
                memory_mb=int(p.get("config.hardware.memoryMB") or 1024),
                guest_id=str(p.get("config.guestId") or "otherGuest64"),
                folder_moref=parent._moId if parent is not None else None,
                folder_path=folders.get(parent._moId, "/") if parent is not None else "/",
                pool_moref=pool._moId if pool is not None else None,
                datastore=datastores[0].name if datastores else None,
                nics=nics, guestinfo=guestinfo,
            ))
        return out

    def list_vms(self, site: str) -> list[VmInfo]:
        return self._call(site, lambda si, dc: self._vm_infos(si, dc, dc.vmFolder))

    def get_vm(self, site: str, key: str) -> VmInfo | None:
        for vm in self.list_vms(site):
            if vm.moref == key:
                return vm
        return None

    def list_items(self, site: str, kind: str) -> list[Item]:
        from pyVmomi import vim

        def read(si: Any, dc: Any) -> list[Item]:
            if kind == "networks":
                rows = self._collect(si, dc.networkFolder, vim.Network, ["name"])
                return [Item(key=o._moId, name=p.get("name", "")) for o, p in rows
                        if "DVUplinks" not in p.get("name", "")]
            if kind == "folders":
                return [Item(key=k, name=v) for k, v in self._folder_paths(si, dc).items()]
            if kind == "hostclusters":
                rows = self._collect(si, dc.hostFolder, vim.ClusterComputeResource, ["name"])
                return [Item(key=o._moId, name=p.get("name", "")) for o, p in rows]
            if kind == "hosts":
                rows = self._collect(si, dc.hostFolder, vim.HostSystem, ["name"])
                return [Item(key=o._moId, name=p.get("name", "")) for o, p in rows]
            if kind == "datastores":
                rows = self._collect(si, dc.datastoreFolder, vim.Datastore, ["name"])
                # vcsim's datastore morefs are file paths; the name is the stable key.
                return [Item(key=p.get("name", ""), name=p.get("name", "")) for o, p in rows]
            if kind == "resourcepools":
                rows = self._collect(si, dc.hostFolder, vim.ResourcePool, ["name"])
                return [Item(key=o._moId, name=p.get("name", "")) for o, p in rows]
            raise VSphereError(f"unknown inventory kind {kind!r}")

        return self._call(site, read)

    # --- writes ----------------------------------------------------------------------

    def create_vm(self, site: str, spec: NewVm) -> str:
        from pyVmomi import vim

        def create(si: Any, dc: Any) -> str:
            stub = si._stub
            folder = vim.Folder(spec.folder_key, stub) if spec.folder_key else dc.vmFolder
            pool: Any
            if spec.pool_key:
                pool = vim.ResourcePool(spec.pool_key, stub)
            elif spec.cluster_key:
                pool = vim.ClusterComputeResource(spec.cluster_key, stub).resourcePool
            else:
                cluster = next((c for c in dc.hostFolder.childEntity
                                if c.name == self._sites[site].cluster), None)
                if cluster is None:
                    raise VSphereError(f"cluster {self._sites[site].cluster!r} not found")
                pool = cluster.resourcePool
            host = vim.HostSystem(spec.host_key, stub) if spec.host_key else None
            datastore = spec.datastore or (self._sites[site].datastores or [""])[0]
            dev = vim.vm.device
            changes = []
            for i, nic in enumerate(spec.nics):
                cls = getattr(dev, nic.device_type, None) or dev.VirtualVmxnet3
                card = cls(key=-200 - i, connectable=dev.VirtualDevice.ConnectInfo(
                    startConnected=True, connected=True, allowGuestControl=True))
                if nic.mac:
                    card.addressType, card.macAddress = "manual", nic.mac
                else:
                    card.addressType = "generated"
                card.backing = self._nic_backing(si, dc, nic.network_key)
                changes.append(dev.VirtualDeviceSpec(operation="add", device=card))
            config = vim.vm.ConfigSpec(
                name=spec.name, numCPUs=spec.num_cpus, memoryMB=spec.memory_mb, guestId=spec.guest_id,
                files=vim.vm.FileInfo(vmPathName=f"[{datastore}]"), deviceChange=changes,
                annotation=spec.annotation,
                extraConfig=[vim.option.OptionValue(key=k, value=v) for k, v in spec.extra_config.items()],
            )
            try:
                vm = self._wait(folder.CreateVM_Task(config=config, pool=pool, host=host))
            except vim.fault.VimFault as exc:
                raise VSphereError(getattr(exc, "msg", None) or type(exc).__name__) from None
            return str(vm._moId)

        return self._call(site, create)

    @staticmethod
    def _nic_backing(si: Any, dc: Any, network_key: str) -> Any:
        from pyVmomi import vim

        dev = vim.vm.device
        net = vim.Network(network_key, si._stub)
        if network_key.startswith("dvportgroup-"):
            pg = vim.dvs.DistributedVirtualPortgroup(network_key, si._stub)
            dvs = pg.config.distributedVirtualSwitch
            if dvs is None:
                raise VSphereError(f"port group {network_key} has no distributed switch")
            return dev.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
                port=vim.dvs.PortConnection(portgroupKey=pg.key, switchUuid=dvs.uuid))
        return dev.VirtualEthernetCard.NetworkBackingInfo(deviceName=net.name, network=net)

    def destroy_vm(self, site: str, key: str) -> bool:
        from pyVmomi import vim, vmodl

        def destroy(si: Any, dc: Any) -> bool:
            vm = vim.VirtualMachine(key, si._stub)
            try:
                if vm.runtime.powerState == "poweredOn":
                    self._wait(vm.PowerOffVM_Task())
                self._wait(vm.Destroy_Task())
            except vmodl.fault.ManagedObjectNotFound:
                return False
            return True

        return self._call(site, destroy)

    def set_power(self, site: str, key: str, on: bool) -> bool:
        """Power a VM on or off; returns True when its state changed."""
        from pyVmomi import vim, vmodl

        def power(si: Any, dc: Any) -> bool:
            vm = vim.VirtualMachine(key, si._stub)
            try:
                state = vm.runtime.powerState
                if on and state != "poweredOn":
                    self._wait(vm.PowerOnVM_Task())
                    return True
                if not on and state == "poweredOn":
                    self._wait(vm.PowerOffVM_Task())
                    return True
            except vmodl.fault.ManagedObjectNotFound:
                return False
            return False

        return self._call(site, power)

    def close(self) -> None:
        from pyVim.connect import Disconnect

        for site, si in list(self._si.items()):
            try:
                Disconnect(si)
            except Exception as exc:  # noqa: BLE001 - best effort at shutdown
                log.debug("logout from the %s vCenter failed: %s", site, exc)
            self._si.pop(site, None)

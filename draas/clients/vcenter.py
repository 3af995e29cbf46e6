"""vCenter adapter (pyVmomi): inventory, networks, VM lifecycle, snapshots and events.

The client works inside one datacenter (named, or the only one). Objects are named the way
an operator would: folders and VMs by path below the datacenter's VM folder (``acme`` or
``acme/acme-web01``; a bare VM name must be unique), resource pools by path below the
cluster's root pool, networks by port group name.

Every create or change is check-then-act: a second call finds the object as wanted and
returns ``changed=False``; ``dry_run=True`` reports what would change and changes nothing.
Everything the product creates can be marked with custom attributes ``draas.tenant``,
``draas.purpose`` and ``draas.run_id`` (CustomFieldsManager, plain SOAP) and found again
by them. Tasks are awaited by polling ``info.state`` with a deadline.

Exceptions::

    VCenterError (DraasError)
    ├── VCenterTransientError (TransientError)   worth a retry
    │   ├── VCenterConnectionFailed              unreachable, connection dropped, socket timeout
    │   └── VCenterSessionExpired                the session is gone (renewed by the client itself)
    ├── VCenterDeadlineExceeded (DeadlineExceeded, permanent)
    │                                            a task or a wait did not finish by its deadline (never retried)
    └── VCenterPermanentError (PermanentError)   retrying will not help
        ├── VCenterAuthFailed                    login refused, or no permission
        ├── VCenterTLSError                      certificate verification failed
        ├── VCenterObjectNotFound                no object of that kind and name
        ├── VCenterObjectConflict                ambiguous name, or an object that exists but is incompatible
        ├── VCenterOperationFailed               vCenter rejected the call (state, arguments)
        └── VCenterTaskFailed                    a task ended in error

Faults vCenter itself reports as transient (HostCommunication, TaskInProgress, Timedout,
...) become VCenterTransientError whether raised by a call or by a task. No message,
repr or exception text contains the password.

Sessions: one client may be shared by many threads (``thread_safe = True``; pyVmomi's SOAP
stub pools its HTTP connections). When a call fails because vCenter no longer knows the
session (``NotAuthenticated``: idle timeout, ``SessionManager.Logout``, an administrator
terminated it), every public method logs in again once and repeats itself from the start
(all of them are check-then-act, so a repeat is safe); threads that hit the same dead
session wait for that one login. ``NotAuthenticated`` again right after a fresh login is
VCenterAuthFailed. :meth:`VCenterClient.login_count` counts successful logins of the process.
"""

from __future__ import annotations

import functools
import http.client
import inspect
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Literal, ParamSpec, Self, TypeVar

from pydantic import BaseModel, SecretStr
from pyVmomi import vim, vmodl

from draas.deadline import Deadline, DeadlineExceeded
from draas.errors import DraasError, PermanentError, TransientError
from draas.models.vcenter import (
    DiskInfo,
    GuestCustomization,
    IpSettings,
    Marks,
    NicInfo,
    ObjectKind,
    ObjectRef,
    ResourceAllocation,
    SnapshotInfo,
    VCenterChange,
    VCenterEvent,
    VmInfo,
)

_log = logging.getLogger(__name__)

# -- exceptions --------------------------------------------------------------------------------


class VCenterError(DraasError):
    """Base of every error the vCenter adapter raises."""


class VCenterTransientError(VCenterError, TransientError):
    """Worth retrying: the connection, vCenter or a host was briefly unavailable or busy."""


class VCenterConnectionFailed(VCenterTransientError):
    """vCenter could not be reached, or the connection dropped."""


class VCenterDeadlineExceeded(VCenterError, DeadlineExceeded):
    """A task or a wait did not finish before its deadline (the task may still be running).

    Permanent: retrying a wait that ran out of time would only multiply it.
    """


#: The earlier name of :class:`VCenterDeadlineExceeded` (it was transient then; it is not any more).
VCenterTimeout = VCenterDeadlineExceeded


class VCenterSessionExpired(VCenterTransientError):
    """vCenter no longer knows the session (idle timeout, logged out, terminated by an admin).

    The client logs in again and repeats the call once by itself; callers only see this
    error when they drive ``_calling`` directly.
    """


class VCenterPermanentError(VCenterError, PermanentError):
    """Retrying will not help: fix the input, the inventory or the credentials."""


class VCenterAuthFailed(VCenterPermanentError):
    """Login refused, or the account lacks a privilege."""


class VCenterTLSError(VCenterPermanentError):
    """vCenter's TLS certificate did not verify."""


class VCenterObjectNotFound(VCenterPermanentError):
    """No object of that kind and name."""


class VCenterObjectConflict(VCenterPermanentError):
    """A name is ambiguous, or an object exists but differs in a way the adapter won't fix."""


class VCenterOperationFailed(VCenterPermanentError):
    """vCenter rejected a call (invalid state, invalid argument, unsupported)."""


class VCenterTaskFailed(VCenterPermanentError):
    """A vCenter task ended in error; ``fault`` is the vSphere fault name."""

    def __init__(self, message: str, fault: str = "") -> None:
        super().__init__(message)
        self.fault = fault


#: vSphere faults that say "try again later", not "this cannot work".
TRANSIENT_FAULTS = frozenset({
    "HostCommunication", "HostNotConnected", "HostNotReachable", "NotAuthenticated",
    "TaskInProgress", "Timedout", "ConcurrentAccess", "RequestCanceled", "SystemError",
})
AUTH_FAULTS = frozenset({"InvalidLogin", "NoPermission", "NotSupportedHost", "RestrictedVersion",
                         "InvalidLocale", "NoClientCertificate"})
NOT_FOUND_FAULTS = frozenset({"ManagedObjectNotFound", "NotFound"})


def fault_name(fault: Any) -> str:
    """``vim.fault.InvalidLogin`` -> ``InvalidLogin``."""
    return type(fault).__name__.rsplit(".", 1)[-1]


def fault_message(fault: Any) -> str:
    msg = getattr(fault, "msg", None) or ""
    if not msg:
        msgs = [m.message for m in (getattr(fault, "faultMessage", None) or []) if getattr(m, "message", None)]
        msg = "; ".join(msgs)
    return str(msg)


# -- connection seam ---------------------------------------------------------------------------


class ConnectParams(BaseModel):
    """What a connection factory needs to log in."""

    host: str
    port: int
    username: str
    password: SecretStr
    protocol: Literal["https", "http"] = "https"
    verify_tls: bool = True
    timeout: float = 60.0


#: Builds a logged-in ServiceInstance; tests inject a fake one.
ConnectFactory = Callable[[ConnectParams], Any]


def pyvmomi_connect(params: ConnectParams) -> Any:
    """Log in with pyVmomi's SmartConnect (the default factory)."""
    from pyVim.connect import SmartConnect

    kwargs: dict[str, Any] = {
        "host": params.host, "port": params.port, "user": params.username,
        "pwd": params.password.get_secret_value(), "protocol": params.protocol,
        # Socket timeout of every SOAP call: thread-based task timeouts cannot interrupt I/O.
        "httpConnectionTimeout": params.timeout,
    }
    if params.protocol == "https":
        if params.verify_tls:
            kwargs["sslContext"] = ssl.create_default_context()
        else:
            kwargs["disableSslCertValidation"] = True
    return SmartConnect(**kwargs)


def pyvmomi_disconnect(si: Any) -> None:
    from pyVim.connect import Disconnect

    Disconnect(si)


# -- pure helpers (unit-tested without a vCenter) ----------------------------------------------

_KIND_TYPES: dict[str, Any] = {
    "vm": vim.VirtualMachine,
    "folder": vim.Folder,
    "resource_pool": vim.ResourcePool,
    "network": vim.Network,
    "portgroup": vim.Network,
    "dvportgroup": vim.dvs.DistributedVirtualPortgroup,
    "dvswitch": vim.DistributedVirtualSwitch,
    "datastore": vim.Datastore,
    "cluster": vim.ClusterComputeResource,
    "host": vim.HostSystem,
    "datacenter": vim.Datacenter,
}

_SHARES_LEVEL: dict[str, Literal["low", "normal", "high"]] = {"low": "low", "normal": "normal", "high": "high"}


def split_path(path: str) -> list[str]:
    """``"/acme//dr/"`` -> ``["acme", "dr"]``."""
    return [part for part in path.split("/") if part]


def allocation_spec(alloc: ResourceAllocation) -> Any:
    """A vim.ResourceConfigSpec for ``alloc``."""
    def one(reservation: int, limit: int, expandable: bool) -> Any:
        return vim.ResourceAllocationInfo(
            reservation=reservation, limit=limit, expandableReservation=expandable,
            shares=vim.SharesInfo(level=_SHARES_LEVEL[alloc.shares], shares=0))

    return vim.ResourceConfigSpec(
        cpuAllocation=one(alloc.cpu_reservation_mhz, alloc.cpu_limit_mhz, alloc.cpu_expandable),
        memoryAllocation=one(alloc.memory_reservation_mb, alloc.memory_limit_mb, alloc.memory_expandable),
    )


def allocation_of(config: Any) -> ResourceAllocation:
    """The ResourceAllocation a pool's ``config`` (vim.ResourceConfigSpec) describes."""
    cpu, mem = config.cpuAllocation, config.memoryAllocation
    level = getattr(getattr(cpu, "shares", None), "level", "normal")
    return ResourceAllocation(
        cpu_reservation_mhz=int(cpu.reservation or 0), cpu_limit_mhz=int(cpu.limit if cpu.limit is not None else -1),
        cpu_expandable=bool(cpu.expandableReservation),
        memory_reservation_mb=int(mem.reservation or 0),
        memory_limit_mb=int(mem.limit if mem.limit is not None else -1),
        memory_expandable=bool(mem.expandableReservation),
        shares=_SHARES_LEVEL.get(str(level), "normal"),
    )


def allocation_diff(current: ResourceAllocation, wanted: ResourceAllocation) -> list[str]:
    return [f"~ {field}: {getattr(current, field)} -> {getattr(wanted, field)}"
            for field in ResourceAllocation.model_fields
            if getattr(current, field) != getattr(wanted, field)]


def custom_values(values: Any, names: dict[int, str]) -> dict[str, str]:
    """Custom attributes (name -> value) from an entity's ``customValue``; the last value wins."""
    out: dict[str, str] = {}
    for v in values or []:
        name = names.get(int(v.key))
        if name is not None:
            out[name] = str(getattr(v, "value", ""))
    return out


def flatten_snapshots(tree: Any) -> list[SnapshotInfo]:
    """Snapshots of a VM (``vm.snapshot``, possibly None), depth first."""
    if tree is None:
        return []
    current = getattr(tree, "currentSnapshot", None)
    current_id = current._moId if current is not None else None
    out: list[SnapshotInfo] = []

    def walk(nodes: Any) -> None:
        for node in nodes or []:
            out.append(SnapshotInfo(
                name=node.name, moid=node.snapshot._moId, description=node.description or "",
                created=node.createTime, current=node.snapshot._moId == current_id))
            walk(node.childSnapshotList)

    walk(tree.rootSnapshotList)
    return out


def customization_spec(custom: GuestCustomization, *, windows: bool) -> Any:
    """A vim.vm.customization.Specification for ``custom`` (Sysprep for Windows, LinuxPrep otherwise)."""
    c = vim.vm.customization
    name = c.FixedName(name=custom.hostname) if custom.hostname else c.VirtualMachineNameGenerator()
    if windows:
        identity: Any = c.Sysprep(
            guiUnattended=c.GuiUnattended(autoLogon=False, autoLogonCount=0, timeZone=85),
            userData=c.UserData(computerName=name, fullName="DRaaS", orgName="DRaaS", productId=""),
            identification=c.Identification(joinWorkgroup="WORKGROUP"),
        )
    else:
        identity = c.LinuxPrep(hostName=name, domain=custom.domain or "localdomain",
                               timeZone=custom.timezone, hwClockUTC=True)
    dns_servers = sorted({str(s) for nic in custom.nics for s in nic.dns_servers})
    adapters = []
    for nic in custom.nics:
        ip = c.IPSettings(ip=c.FixedIp(ipAddress=str(nic.ip)), subnetMask=nic.netmask)
        if nic.gateway is not None:
            ip.gateway = [str(nic.gateway)]
        if nic.dns_servers:
            ip.dnsServerList = [str(s) for s in nic.dns_servers]
        if nic.dns_domain or custom.domain:
            ip.dnsDomain = nic.dns_domain or custom.domain
        adapters.append(c.AdapterMapping(adapter=ip))
    glob = c.GlobalIPSettings(dnsServerList=dns_servers)
    if custom.domain:
        glob.dnsSuffixList = [custom.domain]
    return c.Specification(identity=identity, globalIPSettings=glob, nicSettingMap=adapters)


def _nic_network(nic: Any, dvpg_names: dict[str, str]) -> str | None:
    backing = nic.backing
    if isinstance(backing, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
        key = str(backing.port.portgroupKey)
        return dvpg_names.get(key, key)
    if isinstance(backing, vim.vm.device.VirtualEthernetCard.NetworkBackingInfo):
        return str(backing.deviceName) if backing.deviceName else None
    return None


_P = ParamSpec("_P")


def _dry_run_tolerant(method: Callable[_P, VCenterChange]) -> Callable[_P, VCenterChange]:
    """In a dry run, a missing object that an earlier (also dry) step would create is no error."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> VCenterChange:
        try:
            return method(*args, **kwargs)
        except VCenterObjectNotFound as exc:
            if not signature.bind(*args, **kwargs).arguments.get("dry_run"):
                raise
            return VCenterChange(changed=True, action=method.__name__, dry_run=True,
                                 changes=[f"? {method.__name__}: {exc} (assumed created by an earlier step)"],
                                 detail={"unresolved": str(exc)})

    return wrapper


def _raise_if_not_authenticated(content: Any) -> None:
    """Raise the NotAuthenticated fault a property read carries instead of the values.

    Without a valid session, RetrieveProperties(Ex) answers (vcsim does; so may vCenter) with
    every asked property in ``missingSet``, each with a NotAuthenticated fault, rather than
    failing the call: read as "unset", that would make an object look absent.
    """
    for missing in getattr(content, "missingSet", None) or []:
        fault = getattr(missing, "fault", None)  # pyVmomi gives the fault itself ...
        fault = getattr(fault, "fault", fault)  # ... or a LocalizedMethodFault around it
        if isinstance(fault, vim.fault.NotAuthenticated):
            raise fault


_F = TypeVar("_F", bound=Callable[..., Any])

#: Public methods that manage the session themselves and are not repeated after a renewal.
_NOT_RENEWED = frozenset({"open", "close", "login_count"})


def _renewing(method: _F) -> _F:
    """Run ``method``; if vCenter says the session is gone, log in again once and run it again.

    Only the outermost public call of a thread renews (a public method calling another one
    leaves it to its caller), so one expired session costs at most one repeat per call.
    """
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self: VCenterClient, *args: Any, **kwargs: Any) -> Any:
        local = self._local
        if getattr(local, "active", False):
            return method(self, *args, **kwargs)
        local.active = True
        try:
            if self._si is None:
                self.open()  # log in first, so that a failure below is about this very session
            generation = self._generation
            try:
                return method(self, *args, **kwargs)
            except (VCenterSessionExpired, vim.fault.NotAuthenticated) as exc:
                _log.info("vCenter %s: session expired during %s (%s); logging in again",
                          self.params.host, name, type(exc).__name__)
            self._renew(generation)
            try:
                return method(self, *args, **kwargs)
            except (VCenterSessionExpired, vim.fault.NotAuthenticated) as exc:
                raise VCenterAuthFailed(self._scrub(
                    f"{name}: vCenter {self.params.host} refused the session again right after a fresh "
                    f"login as {self.params.username!r} (NotAuthenticated)")) from exc
        finally:
            local.active = False

    wrapper.renews_session = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def _renews_sessions(cls: type[VCenterClient]) -> type[VCenterClient]:
    """Wrap every public method of ``cls`` in :func:`_renewing` (the one place renewal lives)."""
    for attr, value in list(vars(cls).items()):
        if attr.startswith("_") or attr in _NOT_RENEWED or not inspect.isfunction(value):
            continue
        setattr(cls, attr, _renewing(value))
    return cls


# -- the client --------------------------------------------------------------------------------

_VM_PATHS = [
    "name", "parent", "runtime.powerState", "config.guestId", "config.hardware.numCPU",
    "config.hardware.memoryMB", "config.hardware.device", "config.tools.pendingCustomization",
    "guest.toolsRunningStatus", "summary.quickStats.guestHeartbeatStatus", "guest.ipAddress",
    "guest.hostName", "guest.net", "runtime.host", "resourcePool", "datastore", "customValue",
]


@_renews_sessions
class VCenterClient:
    """A vCenter session scoped to one datacenter; use it as a context manager.

    Safe to share between threads; an expired session is renewed transparently (see the
    module docstring).

    Args:
        host: vCenter address.
        port: SDK port (443 on a real vCenter).
        username: SSO user.
        password: its password (kept as SecretStr, never shown).
        protocol: ``https`` for vCenter; ``http`` for the lab's simulator only.
        verify_tls: verify vCenter's certificate (https).
        timeout: socket timeout of every SOAP call, seconds.
        datacenter: datacenter to work in; None means the only one.
        task_timeout: default deadline of a vCenter task, seconds.
        poll_interval: longest pause between two polls of a task or a VM, seconds.
        connect: factory returning a logged-in ServiceInstance (the test seam).
        disconnect: how to log out what ``connect`` returned.
    """

    def __init__(self, host: str, port: int = 443, username: str = "", password: SecretStr | str = "", *,
                 protocol: Literal["https", "http"] = "https", verify_tls: bool = True, timeout: float = 60.0,
                 datacenter: str | None = None, task_timeout: float = 1800.0, poll_interval: float = 1.0,
                 connect: ConnectFactory | None = None,
                 disconnect: Callable[[Any], None] | None = None) -> None:
        self.params = ConnectParams(
            host=host, port=port, username=username,
            password=password if isinstance(password, SecretStr) else SecretStr(password),
            protocol=protocol, verify_tls=verify_tls, timeout=timeout)
        self.datacenter_name = datacenter
        self.task_timeout = task_timeout
        self.poll_interval = poll_interval
        self._connect = connect or pyvmomi_connect
        self._disconnect = disconnect or (pyvmomi_disconnect if connect is None else None)
        self._si: Any = None
        self._dc: Any = None
        self._field_keys: dict[tuple[str, str], int] = {}
        self._session_lock = threading.RLock()
        self._generation = 0  # bumped by every login: tells a renewal whether another thread did it
        self._local = threading.local()

    #: Shared by the threads of a flow run (draas.sessions): pyVmomi's stub is thread-safe.
    thread_safe: ClassVar[bool] = True
    #: Successful logins of every VCenterClient of this process (read by the benchmark).
    logins: ClassVar[int] = 0
    _logins_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def login_count(cls) -> int:
        """Successful logins of every VCenterClient of this process so far."""
        with VCenterClient._logins_lock:
            return VCenterClient.logins

    def __repr__(self) -> str:
        p = self.params
        return f"VCenterClient({p.protocol}://{p.host}:{p.port}, user={p.username!r}, datacenter={self.datacenter_name!r})"

    # -- session -------------------------------------------------------------------------------

    def open(self) -> VCenterClient:
        """Log in (once) and find the datacenter."""
        with self._session_lock:
            if self._si is None:
                self._login()
        return self

    def _login(self) -> None:
        """Log in and find the datacenter (caller holds the session lock)."""
        where = f"connect to vCenter {self.params.host}:{self.params.port} as {self.params.username!r}"
        with self._calling(where):
            si = self._connect(self.params)
        with VCenterClient._logins_lock:
            VCenterClient.logins += 1
        try:
            with self._calling(where):
                self._content = si.RetrieveContent()
            self._si = si
            self._dc = self._find_datacenter()
        except BaseException:
            self._si = None
            self._quiet_logout(si)
            raise
        self._generation += 1

    def _renew(self, generation: int) -> None:
        """Log in again, unless another thread already did since ``generation``."""
        with self._session_lock:
            if self._generation != generation and self._si is not None:
                return
            old, self._si = self._si, None
            if old is not None:
                self._quiet_logout(old)  # most likely dead already; never leave a live one behind
            self._login()

    def close(self) -> None:
        """Log out; errors while logging out are ignored (the session expires anyway)."""
        with self._session_lock:
            si, self._si = self._si, None
        if si is not None:
            self._quiet_logout(si)

    def _quiet_logout(self, si: Any) -> None:
        if self._disconnect is None:
            return
        try:
            self._disconnect(si)
        except Exception as exc:  # noqa: BLE001 - logging out of a dead session must not mask the real error
            _log.debug("logout from %s failed: %s", self.params.host, type(exc).__name__)

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def content(self) -> Any:
        if self._si is None:
            self.open()
        return self._content

    # -- error translation ---------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        secret = self.params.password.get_secret_value()
        return text.replace(secret, "***") if secret else text

    def _error(self, exc: BaseException, what: str) -> VCenterError:
        if isinstance(exc, vmodl.MethodFault):
            name = fault_name(exc)
            detail = fault_message(exc)
            msg = self._scrub(f"{what}: {name}" + (f": {detail}" if detail else ""))
            if name == "NotAuthenticated":
                return VCenterSessionExpired(msg)
            if name in AUTH_FAULTS:
                return VCenterAuthFailed(msg)
            if name in NOT_FOUND_FAULTS:
                return VCenterObjectNotFound(msg)
            if name in TRANSIENT_FAULTS:
                return VCenterTransientError(msg)
            return VCenterOperationFailed(msg)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return VCenterTLSError(self._scrub(f"{what}: certificate verification failed: {getattr(exc, 'verify_message', None) or exc}"))
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return VCenterConnectionFailed(self._scrub(f"{what}: timed out after {self.params.timeout:g} s"))
        if isinstance(exc, (OSError, http.client.HTTPException)):
            return VCenterConnectionFailed(self._scrub(f"{what}: {type(exc).__name__}: {exc}"))
        return VCenterOperationFailed(self._scrub(f"{what}: {type(exc).__name__}: {exc}"))

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Translate whatever pyVmomi or the network raises into the adapter's exceptions."""
        try:
            yield
        except VCenterError:
            raise
        except (vmodl.MethodFault, OSError, http.client.HTTPException) as exc:
            raise self._error(exc, what) from exc

    # -- task and property plumbing ------------------------------------------------------------

    def _props(self, objs: list[Any], vimtype: Any, paths: list[str]) -> list[tuple[Any, dict[str, Any]]]:
        """Read ``paths`` of ``objs`` in one round trip; unset properties are simply absent.

        (Property accessors on unset properties crash vcsim's Fetch, the collector does not.)
        """
        if not objs:
            return []
        pc = vmodl.query.PropertyCollector
        spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=o) for o in objs],
                             propSet=[pc.PropertySpec(type=vimtype, pathSet=paths)])
        return self._retrieve(spec)

    def _retrieve(self, spec: Any) -> list[tuple[Any, dict[str, Any]]]:
        pc = self.content.propertyCollector
        out: list[tuple[Any, dict[str, Any]]] = []
        result = pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
        while result is not None:
            for obj in result.objects or []:
                _raise_if_not_authenticated(obj)
                out.append((obj.obj, {p.name: p.val for p in obj.propSet or []}))
            token = getattr(result, "token", None)
            result = pc.ContinueRetrievePropertiesEx(token) if token else None
        return out

    def _prop(self, obj: Any, vimtype: Any, path: str, default: Any = None) -> Any:
        rows = self._props([obj], vimtype, [path])
        return rows[0][1].get(path, default) if rows else default

    def _all(self, vimtype: Any, paths: list[str], root: Any = None,
             recursive: bool = True) -> list[tuple[Any, dict[str, Any]]]:
        """Every object of ``vimtype`` below ``root`` (default: the datacenter) with ``paths``."""
        view = self.content.viewManager.CreateContainerView(root or self._dc, [vimtype], recursive)
        try:
            pc = vmodl.query.PropertyCollector
            spec = pc.FilterSpec(
                objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[
                    pc.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)])],
                propSet=[pc.PropertySpec(type=vimtype, pathSet=paths)])
            return self._retrieve(spec)
        finally:
            view.Destroy()

    def _task_state(self, task: Any) -> dict[str, Any]:
        # Only these paths: reading the whole info breaks on vcsim snapshot tasks (entity quirk).
        rows = self._props([task], vim.Task, ["info.state", "info.error", "info.result"])
        return rows[0][1] if rows else {}

    def _wait(self, task: Any, what: str, timeout: float | None = None) -> Any:
        """Poll the task until it succeeds (returns its result), fails or misses the deadline."""
        limit = self.task_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        pause = 0.02
        with self._calling(what):
            while True:
                info = self._task_state(task)
                state = info.get("info.state")
                if state == "success":
                    return info.get("info.result")
                if state == "error":
                    raise self._task_error(info.get("info.error"), what)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise VCenterTimeout(self._scrub(f"{what}: task still {state} after {limit:g} s"))
                time.sleep(min(pause, remaining))
                pause = min(pause * 2, self.poll_interval)

    def _task_error(self, error: Any, what: str) -> VCenterError:
        fault = getattr(error, "fault", None)
        name = fault_name(fault) if fault is not None else "unknown"
        detail = getattr(error, "localizedMessage", None) or (fault_message(fault) if fault is not None else "")
        msg = self._scrub(f"{what}: task failed: {name}" + (f": {detail}" if detail else ""))
        if name in TRANSIENT_FAULTS:
            return VCenterTransientError(msg)
        if name in AUTH_FAULTS:
            return VCenterAuthFailed(msg)
        return VCenterTaskFailed(msg, fault=name)

    # -- lookups -------------------------------------------------------------------------------

    def _find_datacenter(self) -> Any:
        with self._calling("find datacenter"):
            dcs = self._all(vim.Datacenter, ["name"], root=self._content.rootFolder)
        if self.datacenter_name:
            found = [o for o, p in dcs if p.get("name") == self.datacenter_name]
            if not found:
                raise VCenterObjectNotFound(f"datacenter {self.datacenter_name!r} not found")
            return found[0]
        if len(dcs) != 1:
            names = sorted(p.get("name", "?") for _, p in dcs)
            raise VCenterObjectConflict(f"vCenter has {len(dcs)} datacenters {names}; name one")
        self.datacenter_name = dcs[0][1]["name"]
        return dcs[0][0]

    def _dc_prop(self, path: str) -> Any:
        return self._prop(self._dc, vim.Datacenter, path)

    def _children(self, folder: Any, vimtype: Any = vim.ManagedEntity) -> dict[str, list[Any]]:
        rows = self._all(vimtype, ["name"], root=folder, recursive=False)
        out: dict[str, list[Any]] = {}
        for obj, props in rows:
            out.setdefault(props.get("name", ""), []).append(obj)
        return out

    def _folder(self, path: str, *, create: bool = False) -> tuple[Any, list[str]]:
        """The VM folder at ``path`` (created level by level when ``create``); plus what was created."""
        folder = self._dc_prop("vmFolder")
        created: list[str] = []
        walked: list[str] = []
        for part in split_path(path):
            walked.append(part)
            kids = self._children(folder, vim.Folder).get(part, [])
            if kids:
                folder = kids[0]
                continue
            if not create:
                raise VCenterObjectNotFound(f"folder {'/'.join(walked)!r} not found in {self.datacenter_name}")
            with self._calling(f"create folder {'/'.join(walked)!r}"):
                try:
                    folder = folder.CreateFolder(part)
                except vim.fault.DuplicateName:
                    # Created concurrently: take the one that now exists.
                    folder = self._children(folder, vim.Folder)[part][0]
            created.append("/".join(walked))
        return folder, created

    def _folder_path(self, folder: Any) -> str:
        """Path of a VM folder below the datacenter's VM folder."""
        root = self._dc_prop("vmFolder")
        parts: list[str] = []
        obj = folder
        for _ in range(64):
            if obj is None or obj._moId == root._moId:
                break
            props = self._props([obj], vim.ManagedEntity, ["name", "parent"])[0][1]
            parts.append(props.get("name", "?"))
            obj = props.get("parent")
        return "/".join(reversed(parts))

    def _vm(self, ref: str) -> Any:
        """The VM at ``folder/path/name``, with a unique bare name in the datacenter, or ``moref:<moid>``.

        A ``moref:`` reference costs no lookup (the recovery engine knows its VMs' ids from its
        watch); the call that uses it fails with VCenterObjectNotFound if the VM is gone.
        """
        if ref.startswith("moref:"):
            return vim.VirtualMachine(ref.removeprefix("moref:"), self._stub())
        parts = split_path(ref)
        if not parts:
            raise VCenterObjectNotFound("empty VM name")
        if len(parts) > 1:
            folder, _ = self._folder("/".join(parts[:-1]))
            found = self._children(folder, vim.VirtualMachine).get(parts[-1], [])
        else:
            found = [o for o, p in self._all(vim.VirtualMachine, ["name"]) if p.get("name") == parts[0]]
        if not found:
            raise VCenterObjectNotFound(f"VM {ref!r} not found in {self.datacenter_name}")
        if len(found) > 1:
            raise VCenterObjectConflict(f"{len(found)} VMs are named {ref!r}; give its folder path")
        return found[0]

    def _stub(self) -> Any:
        if self._si is None:
            self.open()
        return self._si._stub

    def _vm_or_none(self, ref: str) -> Any:
        try:
            return self._vm(ref)
        except VCenterObjectNotFound:
            return None

    def _cluster(self, name: str | None = None) -> Any:
        clusters = self._all(vim.ClusterComputeResource, ["name"])
        if name is not None:
            found = [o for o, p in clusters if p.get("name") == name]
            if not found:
                raise VCenterObjectNotFound(f"cluster {name!r} not found in {self.datacenter_name}")
            return found[0]
        if len(clusters) != 1:
            raise VCenterObjectConflict(f"{self.datacenter_name} has {len(clusters)} clusters; name one")
        return clusters[0][0]

    def _named(self, vimtype: Any, name: str, what: str) -> Any:
        found = [o for o, p in self._all(vimtype, ["name"]) if p.get("name") == name]
        if not found:
            raise VCenterObjectNotFound(f"{what} {name!r} not found in {self.datacenter_name}")
        if len(found) > 1:
            raise VCenterObjectConflict(f"{len(found)} objects of kind {what} are named {name!r}")
        return found[0]

    def _pool(self, path: str | None, cluster: str | None = None) -> Any:
        """The resource pool at ``path`` below the cluster's root pool (None: the root pool)."""
        pool = self._prop(self._cluster(cluster), vim.ClusterComputeResource, "resourcePool")
        walked: list[str] = []
        for part in split_path(path or ""):
            walked.append(part)
            kids = self._children(pool, vim.ResourcePool).get(part, [])
            if not kids:
                raise VCenterObjectNotFound(f"resource pool {'/'.join(walked)!r} not found")
            pool = kids[0]
        return pool

    def _networks(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        nets = self._dc_prop("network") or []
        for obj, props in self._props(list(nets), vim.Network, ["name"]):
            out.setdefault(props.get("name", ""), []).append(obj)
        return out

    def _network(self, name: str) -> Any:
        found = self._networks().get(name, [])
        if not found:
            raise VCenterObjectNotFound(f"network {name!r} not found in {self.datacenter_name}")
        if len(found) > 1:
            raise VCenterObjectConflict(f"{len(found)} networks are named {name!r}")
        return found[0]

    def _dvpg_names(self) -> dict[str, str]:
        return {str(p.get("key")): str(p.get("name")) for _, p in
                self._all(vim.dvs.DistributedVirtualPortgroup, ["key", "name"])}

    def _ref(self, kind: ObjectKind, name: str, obj: Any) -> ObjectRef:
        return ObjectRef(kind=kind, name=name, moid=obj._moId)

    def _resolve(self, kind: ObjectKind, name: str) -> Any:
        if kind == "vm":
            return self._vm(name)
        if kind == "folder":
            return self._folder(name)[0]
        if kind == "resource_pool":
            return self._pool(name)
        if kind in ("network", "portgroup"):
            return self._network(name)
        if kind == "datacenter":
            if name != self.datacenter_name:
                raise VCenterObjectNotFound(f"datacenter {name!r} is not this client's")
            return self._dc
        return self._named(_KIND_TYPES[kind], name, kind)

    def find(self, kind: ObjectKind, name: str) -> ObjectRef | None:
        """The object of ``kind`` named ``name`` (a path for folders, pools and VMs), or None."""
        with self._calling(f"find {kind} {name!r}"):
            try:
                return self._ref(kind, name, self._resolve(kind, name))
            except VCenterObjectNotFound:
                return None

    # -- custom attributes (marks) -------------------------------------------------------------

    def _field_names(self) -> dict[int, str]:
        fields = self._prop(self.content.customFieldsManager, vim.CustomFieldsManager, "field") or []
        return {int(f.key): str(f.name) for f in fields}

    def _field_key(self, name: str, vimtype: Any, create: bool) -> int | None:
        motype = vimtype._wsdlName
        cached = self._field_keys.get((name, motype))
        if cached is not None:
            return cached
        cfm = self.content.customFieldsManager
        fields = self._prop(cfm, vim.CustomFieldsManager, "field") or []
        for f in fields:
            if f.name == name and getattr(f, "managedObjectType", None) in (None, vimtype):
                self._field_keys[(name, motype)] = int(f.key)
                return int(f.key)
        if not create:
            return None
        try:
            # Per object type, not global: vcsim 0.24.2 answers global definitions with an
            # empty `type` that pyVmomi refuses to parse.
            field = cfm.AddCustomFieldDef(name=name, moType=vimtype)
        except vim.fault.DuplicateName as exc:
            key = self._field_key(name, vimtype, create=False)  # created concurrently?
            if key is None:
                raise VCenterObjectConflict(
                    f"custom attribute {name!r} exists for another object type; make it global") from exc
            return key
        self._field_keys[(name, motype)] = int(field.key)
        return int(field.key)

    def _set_attributes(self, obj: Any, attrs: dict[str, str], dry_run: bool = False) -> list[str]:
        vimtype = type(obj)
        current = custom_values(self._prop(obj, vim.ManagedEntity, "customValue"), self._field_names())
        changes: list[str] = []
        for name, value in sorted(attrs.items()):
            if current.get(name) == value:
                continue
            changes.append(f"~ attribute {name}: {current.get(name)!r} -> {value!r}")
            if not dry_run:
                key = self._field_key(name, vimtype, create=True)
                # vcsim appends rather than replaces, hence the check above.
                self.content.customFieldsManager.SetField(entity=obj, key=key, value=value)
        return changes

    def get_attributes(self, kind: ObjectKind, name: str) -> dict[str, str]:
        """Custom attributes (name -> value) of an object."""
        with self._calling(f"read attributes of {kind} {name!r}"):
            obj = self._resolve(kind, name)
            return custom_values(self._prop(obj, vim.ManagedEntity, "customValue"), self._field_names())

    @_dry_run_tolerant
    def set_attributes(self, kind: ObjectKind, name: str, attributes: dict[str, str] | Marks,
                       dry_run: bool = False) -> VCenterChange:
        """Make the object carry these custom attributes (others are left alone)."""
        attrs = attributes.attributes() if isinstance(attributes, Marks) else dict(attributes)
        with self._calling(f"set attributes on {kind} {name!r}"):
            obj = self._resolve(kind, name)
            changes = self._set_attributes(obj, attrs, dry_run)
        return VCenterChange(changed=bool(changes), action="set_attributes", object=self._ref(kind, name, obj),
                             changes=changes, dry_run=dry_run)

    def find_by_attribute(self, name: str, value: str, kind: ObjectKind = "vm") -> list[ObjectRef]:
        """Objects of ``kind`` whose custom attribute ``name`` equals ``value``."""
        with self._calling(f"find {kind} with {name}={value!r}"):
            names = self._field_names()
            out = []
            for obj, props in self._all(_KIND_TYPES[kind], ["name", "customValue"]):
                if custom_values(props.get("customValue"), names).get(name) == value:
                    label = self._folder_path(obj) if kind == "folder" else str(props.get("name"))
                    out.append(self._ref(kind, label, obj))
            return out

    def _mark(self, obj: Any, marks: Marks | None, dry_run: bool) -> list[str]:
        return self._set_attributes(obj, marks.attributes(), dry_run) if marks else []

    # -- folders and resource pools ------------------------------------------------------------

    @_dry_run_tolerant
    def create_folder(self, path: str, *, marks: Marks | None = None, dry_run: bool = False) -> VCenterChange:
        """Make the VM folder ``path`` exist (parents too); mark the last level."""
        with self._calling(f"create folder {path!r}"):
            try:
                folder, created = self._folder(path, create=not dry_run)
            except VCenterObjectNotFound:
                return VCenterChange(changed=True, action="create_folder", dry_run=True,
                                     changes=[f"+ folder {path}"])
            changes = [f"+ folder {p}" for p in created] + self._mark(folder, marks, dry_run)
        return VCenterChange(changed=bool(changes), action="create_folder", dry_run=dry_run,
                             object=self._ref("folder", "/".join(split_path(path)), folder), changes=changes)

    @_dry_run_tolerant
    def create_resource_pool(self, path: str, allocation: ResourceAllocation | None = None, *,
                             cluster: str | None = None, marks: Marks | None = None,
                             dry_run: bool = False) -> VCenterChange:
        """Make the pool ``path`` (below the cluster's root pool) exist with ``allocation``."""
        allocation = allocation or ResourceAllocation()
        parts = split_path(path)
        if not parts:
            raise VCenterOperationFailed("resource pool path is empty")
        with self._calling(f"create resource pool {path!r}"):
            parent = self._pool("/".join(parts[:-1]), cluster)
            existing = self._children(parent, vim.ResourcePool).get(parts[-1], [])
            if not existing:
                if dry_run:
                    return VCenterChange(changed=True, action="create_resource_pool", dry_run=True,
                                         changes=[f"+ resource pool {path}"])
                pool = parent.CreateResourcePool(name=parts[-1], spec=allocation_spec(allocation))
                changes = [f"+ resource pool {path}"]
            else:
                pool = existing[0]
                current = allocation_of(self._prop(pool, vim.ResourcePool, "config"))
                changes = allocation_diff(current, allocation)
                if changes and not dry_run:
                    pool.UpdateConfig(name=None, config=allocation_spec(allocation))
            changes += self._mark(pool, marks, dry_run)
        return VCenterChange(changed=bool(changes), action="create_resource_pool", dry_run=dry_run,
                             object=self._ref("resource_pool", "/".join(parts), pool), changes=changes)

    def get_resource_pool_allocation(self, path: str, cluster: str | None = None) -> ResourceAllocation:
        """The reservations and limits of the pool ``path`` (below the cluster's root pool)."""
        with self._calling(f"read resource pool {path!r}"):
            return allocation_of(self._prop(self._pool(path, cluster), vim.ResourcePool, "config"))

    # -- networks ------------------------------------------------------------------------------

    def _hosts(self, cluster: str | None) -> list[tuple[Any, dict[str, Any]]]:
        hosts = self._prop(self._cluster(cluster), vim.ClusterComputeResource, "host") or []
        return self._props(list(hosts), vim.HostSystem, ["name", "configManager.networkSystem"])

    @_dry_run_tolerant
    def create_portgroup(self, name: str, vlan_id: int = 0, *, vswitch: str = "vSwitch0",
                         cluster: str | None = None, marks: Marks | None = None,
                         dry_run: bool = False) -> VCenterChange:
        """Make a standard port group ``name`` with ``vlan_id`` exist on every host of the cluster."""
        changes: list[str] = []
        with self._calling(f"create port group {name!r}"):
            for _host, hp in self._hosts(cluster):
                netsys = hp["configManager.networkSystem"]
                info = self._prop(netsys, vim.host.NetworkSystem, "networkInfo")
                pgs = {pg.spec.name: pg.spec for pg in (getattr(info, "portgroup", None) or [])}
                if name in pgs:
                    if int(pgs[name].vlanId or 0) != vlan_id:
                        raise VCenterObjectConflict(
                            f"port group {name!r} on {hp['name']} has VLAN {pgs[name].vlanId}, wanted {vlan_id}")
                    continue
                if dry_run:
                    changes.append(f"+ port group {name} (VLAN {vlan_id}) on {hp['name']}")
                    continue
                spec = vim.host.PortGroup.Specification(name=name, vlanId=vlan_id, vswitchName=vswitch,
                                                        policy=vim.host.NetworkPolicy())
                try:
                    netsys.AddPortGroup(portgrp=spec)
                except vim.fault.DuplicateName:
                    # vcsim registers a standard port group once per datacenter, not per host.
                    continue
                changes.append(f"+ port group {name} (VLAN {vlan_id}) on {hp['name']}")
            net = self._networks().get(name, [None])[0]
            if net is not None:
                changes += self._mark(net, marks, dry_run)
        return VCenterChange(changed=bool(changes), action="create_portgroup", dry_run=dry_run, changes=changes,
                             object=self._ref("portgroup", name, net) if net is not None else None)

    def _dvs_portgroups(self, dvs: Any) -> dict[str, Any]:
        pgs = self._prop(dvs, vim.DistributedVirtualSwitch, "portgroup") or []
        return {str(p.get("name")): o for o, p in self._props(list(pgs), vim.dvs.DistributedVirtualPortgroup, ["name"])}

    def _ensure_dvportgroup(self, dvs: Any, dvs_name: str, name: str, vlan_id: int, ports: int,
                            dry_run: bool) -> tuple[Any, list[str]]:
        vmw = vim.dvs.VmwareDistributedVirtualSwitch
        pg = self._dvs_portgroups(dvs).get(name)
        if pg is None:
            other = [n for n in self._networks().get(name, [])]
            if other:
                raise VCenterObjectConflict(f"network {name!r} exists but not on switch {dvs_name!r}")
            if dry_run:
                return None, [f"+ distributed port group {name} (VLAN {vlan_id}) on {dvs_name}"]
            spec = vim.dvs.DistributedVirtualPortgroup.ConfigSpec(
                name=name, type="earlyBinding", numPorts=ports,
                defaultPortConfig=vmw.VmwarePortConfigPolicy(vlan=vmw.VlanIdSpec(vlanId=vlan_id, inherited=False)))
            self._wait(dvs.AddDVPortgroup_Task([spec]), f"add distributed port group {name!r}")
            # AddDVPortgroup_Task returns nothing: look the new port group up by name.
            return self._dvs_portgroups(dvs)[name], [f"+ distributed port group {name} (VLAN {vlan_id}) on {dvs_name}"]
        config = self._prop(pg, vim.dvs.DistributedVirtualPortgroup, "config")
        vlan = getattr(getattr(config, "defaultPortConfig", None), "vlan", None)
        current = getattr(vlan, "vlanId", None)
        if isinstance(current, int) and current == vlan_id:
            return pg, []
        change = [f"~ distributed port group {name}: VLAN {current} -> {vlan_id}"]
        if not dry_run:
            spec = vim.dvs.DistributedVirtualPortgroup.ConfigSpec(
                name=name, configVersion=config.configVersion,  # vcsim blanks the name unless resent
                defaultPortConfig=vmw.VmwarePortConfigPolicy(vlan=vmw.VlanIdSpec(vlanId=vlan_id, inherited=False)))
            self._wait(pg.ReconfigureDVPortgroup_Task(spec), f"set VLAN of {name!r}")
        return pg, change

    @_dry_run_tolerant
    def create_dvportgroup(self, name: str, vlan_id: int, *, dvswitch: str, ports: int = 8,
                           marks: Marks | None = None, dry_run: bool = False) -> VCenterChange:
        """Make distributed port group ``name`` with ``vlan_id`` exist on ``dvswitch``."""
        if not 0 <= vlan_id <= 4094:
            raise VCenterOperationFailed(f"VLAN id {vlan_id} is outside 0-4094")
        with self._calling(f"create distributed port group {name!r}"):
            dvs = self._named(vim.DistributedVirtualSwitch, dvswitch, "dvswitch")
            pg, changes = self._ensure_dvportgroup(dvs, dvswitch, name, vlan_id, ports, dry_run)
            if pg is not None:
                changes += self._mark(pg, marks, dry_run)
        return VCenterChange(changed=bool(changes), action="create_dvportgroup", dry_run=dry_run, changes=changes,
                             object=self._ref("dvportgroup", name, pg) if pg is not None else None)

    @_dry_run_tolerant
    def create_isolated_switch(self, name: str, *, portgroup: str | None = None, vlan_id: int = 0,
                               cluster: str | None = None, marks: Marks | None = None,
                               dry_run: bool = False) -> VCenterChange:
        """Make a distributed switch with no physical uplinks (a bubble network) and its port group.

        Every host of the cluster joins the switch without a physical NIC, so traffic on it
        never leaves a host: keep the VMs of one bubble on one host (or give it uplinks
        towards an isolated fabric).
        """
        changes: list[str] = []
        pg = None
        with self._calling(f"create isolated switch {name!r}"):
            hosts = self._hosts(cluster)
            found = [o for o, p in self._all(vim.DistributedVirtualSwitch, ["name"]) if p.get("name") == name]
            if not found:
                changes.append(f"+ isolated distributed switch {name} (no physical uplinks)")
                if dry_run:
                    if portgroup:
                        changes.append(f"+ distributed port group {portgroup} (VLAN {vlan_id}) on {name}")
                    return VCenterChange(changed=True, action="create_isolated_switch", dry_run=True,
                                         changes=changes)
                spec = vim.DistributedVirtualSwitch.CreateSpec(configSpec=vim.dvs.VmwareDistributedVirtualSwitch.ConfigSpec(
                    name=name, description="DRaaS isolated (bubble) network: no physical uplinks",
                    uplinkPortPolicy=vim.DistributedVirtualSwitch.NameArrayUplinkPortPolicy(uplinkPortName=["isolated"])))
                dvs = self._wait(self._dc_prop("networkFolder").CreateDVS_Task(spec), f"create switch {name!r}")
            else:
                dvs = found[0]
            props = self._props([dvs], vim.DistributedVirtualSwitch, ["summary.hostMember", "config.host"])[0][1]
            for member in props.get("config.host") or []:
                pnics = getattr(getattr(member.config, "backing", None), "pnicSpec", None) or []
                if pnics:
                    raise VCenterObjectConflict(f"switch {name!r} has physical uplinks on a host: not isolated")
            members = {h._moId for h in props.get("summary.hostMember") or []}
            missing = [(h, p) for h, p in hosts if h._moId not in members]
            if missing:
                changes += [f"+ host {p['name']} joins {name} without physical NICs" for _, p in missing]
                if not dry_run:
                    version = self._prop(dvs, vim.DistributedVirtualSwitch, "config.configVersion")
                    add = vim.DistributedVirtualSwitch.ConfigSpec(configVersion=version, host=[
                        vim.dvs.HostMember.ConfigSpec(operation="add", host=h,
                                                      backing=vim.dvs.HostMember.PnicBacking(pnicSpec=[]))
                        for h, _ in missing])
                    self._wait(dvs.ReconfigureDvs_Task(add), f"add hosts to {name!r}")
            changes += self._mark(dvs, marks, dry_run)
            if portgroup:
                pg, more = self._ensure_dvportgroup(dvs, name, portgroup, vlan_id, 8, dry_run)
                changes += more
                if pg is not None:
                    changes += self._mark(pg, marks, dry_run)
        detail = {"portgroup": portgroup, "portgroup_moid": pg._moId if pg is not None else None}
        return VCenterChange(changed=bool(changes), action="create_isolated_switch", dry_run=dry_run,
                             object=self._ref("dvswitch", name, dvs), changes=changes, detail=detail)

    def switch_state(self, name: str) -> dict[str, Any] | None:
        """What a distributed switch is wired to, read-only (None: no such switch).

        ``{"name", "hosts": {host: [physical NICs backing it]}, "portgroups": {name: VLAN id or
        None when it is not a single VLAN}, "uplink_portgroups": [the switch's uplink port groups,
        which carry only what physical NICs bring]}``: enough to prove a bubble switch has no
        uplink and carries no production VLAN.
        """
        with self._calling(f"read switch {name!r}"):
            found = [o for o, p in self._all(vim.DistributedVirtualSwitch, ["name"]) if p.get("name") == name]
            if not found:
                return None
            dvs = found[0]
            props = self._props([dvs], vim.DistributedVirtualSwitch,
                                ["config.host", "summary.hostMember", "config.uplinkPortgroup"])[0][1]

            def host_name(host: Any) -> str:
                return str(self._prop(host, vim.ManagedEntity, "name")) if host is not None else "?"

            members = list(props.get("summary.hostMember") or [])
            hosts: dict[str, list[str]] = {host_name(h): [] for h in members}
            for member in props.get("config.host") or []:
                pnics = getattr(getattr(member.config, "backing", None), "pnicSpec", None) or []
                hosts[host_name(getattr(member.config, "host", None))] = [
                    str(getattr(p, "pnicDevice", "") or "") for p in pnics]
            # Each host's own view: its proxy switch of this switch and the physical NICs behind it.
            uuid = self._prop(dvs, vim.DistributedVirtualSwitch, "uuid")
            for host in members:
                netsys = self._prop(host, vim.HostSystem, "configManager.networkSystem")
                config = self._prop(netsys, vim.host.NetworkSystem, "networkConfig") if netsys is not None else None
                for proxy in getattr(config, "proxySwitch", None) or []:
                    if getattr(proxy, "uuid", None) != uuid:
                        continue
                    backing = getattr(getattr(proxy, "spec", None), "backing", None)
                    hosts[host_name(host)] += [str(getattr(p, "pnicDevice", "") or "")
                                               for p in getattr(backing, "pnicSpec", None) or []]
            uplink_ids = {pg._moId for pg in props.get("config.uplinkPortgroup") or []}
            portgroups: dict[str, int | None] = {}
            uplink_portgroups: list[str] = []
            for pg_name, pg in self._dvs_portgroups(dvs).items():
                config = self._prop(pg, vim.dvs.DistributedVirtualPortgroup, "config")
                # vcsim reports neither config.uplinkPortgroup nor config.uplink; both name it <switch>-DVUplinks-<n>
                if pg._moId in uplink_ids or getattr(config, "uplink", False) or \
                        pg_name.startswith(f"{name}-DVUplinks-"):
                    uplink_portgroups.append(pg_name)
                    continue
                vlan = getattr(getattr(config, "defaultPortConfig", None), "vlan", None)
                vlan_id = getattr(vlan, "vlanId", None)
                portgroups[pg_name] = vlan_id if isinstance(vlan_id, int) else None
        return {"name": name, "hosts": hosts, "portgroups": portgroups, "uplink_portgroups": sorted(uplink_portgroups)}

    # -- VMs -----------------------------------------------------------------------------------

    def _vm_info(self, vm: Any) -> VmInfo:
        rows = self._props([vm], vim.VirtualMachine, _VM_PATHS)
        if not rows:
            raise VCenterObjectNotFound(f"VM {vm._moId} vanished")
        p = rows[0][1]
        dvpg = self._dvpg_names()
        nics = [NicInfo(key=d.key, label=str(getattr(d.deviceInfo, "label", None) or d.key),
                        mac=d.macAddress, network=_nic_network(d, dvpg),
                        connected=getattr(d.connectable, "connected", None))
                for d in p.get("config.hardware.device") or []
                if isinstance(d, vim.vm.device.VirtualEthernetCard)]
        disks = [DiskInfo(key=d.key, label=str(getattr(d.deviceInfo, "label", None) or d.key),
                          capacity_gb=round(int(d.capacityInKB or 0) / (1024 * 1024), 3))
                 for d in p.get("config.hardware.device") or [] if isinstance(d, vim.vm.device.VirtualDisk)]
        guest_ips = [ip for n in p.get("guest.net") or [] for ip in (n.ipAddress or [])[:1]]

        def name_of(obj: Any) -> str | None:
            return str(self._prop(obj, vim.ManagedEntity, "name")) if obj is not None else None

        return VmInfo(
            name=p["name"], moid=vm._moId, folder=self._folder_path(p.get("parent")),
            power_state=p.get("runtime.powerState", "poweredOff"), guest_id=p.get("config.guestId"),
            cpus=p.get("config.hardware.numCPU"), memory_mb=p.get("config.hardware.memoryMB"),
            tools_running_status=p.get("guest.toolsRunningStatus"),
            heartbeat=p.get("summary.quickStats.guestHeartbeatStatus"),
            ip_address=p.get("guest.ipAddress"), guest_ips=guest_ips, hostname=p.get("guest.hostName"),
            nics=nics, disks=disks, host=name_of(p.get("runtime.host")), resource_pool=name_of(p.get("resourcePool")),
            datastores=[n for n in (name_of(d) for d in p.get("datastore") or []) if n],
            attributes=custom_values(p.get("customValue"), self._field_names()),
            pending_customization=bool(p.get("config.tools.pendingCustomization")),
        )

    def get_vm(self, name: str) -> VmInfo:
        """The VM at ``folder/name`` (or a unique bare name)."""
        with self._calling(f"read VM {name!r}"):
            return self._vm_info(self._vm(name))

    def list_vms(self, folder: str | None = None) -> list[VmInfo]:
        """VMs below ``folder`` (recursively), or in the whole datacenter."""
        with self._calling(f"list VMs in {folder or self.datacenter_name!r}"):
            root = self._folder(folder)[0] if folder else None
            return [self._vm_info(o) for o, _ in self._all(vim.VirtualMachine, ["name"], root=root)]

    @_dry_run_tolerant
    def clone_vm(self, source: str, name: str, *, folder: str | None = None, resource_pool: str | None = None,
                 datastore: str | None = None, host: str | None = None, cluster: str | None = None,
                 power_on: bool = False, marks: Marks | None = None, dry_run: bool = False) -> VCenterChange:
        """Clone ``source`` to ``folder/name`` (default: the source's folder), optionally power it on."""
        with self._calling(f"clone VM {source!r} to {name!r}"):
            src = self._vm(source)
            src_props = self._props([src], vim.VirtualMachine, ["parent", "resourcePool"])[0][1]
            dest = self._folder(folder)[0] if folder else src_props["parent"]
            dest_path = folder if folder else self._folder_path(dest)
            target = "/".join(split_path(dest_path) + [name])
            existing = self._children(dest, vim.VirtualMachine).get(name, [])
            changes: list[str] = []
            if existing:
                vm = existing[0]
            else:
                changes.append(f"+ VM {target} cloned from {source}")
                if dry_run:
                    return VCenterChange(changed=True, action="clone_vm", dry_run=True, changes=changes)
                location = vim.vm.RelocateSpec(
                    pool=self._pool(resource_pool, cluster) if resource_pool or cluster else src_props["resourcePool"])
                if datastore:
                    location.datastore = self._named(vim.Datastore, datastore, "datastore")
                if host:
                    location.host = self._named(vim.HostSystem, host, "host")
                # vcsim 0.24.2 ignores spec.powerOn: power on explicitly below.
                spec = vim.vm.CloneSpec(location=location, powerOn=False, template=False)
                vm = self._wait(src.CloneVM_Task(folder=dest, name=name, spec=spec), f"clone {source!r} to {target!r}")
            changes += self._mark(vm, marks, dry_run)
            if power_on:
                changes += self._power(vm, target, "poweredOn", dry_run)
        return VCenterChange(changed=bool(changes), action="clone_vm", dry_run=dry_run,
                             object=self._ref("vm", target, vm), changes=changes)

    def _nic_backing(self, network: str, target: Any) -> Any:
        """The NIC backing that attaches a card to ``target`` (a DV port group or a network)."""
        if isinstance(target, vim.dvs.DistributedVirtualPortgroup):
            pg = self._props([target], vim.dvs.DistributedVirtualPortgroup,
                             ["key", "config.distributedVirtualSwitch"])[0][1]
            uuid = self._prop(pg["config.distributedVirtualSwitch"], vim.DistributedVirtualSwitch, "uuid")
            return vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
                port=vim.dvs.PortConnection(switchUuid=uuid, portgroupKey=pg["key"]))
        return vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName=network, network=target)

    @_dry_run_tolerant
    def create_vm(self, name: str, *, folder: str, network: str, guest_os: Literal["windows", "linux"] = "linux",
                  cpus: int = 2, memory_mb: int = 4096, disk_gb: int = 40, resource_pool: str | None = None,
                  cluster: str | None = None, datastore: str | None = None, power_on: bool = False,
                  marks: Marks | None = None, dry_run: bool = False) -> VCenterChange:
        """Create a new VM ``folder/name`` (one thin disk, one vmxnet3 NIC on ``network``).

        Used for appliances the product deploys itself (process servers, master targets);
        an existing VM of that name is left as it is (``changed=False``).
        """
        with self._calling(f"create VM {name!r} in {folder!r}"):
            dest = self._folder(folder)[0]
            target = "/".join(split_path(folder) + [name])
            existing = self._children(dest, vim.VirtualMachine).get(name, [])
            changes: list[str] = []
            if existing:
                vm = existing[0]
            else:
                changes.append(f"+ VM {target} ({guest_os}, {cpus} vCPU, {memory_mb} MB, {disk_gb} GB) on {network}")
                if dry_run:
                    return VCenterChange(changed=True, action="create_vm", dry_run=True, changes=changes)
                pool = self._pool(resource_pool, cluster)
                ds_name = datastore or self._prop(
                    self._cluster(cluster), vim.ClusterComputeResource, "datastore")[0].name
                dev = vim.vm.device
                devices = [
                    dev.VirtualDeviceSpec(operation="add", device=dev.ParaVirtualSCSIController(
                        key=-100, busNumber=0, sharedBus="noSharing")),
                    dev.VirtualDeviceSpec(operation="add", fileOperation="create", device=dev.VirtualDisk(
                        key=-101, controllerKey=-100, unitNumber=0, capacityInKB=disk_gb * 1024 * 1024,
                        backing=dev.VirtualDisk.FlatVer2BackingInfo(diskMode="persistent", thinProvisioned=True,
                                                                    fileName=""))),
                    dev.VirtualDeviceSpec(operation="add", device=dev.VirtualVmxnet3(
                        key=-102, addressType="generated", backing=self._nic_backing(network, self._network(network)),
                        connectable=dev.VirtualDevice.ConnectInfo(startConnected=True, connected=True,
                                                                  allowGuestControl=True))),
                ]
                guest_id = "windows2019srv_64Guest" if guest_os == "windows" else "otherLinux64Guest"
                spec = vim.vm.ConfigSpec(name=name, guestId=guest_id, numCPUs=cpus, memoryMB=memory_mb,
                                         files=vim.vm.FileInfo(vmPathName=f"[{ds_name}]"), deviceChange=devices)
                vm = self._wait(dest.CreateVM_Task(config=spec, pool=pool), f"create VM {target!r}")
            changes += self._mark(vm, marks, dry_run)
            if power_on:
                changes += self._power(vm, target, "poweredOn", dry_run)
        return VCenterChange(changed=bool(changes), action="create_vm", dry_run=dry_run,
                             object=self._ref("vm", target, vm), changes=changes)

    @_dry_run_tolerant
    def relocate_vm(self, name: str, *, resource_pool: str | None = None, datastore: str | None = None,
                    host: str | None = None, cluster: str | None = None, dry_run: bool = False) -> VCenterChange:
        """Move a VM to another pool, datastore or host (only what differs)."""
        with self._calling(f"relocate VM {name!r}"):
            vm = self._vm(name)
            cur = self._props([vm], vim.VirtualMachine, ["resourcePool", "datastore", "runtime.host"])[0][1]
            spec = vim.vm.RelocateSpec()
            changes: list[str] = []
            if resource_pool is not None or cluster is not None:
                pool = self._pool(resource_pool, cluster)
                if cur.get("resourcePool") is None or cur["resourcePool"]._moId != pool._moId:
                    spec.pool = pool
                    changes.append(f"~ {name}: resource pool -> {resource_pool or '(root)'}")
            if datastore is not None:
                ds = self._named(vim.Datastore, datastore, "datastore")
                if ds._moId not in {d._moId for d in cur.get("datastore") or []}:
                    spec.datastore = ds
                    changes.append(f"~ {name}: datastore -> {datastore}")
            if host is not None:
                h = self._named(vim.HostSystem, host, "host")
                if cur.get("runtime.host") is None or cur["runtime.host"]._moId != h._moId:
                    spec.host = h
                    changes.append(f"~ {name}: host -> {host}")
            if changes and not dry_run:
                self._wait(vm.RelocateVM_Task(spec), f"relocate {name!r}")
        return VCenterChange(changed=bool(changes), action="relocate_vm", dry_run=dry_run,
                             object=self._ref("vm", name, vm), changes=changes)

    def _power(self, vm: Any, name: str, wanted: str, dry_run: bool) -> list[str]:
        state = self._prop(vm, vim.VirtualMachine, "runtime.powerState")
        if state == wanted:
            return []
        if not dry_run:
            task = vm.PowerOnVM_Task() if wanted == "poweredOn" else vm.PowerOffVM_Task()
            self._wait(task, f"power {'on' if wanted == 'poweredOn' else 'off'} {name!r}")
        return [f"~ {name}: {state} -> {wanted}"]

    @_dry_run_tolerant
    def power_on_vm(self, name: str, dry_run: bool = False) -> VCenterChange:
        """Power the VM on; ``changed=False`` if it already was."""
        with self._calling(f"power on VM {name!r}"):
            vm = self._vm(name)
            changes = self._power(vm, name, "poweredOn", dry_run)
        return VCenterChange(changed=bool(changes), action="power_on_vm", dry_run=dry_run,
                             object=self._ref("vm", name, vm), changes=changes)

    @_dry_run_tolerant
    def power_off_vm(self, name: str, dry_run: bool = False) -> VCenterChange:
        """Power the VM off hard; ``changed=False`` if it already was off."""
        with self._calling(f"power off VM {name!r}"):
            vm = self._vm(name)
            changes = self._power(vm, name, "poweredOff", dry_run)
        return VCenterChange(changed=bool(changes), action="power_off_vm", dry_run=dry_run,
                             object=self._ref("vm", name, vm), changes=changes)

    @_dry_run_tolerant
    def shutdown_vm_guest(self, name: str, *, timeout: float = 300.0, hard_fallback: bool = False,
                          dry_run: bool = False) -> VCenterChange:
        """Ask the guest OS to shut down and wait until the VM is off.

        Raises:
            VCenterOperationFailed: VMware Tools is not running (unless ``hard_fallback``).
            VCenterTimeout: still on after ``timeout`` (unless ``hard_fallback``).
        """
        with self._calling(f"shut down guest of VM {name!r}"):
            vm = self._vm(name)
            p = self._props([vm], vim.VirtualMachine, ["runtime.powerState", "guest.toolsRunningStatus"])[0][1]
            ref = self._ref("vm", name, vm)
            if p.get("runtime.powerState") == "poweredOff":
                return VCenterChange(changed=False, action="shutdown_vm_guest", object=ref, dry_run=dry_run)
            changes = [f"~ {name}: {p.get('runtime.powerState')} -> poweredOff (guest shutdown)"]
            if dry_run:
                return VCenterChange(changed=True, action="shutdown_vm_guest", object=ref, dry_run=True,
                                     changes=changes)
            if p.get("guest.toolsRunningStatus") != "guestToolsRunning":
                if not hard_fallback:
                    raise VCenterOperationFailed(f"shut down {name!r}: VMware Tools is not running")
                self._power(vm, name, "poweredOff", False)
                return VCenterChange(changed=True, action="shutdown_vm_guest", object=ref, changes=changes,
                                     detail={"hard_power_off": True})
            vm.ShutdownGuest()
            try:
                self._poll(vm, name, lambda s: s.get("runtime.powerState") == "poweredOff",
                           ["runtime.powerState"], timeout, "power off")
            except VCenterTimeout:
                if not hard_fallback:
                    raise
                self._power(vm, name, "poweredOff", False)
                return VCenterChange(changed=True, action="shutdown_vm_guest", object=ref, changes=changes,
                                     detail={"hard_power_off": True})
        return VCenterChange(changed=True, action="shutdown_vm_guest", object=ref, changes=changes)

    @_dry_run_tolerant
    def move_vm_nic(self, name: str, network: str, *, nic: int = 0, dry_run: bool = False) -> VCenterChange:
        """Attach the VM's ``nic``-th network adapter (device order) to port group ``network``."""
        with self._calling(f"move NIC {nic} of VM {name!r} to {network!r}"):
            vm = self._vm(name)
            devices = self._prop(vm, vim.VirtualMachine, "config.hardware.device") or []
            cards = [d for d in devices if isinstance(d, vim.vm.device.VirtualEthernetCard)]
            if not 0 <= nic < len(cards):
                raise VCenterObjectNotFound(f"VM {name!r} has {len(cards)} NICs, no NIC {nic}")
            card = cards[nic]
            target = self._network(network)
            current = _nic_network(card, self._dvpg_names())
            ref = self._ref("vm", name, vm)
            if current == network:
                return VCenterChange(changed=False, action="move_vm_nic", object=ref, dry_run=dry_run)
            label = getattr(card.deviceInfo, "label", None) or card.key
            changes = [f"~ {name} NIC {nic} ({label}): {current} -> {network}"]
            if not dry_run:
                card.backing = self._nic_backing(network, target)
                spec = vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="edit", device=card)])
                self._wait(vm.ReconfigVM_Task(spec), f"move NIC of {name!r} to {network!r}")
        return VCenterChange(changed=True, action="move_vm_nic", object=ref, changes=changes, dry_run=dry_run)

    @_dry_run_tolerant
    def customize_vm_ip(self, name: str, customization: GuestCustomization,
                        dry_run: bool = False) -> VCenterChange:
        """Re-IP a powered-off VM by guest customization; applied at its next power-on.

        ``changed=False`` when the guest already reports these IPs (and host name), or when a
        customization is already pending (a retry after the call went through).
        """
        with self._calling(f"customize VM {name!r}"):
            vm = self._vm(name)
            info = self._vm_info(vm)
            ref = self._ref("vm", name, vm)
            wanted = [str(n.ip) for n in customization.nics]
            host_ok = customization.hostname is None or info.hostname == customization.hostname
            if info.guest_ips[:len(wanted)] == wanted and host_ok:
                return VCenterChange(changed=False, action="customize_vm_ip", object=ref, dry_run=dry_run)
            if info.pending_customization:
                return VCenterChange(changed=False, action="customize_vm_ip", object=ref, dry_run=dry_run,
                                     detail={"pending": True})
            if len(info.nics) != len(customization.nics):
                raise VCenterOperationFailed(
                    f"customize {name!r}: VM has {len(info.nics)} NICs, customization gives {len(customization.nics)}")
            changes = [f"~ {name}: IPs {info.guest_ips} -> {wanted}"]
            if customization.hostname and not host_ok:
                changes.append(f"~ {name}: host name {info.hostname!r} -> {customization.hostname!r}")
            if dry_run:
                return VCenterChange(changed=True, action="customize_vm_ip", object=ref, changes=changes,
                                     dry_run=True)
            if info.power_state != "poweredOff":
                raise VCenterOperationFailed(f"customize {name!r}: the VM must be powered off (it is {info.power_state})")
            spec = customization_spec(customization, windows=info.is_windows)
            self._wait(vm.CustomizeVM_Task(spec), f"customize {name!r}")
        return VCenterChange(changed=True, action="customize_vm_ip", object=ref, changes=changes)

    def _poll(self, vm: Any, name: str, ready: Callable[[dict[str, Any]], bool], paths: list[str],
              timeout: float | None, what: str, deadline: Deadline | None = None) -> dict[str, Any]:
        until = Deadline.of(deadline, timeout, f"{what} of VM {name}")
        pause = 0.05
        while True:
            state = self._props([vm], vim.VirtualMachine, paths)[0][1]
            if ready(state):
                return state
            remaining = until.remaining()
            if remaining <= 0:
                seen = ", ".join(f"{k}={state.get(k)}" for k in paths)
                raise VCenterDeadlineExceeded(f"VM {name!r}: {what} not reached by {until.describe()} ({seen})")
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, self.poll_interval)

    def wait_for_vm_ready(self, name: str, *, tools: bool = True, heartbeat: bool = True,
                          ip: bool | str = False, timeout: float | None = None,
                          deadline: Deadline | None = None) -> VmInfo:
        """Poll until the powered-on VM has Tools running, a green heartbeat and (optionally) an IP.

        ``ip=True`` waits for any IP, ``ip="10.0.0.5"`` for that one. The wait ends at ``deadline``
        or after ``timeout`` seconds, whichever comes first (300 s when neither is given).

        Raises:
            VCenterOperationFailed: the VM is powered off (it would never become ready).
            VCenterDeadlineExceeded: not ready by the deadline (permanent: never retried).
        """
        if timeout is None and deadline is None:
            timeout = 300.0
        paths = ["runtime.powerState", "guest.toolsRunningStatus", "summary.quickStats.guestHeartbeatStatus",
                 "guest.ipAddress", "guest.net"]

        def ready(s: dict[str, Any]) -> bool:
            if s.get("runtime.powerState") != "poweredOn":
                raise VCenterOperationFailed(f"VM {name!r} is {s.get('runtime.powerState')}; power it on first")
            if tools and s.get("guest.toolsRunningStatus") != "guestToolsRunning":
                return False
            if heartbeat and s.get("summary.quickStats.guestHeartbeatStatus") != "green":
                return False
            if ip is True and not s.get("guest.ipAddress"):
                return False
            if isinstance(ip, str) and ip:
                seen = {s.get("guest.ipAddress")} | {
                    a for n in s.get("guest.net") or [] for a in (n.ipAddress or [])}
                return ip in seen
            return True

        with self._calling(f"wait for VM {name!r}"):
            vm = self._vm(name)
            self._poll(vm, name, ready, paths, timeout, "tools/heartbeat/IP", deadline)
            return self._vm_info(vm)

    def destroy_vm(self, name: str, dry_run: bool = False) -> VCenterChange:
        """Power off (if needed) and delete the VM; ``changed=False`` if it does not exist."""
        with self._calling(f"destroy VM {name!r}"):
            vm = self._vm_or_none(name)
            if vm is None:
                return VCenterChange(changed=False, action="destroy_vm", dry_run=dry_run)
            ref = self._ref("vm", name, vm)
            if not dry_run:
                self._power(vm, name, "poweredOff", False)
                self._wait(vm.Destroy_Task(), f"destroy {name!r}")
        return VCenterChange(changed=True, action="destroy_vm", object=ref, changes=[f"- VM {name}"],
                             dry_run=dry_run)

    # -- snapshots -----------------------------------------------------------------------------

    def _snapshots(self, vm: Any) -> tuple[list[SnapshotInfo], dict[str, Any]]:
        tree = self._prop(vm, vim.VirtualMachine, "snapshot")
        objs: dict[str, Any] = {}

        def walk(nodes: Any) -> None:
            for node in nodes or []:
                objs[node.snapshot._moId] = node.snapshot
                walk(node.childSnapshotList)

        if tree is not None:
            walk(tree.rootSnapshotList)
        return flatten_snapshots(tree), objs

    def list_snapshots(self, vm: str) -> list[SnapshotInfo]:
        """Snapshots of the VM, depth first."""
        with self._calling(f"list snapshots of {vm!r}"):
            return self._snapshots(self._vm(vm))[0]

    def _one_snapshot(self, snaps: list[SnapshotInfo], vm: str, name: str) -> SnapshotInfo | None:
        found = [s for s in snaps if s.name == name]
        if len(found) > 1:
            raise VCenterObjectConflict(f"VM {vm!r} has {len(found)} snapshots named {name!r}")
        return found[0] if found else None

    @_dry_run_tolerant
    def create_snapshot(self, vm: str, name: str, *, description: str = "", memory: bool = False,
                        quiesce: bool = False, dry_run: bool = False) -> VCenterChange:
        """Take snapshot ``name``; ``changed=False`` if the VM already has one by that name."""
        with self._calling(f"snapshot {vm!r} as {name!r}"):
            obj = self._vm(vm)
            snaps, _ = self._snapshots(obj)
            ref = self._ref("vm", vm, obj)
            if self._one_snapshot(snaps, vm, name) is not None:
                return VCenterChange(changed=False, action="create_snapshot", object=ref, dry_run=dry_run)
            if not dry_run:
                self._wait(obj.CreateSnapshot_Task(name=name, description=description, memory=memory,
                                                   quiesce=quiesce), f"snapshot {vm!r}")
        return VCenterChange(changed=True, action="create_snapshot", object=ref, dry_run=dry_run,
                             changes=[f"+ snapshot {name} of {vm}"])

    @_dry_run_tolerant
    def revert_to_snapshot(self, vm: str, name: str | None = None, dry_run: bool = False) -> VCenterChange:
        """Revert the VM to snapshot ``name`` (None: the current snapshot). Always a change."""
        with self._calling(f"revert {vm!r} to snapshot {name!r}"):
            obj = self._vm(vm)
            snaps, objs = self._snapshots(obj)
            ref = self._ref("vm", vm, obj)
            target = self._one_snapshot(snaps, vm, name) if name else next((s for s in snaps if s.current), None)
            if target is None:
                raise VCenterObjectNotFound(f"VM {vm!r} has no snapshot {name or '(current)'!r}")
            if not dry_run:
                task = (obj.RevertToCurrentSnapshot_Task() if target.current
                        else objs[target.moid].RevertToSnapshot_Task())
                self._wait(task, f"revert {vm!r} to {target.name!r}")
        return VCenterChange(changed=True, action="revert_to_snapshot", object=ref, dry_run=dry_run,
                             changes=[f"~ {vm}: reverted to snapshot {target.name}"])

    @_dry_run_tolerant
    def remove_snapshot(self, vm: str, name: str, dry_run: bool = False) -> VCenterChange:
        """Delete snapshot ``name`` (children are kept); ``changed=False`` if there is none."""
        with self._calling(f"remove snapshot {name!r} of {vm!r}"):
            obj = self._vm(vm)
            snaps, objs = self._snapshots(obj)
            ref = self._ref("vm", vm, obj)
            target = self._one_snapshot(snaps, vm, name)
            if target is None:
                return VCenterChange(changed=False, action="remove_snapshot", object=ref, dry_run=dry_run)
            if not dry_run:
                self._wait(objs[target.moid].RemoveSnapshot_Task(removeChildren=False), f"remove snapshot {name!r}")
        return VCenterChange(changed=True, action="remove_snapshot", object=ref, dry_run=dry_run,
                             changes=[f"- snapshot {name} of {vm}"])

    # -- removal of other objects --------------------------------------------------------------

    def destroy(self, kind: Literal["folder", "resource_pool", "dvportgroup", "dvswitch", "portgroup"], name: str,
                *, cluster: str | None = None, dry_run: bool = False) -> VCenterChange:
        """Remove a folder (must hold no VM), pool, port group or switch; ``changed=False`` if absent."""
        action = f"destroy_{kind}"
        with self._calling(f"destroy {kind} {name!r}"):
            try:
                obj = self._resolve(kind, name)
            except VCenterObjectNotFound:
                return VCenterChange(changed=False, action=action, dry_run=dry_run)
            ref = self._ref(kind, name, obj)
            if kind == "folder":
                vms = self._all(vim.VirtualMachine, ["name"], root=obj)
                if vms:
                    raise VCenterObjectConflict(
                        f"folder {name!r} still holds {len(vms)} VMs; destroy them first")
            if not dry_run:
                if kind == "portgroup":
                    for _host, hp in self._hosts(cluster):
                        try:
                            hp["configManager.networkSystem"].RemovePortGroup(pgName=name)
                        except vim.fault.NotFound:
                            continue
                else:
                    self._wait(obj.Destroy_Task(), f"destroy {kind} {name!r}")
        return VCenterChange(changed=True, action=action, object=ref, dry_run=dry_run,
                             changes=[f"- {kind} {name}"])

    # -- events --------------------------------------------------------------------------------

    def query_events(self, *, vm: str | None = None, event_types: list[str] | None = None,
                     since: datetime | None = None, max_count: int = 1000) -> list[VCenterEvent]:
        """Events (newest first), optionally of one VM, of some types (e.g. ``VmPoweredOnEvent``), since a time."""
        with self._calling("query events"):
            spec = vim.event.EventFilterSpec(maxCount=max_count)
            if vm is not None:
                spec.entity = vim.event.EventFilterSpec.ByEntity(entity=self._vm(vm), recursion="self")
            if event_types:
                unknown = [t for t in event_types if not hasattr(vim.event, t)]
                if unknown:
                    raise VCenterOperationFailed(f"unknown event types {unknown}")
                spec.eventTypeId = list(event_types)
            if since is not None:
                spec.time = vim.event.EventFilterSpec.ByTime(beginTime=since)
            events = self.content.eventManager.QueryEvents(spec) or []
        out = []
        for e in events:
            # Filter here too: vcsim ignores the time filter.
            if event_types and fault_name(e) not in event_types:
                continue
            if since is not None and e.createdTime < since:
                continue
            out.append(VCenterEvent(
                key=int(e.key), type=fault_name(e), created=e.createdTime,
                message=str(getattr(e, "fullFormattedMessage", "") or ""),
                vm=getattr(getattr(e, "vm", None), "name", None), host=getattr(getattr(e, "host", None), "name", None),
                user=getattr(e, "userName", None) or None))
        return out


__all__ = [
    "ConnectFactory", "ConnectParams", "IpSettings", "VCenterAuthFailed", "VCenterClient", "VCenterConnectionFailed",
    "VCenterError", "VCenterObjectConflict", "VCenterObjectNotFound", "VCenterOperationFailed",
    "VCenterPermanentError", "VCenterSessionExpired", "VCenterTLSError", "VCenterTaskFailed", "VCenterTimeout", "VCenterDeadlineExceeded",
    "VCenterTransientError",
    "customization_spec", "flatten_snapshots", "pyvmomi_connect",
]

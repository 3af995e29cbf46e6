"""One property collector that watches every VM of a folder: power, guest Tools, heartbeat, IPs, host.

The recovery engine waits on hundreds of VMs at once. Polling each VM costs one round trip per
VM per poll; :class:`VmWatch` instead keeps a dedicated property collector and blocks in
``WaitForUpdatesEx``: vCenter answers only when something watched changed, with just the
changes. A background thread applies them to a snapshot and calls the listener with the VMs
that changed.

Two ways to use it:

- ``whole_folder=True`` (the default): one filter on a container view of the folder; every VM
  of the folder is followed for the watch's life.
- ``whole_folder=False``: one read of the folder at start (one ``RetrievePropertiesEx``), then
  only the VMs given to :meth:`VmWatch.follow` are followed, until :meth:`VmWatch.unfollow`.
  The recovery engine follows the VMs it has in flight (powering on, booting, being checked):
  what a collector has to evaluate at each change stays the size of the work in flight, not
  of the tenant (docs/recovery-engine.md: vcsim re-evaluates every filter at every change in
  the inventory, which stalls a 1,000-VM container-view filter for minutes).

All calls on the collector (creating and destroying the per-VM filters included) are made by
the watch thread between two ``WaitForUpdatesEx`` calls, never concurrently with one.

    with VmWatch(client, "acme", on_change=seen) as watch:
        watch.get("acme-dc01").heartbeat
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim, vmodl

from draas.clients.vcenter import VCenterClient

_log = logging.getLogger(__name__)

PATHS = ["name", "runtime.powerState", "runtime.host", "guest.toolsRunningStatus",
         "summary.quickStats.guestHeartbeatStatus", "guest.ipAddress", "guest.net",
         "config.tools.pendingCustomization"]


@dataclass
class VmState:
    """What the watch last saw of one VM."""

    moid: str
    name: str = ""
    power_state: str = "poweredOff"
    host: str | None = None
    tools: str | None = None
    heartbeat: str | None = None
    ip_address: str | None = None
    ips: list[str] = field(default_factory=list)
    pending_customization: bool = False

    @property
    def powered_on(self) -> bool:
        return self.power_state == "poweredOn"

    def guest_ready(self, ip: str | None = None) -> bool:
        """Powered on, Tools running, heartbeat green, and (when given) ``ip`` reported by the guest."""
        if not (self.powered_on and self.tools == "guestToolsRunning" and self.heartbeat == "green"):
            return False
        if ip is None:
            return bool(self.ip_address)
        return ip == self.ip_address or ip in self.ips

    def apply(self, name: str, value: Any) -> None:
        if name == "name":
            self.name = str(value)
        elif name == "runtime.powerState":
            self.power_state = str(value)
        elif name == "runtime.host":
            self.host = getattr(value, "_moId", None)
        elif name == "guest.toolsRunningStatus":
            self.tools = value
        elif name == "summary.quickStats.guestHeartbeatStatus":
            self.heartbeat = str(value) if value is not None else None
        elif name == "guest.ipAddress":
            self.ip_address = value or None
        elif name == "guest.net":
            self.ips = [ip for nic in value or [] for ip in (nic.ipAddress or [])]
        elif name == "config.tools.pendingCustomization":
            self.pending_customization = bool(value)


class VmWatch:
    """A live snapshot of the VMs below a folder, kept current by ``WaitForUpdatesEx``.

    Args:
        client: an open :class:`VCenterClient` (its session is shared; the watch has its own collector).
        folder: the VM folder path (below the datacenter's VM folder) to watch, recursively.
        on_change: called from the watch thread with the states of the VMs that changed.
        max_wait_s: how long one ``WaitForUpdatesEx`` may block (bounds how fast ``close`` returns,
            and how late a VM given to ``follow`` starts being followed).
        whole_folder: follow every VM of the folder (else only those given to ``follow``).
    """

    def __init__(self, client: VCenterClient, folder: str, *,
                 on_change: Callable[[list[VmState]], None] | None = None, max_wait_s: int = 1,
                 whole_folder: bool = True) -> None:
        self.client, self.folder = client, folder
        self.on_change = on_change
        self.max_wait_s = max_wait_s
        self.whole_folder = whole_folder
        self._follow: list[str] = []  # moids to start following (the watch thread creates their filter)
        self._unfollow: set[str] = set()  # moids to stop following
        self._filters: dict[str, Any] = {}  # moid -> its filter (watch thread only)
        self._states: dict[str, VmState] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._collector: Any = None
        self._view: Any = None
        self.error: BaseException | None = None
        self.updates = 0  # WaitForUpdatesEx answers applied (for the benchmark)

    def __enter__(self) -> VmWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Create the collector and filter, read the first full snapshot, start the thread."""
        content = self.client.content
        folder, _ = self.client._folder(self.folder)
        with self.client._calling(f"watch VMs of folder {self.folder!r}"):
            self._view = content.viewManager.CreateContainerView(folder, [vim.VirtualMachine], True)
            self._collector = content.propertyCollector.CreatePropertyCollector()
            pc = vmodl.query.PropertyCollector
            spec = pc.FilterSpec(
                objectSet=[pc.ObjectSpec(obj=self._view, skip=True, selectSet=[
                    pc.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)])],
                propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=PATHS)])
            if self.whole_folder:
                self._collector.CreateFilter(spec, partialUpdates=False)
            else:
                self._read_all(content.propertyCollector, spec)
            version = self._poll("")  # the initial update set: every VM and property (whole folder)
        self._thread = threading.Thread(target=self._run, args=(version,), name=f"vmwatch-{self.folder}",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and destroy the collector and view."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.max_wait_s + 30)
            self._thread = None
        for obj, method in ((self._collector, "DestroyPropertyCollector"), (self._view, "Destroy")):
            if obj is not None:
                try:
                    getattr(obj, method)()
                except Exception as exc:  # noqa: BLE001 - the session may be gone; nothing to keep
                    _log.debug("watch clean-up: %s", type(exc).__name__)
        self._collector = self._view = None

    def follow(self, moids: Iterable[str]) -> None:
        """Follow these VMs (``whole_folder=False``) from the watch thread's next turn, at most ``max_wait_s`` away.

        Their first update carries their whole state, so nothing that happened before is missed.
        """
        adding = list(moids)
        with self._lock:
            self._follow.extend(adding)

    def unfollow(self, moid: str) -> None:
        """Stop following this VM (its last state stays readable)."""
        with self._lock:
            self._unfollow.add(moid)

    # -- reading -------------------------------------------------------------------------------
    def get(self, name: str) -> VmState | None:
        """The state of the VM called ``name`` (None when the folder has no such VM)."""
        with self._lock:
            return next((_copy(s) for s in self._states.values() if s.name == name), None)

    def by_moid(self, moid: str) -> VmState | None:
        with self._lock:
            state = self._states.get(moid)
            return _copy(state) if state else None

    def all(self) -> list[VmState]:
        with self._lock:
            return [_copy(s) for s in self._states.values()]

    def names(self) -> dict[str, str]:
        """VM name -> moid of every VM watched."""
        with self._lock:
            return {s.name: s.moid for s in self._states.values()}

    # -- the thread ----------------------------------------------------------------------------
    def _read_all(self, collector: Any, spec: Any) -> list[VmState]:
        """The VMs ``spec`` selects, read once (``RetrievePropertiesEx``), into the snapshot; returns them."""
        out: list[VmState] = []
        result = collector.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
        with self._lock:
            while result is not None:
                for obj in result.objects or []:
                    state = self._states.setdefault(obj.obj._moId, VmState(moid=obj.obj._moId))
                    for prop in obj.propSet or []:
                        state.apply(prop.name, prop.val)
                    out.append(_copy(state))
                token = getattr(result, "token", None)
                result = collector.ContinueRetrievePropertiesEx(token) if token else None
        return out

    def _refilter(self) -> None:
        """Create the filters of newly followed VMs (one for the batch), destroy those no longer followed."""
        with self._lock:
            adding = [m for m in dict.fromkeys(self._follow) if m not in self._filters]
            dropping = [m for m in self._unfollow if m in self._filters]
            self._follow, self._unfollow = [], set()
        for moid in dropping:
            flt = self._filters.pop(moid)
            if not any(f is flt for f in self._filters.values()):
                try:
                    flt.DestroyPropertyFilter()
                except Exception as exc:  # noqa: BLE001 - a filter already gone costs nothing
                    _log.debug("destroying a VM filter: %s", type(exc).__name__)
        if adding:
            pc = vmodl.query.PropertyCollector
            stub = self._collector._stub
            spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=vim.VirtualMachine(m, stub)) for m in adding],
                                 propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=PATHS)])
            try:
                flt = self._collector.CreateFilter(spec, partialUpdates=False)
            except Exception:
                with self._lock:
                    self._follow[:0] = adding  # tried again at the next turn (three failures end the watch)
                raise
            for m in adding:
                self._filters[m] = flt
            # Their state now, read once: a collector that reports a new filter's objects only at
            # the next change anywhere (vcsim) must not leave a VM that has already booted unseen.
            changed = self._read_all(self.client.content.propertyCollector, spec)
            if changed and self.on_change is not None:
                self.on_change(changed)

    def _poll(self, version: str) -> str:
        options = vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=self.max_wait_s)
        update = self._collector.WaitForUpdatesEx(version, options)
        if update is None:
            return version
        changed: list[VmState] = []
        with self._lock:
            for fs in update.filterSet or []:
                for obj in fs.objectSet or []:
                    moid = obj.obj._moId
                    if obj.kind == "leave":
                        self._states.pop(moid, None)
                        continue
                    state = self._states.setdefault(moid, VmState(moid=moid))
                    for change in obj.changeSet or []:
                        state.apply(change.name, None if change.op == "remove" else change.val)
                    changed.append(_copy(state))
            self.updates += 1
        if changed and self.on_change is not None:
            self.on_change(changed)
        return str(update.version)

    def _run(self, version: str) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if not self.whole_folder:
                    self._refilter()
                version = self._poll(version)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - a dropped call is retried; three in a row end the watch
                failures += 1
                if failures >= 3:
                    self.error = exc
                    _log.warning("VM watch of %s stopped: %s", self.folder, type(exc).__name__)
                    if self.on_change is not None:
                        self.on_change([])
                    return
                self._stop.wait(0.5)


def _copy(state: VmState) -> VmState:
    return VmState(moid=state.moid, name=state.name, power_state=state.power_state, host=state.host,
                   tools=state.tools, heartbeat=state.heartbeat, ip_address=state.ip_address, ips=list(state.ips),
                   pending_customization=state.pending_customization)


def moref(moid: str) -> str:
    """The VM reference :class:`VCenterClient` methods accept for a managed object id (no name lookup)."""
    return f"moref:{moid}"


def states_by_name(states: Iterable[VmState]) -> dict[str, VmState]:
    return {s.name: s for s in states}

"""The recovery engine: bring presented VMs up in dependency order, as fast as the systems allow.

Used by failover, drill and failback alike; nothing in it knows which. Its input is a list of
:class:`MachineTarget` (the VM in the target vCenter, the networks and re-IP of its NICs, what
it depends on, its checks) built by :func:`draas.recovery.plan.targets` from the tenant's
dependency graph and a network mapping. The replication manager has already presented the VMs
(powered off) when the engine starts.

Per VM, the pipeline is:

1. **prepare** (any time): attach each NIC to its mapped network, apply the re-IP (guest
   customization, applied by vCenter at the next power-on) where the mapping asks for it;
2. **power on** as soon as the VM is prepared and *every VM it depends on is verified*;
3. **guest up**: heartbeat green and the expected IP reported (seen by one
   ``WaitForUpdatesEx`` collector that follows the VMs from power-on to guest up, never a poll
   per VM; docs/recovery-engine.md);
4. **verify**: run its checks (tcp, http, heartbeat) through the site's address resolver;
   failing checks are retried ``check_retries`` times, then the VM fails the run unless it is
   optional.

Nothing waits on a wave: a VM whose dependencies are verified starts even while other VMs of
"its" wave are still booting. Three bounded pools keep what is in flight in check: vCenter
calls (``vcenter_ops``), VMs booting per ESXi host (``boots_per_host``) and checks
(``check_workers``). Every step of every VM is a :class:`StepResult` (start, end, wave,
machine, outcome) handed to ``record`` from the scheduler's own thread, so the caller may
write it to a store that is not thread-safe. Progress is reported at most every
``progress_every_s`` seconds.

A VM that is already powered on (a resumed run) is not prepared or powered on again: the
engine waits for its guest and verifies it.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from draas.checks import AddressResolver, CheckResult, run_checks
from draas.clients.vcenter import VCenterClient
from draas.clients.vcenter_watch import VmState, VmWatch, moref
from draas.deadline import Deadline, DeadlineExceeded
from draas.errors import PermanentError
from draas.models.results import StepResult
from draas.models.tenant import Check, ProtectedMachine
from draas.models.vcenter import GuestCustomization, IpSettings
from draas.recovery.limits import EngineLimits

VmStatus = Literal["verified", "failed", "optional_failed", "not_started"]


class NicTarget(BaseModel):
    """Where one NIC (device order) of a recovered VM goes, and what address its guest must show."""

    network: str = Field(description="the port group to attach the NIC to")
    re_ip: IpSettings | None = Field(default=None, description="guest customization to apply; None keeps the IP")
    address: str | None = Field(default=None, description="the IP the guest must report (and checks probe)")


class MachineTarget(BaseModel):
    """One VM for the engine to bring up."""

    machine: str = Field(description="the tenant's machine name (what dependencies name)")
    vm: str = Field(description="the VM's name in the target vCenter")
    wave: int = Field(ge=1, description="the planner's wave (reporting only: the engine follows depends_on)")
    depends_on: list[str] = Field(default_factory=list)
    nics: list[NicTarget] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)
    optional: bool = False
    hostname: str | None = None


class VmOutcome(BaseModel):
    machine: str
    vm: str
    wave: int
    status: VmStatus
    error: str | None = None
    resumed: bool = False
    powered_on_at: float | None = Field(default=None, description="seconds since the engine started")
    guest_up_at: float | None = None
    verified_at: float | None = None
    checks: list[CheckResult] = Field(default_factory=list)


class EngineResult(BaseModel):
    vms: list[VmOutcome]
    seconds: float
    watch_updates: int = 0

    @property
    def verified(self) -> list[VmOutcome]:
        return [v for v in self.vms if v.status == "verified"]

    @property
    def failed(self) -> list[VmOutcome]:
        return [v for v in self.vms if v.status in ("failed", "not_started")]


class RecoveryFailed(PermanentError):
    """A required VM did not verify: ``failed`` names each VM with its failing step or check."""

    def __init__(self, message: str, result: EngineResult) -> None:
        self.result = result
        super().__init__(message)


class PlanInvalid(PermanentError):
    """The targets name a dependency that is not in the run, or form a cycle."""


@dataclass(order=True)
class _Job:
    priority: tuple[int, int]
    run: Callable[[], Any] = field(compare=False)
    kind: str = field(compare=False)
    machine: str = field(compare=False)


class _PriorityPool:
    """``workers`` threads taking the job with the lowest priority first (power-ons before prepares)."""

    def __init__(self, name: str, workers: int, done: queue.Queue[tuple[str, str, Any, BaseException | None]]):
        self._heap: list[_Job] = []
        self._cv = threading.Condition()
        self._done = done
        self._closed = False
        self._seq = itertools.count()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, kind: str, machine: str, priority: int, fn: Callable[[], Any]) -> None:
        with self._cv:
            heapq.heappush(self._heap, _Job((priority, next(self._seq)), fn, kind, machine))
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._heap.clear()
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout=30)

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._heap and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                job = heapq.heappop(self._heap)
            try:
                self._done.put((job.kind, job.machine, job.run(), None))
            except BaseException as exc:  # noqa: BLE001 - reported to the scheduler, which decides
                self._done.put((job.kind, job.machine, None, exc))


def check_graph(targets: list[MachineTarget]) -> None:
    """Refuse targets whose dependencies are not all in the run or that form a cycle."""
    names = {t.machine for t in targets}
    for t in targets:
        missing = [d for d in t.depends_on if d not in names]
        if missing:
            raise PlanInvalid(f"{t.machine} depends on {', '.join(missing)}, which this recovery does not include")
    indegree = {t.machine: len(t.depends_on) for t in targets}
    dependents: dict[str, list[str]] = defaultdict(list)
    for t in targets:
        for d in t.depends_on:
            dependents[d].append(t.machine)
    ready = [m for m, n in indegree.items() if n == 0]
    seen = 0
    while ready:
        m = ready.pop()
        seen += 1
        for d in dependents[m]:
            indegree[d] -= 1
            if indegree[d] == 0:
                ready.append(d)
    if seen != len(targets):
        raise PlanInvalid("the dependencies form a cycle: " + ", ".join(sorted(m for m, n in indegree.items() if n)))


class RecoveryEngine:
    """Bring ``targets`` up in ``folder`` of the vCenter ``client`` talks to.

    Args:
        client: an open client of the target vCenter (shared by the engine's threads).
        folder: the VM folder the presented VMs are in (watched recursively).
        resolver: how checks reach a guest's address (the lab's map, or the address itself).
        record: called with every finished step, from the scheduler's thread.
        progress: called with (verified, total, what) at most every ``limits.progress_every_s``.
        deadline: the whole recovery's deadline (the run's budget).
        machines: the tenant's machine definitions by name, for their checks' NIC addresses.
    """

    def __init__(self, client: VCenterClient, folder: str, *, resolver: AddressResolver,
                 limits: EngineLimits | None = None, record: Callable[[StepResult], None] | None = None,
                 progress: Callable[[int, int, str], None] | None = None, deadline: Deadline | None = None,
                 machines: dict[str, ProtectedMachine] | None = None) -> None:
        self.client, self.folder, self.resolver = client, folder, resolver
        self.limits = limits or EngineLimits()
        self.record = record or (lambda _s: None)
        self.progress = progress or (lambda _v, _t, _w: None)
        self.deadline = deadline or Deadline.within(24 * 3600, "recovery")
        self.machines = machines or {}

    # -- the run -------------------------------------------------------------------------------
    def run(self, targets: list[MachineTarget]) -> EngineResult:
        """Recover every target; raises RecoveryFailed when a required VM does not verify."""
        check_graph(targets)
        self._t0 = time.monotonic()
        self._by = {t.machine: t for t in targets}
        self._out = {t.machine: VmOutcome(machine=t.machine, vm=t.vm, wave=t.wave, status="not_started")
                     for t in targets}
        self._dependents: dict[str, list[str]] = defaultdict(list)
        for t in targets:
            for d in t.depends_on:
                self._dependents[d].append(t.machine)
        self._events: queue.Queue[tuple[str, str, Any, BaseException | None]] = queue.Queue()
        self._prepared: set[str] = set()
        self._done: set[str] = set()  # verified, or failed but optional: dependents may go on
        self._booting: dict[str, tuple[str | None, float]] = {}  # machine -> (host, power-on time)
        self._waiting_boot: list[str] = []  # ready to power on, held back by a host's boot cap
        self._boots: dict[str | None, int] = defaultdict(int)
        self._checking: set[str] = set()
        self._failures: list[str] = []
        self._last_progress = 0.0
        vc_pool = _PriorityPool("engine-vc", self.limits.vcenter_ops, self._events)
        check_pool = _PriorityPool("engine-check", self.limits.check_workers, self._events)
        self._vc, self._checks = vc_pool, check_pool
        # The watch follows only the VMs in flight (power-on to verified): see VmWatch(whole_folder=False).
        watch = VmWatch(self.client, self.folder, whole_folder=False,
                        on_change=lambda states: self._events.put(("watch", "", states, None)))
        try:
            watch.start()
            self._watch = watch
            self._start(targets)
            self._loop(len(targets))
        finally:
            watch.close()
            vc_pool.close()
            check_pool.close()
        result = EngineResult(vms=[self._out[t.machine] for t in targets], seconds=time.monotonic() - self._t0,
                              watch_updates=watch.updates)
        self.progress(len(result.verified), len(targets), "done")
        if self._failures:
            raise RecoveryFailed("; ".join(self._failures), result)
        return result

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _start(self, targets: list[MachineTarget]) -> None:
        names = self._watch.names()
        missing = [t.vm for t in targets if t.vm not in names]
        if missing:
            raise PlanInvalid(f"not presented in folder {self.folder}: {', '.join(missing[:10])}"
                              + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
        self._moid = {t.machine: names[t.vm] for t in targets}
        self._watch.follow(self._moid[t.machine] for t in targets
                           if (s := self._watch.by_moid(self._moid[t.machine])) is not None and s.powered_on)
        for t in sorted(targets, key=lambda t: t.wave):
            state = self._watch.by_moid(self._moid[t.machine])
            if state is not None and state.powered_on:  # a resumed run: this VM is up already
                self._out[t.machine].resumed = True
                self._prepared.add(t.machine)
                self._booting[t.machine] = (state.host, self._now())
                self._boots[state.host] += 1
                self._step(StepResult(step="power_on_vm", target=t.vm, wave=t.wave, machine=t.machine).done(
                    changed=False, detail={"already": "poweredOn"}))
                continue
            self._submit(self._vc, "prepare", t.machine, t.wave, lambda t=t: self._prepare(t))
        for t in targets:  # resumed VMs may be up already
            if t.machine in self._booting:
                self._maybe_up(t.machine, self._watch.by_moid(self._moid[t.machine]))

    def _loop(self, total: int) -> None:
        while len(self._done) + len(self._failed_names()) < total:
            if self._failures and not self._booting and not self._checking and not self._in_flight():
                break  # a required VM failed: nothing more will start; stop once in-flight work is done
            remaining = self.deadline.remaining()
            if remaining <= 0:
                pending = [m for m in self._by if m not in self._done and m not in self._failed_names()]
                for m in pending:
                    self._fail(m, f"not verified by {self.deadline.describe()}")
                break
            if self._watch.error is not None:
                raise self._watch.error
            try:
                kind, machine, value, error = self._events.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                self._check_boot_timeouts()
                continue
            self._handle(kind, machine, value, error)
            self._check_boot_timeouts()
            self._report()

    def _in_flight(self) -> bool:
        return bool(self._pending_jobs)

    @property
    def _pending_jobs(self) -> int:
        return getattr(self, "_jobs", 0)

    def _failed_names(self) -> set[str]:
        return {m for m, o in self._out.items() if o.status == "failed"}

    # -- events --------------------------------------------------------------------------------
    def _handle(self, kind: str, machine: str, value: Any, error: BaseException | None) -> None:
        if kind == "watch":
            for state in value:
                m = self._machine_of(state.moid)
                if m is not None and m in self._booting:
                    self._maybe_up(m, state)
            return
        self._jobs = self._pending_jobs - 1
        t = self._by[machine]
        if kind == "prepare":
            steps = value or []
            for s in steps:
                self._step(s)
            if error is not None:
                self._fail(machine, f"preparing {t.vm}: {error}", step="prepare", exc=error)
                return
            self._prepared.add(machine)
            self._maybe_power_on(machine)
        elif kind == "power_on":
            if error is not None:
                self._release_boot(machine)
                self._fail(machine, f"powering on {t.vm}: {error}", step="power_on_vm", exc=error)
                return
            self._step(value)
            self._out[machine].powered_on_at = self._now()
            state = self._watch.by_moid(self._moid[machine])
            if state is not None:
                self._maybe_up(machine, state)
        elif kind == "checks":
            self._checking.discard(machine)
            if error is not None:
                self._fail(machine, f"checking {t.vm}: {error}", step="verify", exc=error)
                return
            results, attempt = value
            self._out[machine].checks = results
            failing = [r for r in results if r.status == "failed"]
            for r in results:
                self._step(StepResult(step="check", target=f"{t.vm} {r.check}", wave=t.wave, machine=machine,
                                      started=r.started).done(
                    status="ok" if r.status != "failed" else "failed", error=None if r.status != "failed" else
                    r.detail, detail={"status": r.status, "detail": r.detail, "attempt": attempt,
                                      **({"target": r.target} if r.target else {})}))
            if failing and attempt <= self.limits.check_retries:
                self._submit_checks(machine, attempt + 1)
                return
            if failing:
                what = "; ".join(f"{r.check}: {r.detail}" for r in failing)
                self._fail(machine, f"{t.vm} failed its checks: {what}", step=None)
                return
            self._out[machine].status = "verified"
            self._out[machine].verified_at = self._now()
            self._done.add(machine)
            for d in self._dependents[machine]:
                self._maybe_power_on(d)

    def _machine_of(self, moid: str) -> str | None:
        if not hasattr(self, "_by_moid"):
            self._by_moid = {v: k for k, v in self._moid.items()}
        return self._by_moid.get(moid)

    def _submit(self, pool: _PriorityPool, kind: str, machine: str, priority: int, fn: Callable[[], Any]) -> None:
        self._jobs = self._pending_jobs + 1
        pool.submit(kind, machine, priority, fn)

    # -- transitions ---------------------------------------------------------------------------
    def _maybe_power_on(self, machine: str) -> None:
        t = self._by[machine]
        if self._failures or machine not in self._prepared or machine in self._booting:
            return
        if self._out[machine].status != "not_started" or not all(d in self._done for d in t.depends_on):
            return
        self._power_on(machine)

    def _power_on(self, machine: str) -> None:
        t = self._by[machine]
        state = self._watch.by_moid(self._moid[machine])
        host = state.host if state else None
        if self._boots[host] >= self.limits.boots_per_host:
            if machine not in self._waiting_boot:
                self._waiting_boot.append(machine)
            return
        self._boots[host] += 1
        self._booting[machine] = (host, self._now())

        def power_on() -> StepResult:
            step = StepResult(step="power_on_vm", target=t.vm, wave=t.wave, machine=machine)
            self._watch.follow([self._moid[machine]])
            change = self.client.power_on_vm(moref(self._moid[machine]))
            return step.done(changed=change.changed, diff=change.changes)

        self._submit(self._vc, "power_on", machine, 0, power_on)

    def _maybe_up(self, machine: str, state: VmState | None) -> None:
        if state is None or machine in self._checking or self._out[machine].guest_up_at is not None:
            return
        t = self._by[machine]
        expected = t.nics[0].address if t.nics else None
        if not state.guest_ready(expected):
            return
        self._out[machine].guest_up_at = self._now()
        _, since = self._booting.get(machine, (None, self._now()))
        self._step(StepResult(step="wait_guest", target=t.vm, wave=t.wave, machine=machine).done(
            changed=False, detail={"ip": state.ip_address, "seconds": round(self._now() - since, 3)}))
        self._release_boot(machine)
        self._watch.unfollow(self._moid[machine])  # booted: what the checks need of vCenter is known now
        self._submit_checks(machine, 1)

    def _release_boot(self, machine: str) -> None:
        host, _ = self._booting.pop(machine, (None, 0.0))
        self._boots[host] = max(self._boots[host] - 1, 0)
        while self._waiting_boot and not self._failures:
            nxt = self._waiting_boot.pop(0)
            self._power_on(nxt)
            if nxt in self._waiting_boot:
                break

    def _submit_checks(self, machine: str, attempt: int) -> None:
        t = self._by[machine]
        self._checking.add(machine)
        spec = self.machines.get(machine)
        ips = [n.address for n in t.nics]

        def verify() -> tuple[list[CheckResult], int]:
            if spec is None:
                defined = ProtectedMachine.model_construct(name=machine, checks=t.checks)
            else:
                defined = spec.model_copy(update={"checks": t.checks})
            state = self._watch.by_moid(self._moid[machine])
            addresses = ips if any(ips) else [state.ip_address if state else None]
            results = run_checks(defined, ips=addresses, vm_name=t.vm, resolver=self.resolver,
                                 heartbeat_ok=lambda: bool((s := self._watch.by_moid(self._moid[machine]))
                                                           and s.heartbeat == "green"),
                                 timeout_s=self.limits.check_timeout_s, deadline=self.deadline,
                                 poll_interval_s=self.limits.check_poll_s)
            return results, attempt

        self._submit(self._checks, "checks", machine, t.wave, verify)

    def _check_boot_timeouts(self) -> None:
        now = self._now()
        for machine, (_, since) in list(self._booting.items()):
            if self._out[machine].powered_on_at is not None and now - since > self.limits.boot_timeout_s:
                t = self._by[machine]
                self._release_boot(machine)
                self._fail(machine, f"{t.vm}: guest not up {self.limits.boot_timeout_s:g} s after power-on "
                                    f"(heartbeat/IP {t.nics[0].address if t.nics else ''})", step="wait_guest")

    def _fail(self, machine: str, message: str, *, step: str | None = "verify",
              exc: BaseException | None = None) -> None:
        t = self._by[machine]
        out = self._out[machine]
        out.error = message
        if machine in getattr(self, "_moid", {}):
            self._watch.unfollow(self._moid[machine])
        if step is not None:
            self._step(StepResult(step=step, target=t.vm, wave=t.wave, machine=machine).failed(exc or message))
        if t.optional:
            out.status = "optional_failed"
            self._done.add(machine)
            for d in self._dependents[machine]:
                self._maybe_power_on(d)
            return
        out.status = "failed"
        self._failures.append(message)
        self._waiting_boot.clear()

    def _step(self, step: StepResult) -> None:
        self.record(step)

    def _report(self) -> None:
        now = time.monotonic()
        if now - self._last_progress >= self.limits.progress_every_s:
            self._last_progress = now
            verified = sum(1 for o in self._out.values() if o.status == "verified")
            self.progress(verified, len(self._out), f"{len(self._booting)} booting, {len(self._checking)} checking")

    # -- prepare (a worker thread) -------------------------------------------------------------
    def _prepare(self, t: MachineTarget) -> list[StepResult]:
        """Attach NICs, apply re-IP; returns the steps (an exception fails the VM)."""
        ref = moref(self._moid[t.machine])
        steps: list[StepResult] = []
        for i, nic in enumerate(t.nics):
            step = StepResult(step="move_vm_nic", target=f"{t.vm} NIC {i + 1}", wave=t.wave, machine=t.machine)
            change = self.client.move_vm_nic(ref, nic.network, nic=i)
            steps.append(step.done(changed=change.changed, diff=change.changes))
        wanted = [n.re_ip for n in t.nics]
        if any(wanted):
            if not all(wanted):
                raise PlanInvalid(f"{t.vm}: re-IP must cover every NIC ({sum(1 for w in wanted if w)} of {len(wanted)})")
            step = StepResult(step="customize_vm_ip", target=t.vm, wave=t.wave, machine=t.machine)
            change = self.client.customize_vm_ip(ref, GuestCustomization(
                hostname=t.hostname, nics=[w for w in wanted if w is not None]))
            steps.append(step.done(changed=change.changed, diff=change.changes))
        if self.deadline.expired:
            raise DeadlineExceeded(f"{t.vm}: {self.deadline.describe()} passed while preparing")
        return steps

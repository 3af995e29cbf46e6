"""Recovery engine figures: a failover of synthetic tenants of 100 and 1,000 VMs, against its lower bound.

Run: ``make bench`` (or ``.venv/bin/python -m benchmarks.recovery_bench [--vms 100 --vms 1000]``).

Starts a lab of its own (the two vCenters and the guests only) whose recovery vCenter answers
with a real vCenter's latencies, scaled down by :data:`SCALE` so that the 1,000-VM run takes
about a minute (the figure that matters, wall / lower bound, does not depend on the scale):

==========================  =============  ===========  =====================================================
what                        real vCenter   here (/10)   why
==========================  =============  ===========  =====================================================
``PowerOnVM_Task``          1.5 s          150 ms       admission control + DRS placement + VMX start
``ReconfigVM_Task``         1 s            100 ms       a NIC backing change (move_vm_nic)
``CustomizeVM_Task``        1 s            100 ms       a customization spec pushed to the VM (re-IP)
``RetrieveProperties(Ex)``  30 ms          3 ms         a property read over the WAN-less management LAN
guest boot                  45 s           4.5 s        power-on to Tools running, heartbeat and IP
==========================  =============  ===========  =====================================================

The recovery cluster has 16 hosts (a cluster that can run 1,000 VMs), and the engine runs with
``vcenter_ops=32``, ``boots_per_host=32``, ``check_workers=64``.

Each tenant is a random DAG (fixed seed) of ``--waves`` dependency waves: every VM of wave *w*
depends on one VM of wave *w-1* and on up to two more of earlier waves; one in five VMs is
re-addressed (guest customization); every VM serves one service (TCP or HTTP) that its check
probes. The VMs are presented powered off in the recovery vCenter in parallel (not timed), as
the replication manager would, with the lab guest content (``guestinfo.lab.*``).

The engine runs as the failover flow runs it: one ``RecoveryEngine.run`` inside one Prefect task
of one flow, against a temporary Prefect server. Figures (printed and written to
bench/results.json): wall time of that flow, the lower bound (the longest dependency chain of
prepare + power-on + boot + check latencies, or the caps' bound where larger: all vCenter
operation latency / ``vcenter_ops``, boots per host / ``boots_per_host``), the ratio wall /
bound, the client's CPU seconds (``resource.getrusage`` of this process, every thread) and peak
memory (``ru_maxrss`` of this process since it started: an upper bound of the engine's own).
Then the alternative the design rejects, measured: the overhead of one Prefect task run per
step (200 trivial task runs in a flow, called in turn and submitted at once).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from benchmarks.results import record

COMMAND = ".venv/bin/python -m benchmarks.recovery_bench"
#: Real vCenter latencies are divided by this (the ratio wall / bound does not depend on it).
SCALE = 10
#: A real vCenter's latency of the methods the engine's steps wait on, ms (before scaling).
REAL_DELAYS_MS = {"PowerOnVM_Task": 1500, "ReconfigVM_Task": 1000, "CustomizeVM_Task": 1000,
                  "RetrievePropertiesEx": 30, "RetrieveProperties": 30}
REAL_GUEST_BOOT_MS = 45_000
HOSTS = 16
NET = "bench-recovery-net"
RE_IP_EVERY = 5
LIMITS = {"vcenter_ops": 32, "boots_per_host": 32, "check_workers": 64, "boot_timeout_s": 900.0,
          "check_timeout_s": 60.0, "check_retries": 1, "check_poll_s": 0.2, "progress_every_s": 5.0}
TARGETS = {"ratio": "<= 1.10 at 1,000 VMs", "memory": "< 1024 MiB"}
PRESENT_WORKERS = 16


def delays() -> dict[str, int]:
    return {m: max(1, round(ms / SCALE)) for m, ms in REAL_DELAYS_MS.items()}


def boot_ms() -> int:
    return round(REAL_GUEST_BOOT_MS / SCALE)


def lab_config(root: Path) -> Path:
    """The lab config: the default one, with the latencies above on the recovery vCenter only."""
    default = Path(__file__).resolve().parent.parent / "configs" / "lab.yaml"
    cfg = yaml.safe_load(default.read_text())
    sites = cfg["vcenter"]["sites"]
    sites["protected"]["vms"] = {}  # the benchmark presents its own VMs at the recovery site
    rec = sites["recovery"]
    rec["hosts"] = HOSTS
    rec["guest_boot_ms"] = boot_ms()
    rec["delay"] = {"all_ms": 0, "jitter": 0.0, "methods": delays()}
    path = root / "lab-bench.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# --- the synthetic tenant ---------------------------------------------------------------------


def tenant_graph(vms: int, waves: int, seed: int = 7) -> list[dict[str, Any]]:
    """``vms`` machines in ``waves`` waves; each of wave w>1 depends on 1-3 machines of earlier waves."""
    rng = random.Random(seed)
    # Wave 1 (directory, databases) is smaller; the rest share the remainder evenly.
    first = max(1, vms // (waves * 2))
    sizes = [first] + [(vms - first) // (waves - 1)] * (waves - 1)
    sizes[-1] += vms - sum(sizes)
    out: list[dict[str, Any]] = []
    by_wave: list[list[str]] = []
    i = 0
    for w, size in enumerate(sizes, start=1):
        names = []
        for _ in range(size):
            name = f"m{i:04d}"
            deps: list[str] = []
            if w > 1:
                deps.append(rng.choice(by_wave[-1]))  # one of the previous wave: the wave is its depth
                earlier = [n for wave in by_wave for n in wave]
                for _ in range(rng.randint(0, 2)):
                    d = rng.choice(earlier)
                    if d not in deps:
                        deps.append(d)
            http = i % 2 == 1
            out.append({"machine": name, "wave": w, "depends_on": deps, "ip": f"10.200.{i // 250}.{i % 250 + 1}",
                        "re_ip": f"10.201.{i // 250}.{i % 250 + 1}" if i % RE_IP_EVERY == 0 else None,
                        "service": {"type": "http", "port": 8080, "path": "/health", "status": 200, "body": "ok"}
                        if http else {"type": "tcp", "port": 5432}})
            names.append(name)
            i += 1
        by_wave.append(names)
    return out


def targets_of(graph: list[dict[str, Any]], folder: str) -> list[Any]:
    from draas.models.tenant import HttpCheck, TcpCheck
    from draas.models.vcenter import IpSettings
    from draas.recovery.engine import MachineTarget, NicTarget

    out = []
    for g in graph:
        svc = g["service"]
        check = (HttpCheck(type="http", port=svc["port"], path=svc["path"], expected_text=svc["body"])
                 if svc["type"] == "http" else TcpCheck(type="tcp", port=svc["port"]))
        re_ip = IpSettings(ip=g["re_ip"], prefix_length=24, gateway=g["re_ip"].rsplit(".", 1)[0] + ".254") \
            if g["re_ip"] else None
        nic = NicTarget(network=NET, re_ip=re_ip, address=g["re_ip"] or g["ip"])
        out.append(MachineTarget(machine=g["machine"], vm=f"{folder}-{g['machine']}", wave=g["wave"],
                                 depends_on=g["depends_on"], nics=[nic], checks=[check]))
    return out


def present(client: Any, lab: Any, folder: str, graph: list[dict[str, Any]]) -> None:
    """Create every VM powered off in ``folder``, one NIC on "VM Network", its guest content in extraConfig."""
    from pyVmomi import vim

    rec = lab.vcenter["recovery"]
    content = client.content
    dc = next(e for e in content.rootFolder.childEntity if e.name == rec.datacenter)
    target = next(f for f in dc.vmFolder.childEntity if f.name == folder)
    cluster = next(e for e in dc.hostFolder.childEntity if e.name == rec.cluster)
    pool = cluster.resourcePool
    dev = vim.vm.device

    def create(g: dict[str, Any]) -> None:
        nic = dev.VirtualDeviceSpec(operation="add", device=dev.VirtualVmxnet3(
            key=-1, addressType="generated",
            backing=dev.VirtualEthernetCard.NetworkBackingInfo(deviceName="VM Network"),
            connectable=dev.VirtualDevice.ConnectInfo(startConnected=True, connected=True)))
        extra = {"guestinfo.lab.ip": g["ip"], "guestinfo.lab.services": json.dumps([g["service"]])}
        spec = vim.vm.ConfigSpec(name=f"{folder}-{g['machine']}", guestId="rhel7_64Guest", numCPUs=1, memoryMB=256,
                                 deviceChange=[nic], files=vim.vm.FileInfo(vmPathName=f"[{rec.datastores[0]}]"),
                                 extraConfig=[vim.option.OptionValue(key=k, value=v) for k, v in extra.items()])
        client._wait(target.CreateVM_Task(config=spec, pool=pool), f"create {g['machine']}")

    with ThreadPoolExecutor(max_workers=PRESENT_WORKERS) as ex:
        list(ex.map(create, graph))


# --- the lower bound --------------------------------------------------------------------------


def lower_bound(graph: list[dict[str, Any]], hosts: dict[str, str | None], limits: Any) -> dict[str, float]:
    """The fastest any scheduler could verify every VM, given the configured latencies and caps (s).

    ``chain``: the longest path through the dependency graph, where a VM is verified at
    max(its own prepare, its dependencies' verification) + power-on + boot + check (a check of
    a loopback service has no configured latency: 0). ``vcenter``: every vCenter operation's
    latency divided by ``vcenter_ops``. ``boots``: on the busiest host, its VMs' boots in batches
    of ``boots_per_host``.
    """
    d = {m: ms / 1000 for m, ms in delays().items()}
    boot, power_on, check = boot_ms() / 1000, d["PowerOnVM_Task"], 0.0
    prep = {g["machine"]: d["ReconfigVM_Task"] + (d["CustomizeVM_Task"] if g["re_ip"] else 0.0) for g in graph}
    verified: dict[str, float] = {}
    for g in sorted(graph, key=lambda g: g["wave"]):  # dependencies are of earlier waves
        start = max([prep[g["machine"]]] + [verified[x] for x in g["depends_on"]])
        verified[g["machine"]] = start + power_on + boot + check
    per_host = Counter(hosts.values())
    return {
        "chain": max(verified.values()),
        "vcenter": (sum(prep.values()) + power_on * len(graph)) / limits.vcenter_ops,
        "boots": max(math.ceil(n / limits.boots_per_host) for n in per_host.values()) * boot,
    }


# --- the runs ---------------------------------------------------------------------------------


def failover(vms: int, waves: int, lab: Any, client: Any) -> None:
    from prefect import flow, task
    from prefect.cache_policies import NONE

    from draas.checks import resolver_for
    from draas.clients.vcenter_watch import VmWatch
    from draas.recovery.engine import EngineLimits, RecoveryEngine
    from draas.site import Site

    folder = f"bench-{vms}-{uuid.uuid4().hex[:4]}"
    client.create_folder(folder)
    graph = tenant_graph(vms, waves)
    started = time.perf_counter()
    present(client, lab, folder, graph)
    print(f"presented {vms} VMs in {time.perf_counter() - started:.1f} s (not timed)")
    with VmWatch(client, folder, whole_folder=False) as watch:  # one read, no filter left behind
        hosts = {s.name: s.host for s in watch.all()}
    limits = EngineLimits(**LIMITS)
    bound = lower_bound(graph, hosts, limits)
    targets = targets_of(graph, folder)
    resolver = resolver_for(Site.for_config_dir(None))

    def progress(verified: int, total: int, what: str) -> None:
        print(f"  {time.perf_counter() - t0:6.1f} s  {verified}/{total} verified  {what}", flush=True)

    @task(name="recover-vms", cache_policy=NONE, persist_result=False)
    def recover() -> Any:
        return RecoveryEngine(client, folder, resolver=resolver, limits=limits, progress=progress).run(targets)

    @flow(name=f"bench-failover-{vms}", persist_result=False)
    def failover_flow() -> Any:
        return recover()

    warm_up()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    result = failover_flow()
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    assert len(result.verified) == vms, f"only {len(result.verified)} of {vms} VMs verified"
    lb = max(bound.values())
    label = f"{vms} VMs, {waves} waves"
    record(f"recovery wall time, {label} (one engine run in one Prefect task)", round(wall, 3), "s",
           command=f"{COMMAND} --vms {vms}")
    record(f"recovery engine run alone, {label} (EngineResult.seconds)", round(result.seconds, 3), "s",
           command=f"{COMMAND} --vms {vms}")
    record(f"recovery lower bound, {label} (the largest of the three below)", round(lb, 3), "s",
           command=f"{COMMAND} --vms {vms}")
    for key, what in (("chain", "longest dependency chain"), ("vcenter", "vCenter op latency / vcenter_ops"),
                      ("boots", "busiest host's boots / boots_per_host")):
        record(f"recovery bound part, {label}: {what}", round(bound[key], 3), "s", command=f"{COMMAND} --vms {vms}")
    record(f"recovery ratio wall / bound, {label}", round(wall / lb, 3), "ratio",
           target="<= 1.10" if vms >= 1000 else None, command=f"{COMMAND} --vms {vms}")
    record(f"recovery client CPU, {label}", round(cpu, 2), "s", command=f"{COMMAND} --vms {vms}")
    record(f"recovery client peak RSS (ru_maxrss, whole process), {label}",
           round(cpu1.ru_maxrss / 1024, 1), "MiB", target=TARGETS["memory"], command=f"{COMMAND} --vms {vms}")
    gaps = breakdown(result, {g["machine"]: g["depends_on"] for g in graph})
    for what, values in gaps.items():
        if values:
            for stat, value in (("mean", statistics.mean(values)), ("max", max(values))):
                record(f"recovery per VM, {label}: {what}, {stat}", round(value, 3), "s",
                       command=f"{COMMAND} --vms {vms}")
    record(f"recovery vCenter watch updates (WaitForUpdatesEx answers), {label}", result.watch_updates,
           "answers", command=f"{COMMAND} --vms {vms}")


def warm_up() -> None:
    """Start the temporary Prefect server (and register a flow) before anything is timed."""
    from prefect import flow

    @flow(name="bench-warm-up", persist_result=False)
    def nothing() -> None:
        return None

    nothing()


def breakdown(result: Any, deps: dict[str, list[str]]) -> dict[str, list[float]]:
    """Per VM: dependencies verified -> power-on done -> guest up -> verified (the engine's own times)."""
    at = {v.machine: v for v in result.vms}
    out: dict[str, list[float]] = {"deps verified to powered on": [], "powered on to guest up": [],
                                   "guest up to verified": []}
    for v in result.vms:
        if v.powered_on_at is None or v.guest_up_at is None or v.verified_at is None:
            continue
        ready = max([at[d].verified_at or 0.0 for d in deps[v.machine]], default=0.0)
        out["deps verified to powered on"].append(v.powered_on_at - ready)
        out["powered on to guest up"].append(v.guest_up_at - v.powered_on_at)
        out["guest up to verified"].append(v.verified_at - v.guest_up_at)
    return out


def prefect_task_overhead(n: int = 200) -> None:
    """What one Prefect task run per step would cost: ``n`` trivial task runs in a flow."""
    from prefect import flow, task
    from prefect.cache_policies import NONE

    @task(cache_policy=NONE, persist_result=False)
    def step(i: int) -> int:
        return i

    @flow(persist_result=False)
    def empty() -> None:
        return None

    @flow(persist_result=False)
    def in_turn(k: int) -> None:
        for i in range(k):
            step(i)

    @flow(persist_result=False)
    def submitted(k: int) -> None:
        futures = [step.submit(i) for i in range(k)]
        for f in futures:
            f.result()

    empty()  # warm-up: the temporary server, the client, the flow's registration
    t = time.perf_counter()
    empty()
    base = time.perf_counter() - t
    for label, fn in (("called in turn", in_turn), ("submitted at once", submitted)):
        fn(5)  # warm-up
        cpu0 = time.process_time()
        t = time.perf_counter()
        fn(n)
        wall = time.perf_counter() - t - base
        cpu = time.process_time() - cpu0
        record(f"Prefect task run overhead, {n} trivial tasks {label} (wall per task)",
               round(wall / n * 1000, 2), "ms", command=f"{COMMAND} --prefect-only")
        record(f"Prefect task run client CPU, {n} trivial tasks {label} (per task)",
               round(cpu / n * 1000, 2), "ms", command=f"{COMMAND} --prefect-only")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, action="append", help="tenant size (repeatable; default 100 and 1000)")
    parser.add_argument("--waves", type=int, default=None, help="dependency waves (default 6 for <= 100 VMs, else 8)")
    parser.add_argument("--prefect-only", action="store_true", help="only the Prefect task-run overhead")
    args = parser.parse_args()
    sizes = args.vms or [100, 1000]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.update({"DRAAS_LAB_DIR": str(root / "lab"), "PREFECT_HOME": str(root / "prefect"),
                           "DRAAS_DATABASE_URL": f"sqlite:///{root / 'state.db'}",
                           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
                           # the temporary server's services log their cancellation at shutdown: noise
                           "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
                           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"})
        os.environ.pop("DRAAS_SITE_PROFILE", None)
        if args.prefect_only:
            prefect_task_overhead()
            return
        from lab import launcher  # the benchmark starts the lab; the product only reads its site profile
        from lab.state import SITE_PROFILE_FILE

        lab = launcher.up(lab_dir=root / "lab", config_path=lab_config(root), only=["vcenter", "guests"])
        os.environ["DRAAS_SITE_PROFILE"] = str(root / "lab" / SITE_PROFILE_FILE)
        try:
            from draas.site import Site

            with Site.for_config_dir(None).vcenter_block("recovery").get_client() as client:
                client.create_dvportgroup(NET, 3990, dvswitch=lab.vcenter["recovery"].dvswitch)
                for vms in sizes:
                    failover(vms, args.waves or (6 if vms <= 100 else 8), lab, client)
            prefect_task_overhead()
        finally:
            launcher.down(root / "lab")


if __name__ == "__main__":
    main()

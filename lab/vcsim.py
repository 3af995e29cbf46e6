"""The lab's two vCenters: one vcsim per site, seeded with the tenants' production VMs.

Each site is a separate ``build/vcsim`` process (our small Go main around govmomi's
simulator, see ``lab/vcsim/main.go``). The Go side builds the inventory skeleton with the
configured names (datacenter, cluster and hosts, datastores, distributed switch), because
vcsim 0.24.2 cannot rename datastores or switches. This module then seeds, over SOAP with
pyVmomi like any client would, the protected site's tenant folders and VMs: powered on, with
VMware Tools running, a green heartbeat and the configured guest IP. A VM's guest content (its
IP and the ``services`` it declares) is stored in its ``guestinfo.lab.*`` extraConfig keys
(see ``lab.guests.spec``), where the replication simulator finds it to copy to recovered VMs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lab.guests.spec import guest_extra_config, parse_services
from lab.process import LabStartError, spawn, wait_ready_file
from lab.state import VCenterSite

#: vSphere guest ids for the lab config's ``guest`` shorthand (ids vcsim 0.24.2 accepts).
GUEST_IDS: dict[str, str] = {
    "windows": "windows9Server64Guest",
    "linux": "rhel7_64Guest",
}

#: extraConfig keys vcsim turns into guest properties (its tools status is otherwise static).
GUEST_RUNNING: dict[str, str] = {
    "SET.guest.toolsRunningStatus": "guestToolsRunning",
    "SET.guest.toolsStatus": "toolsOk",
    "SET.guest.guestState": "running",
    "SET.summary.quickStats.guestHeartbeatStatus": "green",
}

DEFAULT_DISK_GB = 16
SEED_WORKERS = 8


def vcsim_binary(project_root: Path) -> Path:
    """``build/vcsim``, built from ``lab/vcsim/main.go`` when missing or older than the source."""
    binary = project_root / "build" / "vcsim"
    source = project_root / "lab" / "vcsim" / "main.go"
    if binary.exists() and (not source.exists() or binary.stat().st_mtime >= source.stat().st_mtime):
        return binary
    if shutil.which("go") is None:
        raise LabStartError("build/vcsim is missing and Go is not installed; run scripts/bootstrap.sh")
    binary.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOPATH="/usr/share/gocode", GO111MODULE="off")
    proc = subprocess.run(
        ["go", "build", "-o", str(binary), "./lab/vcsim/main.go"],
        cwd=project_root, env=env, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise LabStartError(f"building vcsim failed:\n{proc.stderr.strip()}")
    return binary


def site_config(vcenter: dict[str, Any], site: str, run_dir: Path) -> dict[str, Any]:
    """The JSON config the Go main reads for one site (credentials, inventory, latency)."""
    sc = vcenter["sites"][site]
    delay = dict(vcenter.get("delay") or {})
    delay.update(sc.get("delay") or {})
    return {
        "listen": "127.0.0.1:0",
        "username": vcenter["username"],
        "password": vcenter["password"],
        "datacenter": sc["datacenter"],
        "cluster": sc["cluster"],
        "clusters": int(sc.get("clusters", 1)),
        "hosts": int(sc.get("hosts", 2)),
        "datastores": list(sc["datastores"]),
        "dvswitch": sc.get("dvswitch", ""),
        "data_dir": str(run_dir / f"vcsim-{site}"),
        # How long a guest takes to "boot" (Tools running, heartbeat green) after power-on.
        "guest_boot_ms": int(sc.get("guest_boot_ms", vcenter.get("guest_boot_ms", 200))),
        "delay": {
            "all_ms": int(delay.get("all_ms", 0)),
            "jitter": float(delay.get("jitter", 0.0)),
            "methods": {str(k): int(v) for k, v in (delay.get("methods") or {}).items()},
        },
    }


def start(ctx: Any) -> None:
    """Start one vcsim per configured site, seed them, and record them in ``ctx.state``."""
    vcenter = ctx.config["vcenter"]
    binary = vcsim_binary(Path(ctx.project_root))
    run_dir = Path(ctx.lab_dir) / "run"
    run_dir.mkdir(parents=True, exist_ok=True)

    started: dict[str, tuple[Any, Path]] = {}
    for site in vcenter["sites"]:
        cfg = site_config(vcenter, site, run_dir)
        cfg_path = run_dir / f"vcsim-{site}.json"
        # The file holds the lab password: create it private, never world-readable.
        fd = os.open(cfg_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(cfg, f)
        ready = run_dir / f"vcsim-{site}.ready.json"
        ready.unlink(missing_ok=True)
        name = f"vcsim-{site}"
        proc = spawn(Path(ctx.lab_dir), name, [str(binary), "-config", str(cfg_path), "-ready", str(ready)])
        started[site] = (proc, ready)

    ports: dict[str, int] = {}
    for site, (proc, ready) in started.items():
        info = wait_ready_file(ready, proc, f"vcsim-{site}", timeout=30)
        ports[site] = int(info["port"])

    # Both sites seed at once; each seeds its VMs in parallel too (latency knobs apply).
    with ThreadPoolExecutor(max_workers=max(len(started), 1)) as pool:
        futures = {
            site: pool.submit(seed_site, ports[site], vcenter["username"], vcenter["password"],
                              vcenter["sites"][site])
            for site in started
        }
        for site, fut in futures.items():
            try:
                fut.result()
            except Exception as exc:
                raise LabStartError(f"seeding vcsim-{site} failed: {exc}") from exc

    for site, (proc, _) in started.items():
        sc = vcenter["sites"][site]
        ctx.state.vcenter[site] = VCenterSite(
            site=site, port=ports[site], username=vcenter["username"], password=vcenter["password"],
            datacenter=sc["datacenter"], cluster=sc["cluster"], datastores=list(sc["datastores"]),
            dvswitch=sc.get("dvswitch", ""), pid=proc.pid,
        )


# --- seeding over SOAP ------------------------------------------------------------------


def _wait(task: Any, timeout: float = 60.0) -> Any:
    """Poll a vSphere task until it ends (vcsim runs tasks synchronously, so this is quick)."""
    deadline = time.monotonic() + timeout
    while True:
        info = task.info
        if info.state == "success":
            return info.result
        if info.state == "error":
            raise RuntimeError(getattr(info.error, "msg", None) or str(info.error))
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {info.key} still {info.state} after {timeout:.0f} s")
        time.sleep(0.02)


def vm_config_spec(vm: dict[str, Any], datastore: str) -> Any:
    """A CreateVM spec: guest OS, CPU, memory, one thin disk, one NIC, tools already running."""
    from pyVmomi import vim

    guest = str(vm.get("guest", "linux"))
    dev = vim.vm.device
    controller = dev.VirtualDeviceSpec(
        operation="add",
        device=dev.ParaVirtualSCSIController(key=-100, busNumber=0, sharedBus="noSharing"),
    )
    disk = dev.VirtualDeviceSpec(
        operation="add", fileOperation="create",
        device=dev.VirtualDisk(
            key=-101, controllerKey=-100, unitNumber=0,
            capacityInKB=int(vm.get("disk_gb", DEFAULT_DISK_GB)) * 1024 * 1024,
            backing=dev.VirtualDisk.FlatVer2BackingInfo(diskMode="persistent", thinProvisioned=True,
                                                        fileName=""),
        ),
    )
    nic = dev.VirtualDeviceSpec(
        operation="add",
        device=dev.VirtualVmxnet3(
            key=-102, addressType="generated",
            backing=dev.VirtualEthernetCard.NetworkBackingInfo(deviceName=vm.get("network", "VM Network")),
            connectable=dev.VirtualDevice.ConnectInfo(startConnected=True, connected=True,
                                                      allowGuestControl=True),
        ),
    )
    extra = dict(GUEST_RUNNING)
    extra["SET.guest.hostName"] = vm["name"]
    if vm.get("ip"):
        extra["SET.guest.ipAddress"] = str(vm["ip"])
    # The guest's content (its OS's address, the services it runs) travels with its replicas.
    extra.update(guest_extra_config(vm.get("ip"), parse_services(vm.get("services"), f"vm {vm['name']}")))
    return vim.vm.ConfigSpec(
        name=vm["name"],
        guestId=vm.get("guest_id") or GUEST_IDS.get(guest, GUEST_IDS["linux"]),
        numCPUs=int(vm.get("cpus", 1)),
        memoryMB=int(vm.get("memory_mb", 1024)),
        files=vim.vm.FileInfo(vmPathName=f"[{datastore}]"),
        deviceChange=[controller, disk, nic],
        extraConfig=[vim.option.OptionValue(key=k, value=v) for k, v in extra.items()],
    )


def seed_site(port: int, username: str, password: str, site: dict[str, Any]) -> int:
    """Create the site's tenant folders and powered-on VMs; returns the number of VMs created."""
    from pyVim.connect import Disconnect, SmartConnect

    tenants: dict[str, list[dict[str, Any]]] = site.get("vms") or {}
    if not tenants:
        return 0
    si = SmartConnect(host="127.0.0.1", port=port, user=username, pwd=password, protocol="http")
    try:
        content = si.RetrieveContent()
        dc = next(e for e in content.rootFolder.childEntity if e.name == site["datacenter"])
        cluster = next(e for e in dc.hostFolder.childEntity if e.name == site["cluster"])
        pool = cluster.resourcePool
        datastore = site["datastores"][0]
        folders = {tenant: dc.vmFolder.CreateFolder(tenant) for tenant in tenants}

        def create(tenant: str, vm: dict[str, Any]) -> None:
            created = _wait(folders[tenant].CreateVM_Task(config=vm_config_spec(vm, datastore), pool=pool))
            _wait(created.PowerOnVM_Task())

        jobs = [(tenant, vm) for tenant, vms in tenants.items() for vm in vms]
        with ThreadPoolExecutor(max_workers=SEED_WORKERS) as pool_exec:
            for fut in [pool_exec.submit(create, t, vm) for t, vm in jobs]:
                fut.result()
        return len(jobs)
    finally:
        Disconnect(si)

"""Readiness between drills: does the protected estate still match what the next drill would recover?

Pure functions, no I/O. :func:`assess` compares four views of one tenant and returns a
:class:`ReadinessReport`:

- the **config** (:class:`~draas.models.tenant.TenantConfig`) and the replication specs it
  yields (:func:`draas.protection.build_specs`);
- the **protected vCenter**: the VMs in the tenant's folder, their disks and NICs
  (:class:`ProtectedInventory`);
- the **replication manager**: every group, its members, and how each of the tenant's groups
  differs from its spec (:class:`ManagerView`);
- the **recovery site**: the tenant's port groups and its resource pool (:class:`RecoveryInventory`);

plus the **state store**: the untested changes since the last successful drill, and the VM
inventory the previous readiness check saw (its *baseline*).

Findings, by category, and whether they block (``ready`` is True only without a blocking one):

========================  ========  =======================================================
category                  blocking  what
========================  ========  =======================================================
``unprotected_vms``       yes       a VM in the tenant's protected folder that no group
                                    protects (in the config or not); a config machine absent
                                    from the folder and from every group
``unknown_protected``     no        a group of the tenant, or a VM in one, that the config
                                    does not know (recovered, but outside the DR plan)
``disk_changes``          no        disk count or size differs from the config (the manager
                                    replicates every disk of a VM; the config's disks drive
                                    journal sizing and master-target limits); a disk added or
                                    resized since the previous check
``nic_changes``           yes/no    NIC count differs from the config, or the address vCenter
                                    reports differs from the config's (blocking: recovery
                                    mappings, re-IP, DNS and firewall paths follow the config);
                                    a NIC moved to another network since the previous check
                                    (not blocking, recorded as an untested change)
``settings_drift``        yes       a config group missing in the manager, or differing from
                                    its spec (members, RPO, journal, priority, networks per
                                    NIC, re-IP, recovery placement), or not replicating
``missing_networks``      yes       a recovery port group of the tenant's VLANs absent from
                                    the recovery vCenter
``capacity``              yes/no    see :func:`capacity_findings`
``untested_changes``      no        changes recorded since the last successful drill
========================  ========  =======================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from draas.clients.replication.models import ProtectionSpec
from draas.models.tenant import ProtectedMachine, TenantConfig
from draas.models.vcenter import ResourceAllocation, VmInfo
from draas.protection import nic_label

Category = Literal["unprotected_vms", "unknown_protected", "disk_changes", "nic_changes", "settings_drift",
                   "missing_networks", "capacity", "untested_changes"]
CATEGORIES: tuple[Category, ...] = ("unprotected_vms", "unknown_protected", "disk_changes", "nic_changes",
                                    "settings_drift", "missing_networks", "capacity", "untested_changes")
TITLES: dict[Category, str] = {
    "unprotected_vms": "Unprotected VMs", "unknown_protected": "Protected but not in the config",
    "disk_changes": "Disk changes", "nic_changes": "NIC changes", "settings_drift": "Settings drift",
    "missing_networks": "Missing recovery networks", "capacity": "Recovery capacity",
    "untested_changes": "Untested changes since the last successful drill",
}

DISK_TOLERANCE_GB = 1.0
"""Disk sizes within this many GB of the config's count as equal (rounding in vCenter and configs)."""

MHZ_PER_VCPU = 2000
"""CPU demand assumed per vCPU when comparing VMs with a pool's CPU limit (a planning figure)."""


class Finding(BaseModel):
    """One thing that differs, on one subject (a VM, group, network, pool or change)."""

    category: Category
    subject: str
    detail: str
    blocking: bool


class DiskState(BaseModel):
    label: str
    capacity_gb: float


class NicState(BaseModel):
    label: str
    network: str | None = None
    mac: str | None = None
    ip: str | None = None


class VmState(BaseModel):
    """A VM's disks and NICs as one readiness check saw them (the next check's baseline)."""

    name: str
    cpus: int | None = None
    memory_mb: int | None = None
    disks: list[DiskState] = Field(default_factory=list)
    nics: list[NicState] = Field(default_factory=list)

    @classmethod
    def of(cls, vm: VmInfo) -> VmState:
        """Disks and NICs named by their order (``Hard disk 1``, ``Network adapter 1``, as the
        replication specs name NICs), whatever labels the vCenter gives them."""
        ips = list(vm.guest_ips) or ([vm.ip_address] if vm.ip_address else [])
        return cls(name=vm.name, cpus=vm.cpus, memory_mb=vm.memory_mb,
                   disks=[DiskState(label=f"Hard disk {i + 1}", capacity_gb=d.capacity_gb)
                          for i, d in enumerate(vm.disks)],
                   nics=[NicState(label=nic_label(i), network=n.network, mac=n.mac, ip=ips[i] if i < len(ips) else None)
                         for i, n in enumerate(vm.nics)])


class ProtectedInventory(BaseModel):
    """The tenant's folder in the protected vCenter."""

    folder: str
    vms: list[VmState] = Field(default_factory=list)


class ManagedGroup(BaseModel):
    """One group of the replication manager."""

    name: str
    status: str = ""
    replicating: bool = True
    members: list[str] = Field(default_factory=list)
    plan: list[str] = Field(default_factory=list, description="what protecting its spec would change (membership, "
                                                              "RPO); config groups only")
    drift: list[str] = Field(default_factory=list, description="settings that differ from the spec; config groups only")


class ManagerView(BaseModel):
    """Every group the manager holds (the tenant's with their plans and drift)."""

    groups: list[ManagedGroup] = Field(default_factory=list)

    def group(self, name: str) -> ManagedGroup | None:
        return next((g for g in self.groups if g.name == name), None)

    def protecting(self) -> dict[str, str]:
        """VM name -> the group protecting it."""
        return {vm: g.name for g in self.groups for vm in g.members}


class RecoveryInventory(BaseModel):
    """What the recovery vCenter has of the tenant's container."""

    networks: dict[str, bool] = Field(default_factory=dict, description="port group -> present")
    pool: str
    allocation: ResourceAllocation | None = Field(default=None, description="None: the pool does not exist")


class UntestedChange(BaseModel):
    kind: str
    subject: str = ""
    description: str = ""
    detected_at: datetime


class ReadinessReport(BaseModel):
    """A tenant's readiness: the findings by category, and what the check saw."""

    tenant: str
    checked_at: datetime
    ready: bool
    unprotected_vms: list[Finding] = Field(default_factory=list)
    unknown_protected: list[Finding] = Field(default_factory=list)
    disk_changes: list[Finding] = Field(default_factory=list)
    nic_changes: list[Finding] = Field(default_factory=list)
    settings_drift: list[Finding] = Field(default_factory=list)
    missing_networks: list[Finding] = Field(default_factory=list)
    capacity: list[Finding] = Field(default_factory=list)
    untested_changes: list[Finding] = Field(default_factory=list)
    inventory: list[VmState] = Field(default_factory=list, description="the protected VMs seen (next baseline)")
    new_changes: list[Finding] = Field(default_factory=list, description="changes first seen by this check, "
                                                                          "to be recorded as untested")

    def findings(self, category: Category | None = None) -> list[Finding]:
        if category is not None:
            return list(getattr(self, category))
        return [f for c in CATEGORIES for f in getattr(self, c)]

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings() if f.blocking]

    def summary(self) -> str:
        """One line: ready or not, and the count per category with findings."""
        counts = ", ".join(f"{len(getattr(self, c))} {c.replace('_', ' ')}" for c in CATEGORIES if getattr(self, c))
        verdict = "ready" if self.ready else f"NOT ready ({len(self.blocking)} blocking)"
        return f"{self.tenant}: {verdict}" + (f"; {counts}" if counts else "; no findings")


# -- the comparison ------------------------------------------------------------------------------


def _tenant_groups(tenant: TenantConfig, manager: ManagerView, known_groups: Iterable[str]) -> list[ManagedGroup]:
    """The manager's groups of this tenant: its config's, those the state store records, and ``<id>-*``."""
    ours = {g.name for g in tenant.protection_groups} | set(known_groups)
    return [g for g in manager.groups if g.name in ours or g.name.startswith(f"{tenant.id}-")]


def disk_findings(machine: ProtectedMachine, vm: VmState, before: VmState | None) -> tuple[list[Finding], list[Finding]]:
    """Disk count and sizes against the config; additions and resizes since ``before`` (new changes)."""
    out: list[Finding] = []
    if len(vm.disks) != len(machine.disks):
        out.append(Finding(category="disk_changes", subject=vm.name, blocking=False,
                           detail=f"{len(vm.disks)} disk(s) in vCenter, {len(machine.disks)} in the config"))
    for i, (disk, conf) in enumerate(zip(vm.disks, machine.disks, strict=False)):
        if abs(disk.capacity_gb - conf.size_gb) > DISK_TOLERANCE_GB:
            out.append(Finding(category="disk_changes", subject=vm.name, blocking=False,
                               detail=f"disk {i + 1} ({disk.label}): {disk.capacity_gb:g} GB in vCenter, "
                                      f"{conf.size_gb:g} GB in the config ({conf.name})"))
    new: list[Finding] = []
    if before is not None:
        old = {d.label: d.capacity_gb for d in before.disks}
        for disk in vm.disks:
            if disk.label not in old:
                new.append(Finding(category="disk_changes", subject=vm.name, blocking=False,
                                   detail=f"{disk.label} added ({disk.capacity_gb:g} GB) since the previous check"))
            elif abs(old[disk.label] - disk.capacity_gb) > DISK_TOLERANCE_GB / 1000:
                new.append(Finding(category="disk_changes", subject=vm.name, blocking=False,
                                   detail=f"{disk.label} resized {old[disk.label]:g} -> {disk.capacity_gb:g} GB "
                                          "since the previous check"))
        for label in sorted(set(old) - {d.label for d in vm.disks}):
            new.append(Finding(category="disk_changes", subject=vm.name, blocking=False,
                               detail=f"{label} removed since the previous check"))
    return out + new, new


def nic_findings(machine: ProtectedMachine, vm: VmState, before: VmState | None) -> tuple[list[Finding], list[Finding]]:
    """NIC count and addresses against the config; network moves and NIC changes since ``before``."""
    out: list[Finding] = []
    if len(vm.nics) != len(machine.nics):
        out.append(Finding(category="nic_changes", subject=vm.name, blocking=True,
                           detail=f"{len(vm.nics)} NIC(s) in vCenter, {len(machine.nics)} in the config: "
                                  "the recovery NIC mappings follow the config"))
    for nic, conf in zip(vm.nics, machine.nics, strict=False):
        if nic.ip is not None and nic.ip != str(conf.ip):
            out.append(Finding(category="nic_changes", subject=vm.name, blocking=True,
                               detail=f"{nic.label}: address {nic.ip} in vCenter, {conf.ip} in the config"))
    new: list[Finding] = []
    if before is not None:
        old = {n.label: n for n in before.nics}
        for nic in vm.nics:
            prev = old.get(nic.label)
            if prev is None:
                new.append(Finding(category="nic_changes", subject=vm.name, blocking=False,
                                   detail=f"{nic.label} added on {nic.network or 'no network'} since the previous check"))
            elif prev.network != nic.network:
                new.append(Finding(category="nic_changes", subject=vm.name, blocking=False,
                                   detail=f"{nic.label} moved {prev.network or 'none'} -> {nic.network or 'none'} "
                                          "since the previous check"))
        for label in sorted(set(old) - {n.label for n in vm.nics}):
            new.append(Finding(category="nic_changes", subject=vm.name, blocking=False,
                               detail=f"{label} removed since the previous check"))
    return out + new, new


def capacity_findings(tenant: TenantConfig, recovery: RecoveryInventory, vms: list[VmState]) -> list[Finding]:
    """The recovery pool against the configured sizes of the VMs it must run after a failover.

    The rule (the VMs carry no reservations of their own in the protected vCenter, so their
    configured sizes are the demand):

    - no pool: blocking (nothing to recover into);
    - memory: the sum of the VMs' configured memory above the pool's memory limit is blocking
      (they would not run); above its reservation it is blocking when the reservation cannot
      expand, else a warning (the rest comes from the parent pool's unreserved memory, which
      other tenants may hold at the time of a disaster);
    - CPU: the VMs' vCPUs at :data:`MHZ_PER_VCPU` above the pool's CPU limit is blocking; CPU
      is not held against the reservation (overcommitting CPU is normal practice).
    """
    pool = recovery.pool
    if recovery.allocation is None:
        return [Finding(category="capacity", subject=pool, blocking=True,
                        detail=f"resource pool {pool} does not exist in the recovery vCenter")]
    alloc = recovery.allocation
    memory = sum(v.memory_mb or 0 for v in vms)
    cpu = sum((v.cpus or 0) * MHZ_PER_VCPU for v in vms)
    out: list[Finding] = []
    who = f"{len(vms)} protected VM(s)"
    if alloc.memory_limit_mb != -1 and memory > alloc.memory_limit_mb:
        out.append(Finding(category="capacity", subject=pool, blocking=True,
                           detail=f"{who} need {memory} MB of memory; the pool is limited to {alloc.memory_limit_mb} MB"))
    elif memory > alloc.memory_reservation_mb:
        short = memory - alloc.memory_reservation_mb
        out.append(Finding(category="capacity", subject=pool, blocking=not alloc.memory_expandable,
                           detail=f"{who} need {memory} MB of memory; the pool reserves {alloc.memory_reservation_mb} "
                                  f"MB ({short} MB short; " + ("the reservation cannot expand)" if not
                                                              alloc.memory_expandable else
                                                              "borrowed from the parent pool, not guaranteed)")))
    if alloc.cpu_limit_mhz != -1 and cpu > alloc.cpu_limit_mhz:
        out.append(Finding(category="capacity", subject=pool, blocking=True,
                           detail=f"{who} need about {cpu} MHz ({MHZ_PER_VCPU} MHz per vCPU); the pool is limited "
                                  f"to {alloc.cpu_limit_mhz} MHz"))
    return out


def assess(tenant: TenantConfig, specs: list[ProtectionSpec], protected: ProtectedInventory, manager: ManagerView,
           recovery: RecoveryInventory, changes: Iterable[UntestedChange] = (),
           baseline: Iterable[VmState] | None = None, known_groups: Iterable[str] = (),
           now: datetime | None = None) -> ReadinessReport:
    """Compare the config with the protected vCenter, the manager and the recovery site.

    Args:
        tenant: the validated config.
        specs: ``build_specs(tenant, site)`` (what the manager should hold per group).
        protected: the VMs in the tenant's folder of the protected vCenter.
        manager: every group of the manager; the tenant's with ``plan`` and ``drift`` filled in.
        recovery: the tenant's recovery port groups and pool.
        changes: changes recorded since the last successful drill.
        baseline: the VMs the previous check saw (None: no previous check, nothing compared).
        known_groups: group names the state store records for the tenant.
    """
    f: dict[Category, list[Finding]] = {c: [] for c in CATEGORIES}
    new_changes: list[Finding] = []
    machines = {m.name: m for m in tenant.machines}
    in_folder = {vm.name: vm for vm in protected.vms}
    protecting = manager.protecting()
    before = {vm.name: vm for vm in baseline} if baseline is not None else None

    for name in sorted(in_folder):
        if name not in protecting:
            where = "in the config but" if name in machines else "not in the config and"
            f["unprotected_vms"].append(Finding(category="unprotected_vms", subject=name, blocking=True,
                                                detail=f"in folder {protected.folder}, {where} protected by no group"))
    for name, machine in machines.items():
        if machine.kind != "vm" or name in in_folder:
            continue
        if name in protecting:
            f["disk_changes"].append(Finding(category="disk_changes", subject=name, blocking=False,
                                             detail=f"protected by {protecting[name]} but not in folder "
                                                    f"{protected.folder}: disks and NICs not checked"))
        else:
            f["unprotected_vms"].append(Finding(category="unprotected_vms", subject=name, blocking=True,
                                                detail=f"in the config, but neither in folder {protected.folder} nor "
                                                       "protected by any group"))

    config_groups = {g.name for g in tenant.protection_groups}
    for group in _tenant_groups(tenant, manager, known_groups):
        if group.name not in config_groups:
            f["unknown_protected"].append(Finding(
                category="unknown_protected", subject=group.name, blocking=False,
                detail=f"group in the manager ({len(group.members)} VM(s)) that the config does not have"))
            continue
        for vm in group.members:
            if vm not in machines:
                f["unknown_protected"].append(Finding(category="unknown_protected", subject=vm, blocking=False,
                                                      detail=f"protected by {group.name} but not in the config"))
    for name in in_folder:
        if name in protecting and name not in machines and not any(
                x.subject == name for x in f["unknown_protected"]):
            f["unknown_protected"].append(Finding(category="unknown_protected", subject=name, blocking=False,
                                                  detail=f"protected by {protecting[name]} but not in the config"))

    for name, machine in machines.items():
        vm = in_folder.get(name)
        if vm is None:
            continue
        prev = before.get(name) if before is not None else None
        if before is not None and prev is None:
            prev = VmState(name=name)  # new to the folder since the previous check: everything is new
        disks, new_disks = disk_findings(machine, vm, prev)
        nics, new_nics = nic_findings(machine, vm, prev)
        f["disk_changes"] += disks
        f["nic_changes"] += nics
        new_changes += new_disks + new_nics

    for spec in specs:
        group = manager.group(spec.name)
        if group is None:
            f["settings_drift"].append(Finding(category="settings_drift", subject=spec.name, blocking=True,
                                               detail="not in the replication manager (run setup-protection)"))
            continue
        for line in dict.fromkeys([*group.plan, *group.drift]):  # plan_protect may include the drift already
            f["settings_drift"].append(Finding(category="settings_drift", subject=spec.name, blocking=True,
                                               detail=line))
        if not group.replicating:
            f["settings_drift"].append(Finding(category="settings_drift", subject=spec.name, blocking=True,
                                               detail=f"not replicating (status {group.status})"))

    for network, present in sorted(recovery.networks.items()):
        if not present:
            f["missing_networks"].append(Finding(category="missing_networks", subject=network, blocking=True,
                                                 detail="recovery port group not in the recovery vCenter"))

    protected_vms = [in_folder[m] for m in machines if m in in_folder and m in protecting]
    f["capacity"] = capacity_findings(tenant, recovery, protected_vms)

    for change in changes:
        f["untested_changes"].append(Finding(
            category="untested_changes", subject=change.subject or change.kind, blocking=False,
            detail=f"{change.kind} at {change.detected_at:%Y-%m-%d %H:%M}Z: {change.description}".rstrip(": ")))

    blocking = any(x.blocking for c in CATEGORIES for x in f[c])
    return ReadinessReport(tenant=tenant.id, checked_at=now or datetime.now(UTC), ready=not blocking,
                           inventory=[in_folder[n] for n in sorted(in_folder)], new_changes=new_changes,
                           **{c: f[c] for c in CATEGORIES})


def recovery_networks(tenant: TenantConfig) -> list[str]:
    """The recovery port groups of the tenant's VLANs (as pre-provisioning creates them)."""
    return [vlan.recovery_port_group for vlan in tenant.network.vlans]


def render_text(report: ReadinessReport) -> str:
    """The report as plain lines for a terminal: the verdict, then each category with findings."""
    lines = [report.summary()]
    for category in CATEGORIES:
        items = report.findings(category)
        if not items:
            continue
        lines.append(f"{TITLES[category]}:")
        lines += [f"  {'BLOCKING ' if x.blocking else ''}{x.subject}: {x.detail}" for x in items]
    return "\n".join(lines)

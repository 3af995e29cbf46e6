"""What to protect and how: a tenant's protection groups as replication specs, and their capacity.

Pure functions, no I/O. :func:`build_specs` turns each protection group of a validated
:class:`~draas.models.tenant.TenantConfig` into one product-neutral
:class:`~draas.clients.replication.ProtectionSpec`:

- RPO target from the group's SLA, journal history from its retention window;
- journal hard limit from the journal sizing calculator (:func:`draas.planning.journal.size_group`),
  warning threshold at :data:`JOURNAL_WARNING_FRACTION` of it (packages without a journal: none);
- recovery defaults: the site's recovery cluster, the tenant's datastore (else the site's), and the
  tenant folder and resource pool exactly as pre-provisioning names them;
- per NIC: the tenant's port group of the NIC's VLAN, and the re-IP the NIC mapping asks for.

:func:`check_capacity` applies the design guide's concurrency limits (a master target serves at
most 40 protected disks, only of its own OS family; a process server handles at most 1 TB/day of
change) and names each violation.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Literal

from draas.clients.replication.models import IpSettings, NicMapping, ProtectionSpec, VmProtection
from draas.errors import PermanentError
from draas.models.packages import (
    MAX_CHANGE_GB_PER_DAY_PER_PROCESS_SERVER,
    MAX_DISKS_PER_MASTER_TARGET,
    ServicePackage,
)
from draas.models.tenant import MasterTarget, Nic, ProtectedMachine, ProtectionGroup, TenantConfig
from draas.planning.journal import size_group
from draas.site import Site

JOURNAL_WARNING_FRACTION = 0.8
"""The journal warning threshold, as a fraction of its hard limit."""

MAX_JOURNAL_HISTORY_HOURS = 720
"""The longest journal history a replication group keeps (30 days)."""

MB_PER_GB = 1000  # decimal, as the journal calculator's GB


class ProtectionCapacityExceeded(PermanentError):
    """The tenant's protection groups exceed a design-guide limit; ``problems`` names each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} capacity limit(s) exceeded:\n" + "\n".join(self.problems))


def nic_label(index: int) -> str:
    """The label vSphere gives the ``index``-th NIC of a VM (0-based): ``Network adapter 1``, ..."""
    return f"Network adapter {index + 1}"


def port_group_of(tenant: TenantConfig, vlan: str) -> str:
    """The tenant's recovery port group of ``vlan`` (as pre-provisioning creates it)."""
    return tenant.vlan(vlan).recovery_port_group


def priority_of(group: ProtectionGroup) -> Literal["Low", "Medium", "High"]:
    """Replication priority from the RPO target: High up to 5 min, Medium up to 1 h, else Low."""
    rpo = group.sla.rpo.total_seconds()
    if rpo <= 300:
        return "High"
    if rpo <= 3600:
        return "Medium"
    return "Low"


def _re_ip(tenant: TenantConfig, nic: Nic) -> IpSettings | None:
    """The static recovery address of a ``re_ip`` NIC (None for ``same_ip``)."""
    if nic.mapping != "re_ip":
        return None
    address = tenant.recovery_ip(nic)
    if address is None:
        return None
    vlan = tenant.vlan(nic.vlan)
    return IpSettings(ip=str(address), subnet_mask=str(vlan.subnet.netmask), gateway=str(vlan.gateway))


def vm_protection(tenant: TenantConfig, machine: ProtectedMachine) -> VmProtection:
    """One machine's recovery NIC settings.

    The failover-test network is recorded as the failover network for now: the isolated drill
    bubble (``Vlan.drill_port_group``) is set up by the drill flow, which will map it.
    """
    nics = []
    for i, nic in enumerate(machine.nics):
        network = port_group_of(tenant, nic.vlan)
        ip = _re_ip(tenant, nic)
        nics.append(NicMapping(nic=nic_label(i), failover_network=network, test_network=network,
                               failover_ip=ip, test_ip=ip))
    return VmProtection(vm=machine.name, nics=nics)


def build_spec(tenant: TenantConfig, group: ProtectionGroup, site: Site) -> ProtectionSpec:
    """The replication spec of one protection group."""
    sizing = size_group(tenant, group)
    hard = warning = None
    if sizing is not None:
        hard = max(1, math.ceil(sizing.provisioned_gb * MB_PER_GB))
        warning = max(1, math.floor(hard * JOURNAL_WARNING_FRACTION))
    history = math.ceil(group.retention.window.total_seconds() / 3600)
    recovery = site.vcenter.recovery
    return ProtectionSpec(
        name=group.name,
        vms=[vm_protection(tenant, tenant.machine(m)) for m in group.machines],
        rpo_seconds=max(1, int(group.sla.rpo.total_seconds())),
        journal_history_hours=min(max(history, 1), MAX_JOURNAL_HISTORY_HOURS),
        journal_hard_limit_mb=hard,
        journal_warning_mb=warning,
        priority=priority_of(group),
        use_wan_compression=True,
        recovery_cluster=recovery.cluster,
        recovery_datastore=tenant.placement.datastore or recovery.datastore,
        recovery_folder=tenant.folder,
        recovery_resource_pool=tenant.resource_pool,
    )


def build_specs(tenant: TenantConfig, site: Site) -> list[ProtectionSpec]:
    """One spec per protection group, in the config's order."""
    return [build_spec(tenant, group, site) for group in tenant.protection_groups]


def _master_targets(tenant: TenantConfig, group: ProtectionGroup,
                    machine: ProtectedMachine) -> tuple[MasterTarget | None, str | None]:
    """The master target serving ``machine`` of ``group``, or None and why none can."""
    if group.master_target is not None:
        mt = next((m for m in tenant.dr_components.master_targets if m.name == group.master_target), None)
        if mt is None:
            return None, f"group {group.name}: master target {group.master_target} is not declared"
        if mt.os_family != machine.os_family:
            return None, (f"group {group.name}: {machine.name} is {machine.os_family.value} but master target "
                          f"{mt.name} is {mt.os_family.value}; a master target serves only machines of its own "
                          f"OS family")
        return mt, None
    if ServicePackage(group.package) is not ServicePackage.VMR_CDP:
        return None, None  # snapshot packages replicate without a master target
    mt = next((m for m in tenant.dr_components.master_targets if m.os_family == machine.os_family), None)
    if mt is None:
        return None, (f"group {group.name}: no master target of the {machine.os_family.value} OS family for "
                      f"{machine.name}; a master target serves only machines of its own OS family")
    return mt, None


def check_capacity(tenant: TenantConfig) -> list[str]:
    """One message per violated design-guide limit, naming the limit, the groups and the numbers."""
    problems: list[str] = []
    disks: dict[str, int] = defaultdict(int)
    change: dict[str, float] = defaultdict(float)
    groups_of_mt: dict[str, list[str]] = defaultdict(list)
    groups_of_ps: dict[str, list[str]] = defaultdict(list)
    for group in tenant.protection_groups:
        for name in group.machines:
            machine = tenant.machine(name)
            mt, problem = _master_targets(tenant, group, machine)
            if problem:
                problems.append(problem)
            if mt is not None:
                disks[mt.name] += len(machine.protected_disks)
                if group.name not in groups_of_mt[mt.name]:
                    groups_of_mt[mt.name].append(group.name)
            if group.process_server is not None:
                change[group.process_server] += machine.change_rate_gb_per_day
                if group.name not in groups_of_ps[group.process_server]:
                    groups_of_ps[group.process_server].append(group.name)
    for mt_name, count in disks.items():
        if count > MAX_DISKS_PER_MASTER_TARGET:
            problems.append(f"master target {mt_name} (groups {', '.join(groups_of_mt[mt_name])}): {count} protected "
                            f"disks; at most {MAX_DISKS_PER_MASTER_TARGET} disks per master target")
    for ps_name, gb in change.items():
        if gb > MAX_CHANGE_GB_PER_DAY_PER_PROCESS_SERVER:
            problems.append(f"process server {ps_name} (groups {', '.join(groups_of_ps[ps_name])}): {gb:g} GB/day "
                            f"of change; at most 1 TB/day ({MAX_CHANGE_GB_PER_DAY_PER_PROCESS_SERVER} GB/day) per "
                            f"process server")
    return problems


def ensure_capacity(tenant: TenantConfig) -> None:
    """Raise :class:`ProtectionCapacityExceeded` when :func:`check_capacity` finds violations."""
    problems = check_capacity(tenant)
    if problems:
        raise ProtectionCapacityExceeded(problems)

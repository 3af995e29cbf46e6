"""The main job on the embedded lab: start it, show what every system holds, stop it.

Everything here goes through the product's own blocks and adapters, over the real
protocols (SOAP, SSH, HTTP, DNS), exactly as the flows do.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lab.state import LabState


def inventory(state: LabState) -> Table:
    """One row per system with what it holds right now, read through the adapters."""
    from blocks.cisco import CiscoDeviceCredentials
    from blocks.dns import DnsServerCredentials
    from blocks.replication import ZertoCredentials
    from blocks.servicedesk import ServiceDeskCredentials
    from blocks.vcenter import VCenterCredentials

    table = Table("system", "endpoint", "holds", title="Lab inventory (read through the product's adapters)")
    for site in sorted(state.vcenter):
        block = VCenterCredentials.from_lab(state, site=site)
        with block.get_client() as vc:
            vms = vc.list_vms()
        powered = sum(1 for vm in vms if str(vm.power_state).endswith("poweredOn"))
        table.add_row(f"vCenter ({site})", state.vcenter[site].sdk_url, f"{len(vms)} VMs ({powered} powered on)")
    assert state.cisco is not None
    for name, dev in state.cisco.devices.items():
        with CiscoDeviceCredentials.from_lab(state, device_name=name).get_client() as cisco:
            facts = cisco.facts()
        table.add_row(f"{dev.platform} {name}", f"ssh://{dev.host}:{dev.port}",
                      f"hostname {facts.hostname}, running config {facts.config_lines} lines")
    assert state.replication is not None
    with ZertoCredentials.from_lab(state).get_client() as zvm:
        groups = zvm.list_groups()
    table.add_row("replication (ZVM API v1)", state.replication.url, f"{len(groups)} VPGs")
    assert state.dns is not None
    with DnsServerCredentials.from_lab(state).get_client() as dns_client:
        zones = [f"{zone} (serial {dns_client.zone_serial(zone)})" for zone in state.dns.zones]
    table.add_row("DNS (BIND 9)", f"dns://{state.dns.host}:{state.dns.port}", ", ".join(zones))
    assert state.servicedesk is not None
    with ServiceDeskCredentials.from_lab(state).get_client() as desk:
        desk.check_connection()
    table.add_row("service desk (Table API)", state.servicedesk.url, "reachable, authenticated")
    return table


def _use_lab_local_state(lab_dir: Path) -> None:
    """Keep the demo's Prefect database and state store inside the lab directory.

    Must run before Prefect is imported: Prefect reads its settings at import time. Values
    already set in the environment (a real Prefect server, PostgreSQL) are kept.
    """
    # The lab starts empty every time, so state about an earlier lab would only mislead.
    if "PREFECT_HOME" not in os.environ and "PREFECT_API_URL" not in os.environ:
        shutil.rmtree(lab_dir / "prefect", ignore_errors=True)
        os.environ["PREFECT_HOME"] = str(lab_dir / "prefect")
    if "DRAAS_DATABASE_URL" not in os.environ:
        (lab_dir / "state.db").unlink(missing_ok=True)
        os.environ["DRAAS_DATABASE_URL"] = f"sqlite:///{lab_dir / 'state.db'}"
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def tenant_lifecycle(tenants: list[str], output_dir: Path, console: Console) -> Table:
    """Onboard and pre-provision every tenant (a dry run first), then a re-run that must change nothing."""
    from flows.onboard import onboard_tenant
    from flows.preprovision import preprovision_container

    table = Table("tenant", "tier", "onboard", "dry run (lines/objects)", "preprovision", "re-run",
                  title="Tenant onboarding and network containers")
    for tenant in tenants:
        started = time.monotonic()
        onboarded = onboard_tenant(tenant, requested_by="demo", channel="cli", output_dir=str(output_dir))
        onboard_s = time.monotonic() - started
        dry = preprovision_container(tenant, dry_run=True, requested_by="demo", channel="cli")
        would = sum(len([d for d in s.diff if d.startswith("+")]) for s in dry.steps)
        started = time.monotonic()
        first = preprovision_container(tenant, requested_by="demo", channel="cli")
        first_s = time.monotonic() - started
        again = preprovision_container(tenant, requested_by="demo", channel="cli")
        tier = next((s.detail.get("tier") for s in onboarded.steps if s.step == "validate_tenant_config"), "?")
        table.add_row(tenant, str(tier), f"{onboard_s:.1f} s, change {onboarded.change_number}",
                      f"{would} additions", f"{len(first.steps)} steps, {first_s:.1f} s",
                      "no change" if not again.changed else "CHANGED")
        if again.changed:
            raise SystemExit(f"re-running preprovision-container for {tenant} changed something")
        console.print(f"{tenant}: DR plan {onboarded.dr_plan_html}")
    return table


def offboard_all(tenants: list[str]) -> Table:
    from flows.offboard import offboard_tenant

    table = Table("tenant", "objects removed", "verified absent", title="Offboarding")
    for tenant in tenants:
        result = offboard_tenant(tenant, requested_by="demo", channel="cli")
        table.add_row(tenant, str(result.removed), "yes")
    return table


def run(lab_dir: Path | None = None, keep_lab: bool = False, console: Console | None = None,
        tenants: list[str] | None = None, output_dir: Path = Path("out"), offboard: bool = True) -> int:
    """Start the lab, run the main job against it, stop it (unless ``keep_lab``). Returns an exit code.

    The main job: show the lab's inventory, onboard and pre-provision every sample tenant,
    show the inventory again, then (unless ``offboard`` is False) offboard them and show that
    the devices and vCenter are back where they started.
    """
    from lab import launcher
    from lab.state import default_lab_dir

    console = console or Console(width=140)
    lab_dir = (lab_dir or default_lab_dir()).resolve()
    _use_lab_local_state(lab_dir)
    from draas.validation import load_tenants

    tenants = tenants or [t.id for t in load_tenants()]
    started = time.monotonic()
    state = launcher.up(lab_dir=lab_dir)
    console.print(f"lab up in {time.monotonic() - started:.1f} s ({Path(state.lab_dir) / 'state.json'})")
    try:
        console.print(inventory(state))
        console.print(tenant_lifecycle(tenants, output_dir.resolve(), console))
        console.print(inventory(state))
        if offboard:
            console.print(offboard_all(tenants))
            console.print(inventory(state))
    finally:
        if not keep_lab:
            launcher.down(lab_dir=lab_dir)
            console.print("lab down")
    return 0

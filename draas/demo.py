"""The main job on the embedded lab: start it, show what every system holds, stop it.

Everything here goes through the product's own blocks and adapters, over the real
protocols (SOAP, SSH, HTTP, DNS), exactly as the flows do.
"""

from __future__ import annotations

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


def run(lab_dir: Path | None = None, keep_lab: bool = False, console: Console | None = None) -> int:
    """Start the lab, run the main job against it, stop it (unless ``keep_lab``). Returns an exit code."""
    from lab import launcher

    console = console or Console()
    started = time.monotonic()
    state = launcher.up(lab_dir=lab_dir)
    console.print(f"lab up in {time.monotonic() - started:.1f} s ({Path(state.lab_dir) / 'state.json'})")
    try:
        console.print(inventory(state))
    finally:
        if not keep_lab:
            launcher.down(lab_dir=lab_dir)
            console.print("lab down")
    return 0

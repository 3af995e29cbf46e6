"""The main job on the embedded lab: start it, show what every system holds, stop it.

Everything here goes through the product's own blocks and adapters, over the real
protocols (SOAP, SSH, HTTP, DNS), exactly as the flows do, and finds the systems the way
the flows do: through the site (configs/site.yaml) and the site profile the lab writes.
The lab itself is started and stopped as a separate program (``python -m lab``).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from draas.site import Site


def inventory(site: Site, zones: list[str]) -> Table:
    """One row per system of ``site`` with what it holds right now, read through the adapters."""
    table = Table("system", "endpoint", "holds", title="Site inventory (read through the product's adapters)")
    for which in ("protected", "recovery"):
        block = site.vcenter_block(which)  # type: ignore[arg-type]
        with block.get_client() as vc:
            vms = vc.list_vms()
        powered = sum(1 for vm in vms if str(vm.power_state).endswith("poweredOn"))
        table.add_row(f"vCenter ({which})", f"{block.protocol}://{block.host}:{block.port}/sdk",
                      f"{len(vms)} VMs ({powered} powered on)")
    for dev in site.devices:
        device = site.device_block(dev.name)
        # A multi-context ASA's tenant contexts live in the system execution space.
        space = "system" if dev.multi_context else None
        with device.get_client() as cisco:
            facts = cisco.facts(space)
        table.add_row(f"{dev.platform} {dev.name}", f"ssh://{device.host}:{device.port}",
                      f"hostname {facts.hostname}, {'system context ' if space else ''}running config "
                      f"{facts.config_lines} lines")
    zvm_block = site.replication_block()
    with zvm_block.get_client() as zvm:
        groups = zvm.list_groups()
    table.add_row("replication (ZVM API v1)", zvm_block.url, f"{len(groups)} VPGs")
    dns_block = site.dns_block()
    with dns_block.get_client() as dns_client:
        serials = [f"{zone} (serial {dns_client.zone_serial(zone)})" for zone in zones]
    table.add_row("DNS (RFC 2136)", f"dns://{dns_block.server}:{dns_block.port}", ", ".join(serials))
    desk_block = site.servicedesk_block()
    with desk_block.get_client() as desk:
        desk.check_connection()
    table.add_row("service desk (Table API)", desk_block.url, "reachable, authenticated")
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


def protection(tenants: list[str], console: Console) -> Table:
    """Protect every tenant (setup-protection), re-run it (must change nothing), then watch it once."""
    from flows.protection import setup_protection
    from flows.watch import watch_protection

    table = Table("tenant", "group", "status", "RPO target (s)", "actual RPO (s)", "checkpoint", "watch",
                  title="Protection (setup-protection, then watch-protection)")
    for tenant in tenants:
        started = time.monotonic()
        first = setup_protection(tenant, requested_by="demo", channel="cli", sync_timeout_s=120)
        took = time.monotonic() - started
        again = setup_protection(tenant, requested_by="demo", channel="cli", sync_timeout_s=120)
        if again.changed:
            raise SystemExit(f"re-running setup-protection for {tenant} changed something")
        watched = {w.group: w for w in watch_protection(tenant, requested_by="demo", channel="cli").groups}
        for group in first.groups:
            seen = watched[group.name]
            table.add_row(tenant, group.name, group.status, str(group.rpo_target_s), str(group.actual_rpo_s),
                          group.checkpoint_id or "-", "breach: " + seen.reason if seen.breach else "within target")
        console.print(f"{tenant}: {len(first.groups)} group(s) protected in {took:.1f} s; re-run changed nothing")
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
    """Start the lab and the stack, run the main job against them, stop them (the lab unless ``keep_lab``).

    The main job: show the site's inventory, onboard and pre-provision every sample tenant,
    show the inventory again, protect their machines and watch their RPO, deploy every flow per
    tenant on the stack, drill every tenant through its ``drill/<tenant>`` deployment (run by the
    stack's worker), fail the Gold tenant over through the webhook gateway (a service-desk incident
    asks; its work note and resolution come back) and fail it back, then (unless ``offboard`` is
    False) offboard them and show that the devices and vCenter are back where they started. The
    systems are the site's (configs/site.yaml): with the default ``connections: profile`` and no
    other profile configured, that is the lab started here, found through ``$DRAAS_LAB_DIR``.
    Returns an exit code.
    """
    from draas import demo_service
    from draas.cli import run_lab
    from draas.demo_failback import failback_of_gold, gold_tenant

    console = console or Console(width=140)
    lab_dir = (lab_dir or Path(os.environ.get("DRAAS_LAB_DIR") or ".lab")).resolve()
    _use_lab_local_state(lab_dir)
    os.environ["DRAAS_LAB_DIR"] = str(lab_dir)  # the default site profile is this lab's
    from draas.validation import load_tenants

    loaded = load_tenants()
    tenants = tenants or [t.id for t in loaded]
    zones = sorted({zone for t in loaded if t.id in tenants for zone in t.dns_zones})
    started = time.monotonic()
    if run_lab("up", lab_dir, quiet=True):
        return 1
    stack_dir = lab_dir / "stack"
    try:
        site = Site.load()
        where = site.profile_path() if site.connections == "profile" else "saved blocks"
        console.print(f"lab up in {time.monotonic() - started:.1f} s; systems from {where}")
        # The stack's worker runs flows against this lab: it inherits the site profile's location.
        os.environ.setdefault("DRAAS_SITE_PROFILE", str(site.profile_path()))
        endpoints = demo_service.stack_up(stack_dir, console)
        console.print(inventory(site, zones))
        console.print(tenant_lifecycle(tenants, output_dir.resolve(), console))
        console.print(inventory(site, zones))
        console.print(protection(tenants, console))
        demo_service.deploy_all(tenants, endpoints["work_pool"], console)
        console.print(demo_service.drills_through_deployments(tenants, output_dir.resolve(), console))
        gold = gold_tenant(tenants)
        if gold is not None:
            demo_service.failover_through_gateway(gold, endpoints["gateway_url"], console)
            failback_of_gold(gold, console)
        if offboard:
            console.print(offboard_all(tenants))
            console.print(inventory(site, zones))
    finally:
        demo_service.stack_down(stack_dir, console)
        if not keep_lab:
            run_lab("down", lab_dir, quiet=True)
            console.print("lab down")
    return 0

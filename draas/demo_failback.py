"""The demo's DR step for the Gold sample tenant: a committed planned failover, then its failback.

Called by the demo (``make demo``) in place of the failover-and-rollback step; it goes through
the product's flows only, like the rest of the demo.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def failover_and_failback_of_gold(tenants: list[str], console: Console) -> None:
    """A committed planned failover of the Gold sample tenant, then a failback home, with stage timings.

    The switch-back's maintenance window opens a few seconds after the request, so the demo shows
    the run waiting for it (paused in the Prefect UI) before the VMs come back at production.
    """
    from draas.validation import load_tenant
    from flows.failback import MaintenanceWindow, failback
    from flows.failover import failover

    gold = next((t for t in tenants if load_tenant(t).network.tier == "gold"), None)
    if gold is None:
        return
    config = load_tenant(gold)

    def with_role(role: str) -> str:
        return next(p.email for p in config.authorised_persons if role in {getattr(r, "value", r) for r in p.roles})

    over = failover(gold, requested_by=with_role("invoke_dr"), mode="planned", commit=True, channel="cli")
    table = Table("VM", "wave", "outcome", "verified (s)",
                  title=f"Planned failover of {gold} (Gold), committed: RTO {over.rto_s:.1f} s "
                        f"(target {over.rto_target_s:g} s), RPO {over.rpo_s:.1f} s")
    for vm in over.vms:
        table.add_row(vm["vm"], str(vm["wave"]), vm["status"],
                      f"{vm['verified_at']:.1f}" if vm.get("verified_at") is not None else "-")
    console.print(table)

    back = failback(gold, requested_by=with_role("failback"), window=MaintenanceWindow.starting_in(20),
                    channel="cli")
    stages = Table("stage", "seconds", "outcome",
                   title=f"Failback of {gold}: data loss {back.data_loss_s:.1f} s, waited "
                         f"{back.window_wait_s:.1f} s for the maintenance window")
    for stage in back.stages:
        stages.add_row(stage.stage, f"{stage.seconds:.1f}", stage.outcome)
    console.print(stages)
    console.print(f"{gold}: failback run {back.run_id}: back at the production site ({len(back.vms)} VMs verified), "
                  f"{back.cutover_removed} cutover changes undone, protection production -> recovery resumed; "
                  f"report in the state store (kind 'failback'); change record {back.change_number}")

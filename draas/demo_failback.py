"""The demo's last DR step for the Gold sample tenant: after its committed failover, the failback.

The failover itself is asked for through the webhook gateway (draas/demo_service.py); the
failback goes through the product's flow, like the rest of the demo.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def gold_tenant(tenants: list[str]) -> str | None:
    """The first Gold tenant of ``tenants`` (the demo's failover and failback are its)."""
    from draas.validation import load_tenant

    return next((t for t in tenants if load_tenant(t).network.tier == "gold"), None)


def failback_of_gold(gold: str, console: Console) -> None:
    """After the Gold tenant's committed failover: its failback home, with stage timings.

    The switch-back's maintenance window opens a few seconds after the request, so the demo shows
    the run waiting for it (paused in the Prefect UI) before the VMs come back at production.
    """
    from draas.validation import load_tenant
    from flows.failback import MaintenanceWindow, failback

    config = load_tenant(gold)

    def with_role(role: str) -> str:
        return next(p.email for p in config.authorised_persons if role in {getattr(r, "value", r) for r in p.roles})

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

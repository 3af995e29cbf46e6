"""The ``offboard-tenant`` flow: remove everything the product created for a tenant.

It works from the ledger, not from the tenant's config (which may already be gone): every
recorded object still active is removed newest first through its system's handler, then each
one is checked on its system, and the tenant is marked offboarded. Running it again changes
nothing. The audit log and the run history are kept. It holds the tenant (no other
state-changing run meanwhile); a crash leaves the rest recorded for a re-run.
"""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel

from draas.errors import PermanentError
from draas.ledger import remove_records
from draas.models.results import StepResult
from draas.site import Site
from flows.runbook import CrashPolicy, RunContext, UnknownTenant
from tasks.ledger import remove_recorded_object, verify_records_removed

FLOW_NAME = "offboard-tenant"


class OffboardResult(BaseModel):
    tenant: str
    run_id: str
    removed: int
    changed: bool
    steps: list[StepResult]


class OffboardIncomplete(PermanentError):
    """Some objects could not be removed; their records stay active for the next run."""


@flow(name=FLOW_NAME)
def offboard_tenant(tenant: str, requested_by: str = "operator", channel: str = "ui",
                    config_dir: str | None = None, wait_for_tenant_s: float = 0.0) -> OffboardResult:
    """Remove every object recorded for ``tenant`` (every system), verify, mark it offboarded.

    Args:
        tenant: the tenant id.
        requested_by: who asked (audit log).
        channel: how they asked.
        config_dir: a directory whose site.yaml names the systems (default configs/site.yaml).
        wait_for_tenant_s: how long to wait for another run holding the tenant before refusing.

    Raises:
        UnknownTenant: nothing is known of the tenant (audited as refused).
        OffboardIncomplete: some removals failed (the run is Failed; re-run to finish).
        ObjectsStillPresent: verification found an object still present.
    """
    site = Site.for_config_dir(config_dir)
    # Offboarding is itself removal: a failure keeps what is left recorded for a re-run (no undo).
    run = RunContext(FLOW_NAME, action="offboard_tenant", tenant=tenant, requested_by=requested_by,
                     channel=channel, policy=CrashPolicy.NONE, exclusive=True, wait_s=wait_for_tenant_s,
                     title=f"Offboarding {tenant}", artifact_key="offboard", parameters={"tenant": tenant},
                     site=site)
    with run.admission():
        if run.store.get_tenant(tenant) is None and not run.store.objects(tenant):
            raise UnknownTenant(f"tenant {tenant!r} is unknown to the state store: nothing to offboard")
    records = run.store.objects(tenant)  # active only, newest first: the order to remove them in
    with run.started(total_steps=len(records) + 1):
        report = remove_records(records, lambda rec: run.step(remove_recorded_object(rec.id, site)))
        if report.leftovers:
            raise OffboardIncomplete(f"{len(report.leftovers)} object(s) not removed:\n"
                                     + "\n".join(f"{lo.what}: {lo.error}" for lo in report.leftovers))
        run.step(verify_records_removed([r.id for r in records if r.id is not None], site))
        if run.store.get_tenant(tenant) is not None:
            run.store.set_tenant_status(tenant, "offboarded")
        run.finish(f"Offboarding {tenant}: done", detail={"removed": len(records)})
    return OffboardResult(tenant=tenant, run_id=run.run_id, removed=len(records), changed=run.changed,
                          steps=run.steps)

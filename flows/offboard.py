"""The ``offboard-tenant`` flow: remove everything the product created for a tenant.

It works from the state store's records, not from the tenant's config (which may already be
gone): every recorded object still active is removed newest first, then each one is checked
against the devices and vCenter, and the tenant is marked offboarded. Running it again
changes nothing. The audit log and the run history are kept.
"""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel

from draas.errors import PermanentError
from draas.models.results import StepResult
from draas.site import Site
from draas.state.store import StateStore
from flows.runbook import RunRecord, error_text
from tasks.container import remove_provisioned_object, verify_objects_removed

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
                    config_dir: str | None = None) -> OffboardResult:
    """Remove every object recorded for ``tenant`` (devices, vCenter), verify, mark it offboarded.

    Args:
        tenant: the tenant id.
        requested_by: who asked (audit log).
        channel: how they asked.
        config_dir: a directory whose site.yaml names the systems (default configs/site.yaml).

    Raises:
        OffboardIncomplete: some removals failed (the run is Failed; re-run to finish).
        ContainerIncomplete: verification found an object still present.
    """
    run_id = str(flow_run.id)
    store = StateStore()
    site = Site.for_config_dir(config_dir)
    if store.get_tenant(tenant) is None and not store.objects(tenant):
        raise PermanentError(f"tenant {tenant!r} is unknown to the state store: nothing to offboard")
    records = store.objects(tenant)  # active only, newest first: the order to remove them in
    run = RunRecord(store, run_id=run_id, flow=FLOW_NAME, action="offboard_tenant", tenant=tenant,
                    artifact_key="offboard", requested_by=requested_by, channel=channel, total_steps=len(records) + 1,
                    parameters={"tenant": tenant})
    errors: list[str] = []
    try:
        for rec in records:
            assert rec.id is not None
            try:
                run.step(remove_provisioned_object(rec.id, site))
            except Exception as exc:  # noqa: BLE001 - remove what can be removed, report the rest
                errors.append(f"{rec.system}:{rec.name}: {error_text(exc)}")
        if errors:
            raise OffboardIncomplete(f"{len(errors)} object(s) not removed:\n" + "\n".join(errors))
        run.step(verify_objects_removed([r.id for r in records if r.id is not None], site))
    except Exception as exc:
        run.failed(f"Offboarding {tenant}: incomplete", exc)
        raise
    if store.get_tenant(tenant) is not None:
        store.set_tenant_status(tenant, "offboarded")
    run.succeeded(f"Offboarding {tenant}: done", detail={"removed": len(records)})
    return OffboardResult(tenant=tenant, run_id=run_id, removed=len(records), changed=run.changed, steps=run.steps)

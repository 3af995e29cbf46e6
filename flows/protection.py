"""The ``setup-protection`` flow: protect a tenant's machines with the replication manager.

Runbook, top to bottom:

1. validate the tenant's config, build one replication spec per protection group
   (:mod:`draas.protection`) and check the design guide's capacity limits: a violation refuses
   the run (``ProtectionCapacityExceeded``) before anything changes;
2. per group: record it in the ledger, create it (or bring it to the spec), wait for the initial
   sync within ``sync_timeout_s``, tag the first application-consistent checkpoint, and record
   the group in the state store;
3. a group a run changes is recorded as a change the next drill must cover
   (``StateStore.changes_since_last_successful_drill``).

Every group is recorded in the ledger before it is created. A failure part way removes what this
run recorded (crash policy *undo*); a crash leaves it to the sweeper. A second run changes nothing.
The groups are ledger records, so ``offboard-tenant`` removes them.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from prefect import flow
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from pydantic import BaseModel

from draas.clients.replication import ProtectionSpec
from draas.deadline import Deadline
from draas.ledger import REPLICATION
from draas.models.results import StepResult
from draas.models.tenant import TenantConfig
from draas.protection import ProtectionCapacityExceeded, build_specs, check_capacity, ensure_capacity
from draas.reports.run_summary import Section
from draas.site import Site
from draas.validation import ConfigInvalid, parse_tenant_file, tenant_file
from flows.runbook import CrashPolicy, RunContext
from tasks.replication import create_vpg, tag_checkpoint, wait_for_vpg_sync
from tasks.tenant import validate_tenant_config

FLOW_NAME = "setup-protection"
#: Tag of the application-consistent checkpoint inserted once a group has synced.
INITIAL_CHECKPOINT_TAG = "app-consistent"
#: How long creating or editing one group may take (the manager's commit task).
CREATE_TIMEOUT_S = 300.0
#: Steps per group: create, wait for sync, tag checkpoint.
STEPS_PER_GROUP = 3


class GroupProtection(BaseModel):
    """One protection group as this run left it."""

    name: str
    group_id: str | None = None
    status: str
    changed: bool
    rpo_target_s: int
    actual_rpo_s: int
    checkpoint_id: str | None = None


class ProtectionResult(BaseModel):
    tenant: str
    run_id: str
    changed: bool
    groups: list[GroupProtection]
    steps: list[StepResult]


def admit(tenant: str, config_dir: str | None, site: Site) -> tuple[StepResult, TenantConfig, list[ProtectionSpec]]:
    """Validate the config, check capacity and build the specs; changes nothing.

    Raises:
        ProtectionCapacityExceeded: a design-guide limit is exceeded (also when validation
            found it: the more specific error names the limit, the groups and the numbers).
        ConfigInvalid: any other configuration problem.
    """
    try:
        valid = validate_tenant_config(tenant, config_dir)
    except ConfigInvalid as exc:
        parsed, _ = parse_tenant_file(tenant_file(tenant, Path(config_dir) if config_dir else None))
        problems = check_capacity(parsed) if parsed is not None else []
        if problems:
            raise ProtectionCapacityExceeded(problems) from exc
        raise
    ensure_capacity(valid.tenant)
    return valid.step, valid.tenant, build_specs(valid.tenant, site)


@flow(name=FLOW_NAME)
def setup_protection(tenant: str, requested_by: str = "operator", channel: str = "ui",
                     config_dir: str | None = None, sync_timeout_s: float = 900,
                     wait_for_tenant_s: float = 0.0) -> ProtectionResult:
    """Protect ``tenant``'s machines: one replication group per protection group, synced and checkpointed.

    Args:
        tenant: the tenant id (``<config_dir>/tenants/<tenant>.yaml``).
        requested_by: who asked (audit log).
        channel: how they asked: ui, cli, webhook, schedule, api, service-desk.
        config_dir: directory with tenants/, tiers.yaml and optionally site.yaml.
        sync_timeout_s: how long each group's initial sync may take.
        wait_for_tenant_s: how long to wait when another state-changing run holds the tenant
            before refusing (0: refuse at once).

    Raises:
        ConfigInvalid: the config does not validate; nothing was changed (audited as refused).
        ProtectionCapacityExceeded: a design-guide capacity limit is exceeded; nothing was changed.
        TenantBusy: another state-changing run holds the tenant (audited as refused).
        ReplicationDeadlineExceeded: a group did not sync in time; this run's groups were removed.
        Any adapter error: what this run created has been removed again.
    """
    site = Site.for_config_dir(config_dir)
    run = RunContext(FLOW_NAME, action="setup_protection", tenant=tenant, requested_by=requested_by,
                     channel=channel, policy=CrashPolicy.UNDO, exclusive=True, wait_s=wait_for_tenant_s,
                     title=f"Protection of {tenant}", artifact_key="protection",
                     parameters={"tenant": tenant, "config_dir": config_dir, "sync_timeout_s": sync_timeout_s},
                     site=site)
    with run.admission():
        validated, config, specs = admit(tenant, config_dir, site)
    groups: list[GroupProtection] = []
    with run.started(total_steps=1 + STEPS_PER_GROUP * len(specs)):
        run.step(validated)
        replication = site.replication_block()
        for spec in specs:
            package = config.group(spec.name).package
            progress = _group_progress(tenant, spec.name)
            run.store.record_object(tenant_id=tenant, run_id=run.run_id, system=REPLICATION, site="recovery",
                                    kind="group", name=spec.name, identity={"name": spec.name})
            created = run.step(create_vpg(replication, spec, deadline=Deadline.within(
                CREATE_TIMEOUT_S, f"protection of group {spec.name}")))
            _advance(progress, 33.0, f"{spec.name}: {'changed' if created.changed else 'unchanged'}, syncing")
            synced = run.step(wait_for_vpg_sync(replication, spec.name, deadline=Deadline.within(
                sync_timeout_s, f"initial sync of group {spec.name}")))
            group = synced.payload
            assert group is not None
            _advance(progress, 66.0, f"{spec.name}: synced, RPO {group.actual_rpo_s} s")
            tagged = run.step(tag_checkpoint(replication, spec.name, INITIAL_CHECKPOINT_TAG))
            _advance(progress, 100.0, f"{spec.name}: protected")
            run.store.upsert_protection_group(tenant_id=tenant, name=spec.name, package=str(package.value),
                                              vpg_id=group.id, status=group.status,
                                              rpo_target_seconds=float(spec.rpo_seconds))
            if created.changed:  # untested until the next successful drill
                run.store.record_change(tenant_id=tenant, kind="protection_changed", subject=spec.name,
                                        description="; ".join(created.diff) or f"group {spec.name} changed")
            groups.append(GroupProtection(name=spec.name, group_id=group.id, status=group.status,
                                          changed=created.changed, rpo_target_s=spec.rpo_seconds,
                                          actual_rpo_s=group.actual_rpo_s,
                                          checkpoint_id=tagged.payload.id if tagged.payload else None))
        run.finish(f"Protection of {tenant}: {len(groups)} group(s) protected", sections=[_table(groups)],
                   detail={"groups": [g.name for g in groups]})
    return ProtectionResult(tenant=tenant, run_id=run.run_id, changed=run.changed, groups=groups, steps=run.steps)


def _group_progress(tenant: str, group: str) -> UUID | None:
    try:
        return create_progress_artifact(progress=0.0, key=f"protection-{tenant}-{group}".lower(),
                                        description=f"{group}: creating")  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - outside a flow run (``.fn()``) there is nowhere to publish
        return None


def _advance(progress: UUID | None, percent: float, description: str) -> None:
    if progress is not None:
        update_progress_artifact(progress, progress=percent, description=description)


def _table(groups: list[GroupProtection]) -> Section:
    rows = [[g.name, g.status, str(g.rpo_target_s), str(g.actual_rpo_s), g.checkpoint_id or "",
             "yes" if g.changed else "no"] for g in groups]
    return Section(heading="Protection groups", rows=rows,
                   headers=["Group", "Status", "RPO target (s)", "Actual RPO (s)", "Checkpoint", "Changed"])

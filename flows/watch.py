"""The ``watch-protection`` flow: watch a tenant's replication against its RPO and raise incidents.

Meant to run every few minutes per tenant (a schedule). Runbook, top to bottom:

1. validate the tenant's config (the groups and their SLA come from it);
2. for each protection group, read the group's status and actual RPO from the replication
   manager (``get_vpg_status``) and record a sample in the state store (``rpo_samples``);
   a group whose replication group does not exist yet is reported as *not protected*;
3. decide a breach: the actual RPO is above the group's RPO target (``sla.rpo``), or the group
   has not met its SLA for longer than ``grace_minutes`` (the samples say since when);
4. on a breach, open one incident per group (correlation id ``rpo-<tenant>-<group>``; a re-run
   finds it again) and, on every later run while it lasts, add a work note with the figures;
   once the group meets its SLA again, resolve the incident (a later breach reopens it).

It only reads and notifies: not exclusive, crash policy *none* (it records no objects).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from prefect import flow
from pydantic import BaseModel

from blocks.servicedesk import ServiceDeskCredentials
from draas.clients.replication import GroupState, ReplicationGroup, ReplicationNotFound
from draas.clients.servicedesk import IncidentCreate, IncidentState
from draas.models.results import StepResult
from draas.models.tenant import ProtectionGroup
from draas.reports.run_summary import Section
from draas.site import Site
from draas.state.tables import RpoSample
from flows.runbook import CrashPolicy, RunContext
from tasks.replication import ReplicationCredentials, get_vpg_status
from tasks.servicedesk import active_incident_number, add_work_note, open_incident, reopen_incident, resolve_incident
from tasks.tenant import validate_tenant_config

FLOW_NAME = "watch-protection"

#: ``status`` of a sample for a group whose replication group does not exist (yet).
NOT_PROTECTED = "not_protected"


class GroupWatch(BaseModel):
    """What one run saw of one protection group, and what it did about it."""

    group: str
    status: str
    substatus: str = ""
    actual_rpo_s: int | None = None
    target_rpo_s: int
    meeting_sla: bool = False
    not_meeting_since: datetime | None = None
    breach: bool = False
    reason: str = ""
    incident: str | None = None
    incident_action: str = "none"  # none | opened | noted | reopened | resolved


class WatchResult(BaseModel):
    tenant: str
    run_id: str
    groups: list[GroupWatch]

    @property
    def breaches(self) -> list[GroupWatch]:
        return [g for g in self.groups if g.breach]


def correlation_id(tenant: str, group: str) -> str:
    """The incident's correlation id for an RPO breach of ``group`` (one incident per group)."""
    return f"rpo-{tenant}-{group}"


def not_meeting_since(samples: Sequence[RpoSample]) -> datetime | None:
    """Start of the latest unbroken run of *not meeting SLA* samples (oldest first), or None.

    Only a replicating group that misses its SLA counts; a meeting, initialising or
    not-protected sample ends the run.
    """
    since: datetime | None = None
    for sample in samples:
        since = (since or sample.at) if sample.status == GroupState.NOT_MEETING_SLA.value else None
    return since


def decide_breach(actual_rpo_s: int | None, target_rpo_s: int, since: datetime | None, now: datetime,
                  grace_minutes: float) -> str:
    """Why the group is in breach (empty when it is not)."""
    if actual_rpo_s is not None and actual_rpo_s > target_rpo_s:
        return f"actual RPO {actual_rpo_s} s above the target of {target_rpo_s} s"
    if since is not None and now - since > timedelta(minutes=grace_minutes):
        return f"not meeting SLA since {since:%Y-%m-%d %H:%M:%SZ} (grace {grace_minutes:g} min)"
    return ""


@flow(name=FLOW_NAME)
def watch_protection(tenant: str, requested_by: str = "schedule", channel: str = "schedule",
                     config_dir: str | None = None, grace_minutes: float = 10.0) -> WatchResult:
    """Check every protection group of ``tenant`` against its RPO target; open, note or resolve incidents.

    Args:
        tenant: the tenant id (``<config_dir>/tenants/<tenant>.yaml``).
        requested_by: who asked (audit log).
        channel: how they asked (``schedule`` for the periodic watch).
        config_dir: directory with tenants/, tiers.yaml and optionally site.yaml.
        grace_minutes: how long a group may miss its SLA before that alone is a breach.

    Raises:
        ConfigInvalid: the config does not validate (audited as refused).
        Any adapter error other than a missing group: the run fails with the cause.
    """
    site = Site.for_config_dir(config_dir)
    run = RunContext(FLOW_NAME, action="watch_protection", tenant=tenant, requested_by=requested_by,
                     channel=channel, policy=CrashPolicy.NONE, title=f"Protection watch for {tenant}",
                     artifact_key="watch", site=site,
                     parameters={"tenant": tenant, "config_dir": config_dir, "grace_minutes": grace_minutes})
    with run.admission():
        valid = validate_tenant_config(tenant, config_dir)
        groups = valid.tenant.protection_groups
    with run.started(total_steps=1 + len(groups)):
        run.step(valid.step)
        replication, desk = site.replication_block(), site.servicedesk_block()
        watched = [_watch_group(run, replication, desk, tenant, group, grace_minutes) for group in groups]
        breaches = [w for w in watched if w.breach]
        title = (f"Protection watch for {tenant}: {len(breaches)} group(s) in breach" if breaches
                 else f"Protection watch for {tenant}: all groups within target")
        run.finish(title, sections=[_table(watched)],
                   detail={"breaches": [w.group for w in breaches]})
    return WatchResult(tenant=tenant, run_id=run.run_id, groups=watched)


def _watch_group(run: RunContext, replication: ReplicationCredentials, desk: ServiceDeskCredentials, tenant: str,
                 group: ProtectionGroup, grace_minutes: float) -> GroupWatch:
    """Sample one group, decide a breach, and open, note or resolve its incident."""
    target = int(group.sla.rpo.total_seconds())
    now = datetime.now(UTC)
    try:
        status: StepResult[ReplicationGroup] = run.step(get_vpg_status(replication, group.name))
    except ReplicationNotFound:
        run.step(StepResult(step="get_vpg_status", target=group.name).done(
            changed=False, detail={"state": NOT_PROTECTED}))
        run.store.record_rpo_sample(tenant_id=tenant, group=group.name, status=NOT_PROTECTED, target_rpo_s=target,
                                    meeting_sla=False, at=now)
        return GroupWatch(group=group.name, status=NOT_PROTECTED, target_rpo_s=target,
                          reason="no replication group: not protected (yet)")
    vpg = status.payload
    assert vpg is not None
    meeting = vpg.state == GroupState.MEETING_SLA
    actual = vpg.actual_rpo_s if vpg.replicating else None
    run.store.record_rpo_sample(tenant_id=tenant, group=group.name, status=vpg.state.value, substatus=vpg.substatus,
                                actual_rpo_s=actual, target_rpo_s=target, meeting_sla=meeting, at=now)
    lookback = timedelta(minutes=max(2 * grace_minutes, 60.0))
    since = not_meeting_since(run.store.rpo_samples(tenant, group.name, since=now - lookback))
    reason = decide_breach(actual, target, since, now, grace_minutes)
    watch = GroupWatch(group=group.name, status=vpg.state.value, substatus=vpg.substatus, actual_rpo_s=actual,
                       target_rpo_s=target, meeting_sla=meeting, not_meeting_since=since, breach=bool(reason),
                       reason=reason)
    cid = correlation_id(tenant, group.name)
    figures = (f"{vpg.status}/{vpg.substatus}, actual RPO {actual if actual is not None else '-'} s, "
               f"target {target} s")
    if reason:
        opened = run.step(open_incident(desk, IncidentCreate(
            short_description=f"RPO breach: {tenant} protection group {group.name}",
            description=f"{reason}. Status at {now:%Y-%m-%d %H:%M:%SZ}: {figures}. "
                        f"Raised by watch-protection run {run.run_id}.",
            urgency=2, impact=2, category="draas", correlation_id=cid,
            correlation_display=f"watch-protection {tenant}")))
        watch.incident = opened.payload.number if opened.payload is not None else None
        watch.incident_action = "opened"
        if not opened.changed:
            note = (f"Still in breach at {now:%Y-%m-%d %H:%M:%SZ}: {reason}; {figures} "
                    f"(watch-protection run {run.run_id}).")
            if opened.payload is not None and opened.payload.state == IncidentState.RESOLVED.value:
                run.step(reopen_incident(desk, cid, f"Breach again: {note}"))
                watch.incident_action = "reopened"
            else:
                run.step(add_work_note(desk, cid, note))
                watch.incident_action = "noted"
    elif meeting:
        number = active_incident_number(desk, cid)
        if number is not None:
            run.step(resolve_incident(desk, cid, close_notes=f"Recovered at {now:%Y-%m-%d %H:%M:%SZ}: {figures} "
                                                            f"(watch-protection run {run.run_id})."))
            watch.incident, watch.incident_action = number, "resolved"
    return watch


def _table(watched: list[GroupWatch]) -> Section:
    rows = [[w.group, f"{w.status}" + (f" ({w.substatus})" if w.substatus and w.substatus != "None" else ""),
             "-" if w.actual_rpo_s is None else str(w.actual_rpo_s), str(w.target_rpo_s),
             "yes" if w.breach else "no", w.reason, w.incident or "", w.incident_action]
            for w in watched]
    return Section(heading="Protection groups",
                   headers=["Group", "Status", "Actual RPO (s)", "Target (s)", "Breach", "Why", "Incident", "Action"],
                   rows=rows)

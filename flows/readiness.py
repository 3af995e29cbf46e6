"""The ``check-readiness`` flow: the drift check between drills.

Runbook, top to bottom:

1. validate the tenant's config and build the replication specs it asks for;
2. read the protected vCenter (the VMs in the tenant's folder, their disks and NICs), the
   replication manager (every group, its members, each of the tenant's groups against its
   spec) and the recovery site (the tenant's port groups, its resource pool);
3. compare them (:func:`draas.readiness.assess`) with the changes recorded since the last
   successful drill and the inventory the previous check saw;
4. record what this check saw change for the first time (a NIC moved, a disk added) as
   untested changes, store the report (a ``readiness`` report, JSON) and publish one table
   artifact per category and the summary.

Read-only towards every system: not exclusive (it runs beside a state-changing run of the
tenant), crash policy *none* (it records no objects). ``ready`` is False when any finding
blocks; the run still completes: the report is the result.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_table_artifact

from draas.readiness import (
    CATEGORIES,
    TITLES,
    Finding,
    ReadinessReport,
    UntestedChange,
    VmState,
    assess,
    recovery_networks,
)
from draas.reports.run_summary import Section
from draas.site import Site
from draas.state.store import StateStore
from flows.protection import admit
from flows.runbook import CrashPolicy, RunContext
from tasks.readiness import read_protected_inventory, read_recovery_inventory, read_replication_groups

FLOW_NAME = "check-readiness"
REPORT_KIND = "readiness"


def previous_inventory(store: StateStore, tenant: str) -> list[VmState] | None:
    """The VMs the latest stored readiness check of ``tenant`` saw (None: no check yet)."""
    reports = store.reports(tenant, kind=REPORT_KIND)
    if not reports:
        return None
    return ReadinessReport.model_validate_json(reports[-1].content).inventory


def latest_report(store: StateStore, tenant: str) -> ReadinessReport | None:
    """The latest stored readiness report of ``tenant``."""
    reports = store.reports(tenant, kind=REPORT_KIND)
    return ReadinessReport.model_validate_json(reports[-1].content) if reports else None


@flow(name=FLOW_NAME)
def check_readiness(tenant: str, requested_by: str = "operator", channel: str = "ui",
                    config_dir: str | None = None) -> ReadinessReport:
    """Compare config, protected vCenter, replication manager and recovery site; store and publish the findings.

    Args:
        tenant: the tenant id (``<config_dir>/tenants/<tenant>.yaml``).
        requested_by: who asked (audit log).
        channel: how they asked: ui, cli, webhook, schedule, api, service-desk.
        config_dir: directory with tenants/, tiers.yaml and optionally site.yaml.

    Returns:
        The report; ``ready`` is False when a finding blocks.

    Raises:
        ConfigInvalid: the config does not validate (audited as refused).
        ProtectionCapacityExceeded: the config exceeds a design-guide limit (audited as refused).
        Any adapter error: a system could not be read; nothing was stored.
    """
    site = Site.for_config_dir(config_dir)
    run = RunContext(FLOW_NAME, action="check_readiness", tenant=tenant, requested_by=requested_by,
                     channel=channel, policy=CrashPolicy.NONE, exclusive=False,
                     title=f"Readiness of {tenant}", artifact_key="readiness",
                     parameters={"tenant": tenant, "config_dir": config_dir}, site=site)
    with run.admission():
        validated, config, specs = admit(tenant, config_dir, site)
    with run.started(total_steps=4):
        run.step(validated)
        protected = run.step(read_protected_inventory(site.vcenter_block("protected"), config.folder)).payload
        manager = run.step(read_replication_groups(site.replication_block(), specs)).payload
        recovery = run.step(read_recovery_inventory(site.vcenter_block("recovery"), recovery_networks(config),
                                                    config.resource_pool, site.vcenter.recovery.cluster)).payload
        assert protected is not None and manager is not None and recovery is not None
        changes = [UntestedChange(kind=c.kind, subject=c.subject, description=c.description,
                                  detected_at=c.detected_at)
                   for c in run.store.changes_since_last_successful_drill(tenant)]
        report = assess(config, specs, protected, manager, recovery, changes=changes,
                        baseline=previous_inventory(run.store, tenant),
                        known_groups=[g.name for g in run.store.protection_groups(tenant)])
        for change in report.new_changes:  # first seen now: untested until the next successful drill
            kind = "nic_changed" if change.category == "nic_changes" else "disk_changed"
            row = run.store.record_change(tenant_id=tenant, kind=kind, subject=change.subject,
                                          description=change.detail)
            report.untested_changes.append(Finding(
                category="untested_changes", subject=change.subject, blocking=False,
                detail=f"{kind} at {row.detected_at:%Y-%m-%d %H:%M}Z: {change.detail}"))
        run.store.save_report(tenant_id=tenant, kind=REPORT_KIND, title=report.summary(),
                              content=report.model_dump_json(), fmt="json", run_id=run.run_id)
        _publish_tables(tenant, report)
        run.finish(f"Readiness of {tenant}: {'ready' if report.ready else 'NOT ready'}",
                   sections=sections(report),
                   detail={"ready": report.ready, "blocking": len(report.blocking)})
    return report


def sections(report: ReadinessReport) -> list[Section]:
    """The summary's sections: the verdict, then one table per category (empty ones say so)."""
    out = [Section(heading="Verdict", body=report.summary())]
    for category in CATEGORIES:
        out.append(Section(heading=TITLES[category], headers=["Subject", "Finding", "Blocks"],
                           rows=[[f.subject, f.detail, "yes" if f.blocking else "no"]
                                 for f in report.findings(category)], empty="none"))
    return out


def _publish_tables(tenant: str, report: ReadinessReport) -> None:
    """One table artifact per category (keys ``readiness-<tenant>-<category>``)."""
    for category in CATEGORIES:
        rows = [{"subject": f.subject, "finding": f.detail, "blocking": f.blocking}
                for f in report.findings(category)]
        try:
            create_table_artifact(table=rows or [{"subject": "", "finding": "none", "blocking": False}],
                                  key=f"readiness-{tenant}-{category.replace('_', '-')}".lower(),
                                  description=f"{tenant}: {TITLES[category]}")
        except Exception:  # noqa: BLE001, S110 - outside a flow run (``.fn()``) there is nowhere to publish
            pass


__all__ = ["FLOW_NAME", "REPORT_KIND", "check_readiness", "latest_report", "previous_inventory", "sections"]

"""``draas deploy``: one deployment per flow and tenant (``<flow>/<tenant>``) on a process work pool.

Each deployment carries the tenant's values as defaults (``tenant``; for scheduled flows a
``requested_by`` who holds the flow's role and ``channel="schedule"``), typed parameters (the
flow's signature, so the Prefect UI renders a form with descriptions), the tags ``draas`` and
``tenant:<id>``, and the schedules of :mod:`deployments.schedules`: the drill twice per twelve
months, watch-protection every five minutes, check-readiness daily; the sweeper hourly (one
deployment ``sweep-orphans/all``). At most one state-changing run per tenant runs at a time
(the core's lease); state-changing deployments also carry a concurrency limit of 1 so the UI
shows it. A tenant removed from the configs has its deployments deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployments.schedules import READINESS_AT, WATCH_EVERY, next_drills, rrule_once
from draas.models.tenant import TenantConfig

TAG = "draas"
#: Flows that only read and notify: no concurrency limit on their deployments.
READ_ONLY = frozenset({"watch-protection", "check-readiness"})
#: The role whose holder a scheduled run is requested by.
ROLE_OF = {"drill": "request_drill", "failover": "invoke_dr", "failback": "failback"}


@dataclass
class DeploymentSpec:
    flow: str
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: list[dict[str, Any]] = field(default_factory=list)  # {"kind": "rrule"|"interval"|"cron", ...}
    tags: list[str] = field(default_factory=list)
    description: str = ""
    concurrency_limit: int | None = 1

    @property
    def full_name(self) -> str:
        return f"{self.flow}/{self.name}"


def _person_with(tenant: TenantConfig, role: str) -> str | None:
    for person in tenant.authorised_persons:
        if role in {getattr(r, "value", r) for r in person.roles}:
            return person.email
    return None


def plan_deployments(tenants: list[TenantConfig], flows: dict[str, str], tenantless: frozenset[str],
                     now: Any = None) -> list[DeploymentSpec]:
    """Every deployment the configs call for (pure: no server)."""
    specs: list[DeploymentSpec] = []
    for flow in sorted(flows):
        if flow in tenantless:
            schedules = [{"kind": "interval", "seconds": 3600}] if flow == "sweep-orphans" else []
            specs.append(DeploymentSpec(flow=flow, name="all", tags=[TAG], schedules=schedules,
                                        parameters={"requested_by": "schedule"} if flow == "sweep-orphans" else {},
                                        description=f"{flow} across tenants", concurrency_limit=1))
    for tenant in sorted(tenants, key=lambda t: t.id):
        for flow in sorted(flows):
            if flow in tenantless:
                continue
            params: dict[str, Any] = {"tenant": tenant.id}
            schedules: list[dict[str, Any]] = []
            if flow == "drill":
                who = _person_with(tenant, ROLE_OF["drill"])
                if who:
                    params["requested_by"] = who
                schedules = [{"kind": "rrule", "rrule": rrule_once(slot.local.replace(tzinfo=None)),
                              "timezone": tenant.timezone, "slot": slot.utc.isoformat()}
                             for slot in next_drills(tenant, now)]
            elif flow == "watch-protection":
                schedules = [{"kind": "interval", "seconds": int(WATCH_EVERY.total_seconds())}]
            elif flow == "check-readiness":
                schedules = [{"kind": "cron", "cron": f"{READINESS_AT.minute} {READINESS_AT.hour} * * *",
                              "timezone": tenant.timezone}]
            specs.append(DeploymentSpec(
                flow=flow, name=tenant.id, parameters=params, schedules=schedules,
                tags=[TAG, f"tenant:{tenant.id}"], description=f"{flow} for {tenant.display_name}",
                concurrency_limit=None if flow in READ_ONLY else 1))
    return specs


def _schedule(entry: dict[str, Any]) -> Any:
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule

    if entry["kind"] == "rrule":
        return RRuleSchedule(rrule=entry["rrule"], timezone=entry["timezone"])
    if entry["kind"] == "cron":
        return CronSchedule(cron=entry["cron"], timezone=entry.get("timezone"))
    from datetime import timedelta

    return IntervalSchedule(interval=timedelta(seconds=entry["seconds"]))


def ensure_work_pool(name: str) -> bool:
    """Create the process work pool ``name`` when absent; True when created."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            return True


def existing(tag: str = TAG) -> dict[str, Any]:
    """The server's deployments carrying ``tag``, by ``<flow>/<name>``."""
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
    from prefect.client.schemas.sorting import DeploymentSort

    with get_client(sync_client=True) as client:
        found = []
        while True:  # the API pages at 200
            page = client.read_deployments(deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[tag])),
                                           limit=200, offset=len(found), sort=DeploymentSort.NAME_ASC)
            found += page
            if len(page) < 200:
                break
        flows = {fid: client.read_flow(fid).name for fid in {d.flow_id for d in found}}
    return {f"{flows.get(d.flow_id, '?')}/{d.name}": d for d in found}


def deploy(specs: list[DeploymentSpec], work_pool: str, *, dry_run: bool = False,
           project_root: Path | None = None) -> dict[str, list[str]]:
    """Create or update every spec's deployment and delete the product's deployments no spec names.

    Returns ``{"create": [...], "update": [...], "delete": [...]}`` (what was, or with
    ``dry_run`` would be, done).
    """
    import os

    from prefect import get_client

    from flows import load_flow

    have = existing()
    wanted = {s.full_name: s for s in specs}
    changes = {"create": sorted(n for n in wanted if n not in have), "update": sorted(n for n in wanted if n in have),
               "delete": sorted(n for n in have if n not in wanted)}
    if dry_run:
        return changes
    ensure_work_pool(work_pool)
    root = project_root or Path(__file__).resolve().parent.parent
    cwd = os.getcwd()
    os.chdir(root)  # entrypoints are relative to the project, where the worker runs them
    try:
        for spec in specs:
            flow = load_flow(spec.flow)
            deployment = flow.to_deployment(
                name=spec.name, parameters=spec.parameters, tags=spec.tags, description=spec.description,
                schedules=[_schedule(s) for s in spec.schedules] or None, work_pool_name=work_pool,
                concurrency_limit=spec.concurrency_limit,
                job_variables=job_variables(root))
            deployment.apply(work_pool_name=work_pool)
    finally:
        os.chdir(cwd)
    with get_client(sync_client=True) as client:
        for name in changes["delete"]:
            client.delete_deployment(have[name].id)
    return changes


def job_variables(root: Path) -> dict[str, str]:
    """What the process worker needs to start one of our flow runs quickly.

    ``working_dir``: a process worker runs flows in a scratch directory unless told where the project is.
    ``command``: without one, Prefect 3.8's process worker first starts a workspace supervisor (a Python
    process that imports Prefect, about 1.7 s here) which then starts the engine process; naming the
    engine command starts the engine directly, with this interpreter, and the run reaches Running that
    much sooner. The engine still loads the flow from the deployment's entrypoint in ``working_dir``.
    """
    import shlex
    import sys

    return {"working_dir": str(root), "command": f"{shlex.quote(sys.executable)} -m prefect.engine"}


def write_prefect_yaml(specs: list[DeploymentSpec], work_pool: str, path: Path) -> Path:
    """An equivalent prefect.yaml for teams that deploy with ``prefect deploy --all``."""
    import yaml

    from flows import FLOWS

    deployments = []
    for spec in specs:
        module, _, fn = FLOWS[spec.flow].partition(":")
        entry: dict[str, Any] = {
            "name": spec.name, "entrypoint": f"{module.replace('.', '/')}.py:{fn}", "tags": spec.tags,
            "description": spec.description, "parameters": spec.parameters,
            "work_pool": {"name": work_pool},
        }
        if spec.concurrency_limit is not None:
            entry["concurrency_limit"] = spec.concurrency_limit
        if spec.schedules:
            entry["schedules"] = [
                {"rrule": s["rrule"], "timezone": s["timezone"]} if s["kind"] == "rrule" else
                {"cron": s["cron"], "timezone": s.get("timezone")} if s["kind"] == "cron" else
                {"interval": s["seconds"]} for s in spec.schedules]
        deployments.append(entry)
    doc = {"name": "draas", "prefect-version": "3.8.8", "pull": [{"prefect.deployments.steps.set_working_directory": {
        "directory": "{{ $DRAAS_PROJECT_DIR }}"}}], "deployments": deployments}
    path.write_text("# Generated by `draas deploy --prefect-yaml`: per-tenant deployments of every flow.\n"
                    + yaml.safe_dump(doc, sort_keys=False))
    return path

"""The ``onboard-tenant`` flow: from a tenant's YAML file to a tenant the provider can protect.

Runbook, top to bottom:

1. validate the tenant's config (and its overlaps with every other tenant);
2. check the service definition's prerequisites (IPsec firewall, static public peer, latency,
   authorised persons, bandwidth);
3. record the tenant in the state store;
4. create its Secret blocks (webhook signing key, IPsec PSK) where absent;
5. open the onboarding change record in the service desk (correlation id ``onboard-<tenant>``);
6. generate the DR Plan (Markdown and HTML files, state store, ``dr-plan-<tenant>`` artifact).

Every step is idempotent: a second run reports ``changed=False`` for all of them (the change
record is found again, secrets are kept, the plan is not rewritten when nothing changed).

Bad input changes nothing: validation runs before anything is written. A refused request
leaves exactly one audit entry (outcome ``refused``, with the reason and problems) and no flow run,
step, tenant, secret, change record or report. Once the config is valid the run is recorded
(``flow_runs``, ``steps``) with audit entries ``accepted`` and then ``succeeded`` or
``failed``; a failure marks the run Failed with the error and re-raises it.
"""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel

from draas.clients.servicedesk import ChangeRequestCreate
from draas.models.results import StepResult
from draas.models.tenant import TenantConfig
from draas.reports.run_summary import Section
from draas.site import Site
from flows.runbook import CrashPolicy, RunContext
from tasks.servicedesk import open_change_record
from tasks.tenant import (
    TENANT_ID,
    check_tenant_prerequisites,
    ensure_tenant_secrets,
    record_tenant,
    validate_tenant_config,
    write_dr_plan,
)

FLOW_NAME = "onboard-tenant"
ACTION = "onboard_tenant"
STEPS = ("validate_tenant_config", "check_tenant_prerequisites", "record_tenant",
         "ensure_tenant_secrets", "open_change_record", "write_dr_plan")


class OnboardResult(BaseModel):
    """What an onboarding run did."""

    tenant: str
    run_id: str
    changed: bool
    """True when any step changed something (False on a re-run with nothing new)."""
    change_number: str | None
    dr_plan_markdown: str
    dr_plan_html: str
    steps: list[StepResult]


def _change_request(tenant: TenantConfig) -> ChangeRequestCreate:
    site = tenant.protected_site
    return ChangeRequestCreate(
        short_description=f"Onboard DRaaS tenant {tenant.display_name} ({tenant.id})"[:160],
        description=(f"Onboard {tenant.display_name} to the DRaaS service: {tenant.network.tier} container, "
                     f"{len(tenant.machines)} protected machine(s) in {len(tenant.protection_groups)} "
                     f"protection group(s), protected site {site.name}."),
        type="standard",
        implementation_plan="onboard-tenant flow: validate config, check prerequisites, record tenant, "
                            "issue tenant secrets, generate the DR plan; then preprovision-container.",
        backout_plan="offboard-tenant flow removes everything the product created for the tenant.",
        correlation_id=f"onboard-{tenant.id}",
        correlation_display="draas onboard-tenant",
    )


def _details(steps: list[StepResult]) -> list[Section]:
    """The onboarding specifics under the summary's step table."""
    sections: list[Section] = []
    by_name = {s.step: s for s in steps}
    if prereq := by_name.get("check_tenant_prerequisites"):
        rows = []
        for name, check in prereq.detail.items():
            value = check["value"]
            if isinstance(value, dict):  # latency: show the number and where it came from
                value = f"{value.get('median_ms')} ms ({value.get('source')})"
            rows.append([name, str(value), str(check["requirement"])])
        sections.append(Section(heading="Prerequisites", headers=["Check", "Value", "Requirement"], rows=rows))
    if sec := by_name.get("ensure_tenant_secrets"):
        body = "\n".join(f"- `{n}`: {'created' if n in sec.detail['created'] else 'kept (existed)'}"
                         for n in sec.detail["blocks"].values())
        sections.append(Section(heading="Secret blocks", body=body))
    if change := by_name.get("open_change_record"):
        sections.append(Section(heading="Change record",
                                body=f"**{change.detail.get('number', '?')}** (`{change.target}`)"))
    if plan := by_name.get("write_dr_plan"):
        sections.append(Section(heading="DR plan", body=(f"`{plan.detail['markdown']}`, `{plan.detail['html']}` "
                                                         f"(config digest {plan.detail['config_digest']})")))
    return sections


@flow(name=FLOW_NAME)
def onboard_tenant(tenant: str, requested_by: str = "operator", channel: str = "ui",
                   config_dir: str | None = None, output_dir: str = "out") -> OnboardResult:
    """Onboard ``tenant`` (its id in ``<config_dir>/tenants/<tenant>.yaml``).

    Args:
        tenant: the tenant id.
        requested_by: who asked (recorded in the audit log).
        channel: how they asked: ui, cli, webhook, schedule, api, service-desk.
        config_dir: directory with tenants/ and tiers.yaml (default ``$DRAAS_CONFIG_DIR`` or configs/);
            a site.yaml there is used instead of the default site file.
        output_dir: where ``<tenant>/dr-plan.md`` and ``.html`` are written.

    Raises:
        ConfigInvalid: the config does not validate; nothing but the audit entry (refused) was written.
        TenantPrerequisitesFailed: prerequisites not met; the run is recorded Failed.
    """
    run = RunContext(FLOW_NAME, action=ACTION, tenant=tenant if TENANT_ID.fullmatch(tenant) else None,
                     requested_by=requested_by, channel=channel, policy=CrashPolicy.NONE, kind="onboard",
                     title=f"Onboarding {tenant}", artifact_key="onboard",
                     parameters={"tenant": tenant, "requested_by": requested_by, "channel": channel,
                                 "config_dir": config_dir, "output_dir": output_dir})
    with run.admission():
        valid = validate_tenant_config(tenant, config_dir)
    with run.started(total_steps=len(STEPS)):
        run.step(valid.step)
        run.step(check_tenant_prerequisites(valid.tenant))
        run.step(record_tenant(valid.tenant))
        run.step(ensure_tenant_secrets(valid.tenant))
        servicedesk = Site.for_config_dir(config_dir).servicedesk_block()
        change = run.step(open_change_record(servicedesk, _change_request(valid.tenant)))
        plan = run.step(write_dr_plan(valid.tenant, valid.catalog, output_dir, run.run_id))
        number = change.payload.number if change.payload else None
        run.finish(f"Onboarding {tenant}: done", _details(run.steps), {"change_number": number})
    return OnboardResult(tenant=tenant, run_id=run.run_id, changed=run.changed, change_number=number,
                         dr_plan_markdown=plan.value().markdown, dr_plan_html=plan.value().html, steps=run.steps)

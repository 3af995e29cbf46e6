"""Tasks of the failover's network cutover: DNS to the recovery addresses, public IPs, remote access.

Each task applies one change of a :class:`draas.cutover.CutoverPlan`, check-then-act, and
records it in the ledger *before* it acts, so that a rollback (or the failback) undoes
exactly what the cutover changed, through the ledger's handlers like every other removal:

- :func:`apply_dns_change` reads the RRset the server serves, records the name with that
  RRset as ``previous`` (draas/ledger/dns.py restores it on removal; a name that had no
  RRset is deleted again), then replaces the RRset with the recovery addresses.
- :func:`apply_device_change` reads the running config of the device (or ASA context),
  records only the lines it lacks (a line that was there before the cutover is not the
  cutover's to remove), then pushes them (napalm-style merge) and saves.

A re-run changes nothing and records nothing new: :meth:`StateStore.record_object` returns
the active record a first (perhaps killed) run wrote, with the previous state it saw, and
the systems already hold the lines and addresses. Records carry ``identity["purpose"] =
"cutover"``; :func:`cutover_records` finds them for the rollback or the failback, which hand
them to :func:`draas.ledger.remove_records` with :func:`tasks.ledger.remove_recorded_object`.
No line of the cutover holds a secret (draas.cutover proves it when planning).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prefect import task
from prefect.cache_policies import NO_CACHE

from draas import ledger
from draas.clients.cisco_config import missing, parse_config
from draas.cutover import PURPOSE, CutoverPlan, DeviceChange, DnsRecordChange
from draas.ledger.dns import KIND as DNS_KIND
from draas.ledger.dns import record_identity
from draas.models.results import StepResult
from draas.sessions import session
from draas.site import Site
from draas.state.store import StateStore
from draas.state.tables import ProvisionedObject
from tasks.common import RETRY_POLICY
from tasks.common import task_logger as _log

#: Kind prefix of the Cisco records the cutover writes (``cutover:<template>``).
CISCO_KIND_PREFIX = "cutover:"


def _cisco_kind(change: DeviceChange) -> str:
    return f"{CISCO_KIND_PREFIX}{change.template}"


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def apply_dns_change(tenant_id: str, run_id: str, change: DnsRecordChange, site: Site | None = None,
                     database_url: str | None = None, dry_run: bool = False) -> StepResult:
    """Make the zone's primary serve ``change`` (recovery addresses), recorded with the RRset it replaces.

    Returns ``changed=False`` when the server already serves it. With ``dry_run`` the diff is
    returned and nothing is recorded or sent.

    Raises:
        DnsError: from the adapter (DnsTransientError is retried).
    """
    record = change.record
    result: StepResult[None] = StepResult(step="apply_dns_change", target=change.label, dry_run=dry_run)
    site = site or Site.for_config_dir(None)
    with session(site.dns_block()) as client:
        current = client.lookup(record.zone, record.name, record.rtype)
        row_id = None
        if not dry_run:
            store = StateStore(database_url)
            row = store.record_object(
                tenant_id=tenant_id, run_id=run_id, system=ledger.DNS, site="recovery", kind=DNS_KIND,
                name=record.fqdn,
                identity={**record_identity(record.zone, record.name, record.rtype, record.values, record.ttl,
                                            previous=current), "purpose": PURPOSE})
            row_id = row.id
        outcome = client.upsert(record, dry_run=dry_run)
    _log().info("%s %s: %s", "would point" if dry_run else "pointed", change.label,
                "changed" if outcome.changed else "already served")
    previous = {"values": current.values, "ttl": current.ttl} if current is not None else None
    return result.done(changed=outcome.changed, diff=outcome.diff(),
                       detail={"record": row_id, "values": record.values, "ttl": record.ttl, "previous": previous,
                               "machines": change.machines})


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def apply_device_change(tenant_id: str, run_id: str, change: DeviceChange, site: Site | None = None,
                        database_url: str | None = None, dry_run: bool = False) -> StepResult:
    """Push the cutover lines of one device (or ASA context) that it lacks, recorded before the push.

    Only the lines missing at the first attempt are recorded (with the parents they sit in,
    as context): removal takes away what the cutover added and nothing that was there before.
    Returns ``changed=False`` when the device already holds every line.

    Raises:
        CiscoError: from the adapter (a rejected line is reverted by the adapter; transient errors retried).
    """
    result: StepResult[None] = StepResult(step="apply_device_change", target=f"{change.purpose} {change.label}",
                                          dry_run=dry_run)
    site = site or Site.for_config_dir(None)
    row_id = None
    with session(site.device_block(change.device)) as client:
        if not dry_run:
            store = StateStore(database_url)
            kind = _cisco_kind(change)
            row = store.find_object(tenant_id=tenant_id, system=ledger.CISCO, kind=kind, name=change.label,
                                    device=change.device, context=change.context)
            if row is None:
                lacking = missing(parse_config(change.lines), client.running_tree(change.context))
                if lacking.children:
                    row = store.record_object(
                        tenant_id=tenant_id, run_id=run_id, system=ledger.CISCO, site="recovery", kind=kind,
                        name=change.label, device=change.device, context=change.context,
                        lines=lacking.lines(" "),
                        identity={"owned_context": False, "role": change.role, "platform": change.platform,
                                  "purpose": PURPOSE, "change": change.purpose})
            row_id = row.id if row is not None else None
        outcome = client.apply(change.text, context=change.context, dry_run=dry_run)
    _log().info("%s %s on %s: %s", "would apply" if dry_run else "applied", change.purpose, change.label,
                f"{len(outcome.commands)} command(s)" if outcome.commands else "nothing missing")
    return result.done(changed=outcome.changed, diff=outcome.diff,
                       detail={"record": row_id, "template": change.template, "lines": len(change.lines)})


def apply_cutover(tenant_id: str, run_id: str, plan: CutoverPlan, site: Site | None = None,
                  database_url: str | None = None, dry_run: bool = False,
                  step: Callable[[StepResult], StepResult] | None = None) -> list[StepResult]:
    """Apply the whole plan: firewall (public IPs), remote-access VPN, then DNS; one task per change.

    ``step`` receives each result as it comes (a flow passes ``run.step`` to record and show
    progress). The first failure raises; what was recorded until then is in the ledger.
    """
    results: list[StepResult] = []
    for device_change in plan.device_changes():
        res = apply_device_change(tenant_id, run_id, device_change, site, database_url, dry_run)
        results.append(step(res) if step else res)
    for dns_change in plan.dns:
        res = apply_dns_change(tenant_id, run_id, dns_change, site, database_url, dry_run)
        results.append(step(res) if step else res)
    return results


def cutover_records(store: StateStore, tenant_id: str,
                    run_ids: str | Iterable[str] | None = None) -> list[ProvisionedObject]:
    """The tenant's active cutover records (of ``run_ids`` only, when given), newest first.

    A resumed failover adopts the records of the run it resumes (recording again returns the
    first record), so pass every run of the failover, or None for all of the tenant's (failback).
    """
    wanted = {run_ids} if isinstance(run_ids, str) else (set(run_ids) if run_ids is not None else None)
    out = []
    for rec in store.objects(tenant_id):
        if (rec.identity or {}).get("purpose") != PURPOSE:
            continue
        if rec.system not in (ledger.DNS, ledger.CISCO):
            continue
        if wanted is not None and rec.run_id not in wanted:
            continue
        out.append(rec)
    return out

"""DNS tasks: replace-or-create, delete and verify records on the zone's primary server.

Each task reads before it writes, so running it again changes nothing. Caching is off:
a cached "changed" result must never stand in for a fresh check of the server.
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.dns import DnsServerCredentials
from draas.clients.dns import DnsRecord, DnsVerifyFailed, RecordType
from draas.models.results import StepResult
from draas.sessions import session
from tasks.common import RETRY_POLICY
from tasks.common import task_logger as _log


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def upsert_dns_record(credentials: DnsServerCredentials, record: DnsRecord, dry_run: bool = False) -> StepResult:
    """Make the server serve exactly ``record``; ``changed=False`` when it already did.

    With ``dry_run`` the diff is returned and nothing is sent.
    """
    result: StepResult[None] = StepResult(step="upsert_dns_record", target=f"{record.fqdn} {record.rtype}", dry_run=dry_run)
    with session(credentials) as client:
        change = client.upsert(record, dry_run=dry_run)
    _log().info("%s %s %s: %s", "would set" if dry_run else "set", record.fqdn, record.rtype,
                          "changed" if change.changed else "already up to date")
    return result.done(changed=change.changed, diff=change.diff(), detail=change.model_dump(mode="json"))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def delete_dns_record(credentials: DnsServerCredentials, zone: str, name: str, rtype: RecordType,
                      dry_run: bool = False) -> StepResult:
    """Remove the ``rtype`` RRset at ``name``; ``changed=False`` when there was none."""
    with session(credentials) as client:
        change = client.delete(zone, name, rtype, dry_run=dry_run)
    result: StepResult[None] = StepResult(step="delete_dns_record", target=f"{change.fqdn} {rtype}", dry_run=dry_run)
    _log().info("%s %s %s: %s", "would delete" if dry_run else "delete", change.fqdn, rtype,
                          "removed" if change.changed else "absent already")
    return result.done(changed=change.changed, diff=change.diff(), detail=change.model_dump(mode="json"))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def verify_dns_record(credentials: DnsServerCredentials, record: DnsRecord, deadline_s: float = 30.0,
                      interval_s: float = 1.0) -> StepResult:
    """Poll the server until it serves exactly ``record`` (values and TTL), up to ``deadline_s``.

    Raises:
        DnsVerifyFailed: the server still serves something else at the deadline.
    """
    result: StepResult[None] = StepResult(step="verify_dns_record", target=f"{record.fqdn} {record.rtype}")
    deadline = time.monotonic() + deadline_s
    with session(credentials) as client:
        while True:
            check = client.verify(record)
            if check.matches or time.monotonic() >= deadline:
                break
            time.sleep(min(interval_s, max(deadline - time.monotonic(), 0.0)))
    if not check.matches:
        found = f"{check.found.values} (TTL {check.found.ttl})" if check.found else "nothing"
        raise DnsVerifyFailed(f"{record.fqdn} {record.rtype}: server {credentials.server}:{credentials.port} "
                              f"serves {found}, expected {record.values} (TTL {record.ttl}) "
                              f"after {deadline_s:g} s")
    return result.done(changed=False, detail=check.model_dump(mode="json"))

"""Service desk tasks: open change records and incidents, add work notes, resolve, notify.

Records are found again by their ``correlation_id``, so a retried or re-run step updates the
record it opened the first time instead of opening another one. Caching is off: every run
checks the service desk afresh.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.servicedesk import ServiceDeskCredentials
from draas.clients.servicedesk import (
    CHANGE_REQUEST,
    INCIDENT,
    ChangeRequestCreate,
    IncidentCreate,
    IncidentState,
    Notification,
    ServiceDeskClient,
    ServiceDeskRecord,
    ServiceDeskRecordNotFound,
    Table,
)
from draas.models.results import StepResult
from draas.sessions import session
from tasks.common import RETRY_POLICY
from tasks.common import task_logger as _log


def _detail(record: ServiceDeskRecord) -> dict[str, str]:
    return {"table": record.table, "sys_id": record.sys_id, "number": record.number, "state": record.state,
            "correlation_id": record.correlation_id}


def _find(client: ServiceDeskClient, table: Table, correlation_id: str) -> ServiceDeskRecord:
    record = client.find_by_correlation_id(table, correlation_id)
    if record is None:
        raise ServiceDeskRecordNotFound(f"no {table} with correlation_id {correlation_id!r}")
    return record




def _open_record(credentials: ServiceDeskCredentials, table: Table, record: ChangeRequestCreate | IncidentCreate,
                 step: str, dry_run: bool) -> StepResult[ServiceDeskRecord]:
    """Open a ``table`` record for ``record.correlation_id`` unless one exists already (payload: the record)."""
    if not record.correlation_id:
        raise ValueError(f"{step} needs a correlation_id (it makes the step idempotent)")
    result: StepResult[ServiceDeskRecord] = StepResult(step=step, target=record.correlation_id, dry_run=dry_run)
    with session(credentials) as client:
        found = client.find_by_correlation_id(table, record.correlation_id)
        if found is not None:
            return result.done(changed=False, detail=_detail(found), payload=found)
        if dry_run:
            return result.done(changed=True, diff=[f"+ {table} {record.short_description!r}"])
        created = client.create(table, record.payload())
    _log().info("opened %s %s for %s", table, created.number, record.correlation_id)
    return result.done(changed=True, diff=[f"+ {table} {created.number}"], detail=_detail(created), payload=created)


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def open_change_record(credentials: ServiceDeskCredentials, change: ChangeRequestCreate,
                       dry_run: bool = False) -> StepResult[ServiceDeskRecord]:
    """Open a change record for ``change.correlation_id`` unless one exists already."""
    return _open_record(credentials, CHANGE_REQUEST, change, "open_change_record", dry_run)


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def open_incident(credentials: ServiceDeskCredentials, incident: IncidentCreate,
                  dry_run: bool = False) -> StepResult:
    """Open an incident for ``incident.correlation_id`` unless one exists already."""
    return _open_record(credentials, INCIDENT, incident, "open_incident", dry_run)


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def add_work_note(credentials: ServiceDeskCredentials, correlation_id: str, note: str,
                  table: Table = INCIDENT, dry_run: bool = False) -> StepResult:
    """Append ``note`` to the record's work notes unless the same note is there already.

    Put something unique in the note (a run id, a step name) when the same text may
    legitimately be written twice.
    """
    result: StepResult[None] = StepResult(step="add_work_note", target=f"{table}:{correlation_id}", dry_run=dry_run)
    with session(credentials) as client:
        record = _find(client, table, correlation_id)
        if any(n.value.strip() == note.strip() for n in client.work_notes(table, record.sys_id)):
            return result.done(changed=False, detail=_detail(record))
        if not dry_run:
            record = client.add_work_note(table, record.sys_id, note)
    return result.done(changed=True, diff=[f"+ work note on {record.number}"], detail=_detail(record))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def resolve_incident(credentials: ServiceDeskCredentials, correlation_id: str, close_notes: str,
                     close_code: str = "Solved (Permanently)", dry_run: bool = False) -> StepResult:
    """Resolve the incident opened for ``correlation_id``; no-op when it is resolved or closed."""
    result: StepResult[None] = StepResult(step="resolve_incident", target=f"{INCIDENT}:{correlation_id}", dry_run=dry_run)
    with session(credentials) as client:
        record = _find(client, INCIDENT, correlation_id)
        incident = client.get_incident(record.sys_id)
        if incident.is_resolved:
            return result.done(changed=False, detail=_detail(incident))
        if not dry_run:
            incident = client.resolve_incident(incident.sys_id, close_notes, close_code)
            _log().info("resolved incident %s", incident.number)
    return result.done(changed=True, diff=[f"~ {incident.number} state -> resolved"], detail=_detail(incident))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def active_incident_number(credentials: ServiceDeskCredentials, correlation_id: str) -> str | None:
    """The number of the unresolved incident carrying ``correlation_id``, or None (a read)."""
    with session(credentials) as client:
        found = client.find_by_correlation_id(INCIDENT, correlation_id)
        if found is None or client.get_incident(found.sys_id).is_resolved:
            return None
        return found.number


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def reopen_incident(credentials: ServiceDeskCredentials, correlation_id: str, note: str,
                    dry_run: bool = False) -> StepResult:
    """Put the resolved incident of ``correlation_id`` back in progress with ``note``; no-op when it is active.

    A breach after the group had recovered reopens the group's incident: find-or-open finds the
    resolved one, so there is still one incident per correlation id.
    """
    result: StepResult[None] = StepResult(step="reopen_incident", target=f"{INCIDENT}:{correlation_id}", dry_run=dry_run)
    with session(credentials) as client:
        record = _find(client, INCIDENT, correlation_id)
        incident = client.get_incident(record.sys_id)
        if incident.state != IncidentState.RESOLVED:  # active (or closed for good: nothing to reopen)
            return result.done(changed=False, detail=_detail(incident))
        if not dry_run:
            incident = client.update_incident(incident.sys_id, {"state": IncidentState.IN_PROGRESS.value,
                                                                "active": "true", "work_notes": note})
            _log().info("reopened incident %s", incident.number)
    return result.done(changed=True, diff=[f"~ {incident.number} state -> in progress"], detail=_detail(incident))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def close_change_record(credentials: ServiceDeskCredentials, correlation_id: str, close_notes: str,
                        close_code: str = "successful", dry_run: bool = False) -> StepResult:
    """Close the change record opened for ``correlation_id``; no-op when it is closed already."""
    result: StepResult[None] = StepResult(step="close_change_record", target=f"{CHANGE_REQUEST}:{correlation_id}", dry_run=dry_run)
    with session(credentials) as client:
        record = _find(client, CHANGE_REQUEST, correlation_id)
        change = client.get_change_request(record.sys_id)
        if change.is_closed:
            return result.done(changed=False, detail=_detail(change))
        if not dry_run:
            change = client.close_change_request(change.sys_id, close_notes, close_code)
            _log().info("closed change %s (%s)", change.number, close_code)
    return result.done(changed=True, diff=[f"~ {change.number} state -> closed"], detail=_detail(change))


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def send_notification(credentials: ServiceDeskCredentials, notification: Notification,
                      dry_run: bool = False) -> StepResult:
    """Send a plain notification on the configured channels (at least once: a retry may repeat it)."""
    result: StepResult[None] = StepResult(step="send_notification", target=notification.event, dry_run=dry_run)
    if dry_run:
        return result.done(changed=True, diff=[f"+ notification {notification.subject!r}"])
    with credentials.get_notifier() as notifier:
        receipt = notifier.send(notification)
    return result.done(changed=True, diff=[f"+ notification {notification.subject!r}"],
                       detail=receipt.model_dump(mode="json"))


def ticket_table(number: str) -> Table:
    """The table a ticket number lives in: ``CHG...`` change requests, everything else incidents."""
    return CHANGE_REQUEST if number.strip().upper().startswith("CHG") else INCIDENT


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def update_ticket(credentials: ServiceDeskCredentials, number: str, note: str, *, resolve: bool,
                  close_notes: str = "") -> StepResult:
    """The requester's ticket (by number) gets ``note`` once; on ``resolve`` it is resolved (incident) or
    closed successful (change request), unless it is already."""
    table = ticket_table(number)
    result: StepResult[None] = StepResult(step="update_ticket", target=f"{table}:{number}")
    with session(credentials) as client:
        found = client.query(table, {"number": number.strip()}, limit=1)
        if not found:
            raise ServiceDeskRecordNotFound(f"no {table} numbered {number!r}")
        record = found[0]
        changed = False
        if not any(n.value.strip() == note.strip() for n in client.work_notes(table, record.sys_id)):
            client.add_work_note(table, record.sys_id, note)
            changed = True
        if resolve and table == INCIDENT and not client.get_incident(record.sys_id).is_resolved:
            client.resolve_incident(record.sys_id, close_notes or note)
            changed = True
        elif resolve and table == CHANGE_REQUEST and not client.get_change_request(record.sys_id).is_closed:
            client.close_change_request(record.sys_id, close_notes or note, "successful")
            changed = True
    _log().info("ticket %s updated%s", number, " and resolved" if resolve else "")
    return result.done(changed=changed, diff=[f"~ {number}: work note{', resolved' if resolve else ''}"],
                       detail={"table": table, "number": number, "resolved": resolve})

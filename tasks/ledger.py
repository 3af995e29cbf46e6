"""Tasks over the object ledger: remove one recorded object, prove recorded objects are gone.

Rollback, offboarding, drill teardown and the sweeper all remove through these tasks, which
dispatch on the record's system to the handler registry (draas/ledger). Removing something
already gone is no error (``changed=False``): the record may have been written just before a
create that never happened.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from draas.errors import PermanentError
from draas.ledger import Removal, describe, handler_for
from draas.models.results import StepResult
from draas.site import Site
from draas.state.store import StateStore
from tasks.common import RETRY_POLICY
from tasks.common import task_logger as _log


class ObjectsStillPresent(PermanentError):
    """Verification found recorded objects still on their systems after removal."""


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def remove_recorded_object(record_id: int, site: Site | None = None,
                           database_url: str | None = None) -> StepResult[Removal]:
    """Remove one recorded object from its system through its handler, then mark the record removed."""
    store = StateStore(database_url)
    rec = store.get_object(record_id)
    if rec is None:
        raise PermanentError(f"no recorded object {record_id}")
    result: StepResult[Removal] = StepResult(step="remove_recorded_object", target=f"{rec.system}:{rec.name}")
    if rec.removed_at is not None:
        return result.done(changed=False, payload=Removal(changed=False, note="removed earlier"))
    site = site or Site.for_config_dir(None)
    removal = handler_for(rec.system).remove(rec, site)
    store.mark_removed(record_id)
    _log().info("removed %s: %s", describe(rec), "changed" if removal.changed else "already absent")
    detail = {"kind": rec.kind, "record": record_id, **({"note": removal.note} if removal.note else {})}
    return result.done(changed=removal.changed, diff=removal.diff, detail=detail, payload=removal)


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def verify_records_removed(record_ids: list[int], site: Site | None = None,
                           database_url: str | None = None) -> StepResult:
    """Prove that none of the recorded objects is left on its system (each handler's ``exists``).

    Raises:
        ObjectsStillPresent: naming every object that is still there.
    """
    store = StateStore(database_url)
    site = site or Site.for_config_dir(None)
    records = [r for r in (store.get_object(i) for i in record_ids) if r is not None]
    result = StepResult(step="verify_records_removed", target=f"{len(records)} objects")
    left = [describe(rec) for rec in records if handler_for(rec.system).exists(rec, site)]
    if left:
        raise ObjectsStillPresent(f"{len(left)} object(s) still present after removal:\n" + "\n".join(left[:50]))
    return result.done(changed=False, detail={"verified": len(records)})

"""Refused requests: each kind is audited once with its reason, and changes nothing.

Kinds: invalid config, unknown tenant, unauthorised requester (tenant busy is in
test_crash_policy.py, where a real process holds the tenant). "Changes nothing" is checked on
the state store (every table but the audit log) and on the systems (device configs, vCenter).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import flow

from draas.state.store import StateStore
from draas.validation import ConfigInvalid, load_tenant

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(lab, prefect_harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateStore:
    monkeypatch.setenv("DRAAS_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    return StateStore()


def devices(lab) -> dict[str, str]:
    with httpx.Client(base_url=lab.cisco.control_url, timeout=10) as control:
        return {name: control.get(f"/devices/{name}/running").text for name in lab.cisco.devices}


def world(lab, store: StateStore) -> tuple[Any, ...]:
    return devices(lab), {t: n for t, n in store.counts().items() if t != "audit_log"}


def only_refusal(store: StateStore) -> Any:
    (entry,) = store.audit_log()
    assert entry.outcome == "refused"
    return entry


def test_invalid_config_is_refused(store: StateStore, lab, tmp_path: Path) -> None:
    from flows.preprovision import preprovision_container

    configs = tmp_path / "configs"
    shutil.copytree(PROJECT_ROOT / "configs", configs)
    acme = configs / "tenants" / "acme.yaml"
    acme.write_text(acme.read_text().replace("latency_ms: 12", "latency_ms: 45"))
    before = world(lab, store)

    with pytest.raises(ConfigInvalid):
        preprovision_container("acme", requested_by="ops@provider.example", config_dir=str(configs))

    entry = only_refusal(store)
    assert entry.action == "preprovision_container" and entry.tenant_id == "acme"
    assert "protected_site.latency_ms" in entry.detail["reason"]
    assert world(lab, store) == before


def test_unknown_tenant_is_refused(store: StateStore, lab) -> None:
    from flows.offboard import offboard_tenant
    from flows.runbook import UnknownTenant

    before = world(lab, store)
    with pytest.raises(UnknownTenant):
        offboard_tenant("nosuchtenant", requested_by="ops@provider.example")
    entry = only_refusal(store)
    assert entry.action == "offboard_tenant" and "nosuchtenant" in entry.detail["reason"]
    assert world(lab, store) == before


@flow(name="role-probe")
def role_probe(tenant: str, requested_by: str, role: str) -> str:
    """What every DR flow does first: check the requester's role for the tenant and action."""
    from flows.runbook import CrashPolicy, RunContext

    run = RunContext("role-probe", action=role, tenant=tenant, requested_by=requested_by,
                     channel="test", policy=CrashPolicy.UNDO, parameters={"tenant": tenant})
    with run.admission():
        run.authorise(load_tenant(tenant), role)
    with run.started():
        pass
    return run.run_id


@pytest.mark.parametrize("why", ["not an authorised person", "lacks the role"])
def test_unauthorised_requester_is_refused(store: StateStore, lab, why: str) -> None:
    from flows.runbook import NotAuthorised

    tenant = load_tenant("acme")
    requester = "mallory@evil.example"
    if why == "lacks the role":  # an authorised person of acme who may not invoke DR
        requester = next(p.email for p in tenant.authorised_persons if "invoke_dr" not in {r.value for r in p.roles})
    before = world(lab, store)
    with pytest.raises(NotAuthorised, match=why):
        role_probe("acme", requested_by=requester, role="invoke_dr")
    entry = only_refusal(store)
    assert entry.actor == requester and entry.action == "invoke_dr" and why in entry.detail["reason"]
    assert world(lab, store) == before


def test_authorised_requester_is_accepted(store: StateStore, lab) -> None:
    tenant = load_tenant("acme")
    alice = next(p.email for p in tenant.authorised_persons if "request_drill" in {r.value for r in p.roles})
    run_id = role_probe("acme", requested_by=alice, role="request_drill")
    assert [a.outcome for a in store.audit_log()] == ["accepted", "succeeded"]
    assert store.get_run(run_id).state == "Completed"

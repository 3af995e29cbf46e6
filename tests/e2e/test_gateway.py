"""The webhook gateway against the session's Prefect server: signed requests start exactly one run."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prefect import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.sorting import FlowRunSort

from deployments.deploy import deploy, existing, plan_deployments
from deployments.gateway import KeyStore, build_app, sign
from draas.state.store import StateStore
from draas.validation import default_config_dir, load_tenants

ALICE = "alice.archer@acme.example.com"


@pytest.fixture(scope="module")
def gateway(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    mp = pytest.MonkeyPatch()
    mp.setenv("DRAAS_DATABASE_URL", f"sqlite:///{tmp_path_factory.mktemp('gateway') / 'state.db'}")
    tenants = [t for t in load_tenants() if t.id in ("acme", "globex")]
    specs = plan_deployments(tenants, {"failover": "flows.failover:failover"}, frozenset())
    deploy(specs, "draas-gateway-test")
    keys = KeyStore()
    acme, globex = keys.rotate("acme"), keys.rotate("globex")
    try:
        yield {"client": TestClient(build_app(keys=keys)), "acme": acme.current, "globex": globex.current,
               "deployment": existing()["failover/acme"].id, "specs": specs}
    finally:
        with get_client(sync_client=True) as client:
            for d in existing().values():
                client.delete_deployment(d.id)
        mp.undo()


def post(gw: dict[str, Any], body: Any, *, key: str | None = None, tenant: str = "acme", stamp: int | None = None,
         idem: str | None = None, raw: bytes | None = None, signature: str | None = None,
         ticket: str | None = None) -> Any:
    data = raw if raw is not None else json.dumps({**body, "ticket": ticket} if ticket else body).encode()
    stamp = int(time.time()) if stamp is None else stamp
    headers = {"X-DRaaS-Timestamp": str(stamp), "Content-Type": "application/json",
               "X-DRaaS-Signature": signature or sign(key or gw["acme"], stamp, data)}
    if idem:
        headers["Idempotency-Key"] = idem
    return gw["client"].post(f"/v1/tenants/{tenant}/failovers", content=data, headers=headers)


def runs_of(deployment: Any) -> list[Any]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment])),
                                     limit=50, sort=FlowRunSort.START_TIME_ASC)


def test_a_signed_request_starts_exactly_one_run_and_a_retry_gets_the_same(gateway: dict[str, Any]) -> None:
    body = {"requested_by": ALICE, "ticket": "INC0012345", "parameters": {"mode": "unplanned"}}
    first = post(gateway, body, idem="INC0012345-1")
    assert first.status_code == 202, first.text
    run_id = first.json()["run_id"]
    time.sleep(1.1)  # a retry is a new request: new timestamp, new signature
    again = post(gateway, body, idem="INC0012345-1")
    assert again.status_code == 202 and again.json()["run_id"] == run_id
    # another gateway process (nothing remembered): Prefect's idempotency key gives the same run
    with TestClient(build_app(keys=KeyStore())) as fresh:
        third = post({**gateway, "client": fresh}, body, idem="INC0012345-1")
    assert third.status_code == 202 and third.json()["run_id"] == run_id
    runs = runs_of(gateway["deployment"])
    assert [str(r.id) for r in runs] == [run_id]
    assert runs[0].parameters["requested_by"] == ALICE and runs[0].parameters["channel"] == "webhook"
    assert runs[0].parameters["mode"] == "unplanned" and runs[0].parameters["ticket"] == "INC0012345"

    stamp = int(time.time())
    status = gateway["client"].get(f"/v1/runs/{run_id}", headers={
        "X-DRaaS-Tenant": "acme", "X-DRaaS-Timestamp": str(stamp), "X-DRaaS-Signature": sign(gateway["acme"], stamp,
                                                                                            run_id.encode())})
    assert status.status_code == 200 and status.json()["state"] == "Scheduled"
    other = gateway["client"].get(f"/v1/runs/{run_id}", headers={
        "X-DRaaS-Tenant": "globex", "X-DRaaS-Timestamp": str(stamp),
        "X-DRaaS-Signature": sign(gateway["globex"], stamp, run_id.encode())})
    assert other.status_code == 404  # another tenant's run is not shown
    assert gateway["client"].get("/healthz").json() == {"status": "ok"}
    assert "/v1/tenants/{tenant}/{kind}" in gateway["client"].get("/openapi.json").json()["paths"]


def test_every_bad_request_is_refused_with_its_status_and_audited(gateway: dict[str, Any]) -> None:
    body = {"requested_by": ALICE, "parameters": {"mode": "unplanned"}}
    before = len(runs_of(gateway["deployment"]))
    store = StateStore()
    audited = len(store.audit_log())
    stale = int(time.time()) - 600
    replayed_stamp = int(time.time())
    replayed = json.dumps({**body, "ticket": "replay"}).encode()
    assert post(gateway, None, raw=replayed, stamp=replayed_stamp).status_code == 202
    cases = [
        ("wrong key", post(gateway, body, key="0" * 64), 401),
        ("another tenant's key", post(gateway, body, key=gateway["globex"]), 401),
        ("expired timestamp", post(gateway, body, stamp=stale), 401),
        ("replayed signature", post(gateway, None, raw=replayed, stamp=replayed_stamp), 409),
        ("not an authorised person", post(gateway, {**body, "requested_by": "mallory@evil.example.com"}), 403),
        ("wrong role", post(gateway, {**body, "requested_by": "bob.baker@acme.example.com"}), 403),
        ("unknown tenant", post(gateway, body, tenant="nosuch"), 404),
        ("malformed body", post(gateway, None, raw=b"{not json"), 400),
        ("oversize body", post(gateway, None, raw=b"{" + b" " * 70_000 + b"}"), 413),
        ("bad parameter", post(gateway, {**body, "parameters": {"mode": "sideways"}}), 422),
    ]
    for what, response, status in cases:
        assert response.status_code == status, (what, response.text)
        assert "error" in response.json()
    assert len(runs_of(gateway["deployment"])) == before + 1  # only the first, valid request
    entries = store.audit_log()[audited:]
    assert [e.outcome for e in entries] == ["accepted"] + ["refused"] * len(cases)
    assert all(e.channel == "webhook" for e in entries)
    assert not any(gateway["acme"] in json.dumps(e.detail) for e in entries)  # the key is never recorded


def test_a_burst_over_the_tenant_rate_limit_is_refused_with_retry_after_and_audited(gateway: dict[str, Any]) -> None:
    frozen = [float(int(time.time()))]  # the gateway's clock stands still (no refill) until the test moves it
    app = TestClient(build_app(keys=KeyStore(), clock=lambda: frozen[0], rate=60, burst=3))
    limited = {**gateway, "client": app}
    body = {"requested_by": ALICE, "parameters": {"mode": "unplanned"}}

    def now() -> int:
        return int(frozen[0])

    before = len(runs_of(gateway["deployment"]))
    store = StateStore()
    audited = len(store.audit_log())
    # Unsigned noise first: refused at the signature, it takes nothing from acme's budget.
    noise = [post(limited, body, key="0" * 64, stamp=now(), idem=f"noise-{i}") for i in range(5)]
    assert [r.status_code for r in noise] == [401] * 5
    burst = [post(limited, {**body, "ticket": f"RL-{i}"}, stamp=now(), idem=f"rate-limit-{i}") for i in range(6)]
    assert [r.status_code for r in burst] == [202] * 3 + [429] * 3, [r.text for r in burst]
    for refused in burst[3:]:
        assert "rate limit" in refused.json()["error"]
        assert refused.headers["Retry-After"] == "1"  # 60 a minute: a token a second
    # Another tenant's bucket is its own.
    other = post(limited, {"requested_by": "hank.scorpio@globex.example.com", "parameters": {"mode": "unplanned"}},
                 key=gateway["globex"], tenant="globex", stamp=now(), idem="rate-limit-globex")
    assert other.status_code == 202, other.text
    # After Retry-After, acme gets through again.
    frozen[0] += int(burst[-1].headers["Retry-After"])
    later = post(limited, {**body, "ticket": "RL-later"}, stamp=now(), idem="rate-limit-later")
    assert later.status_code == 202, later.text

    runs = runs_of(gateway["deployment"])
    assert len(runs) == before + 4  # three of the burst and the one after Retry-After; none of the refused
    assert {r.parameters.get("ticket") for r in runs} >= {"RL-0", "RL-1", "RL-2", "RL-later"}
    assert not {"RL-3", "RL-4", "RL-5"} & {r.parameters.get("ticket") for r in runs}
    entries = store.audit_log()[audited:]
    assert [(e.tenant_id, e.outcome, e.detail.get("status")) for e in entries] == (
        [("acme", "refused", 401)] * 5 + [("acme", "accepted", None)] * 3 + [("acme", "refused", 429)] * 3
        + [("globex", "accepted", None), ("acme", "accepted", None)])
    assert all(e.channel == "webhook" for e in entries)


def test_a_changed_config_and_a_recreated_deployment_are_seen_by_the_next_request(
        gateway: dict[str, Any], tmp_path: Path) -> None:
    """What the gateway keeps between requests (validated configs, deployment ids) never goes stale."""
    configs = tmp_path / "configs"
    shutil.copytree(default_config_dir(), configs)
    app = {**gateway, "client": TestClient(build_app(keys=KeyStore(), config_dir=str(configs)))}
    bob = {"requested_by": "bob.baker@acme.example.com", "parameters": {"mode": "unplanned"}}
    assert post(app, {**bob, "requested_by": ALICE}, idem="cache-1", ticket="C1").status_code == 202
    refused = post(app, bob, idem="cache-2", ticket="C2")  # from the config it kept
    assert refused.status_code == 403 and "invoke_dr" in refused.json()["error"]
    acme = configs / "tenants" / "acme.yaml"
    acme.write_text(acme.read_text().replace("roles: [request_drill, receive_reports]",
                                             "roles: [invoke_dr, request_drill, receive_reports]", 1))
    assert post(app, bob, idem="cache-3", ticket="C3").status_code == 202  # Bob has the role now

    hank = {"requested_by": "hank.scorpio@globex.example.com", "parameters": {"mode": "unplanned"}}
    assert post(app, hank, key=gateway["globex"], tenant="globex", idem="cache-4", ticket="C4").status_code == 202
    with get_client(sync_client=True) as client:
        client.delete_deployment(existing()["failover/globex"].id)
    gone = post(app, hank, key=gateway["globex"], tenant="globex", idem="cache-5", ticket="C5")
    assert gone.status_code == 404 and "no deployment failover/globex" in gone.json()["error"]
    deploy(gateway["specs"], "draas-gateway-test")  # created again: a new id
    again = post(app, hank, key=gateway["globex"], tenant="globex", idem="cache-6", ticket="C6")
    assert again.status_code == 202, again.text
    assert [str(r.id) for r in runs_of(existing()["failover/globex"].id)] == [again.json()["run_id"]]

"""The service-desk webhook gateway: signed requests in, flow runs of the tenant's deployments out.

Open-source Prefect has no webhooks and one shared API auth string, so the service desk never
talks to Prefect: it calls this gateway, which checks, per request,

1. the size of the body (``MAX_BODY_BYTES``) and that the tenant exists;
2. ``X-DRaaS-Timestamp`` (Unix seconds) within ``MAX_SKEW_S`` of now;
3. ``X-DRaaS-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`` with the tenant's own
   key (the previous key too, during its grace period after a rotation), compared in constant time;
4. that the signature was not seen before (replay), for as long as its timestamp is acceptable;
5. the body: ``requested_by`` is an authorised person of *that* tenant with the role for *that*
   action, ``ticket`` optional, ``parameters`` valid for the flow (the flow's own parameter
   validation);

then creates a flow run from ``<flow>/<tenant>`` through the Prefect API with the server's own
credentials. An ``Idempotency-Key`` header becomes the run's Prefect idempotency key: a retried
request gets the same run, never a second failover. Every refusal and every acceptance is one
audit entry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from draas.state.store import StateStore

MAX_BODY_BYTES = 64 * 1024
MAX_SKEW_S = 300
KEY_GRACE_S = 24 * 3600
#: path segment -> (flow, role)
ACTIONS = {"failovers": ("failover", "invoke_dr"), "drills": ("drill", "request_drill"),
           "failbacks": ("failback", "failback")}


def sign(key: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-DRaaS-Signature`` value for ``body`` sent at ``timestamp`` with ``key``."""
    mac = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


@dataclass
class TenantKeys:
    current: str
    previous: str | None = None
    previous_until: float = 0.0

    def valid(self, now: float) -> list[str]:
        return [self.current] + ([self.previous] if self.previous and now < self.previous_until else [])


class KeyStore:
    """Per-tenant signing keys in Prefect Secret blocks ``draas-gateway-<tenant>`` (JSON)."""

    @staticmethod
    def block_name(tenant: str) -> str:
        return f"draas-gateway-{tenant}"

    def get(self, tenant: str) -> TenantKeys | None:
        from prefect.blocks.system import Secret

        try:
            raw = Secret.load(self.block_name(tenant)).get()
        except ValueError:
            return None
        data = json.loads(raw) if isinstance(raw, str) else raw
        return TenantKeys(**data)

    def rotate(self, tenant: str, grace_s: float = KEY_GRACE_S) -> TenantKeys:
        """A new current key; the old one stays valid for ``grace_s`` (a first key has no previous)."""
        from prefect.blocks.system import Secret

        old = self.get(tenant)
        keys = TenantKeys(current=secrets.token_hex(32), previous=old.current if old else None,
                          previous_until=time.time() + grace_s if old else 0.0)
        Secret(value=json.dumps(keys.__dict__)).save(self.block_name(tenant), overwrite=True)
        return keys

    def ensure(self, tenant: str) -> TenantKeys:
        return self.get(tenant) or self.rotate(tenant)


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(reason)


class ReplayCache:
    """Signatures seen within the acceptance window (one process; see docs/service-desk.md)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def check_and_add(self, signature: str, now: float) -> bool:
        with self._lock:
            for sig, until in list(self._seen.items()):
                if until < now:
                    del self._seen[sig]
            if signature in self._seen:
                return False
            self._seen[signature] = now + 2 * MAX_SKEW_S
            return True


def build_app(*, keys: KeyStore | None = None, store_factory: Callable[[], StateStore] = StateStore,
              config_dir: str | None = None, ui_url: str | None = None,
              clock: Callable[[], float] = time.time) -> FastAPI:
    """The gateway's ASGI app."""
    keys = keys or KeyStore()
    replays = ReplayCache()
    app = FastAPI(title="DRaaS webhook gateway", version="1",
                  description="Signed requests from the service desk start failovers, drills and failbacks.")

    def audit(action: str, tenant: str | None, actor: str, outcome: str, detail: dict[str, Any],
              run_id: str | None = None) -> None:
        store_factory().audit(actor=actor, action=action, channel="webhook", outcome=outcome, tenant_id=tenant,
                              run_id=run_id, detail=detail)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/tenants/{tenant}/{kind}", status_code=202)
    async def start(tenant: str, kind: str, request: Request) -> JSONResponse:
        body = await request.body()
        # Blocks (Secret) and the Prefect client are used synchronously: off the event loop.
        return await run_in_threadpool(handle, tenant, kind, body, dict(request.headers))

    def handle(tenant: str, kind: str, body: bytes, headers: dict[str, str]) -> JSONResponse:
        actor = "unknown"
        doc: dict[str, Any] = {}
        flow_name, role = ACTIONS.get(kind, (kind, kind))
        action = role
        try:
            if kind not in ACTIONS:
                raise Refused(404, f"unknown action {kind!r} (one of {', '.join(ACTIONS)})")
            if len(body) > MAX_BODY_BYTES:
                raise Refused(413, f"body of {len(body)} bytes is over {MAX_BODY_BYTES}")
            config = _tenant(tenant, config_dir)
            tenant_keys = keys.get(tenant) if config is not None else None
            if config is None or tenant_keys is None:
                raise Refused(404, f"unknown tenant {tenant!r}")
            now = clock()
            stamp = headers.get("x-draas-timestamp", "")
            if not stamp.isdigit() or abs(now - int(stamp)) > MAX_SKEW_S:
                raise Refused(401, "X-DRaaS-Timestamp missing or more than 5 minutes from now")
            given = headers.get("x-draas-signature", "")
            if not any(hmac.compare_digest(given, sign(k, stamp, body)) for k in tenant_keys.valid(now)):
                raise Refused(401, "signature does not verify with the tenant's key")
            if not replays.check_and_add(given, now):
                raise Refused(409, "replayed signature")
            try:
                doc = json.loads(body)
            except ValueError:
                raise Refused(400, "body: not JSON") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("requested_by"), str):
                raise Refused(422, "body.requested_by: an e-mail address is required")
            actor = doc["requested_by"]
            _authorise(config, actor, role)
            params = doc.get("parameters") or {}
            if not isinstance(params, dict):
                raise Refused(422, "body.parameters: must be an object")
            flow_run = _create_run(flow_name, tenant, {**params, "requested_by": actor, "channel": "webhook",
                                                       **({"ticket": doc["ticket"]} if doc.get("ticket") else {})},
                                   headers.get("idempotency-key"))
        except Refused as exc:
            audit(action, tenant, actor, "refused", {"reason": exc.reason, "status": exc.status, "kind": kind})
            return JSONResponse({"error": exc.reason}, status_code=exc.status)
        run_id = str(flow_run.id)
        audit(action, tenant, actor, "accepted", {"flow": flow_name, "ticket": doc.get("ticket"),
                                                  "idempotency_key": headers.get("idempotency-key")},
              run_id=run_id)
        return JSONResponse({"run_id": run_id, "status_url": f"/v1/runs/{run_id}", "state": flow_run.state_name,
                             **({"ui_url": f"{ui_url.rstrip('/')}/runs/flow-run/{run_id}"} if ui_url else {})},
                            status_code=202)

    @app.get("/v1/runs/{run_id}")
    async def run_status(run_id: str, request: Request) -> JSONResponse:
        return await run_in_threadpool(status_of, run_id, dict(request.headers))

    def status_of(run_id: str, headers: dict[str, str]) -> JSONResponse:
        from prefect import get_client

        tenant = headers.get("x-draas-tenant", "")
        stamp = headers.get("x-draas-timestamp", "")
        tenant_keys = keys.get(tenant) if tenant else None
        now = clock()
        if tenant_keys is None or not stamp.isdigit() or abs(now - int(stamp)) > MAX_SKEW_S or not any(
                hmac.compare_digest(headers.get("x-draas-signature", ""), sign(k, stamp, run_id.encode()))
                for k in tenant_keys.valid(now)):
            return JSONResponse({"error": "not signed by the tenant's key"}, status_code=401)
        with get_client(sync_client=True) as client:
            try:
                run = client.read_flow_run(UUID(run_id))
            except Exception:  # noqa: BLE001 - unknown or malformed id: the same answer
                return JSONResponse({"error": "no such run"}, status_code=404)
        if (run.parameters or {}).get("tenant") != tenant:
            return JSONResponse({"error": "no such run"}, status_code=404)  # another tenant's run is not ours to show
        store = store_factory()
        record = store.get_run(run_id)
        return JSONResponse({"run_id": run_id, "state": run.state_name, "flow_state": record.state if record else None,
                             "outcome": record.outcome if record else None})

    return app


def _tenant(tenant: str, config_dir: str | None) -> Any:
    from pathlib import Path

    from draas.validation import ConfigInvalid, load_tenant

    try:
        return load_tenant(tenant, Path(config_dir) if config_dir else None)
    except (ConfigInvalid, FileNotFoundError, OSError):
        return None


def _authorise(config: Any, who: str, role: str) -> None:
    for person in config.authorised_persons:
        if person.email.lower() == who.strip().lower():
            if role in {getattr(r, "value", r) for r in person.roles}:
                return
            raise Refused(403, f"{who} lacks the role {role!r} for tenant {config.id}")
    raise Refused(403, f"{who} is not an authorised person of tenant {config.id}")


def _create_run(flow_name: str, tenant: str, parameters: dict[str, Any], idempotency_key: str | None) -> Any:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    from flows import load_flow

    flow = load_flow(flow_name)
    try:
        flow.validate_parameters({"tenant": tenant, **parameters})
    except Exception as exc:  # noqa: BLE001 - the flow's own validation says what is wrong
        raise Refused(422, f"parameters: {exc}") from None
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(f"{flow_name}/{tenant}")
        except ObjectNotFound:
            raise Refused(404, f"no deployment {flow_name}/{tenant} (run draas deploy)") from None
        return client.create_flow_run_from_deployment(
            deployment.id, parameters=json.loads(json.dumps(parameters, default=str)),
            idempotency_key=f"gateway:{tenant}:{idempotency_key}" if idempotency_key else None,
            tags=["webhook"])

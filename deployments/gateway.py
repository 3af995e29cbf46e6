"""The service-desk webhook gateway: signed requests in, flow runs of the tenant's deployments out.

Open-source Prefect has no webhooks and one shared API auth string, so the service desk never
talks to Prefect: it calls this gateway, which checks, per request,

1. the size of the body (``MAX_BODY_BYTES``) and that the tenant exists;
2. ``X-DRaaS-Timestamp`` (Unix seconds) within ``MAX_SKEW_S`` of now;
3. ``X-DRaaS-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`` with the tenant's own
   key (the previous key too, during its grace period after a rotation), compared in constant time;
4. that the signature was not seen before (replay), for as long as its timestamp is acceptable;
5. the tenant's rate limit (:class:`RateLimiter`): a token bucket per tenant, by default 30
   requests a minute with a burst of 30; over it, ``429`` with ``Retry-After``;
6. the body: ``requested_by`` is an authorised person of *that* tenant with the role for *that*
   action, ``ticket`` optional, ``parameters`` valid for the flow (the flow's own parameter
   validation);

then creates a flow run from ``<flow>/<tenant>`` through the Prefect API with the server's own
credentials. An ``Idempotency-Key`` header becomes the run's Prefect idempotency key: a retried
request gets the same run, never a second failover. Every refusal and every acceptance is one
audit entry.

The rate limit sits after the tenant lookup, the signature and the replay check on purpose: only
requests signed with the tenant's key, and not replays of one already seen, take from the
tenant's budget, so unauthenticated noise (or a captured request sent again) cannot exhaust it
and lock the tenant's service desk out of its own failover. A signed request that is then
refused for its body (400, 403, 422) does count: it is the tenant's own traffic. Retries with
the same ``Idempotency-Key`` count too (each is a request the gateway has to serve). Only
run-creating requests are limited; ``GET /v1/runs/{id}`` is not.

What a request needs from elsewhere is kept between requests, never longer than it stays right:
a tenant's validated config until a YAML file of the config directory (or the tier catalog or
site file the environment points at) changes; its keys for ``KEY_CACHE_S`` (a key rotated by
another process is used within that time, and the previous one stays valid 24 hours anyway); a
deployment's id until the server no longer knows it; and one Prefect API client for the app's
lifetime. Creating the run, and the idempotency check with it, is always the server's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from draas.state.store import StateStore

MAX_BODY_BYTES = 64 * 1024
MAX_SKEW_S = 300
KEY_GRACE_S = 24 * 3600
#: Default rate limit per tenant: requests per minute, and the burst (bucket size).
RATE_PER_MIN = 30.0
BURST = 30
RATE_ENV = "DRAAS_GATEWAY_RATE_PER_MIN"
BURST_ENV = "DRAAS_GATEWAY_BURST"
#: How long a tenant's keys read from their Secret block are used before they are read again (s).
KEY_CACHE_S = 10.0
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
    """Per-tenant signing keys in the Secret block ``<tenant>-webhook-signing-key`` that onboarding creates.

    Onboarding stores a plain key; a rotation stores JSON ``{"current", "previous", "previous_until"}``.
    """

    @staticmethod
    def block_name(tenant: str) -> str:
        from tasks.tenant import webhook_secret_name

        return webhook_secret_name(tenant)

    def get(self, tenant: str) -> TenantKeys | None:
        from prefect.blocks.system import Secret

        try:
            raw = Secret.load(self.block_name(tenant)).get()
        except ValueError:
            return None
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                return TenantKeys(current=raw)  # as onboarding created it
        return TenantKeys(**raw) if isinstance(raw, dict) else TenantKeys(current=str(raw))

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
    def __init__(self, status: int, reason: str, *, retry_after: int | None = None) -> None:
        self.status, self.reason, self.retry_after = status, reason, retry_after
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


class RateLimiter:
    """A token bucket per tenant: ``burst`` requests at once, refilled at ``rate_per_min`` a minute.

    Guarantees: a tenant never gets more than ``burst + rate_per_min * minutes`` requests through
    in any span of that many minutes; one tenant's traffic never takes from another's bucket; a
    refused request takes nothing. Buckets live in the gateway process (like the replay cache)
    and only tenants with a config and a key get one, so their number is bounded.
    """

    def __init__(self, rate_per_min: float, burst: int) -> None:
        if not rate_per_min > 0:
            raise ValueError(f"rate limit: rate per minute must be > 0, got {rate_per_min!r}")
        if burst < 1:
            raise ValueError(f"rate limit: burst must be >= 1, got {burst!r}")
        self.rate_per_s = rate_per_min / 60.0
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, tenant: str, now: float) -> float:
        """Take one token of ``tenant``'s bucket: 0.0 when taken, else the seconds until one is free."""
        with self._lock:
            tokens, at = self._buckets.get(tenant, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + max(0.0, now - at) * self.rate_per_s)
            if tokens >= 1.0:
                self._buckets[tenant] = (tokens - 1.0, now)
                return 0.0
            self._buckets[tenant] = (tokens, now)
            return (1.0 - tokens) / self.rate_per_s


def _limit_from_env(name: str, default: float, kind: type) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        raise ValueError(f"environment variable {name}: expected a{'n integer' if kind is int else ' number'}, "
                         f"got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"environment variable {name}: must be > 0, got {raw!r}")
    return value


class CachedKeys:
    """A :class:`KeyStore` read at most once per ``ttl_s`` per tenant (an absent key included)."""

    def __init__(self, keys: KeyStore, ttl_s: float = KEY_CACHE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.keys, self.ttl_s, self.clock = keys, ttl_s, clock
        self._cache: dict[str, tuple[float, TenantKeys | None]] = {}
        self._lock = threading.Lock()

    def get(self, tenant: str) -> TenantKeys | None:
        now = self.clock()
        with self._lock:
            hit = self._cache.get(tenant)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        found = self.keys.get(tenant)
        with self._lock:
            self._cache[tenant] = (now, found)
        return found


class TenantConfigs:
    """Tenant configs, validated (``load_tenant``: the whole tenant set) once per version of the config files.

    A change to any YAML file of the config directory, its ``tenants/``, or the tier catalog and
    site file that ``$DRAAS_TIERS`` / ``$DRAAS_SITE_CONFIG`` name is seen by the next request.
    Only valid configs are kept (one per tenant that has a file), so the cache is bounded.
    """

    def __init__(self, config_dir: str | None) -> None:
        self.config_dir = config_dir
        self._cache: dict[str, tuple[tuple[Any, ...], Any]] = {}
        self._lock = threading.Lock()

    def _fingerprint(self) -> tuple[Any, ...]:
        from draas.validation import default_config_dir

        root = Path(self.config_dir) if self.config_dir else default_config_dir()
        files = sorted(root.glob("*.yaml")) + sorted((root / "tenants").glob("*.yaml"))
        files += [Path(os.environ[v]) for v in ("DRAAS_TIERS", "DRAAS_SITE_CONFIG") if os.environ.get(v)]
        out: list[Any] = []
        for f in files:
            try:
                st = f.stat()
                out.append((str(f), st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((str(f), None))
        return tuple(out)

    def get(self, tenant: str) -> Any:
        stamp = self._fingerprint()
        with self._lock:
            hit = self._cache.get(tenant)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        config = _tenant(tenant, self.config_dir)
        if config is not None:
            with self._lock:
                self._cache[tenant] = (stamp, config)
        return config


class PrefectRuns:
    """Flow runs of ``<flow>/<tenant>`` through one Prefect API client, opened on first use.

    The client (an httpx connection pool, safe to share between the request threads) lives as
    long as the app; :meth:`close` ends it. Deployment ids are remembered; one the server no
    longer knows (deleted, or deleted and created again) is looked up again once.
    """

    #: How long, and for how many keys, an accepted run is remembered by its Idempotency-Key.
    REMEMBER_S = 24 * 3600
    REMEMBER_MAX = 10_000

    def __init__(self) -> None:
        self._client: Any = None
        self._deployments: dict[str, UUID] = {}
        self._lock = threading.Lock()
        self._accepted: dict[tuple[str, str], tuple[float, Any]] = {}  # insertion order = age

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from prefect import get_client

                client = get_client(sync_client=True)
                client.__enter__()
                self._client = client
            return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.__exit__(None, None, None)

    def create(self, flow_name: str, tenant: str, parameters: dict[str, Any], idempotency_key: str | None) -> Any:
        """A run of ``<flow_name>/<tenant>`` (the same run again for an ``idempotency_key`` already used).

        Prefect keeps the idempotency (``gateway:<tenant>:<key>`` per deployment), so it holds across
        gateway processes; this process also remembers the runs it accepted, and answers a retry
        from memory (the run as it was when first accepted).
        """
        name = f"{flow_name}/{tenant}"
        if idempotency_key:  # a retry this process answered before: the same run, without asking Prefect
            with self._lock:
                hit = self._accepted.get((name, idempotency_key))
            if hit is not None and time.monotonic() - hit[0] < self.REMEMBER_S:
                return hit[1]
        flow_run = self._create(name, tenant, parameters, idempotency_key)
        if idempotency_key:
            with self._lock:
                self._accepted[(name, idempotency_key)] = (time.monotonic(), flow_run)
                while len(self._accepted) > self.REMEMBER_MAX:
                    del self._accepted[next(iter(self._accepted))]
        return flow_run

    def _create(self, name: str, tenant: str, parameters: dict[str, Any], idempotency_key: str | None) -> Any:
        from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

        client = self.client()
        for attempt in (1, 2):
            deployment_id = self._deployments.get(name)
            if deployment_id is None:
                try:
                    deployment_id = self._deployments[name] = client.read_deployment_by_name(name).id
                except ObjectNotFound:
                    raise Refused(404, f"no deployment {name} (run draas deploy)") from None
            try:
                return client.create_flow_run_from_deployment(
                    deployment_id, parameters=json.loads(json.dumps(parameters, default=str)),
                    idempotency_key=f"gateway:{tenant}:{idempotency_key}" if idempotency_key else None,
                    tags=["webhook"])
            except (ObjectNotFound, PrefectHTTPStatusError) as exc:
                if isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code != 404:
                    raise
                self._deployments.pop(name, None)  # gone since it was looked up: look it up again, once
                if attempt == 2:
                    raise Refused(404, f"no deployment {name} (run draas deploy)") from None
        raise AssertionError("unreachable")  # pragma: no cover


def build_app(*, keys: KeyStore | None = None, store_factory: Callable[[], StateStore] = StateStore,
              config_dir: str | None = None, ui_url: str | None = None,
              clock: Callable[[], float] = time.time, rate: float | None = None,
              burst: int | None = None) -> FastAPI:
    """The gateway's ASGI app.

    ``rate`` is the per-tenant limit in requests per minute (default ``$DRAAS_GATEWAY_RATE_PER_MIN``,
    else 30) and ``burst`` the bucket size (default ``$DRAAS_GATEWAY_BURST``, else the rate: a
    minute's worth, 30 by default). A bad value is a ``ValueError`` naming the variable.
    """
    cached_keys = CachedKeys(keys or KeyStore())
    configs = TenantConfigs(config_dir)
    runs = PrefectRuns()
    replays = ReplayCache()
    rate = rate if rate is not None else _limit_from_env(RATE_ENV, RATE_PER_MIN, float)
    burst = burst if burst is not None else int(_limit_from_env(BURST_ENV, max(1, math.floor(rate)), int))
    limiter = RateLimiter(rate, burst)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        runs.close()

    app = FastAPI(title="DRaaS webhook gateway", version="1", lifespan=lifespan,
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
            config = configs.get(tenant)
            tenant_keys = cached_keys.get(tenant) if config is not None else None
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
            wait_s = limiter.take(tenant, now)
            if wait_s > 0:
                raise Refused(429, f"rate limit of {rate:g} requests a minute (burst {burst}) for tenant {tenant!r} "
                                   "exceeded", retry_after=max(1, math.ceil(wait_s)))
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
            flow_run = _create_run(runs, flow_name, tenant, {**params, "requested_by": actor, "channel": "webhook",
                                                       **({"ticket": doc["ticket"]} if doc.get("ticket") else {})},
                                   headers.get("idempotency-key"))
        except Refused as exc:
            audit(action, tenant, actor, "refused", {"reason": exc.reason, "status": exc.status, "kind": kind})
            retry = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
            return JSONResponse({"error": exc.reason, **({"retry_after_s": exc.retry_after} if retry else {})},
                                status_code=exc.status, headers=retry)
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
        tenant = headers.get("x-draas-tenant", "")
        stamp = headers.get("x-draas-timestamp", "")
        tenant_keys = cached_keys.get(tenant) if tenant else None
        now = clock()
        if tenant_keys is None or not stamp.isdigit() or abs(now - int(stamp)) > MAX_SKEW_S or not any(
                hmac.compare_digest(headers.get("x-draas-signature", ""), sign(k, stamp, run_id.encode()))
                for k in tenant_keys.valid(now)):
            return JSONResponse({"error": "not signed by the tenant's key"}, status_code=401)
        try:
            run = runs.client().read_flow_run(UUID(run_id))
        except Exception:  # noqa: BLE001 - unknown or malformed id: the same answer
            return JSONResponse({"error": "no such run"}, status_code=404)
        if (run.parameters or {}).get("tenant") != tenant:
            return JSONResponse({"error": "no such run"}, status_code=404)  # another tenant's run is not ours to show
        store = store_factory()
        record = store.get_run(run_id)
        ended = store.run_outcome(run_id)
        facts = ended[1] if ended else {}
        return JSONResponse({"run_id": run_id, "state": run.state_name, "flow_state": record.state if record else None,
                             "outcome": record.outcome if record else None,
                             **{k: facts[k] for k in ("verdict", "rto_s", "rpo_s", "data_loss_s", "error")
                                if facts.get(k) is not None},
                             "reports": facts.get("report") or {},
                             **({"ui_url": f"{ui_url.rstrip('/')}/runs/flow-run/{run_id}"} if ui_url else {})})

    return app


def _tenant(tenant: str, config_dir: str | None) -> Any:
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


def _create_run(runs: PrefectRuns, flow_name: str, tenant: str, parameters: dict[str, Any],
                idempotency_key: str | None) -> Any:
    from flows import load_flow

    flow = load_flow(flow_name)
    try:
        flow.validate_parameters({"tenant": tenant, **parameters})
    except Exception as exc:  # noqa: BLE001 - the flow's own validation says what is wrong
        raise Refused(422, f"parameters: {exc}") from None
    return runs.create(flow_name, tenant, parameters, idempotency_key)

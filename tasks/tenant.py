"""Tenant onboarding tasks: validate, check prerequisites, record, issue secrets, write the DR plan.

Each task checks before it acts, so running it again changes nothing: the tenant row is only
rewritten when its configuration changed, secret blocks are created only when absent (never
overwritten), and the DR plan files are only rewritten when this configuration and these
templates would produce a different document. Caching is off everywhere: a cached result must
never stand in for a fresh look at the store, the Prefect server or the files.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import secrets
import socket
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prefect import get_client, task
from prefect.artifacts import create_markdown_artifact
from prefect.blocks.system import Secret
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from pydantic import BaseModel, ConfigDict, SecretStr

from draas.errors import PermanentError
from draas.models.packages import MAX_SITE_BANDWIDTH_MBPS, MAX_SITE_LATENCY_MS
from draas.models.results import StepResult
from draas.models.tenant import Role, TenantConfig
from draas.models.tiers import TierCatalog
from draas.reports.dr_plan import render_dr_plan
from draas.state.store import StateStore
from draas.validation import ConfigInvalid, Problem, load_catalog, load_tenant, tenant_file
from tasks.common import RETRY_POLICY
from tasks.common import task_logger as _log

TENANT_ID = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
"""Same rule as the model's ``Slug``: checked before the id is used to build a file path."""

BLOCK_NAME = re.compile(r"^[a-z0-9-]+$")
"""Prefect block document names: lowercase letters, digits and dashes."""

DEFAULT_LATENCY_PORT = 443
LATENCY_SAMPLES = 5
LATENCY_TIMEOUT_S = 2.0

SECRET_BYTES = 32
"""Entropy of generated secrets (``secrets.token_urlsafe(32)``: 43 URL-safe characters)."""

DR_PLAN_KIND = "dr_plan"


class TenantPrerequisitesFailed(PermanentError):
    """The tenant does not meet the service definition's prerequisites; ``failed`` lists them all."""

    def __init__(self, tenant: str, failed: dict[str, dict[str, Any]]) -> None:
        self.tenant = tenant
        self.failed = failed
        lines = "\n".join(f"- {name}: {check['reason']}" for name, check in failed.items())
        super().__init__(f"tenant {tenant}: {len(failed)} prerequisite(s) not met:\n{lines}")


class TenantSecretsFailed(PermanentError):
    """A per-tenant secret block cannot be created (e.g. its configured name is not a valid block name)."""


class ValidatedTenant(BaseModel):
    """What validation hands to the rest of the flow: the tenant, its tier catalog and the step."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    tenant: TenantConfig
    catalog: TierCatalog
    step: StepResult




def webhook_secret_name(tenant_id: str) -> str:
    """Name of the Secret block holding the tenant's webhook signing key."""
    return f"{tenant_id}-webhook-signing-key"


# --- validation ------------------------------------------------------------------------------


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def validate_tenant_config(tenant: str, config_dir: str | None = None) -> ValidatedTenant:
    """Load ``tenant`` from ``config_dir`` and validate it, including overlaps with every other tenant.

    Nothing is written. Problems in sibling files that do not concern this tenant do not block it;
    anything this tenant shares with another one (VLAN, VRF, subnet, public IP, zone) does.

    Raises:
        ConfigInvalid: every problem found, one per file and field (permanent: never retried).
    """
    result = StepResult(step="validate_tenant_config", target=tenant)
    directory = Path(config_dir) if config_dir else None
    if not TENANT_ID.fullmatch(tenant):
        # A tenant id becomes a file path: refuse anything that is not a plain id.
        raise ConfigInvalid([Problem("flow parameters", "tenant",
                                     f"{tenant!r} is not a tenant id (lowercase letters, digits, dashes)")])
    config = load_tenant(tenant, directory)
    catalog = load_catalog(directory)
    source = tenant_file(tenant, directory)
    _log().info("tenant %s is valid (%s)", tenant, source.name)
    step = result.done(changed=False, detail={
        "file": str(source), "tier": config.network.tier, "machines": len(config.machines),
        "protection_groups": len(config.protection_groups),
    })
    return ValidatedTenant(tenant=config, catalog=catalog, step=step)


# --- prerequisites ---------------------------------------------------------------------------


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``(host, port)`` of ``host``, ``host:port``, ``[v6]:port`` or a URL (default port 443).

    Raises:
        ValueError: when no host can be read from ``endpoint``.
    """
    text = endpoint.strip()
    if "://" in text:
        parts = urlsplit(text)
        default = {"http": 80, "https": 443}.get(parts.scheme, DEFAULT_LATENCY_PORT)
        host, port = parts.hostname or "", parts.port or default
    elif text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:] else DEFAULT_LATENCY_PORT
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    else:  # a bare host name, IPv4 address or unbracketed IPv6 address
        host, port = text, DEFAULT_LATENCY_PORT
    if not host or not 0 < port < 65536:
        raise ValueError(f"cannot read host[:port] from {endpoint!r}")
    return host, port


def measure_tcp_latency(endpoint: str, samples: int = LATENCY_SAMPLES,
                        timeout: float = LATENCY_TIMEOUT_S) -> dict[str, Any]:
    """Median TCP connect round trip to ``endpoint`` over ``samples`` attempts.

    The name is resolved once, before timing, so DNS does not count as latency. The endpoint is
    unreachable when fewer than half of the attempts connect.

    Returns:
        ``{"endpoint", "address", "port", "samples_ms", "failures", "median_ms"}``; ``median_ms``
        is None and ``error`` says why when the endpoint is unreachable.
    """
    out: dict[str, Any] = {"endpoint": endpoint, "samples_ms": [], "failures": 0, "median_ms": None}
    try:
        host, port = parse_endpoint(endpoint)
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (ValueError, OSError) as exc:
        out["error"] = f"cannot resolve {endpoint!r}: {exc}"
        return out
    out["address"], out["port"] = address[0], port
    errors: list[str] = []
    for _ in range(samples):
        start = time.perf_counter()
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
        except OSError as exc:
            out["failures"] += 1
            errors.append(exc.strerror or type(exc).__name__)
            continue
        out["samples_ms"].append(round((time.perf_counter() - start) * 1000, 3))
    if len(out["samples_ms"]) * 2 < samples:
        out["error"] = (f"unreachable: {out['failures']} of {samples} TCP connects to "
                        f"{address[0]}:{port} failed ({', '.join(sorted(set(errors)))})")
    else:
        out["median_ms"] = round(statistics.median(out["samples_ms"]), 3)
    return out


_NOT_PUBLIC = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
)]
"""Addresses that cannot be a customer firewall's static public address. The documentation
ranges (TEST-NET-1/2/3) are accepted: they are what examples and the lab use."""


def _peer_is_public(peer: ipaddress.IPv4Address) -> bool:
    return not any(peer in net for net in _NOT_PUBLIC)


def _check(ok: bool, value: Any, requirement: str, reason: str) -> dict[str, Any]:
    return {"ok": ok, "value": value, "requirement": requirement, "reason": "" if ok else reason}


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def check_tenant_prerequisites(tenant: TenantConfig, latency_samples: int = LATENCY_SAMPLES) -> StepResult:
    """Check the service definition's prerequisites that can be checked from here.

    Checks: the customer firewall is IPsec-capable; the IPsec peer is a static public address;
    latency to the protected site is at most 30 ms (the median TCP connect time to
    ``protected_site.endpoint`` when one is given, otherwise the declared ``latency_ms``);
    someone may invoke DR and someone may request drills; bandwidth is at most 100 Mbps.

    Returns:
        A StepResult whose ``detail`` has each check's measured or declared value.

    Raises:
        TenantPrerequisitesFailed: listing every failed check (permanent: never retried).
    """
    result = StepResult(step="check_tenant_prerequisites", target=tenant.id)
    site, ipsec = tenant.protected_site, tenant.network.ipsec
    checks: dict[str, dict[str, Any]] = {}
    checks["ipsec_capable_firewall"] = _check(
        site.firewall_ipsec_capable, site.firewall_ipsec_capable, "true",
        "protected_site.firewall_ipsec_capable is false: the service needs a site-to-site IPsec VPN")
    checks["static_public_peer_ip"] = _check(
        _peer_is_public(ipsec.peer), str(ipsec.peer), "a static public IPv4 address",
        f"network.ipsec.peer {ipsec.peer} is not a public address")
    if site.endpoint:
        measured = measure_tcp_latency(site.endpoint, samples=latency_samples)
        median = measured["median_ms"]
        checks["latency_ms"] = _check(
            median is not None and median <= MAX_SITE_LATENCY_MS,
            {"source": "measured", **measured}, f"<= {MAX_SITE_LATENCY_MS} ms",
            measured.get("error") or f"measured {median} ms to {site.endpoint}, above {MAX_SITE_LATENCY_MS} ms")
    else:
        declared = site.latency_ms
        checks["latency_ms"] = _check(
            declared is not None and declared <= MAX_SITE_LATENCY_MS,
            {"source": "declared", "median_ms": declared}, f"<= {MAX_SITE_LATENCY_MS} ms",
            "no protected_site.endpoint to measure and no protected_site.latency_ms declared"
            if declared is None else f"declared {declared} ms, above {MAX_SITE_LATENCY_MS} ms")
    for role in (Role.INVOKE_DR, Role.REQUEST_DRILL):
        people = [p.email for p in tenant.authorised_persons if role in p.roles]
        checks[f"authorised_{role.value}"] = _check(
            bool(people), people, "at least one authorised person",
            f"no authorised person has the {role.value} role")
    checks["bandwidth_mbps"] = _check(
        site.bandwidth_mbps <= MAX_SITE_BANDWIDTH_MBPS, site.bandwidth_mbps, f"<= {MAX_SITE_BANDWIDTH_MBPS} Mbps",
        f"protected_site.bandwidth_mbps {site.bandwidth_mbps} is above {MAX_SITE_BANDWIDTH_MBPS} Mbps")
    failed = {name: c for name, c in checks.items() if not c["ok"]}
    if failed:
        raise TenantPrerequisitesFailed(tenant.id, failed)
    _log().info("tenant %s meets all %d prerequisites", tenant.id, len(checks))
    return result.done(changed=False, detail=checks)


# --- state store -----------------------------------------------------------------------------


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def record_tenant(tenant: TenantConfig, database_url: str | None = None) -> StepResult:
    """Record the tenant and its configuration in the state store; no change when already recorded."""
    result = StepResult(step="record_tenant", target=tenant.id)
    store = StateStore(database_url)
    before = store.get_tenant(tenant.id)
    row = store.upsert_tenant(tenant)
    if before is None:
        diff = [f"+ tenant {tenant.id} ({row.tier})"]
    elif before.config_sha256 != row.config_sha256 or before.status != "onboarded":
        diff = [(f"~ tenant {tenant.id}: config {before.config_sha256[:12]} -> {row.config_sha256[:12]}, "
                 f"status {before.status} -> {row.status}")]
    else:
        diff = []
    return result.done(changed=bool(diff), diff=diff,
                       detail={"config_sha256": row.config_sha256, "status": row.status, "tier": row.tier})


# --- secrets -----------------------------------------------------------------------------------


def _secret_exists(name: str) -> bool:
    # Read the document's metadata only: the value of an existing secret is never loaded.
    with get_client(sync_client=True) as client:
        try:
            client.read_block_document_by_name(name=name, block_type_slug="secret", include_secrets=False)
        except ObjectNotFound:
            return False
    return True


def _create_secret(name: str) -> bool:
    """Create Secret block ``name`` with a fresh random value; False when it exists already."""
    try:
        Secret(value=SecretStr(secrets.token_urlsafe(SECRET_BYTES))).save(name, overwrite=False)
    except ValueError as exc:
        # Another run created it between the check and now: keep theirs, never overwrite.
        if isinstance(exc.__cause__, ObjectAlreadyExists):
            return False
        # The exception's text is not passed on: it is not ours to vouch that it holds no value.
        raise TenantSecretsFailed(f"cannot create secret block {name!r} ({type(exc).__name__})") from None
    return True


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def ensure_tenant_secrets(tenant: TenantConfig) -> StepResult:
    """Create the tenant's Secret blocks that do not exist yet; existing ones are never touched.

    Blocks: ``<tenant>-webhook-signing-key`` (signs service desk webhook requests) and the IPsec
    pre-shared key named by ``network.ipsec.psk_secret``. A created value is 32 random bytes,
    URL-safe base64. Values are never logged or returned; only the block names are. A generated
    PSK has to reach the customer out of band (read it from the block); when the customer chose
    the key, save it in that block before onboarding and it is kept as it is.

    Raises:
        TenantSecretsFailed: a configured block name is not a valid Prefect block name.
    """
    result = StepResult(step="ensure_tenant_secrets", target=tenant.id)
    wanted = {"webhook_signing_key": webhook_secret_name(tenant.id),
              "ipsec_psk": tenant.network.ipsec.psk_secret}
    for purpose, name in wanted.items():
        if not BLOCK_NAME.fullmatch(name):
            field = "network.ipsec.psk_secret" if purpose == "ipsec_psk" else "id"
            raise TenantSecretsFailed(f"{field}: {name!r} is not a valid block name "
                                      "(lowercase letters, digits and dashes only)")
    created, existing = [], []
    for purpose, name in wanted.items():
        if not _secret_exists(name) and _create_secret(name):
            created.append(name)
            _log().info("created secret block %s (%s)", name, purpose)
        else:
            existing.append(name)
    return result.done(changed=bool(created), diff=[f"+ secret block {n}" for n in created],
                       detail={"blocks": wanted, "created": created, "existing": existing})


# --- DR plan -------------------------------------------------------------------------------------


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


class DrPlanFiles(BaseModel):
    """Where a DR plan was written, and from which config."""

    markdown: str
    html: str
    config_digest: str
    generated_at: datetime


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def write_dr_plan(tenant: TenantConfig, catalog: TierCatalog, output_dir: str = "out",
                  run_id: str | None = None, database_url: str | None = None) -> StepResult[DrPlanFiles]:
    """Render the tenant's DR plan and write ``<output_dir>/<tenant>/dr-plan.md`` and ``.html``.

    ``dr-plan.json`` next to them records when the plan was generated and from which config. A
    re-run re-renders the plan at that recorded time: when the result equals the files on disk
    (same config, same templates) nothing is rewritten and ``changed`` is False; otherwise the
    plan is generated now. Every generated plan is saved in the state store (Markdown and HTML)
    and the Markdown is published as the Prefect artifact ``dr-plan-<tenant>`` on every run.
    """
    result: StepResult[DrPlanFiles] = StepResult(step="write_dr_plan", target=tenant.id)
    folder = Path(output_dir) / tenant.id
    md_path, html_path, meta_path = (folder / f"dr-plan.{ext}" for ext in ("md", "html", "json"))
    secret_block = webhook_secret_name(tenant.id)
    store = StateStore(database_url)

    doc = None
    meta = _read(meta_path)
    if meta is not None:
        try:
            previous = datetime.fromisoformat(json.loads(meta)["generated_at"])
            again = render_dr_plan(tenant, catalog, generated_at=previous, webhook_secret_block=secret_block)
        except (ValueError, KeyError, TypeError):
            again = None  # an unreadable record: generate afresh
        if again is not None and _read(md_path) == again.markdown and _read(html_path) == again.html:
            doc = again
    diff: list[str] = []
    if doc is None:
        doc = render_dr_plan(tenant, catalog, generated_at=datetime.now(UTC),
                             webhook_secret_block=secret_block)
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(md_path, doc.markdown)
        _write_atomic(html_path, doc.html)
        _write_atomic(meta_path, json.dumps({
            "tenant": tenant.id, "title": doc.title, "generated_at": doc.generated_at.isoformat(),
            "config_digest": doc.config_digest, "markdown_sha256": _sha256(doc.markdown),
            "html_sha256": _sha256(doc.html)}, indent=2) + "\n")
        diff += [f"+ {md_path}", f"+ {html_path}"]
    # The store is the record of what was issued: save the plan unless this very text is there.
    saved = {r.format: r.content for r in store.reports(tenant.id, kind=DR_PLAN_KIND)}
    for fmt, content in (("markdown", doc.markdown), ("html", doc.html)):
        if saved.get(fmt) != content:
            store.save_report(tenant_id=tenant.id, kind=DR_PLAN_KIND, title=doc.title, content=content,
                              fmt=fmt, run_id=run_id)
            diff.append(f"+ state store report {DR_PLAN_KIND} ({fmt})")
    if TaskRunContext.get() or FlowRunContext.get():  # artifacts belong to a run; ``.fn()`` has none
        create_markdown_artifact(markdown=doc.markdown, key=f"dr-plan-{tenant.id}",
                                 description=f"{doc.title} (config {doc.config_digest})")
    _log().info("DR plan for %s %s", tenant.id, "written" if diff else "already up to date")
    return result.done(changed=bool(diff), diff=diff, detail={
        "markdown": str(md_path), "html": str(html_path), "config_digest": doc.config_digest,
        "generated_at": doc.generated_at.isoformat(), "sections": doc.sections},
        payload=DrPlanFiles(markdown=str(md_path), html=str(html_path), config_digest=doc.config_digest,
                            generated_at=doc.generated_at))

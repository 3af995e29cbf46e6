"""The onboard-tenant flow against the lab's service desk and the session's Prefect server.

Each test gets its own state store (a SQLite file) and output directory. Secret blocks and
service desk records live in the session-wide Prefect server and lab, so assertions about
them hold whether or not an earlier test onboarded the same tenant.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.blocks.system import Secret
from prefect.exceptions import ObjectNotFound

from draas.clients.servicedesk import CHANGE_REQUEST
from draas.site import Site
from draas.state.store import StateStore
from draas.validation import ConfigInvalid, load_tenant
from e2e.prefect_api import api_logs_of, artifacts_of
from flows.onboard import STEPS, onboard_tenant
from lab.state import LabState
from tasks.tenant import (
    TenantPrerequisitesFailed,
    TenantSecretsFailed,
    check_tenant_prerequisites,
    ensure_tenant_secrets,
    parse_endpoint,
    write_dr_plan,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Env:
    store: StateStore
    out: Path
    tmp: Path


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lab: LabState, prefect_harness: None) -> Iterator[Env]:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("DRAAS_DATABASE_URL", url)
    monkeypatch.delenv("DRAAS_CONFIG_DIR", raising=False)
    monkeypatch.delenv("DRAAS_SITE_CONFIG", raising=False)
    store = StateStore(url)
    yield Env(store=store, out=tmp_path / "out", tmp=tmp_path)
    store.dispose()


@pytest.fixture()
def captured_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every record the flow and task run loggers emit (at any level) during the test."""
    records: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Capture(level=logging.DEBUG)
    loggers = [logging.getLogger(n) for n in ("prefect.flow_runs", "prefect.task_runs", "draas.tasks")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        # setLevel, not the attribute: it also clears the isEnabledFor cache an earlier run filled.
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    yield records
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def copy_configs(tmp: Path, edit: dict[str, str] | None = None) -> Path:
    """configs/ copied to ``tmp``, with ``old -> new`` text replacements applied to acme.yaml."""
    target = tmp / "configs"
    shutil.copytree(PROJECT_ROOT / "configs", target)
    acme = target / "tenants" / "acme.yaml"
    text = acme.read_text()
    for old, new in (edit or {}).items():
        assert old in text, f"acme.yaml no longer contains {old!r}"
        text = text.replace(old, new)
    acme.write_text(text)
    return target


def change_records(lab: LabState, correlation_id: str) -> list[Any]:
    with Site.load().servicedesk_block().get_client() as client:
        return client.query(CHANGE_REQUEST, {"correlation_id": correlation_id})


def secret_value(name: str) -> str:
    return Secret.load(name).get()


def secret_block_names() -> set[str]:
    with get_client(sync_client=True) as client:
        docs = client.read_block_documents(include_secrets=False, offset=0, limit=200)
    return {d.name for d in docs if d.name and d.block_type and d.block_type.slug == "secret"}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the whole flow ------------------------------------------------------------------------------


def test_onboard_acme_then_rerun_changes_nothing(env: Env, lab: LabState, captured_logs: list[str]) -> None:
    first = onboard_tenant("acme", requested_by="alice.archer@acme.example.com", channel="cli",
                           output_dir=str(env.out))

    # The tenant is recorded with its config.
    row = env.store.get_tenant("acme")
    assert row is not None and row.tier == "gold" and row.status == "onboarded"
    assert row.config["protected_site"]["name"] == "acme-london-dc"

    # Every step is recorded, in runbook order, and the run is complete.
    assert [s.step for s in env.store.steps(first.run_id)] == list(STEPS)
    run = env.store.get_run(first.run_id)
    assert run is not None and (run.state, run.outcome, run.kind, run.tenant_id) == (
        "Completed", "success", "onboard", "acme")
    prereq = env.store.steps(first.run_id)[1]
    assert prereq.detail["latency_ms"]["value"] == {"source": "declared", "median_ms": 12.0}
    assert prereq.detail["static_public_peer_ip"]["value"] == "203.0.113.10"

    # Both secret blocks exist with strong values.
    key, psk = secret_value("acme-webhook-signing-key"), secret_value("acme-ipsec-psk")
    stored_key = key  # as the block holds it; the re-run must leave it untouched
    if isinstance(key, dict):  # rotated by `draas gateway key --rotate` (an earlier module): {"current": ...}
        assert len(key["current"]) == 64
        key = key["current"]
    else:
        assert len(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))) == 32
    assert len(psk) >= 32 and psk != key

    # Exactly one change record in the lab's service desk, the one the flow reports.
    records = change_records(lab, "onboard-acme")
    assert [r.number for r in records] == [first.change_number]
    assert "acme" in records[0].short_description

    # The DR plan: real content in both formats, files and state store agree.
    md, html = Path(first.dr_plan_markdown), Path(first.dr_plan_html)
    assert (md, html) == (env.out / "acme" / "dr-plan.md", env.out / "acme" / "dr-plan.html")
    md_text, html_text = md.read_text(), html.read_text()
    for needle in ("Alice Archer", "Bob Baker", "## 8. Recovery plan", "### Wave 1", "### Wave 4",
                   "acme-dc01 (domain controller)", "acme-webhook-signing-key"):
        assert needle in md_text, needle
    assert "Alice Archer" in html_text and "Wave 1" in html_text and "<html" in html_text
    reports = env.store.reports("acme", kind="dr_plan")
    assert {r.format: r.content for r in reports} == {"markdown": md_text, "html": html_text}

    # Artifacts: progress at 100 %, the DR plan, and the summary.
    artifacts = {a.key: a for a in artifacts_of(first.run_id)}
    assert artifacts["onboard-acme-progress"].data == 100.0
    assert "Alice Archer" in artifacts["dr-plan-acme"].data
    assert first.change_number in artifacts["onboard-acme"].data

    # Second run: nothing changes anywhere.
    mtimes = (md.stat().st_mtime_ns, html.stat().st_mtime_ns)
    second = onboard_tenant("acme", requested_by="alice.archer@acme.example.com", channel="cli",
                            output_dir=str(env.out))
    assert second.run_id != first.run_id
    assert second.changed is False
    assert {s.step: s.changed for s in second.steps} == dict.fromkeys(STEPS, False)
    stored = {s.step: s for s in env.store.steps(second.run_id)}
    assert stored["ensure_tenant_secrets"].changed is False
    assert sorted(stored["ensure_tenant_secrets"].detail["existing"]) == ["acme-ipsec-psk", "acme-webhook-signing-key"]
    assert (secret_value("acme-webhook-signing-key"), secret_value("acme-ipsec-psk")) == (stored_key, psk)
    assert [r.number for r in change_records(lab, "onboard-acme")] == [first.change_number]
    assert second.change_number == first.change_number
    assert (md.stat().st_mtime_ns, html.stat().st_mtime_ns) == mtimes
    assert len(env.store.reports("acme", kind="dr_plan")) == 2

    # The audit log: who asked, through which channel, and how each request ended.
    audit = env.store.audit_log("acme")
    assert [(a.action, a.outcome, a.actor, a.channel) for a in audit] == [
        ("onboard_tenant", outcome, "alice.archer@acme.example.com", "cli")
        for outcome in ("accepted", "succeeded", "accepted", "succeeded")]
    assert [a.run_id for a in audit] == [first.run_id] * 2 + [second.run_id] * 2

    # No secret value anywhere it could be read: files, store, artifacts, logs.
    assert any("created secret block" in m or "DR plan for acme" in m for m in captured_logs), captured_logs
    api_logs = api_logs_of(first.run_id) + api_logs_of(second.run_id)
    assert api_logs, "the runs' logs reached the API"
    everything = [md_text, html_text, (env.out / "acme" / "dr-plan.json").read_text(),
                  *(r.content for r in env.store.reports("acme")),
                  json.dumps([s.model_dump(mode="json") for r in (first, second) for s in r.steps]),
                  json.dumps([s.detail for r in (first, second) for s in env.store.steps(r.run_id)]),
                  json.dumps([a.detail for a in audit]),
                  *(json.dumps(a.data) for r in (first, second) for a in artifacts_of(r.run_id)),
                  *captured_logs, *api_logs]
    for value in (key, psk):
        assert not [text for text in everything if value in text]


def test_broken_config_is_rejected_and_changes_nothing(env: Env, lab: LabState) -> None:
    configs = copy_configs(env.tmp, {"latency_ms: 12": "latency_ms: 45"})
    secrets_before = secret_block_names()
    desk_before = len(change_records(lab, "onboard-acme"))

    with pytest.raises(ConfigInvalid) as caught:
        onboard_tenant("acme", requested_by="bob", channel="ui", config_dir=str(configs),
                       output_dir=str(env.out))

    message = str(caught.value)
    assert "acme.yaml" in message and "protected_site.latency_ms" in message
    assert [(p.field_path, Path(p.file).name) for p in caught.value.problems] == [
        ("protected_site.latency_ms", "acme.yaml")]
    # Only the audit entry of the refused request was written.
    counts = env.store.counts()
    assert counts["audit_log"] == 1
    assert {t: n for t, n in counts.items() if n and t not in ("audit_log", "schema_version")} == {}
    assert env.store.get_tenant("acme") is None
    (entry,) = env.store.audit_log()
    assert (entry.actor, entry.outcome, entry.tenant_id) == ("bob", "refused", "acme")
    assert any("protected_site.latency_ms" in p for p in entry.detail["problems"])
    assert not env.out.exists()
    assert secret_block_names() == secrets_before
    assert len(change_records(lab, "onboard-acme")) == desk_before


def test_tenant_parameter_must_be_an_id(env: Env) -> None:
    with pytest.raises(ConfigInvalid, match="not a tenant id"):
        onboard_tenant("../tenants/acme", output_dir=str(env.out))
    assert env.store.counts()["flow_runs"] == 0
    (entry,) = env.store.audit_log()
    assert entry.outcome == "refused" and entry.tenant_id is None


def test_unreachable_endpoint_fails_the_run_before_anything_is_recorded(env: Env) -> None:
    port = closed_port()
    configs = copy_configs(env.tmp, {"latency_ms: 12": f'latency_ms: 12\n  endpoint: "127.0.0.1:{port}"'})

    with pytest.raises(TenantPrerequisitesFailed) as caught:
        onboard_tenant("acme", requested_by="ops", config_dir=str(configs), output_dir=str(env.out))

    assert list(caught.value.failed) == ["latency_ms"]
    assert "unreachable" in str(caught.value) and f"127.0.0.1:{port}" in str(caught.value)
    assert env.store.get_tenant("acme") is None
    (run,) = env.store.runs(tenant_id="acme")
    assert (run.state, run.outcome) == ("Failed", "failure")
    assert "TenantPrerequisitesFailed" in (run.error or "")
    assert [s.step for s in env.store.steps(run.id)] == ["validate_tenant_config"]
    assert [a.outcome for a in env.store.audit_log("acme")] == ["accepted", "failed"]
    assert not env.out.exists()


# --- the tasks on their own -----------------------------------------------------------------------


def test_latency_is_measured_when_an_endpoint_is_given(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        configs = copy_configs(tmp_path, {"latency_ms: 12": f'latency_ms: 12\n  endpoint: "127.0.0.1:{port}"'})
        result = check_tenant_prerequisites.fn(load_tenant("acme", configs), latency_samples=3)
    latency = result.detail["latency_ms"]
    assert latency["ok"] is True
    assert latency["value"]["source"] == "measured"
    assert latency["value"]["port"] == port and len(latency["value"]["samples_ms"]) == 3
    assert 0 < latency["value"]["median_ms"] < 30
    assert result.changed is False


def test_every_failed_prerequisite_is_listed() -> None:
    acme = load_tenant("acme")
    site = acme.protected_site.model_copy(update={"firewall_ipsec_capable": False, "latency_ms": None,
                                                  "bandwidth_mbps": 155})
    ipsec = acme.network.ipsec.model_copy(update={"peer": IPv4Address("10.1.2.3")})
    people = [p.model_copy(update={"roles": ["invoke_dr"]}) for p in acme.authorised_persons]
    broken = acme.model_copy(update={
        "protected_site": site, "authorised_persons": people,
        "network": acme.network.model_copy(update={"ipsec": ipsec})})

    with pytest.raises(TenantPrerequisitesFailed) as caught:
        check_tenant_prerequisites.fn(broken)

    assert sorted(caught.value.failed) == ["authorised_request_drill", "bandwidth_mbps",
                                           "ipsec_capable_firewall", "latency_ms", "static_public_peer_ip"]
    assert caught.value.failed["bandwidth_mbps"]["value"] == 155
    assert "10.1.2.3" in str(caught.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("vpn.acme.example.com", ("vpn.acme.example.com", 443)),
    ("203.0.113.10:500", ("203.0.113.10", 500)),
    ("[2001:db8::1]:8443", ("2001:db8::1", 8443)),
    ("2001:db8::1", ("2001:db8::1", 443)),
    ("http://gw.acme.example.com/ping", ("gw.acme.example.com", 80)),
])
def test_parse_endpoint(text: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(text) == expected


def test_secrets_are_created_once_and_never_overwritten(prefect_harness: None) -> None:
    acme = load_tenant("acme")
    tenant_id = f"t{uuid.uuid4().hex[:10]}"
    psk_name = f"{tenant_id}-ipsec-psk"
    tenant = acme.model_copy(update={"id": tenant_id, "network": acme.network.model_copy(update={
        "ipsec": acme.network.ipsec.model_copy(update={"psk_secret": psk_name})})})
    Secret(value="customer-chosen-psk").save(psk_name)  # the customer's key, saved before onboarding
    try:
        first = ensure_tenant_secrets.fn(tenant)
        assert first.changed is True
        assert first.detail["created"] == [f"{tenant_id}-webhook-signing-key"]
        assert first.detail["existing"] == [psk_name]
        key = secret_value(f"{tenant_id}-webhook-signing-key")
        assert secret_value(psk_name) == "customer-chosen-psk"

        second = ensure_tenant_secrets.fn(tenant)
        assert (second.changed, second.diff, second.detail["created"]) == (False, [], [])
        assert secret_value(f"{tenant_id}-webhook-signing-key") == key
        assert secret_value(psk_name) == "customer-chosen-psk"
        assert key not in json.dumps(first.model_dump(mode="json"))
    finally:
        with get_client(sync_client=True) as client:
            for name in (psk_name, f"{tenant_id}-webhook-signing-key"):
                try:
                    doc = client.read_block_document_by_name(name, block_type_slug="secret")
                    client.delete_block_document(doc.id)
                except ObjectNotFound:
                    pass


def test_invalid_psk_block_name_creates_nothing(prefect_harness: None) -> None:
    acme = load_tenant("acme")
    tenant_id = f"t{uuid.uuid4().hex[:10]}"
    tenant = acme.model_copy(update={"id": tenant_id, "network": acme.network.model_copy(update={
        "ipsec": acme.network.ipsec.model_copy(update={"psk_secret": "Acme PSK"})})})
    with pytest.raises(TenantSecretsFailed, match="network.ipsec.psk_secret"):
        ensure_tenant_secrets.fn(tenant)
    assert f"{tenant_id}-webhook-signing-key" not in secret_block_names()


def test_dr_plan_is_rewritten_only_when_it_would_differ(env: Env) -> None:
    acme = load_tenant("acme")
    from draas.validation import load_catalog

    catalog = load_catalog()
    first = write_dr_plan.fn(acme, catalog, str(env.out))
    md = env.out / "acme" / "dr-plan.md"
    text = md.read_text()
    assert first.changed is True and str(md) in first.diff[0]

    assert write_dr_plan.fn(acme, catalog, str(env.out)).changed is False
    assert md.read_text() == text

    md.write_text(text + "\nedited by hand\n")  # drift on disk is repaired
    repaired = write_dr_plan.fn(acme, catalog, str(env.out))
    assert repaired.changed is True and "edited by hand" not in md.read_text()

    renamed = acme.model_copy(update={"display_name": "ACME Holdings"})  # a config change
    changed = write_dr_plan.fn(renamed, catalog, str(env.out))
    assert changed.changed is True and "ACME Holdings" in md.read_text()
    assert changed.detail["config_digest"] != first.detail["config_digest"]
    assert [r.format for r in env.store.reports("acme", kind="dr_plan")][-2:] == ["markdown", "html"]

"""The DR Test Report (draas.reports.drill_report): golden Markdown, JSON and HTML, verdicts, masking, schema.

The fixture is a realistic drill: five machines in four waves (one optional machine failed),
checks with evidence, isolation and teardown evidence and two earlier drills. Golden files
live in tests/unit/golden/drill_report.{md,json,html}; after an intended change regenerate
them with ``UPDATE_GOLDEN=1 pytest tests/unit/test_drill_report.py`` and the published schema
with ``python -m draas.reports.drill_report --write-schema``.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from draas.reports.drill_model import (
    ChangeInfo,
    CheckEvidence,
    DrillReportData,
    HistoryPoint,
    IsolationCheck,
    IsolationEvidence,
    Person,
    RecoveryPointInfo,
    StepEvidence,
    TeardownEvidence,
    VmRecord,
    judge,
)
from draas.reports.drill_report import (
    SCHEMA_PATH,
    SECTIONS,
    critical_path,
    json_schema,
    mask_report_text,
    render_html,
    render_json,
    render_markdown,
    report_stem,
    schema_text,
    store_report,
    write_report,
)

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
T0 = datetime(2026, 11, 14, 9, 0, 0, tzinfo=UTC)
RUN_ID = "3f2a9c1e-5b7d-4e21-9a0b-c4d5e6f70812"
PASSWORD = "Hunter2-Secret!"
KNOWN_SECRET = "s3cr3t-psk-9f8e7d"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def steps(start: float, plan: list[tuple[str, float, str]]) -> list[StepEvidence]:
    out, t = [], start
    for name, seconds, status in plan:
        out.append(StepEvidence(step=name, target="vc-recovery", started=at(t), finished=at(t + seconds),
                                seconds=seconds, status=status,  # type: ignore[arg-type]
                                error="guest did not answer within 300 s" if status == "failed" else None))
        t += seconds
    return out


def vm(machine: str, wave: int, start: float, *, depends_on: list[str] | None = None, optional: bool = False,
       failed: bool = False, checks: list[CheckEvidence] | None = None) -> VmRecord:
    name = f"{machine}-drill"
    plan = [("move NIC", 4.0, "ok"), ("re-IP", 12.5, "ok"), ("power on", 6.0, "ok"),
            ("guest up", 95.0 if not failed else 300.0, "ok" if not failed else "failed")]
    if not failed:
        plan.append(("checks", 20.0, "ok"))
    st = steps(start, plan)
    end = (st[-1].finished - T0).total_seconds()  # type: ignore[operator]
    return VmRecord(
        machine=machine, vm=name, wave=wave, depends_on=depends_on or [], optional=optional,
        status="optional_failed" if failed else "verified",
        error="guest did not answer within 300 s" if failed else None,
        powered_on_at_s=start + 22.5, guest_up_at_s=None if failed else start + 117.5,
        verified_at_s=None if failed else end, steps=st, checks=checks or [], networks=[f"{machine}-bubble-pg"],
    )


def check(machine: str, name: str, kind: str, start: float, status: str, detail: str,
          target: str | None = None) -> CheckEvidence:
    return CheckEvidence(vm=f"{machine}-drill", check=name, type=kind, status=status,  # type: ignore[arg-type]
                         target=target, detail=detail, attempts=1 if status == "passed" else 3,
                         started=at(start), finished=at(start + 2.5))


def sample_data(**changes: object) -> DrillReportData:
    """The fixture drill; ``changes`` override fields before the verdict is judged."""
    w1 = 0.0
    w2 = w1 + 137.5
    w3 = w2 + 137.5
    w4 = w3 + 137.5
    vms = [
        vm("web01", 4, w4, depends_on=["app01"], checks=[
            check("web01", "https", "http", w4 + 118, "passed", "GET https://10.20.0.11:443/ returned 200 in 84 ms",
                  "10.20.0.11:443"),
            check("web01", "login", "http", w4 + 121, "passed",
                  f"POST /login with password={PASSWORD} returned 302 to /home", "10.20.0.11:443"),
        ]),
        vm("dc01", 1, w1, checks=[
            check("dc01", "heartbeat", "heartbeat", w1 + 118, "passed", "VMware Tools heartbeat green"),
            check("dc01", "ldap", "tcp", w1 + 120, "passed", "TCP 10.20.0.5:389 connected in 3 ms", "10.20.0.5:389"),
        ]),
        vm("app01", 3, w3, depends_on=["db01"], checks=[
            check("app01", "api", "http", w3 + 118, "passed", "GET http://10.20.0.21:8080/health returned 200",
                  "10.20.0.21:8080"),
        ]),
        vm("db01", 2, w2, depends_on=["dc01"], checks=[
            check("db01", "sql", "tcp", w2 + 118, "passed", "TCP 10.20.0.31:1433 connected in 5 ms", "10.20.0.31:1433"),
            check("db01", "replica-lag", "command", w2 + 121, "passed", "query returned 0 rows behind"),
        ]),
        vm("mon01", 3, w3, optional=True, failed=True, checks=[
            check("mon01", "heartbeat", "heartbeat", w3 + 330, "not_run", "guest never came up"),
        ]),
    ]
    data = dict(
        tenant="acme", tenant_name="ACME Manufacturing <Test & Co>", run_id=RUN_ID,
        started=T0 - timedelta(minutes=3), finished=at(w4 + 137.5 + 240),
        requested_by="jane.doe@acme.example", channel="service desk", approved_by="ops.lead@provider.example",
        ticket="SD-4711", scope=["pg-core", "pg-web"], verdict="PASS", rto_s=w4 + 137.5 + 30, rto_target_s=4 * 3600,
        machine_s=w4 + 137.5, approval_wait_s=150.0, rpo_s=42.0, rpo_target_s=300.0,
        recovery_points=[
            RecoveryPointInfo(group="pg-web", checkpoint_id="cp-000912", time=T0 - timedelta(minutes=3, seconds=40),
                              consistency="crash", package="continuous"),
            RecoveryPointInfo(group="pg-core", checkpoint_id="cp-000911", time=T0 - timedelta(minutes=3, seconds=42),
                              tag="app-consistent nightly", consistency="application", package="continuous",
                              replication_during_test="running"),
        ],
        vms=vms,
        isolation=IsolationEvidence(proven=True, nic_backings_ok=True, checks=[
            IsolationCheck(name="bubble VLANs have no uplink", passed=True, detail="vlan 3101-3104 not trunked to core",
                           checked_at=at(-20)),
            IsolationCheck(name="test port groups only", passed=True, detail="5 NICs on acme-bubble port groups",
                           checked_at=at(-15)),
            IsolationCheck(name="no route to production", passed=True,
                           detail="VRF acme-drill has no route to 10.10.0.0/16", checked_at=at(-18)),
        ]),
        teardown=TeardownEvidence(
            created=["vm:web01-drill", "vm:dc01-drill", "vm:app01-drill", "vm:db01-drill", "vm:mon01-drill",
                     "portgroup:acme-bubble-pg", "vlan:3101", "checkpoint-test:pg-core", "checkpoint-test:pg-web"],
            removed=["vm:web01-drill", "vm:dc01-drill", "vm:app01-drill", "vm:db01-drill", "vm:mon01-drill",
                     "portgroup:acme-bubble-pg", "vlan:3101", "checkpoint-test:pg-core", "checkpoint-test:pg-web"],
            verified_absent=True),
        untested_changes=[
            ChangeInfo(kind="machine_added", subject="mon01", description="added to pg-core",
                       detected_at=datetime(2026, 11, 2, 14, 5, tzinfo=UTC)),
            ChangeInfo(kind="nic_changed", subject="web01", description="second NIC on vlan 120",
                       detected_at=datetime(2026, 10, 30, 8, 0, tzinfo=UTC)),
        ],
        history=[
            HistoryPoint(run_id="b95f3a10-0000-4000-8000-000000000002", started=datetime(2026, 8, 14, 9, 0, tzinfo=UTC),
                         verdict="PASS WITH WARNINGS", rto_s=900.0, rpo_s=65.0),
            HistoryPoint(run_id="7c41d0e2-0000-4000-8000-000000000001", started=datetime(2026, 5, 14, 9, 0, tzinfo=UTC),
                         verdict="PASS", rto_s=780.0, rpo_s=38.0),
        ],
        authorised_persons=[
            Person(name="Jane Doe", email="jane.doe@acme.example", roles=["request_drill", "receive_reports"]),
            Person(name="Bob Builder", email="bob@acme.example", roles=["invoke_dr"]),
        ],
    )
    data.update(changes)
    report = DrillReportData.model_validate(data)
    verdict, cause, warnings = judge(report)
    return report.model_copy(update={"verdict": verdict, "cause": cause, "warnings": warnings})


@pytest.fixture(scope="module")
def data() -> DrillReportData:
    return sample_data()


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path.name} missing: run with UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{path.name} differs: run with UPDATE_GOLDEN=1 if intended"


# --------------------------------------------------------------------------- golden files


def test_markdown_matches_golden(data: DrillReportData) -> None:
    golden("drill_report.md", render_markdown(data, secrets=[KNOWN_SECRET]))


def test_json_matches_golden(data: DrillReportData) -> None:
    golden("drill_report.json", render_json(data, secrets=[KNOWN_SECRET]))


def test_html_matches_golden(data: DrillReportData) -> None:
    golden("drill_report.html", render_html(data, secrets=[KNOWN_SECRET]))


def test_rendering_is_deterministic_whatever_the_input_order(data: DrillReportData) -> None:
    shuffled = data.model_copy(update={
        "vms": list(reversed(data.vms)), "history": list(reversed(data.history)),
        "authorised_persons": list(reversed(data.authorised_persons)),
        "teardown": data.teardown.model_copy(update={"created": sorted(data.teardown.created, reverse=True)}),
    })
    assert render_markdown(shuffled) == render_markdown(data)
    assert render_html(shuffled) == render_html(data)
    assert render_json(shuffled) == render_json(data)


# --------------------------------------------------------------------------- content


def test_sections_in_order_in_markdown_and_html(data: DrillReportData) -> None:
    md, html = render_markdown(data), render_html(data)
    md_headings = re.findall(r"^## (.+)$", md, re.M)
    assert md_headings == [title for _, title in SECTIONS]
    html_headings = re.findall(r"<h2>(.+?)</h2>", html)
    assert html_headings == [title for _, title in SECTIONS]


def test_summary_shows_times_apart_and_recovery_points(data: DrillReportData) -> None:
    md = render_markdown(data)
    assert "**Verdict: PASS WITH WARNINGS**" in md
    assert "| Human wait (approval) | 2m30s |" in md
    assert "| Machine time (recovery engine) | 9m10s |" in md
    assert "| RTO (request accepted to all verified, approval excluded) | 9m40s | 4h | met |" in md
    assert "| RPO (recovery point age at request time, worst group) | 42s | 5m | met |" in md
    assert "| pg-core | cp-000911 | 2026-11-14 08:56:18 UTC | app-consistent nightly | application |" in md
    assert "| pg-web | cp-000912 |" in md and "| crash |" in md
    # Display text cannot inject HTML.
    assert "ACME Manufacturing \\<Test & Co\\>" in md
    assert "ACME Manufacturing &lt;Test &amp; Co&gt;" in render_html(data)


def test_per_vm_steps_and_check_evidence(data: DrillReportData) -> None:
    md = render_markdown(data)
    assert "### Wave 3: mon01-drill (optional)" in md
    assert ("| guest up | vc-recovery | 09:04:57 | 09:09:57 | 300.0 s | failed: guest did not answer within 300 s |"
            in md)
    assert ("| web01-drill | https | http | 10.20.0.11:443 | passed | GET https://10.20.0.11:443/ returned 200 in 84 ms"
            " | 1 | 09:08:50 | 09:08:53 |") in md
    assert "| mon01-drill | heartbeat | heartbeat | — | not run | guest never came up | 3 |" in md


def test_critical_path_follows_dependencies(data: DrillReportData) -> None:
    # mon01 (optional, failed) ends later than app01 but web01 depends on app01 only.
    assert critical_path(data) == ["dc01", "db01", "app01", "web01"]
    md = render_markdown(data)
    assert "Critical path: dc01-drill → db01-drill → app01-drill → web01-drill" in md
    assert "### Wave 4: web01-drill (critical path)" in md


def test_critical_path_falls_back_to_the_wave_gate() -> None:
    data = sample_data()
    no_deps = data.model_copy(update={"vms": [v.model_copy(update={"depends_on": []}) for v in data.vms]})
    # Without dependencies web01 (wave 4) waits for the last machine of an earlier wave that ended before it.
    assert critical_path(no_deps)[-1] == "web01"
    assert critical_path(no_deps)[0] == "dc01"


def test_isolation_teardown_changes_people(data: DrillReportData) -> None:
    md = render_markdown(data)
    assert "| Isolation proven before power-on | yes |" in md
    assert "| bubble VLANs have no uplink | passed | vlan 3101-3104 not trunked to core |" in md
    assert "| Objects created | 9 |" in md and "| Objects left | 0 |" in md
    assert "| vm:mon01-drill | yes | no |" in md
    assert "| 2026-10-30 08:00:00 UTC | nic_changed | web01 | second NIC on vlan 120 |" in md
    assert md.index("2026-05-14 09:00:00 UTC") < md.index("2026-08-14 09:00:00 UTC")
    assert "| 3f2a9c1e (this drill) | PASS WITH WARNINGS | 9m40s | 42s |" in md
    assert "| Requested by | jane.doe@acme.example (via service desk) |" in md
    assert "| Approved by | ops.lead@provider.example |" in md
    assert md.index("| Bob Builder |") < md.index("| Jane Doe |")


def test_html_has_gantt_bar_per_step_and_trend_points(data: DrillReportData) -> None:
    html = render_html(data)
    n_steps = sum(len(v.steps) for v in data.vms)
    assert len(re.findall(r'<rect class="step ', html)) == n_steps
    critical_steps = sum(len(v.steps) for v in data.vms if v.machine in {"dc01", "db01", "app01", "web01"})
    assert len(re.findall(r'<rect class="step [a-z]+ critical"', html)) == critical_steps
    assert len(re.findall(r'<circle class="point rto ', html)) == 3
    assert len(re.findall(r'<circle class="point rpo ', html)) == 3
    assert '<line class="target"' in html
    assert "<script" not in html and "http://" not in html.split("<body>")[0].replace("http://www.w3.org", "")
    assert 'id="verdict" class="verdict pass-with-warnings"' in html


# --------------------------------------------------------------------------- verdicts


def test_verdict_pass_when_all_good() -> None:
    data = sample_data()
    good = sample_data(vms=[v for v in data.vms if v.machine != "mon01"])
    assert good.verdict == "PASS" and good.warnings == []
    assert "**Verdict: PASS**" in render_markdown(good)


def test_verdict_fail_on_leftovers_and_isolation() -> None:
    data = sample_data()
    failed = sample_data(
        teardown=data.teardown.model_copy(update={"leftovers": ["vlan:3101"], "verified_absent": False}),
        isolation=data.isolation.model_copy(update={"proven": False, "checks": [
            data.isolation.checks[0].model_copy(update={"passed": False, "detail": "vlan 3101 trunked to core"})]}))
    assert failed.verdict == "FAIL"
    assert failed.cause is not None and "vlan:3101" in failed.cause and "isolation was not proven" in failed.cause
    md = render_markdown(failed)
    assert "**Verdict: FAIL**" in md
    assert "| vlan:3101 | yes | LEFT |" in md
    assert "| Isolation proven before power-on | NO |" in md
    assert 'class="verdict fail"' in render_html(failed)


def test_verdict_fail_when_a_required_vm_is_not_verified() -> None:
    data = sample_data()
    broken = [v.model_copy(update={"status": "failed", "error": "re-IP failed"}) if v.machine == "db01" else v
              for v in data.vms]
    failed = sample_data(vms=broken)
    assert failed.verdict == "FAIL" and "db01-drill (re-IP failed)" in (failed.cause or "")
    assert "| Cause | not verified: db01-drill (re-IP failed) |" in render_markdown(failed)


def test_rto_over_target_is_a_warning() -> None:
    data = sample_data(rto_target_s=300.0, vms=[v for v in sample_data().vms if v.machine != "mon01"])
    assert data.verdict == "PASS WITH WARNINGS"
    assert "RTO 580 s over the target of 300 s" in render_markdown(data)
    assert "| 9m40s | 5m | over target |" in render_markdown(data)


# --------------------------------------------------------------------------- secrets


def test_secrets_never_appear(data: DrillReportData) -> None:
    leaky = data.model_copy(update={"cause": f"ssh user:{KNOWN_SECRET}@10.0.0.1 failed, token: abc123def456"})
    texts = [render_markdown(leaky, secrets=[KNOWN_SECRET]), render_html(leaky, secrets=[KNOWN_SECRET]),
             render_json(leaky, secrets=[KNOWN_SECRET])]
    for text in texts:
        assert PASSWORD not in text and "Hunter2" not in text
        assert KNOWN_SECRET not in text
        assert "abc123def456" not in text
    assert "password=\\*\\*\\*\\*\\*" in texts[0]  # Markdown escapes the mask's asterisks
    assert all("password=*****" in text for text in texts[1:])


def test_known_secret_masked_in_free_text(data: DrillReportData) -> None:
    vms = [v.model_copy(update={"error": f"psk {KNOWN_SECRET} rejected"}) if v.machine == "mon01" else v
           for v in data.vms]
    texts = [f(data.model_copy(update={"vms": vms}), secrets=[KNOWN_SECRET])
             for f in (render_markdown, render_html, render_json)]
    assert all(KNOWN_SECRET not in t and "psk ***** rejected" in t.replace("\\*", "*") for t in texts)


@pytest.mark.parametrize(("text", "expected"), [
    ("password=abc", "password=*****"),
    ("DB_PASSWORD: 'x y', user=bob", "DB_PASSWORD: '*****', user=bob"),
    ("api_key=\"k1\"", "api_key=\"*****\""),
    ("https://admin:pw@host/x", "https://admin:*****@host/x"),
    ("Authorization: Bearer eyJhbGciOi.x", "Authorization: Bearer *****"),
    ("password check failed", "password check failed"),
    ("password=*****", "password=*****"),
])
def test_mask_report_text(text: str, expected: str) -> None:
    assert mask_report_text(text) == expected


# --------------------------------------------------------------------------- schema, files, store


def test_json_validates_against_published_schema(data: DrillReportData) -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(render_json(data)), schema, cls=jsonschema.Draft202012Validator)
    broken = json.loads(render_json(data))
    broken["verdict"] = "MAYBE"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)


def test_published_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "docs/schemas/dr-test-report.schema.json is stale: run python -m draas.reports.drill_report --write-schema")
    assert json_schema()["title"] == "DR Test Report"


def test_json_round_trips(data: DrillReportData) -> None:
    again = DrillReportData.model_validate_json(render_json(data))
    assert render_json(again) == render_json(data)


def test_write_report_files(tmp_path: Path, data: DrillReportData) -> None:
    paths = write_report(data, tmp_path, secrets=[KNOWN_SECRET])
    stem = "drill-20261114T085700Z-3f2a9c1e"
    assert report_stem(data) == stem
    assert {k: p.relative_to(tmp_path).as_posix() for k, p in paths.items()} == {
        "html": f"acme/reports/{stem}.html", "markdown": f"acme/reports/{stem}.md",
        "pdf": f"acme/reports/{stem}.pdf", "json": f"acme/reports/{stem}.json"}
    assert paths["pdf"].read_bytes().startswith(b"%PDF-")
    assert paths["markdown"].read_text(encoding="utf-8") == render_markdown(data)


def test_store_report_and_cli(tmp_path: Path, data: DrillReportData, monkeypatch: pytest.MonkeyPatch) -> None:
    from draas.cli import app
    from draas.state.store import StateStore

    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore(url)
    paths = write_report(data, tmp_path / "out")
    records = store_report(store, data, paths)
    assert [r.format for r in records] == ["markdown", "json"]
    assert [r.kind for r in store.reports("acme", kind="drill")] == ["drill", "drill"]
    assert store.reports("acme", kind="drill")[1].content == render_json(data)
    assert "PASS WITH WARNINGS" in records[0].title and "drill-20261114T085700Z-3f2a9c1e" in records[0].title
    store.save_report(tenant_id="acme", kind="drill", title="broken", content="{}", fmt="json", run_id="broken-1")
    store.dispose()

    monkeypatch.setenv("DRAAS_DATABASE_URL", url)
    runner = CliRunner()
    listing = runner.invoke(app, ["report", "--tenant", "acme", "--output-dir", str(tmp_path / "out")])
    assert listing.exit_code == 0, listing.output
    assert RUN_ID in listing.output and "PASS WITH WARNINGS" in listing.output
    assert "drill-20261114T085700Z-3f2a9c1e.pdf" in listing.output
    assert "stored report" in listing.output and "(run broken-1) is not a DR test report" in listing.output
    shown = runner.invoke(app, ["report", "--tenant", "acme", "--run", RUN_ID[:8]])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == render_markdown(data)  # the warning about the broken record went to stderr
    as_json = runner.invoke(app, ["report", "--tenant", "acme", "--run", RUN_ID, "--format", "json"])
    assert json.loads(as_json.stdout)["run_id"] == RUN_ID
    as_html = runner.invoke(app, ["report", "--tenant", "acme", "--run", RUN_ID, "--format", "html"])
    assert as_html.stdout == render_html(data)
    missing = runner.invoke(app, ["report", "--tenant", "acme", "--run", "nope"])
    assert missing.exit_code == 1 and "no DR test report" in missing.output
    none = runner.invoke(app, ["report", "--tenant", "other"])
    assert none.exit_code == 0 and "no DR test report" in none.output


def test_a_drill_stopped_before_any_machine_still_reports(tmp_path: Path) -> None:
    # Cancelled before recovery: no machine, no step, isolation not checked, no history.
    empty = DrillReportData(
        tenant="acme", tenant_name="ACME", run_id="deadbeef-0000", started=T0, finished=T0 + timedelta(minutes=2),
        requested_by="jane.doe@acme.example", channel="cli", scope=["pg-core"], verdict="PASS",
        cause="the run was cancelled", rto_target_s=3600, rpo_target_s=300,
        isolation=IsolationEvidence(proven=False), teardown=TeardownEvidence(verified_absent=True))
    verdict, cause, warnings = judge(empty)
    empty = empty.model_copy(update={"verdict": verdict, "cause": cause, "warnings": warnings})
    assert empty.verdict == "FAIL"
    md, html = render_markdown(empty), render_html(empty)
    assert "Critical path: none (no step ran)" in md and "No machine was in scope." in md
    assert "| Approved by | not approved (no approval recorded) |" in md
    assert 'class="gantt"' not in html and html.count('class="trend"') == 2
    assert render_json(empty).startswith("{") and write_report(empty, tmp_path)["pdf"].stat().st_size > 1000

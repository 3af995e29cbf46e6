"""The DR Test Report: rendered at the end of every drill, pass or fail, from :class:`DrillReportData`.

Formats: self-contained HTML (inline CSS, an inline SVG Gantt of the per-VM steps by wave with
the critical path highlighted, and an RTO/RPO trend chart over the tenant's drills), Markdown,
PDF (weasyprint from the HTML) and JSON (the model's JSON, keys sorted; its JSON Schema is
:func:`json_schema`, published as ``docs/schemas/dr-test-report.schema.json``).

Guarantees:

- **Deterministic**: the same data gives byte-identical Markdown, HTML and JSON. Nothing reads
  the clock; the report's date is ``data.finished``. Lists are put in a canonical order first
  (:func:`canonical`): VMs by wave and name, checks by VM, check and time, people by name...
- **No secrets**: every string of the data goes through :func:`mask_report_text` before it is
  rendered (:data:`SECRET_TEXT`: ``password=...``-style values, credentials in URLs,
  ``Bearer``/``Basic`` tokens; and :func:`~draas.reports.render.mask_text` with the secret values
  the caller knows, ``secrets=``), and every rendered text is masked again with those values in
  each format's escaping.
- **Same sections everywhere**: :data:`SECTIONS` is the order of the headings in Markdown, HTML
  and hence the PDF.

Files (:func:`write_report`): ``<out_dir>/<tenant>/reports/drill-<started:%Y%m%dT%H%M%SZ>-<run8>``
with the suffixes ``.html``, ``.md``, ``.pdf`` and ``.json``. :func:`store_report` keeps the
Markdown and the JSON in the state store (kind ``drill``); :func:`publish_artifacts` publishes
Prefect markdown, table and link artifacts when called inside a flow run.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from draas.models.types import describe_duration
from draas.reports.drill_model import DrillReportData, VmRecord
from draas.reports.render import (
    NONE,
    TEXT_MASK,
    Fact,
    Row,
    Table,
    escape_cell,
    escape_md,
    format_ts,
    html_env,
    markdown_env,
    mask_text,
)

__all__ = [
    "HTML_TEMPLATE", "MARKDOWN_TEMPLATE", "REPORT_KIND", "SCHEMA_ID", "SCHEMA_PATH", "SECRET_TEXT", "SECTIONS",
    "DrillReportView", "canonical", "critical_path", "build_view", "json_schema", "mask_report_text",
    "publish_artifacts", "render_html", "render_json", "render_markdown", "render_pdf", "report_stem",
    "schema_text", "store_report", "write_report",
]

MARKDOWN_TEMPLATE = "drill_report.md.j2"
HTML_TEMPLATE = "drill_report.html.j2"
REPORT_KIND = "drill"
"""The state store's ``kind`` of DR Test Reports."""

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "dr-test-report.schema.json"
SCHEMA_ID = "urn:draas:schema:dr-test-report"

SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Summary"),
    ("rto-rpo", "Recovery time and recovery point"),
    ("recovery-points", "Recovery points used"),
    ("timeline", "Timeline"),
    ("machines", "Machines and steps"),
    ("checks", "Verification checks"),
    ("isolation", "Isolation evidence"),
    ("teardown", "Teardown evidence"),
    ("changes", "Untested changes since the last successful drill"),
    ("history", "Comparison with previous drills"),
    ("people", "Requested, approved and authorised persons"),
    ("criteria", "Success criteria"),
)
"""(anchor, title) of every section, in document order (Markdown, HTML and PDF)."""

#: ``password=X``, ``token: X``, ``api_key="X"``..., ``user:X@`` in URLs, ``Bearer X``/``Basic X``.
SECRET_TEXT = re.compile(
    r"(?P<key>\b[\w.-]*(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|private[_-]?key|credential)s?"
    r"[\"']?\s*[:=]\s*)(?:(?P<quote>[\"'])[^\"'\n]*(?P=quote)|(?!\*{3})[^\s\"',;&]+)"
    r"|(?P<scheme>://[^\s/:@]+:)(?!\*{3})(?P<userinfo>[^\s/@]+)(?P<at>@)"
    r"|(?P<auth>\b(?:Bearer|Basic)\s+)(?!\*{3})(?P<cred>[A-Za-z0-9._~+/=-]{6,})",
    re.IGNORECASE,
)


def mask_report_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with secret-looking values (:data:`SECRET_TEXT`) and the known ``secrets`` replaced by ``*****``."""

    def repl(m: re.Match[str]) -> str:
        if m.group("key") is not None:
            quote = m.group("quote") or ""
            return f"{m.group('key')}{quote}{TEXT_MASK}{quote}"
        if m.group("scheme") is not None:
            return f"{m.group('scheme')}{TEXT_MASK}{m.group('at')}"
        return f"{m.group('auth')}{TEXT_MASK}"

    return mask_text(SECRET_TEXT.sub(repl, text), secrets)


def _mask_tree(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, Mapping):
        return {k: _mask_tree(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_tree(v, secrets) for v in value]
    if isinstance(value, str):
        return mask_report_text(value, secrets)
    return value


def _secret_forms(secrets: Iterable[str | None]) -> list[str]:
    # The secret as given and as each format escapes it (Markdown text, table cell, HTML, JSON).
    forms: set[str] = set()
    for s in secrets:
        if s:
            forms.update({s, escape_md(s), escape_cell(s), json.dumps(s)[1:-1],
                          s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
                          .replace("'", "&#39;")})
    return sorted(forms, key=len, reverse=True)


# --- canonical data ---------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def canonical(data: DrillReportData, secrets: Iterable[str | None] = ()) -> DrillReportData:
    """``data`` masked and in the report's order; every renderer starts from this.

    Masking: every string of the data goes through :func:`mask_report_text` (secret-looking
    values and the known ``secrets``); the model's own keys are fixed and none holds a secret. Order: recovery points by
    group, VMs by wave and machine, each VM's steps by start (ties kept), checks by VM, check and
    start, isolation checks by time and name, teardown lists by name, changes by time and subject,
    history by start (without this drill, should it be listed there too), people by name.
    """
    tree = _mask_tree(data.model_dump(mode="json"), _secret_forms(secrets))
    clean = DrillReportData.model_validate(tree)
    vms = []
    for v in sorted(clean.vms, key=lambda v: (v.wave, v.machine, v.vm)):
        vms.append(v.model_copy(update={
            "depends_on": sorted(v.depends_on),
            "networks": sorted(v.networks),
            "steps": sorted(v.steps, key=lambda s: _utc(s.started)),
            "checks": sorted(v.checks, key=lambda c: (c.vm, c.check, _utc(c.started))),
        }))
    iso = clean.isolation.model_copy(update={
        "checks": sorted(clean.isolation.checks, key=lambda c: (_utc(c.checked_at), c.name))})
    td = clean.teardown.model_copy(update={
        "created": sorted(clean.teardown.created), "removed": sorted(clean.teardown.removed),
        "leftovers": sorted(clean.teardown.leftovers)})
    return clean.model_copy(update={
        "scope": sorted(clean.scope),
        "recovery_points": sorted(clean.recovery_points, key=lambda p: (p.group, _utc(p.time))),
        "vms": vms,
        "isolation": iso,
        "teardown": td,
        "untested_changes": sorted(clean.untested_changes, key=lambda c: (_utc(c.detected_at), c.kind, c.subject)),
        "history": sorted((h for h in clean.history if h.run_id != clean.run_id),
                          key=lambda h: (_utc(h.started), h.run_id)),
        "authorised_persons": sorted(clean.authorised_persons, key=lambda p: (p.name, p.email)),
    })


# --- formatting -------------------------------------------------------------------------------------


def _dur(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return NONE
    return describe_duration(timedelta(seconds=seconds))


def _secs(seconds: float | None) -> str:
    return NONE if seconds is None else f"{seconds:.1f} s"


def _ts(moment: datetime | None) -> str:
    return format_ts(moment)


def _clock(moment: datetime | None) -> str:
    return format_ts(moment, "%H:%M:%S")


def _num(value: float) -> str:
    # SVG coordinates: one decimal, no "-0.0".
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def report_stem(data: DrillReportData) -> str:
    """``drill-<started:%Y%m%dT%H%M%SZ>-<first 8 characters of the run id>``."""
    return f"drill-{_utc(data.started):%Y%m%dT%H%M%SZ}-{data.run_id[:8]}"


# --- timeline ---------------------------------------------------------------------------------------


def _step_span(step: Any) -> tuple[datetime, datetime]:
    start = _utc(step.started)
    if step.finished is not None:
        return start, max(start, _utc(step.finished))
    if step.seconds is not None:
        return start, start + timedelta(seconds=max(0.0, step.seconds))
    return start, start


def _vm_span(vm: VmRecord) -> tuple[datetime, datetime] | None:
    spans = [_step_span(s) for s in vm.steps]
    if not spans:
        return None
    return min(s for s, _ in spans), max(e for _, e in spans)


def critical_path(data: DrillReportData) -> list[str]:
    """The machines on the critical path, first to last.

    It ends at the verified machine that finished last (the one that set the RTO; any machine
    when none was verified); each machine's predecessor is the dependency
    (``depends_on``, by machine or VM name) that finished last, or, for a machine without
    dependencies, the machine of an earlier wave that finished last before it started (the wave
    gate). Machines without steps are not on it.
    """
    spans = {v.machine: span for v in data.vms if (span := _vm_span(v)) is not None}
    if not spans:
        return []
    by_name: dict[str, VmRecord] = {}
    for v in data.vms:
        by_name.setdefault(v.vm, v)
        by_name[v.machine] = v
    verified = {m for m in spans if by_name[m].status == "verified"} or set(spans)
    last = max(verified, key=lambda m: (spans[m][1], m))
    path, seen = [last], {last}
    while True:
        vm = by_name[path[-1]]
        start = spans[vm.machine][0]
        deps = {by_name[d].machine for d in vm.depends_on if d in by_name} & spans.keys()
        if deps:
            candidates = deps - seen
        else:
            candidates = {m for m in spans if by_name[m].wave < vm.wave and spans[m][1] <= start} - seen
        if not candidates:
            break
        prev = max(candidates, key=lambda m: (spans[m][1], m))
        path.append(prev)
        seen.add(prev)
    return list(reversed(path))


_TICKS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400)


def _tick_step(span: float, most: int = 10) -> int:
    return next((t for t in _TICKS if span / t <= most), _TICKS[-1])


@dataclass(frozen=True)
class Bar:
    x: str
    y: str
    width: str
    height: str
    css: str
    title: str
    label: str
    vm: str
    step: str


@dataclass(frozen=True)
class Label:
    x: str
    y: str
    text: str
    css: str = ""


@dataclass(frozen=True)
class GridLine:
    x1: str
    y1: str
    x2: str
    y2: str
    css: str = ""


@dataclass(frozen=True)
class Chart:
    """An SVG drawn by the template: bars, points, lines and labels with their coordinates."""

    width: int
    height: int
    title: str
    bars: list[Bar] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    lines: list[GridLine] = field(default_factory=list)
    bands: list[Bar] = field(default_factory=list)
    points: list[Label] = field(default_factory=list)
    polylines: list[Label] = field(default_factory=list)
    """``x`` holds the points attribute, ``css`` the class."""


_GANTT_WIDTH, _GANTT_LABELS, _ROW, _BAR, _TOP = 980, 220, 24, 14, 28


def _gantt(data: DrillReportData, critical: list[str]) -> Chart | None:
    steps = [(v, s, *_step_span(s)) for v in data.vms for s in v.steps]
    if not steps:
        return None
    t0 = min(start for _, _, start, _ in steps)
    end = max(stop for _, _, _, stop in steps)
    span = max((end - t0).total_seconds(), 1.0)
    tick = _tick_step(span)
    span = math.ceil(span / tick) * tick
    plot = _GANTT_WIDTH - _GANTT_LABELS - 20
    scale = plot / span

    rows: list[tuple[int, VmRecord | None]] = []
    for wave in sorted({v.wave for v in data.vms}):
        rows.append((wave, None))
        rows.extend((wave, v) for v in data.vms if v.wave == wave)
    height = _TOP + len(rows) * _ROW + 10
    names = {v.machine: v.vm for v in data.vms}
    chart = Chart(width=_GANTT_WIDTH, height=height,
                  title=f"Per-VM steps by wave; critical path: {' → '.join(names[m] for m in critical) or NONE}")
    for i in range(int(span // tick) + 1):
        x = _GANTT_LABELS + i * tick * scale
        chart.lines.append(GridLine(_num(x), str(_TOP - 6), _num(x), str(height - 10), "grid"))
        chart.labels.append(Label(_num(x), str(_TOP - 10), f"+{_dur(i * tick)}", "tick"))
    on_path = set(critical)
    for index, (wave, vm) in enumerate(rows):
        y = _TOP + index * _ROW
        if vm is None:
            chart.bands.append(Bar("0", str(y), str(_GANTT_WIDTH), str(_ROW), "wave-band", f"Wave {wave}",
                                   f"Wave {wave}", "", ""))
            chart.labels.append(Label("6", _num(y + _ROW * 0.68), f"Wave {wave}", "wave-label"))
            continue
        critical_vm = vm.machine in on_path
        name = vm.vm + (" (optional)" if vm.optional else "")
        chart.labels.append(Label("14", _num(y + _ROW * 0.68), name,
                                  "vm-label critical" if critical_vm else "vm-label"))
        for step in vm.steps:
            start, stop = _step_span(step)
            x = _GANTT_LABELS + (start - t0).total_seconds() * scale
            width = max((stop - start).total_seconds() * scale, 2.0)
            css = f"step {step.status}" + (" critical" if critical_vm else "")
            seconds = (stop - start).total_seconds()
            outcome = step.status + (f": {step.error}" if step.error else "")
            where = f" {step.target}" if step.target else ""
            title = f"{vm.vm} {step.step}{where}: +{_dur((start - t0).total_seconds())} for {seconds:.1f} s, {outcome}"
            chart.bars.append(Bar(_num(x), _num(y + (_ROW - _BAR) / 2), _num(width), str(_BAR), css, title,
                                  step.step if width > 7 * len(step.step) else "", vm.vm, step.step))
    return chart


_TREND_W, _TREND_H, _TREND_LEFT, _TREND_BOTTOM = 480, 220, 70, 40


def _trend(data: DrillReportData, metric: str) -> Chart:
    points = [(h.started, h.verdict, getattr(h, f"{metric}_s"), h.run_id) for h in data.history]
    points.append((data.started, data.verdict, getattr(data, f"{metric}_s"), data.run_id))
    target = getattr(data, f"{metric}_target_s")
    values = [v for _, _, v, _ in points if v is not None]
    top = max([target, *values]) * 1.15 or 1.0
    tick = _tick_step(top, 5)
    top = math.ceil(top / tick) * tick
    plot_w, plot_h = _TREND_W - _TREND_LEFT - 20, _TREND_H - _TREND_BOTTOM - 20
    name = metric.upper()
    chart = Chart(width=_TREND_W, height=_TREND_H, title=f"{name} per drill (target {_dur(target)})")
    chart.labels.append(Label(str(_TREND_LEFT), "11", chart.title, "chart-title"))

    def y_of(value: float) -> float:
        return 20 + plot_h - value / top * plot_h

    for i in range(int(top // tick) + 1):
        y = y_of(i * tick)
        chart.lines.append(GridLine(str(_TREND_LEFT), _num(y), str(_TREND_LEFT + plot_w), _num(y), "grid"))
        chart.labels.append(Label(str(_TREND_LEFT - 6), _num(y + 4), _dur(i * tick), "axis"))
    chart.lines.append(GridLine(str(_TREND_LEFT), _num(y_of(target)), str(_TREND_LEFT + plot_w), _num(y_of(target)),
                                "target"))
    chart.labels.append(Label(str(_TREND_LEFT + plot_w), _num(y_of(target) - 4), f"target {_dur(target)}",
                              "target-label"))
    step = plot_w / max(len(points) - 1, 1)
    coords = []
    for i, (started, verdict, value, run_id) in enumerate(points):
        x = _TREND_LEFT + (i * step if len(points) > 1 else plot_w / 2)
        current = i == len(points) - 1
        chart.labels.append(Label(_num(x), str(_TREND_H - _TREND_BOTTOM + 16),
                                  "this drill" if current else f"{_utc(started):%Y-%m-%d}", "axis-x"))
        if value is None:
            continue
        coords.append(f"{_num(x)},{_num(y_of(value))}")
        css = f"point {metric} {verdict.lower().replace(' ', '-')}" + (" current" if current else "")
        chart.points.append(Label(_num(x), _num(y_of(value)),
                                  f"{run_id[:8]} {_utc(started):%Y-%m-%d}: {name} {_dur(value)} ({verdict})", css))
    if len(coords) > 1:
        chart.polylines.append(Label(" ".join(coords), "", "", f"series {metric}"))
    return chart


# --- the view ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VmSection:
    vm: str
    machine: str
    wave: int
    status: str
    optional: bool
    critical: bool
    depends_on: str
    networks: str
    error: str | None
    milestones: str
    steps: Table


@dataclass(frozen=True)
class WaveRow:
    wave: int
    machines: str
    start: str
    end: str
    duration: str


@dataclass(frozen=True)
class DrillReportView:
    """Everything the templates print, formatted as text (Markdown and HTML cannot disagree)."""

    title: str
    tenant: str
    tenant_name: str
    run_id: str
    verdict: str
    verdict_css: str
    cause: str | None
    warnings: list[str]
    sections: list[Fact]
    summary: list[Fact]
    times: Table
    recovery_points: Table
    waves: list[WaveRow]
    critical_path: list[str]
    vms: list[VmSection]
    checks: Table
    isolation: list[Fact]
    isolation_checks: Table
    teardown: list[Fact]
    teardown_objects: Table
    changes: Table
    history: Table
    people: list[Fact]
    persons: Table
    success_criteria: list[str]
    gantt: Chart | None
    trends: list[Chart]
    footer: str


def _met(value: float | None, target: float) -> str:
    if value is None:
        return "not measured"
    return "met" if value <= target else "over target"


def build_view(data: DrillReportData, secrets: Iterable[str | None] = ()) -> DrillReportView:
    """The report's view model from ``data`` (masked and ordered with :func:`canonical`)."""
    d = canonical(data, secrets)
    critical = critical_path(d)
    t0_candidates = [_step_span(s)[0] for v in d.vms for s in v.steps]
    t0 = min(t0_candidates) if t0_candidates else _utc(d.started)

    def offset(moment: datetime) -> str:
        return f"+{_dur((moment - t0).total_seconds())}"

    summary = [
        Fact("Verdict", d.verdict),
        Fact("Tenant", f"{d.tenant_name} ({d.tenant})"),
        Fact("Run", d.run_id),
        Fact("Started", _ts(d.started)),
        Fact("Finished", _ts(d.finished)),
        Fact("Scope (protection groups)", ", ".join(d.scope) or NONE),
        Fact("Machines verified", f"{sum(v.status == 'verified' for v in d.vms)} of {len(d.vms)}"),
        Fact("Cause", d.cause or NONE),
    ]
    if d.retest_scheduled_for is not None:
        summary.append(Fact("Re-test scheduled for", _ts(d.retest_scheduled_for)))
    if d.incident:
        summary.append(Fact("Incident", d.incident))
    times = Table(["Measure", "Achieved", "Target", "Result"], [
        Row(["RTO (request accepted to all verified, approval excluded)", _dur(d.rto_s), _dur(d.rto_target_s),
             _met(d.rto_s, d.rto_target_s)]),
        Row(["Machine time (recovery engine)", _dur(d.machine_s), NONE, NONE]),
        Row(["Human wait (approval)", _dur(d.approval_wait_s), NONE, NONE]),
        Row(["RPO (recovery point age at request time, worst group)", _dur(d.rpo_s), _dur(d.rpo_target_s),
             _met(d.rpo_s, d.rpo_target_s)]),
    ])
    points = Table(["Group", "Checkpoint", "Time", "Tag", "Consistency", "Package", "Replication during test"],
                   [Row([p.group, p.checkpoint_id, _ts(p.time), p.tag or NONE, p.consistency, p.package or NONE,
                         p.replication_during_test]) for p in d.recovery_points], "No recovery point recorded.")
    waves = []
    for wave in sorted({v.wave for v in d.vms}):
        members = [v for v in d.vms if v.wave == wave]
        spans = [span for v in members if (span := _vm_span(v)) is not None]
        start = min((s for s, _ in spans), default=None)
        end = max((e for _, e in spans), default=None)
        waves.append(WaveRow(wave, ", ".join(v.vm for v in members),
                             offset(start) if start else NONE, offset(end) if end else NONE,
                             _dur((end - start).total_seconds()) if start and end else NONE))
    vms = []
    for v in d.vms:
        milestones = ", ".join(f"{label} +{_dur(value)}" for label, value in (
            ("powered on", v.powered_on_at_s), ("guest up", v.guest_up_at_s), ("verified", v.verified_at_s))
            if value is not None) or NONE
        rows = []
        for s in v.steps:
            start, stop = _step_span(s)
            seconds = s.seconds if s.seconds is not None else (stop - start).total_seconds()
            rows.append(Row([s.step, s.target or NONE, _clock(s.started), _clock(s.finished), _secs(seconds),
                             s.status + (f": {s.error}" if s.error else "")]))
        vms.append(VmSection(v.vm, v.machine, v.wave, v.status.replace("_", " "), v.optional, v.machine in critical,
                             ", ".join(v.depends_on) or NONE, ", ".join(v.networks) or NONE, v.error, milestones,
                             Table(["Step", "Target", "Start", "End", "Duration", "Outcome"], rows, "No step ran.")))
    checks = Table(["VM", "Check", "Type", "Probed", "Result", "What came back", "Attempts", "Started", "Finished"],
                   [Row([c.vm, c.check, c.type, c.target or NONE, c.status.replace("_", " "), c.detail,
                         str(c.attempts), _clock(c.started), _clock(c.finished)]) for v in d.vms for c in v.checks],
                   "No check ran.")
    backings = {None: "not checked", True: "yes", False: "NO: a test VM was on a production port group"}
    isolation = [Fact("Isolation proven before power-on", "yes" if d.isolation.proven else "NO"),
                 Fact("No test NIC on a production port group during the test",
                      backings[d.isolation.nic_backings_ok])]
    iso_checks = Table(["Check", "Result", "Detail", "Checked at"],
                       [Row([c.name, "passed" if c.passed else "FAILED", c.detail, _ts(c.checked_at)])
                        for c in d.isolation.checks], "No isolation check recorded.")
    td = d.teardown
    teardown = [Fact("Objects created", str(len(td.created))), Fact("Objects removed", str(len(td.removed))),
                Fact("Objects left", str(len(td.leftovers))),
                Fact("Absence verified after teardown", "yes" if td.verified_absent else "no")]
    removed, left = set(td.removed), set(td.leftovers)
    objects = Table(["Object", "Removed", "Left after teardown"],
                    [Row([o, "yes" if o in removed else "no", "LEFT" if o in left else "no"])
                     for o in sorted(set(td.created) | left)], "The drill created no object.")
    changes = Table(["Detected", "Kind", "Subject", "Description"],
                    [Row([_ts(c.detected_at), c.kind, c.subject, c.description]) for c in d.untested_changes],
                    "None: every change was covered by an earlier successful drill.")
    history = Table(["Started", "Run", "Verdict", "RTO", "RPO"],
                    [Row([_ts(h.started), h.run_id[:8], h.verdict, _dur(h.rto_s), _dur(h.rpo_s)])
                     for h in d.history]
                    + [Row([_ts(d.started), d.run_id[:8] + " (this drill)", d.verdict, _dur(d.rto_s), _dur(d.rpo_s)])])
    people = [Fact("Requested by", f"{d.requested_by} (via {d.channel})"),
              Fact("Approved by", d.approved_by or "not approved (no approval recorded)"),
              Fact("Ticket", d.ticket or NONE)]
    persons = Table(["Name", "Email", "Roles"],
                    [Row([p.name, p.email, ", ".join(sorted(p.roles)) or NONE]) for p in d.authorised_persons],
                    "No authorised person recorded.")
    return DrillReportView(
        title=f"DR Test Report: {d.tenant_name}",
        tenant=d.tenant, tenant_name=d.tenant_name, run_id=d.run_id, verdict=d.verdict,
        verdict_css=d.verdict.lower().replace(" ", "-"), cause=d.cause, warnings=list(d.warnings),
        sections=[Fact(a, t) for a, t in SECTIONS], summary=summary, times=times, recovery_points=points,
        waves=waves, critical_path=[next(v.vm for v in d.vms if v.machine == m) for m in critical], vms=vms,
        checks=checks, isolation=isolation, isolation_checks=iso_checks, teardown=teardown,
        teardown_objects=objects, changes=changes, history=history, people=people, persons=persons,
        success_criteria=list(d.success_criteria), gantt=_gantt(d, critical),
        trends=[_trend(d, "rto"), _trend(d, "rpo")],
        footer=f"DR Test Report of run {d.run_id}, drill finished {_ts(d.finished)}.",
    )


# --- renderers --------------------------------------------------------------------------------------


def render_markdown(data: DrillReportData, *, secrets: Iterable[str | None] = (),
                    templates_dir: Path | None = None) -> str:
    """The report as Markdown, ending with one newline."""
    secrets = list(secrets)
    view = build_view(data, secrets)
    text = markdown_env(templates_dir).get_template(MARKDOWN_TEMPLATE).render(r=view)
    return mask_text(text.rstrip("\n") + "\n", _secret_forms(secrets))


def render_html(data: DrillReportData, *, secrets: Iterable[str | None] = (),
                templates_dir: Path | None = None) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no script, no external resource)."""
    secrets = list(secrets)
    view = build_view(data, secrets)
    text = html_env(templates_dir).get_template(HTML_TEMPLATE).render(r=view)
    return mask_text(text.rstrip("\n") + "\n", _secret_forms(secrets))


def render_pdf(data: DrillReportData, *, secrets: Iterable[str | None] = (), html: str | None = None) -> bytes:
    """The report as PDF (A4), laid out by weasyprint from :func:`render_html` (or the given ``html``)."""
    import weasyprint  # heavy import, only when a PDF is made

    source = html if html is not None else render_html(data, secrets=secrets)
    return weasyprint.HTML(string=source).write_pdf()


def render_json(data: DrillReportData, *, secrets: Iterable[str | None] = ()) -> str:
    """The report as JSON: the (masked, ordered) model with keys sorted, two-space indent, one final newline.

    It validates against :func:`json_schema`.
    """
    secrets = list(secrets)
    payload = canonical(data, secrets).model_dump(mode="json")
    text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return mask_text(text, _secret_forms(secrets))


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of :func:`render_json`'s output, from the pydantic model."""
    schema = DrillReportData.model_json_schema(mode="serialization")
    schema["title"] = "DR Test Report"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    return schema


def schema_text() -> str:
    """:func:`json_schema` as the text of ``docs/schemas/dr-test-report.schema.json``."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --- files, state store, artifacts ------------------------------------------------------------------

FORMATS: dict[str, str] = {"html": ".html", "markdown": ".md", "pdf": ".pdf", "json": ".json"}
"""Format name -> file suffix, in the order :func:`write_report` writes them."""


def write_report(data: DrillReportData, out_dir: Path | str, *, secrets: Iterable[str | None] = ()) -> dict[str, Path]:
    """Write the four formats under ``<out_dir>/<tenant>/reports/`` (see :func:`report_stem`).

    Returns:
        format name (``html``, ``markdown``, ``pdf``, ``json``) -> the file written.
    """
    secrets = list(secrets)
    folder = Path(out_dir) / data.tenant / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    stem = report_stem(data)
    html = render_html(data, secrets=secrets)
    texts = {"html": html, "markdown": render_markdown(data, secrets=secrets),
             "json": render_json(data, secrets=secrets)}
    paths: dict[str, Path] = {}
    for fmt, suffix in FORMATS.items():
        path = folder / f"{stem}{suffix}"
        if fmt == "pdf":
            path.write_bytes(render_pdf(data, html=html))
        else:
            path.write_text(texts[fmt], encoding="utf-8")
        paths[fmt] = path
    return paths


def store_report(store: Any, data: DrillReportData, paths: Mapping[str, Path] | None = None, *,
                 secrets: Iterable[str | None] = ()) -> list[Any]:
    """Keep the report in the state store: its Markdown and its JSON, kind ``drill``, with the run id.

    The title names the verdict and the files' stem (file names only, never a directory).

    Returns:
        the two :class:`~draas.state.tables.ReportRecord` rows (Markdown first).
    """
    secrets = list(secrets)
    stem = Path(next(iter(paths.values()))).stem if paths else report_stem(data)
    title = f"DR Test Report {data.tenant}: {data.verdict} ({stem})"
    return [store.save_report(tenant_id=data.tenant, kind=REPORT_KIND, title=title, fmt=fmt, run_id=data.run_id,
                              content=content)
            for fmt, content in (("markdown", render_markdown(data, secrets=secrets)),
                                 ("json", render_json(data, secrets=secrets)))]


def _artifact_key(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def publish_artifacts(data: DrillReportData, paths: Mapping[str, Path] | None = None, *,
                      secrets: Iterable[str | None] = ()) -> list[Any]:
    """Publish the report as Prefect artifacts of the current flow run: markdown, per-VM table, links.

    Keys: ``drill-report-<tenant>`` (markdown), ``drill-report-<tenant>-vms`` (table) and
    ``drill-report-<tenant>-<format>`` (one link per file in ``paths``). Outside a flow or task
    run nothing is published and the result is empty.

    Returns:
        the ids of the artifacts created.
    """
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return []
    secrets = list(secrets)
    key = _artifact_key(f"drill-report-{data.tenant}")
    d = canonical(data, secrets)
    ids = [create_markdown_artifact(markdown=render_markdown(data, secrets=secrets), key=key,
                                    description=f"DR Test Report: {d.verdict}")]
    rows = [{"wave": v.wave, "vm": v.vm, "machine": v.machine, "status": v.status, "optional": v.optional,
             "verified_at": _dur(v.verified_at_s), "checks_passed": sum(c.status == "passed" for c in v.checks),
             "checks": len(v.checks), "error": v.error or ""} for v in d.vms]
    ids.append(create_table_artifact(table=rows or [{"vm": "", "status": "no machine"}], key=f"{key}-vms",
                                     description=f"Machines of the drill ({d.verdict})"))
    for fmt, path in (paths or {}).items():
        ids.append(create_link_artifact(link=Path(path).resolve().as_uri(), link_text=Path(path).name,
                                        key=_artifact_key(f"{key}-{fmt}"), description=f"DR Test Report ({fmt})"))
    return ids


def _main(argv: list[str] | None = None) -> int:
    """``python -m draas.reports.drill_report --write-schema``: rewrite the published schema file."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args != ["--write-schema"]:
        print("usage: python -m draas.reports.drill_report --write-schema", file=sys.stderr)
        return 2
    SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())

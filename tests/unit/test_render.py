"""The shared rendering module: escaping, environments, prose templates, tables, masking, run summaries."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jinja2
import pytest
from pydantic import BaseModel, ValidationError

from draas.models.results import StepResult
from draas.reports import dr_plan
from draas.reports.render import (
    MASK,
    NONE,
    TEXT_MASK,
    Fact,
    Row,
    code_block,
    code_span,
    escape_cell,
    escape_html,
    escape_md,
    format_seconds,
    format_ts,
    html_env,
    load_prose,
    markdown_env,
    markdown_table,
    mask_lines,
    mask_secrets,
    mask_text,
    paragraphs,
    text_env,
)
from draas.reports.run_summary import MAX_DIFF_LINES, RunSummaryView, Section, render_run_summary, steps_table

EVIL_TENANT = "Evil | Co <script>alert('x')</script> `rm -rf /`"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _step(step: str, target: str = "", *, seconds: float = 1.5, **fields: Any) -> StepResult:
    return StepResult(step=step, target=target, started=T0, finished=T0 + timedelta(seconds=seconds), **fields)


def _rows(table: str) -> list[list[str]]:
    """Cells of each Markdown table row, split on unescaped pipes."""
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in table.splitlines()]


# --- escaping ----------------------------------------------------------------------------------------


def test_markdown_escaping_of_a_hostile_tenant_name() -> None:
    escaped = escape_md(EVIL_TENANT)
    assert escaped == "Evil \\| Co \\<script\\>alert('x')\\</script\\> \\`rm -rf /\\`"
    assert not re.search(r"(?<!\\)[|<>`]", escaped), "every pipe, angle bracket and backtick is escaped"

    # In a table rendered by the Markdown environment the name stays in its one cell.
    env = markdown_env()
    template = env.from_string("| Tenant | Id |\n|---|---|\n| {{ name }} | {{ id }} |\n")
    rows = _rows(template.render(name=EVIL_TENANT, id="acme"))
    assert [len(r) for r in rows] == [2, 2, 2]
    assert rows[2] == [escaped, "acme"]
    # A line break cannot start a heading of its own; a heading marker at the start is escaped.
    assert escape_md("x\n# Owned") == "x # Owned"
    assert escape_md("# Owned") == "\\# Owned"


def test_html_escaping_of_a_hostile_tenant_name() -> None:
    assert str(escape_html(EVIL_TENANT)) == ("Evil | Co &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; "
                                             "`rm -rf /`")
    assert str(escape_html(None)) == NONE
    page = html_env().from_string("<td>{{ name }}</td><td>{{ nothing }}</td>").render(name=EVIL_TENANT, nothing=None)
    assert "<script" not in page and "&lt;script&gt;" in page
    assert page.endswith(f"<td>{NONE}</td>")


def test_table_cells_code_spans_and_blocks() -> None:
    assert escape_cell("a|b\nc\r\nd") == "a\\|b<br>c<br>d"
    assert escape_cell(None) == NONE
    table = markdown_table(["Name", "Note"], [[EVIL_TENANT, "two\nlines"], Row(["`x`", "y"])])
    lines = table.splitlines()
    assert lines[:2] == ["| Name | Note |", "|---|---|"]
    assert [len(r) for r in _rows(table)] == [2, 2, 2, 2], "a pipe in a cell does not add a column"
    assert lines[2].endswith("| two<br>lines |") and lines[3] == "| `x` | y |"
    assert markdown_table(["A"], [], empty="None.") == "None."
    assert markdown_table(["A", "B"], []) == "| A | B |\n|---|---|"
    with pytest.raises(ValueError, match="1 cells for 2 headers"):
        markdown_table(["A", "B"], [["only one"]])

    assert str(code_span("a `b` c")) == "``a `b` c``"
    assert code_block(["+ x", "- y"], "diff") == "```diff\n+ x\n- y\n```"
    fenced = code_block(["```", "inside"])
    assert fenced.startswith("````\n") and fenced.endswith("\n````"), "the fence outgrows backticks inside"


def test_formatting_filters() -> None:
    assert format_seconds(1.234) == "1.23" and format_seconds(timedelta(minutes=1)) == "60.00"
    assert format_seconds(None) == NONE
    cet = timezone(timedelta(hours=1))
    assert format_ts(datetime(2026, 1, 2, 10, 0, tzinfo=cet)) == "2026-01-02 09:00:00 UTC"
    assert format_ts(datetime(2026, 1, 2, 10, 0)) == "2026-01-02 10:00:00 UTC", "naive means UTC"
    env = markdown_env()
    out = env.from_string("{{ s | seconds }} {{ t | ts }} {{ [a, b] | join(', ') }} {{ ('**' ~ a|md ~ '**') | safe }}"
                          " {{ b | md }}").render(s=2, t=T0, a="x_", b="<y>")
    # Every value is escaped exactly once, whether by |md or by the environment.
    assert out == "2.00 2026-11-20 09:00:00 UTC x\\_, \\<y\\> **x\\_** \\<y\\>"
    assert "md" not in html_env().filters, "no Markdown filter in the HTML environment (it would bypass autoescape)"


# --- environments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("make_env", [markdown_env, html_env, text_env])
def test_strict_undefined_in_every_environment(make_env: Any, tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text("Hello {{ tenant.display_nmae }}\n")
    env = make_env(tmp_path)
    with pytest.raises(jinja2.UndefinedError, match="display_nmae"):
        env.get_template("t.j2").render(tenant={"display_name": "ACME"})
    with pytest.raises(jinja2.UndefinedError, match="missing"):
        env.from_string("{{ missing }}").render()
    (tmp_path / "ok.j2").write_text("Hello {{ name }}\n")
    assert env.get_template("ok.j2").render(name="ACME") == "Hello ACME\n"


def test_environments_search_directories_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "t.j2").write_text("first")
    (second / "t.j2").write_text("second")
    (second / "only.j2").write_text("only in b")
    env = markdown_env([first, second])
    assert env.get_template("t.j2").render() == "first"
    assert env.get_template("only.j2").render() == "only in b"
    assert "run_summary.md.j2" in markdown_env().list_templates(), "the default is configs/templates/reports"


def test_prose_templates(tmp_path: Path) -> None:
    (tmp_path / "p.j2").write_text(
        "{% set steps %}\nFirst step, wrapped\nover two lines.\n\n{% if extra %}\nSecond for {{ who }}.\n"
        "{% endif %}\n{% endset %}\n"
        "{% set facts %}\nService desk\nby phone, 24x7\n\nOwner\n{{ who }}\n{% endset %}\n")
    prose = load_prose("p.j2", {"extra": True, "who": "Alice\n\nMallory"}, templates_dir=tmp_path)
    # A value with a blank line cannot split a paragraph: it is printed on one line.
    assert prose.items("steps") == ["First step, wrapped over two lines.", "Second for Alice  Mallory."]
    assert prose.facts("facts") == [Fact("Service desk", "by phone, 24x7"), Fact("Owner", "Alice  Mallory")]
    assert load_prose("p.j2", {"extra": False, "who": "x"}, templates_dir=tmp_path).items("steps") == [
        "First step, wrapped over two lines."]
    with pytest.raises(jinja2.UndefinedError, match="no block 'nope'"):
        prose.items("nope")
    with pytest.raises(jinja2.UndefinedError, match="who"):
        load_prose("p.j2", {"extra": True}, templates_dir=tmp_path)
    assert paragraphs("\n a \n b\n\n\n c \n") == [["a", "b"], ["c"]]


def test_dr_plan_uses_the_shared_module() -> None:
    assert dr_plan.md_escape is escape_md
    assert dr_plan.Fact is Fact and dr_plan.Row is Row
    assert not hasattr(dr_plan, "_environment") and not hasattr(dr_plan, "_MD_SPECIAL")


# --- masking ---------------------------------------------------------------------------------------


def test_mask_secrets_masks_nested_secret_keys() -> None:
    value = {
        "tenant": "acme",
        "password": "hunter2",
        "blocks": {"ipsec_psk_secret": "s3cret", "name": "acme-ipsec-psk"},
        "requests": [{"Authorization": "Bearer abc", "url": "https://x"}, ("keep", {"api_token": "t0k"})],
        "credentials": {"user": "u", "pass": "p"},
        "SSH-Key": "ssh-ed25519 AAAA",
        "authorisation_header": "x",
        "count": 3,
    }
    assert mask_secrets(value) == {
        "tenant": "acme",
        "password": MASK,
        "blocks": {"ipsec_psk_secret": MASK, "name": "acme-ipsec-psk"},
        "requests": [{"Authorization": MASK, "url": "https://x"}, ["keep", {"api_token": MASK}]],
        "credentials": MASK,
        "SSH-Key": MASK,
        "authorisation_header": MASK,
        "count": 3,
    }
    assert value["password"] == "hunter2", "the input is not modified"
    assert mask_secrets("password") == "password" and mask_secrets(None) is None


def test_mask_secrets_is_the_audit_trails_rule() -> None:
    from draas.state.store import scrub  # the store's masking must not drift from the shared rule

    sample = {"password": "x", "a": [{"token": 1, "b": {"client_secret": 2, "c": 3}}], "user": "u"}
    assert scrub(sample) == mask_secrets(sample)


def test_mask_text_masks_known_secret_values() -> None:
    text = "crypto isakmp key Sup3rS3cret address 203.0.113.1; webhook key Sup3rS3cret-2 ok"
    masked = mask_text(text, ["Sup3rS3cret", "Sup3rS3cret-2", "", None])
    assert masked == f"crypto isakmp key {TEXT_MASK} address 203.0.113.1; webhook key {TEXT_MASK} ok", \
        "the longer secret is masked whole, not as a masked prefix plus '-2'"
    assert "Sup3r" not in masked
    assert mask_lines(["a psk1", "b", "psk1 psk1"], ["psk1"]) == [f"a {TEXT_MASK}", "b", f"{TEXT_MASK} {TEXT_MASK}"]
    assert mask_text("nothing here", []) == "nothing here"


# --- run summaries ---------------------------------------------------------------------------------


def test_failed_run_summary_lists_the_failed_step_with_its_error() -> None:
    steps = [
        _step("push_device_config", "pe1", changed=True, diff=["+ vrf definition acme_web"]),
        _step("power_on_vm", "acme-db01", machine="acme-db01", wave=2).failed(
            RuntimeError("vCenter said <no> | twice"), finished=T0 + timedelta(seconds=3.25)),
    ]
    view = RunSummaryView(title="Drill acme: failed", run_id="run-1", error="RuntimeError: vCenter said <no> | twice",
                          steps=steps)
    md = render_run_summary(view)
    lines = md.splitlines()
    assert lines[0] == "# Drill acme: failed"
    assert "Flow run `run-1`" in lines and "dry run" not in md
    error_at = lines.index("## Error")
    assert lines[error_at + 2:error_at + 5] == ["```", "RuntimeError: vCenter said <no> | twice", "```"]
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == "| # | Step | Target | Machine | Wave | Outcome | Changed | Seconds | Changes |"
    assert table[1].count("---") == 9
    rows = _rows("\n".join(table))
    assert rows[2] == ["1", "push_device_config", "pe1", "", "", "ok", "yes", "1.50", "+ vrf definition acme_web"]
    assert rows[3] == ["2", "power_on_vm", "acme-db01", "acme-db01", "2",
                       "failed: RuntimeError: vCenter said \\<no\\> \\| twice", "no", "3.25", "none"]
    assert view.failed_steps == [steps[1]]
    assert md.endswith("|\n") and not md.endswith("\n\n")


def test_dry_run_summary_says_nothing_was_changed() -> None:
    steps = [_step("push_device_config", "pe1", changed=True, dry_run=True, diff=["+ vlan 110"]),
             _step("ensure_folder", "acme", changed=False, dry_run=True),
             _step("ensure_pool", "acme", changed=True)]  # a step not marked: the run is a dry run
    md = render_run_summary(RunSummaryView(title="Container for acme", run_id="r2", dry_run=True, steps=steps))
    assert "Flow run `r2` (dry run: nothing was changed)" in md.splitlines()
    rows = _rows("\n".join(line for line in md.splitlines() if line.startswith("|")))
    assert [r[4] for r in rows[2:]] == ["would change", "no", "would change"]
    assert "## Error" not in md and "## Refused" not in md
    assert [r[4] for r in _rows(steps_table(steps))[2:]] == ["would change", "no", "yes"]


def test_diff_is_cut_after_40_lines() -> None:
    diff = [f"+ line {i} | {i}" for i in range(45)]
    table = steps_table([_step("push", "pe1", changed=True, diff=diff),
                         _step("push", "pe2", changed=True, diff=diff[:MAX_DIFF_LINES])])
    first, second = table.splitlines()[2:]
    changes = _rows(first)[0][-1].split("<br>")
    assert MAX_DIFF_LINES == 40
    assert changes[:40] == [f"+ line {i} \\| {i}" for i in range(40)]
    assert changes[40:] == ["... 5 more"]
    assert "line 40" not in first
    assert _rows(second)[0][-1].split("<br>") == changes[:40], "exactly 40 lines: nothing is counted"


def test_steps_table_matches_the_previous_layout_apart_from_the_new_columns() -> None:
    def legacy(steps: list[StepResult]) -> list[str]:  # flows/runbook.py steps_table before this module
        lines = ["| # | Step | Target | Changed | Seconds | Changes |", "|---|---|---|---|---|---|"]
        for i, s in enumerate(steps, start=1):
            changes = "<br>".join(d.replace("|", "\\|") for d in s.diff[:40]) or "none"
            if len(s.diff) > 40:
                changes += f"<br>... {len(s.diff) - 40} more"
            changed = ("would change" if s.dry_run else "yes") if s.changed else "no"
            lines.append(f"| {i} | {s.step} | {s.target.replace('|', '/')} | {changed} | {s.seconds:.2f} | {changes} |")
        return lines

    steps = [_step("push_device_config", "pe1/acme", changed=True,
                   diff=["+ interface Vlan110", " ip address 10.1.10.1 255.255.255.0", "+ description a|b"]),
             _step("ensure_folder", "DRaaS/acme_x"),
             _step("push_device_config", "asa1", changed=True, dry_run=True, diff=[f"+ l{i}" for i in range(41)])]
    new = [r[:3] + r[4:] for r in _rows(steps_table(steps))]  # without the Outcome column
    assert new == _rows("\n".join(legacy(steps)))
    # Every diff line can still be found verbatim (pipes aside) in the table.
    assert " ip address 10.1.10.1 255.255.255.0" in steps_table(steps)


def test_refused_summary_and_sections() -> None:
    refused = render_run_summary(RunSummaryView(title="Drill acme: refused", run_id="r3",
                                                refused="NotAuthorised: 'eve@example.com' is not an authorised person"))
    lines = refused.splitlines()
    assert "## Refused" in lines and "NotAuthorised: 'eve@example.com' is not an authorised person" in lines
    assert "## Steps" not in lines, "a refused request ran no steps"

    class Payload(BaseModel):
        vm: str

    view = RunSummaryView(
        title="Onboarding acme", run_id="r4",
        steps=[StepResult[Payload](step="write_dr_plan", target="acme", payload=Payload(vm="x"), started=T0,
                                   finished=T0)],
        sections=[("DR plan", "`out/acme-dr-plan.md`"),
                  ("Prerequisites", ["Check", "Value"], [["latency", "12 ms | median"]]),
                  Section(heading="Left alone", headers=["Run"], rows=[], empty="No run was left alone."),
                  Section(heading="Full diff: pe1", body=code_block(["+ a", "- b"], "diff"))])
    md = render_run_summary(view)
    assert "## DR plan\n\n`out/acme-dr-plan.md`\n\n## Prerequisites\n\n| Check | Value |\n|---|---|\n" \
           "| latency | 12 ms \\| median |\n\n## Left alone\n\nNo run was left alone.\n\n" \
           "## Full diff: pe1\n\n```diff\n+ a\n- b\n```\n" in md
    assert md.index("## Steps") < md.index("## DR plan")
    with pytest.raises(ValidationError, match="either a body or table headers"):
        Section(heading="both", body="x", headers=["A"])
    with pytest.raises(ValidationError, match="1 cells for 2 headers"):
        Section(heading="short", headers=["A", "B"], rows=[["x"]])


def test_known_secret_values_are_masked_in_the_summary() -> None:
    secret = "ps_k|9<x>"
    steps = [_step("push_device_config", "vpn", changed=True, diff=[f"crypto isakmp key {secret} address 1.2.3.4"])]
    view = RunSummaryView(title="Container", run_id="r5", error=f"CommandError: rejected {secret}", steps=steps,
                          sections=[("Note", f"the key {secret} is wrong")], secrets=[secret])
    md = render_run_summary(view)
    assert "ps_k" not in md and "9\\<x" not in md and "9<x" not in md
    assert md.count(TEXT_MASK) == 3
    assert "secrets=" not in repr(view), "the list of secret values is never printed"

"""The DR Plan document: the service definition's sections, filled with each sample tenant's values."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from draas.models.tenant import TenantConfig
from draas.models.tiers import TierCatalog
from draas.models.types import describe_duration
from draas.planning.rpo import estimate_rpo
from draas.planning.waves import recovery_plan
from draas.reports.dr_plan import (
    SECTIONS,
    DrPlanDocument,
    DrPlanError,
    ProviderDetails,
    build_dr_plan_context,
    md_escape,
    render_dr_plan,
)
from draas.validation import load_catalog, load_tenants

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
GENERATED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def tenants() -> dict[str, TenantConfig]:
    return {t.id: t for t in load_tenants(CONFIGS)}


@pytest.fixture(scope="module")
def catalog() -> TierCatalog:
    return load_catalog(CONFIGS)


@pytest.fixture(scope="module")
def docs(tenants: dict[str, TenantConfig], catalog: TierCatalog) -> dict[str, DrPlanDocument]:
    return {tid: render_dr_plan(t, catalog, generated_at=GENERATED) for tid, t in tenants.items()}


# --- helpers ---------------------------------------------------------------------------------------


class _Text(HTMLParser):
    """Visible text of an HTML document, and a check that every element is closed in order."""

    VOID: ClassVar[set[str]] = {"meta", "br", "hr", "img", "link", "input"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.in_style = tag == "style"
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag in ("tr", "li", "p", "h1", "h2", "h3", "h4"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        self.in_style = False
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()
        if tag in ("td", "th"):
            self.parts.append(" | ")

    def handle_data(self, data: str) -> None:
        if not self.in_style:
            self.parts.append(data)


def html_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    parser.close()
    assert parser.errors == [] and parser.stack == [], (parser.errors, parser.stack)
    return re.sub(r"[ \t]+", " ", "".join(parser.parts))


def md_plain(markdown: str) -> str:
    """Markdown with its backslash escapes resolved (what a reader sees)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def both(doc: DrPlanDocument) -> tuple[str, str]:
    return md_plain(doc.markdown), html_text(doc.html)


def assert_in_both(doc: DrPlanDocument, *facts: str) -> None:
    md, html = both(doc)
    for fact in facts:
        assert fact in md, f"{fact!r} missing from the Markdown"
        assert fact in html, f"{fact!r} missing from the HTML"


def section(markdown: str, heading: str) -> str:
    """The Markdown between ``heading`` (a whole line) and the next heading of the same level."""
    level = heading.split(" ")[0]
    lines = markdown.splitlines()
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith(level + " ")), len(lines))
    return "\n".join(lines[start:end])


def table_rows(markdown: str, first_cell: str) -> list[list[str]]:
    """Cells of every table row whose first cell is ``first_cell``."""
    rows = []
    for line in markdown.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if line.startswith("|") and cells and cells[0] == first_cell:
            rows.append(cells)
    return rows


# --- structure --------------------------------------------------------------------------------------


def test_every_section_of_the_service_definition_in_order(docs: dict[str, DrPlanDocument],
                                                          tenants: dict) -> None:
    for doc in docs.values():
        assert doc.title == f"Disaster Recovery Plan: {tenants[doc.tenant].display_name}"
        assert doc.markdown.splitlines()[0] == f"# {doc.title}"
        _md, html = both(doc)
        headings = [line for line in doc.markdown.splitlines() if line.startswith("## ")]
        assert headings == ["## Contents"] + [f"## {i}. {title}" for i, (_, title) in enumerate(SECTIONS, 1)]
        positions = [html.index(f"{i}. {title}") for i, (_, title) in enumerate(SECTIONS, 1)]
        assert positions == sorted(positions)
        for anchor, _ in SECTIONS:
            assert f'<section id="{anchor}">' in doc.html and f'href="#{anchor}"' in doc.html
        assert doc.sections == [title for _, title in SECTIONS]


def assert_tables_consistent(markdown: str) -> None:
    """Every row of every Markdown table has as many cells as its header."""
    width = None
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            cells = len(re.findall(r"(?<!\\)\|", line))
            width = width or cells
            assert cells == width, f"{line!r} has {cells - 1} cells, the table {width - 1}"
        else:
            width = None


def test_markdown_tables_have_one_cell_per_column(docs: dict[str, DrPlanDocument]) -> None:
    for doc in docs.values():
        assert_tables_consistent(doc.markdown)


def test_html_is_self_contained_well_formed_and_printable(docs: dict[str, DrPlanDocument]) -> None:
    for doc in docs.values():
        html_text(doc.html)  # asserts every element closes in order
        assert doc.html.startswith("<!DOCTYPE html>")
        assert "<style>" in doc.html and "@media print" in doc.html and "@page" in doc.html
        assert "<script" not in doc.html and "<link" not in doc.html and "src=" not in doc.html
        assert not re.search(r"(href|src)=\"(https?:)?//", doc.html)
        assert f"<title>{doc.title.replace('&', '&amp;')}</title>" in doc.html


# --- values of each sample tenant -------------------------------------------------------------------------


def test_acme_waves_follow_dependencies(docs: dict[str, DrPlanDocument], tenants: dict) -> None:
    md = docs["acme"].markdown
    expected = [["acme-dc01"], ["acme-sql01"], ["acme-app01"], ["acme-web01", "acme-web02"]]
    assert [w.machines for w in recovery_plan(tenants["acme"]).waves] == expected
    plan = section(md, "## 8. Recovery plan")
    for index, machines in enumerate(expected, start=1):
        wave = section(plan, next(h for h in plan.splitlines() if h.startswith(f"### Wave {index} (")))
        names = [re.split(r"(?<!\\)\|", line)[1].strip().removesuffix(" (domain controller)")
                 for line in wave.splitlines() if line.startswith("| acme-")]
        assert names == machines
    order = [plan.index(f"| {name}") for name in ["acme-dc01", "acme-sql01", "acme-app01", "acme-web01"]]
    assert order == sorted(order)
    html = html_text(docs["acme"].html)
    order = [html.index(f"Wave {i} (") for i in range(1, 5)]
    assert order == sorted(order)
    assert html.index("acme-dc01 (domain controller)") < html.index("Wave 2 (") < html.index(
        "acme-sql01 | Windows") < html.index("Wave 3 (") < html.index("acme-app01 | Linux") < html.index(
        "Wave 4 (") < html.index("acme-web02 | Linux")
    row = table_rows(plan, "acme-app01")[0]
    assert row[4] == "acme-sql01, acme-dc01" and row[5] == "10.10.2.30" and row[6] == "10.10.2.30 (same address)"
    assert row[8] == "acme-app / acme-app-bubble"


def test_acme_persons_slas_and_drills(docs: dict[str, DrPlanDocument]) -> None:
    doc = docs["acme"]
    assert_in_both(
        doc,
        "Alice Archer", "alice.archer@acme.example.com", "+44 20 7946 0001", "Bob Baker",
        "Requests to invoke DR are accepted from: Alice Archer.",
        "DR Test Reports after every test to: Alice Archer, Bob Baker",
        # SLAs: targets from the config, the achievable estimate from the planner
        "acme-windows | VMR-CDP | 30s | 6s | 4h", "acme-linux | VMR-CDP | 1m | 6s | 4h",
        "1d to 2d old: one point every 4h plus all bookmarks",
        "2d to 4w old: application-consistent bookmarks only",
        "user-defined 'quarter-close' (application-consistent), on demand",
        "file-system-consistent, every 15m",
        "Journal to provision: 1,176 GB",
        # drills, in the tenant's time zone with the UTC time next to it
        "Tue 2026-12-08 10:00 GMT", "2026-12-08 10:00 UTC", "Tue 2027-06-08 10:00 BST", "2027-06-08 09:00 UTC",
        "Tue 2028-06-06 10:00 BST",
        "met by acme-dc01",
    )
    persons = section(doc.markdown, "## 5. Authorised persons for DR")
    assert table_rows(persons, "Bob Baker")[1] == ["Bob Baker", "no", "yes", "no", "yes"]
    assert table_rows(persons, "Alice Archer")[1] == ["Alice Archer", "yes", "yes", "yes", "yes"]
    drills = table_rows(section(doc.markdown, "## 7. DR test and invocation process"), "1")
    assert drills[0][-1] == "during transition, next"


def test_acme_network_container(docs: dict[str, DrPlanDocument]) -> None:
    doc = docs["acme"]
    assert_in_both(
        doc,
        "Gold (gold)", "Optional zones | dmz",
        "1011 | acme-web | web | acme-pvt | 10.10.3.0/24 | 10.10.3.1 | acme-web | acme-web-bubble",
        "1014 | acme-dmz | dmz | acme-dmz | 10.10.4.0/24",
        "acme-pvt | pvt | 65000:11", "acme | customer | 65000:10 | 65000:10",
        "198.51.100.10 | vpn endpoint", "198.51.100.11 | vip | acme-www",
        "Customer firewall (peer, static public IP) | 203.0.113.10",
        "Tenant VPN context endpoint | 198.51.100.10",
        "acme-perimeter | firewall", "acme-vpn | firewall | site-to-site IPsec VPN", "acme-dmz-slb | load balancer",
        "to-dc | 10.10.0.0/16 | 10.10.1.10/32 | udp | 53, 88, 389 | permit",
        "acme (reserved 16,000 MHz CPU, 32,768 MB memory, expandable)",
        "The perimeter firewall permits IPsec only between the two tunnel endpoints.",
    )


def test_acme_verification_checks_and_dns(docs: dict[str, DrPlanDocument]) -> None:
    doc = docs["acme"]
    assert_in_both(
        doc,
        "dc01.acme.example.com | A | 300 s | 10.10.1.10 | 10.10.1.10 | acme-dc01",
        "tcp/389 | tcp | TCP connection to 10.10.1.10:389 succeeds | 5m",
        "GET http://10.10.2.30:8080/health returns 200 and the body contains 'ok'",
        "'systemctl is-active nginx' in the guest exits 0 and prints 'active'",
        "acme-www: http 10.10.4.100:80 answers; members acme-web01, acme-web02 pass the http probe /health (200)",
    )
    checks = section(doc.markdown, "### Checks per machine")
    assert len(table_rows(checks, "acme-dc01")) == 3 and len(table_rows(checks, "acme-web01")) == 3


def test_globex_re_ip_snapshots_and_new_york_time(docs: dict[str, DrPlanDocument], tenants: dict) -> None:
    doc = docs["globex"]
    snap = estimate_rpo(tenants["globex"], tenants["globex"].group("globex-apps"))
    assert snap.achievable_seconds is not None
    best = describe_duration(timedelta(seconds=math.ceil(snap.achievable_seconds)))
    assert_in_both(
        doc,
        "Silver (silver)", "Hank Scorpio", "Carol Chen",
        "Requests to invoke DR are accepted from: Hank Scorpio.",
        "Requests for a DR test are accepted from: Carol Chen.",
        f"globex-apps | VMR-SNAP | 5h | {best} | 8h | 4h (scheduled)",
        "globex-db | VMR-CDP | 1m | 6s | 2h",
        "time and space (3d, 250 GB journal)",
        "Replication continues during the test for: globex-db; it is paused for: globex-apps.",
        "globex-prod | 10.20.0.0/16 | 10.120.0.0/16",
        "10.20.1.10 | 10.120.1.10 (re-IP)", "10.20.2.20 | 10.120.2.25 (re-IP)",
        "db01.globex.example.com | A | 60 s | 10.20.1.10 | 10.120.1.10 | globex-db01",
        "www.globex.example.com | A | 60 s | 10.20.3.30 | 10.120.3.30",
        "GET https://10.120.2.25:8443/status returns 200 and the body contains 'UP'",
        "Tue 2027-01-12 09:30 EST", "2027-01-12 14:30 UTC", "Tue 2027-07-13 09:30 EDT",
        "America/New_York", "no domain controller declared",
        "Recovered machines are re-addressed and attached to the recovery port groups.",
    )
    assert best == "4h32m54s"  # 4 h snapshots on a link 14 % busy
    plan = section(doc.markdown, "## 8. Recovery plan")
    assert plan.index("| globex-db01") < plan.index("| globex-app01") < plan.index("| globex-web01")
    assert "Keep the snapshot replication software in line" in doc.markdown


def test_initech_bronze_svr_and_single_person(docs: dict[str, DrPlanDocument]) -> None:
    doc = docs["initech"]
    assert_in_both(
        doc,
        "Bronze (bronze)", "Bill Lumbergh", "bill.lumbergh@initech.example.com",
        "1032 | initech-drc | dr control | initech | 10.30.254.0/24",
        "initech-vpn | firewall | site-to-site IPsec VPN",
        "initech-files | SVR | 2h", "initech-app | VMR-CDP | 5m | 6s | 4h",
        "a recovery point every 1h, kept for 3d",
        "user-defined 'month-end' (file-system-consistent), on demand",
        "Wed 2026-12-02 13:00 CET", "16:00 CET", "2026-12-02 12:00 UTC", "Test duration | 3h",
        "Keep the storage data-collector scripts deployed",
        "initech-mt-win01 | master target | windows | recovery site, VLAN initech-drc | 10.30.254.10",
        "tps.initech.example.com | A | 300 s | 10.30.1.20 | 10.30.1.20 | initech-app01",
    )
    assert "No load-balancer VIPs." in doc.markdown and "No re-IP rules" in doc.markdown
    persons = section(doc.markdown, "## 5. Authorised persons for DR")
    assert table_rows(persons, "Bill Lumbergh")[1] == ["Bill Lumbergh", "yes", "yes", "yes", "yes"]
    plan = section(doc.markdown, "## 8. Recovery plan")
    assert plan.index("| initech-fs01") < plan.index("### Wave 2 (") < plan.index("| initech-app01")


# --- secrets and hostile input ---------------------------------------------------------------------------


def test_secrets_appear_only_as_block_names(docs: dict[str, DrPlanDocument]) -> None:
    lab = yaml.safe_load((CONFIGS / "lab.yaml").read_text())
    secret_values = {v for v in _strings(lab) if "password" in v or "secret" in v}
    assert secret_values  # the lab config has credentials to look for
    for doc in docs.values():
        for text in (doc.markdown, doc.html):
            for value in secret_values:
                assert value not in text
        assert_in_both(doc, f"held in the secret block '{doc.tenant}-ipsec-psk', never written in documents",
                       f"secret block '{doc.tenant}-webhook-signing-key'")


def _strings(data: object) -> list[str]:
    if isinstance(data, dict):
        return [s for v in data.values() for s in _strings(v)]
    if isinstance(data, list):
        return [s for v in data for s in _strings(v)]
    return [data] if isinstance(data, str) else []


EVIL = '<script>alert("pwned")</script> & Co | x\n# Owned [click](javascript:alert(1))'


def test_hostile_names_are_escaped_in_html_and_markdown(tenants: dict, catalog: TierCatalog) -> None:
    acme = tenants["acme"]
    person = acme.authorised_persons[0].model_copy(update={"name": '<img src=x onerror="alert(1)">'})
    evil = acme.model_copy(update={"display_name": EVIL,
                                   "authorised_persons": [person, *acme.authorised_persons[1:]]})
    doc = render_dr_plan(evil, catalog, generated_at=GENERATED)

    assert "<script" not in doc.html and "<img" not in doc.html
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt; &amp; Co" in doc.html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in doc.html
    text = html_text(doc.html)  # still well formed
    assert '<img src=x onerror="alert(1)">' in text

    md = doc.markdown
    assert not re.search(r"(?<!\\)<", md), "an unescaped < would let Markdown renderers pass raw HTML"
    assert not re.search(r"(?<!\\)\]\(javascript:", md)
    assert not any(line.startswith("# Owned") for line in md.splitlines())
    assert md.splitlines()[0] == "# Disaster Recovery Plan: " + md_escape(EVIL)
    assert "\\<script\\>" in md and "\\| x # Owned \\[click\\]" in md
    assert md_plain(md).splitlines()[0] == "# Disaster Recovery Plan: " + EVIL.replace("\n", " ")
    assert_tables_consistent(md)


@pytest.mark.parametrize(("raw", "escaped"), [
    ("acme-dc01", "acme-dc01"),
    ("203.0.113.10", "203.0.113.10"),
    ("America/New_York", "America/New_York"),
    ("<b>x</b>", "\\<b\\>x\\</b\\>"),
    ("a|b", "a\\|b"),
    ("*bold* _it_", "\\*bold\\* \\_it\\_"),
    ("[x](y)", "\\[x\\](y)"),
    ("1. item", "1\\. item"),
    ("# title", "\\# title"),
    ("- item", "\\- item"),
    ("---", "\\---"),
    ("&amp;", "\\&amp;"),
    ("two\nlines", "two lines"),
    (None, "—"),
])
def test_md_escape(raw: object, escaped: str) -> None:
    assert md_escape(raw) == escaped


# --- determinism and errors ----------------------------------------------------------------------------


def test_rendering_is_deterministic(tenants: dict, catalog: TierCatalog, docs: dict) -> None:
    again = render_dr_plan(tenants["acme"], catalog, generated_at=GENERATED)
    assert again == docs["acme"]
    naive = render_dr_plan(tenants["acme"], catalog, generated_at=GENERATED.replace(tzinfo=None))
    assert naive.markdown == again.markdown and naive.html == again.html

    later = render_dr_plan(tenants["acme"], catalog, generated_at=datetime(2027, 1, 4, 8, 30, tzinfo=UTC))
    assert later.config_digest == again.config_digest
    changed = [(a, b) for a, b in zip(again.markdown.splitlines(), later.markdown.splitlines(), strict=False) if a != b]
    assert len(again.markdown.splitlines()) == len(later.markdown.splitlines())
    # Only the timestamp and the drill that is next move.
    assert [b for _, b in changed] == [
        "| Generated | 2027-01-04 08:30 UTC (Mon 2027-01-04 08:30 GMT) |",
        "| 1 | Tue 2026-12-08 10:00 GMT | 14:00 GMT | 2026-12-08 10:00 UTC | year 1 | during transition, past |",
        "| 2 | Tue 2027-06-08 10:00 BST | 14:00 BST | 2027-06-08 09:00 UTC | year 1 | next |",
    ]


def test_config_digest_follows_the_config(tenants: dict, catalog: TierCatalog, docs: dict) -> None:
    digests = {d.config_digest for d in docs.values()}
    assert len(digests) == 3 and all(re.fullmatch(r"[0-9a-f]{16}", d) for d in digests)
    acme = tenants["acme"]
    changed = acme.model_copy(update={"display_name": "ACME Corp."})
    assert render_dr_plan(changed, catalog, generated_at=GENERATED).config_digest != docs["acme"].config_digest


def test_provider_details_and_webhook_block_are_printed(tenants: dict, catalog: TierCatalog) -> None:
    provider = ProviderDetails(name="Example Cloud", service_desk_phone="+1 555 0100",
                               service_desk_email="desk@example.net", webhook_url="https://dr.example.net/hooks")
    doc = render_dr_plan(tenants["initech"], catalog, generated_at=GENERATED, provider=provider,
                         webhook_secret_block="initech-hooks")
    assert_in_both(doc, "Provider | Example Cloud", "Service desk telephone | +1 555 0100",
                   "Service desk e-mail | desk@example.net", "Webhook gateway | https://dr.example.net/hooks",
                   "Self-service support portal | given at onboarding", "secret block 'initech-hooks'",
                   "Example Cloud | Invoke DR only on request of an authorised person")
    ctx = build_dr_plan_context(tenants["initech"], catalog, generated_at=GENERATED)
    assert [w.index for w in ctx.waves] == [1, 2]
    assert [m.name for w in ctx.waves for m in w.machines] == ["initech-fs01", "initech-app01"]


def test_unknown_tier_and_template_errors(tenants: dict, catalog: TierCatalog, tmp_path: Path) -> None:
    no_gold = catalog.model_copy(update={"tiers": {k: v for k, v in catalog.tiers.items() if k != "gold"}})
    with pytest.raises(DrPlanError, match="tier 'gold' is not in the tier catalog"):
        render_dr_plan(tenants["acme"], no_gold, generated_at=GENERATED)

    with pytest.raises(DrPlanError, match="not found"):
        render_dr_plan(tenants["acme"], catalog, generated_at=GENERATED, templates_dir=tmp_path)

    # StrictUndefined: a misspelt value is an error, never an empty cell.
    (tmp_path / "dr_plan.md.j2").write_text("{{ plan.display_nmae }}\n")
    (tmp_path / "dr_plan.html.j2").write_text("<p>{{ plan.display_name }}</p>\n")
    with pytest.raises(DrPlanError, match="display_nmae"):
        render_dr_plan(tenants["acme"], catalog, generated_at=GENERATED, templates_dir=tmp_path)

    (tmp_path / "dr_plan.md.j2").write_text("{{ plan.display_name }}\n")
    doc = render_dr_plan(tenants["acme"], catalog, generated_at=GENERATED, templates_dir=tmp_path)
    assert (doc.markdown, doc.html) == ("ACME Corporation\n", "<p>ACME Corporation</p>\n")


def test_prose_comes_from_the_prose_template(tenants: dict, catalog: TierCatalog, tmp_path: Path) -> None:
    # The shipped prose template fills the plan's fixed wording with the tenant's values.
    ctx = build_dr_plan_context(tenants["acme"], catalog, generated_at=GENERATED)
    shipped = (CONFIGS / "templates" / "reports" / "dr_plan_prose.j2").read_text()
    assert "The DR Test Report is sent to:" in shipped
    assert ctx.test_steps[-1].startswith("The DR Test Report is sent to: ")
    assert [r.source for r in ctx.responsibilities][:2] == ["Service definition 4.1", "Service definition 4.3"]
    dc = next(r for r in ctx.responsibilities if r.source == "Responsibility 11")
    assert dc.party == "Customer" and dc.status.startswith("met by ")

    # A templates_dir with its own prose template changes the wording of both documents.
    for name in ("dr_plan.md.j2", "dr_plan.html.j2"):
        (tmp_path / name).write_text((CONFIGS / "templates" / "reports" / name).read_text())
    reworded = shipped.replace("The DR Test Report is sent to:", "Our <b>report</b> goes to:")
    (tmp_path / "dr_plan_prose.j2").write_text(reworded)
    doc = render_dr_plan(tenants["acme"], catalog, generated_at=GENERATED, templates_dir=tmp_path)
    assert "Our \\<b\\>report\\</b\\> goes to: " in doc.markdown
    assert "Our &lt;b&gt;report&lt;/b&gt; goes to: " in doc.html
    assert "The DR Test Report is sent to" not in doc.markdown

    # A broken prose template is a DrPlanError naming the template, like the layout templates.
    (tmp_path / "dr_plan_prose.j2").write_text(shipped.replace("{{ who.failback }}", "{{ who.fail_back }}"))
    with pytest.raises(DrPlanError, match="dr_plan_prose.j2.*fail_back"):
        render_dr_plan(tenants["acme"], catalog, generated_at=GENERATED, templates_dir=tmp_path)
    (tmp_path / "dr_plan_prose.j2").write_text(shipped.replace("{% set not_covered %}", "{% set not_covered"))
    with pytest.raises(DrPlanError, match="dr_plan_prose.j2' line"):
        render_dr_plan(tenants["acme"], catalog, generated_at=GENERATED, templates_dir=tmp_path)

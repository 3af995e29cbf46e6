"""The DR Test Report as a reader sees it: HTML in headless Chromium, PDF through pdftotext, Prefect artifacts.

The report is the unit tests' fixture drill (read back from its golden JSON, so both layers
test the same report). One Chromium (Debian's ``/usr/bin/chromium`` driven by
``/usr/bin/chromedriver`` through selenium) serves the whole module; a missing browser or
poppler is a setup error, never a skip. The artifacts are published by a flow run on the
session's Prefect test server (``prefect_harness``) and read back from it.
"""

from __future__ import annotations

import re
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from draas.reports.drill_model import DrillReportData
from draas.reports.drill_report import SECTIONS, publish_artifacts, render_markdown, write_report

GOLDEN_JSON = Path(__file__).resolve().parents[1] / "unit" / "golden" / "drill_report.json"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def data() -> DrillReportData:
    return DrillReportData.model_validate_json(GOLDEN_JSON.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def files(data: DrillReportData, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_report(data, tmp_path_factory.mktemp("reports"))


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,1600", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page(browser: webdriver.Chrome, files: dict[str, Path]) -> webdriver.Chrome:
    browser.get(files["html"].as_uri())
    return browser


def png_size(blob: bytes) -> tuple[int, int]:
    assert blob[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", blob[16:24])


def test_screenshot_is_a_non_blank_png(page: webdriver.Chrome, tmp_path: Path) -> None:
    gantt = page.find_element(By.CSS_SELECTOR, "svg.gantt")
    page.execute_script("arguments[0].scrollIntoView()", gantt)
    shot = tmp_path / "report.png"
    assert page.save_screenshot(str(shot))
    blob = shot.read_bytes()
    width, height = png_size(blob)
    assert width >= 1000 and height >= 1000
    chart = tmp_path / "gantt.png"
    chart.write_bytes(gantt.screenshot_as_png)
    width, height = png_size(chart.read_bytes())  # the chart alone
    assert width > 600 and height > 150
    # Non-blank: the chart's pixels are not all one colour (decoded by the browser itself).
    colours = page.execute_script("""
        const img = new Image(); img.src = 'data:image/png;base64,' + arguments[0];
        return new Promise(done => { img.onload = () => {
            const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
            const g = c.getContext('2d'); g.drawImage(img, 0, 0);
            const px = g.getImageData(0, 0, c.width, c.height).data, seen = new Set();
            for (let i = 0; i < px.length; i += 4 * 7) seen.add(px[i] << 16 | px[i + 1] << 8 | px[i + 2]);
            done(seen.size); }; });
    """, gantt.screenshot_as_base64)
    assert colours >= 5, f"the Gantt chart looks blank ({colours} colours)"


def test_gantt_has_one_bar_per_vm_step_and_the_critical_path(page: webdriver.Chrome, data: DrillReportData) -> None:
    bars = page.find_elements(By.CSS_SELECTOR, "svg.gantt rect.step")
    expected = sorted((v.vm, s.step) for v in data.vms for s in v.steps)
    assert sorted((b.get_attribute("data-vm"), b.get_attribute("data-step")) for b in bars) == expected
    # Every bar is laid out (has a size on screen), failed steps are drawn as such.
    assert all(b.rect["width"] > 0 and b.rect["height"] > 0 for b in bars)
    failed = [b.get_attribute("data-vm") for b in bars if "failed" in (b.get_attribute("class") or "")]
    assert failed == ["mon01-drill"]
    critical = {b.get_attribute("data-vm") for b in bars if "critical" in (b.get_attribute("class") or "")}
    assert critical == {"dc01-drill", "db01-drill", "app01-drill", "web01-drill"}
    note = page.find_element(By.CSS_SELECTOR, "#timeline .critical-note").text
    assert note == "Critical path: dc01-drill → db01-drill → app01-drill → web01-drill"
    labels = [t.text for t in page.find_elements(By.CSS_SELECTOR, "svg.gantt text.wave-label")]
    assert labels == ["Wave 1", "Wave 2", "Wave 3", "Wave 4"]


def test_trend_charts_show_history_and_this_drill(page: webdriver.Chrome) -> None:
    trends = page.find_elements(By.CSS_SELECTOR, "#history svg.trend")
    assert len(trends) == 2
    for svg in trends:
        assert len(svg.find_elements(By.CSS_SELECTOR, "circle.point")) == 3
        assert len(svg.find_elements(By.CSS_SELECTOR, "circle.point.current")) == 1
        assert svg.find_elements(By.CSS_SELECTOR, "line.target")
        assert svg.rect["width"] > 200


def test_verdict_sections_and_tables(page: webdriver.Chrome, data: DrillReportData) -> None:
    verdict = page.find_element(By.ID, "verdict")
    assert verdict.text == "PASS WITH WARNINGS"
    assert "pass-with-warnings" in (verdict.get_attribute("class") or "")
    headings = [h.text for h in page.find_elements(By.CSS_SELECTOR, "section > h2")]
    assert headings == [title for _, title in SECTIONS]
    steps_tables = page.find_elements(By.CSS_SELECTOR, "#machines table.steps")
    assert len(steps_tables) == len(data.vms)
    rows = sum(len(t.find_elements(By.CSS_SELECTOR, "tbody tr")) for t in steps_tables)
    assert rows == sum(len(v.steps) for v in data.vms)
    checks = page.find_elements(By.CSS_SELECTOR, "#checks table.checks tbody tr")
    assert len(checks) == sum(len(v.checks) for v in data.vms)
    assert page.find_elements(By.CSS_SELECTOR, "#isolation table.isolation tbody tr")
    teardown = page.find_element(By.CSS_SELECTOR, "#teardown").text
    assert "Objects left\n0" in teardown or "Objects left 0" in teardown
    history = page.find_elements(By.CSS_SELECTOR, "#history table.history tbody tr")
    assert len(history) == len(data.history) + 1
    body = page.find_element(By.TAG_NAME, "body").text
    assert "Hunter2" not in body and "password=*****" in body


def test_pdf_has_the_same_sections_and_machines(files: dict[str, Path], data: DrillReportData) -> None:
    pdf = files["pdf"]
    assert pdf.read_bytes().startswith(b"%PDF-")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True,
                          timeout=60).stdout
    flat = re.sub(r"\s+", " ", text)
    positions = [flat.find(title) for _, title in SECTIONS]
    assert all(p >= 0 for p in positions), [t for (_, t), p in zip(SECTIONS, positions, strict=True) if p < 0]
    assert positions == sorted(positions), "sections out of order in the PDF"
    for vm in data.vms:
        assert f"Wave {vm.wave}: {vm.vm}" in flat
    assert "PASS WITH WARNINGS" in flat
    assert "Critical path: dc01-drill → db01-drill → app01-drill → web01-drill" in flat
    assert "Hunter2" not in flat
    pages = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True, timeout=60).stdout
    assert int(re.search(r"Pages:\s+(\d+)", pages).group(1)) >= 2  # type: ignore[union-attr]


def test_artifacts_published_by_a_flow_run(prefect_harness: None, data: DrillReportData,
                                          files: dict[str, Path]) -> None:
    from prefect import flow, get_client
    from prefect.client.schemas.objects import Artifact
    from prefect.runtime import flow_run

    assert publish_artifacts(data, files) == []  # outside a flow run: nothing, no error

    @flow(name="drill-report-artifacts")
    def publish() -> str:
        publish_artifacts(data, files)
        return str(flow_run.id)

    run_id = publish()
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/artifacts/filter", json={
            "artifacts": {"flow_run_id": {"any_": [run_id]}}, "sort": "CREATED_DESC", "limit": 50, "offset": 0})
    artifacts = {a.key: a for a in Artifact.model_validate_list(response.json())}
    assert set(artifacts) == {"drill-report-acme", "drill-report-acme-vms", "drill-report-acme-html",
                              "drill-report-acme-markdown", "drill-report-acme-pdf", "drill-report-acme-json"}
    assert artifacts["drill-report-acme"].type == "markdown"
    assert artifacts["drill-report-acme"].data == render_markdown(data)
    assert artifacts["drill-report-acme-vms"].type == "table"
    assert "mon01-drill" in str(artifacts["drill-report-acme-vms"].data)
    link = artifacts["drill-report-acme-pdf"]
    # Prefect keeps a link artifact as Markdown: [text](link).
    assert link.type == "markdown" and link.data == f"[{files['pdf'].name}]({files['pdf'].resolve().as_uri()})"
    assert "Hunter2" not in str([a.data for a in artifacts.values()])

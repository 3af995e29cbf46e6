"""The Prefect UI in headless Chromium, as an operator uses it: deployments listed, the drill's form, a drill run.

As on a fresh clone: ``draas stack up`` (free ports, a scratch stack directory), ``draas deploy``
(which finds the running stack by itself), then the browser. The deployments page lists the
``<flow>/<tenant>`` deployments of the Bronze sample tenant (initech, the cheapest to drill); the
drill deployment's custom-run form shows every parameter of ``flows/drill.py``'s signature with
its docstring line and a typed input; a run submitted through that form, as a user would,
completes against the lab. The stack's worker shares the session's lab (``DRAAS_SITE_PROFILE``)
and this module's state store (``DRAAS_DATABASE_URL``), so the drill's verdict is read back from
the store. Screenshots of every page are saved under the module's tmp dir (``screenshots/``).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import Browser
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from deployments.deploy import plan_deployments
from draas.reports.drill_model import DrillReportData
from draas.state.store import StateStore
from draas.validation import load_tenants
from e2e.tenants import protected_tenant
from flows import FLOWS, TENANTLESS
from lab.state import LabState

TENANT = "initech"
BILL = "bill.lumbergh@initech.example.com"  # request_drill: the drill deployment's default requester
PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUN_TIMEOUT_S = 600.0
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

# One row of the deployments table: [flow, deployment name, href].
ROWS_JS = """return Array.from(document.querySelectorAll('tbody tr')).map(r => {
  const n = r.querySelector('a.deployment-list__name'), f = r.querySelector('.flow-popover__link-name');
  return n && f ? [f.textContent.trim(), n.textContent.trim(), n.getAttribute('href')] : null}).filter(x => x)"""
# Every top-level property of the run form: label, description, typed inputs, type switch buttons.
FORM_JS = """return Array.from(document.querySelectorAll('.schema-form-property'))
  .filter(p => !p.parentElement.closest('.schema-form-property')).map(p => {
    const label = p.querySelector(':scope > .p-label__header .schema-form-property__label');
    const text = p.querySelector(':scope > .p-label__header .schema-form-property__description');
    const body = p.querySelector(':scope > .p-label__body');
    return {label: label ? label.textContent.trim() : '', description: text ? text.textContent.trim() : '',
            inputs: Array.from(body.querySelectorAll('input, textarea, select'))
              .map(i => i.tagName.toLowerCase() + ':' + (i.getAttribute('type') || '')),
            types: Array.from(body.querySelectorAll(':scope > .p-button-group button'))
              .map(b => b.textContent.trim())}})"""


# -- the stack: `draas stack up` on free ports, `draas deploy`, `draas stack down` -------------------------------------

@dataclass
class Stack:
    """Where the stack's UI and API answer (from ``draas stack status --json``), and its directory."""

    api_url: str
    ui_url: str
    work_pool: str
    stack_dir: Path

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
                         for p in sorted(self.stack_dir.glob("logs/*.log")))


def _draas(stack_dir: Path, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``draas <args>`` as an operator runs it: no Prefect settings of ours, the stack found through its directory.

    The caller's DRAAS_* variables go along (the session's lab, this module's state store), as
    they would from an operator's shell; the stack passes them on to its worker.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    # Retryable server errors (the 503s the UI shows as "Something went wrong") are logged in the stack's server log.
    env.update(DRAAS_STACK_DIR=str(stack_dir), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_LOG_RETRYABLE_ERRORS="true")
    result = subprocess.run([str(BIN / "draas"), *args], cwd=PROJECT_ROOT, capture_output=True, text=True, env=env,
                            timeout=timeout, check=False)
    if check:
        assert result.returncode == 0, f"draas {' '.join(args)}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def stack(flows_env: Path) -> Iterator[Stack]:
    """``draas stack up`` on free ports in a scratch directory; ``draas stack down`` whatever happened.

    Started after ``flows_env``, so the stack's worker runs flows against this module's state store
    and the session's lab (``DRAAS_SITE_PROFILE`` is set: the stack starts no lab of its own).
    """
    stack_dir = flows_env / "stack"
    try:
        _draas(stack_dir, "stack", "up", "--stack-dir", str(stack_dir), "--port", "0", "--gateway-port", "0")
        status = json.loads(_draas(stack_dir, "stack", "status", "--stack-dir", str(stack_dir), "--json").stdout)
        yield Stack(api_url=status["prefect_api_url"], ui_url=status["prefect_ui_url"],
                    work_pool=status["work_pool"], stack_dir=stack_dir)
    finally:
        down = _draas(stack_dir, "stack", "down", "--stack-dir", str(stack_dir), check=False)
        assert down.returncode == 0, f"draas stack down: {down.stdout}\n{down.stderr}"


@pytest.fixture(scope="module")
def deployed(stack: Stack) -> Stack:
    """``draas deploy`` with no PREFECT_API_URL: the command finds the running stack by itself."""
    result = _draas(stack.stack_dir, "deploy", "--work-pool", stack.work_pool)
    assert "drill/initech" in result.stdout, result.stdout
    return stack


@pytest.fixture(scope="module")
def protected(flows_env: Path) -> Iterator[Path]:
    """initech onboarded, its container built and its groups protected (in-process); everything removed afterwards."""
    with protected_tenant(TENANT, flows_env / "out") as out:
        yield out


@pytest.fixture(scope="module")
def browser(flows_env: Path) -> Iterator[Browser]:
    with Browser(flows_env / "screenshots", timeout=60) as b:
        yield b


# -- helpers over the UI --------------------------------------------------------------------------------------------

def _expected_deployments() -> set[str]:
    tenants = [t for t in load_tenants() if t.id == TENANT]
    return {s.full_name for s in plan_deployments(tenants, FLOWS, TENANTLESS) if s.name == TENANT}


def _listed(browser: Browser) -> set[str]:
    return {f"{flow}/{name}" for flow, name, _ in browser.d.execute_script(ROWS_JS)}


def _property(browser: Browser, name: str) -> Any:
    label = f"normalize-space(.)='{name}' or normalize-space(.)='{name} (Optional)'"
    return browser.wait_xpath(
        "//div[contains(concat(' ', normalize-space(@class), ' '), ' schema-form-property ')]"
        f"[./div[@class='p-label__header']//span[@class='schema-form-property__label'][{label}]]", f"parameter {name}")


def _type_into(element: Any, text: str) -> None:
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    element.send_keys(text)


def _plain(text: str) -> str:
    """Docstring or rendered markdown reduced to its words (no backticks, single spaces)."""
    return " ".join(text.replace("``", "").replace("`", "").split())


def _docstring_args(fn: Any) -> dict[str, str]:
    """``name: description`` lines of the Args section of ``fn``'s docstring (Google style)."""
    doc = inspect.getdoc(fn) or ""
    args = doc.split("Args:", 1)[1].split("\n\n", 1)[0]
    found: dict[str, str] = {}
    for line in args.splitlines():
        match = re.match(r"^\s{4}(\w+): (.*)$", line)
        if match:
            found[match[1]] = match[2]
        elif found and line.strip():
            last = list(found)[-1]
            found[last] += " " + line.strip()
    return {k: _plain(v) for k, v in found.items()}


def _drill_deployment_url(browser: Browser, stack: Stack) -> str:
    browser.get(f"{stack.ui_url}/deployments")
    search = browser.wait_xpath("//input[@placeholder='Search deployments...']", "the deployments search box")
    search.send_keys(TENANT)
    rows = browser.wait(lambda d: [r for r in d.execute_script(ROWS_JS) if r[0] == "drill" and r[1] == TENANT],
                        f"the drill/{TENANT} row")
    return f"{stack.ui_url}{rows[0][2]}"


def _submit(browser: Browser, attempts: int = 3) -> None:
    """Click Submit until the UI leaves the form, as a user would after "Something went wrong".

    Prefect's server answers 503 (retry later) when its SQLite database stays locked under load;
    its Python client retries that by itself, its UI shows an error toast and keeps the form. A
    503 means the request's transaction was rolled back: no run was created.
    """
    for attempt in range(1, attempts + 1):
        browser.console()  # forget earlier messages
        browser.click("Submit")

        def left_or_refused(d: Any) -> str | None:
            if not d.current_url.split("?")[0].endswith("/run"):
                return "left"
            if any("create_flow_run" in m and " 503 " in m for m in browser.console()):
                return "503"
            return None

        outcome = browser.wait(left_or_refused, "the form to be submitted")
        if outcome == "left":
            return
        browser.screenshot(f"submit-503-{attempt}")
        time.sleep(2 * attempt)
        browser.dismiss_toasts()  # the error toast covers the Submit button
    raise AssertionError(f"the server refused to create the run {attempts} times (503)")


def _state_of(stack: Stack, run_id: str) -> dict[str, Any]:
    response = httpx.get(f"{stack.api_url}/flow_runs/{run_id}", timeout=30)
    response.raise_for_status()
    return response.json()["state"] or {}


# -- the tests ------------------------------------------------------------------------------------------------------

def test_the_deployments_page_lists_the_tenants_flow_deployments(deployed: Stack, browser: Browser) -> None:
    expected = _expected_deployments()
    assert "drill/initech" in expected and len(expected) >= 10

    browser.get(f"{deployed.ui_url}/deployments")
    pager = browser.wait_xpath("//div[contains(@class,'p-pager__limit')]//select[option]", "the page size selector")
    Select(pager).select_by_value("25")
    search = browser.wait_xpath("//input[@placeholder='Search deployments...']", "the deployments search box")
    search.send_keys(TENANT)
    # The list refreshes after the search settles: wait until it shows exactly the tenant's rows.
    browser.wait(lambda _: _listed(browser) == expected, f"the {len(expected)} {TENANT} deployments")
    shot = browser.screenshot("deployments")

    listed = _listed(browser)
    assert listed == expected, (sorted(expected - listed), sorted(listed - expected))
    rows = browser.d.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert all(f"tenant:{TENANT}" in row.text and "draas" in row.text for row in rows)
    assert shot.stat().st_size > 20_000


def test_the_drill_run_form_shows_the_typed_parameters_with_their_descriptions(deployed: Stack,
                                                                                 browser: Browser) -> None:
    from flows.drill import drill

    browser.get(_drill_deployment_url(browser, deployed))
    browser.click("Run")
    browser.click("Custom run")
    _property(browser, "requested_by")
    form = browser.wait(lambda d: (f := d.execute_script(FORM_JS)) and len(f) >= 10 and f, "the run form")
    shot = browser.screenshot("drill-run-form")

    names = list(inspect.signature(drill.fn).parameters)
    by_label = {p["label"].removesuffix(" (Optional)"): p for p in form}
    assert list(by_label) == names
    documented = _docstring_args(drill.fn)
    assert set(documented) == set(names)
    for name in names:
        assert _plain(by_label[name]["description"]) == documented[name], name
    required = {p["label"] for p in form if not p["label"].endswith("(Optional)")}
    assert required == {"tenant", "requested_by"}
    # Typed inputs: text for strings, a toggle for booleans, numbers for floats, a choice of kinds, nullable types.
    assert by_label["tenant"]["inputs"] == ["textarea:"] and by_label["requested_by"]["inputs"] == ["textarea:"]
    assert by_label["approval"]["inputs"] == ["input:checkbox"] and by_label["sweep"]["inputs"] == ["input:checkbox"]
    assert by_label["approval_timeout_s"]["inputs"] == ["input:number"]
    assert by_label["ticket"]["types"] == ["str", "None"] and by_label["groups"]["types"] == ["list", "None"]
    assert by_label["budget_s"]["types"] == ["float", "None"]
    kinds = _property(browser, "recovery_point").find_element(By.XPATH, ".//select[option]")
    assert [o.get_attribute("value") for o in Select(kinds).options] == [
        "latest", "latest_app_consistent", "bookmark", "at"]
    assert Select(kinds).first_selected_option.get_attribute("value") == "latest_app_consistent"
    # The deployment's defaults: the tenant and a person holding request_drill.
    tenant = _property(browser, "tenant").find_element(By.XPATH, ".//textarea")
    requester = _property(browser, "requested_by").find_element(By.XPATH, ".//textarea")
    assert (tenant.get_attribute("value"), requester.get_attribute("value")) == (TENANT, BILL)
    assert shot.stat().st_size > 20_000


def test_a_drill_submitted_through_the_form_completes_against_the_lab(deployed: Stack, protected: Path,
                                                                      browser: Browser, flows_env: Path,
                                                                      lab: LabState) -> None:
    out = flows_env / "ui-out"
    # The ticket that asked for the drill: a real incident in the lab's service desk (the test's own REST client).
    sd = lab.servicedesk
    assert sd is not None
    with httpx.Client(base_url=sd.url, auth=(sd.username, sd.password), timeout=30,
                      headers={"Accept": "application/json"}) as desk:
        ticket_number = desk.post("/api/now/table/incident", json={
            "short_description": f"Please run the DR test of {TENANT}", "caller_id": BILL}).json()["result"]["number"]
    run_name = f"ui-drill-{uuid.uuid4().hex[:8]}"
    browser.get(_drill_deployment_url(browser, deployed))
    browser.click("Run")
    browser.click("Custom run")
    # As a user would: name the run, give the ticket (switching the field from None to str) and the output dir.
    _type_into(browser.wait_xpath("//div[contains(@class,'flow-run-name-input')]//input", "the run name"), run_name)
    _property(browser, "ticket").find_element(
        By.XPATH, "./div[contains(@class,'p-label__body')]/div[contains(@class,'p-button-group')]"
                  "/button[normalize-space(.)='str']").click()
    ticket = browser.wait(lambda _: next(iter(_property(browser, "ticket").find_elements(
        By.XPATH, "./div[contains(@class,'p-label__body')]//textarea")), None), "the ticket text field")
    ticket.send_keys(ticket_number)
    _type_into(_property(browser, "output_dir").find_element(By.XPATH, ".//textarea"), str(out))
    browser.screenshot("drill-form-filled")
    _submit(browser)

    # The UI goes back to the deployment, where the new run is listed by its name; its page's URL carries its id.
    browser.wait_xpath(f"//a[normalize-space(.)='{run_name}']", f"the run {run_name} listed")
    browser.screenshot("drill-submitted")
    browser.click(run_name)
    run_id = browser.wait(lambda d: (m := re.search(r"/runs/flow-run/([0-9a-f-]{36})", d.current_url)) and m[1],
                          "the run page")

    deadline = time.monotonic() + RUN_TIMEOUT_S
    state = _state_of(deployed, run_id)
    while state.get("type") not in TERMINAL and time.monotonic() < deadline:
        time.sleep(3)
        state = _state_of(deployed, run_id)
    assert state.get("type") == "COMPLETED", (state, deployed.log_tail())
    # The run page follows the run by itself: its state badge turns Completed without a reload.
    browser.wait_xpath("//*[contains(@class,'state-badge')][normalize-space(.)='Completed']", "the Completed badge")
    assert run_name in browser.page_text()
    shot = browser.screenshot("drill-run-completed")
    browser.click("Artifacts")
    browser.wait_text(f"drill-report-{TENANT}", timeout=60)
    browser.screenshot("drill-run-artifacts")
    assert shot.stat().st_size > 20_000

    # What the store holds: the run as the UI asked for it, a PASS, its checks passed, audited as a UI request.
    store = StateStore()
    run = store.get_run(run_id)
    assert run is not None and (run.flow, run.tenant_id, run.state, run.outcome) == (
        "drill", TENANT, "Completed", "success")
    assert run.parameters["ticket"] == ticket_number and run.parameters["output_dir"] == str(out)
    reports = [r for r in store.reports(TENANT, kind="drill") if r.format == "json" and r.run_id == run_id]
    assert reports, "no drill report stored for the run"
    report = DrillReportData.model_validate_json(reports[-1].content)
    assert report.verdict in ("PASS", "PASS WITH WARNINGS"), report
    failed_steps = [(st.step, st.target, st.error) for st in store.steps(run_id) if st.status == "failed"]
    assert failed_steps == []
    # Every machine recovered; a check that did not pass is one the lab cannot run, and the report says so.
    results = store.drill_results(run_id)
    assert {r.machine for r in results if r.check == "recovered" and r.passed} == {"initech-fs01", "initech-app01"}
    for failed in [r for r in results if not r.passed]:
        assert "not run" in " ".join(report.warnings) and failed.check in " ".join(report.warnings), failed
    accepted = [e for e in store.audit_log() if e.action == "request_drill" and e.outcome == "accepted"]
    assert accepted and (accepted[-1].actor, accepted[-1].channel) == (BILL, "ui")
    assert any(out.glob(f"{TENANT}/reports/*")), "the report was not written under the output dir from the form"
    assert len(list(browser.screenshots.glob("*.png"))) >= 5

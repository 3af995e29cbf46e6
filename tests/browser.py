"""A headless Chromium driven by selenium, for tests that look at a web UI as a user would.

Debian's ``chromium`` and ``chromium-driver`` packages (scripts/bootstrap.sh installs them); a
missing browser or driver is a setup error, never a skip. The window is 1600x1000 so pages lay
out as on a desktop; :meth:`Browser.screenshot` saves a PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1600, 1000)


def _literal(text: str) -> str:
    """``text`` as an XPath string literal (quotes of either kind allowed)."""
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    return "concat(" + ", \"'\", ".join(f"'{part}'" for part in text.split("'")) + ")"


class Browser:
    """One headless Chromium session; use as a context manager so the browser always quits."""

    def __init__(self, screenshots: Path, *, timeout: float = 30.0) -> None:
        for binary in (CHROMIUM, CHROMEDRIVER):
            if not binary.is_file():
                raise RuntimeError(f"{binary} is missing: install Debian's chromium and chromium-driver "
                                   "(scripts/bootstrap.sh)")
        self.screenshots = screenshots
        self.timeout = timeout
        self.driver: webdriver.Chrome | None = None

    def __enter__(self) -> Browser:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    f"--window-size={WINDOW[0]},{WINDOW[1]}", "--lang=en-US"):
            options.add_argument(arg)
        self.driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
        self.driver.set_window_size(*WINDOW)
        self.screenshots.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.driver is not None:
            self.driver.quit()
            self.driver = None

    @property
    def d(self) -> webdriver.Chrome:
        assert self.driver is not None, "use Browser as a context manager"
        return self.driver

    def get(self, url: str) -> None:
        self.d.get(url)

    @property
    def url(self) -> str:
        return self.d.current_url

    def wait(self, condition: Callable[[webdriver.Chrome], Any], what: str, timeout: float | None = None) -> Any:
        """``condition``'s first truthy value; a timeout fails with ``what`` and saves a screenshot."""

        def guarded(driver: webdriver.Chrome) -> Any:
            try:
                return condition(driver)
            except StaleElementReferenceException:  # the Vue app re-rendered under the read
                return None

        try:
            return WebDriverWait(self.d, timeout or self.timeout, poll_frequency=0.25).until(guarded)
        except TimeoutException:
            shot = self.screenshot("timeout")
            console = "\n".join(self.console())
            raise AssertionError(f"timed out waiting for {what} on {self.url} (screenshot {shot})\n"
                                 f"browser console:\n{console}") from None

    def visible(self, xpath: str) -> list[WebElement]:
        return [e for e in self.d.find_elements(By.XPATH, xpath) if e.is_displayed()]

    def wait_xpath(self, xpath: str, what: str, timeout: float | None = None) -> WebElement:
        """The first displayed element matching ``xpath``."""
        return self.wait(lambda _: next(iter(self.visible(xpath)), None), what, timeout)

    def wait_text(self, text: str, timeout: float | None = None, *, tag: str = "*") -> WebElement:
        """The first displayed ``tag`` with a text node of its own containing ``text``."""
        xpath = f"//{tag}[text()[contains(normalize-space(.), {_literal(text)})]]"  # Vue leaves empty text nodes
        return self.wait_xpath(xpath, f"text {text!r}", timeout)

    def click(self, label: str, timeout: float | None = None) -> WebElement:
        """Click the enabled, displayed button, link or menu item whose visible text is ``label``.

        A click that lands on something else (a toast sliding in, a page fading out) is tried
        again until ``timeout``.
        """
        xpath = ("//*[self::button or self::a or @role='button' or @role='menuitem' or @role='tab'"
                 " or contains(concat(' ', @class, ' '), ' p-tab ')]"
                 f"[normalize-space(.)={_literal(label)}]")

        def enabled(_: Any) -> WebElement | None:
            return next((e for e in self.visible(xpath) if e.is_enabled()
                         and e.get_attribute("aria-disabled") != "true"), None)

        def clicked(_: Any) -> WebElement | None:
            element = enabled(_)
            if element is None:
                return None
            self.d.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
            try:
                element.click()
            except ElementClickInterceptedException:  # still sliding in, or under a toast: look again
                return None
            return element

        return self.wait(clicked, f"button {label!r}", timeout)

    def dismiss_toasts(self) -> None:
        """Close every notification toast of Prefect's design system (``p-toast``); they can cover buttons."""
        for close in self.d.find_elements(By.CSS_SELECTOR, ".p-toast__close-btn, .p-toast__close"):
            try:
                if close.is_displayed():
                    close.click()
            except (ElementClickInterceptedException, StaleElementReferenceException):
                continue
        self.wait(lambda d: not [t for t in d.find_elements(By.CSS_SELECTOR, ".p-toast__card") if t.is_displayed()],
                  "the toasts to close")

    def console(self) -> list[str]:
        """The page's console messages since the last call (warnings and errors the UI logged)."""
        return [f"{e.get('level')}: {e.get('message')}" for e in self.d.get_log("browser")]

    def page_text(self) -> str:
        return self.d.find_element(By.TAG_NAME, "body").text

    def screenshot(self, name: str) -> Path:
        """Save the viewport as ``<screenshots>/<n>-<name>.png`` (numbered in order of taking)."""
        taken = len(list(self.screenshots.glob("*.png")))
        path = self.screenshots / f"{taken + 1:02d}-{name}.png"
        self.d.save_screenshot(str(path))
        return path


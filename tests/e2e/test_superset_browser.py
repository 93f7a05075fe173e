"""The six dashboards in a real browser: Debian's Chromium driven by Playwright (no downloaded browser).

Logs in through Superset's form, opens each dashboard, waits until every chart has drawn, fails on
any chart showing an error, and saves a full-page screenshot per dashboard under
var/test-artifacts/superset/. On the Live dashboard (auto-refresh every 5 s) the transactions figure must
grow (not merely change) after the generator adds shop activity.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from instashop.devstack import generator
from instashop.settings import Settings
from tests.support.pipeline import joined
from tests.support.superset import DASHBOARD_SLUGS, LiveSource, SupersetApi, running_live_app

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Tall enough for every chart to be on screen: Superset draws only the charts in view.
VIEWPORT = {"width": 1600, "height": 2400}
LOAD_TIMEOUT_MS = 90_000

# True once every chart holder of the page is done: no spinner left, and each shows a drawing, a
# number, a table, an empty state or an error.
ALL_CHARTS_DONE = """() => {
  const holders = [...document.querySelectorAll('[data-test="chart-grid-component"]')];
  return holders.length > 0 && holders.every(h =>
    !h.querySelector('[data-test="loading-indicator"]') &&
    h.querySelector('[data-test="chart-container"], [role="alert"], .ant-alert'));
}"""
# Title and error text of every chart that shows an error.
CHART_ERRORS = """() => [...document.querySelectorAll('[data-test="chart-grid-component"]')]
  .filter(h => h.querySelector('[role="alert"], .ant-alert-error'))
  .map(h => h.innerText.slice(0, 300))"""
BIG_NUMBER = """(title) => {
  const holder = [...document.querySelectorAll('[data-test="chart-grid-component"]')]
    .find(h => h.querySelector('[data-test="slice-header"]')?.innerText.includes(title));
  return holder ? holder.querySelector('[data-test="chart-container"]')?.innerText.trim() : null;
}"""


@pytest.fixture(scope="module")
def artifacts(settings: Settings) -> Path:
    path = settings.var_dir / "test-artifacts" / "superset"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser: Browser, settings: Settings) -> Iterator[Page]:
    """A page logged in through the login form, as a person would."""
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(LOAD_TIMEOUT_MS)
    page.goto(f"{settings.superset_url}/login/")
    page.fill("#username", settings.superset_admin_user)
    page.fill("#password", settings.superset_admin_password)
    page.click("button[type=submit]")
    page.wait_for_url("**/superset/welcome/**")
    yield page
    page.close()


def open_dashboard(page: Page, settings: Settings, slug: str) -> None:
    page.goto(f"{settings.superset_url}/superset/dashboard/{slug}/")
    page.wait_for_selector('[data-test="chart-grid-component"]')
    page.wait_for_function(ALL_CHARTS_DONE, timeout=LOAD_TIMEOUT_MS)


@pytest.mark.parametrize("slug", DASHBOARD_SLUGS)
def test_dashboard_draws_every_chart_without_error(page, settings, artifacts, slug):
    open_dashboard(page, settings, slug)
    page.wait_for_timeout(1_000)  # ECharts animates its first drawing
    page.screenshot(path=str(artifacts / f"{slug}.png"), full_page=True)
    assert page.evaluate(CHART_ERRORS) == []
    title = page.locator('[data-test="editable-title-input"]').first.input_value()
    assert title, f"dashboard {slug} has no title"


@pytest.fixture(scope="module")
def live_app(settings: Settings, cdc_pipeline) -> Iterator[None]:
    """The Spark app writing the Live dashboard's keys (started for the test if it was not running)."""
    for _ in running_live_app(settings, LiveSource(SupersetApi(settings), settings)):
        yield


def test_live_dashboard_follows_new_events(page, settings, artifacts, live_app):
    open_dashboard(page, settings, "live")
    before = page.evaluate(BIG_NUMBER, "Transactions, last 5 min")
    traffic = threading.Thread(target=_shop_traffic, args=(settings,), daemon=True)
    traffic.start()
    # Generous: on a loaded 2-core machine a first Spark batch plus a 5 s dashboard refresh can lag.
    # Grown, not merely changed: a count over the last 5 minutes also changes when old windows age out.
    grown = _wait_for_growth(page, before, timeout=240)
    joined(traffic, timeout=120)
    page.screenshot(path=str(artifacts / "live-after-new-events.png"), full_page=True)
    assert grown is not None, f"'Transactions, last 5 min' did not grow from {before!r} in 240 s of new orders"
    assert page.evaluate(CHART_ERRORS) == []


def _shop_traffic(settings: Settings) -> None:
    options = generator.GeneratorConfig(rate=60, sessions=120, seed=int(time.time()) % 10_000)
    generator.run(settings.oltp_dsn, options, console=None)


def big_number_value(text: str | None) -> float:
    """A big number's value from its text ('1,234', '1.23k', '2M'); no data counts as 0."""
    text = (text or "").replace(",", "").strip()
    if not text or text.lower() in ("no data", "n/a", "-"):
        return 0.0
    scale = {"k": 1e3, "M": 1e6, "G": 1e9}.get(text[-1], 1.0)
    return float(text[:-1] if scale != 1.0 else text) * scale


def _wait_for_growth(page: Page, before: str | None, timeout: float) -> str | None:
    """The big number's new text once the dashboard's own refresh shows more than before, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page.wait_for_timeout(2_000)
        now = page.evaluate(BIG_NUMBER, "Transactions, last 5 min")
        if now and big_number_value(now) > big_number_value(before):
            return now
    return None

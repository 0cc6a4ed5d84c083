"""A full reload (F5, a typed URL, a link in a new tab) keeps the sidebar's set-up: it lives in the URL."""
import re
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def _box(page, label: str):
    return page.locator("[data-testid='stSidebar']").get_by_role("combobox", name=label, exact=True)


def _choose(page, label: str, option: str) -> None:
    _box(page, label).click()
    page.get_by_role("option", name=option, exact=True).click()


def _shown(page, label: str, value: str) -> None:
    """The selectbox shows `value` (waits: a reload renders the sidebar while the script runs)."""
    expect(_box(page, label)).to_have_value(value, timeout=30_000)


def _query(page) -> dict:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def test_a_reload_and_a_new_tab_keep_the_data_set_and_model(page, app_server):
    page.goto(app_server["url"])
    page.wait_for_selector("[data-testid='stSidebar']")
    _shown(page, "Dataset", "digits (default)")
    _choose(page, "Dataset", "synthetic")
    _shown(page, "Dataset", "synthetic")
    _choose(page, "Baseline model", "cnn")
    _shown(page, "Baseline model", "cnn")
    page.wait_for_url(re.compile(r"model=cnn"), timeout=15_000)
    assert _query(page) == {"dataset": "synthetic", "model": "cnn"}  # the default device is left out

    page.reload()
    page.wait_for_selector("[data-testid='stSidebar']")
    _shown(page, "Dataset", "synthetic")
    _shown(page, "Baseline model", "cnn")
    assert _query(page) == {"dataset": "synthetic", "model": "cnn"}

    # another page: Streamlit may drop the query on a page switch; the app writes it back
    page.locator("[data-testid='stSidebarNav']").get_by_text("Prune", exact=True).click()
    page.wait_for_url(re.compile(r"/prune\?.*model=cnn"), timeout=15_000)
    assert _query(page) == {"dataset": "synthetic", "model": "cnn"}
    _shown(page, "Baseline model", "cnn")

    fresh = page.context.browser.new_context().new_page()  # another browser session opens the link
    try:
        fresh.goto(page.url)
        fresh.wait_for_selector("[data-testid='stSidebar']")
        _shown(fresh, "Dataset", "synthetic")
        _shown(fresh, "Baseline model", "cnn")
        fresh.get_by_role("heading", name="Prune").first.wait_for()
    finally:
        fresh.context.close()

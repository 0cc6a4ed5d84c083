"""The downloaded HTML report opens in a browser with every network request blocked."""
import pytest

from dashboard.report_html import build_report
from test_report import ROWS

from .conftest import screenshot

pytestmark = pytest.mark.e2e


def test_report_renders_offline(browser, tmp_path):
    path = tmp_path / "report.html"
    path.write_text(build_report(ROWS))
    context = browser.new_context(offline=True)
    page = context.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_selector(".main-svg")
    assert page.locator(".main-svg").count() >= 3
    assert page.get_by_text("4.1x smaller, 2.3x faster [2.1, 2.5]").count() == 1
    assert [u for u in requests if not u.startswith("file:")] == []
    screenshot(page, "report-offline")
    context.close()

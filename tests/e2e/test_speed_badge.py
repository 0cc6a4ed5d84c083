"""In the browser, the Report shows speed-ups with their CI and a visible noisy badge, never a bare ratio."""
import pytest

from test_speed_report import _lineage, _timing

from .conftest import app_store, screenshot

pytestmark = pytest.mark.e2e


def test_report_shows_ci_and_noisy_badge(page, app_server):
    store = app_store(app_server)
    base, pruned, quant, _ = _lineage(store)
    store.add_speedup(base, pruned, _timing(2.5, 2.2, 2.9), "parent")
    store.add_speedup(base, quant, _timing(5.0, 3.0, 8.0, noisy=True, load=1.2), "ancestor")
    page.goto(f"{app_server['url']}/report")
    page.get_by_text("2.5x faster [2.2, 2.9]").first.wait_for()
    page.get_by_text("5.0x faster [3.0, 8.0] (noisy: timed while other programs were busy, load 1.2 cores)")\
        .first.wait_for()
    page.get_by_text("Some timings were noisy").first.wait_for()
    page.wait_for_selector(".main-svg")
    assert page.get_by_text("1.0x faster").count() == 0  # stored latencies (4 ms each) are never divided
    screenshot(page, "report-speed-badges")

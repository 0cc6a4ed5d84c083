"""End to end: the teaching demo from Home fills Compare; a pruning sweep through the Prune page."""
import pytest

from .conftest import screenshot

pytestmark = pytest.mark.e2e


def _open(page, app_server, path=""):
    page.goto(f"{app_server['url']}/{path}")
    page.wait_for_selector("[data-testid='stSidebar']")


def test_teaching_demo_fills_the_charts(page, app_server):
    _open(page, app_server)
    page.get_by_role("button", name="Run the teaching demo").click()
    page.get_by_role("button", name="Cancel").wait_for()  # progress with a Cancel button
    page.get_by_text("ETA").first.wait_for(timeout=60_000)
    page.get_by_text("finished in").wait_for(timeout=240_000)
    page.wait_for_selector(".main-svg")
    assert page.locator(".scatterlayer .point").count() >= 12  # baselines, pruned, quantized, pipeline stages
    screenshot(page, "home-after-demo")
    _open(page, app_server, "compare")
    page.wait_for_selector(".scatterlayer .point")
    assert page.get_by_text("Pareto front").count() >= 1
    screenshot(page, "compare-after-demo")


def test_prune_sweep_through_the_ui(page, app_server):
    _open(page, app_server, "prune")
    page.get_by_label("Sparsities", exact=True).fill("0.6")
    page.get_by_label("Fine-tune epochs", exact=True).fill("1")
    page.get_by_role("button", name="Prune", exact=True).click()
    page.get_by_text("Job").filter(has_text="(prune)").first.wait_for(timeout=30_000)
    page.get_by_text("finished in").wait_for(timeout=240_000)
    page.get_by_text("Accuracy vs sparsity").first.wait_for(timeout=30_000)
    page.wait_for_selector(".main-svg")
    assert page.get_by_text("global_l1 60%").count() >= 1
    screenshot(page, "prune")

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


def _fill(page, label, value):
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Tab")


def _run_and_wait(page, button, kind):
    page.get_by_role("button", name=button, exact=True).click()
    page.get_by_text("Job").filter(has_text=f"({kind})").first.wait_for(timeout=30_000)
    page.get_by_text("finished in").wait_for(timeout=300_000)
    page.wait_for_selector(".main-svg")


def test_distill_through_the_ui(page, app_server):
    _open(page, app_server, "distill")
    _fill(page, "Student epochs", 3)
    _run_and_wait(page, "Distill", "distill")
    page.get_by_text("KD student T=4").first.wait_for(timeout=30_000)
    assert page.get_by_text("gap closed").count() >= 1
    screenshot(page, "distill")


def test_quantize_through_the_ui(page, app_server):
    _open(page, app_server, "quantize")
    _run_and_wait(page, "Quantize", "quantize")
    page.get_by_text("int8 kernels").first.wait_for(timeout=30_000)
    assert page.get_by_text("smaller").count() >= 1
    screenshot(page, "quantize")


def test_search_through_the_ui(page, app_server):
    _open(page, app_server, "search")
    _fill(page, "Trials", 4)
    _fill(page, "Epochs per trial", 1)
    _run_and_wait(page, "Search", "search")
    page.get_by_text("Hypervolume (found)").wait_for(timeout=30_000)
    page.get_by_text("zoo (hand-designed)").first.wait_for(timeout=30_000)
    screenshot(page, "search")

"""End to end in a real browser: train a baseline through the UI, watch it, reload mid-job; Compare draws the stored
runs. (Home and uploads: test_uploads.py.)"""

import pytest

from conftest import baseline, quick_ctx

from .conftest import app_store, job_ids, new_job, screenshot

pytestmark = pytest.mark.e2e


def _goto(page, app_server, path=""):
    page.goto(f"{app_server['url']}/{path}")
    page.wait_for_selector("[data-testid='stSidebar']")


def test_train_baseline_through_the_ui_and_reload_mid_job(page, app_server):
    store = app_store(app_server)
    _goto(page, app_server, "baseline")
    page.get_by_label("Epochs").fill("30")
    page.get_by_label("Epochs").press("Enter")
    before = job_ids(store, "train")
    page.get_by_role("button", name="Train baseline").click()
    job_id = new_job(store, "train", before)
    label = f"Job {job_id} (train)"
    # the job shows with a progress bar and a Cancel button
    page.get_by_text(label).first.wait_for()
    page.get_by_role("button", name="Cancel").wait_for()
    page.reload()  # mid-job: the job is still shown, read back from the store
    page.wait_for_selector("[data-testid='stSidebar']")
    page.get_by_text(label).first.wait_for(timeout=30_000)
    second_tab = page.context.browser.new_context().new_page()  # another browser session, same server
    second_tab.goto(f"{app_server['url']}/baseline")
    second_tab.get_by_text(label).first.wait_for(timeout=30_000)
    second_tab.context.close()
    assert store.get_job(job_id)["status"] in ("queued", "running", "done")
    assert store.get_job(job_id)["params"]["epochs"] == 30
    # when it finishes the metric cards and the training curves appear without a manual refresh
    page.get_by_text(f"{label} finished in").wait_for(timeout=120_000)
    page.get_by_text("Parameters").first.wait_for()
    page.wait_for_selector(".main-svg")
    assert page.get_by_text("95% CI").count() >= 1
    screenshot(page, "baseline")
    assert store.get_job(job_id)["status"] == "done"
    assert len(store.list_runs(job_id=job_id)) == 1


def test_compare_draws_the_stored_runs(page, app_server):
    store = app_store(app_server)
    _, run = baseline(ctx=quick_ctx(store=store))  # this test's own run, stored in the app's database
    _goto(page, app_server, "compare")
    page.wait_for_selector(".main-svg")
    page.wait_for_selector(".scatterlayer .point")
    # this test's app has its own lab folder, so the store holds exactly this run. The trade-off chart draws one
    # marker per stored run (its technique's trace) and one more per run on the Pareto front (an open circle
    # over it): one run is its own front, so 2 points, the first in the run's trace
    assert [r["id"] for r in store.list_runs()] == [run["id"]]
    traces = page.locator(".scatterlayer .trace")
    assert [traces.nth(i).locator(".point").count() for i in range(traces.count())] == [1, 1]
    assert page.locator(".scatterlayer .point").count() == 2
    # the table is drawn on a canvas: find the run by name where the page lists runs as text, the lineage picker
    page.get_by_label("Draw the lineage of").click()
    page.get_by_role("option", name=f"#{run['id']} {run['label']}").wait_for(timeout=10_000)
    page.keyboard.press("Escape")
    screenshot(page, "compare")

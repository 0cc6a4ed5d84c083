"""End to end: the teaching demo from Home fills Compare; each lab through its page. The tests share one app
server, lab folder and warm job worker (starting each costs seconds of torch imports); each waits for its own
job by id and reads only the runs that job stored."""
import pytest

from conftest import wait_for  # the suite's conftest (tests/)

from .conftest import app_store, job_ids, new_job, screenshot, shared_app_server

pytestmark = pytest.mark.e2e
app_server = shared_app_server  # the `page` fixture opens its tab on this module's one server


PAGE_BUTTONS = "[data-testid^='stBaseButton-primary'], [data-testid^='stBaseButton-secondary']"


def _open(page, app_server, path=""):
    page.goto(f"{app_server['url']}/{path}")
    page.wait_for_selector("[data-testid='stSidebar']")


def _fill(page, label, value):
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Tab")


def _run_and_wait(page, app_server, button, kind, timeout_ms=300_000) -> int:
    """Click the lab's button, find the job it queued, and wait until the page says that job finished."""
    store = app_store(app_server)
    before = job_ids(store, kind)
    # the page's own button, not a table toolbar's "Search" (the shared server's earlier runs fill the tables)
    page.get_by_role("button", name=button, exact=True).and_(page.locator(PAGE_BUTTONS)).click()
    job_id = new_job(store, kind, before)
    page.get_by_text(f"Job {job_id} ({kind})").first.wait_for(timeout=30_000)
    page.get_by_text(f"Job {job_id} ({kind}) finished in").wait_for(timeout=timeout_ms)
    assert store.get_job(job_id)["status"] == "done", store.get_job(job_id)["error"]
    page.wait_for_selector(".main-svg")
    return job_id


def test_prune_sweep_through_the_ui(page, app_server):
    _open(page, app_server, "prune")
    page.get_by_label("Sparsities", exact=True).fill("0.6")
    page.get_by_label("Fine-tune epochs", exact=True).fill("1")
    job_id = _run_and_wait(page, app_server, "Prune", "prune")
    page.get_by_text("Accuracy vs sparsity").first.wait_for(timeout=30_000)
    assert page.get_by_text("Weight pruning, global (L1)").count() >= 1  # the registry's name, as Compare says it
    assert [r["method"] for r in app_store(app_server).list_runs(job_id=job_id, kind="prune")] == ["global_l1"]
    screenshot(page, "prune")


def test_distill_through_the_ui(page, app_server):
    _open(page, app_server, "distill")
    _fill(page, "Student epochs", 1)
    _run_and_wait(page, app_server, "Distill", "distill")
    page.get_by_text("KD student T=4").first.wait_for(timeout=30_000)
    assert page.get_by_text("gap closed").count() >= 1
    screenshot(page, "distill")


def test_quantize_through_the_ui(page, app_server):
    _open(page, app_server, "quantize")
    _run_and_wait(page, app_server, "Quantize", "quantize")
    page.get_by_text("int8 kernels").first.wait_for(timeout=30_000)
    assert page.get_by_text("smaller").count() >= 1
    screenshot(page, "quantize")


def test_search_through_the_ui(page, app_server):
    _open(page, app_server, "search")
    _fill(page, "Trials", 2)
    _fill(page, "Epochs per trial", 1)
    _run_and_wait(page, app_server, "Search", "search")
    page.get_by_text("Hypervolume (found)").wait_for(timeout=30_000)
    page.get_by_text("zoo (hand-designed)").first.wait_for(timeout=30_000)
    screenshot(page, "search")


# last in the module: its re-timings may still be running when the module stops its worker
def test_teaching_demo_fills_the_charts(page, app_server):
    _open(page, app_server)
    store = app_store(app_server)
    before = job_ids(store, "demo")
    page.get_by_role("button", name="Run the teaching demo").click()
    job_id = new_job(store, "demo", before)
    page.get_by_role("button", name="Cancel").wait_for()  # progress with a Cancel button
    page.get_by_text("ETA").first.wait_for(timeout=60_000)
    page.get_by_text(f"Job {job_id} (demo) finished in").wait_for(timeout=600_000)
    page.wait_for_selector(".main-svg")
    assert page.locator(".scatterlayer .point").count() >= 12  # baselines, pruned, quantized, pipeline stages
    assert store.list_runs(kind="search_trial", job_id=job_id)  # the demo ends with a small search
    screenshot(page, "home-after-demo")
    # then the Report's five claims are queued to be timed again in fresh processes, pooled, one job each (what
    # such a job stores: tests/test_jobs.py; waiting here for five re-timings would cost a minute of the suite)
    follow_ups = store.get_job(job_id)["result"]["follow_up_jobs"]
    assert len(follow_ups) == 5 and {store.get_job(j)["kind"] for j in follow_ups} == {"speedup"}
    demo_runs = {r["id"] for r in store.list_runs(job_id=job_id)}
    for follow_up in follow_ups:
        params = store.get_job(follow_up)["params"]
        assert params["run_b"] in demo_runs and params["processes"] == 3 and params["time_budget"] > 0
    _open(page, app_server, "compare")
    page.wait_for_selector(".scatterlayer .point")
    assert page.get_by_text("Pareto front").count() >= 1
    screenshot(page, "compare-after-demo")

"""Every page through streamlit's AppTest, from the entry point, against a real run store."""
import json

import pytest
from streamlit.testing.v1 import AppTest

from compression import (DistillLabConfig, PipelineLabConfig, PruneLabConfig, QuantizeLabConfig, RunStore,
                         SearchConfig, run_distill, run_pipeline, run_prune, run_quantize)
from compression.jobs.queue import stop_workers, worker_running
from compression.labs.search import run_search
from conftest import ROOT, baseline, quick_ctx, wait_for

APP = str(ROOT / "dashboard" / "app.py")
# each page's title and its main button (a form's submit button counts); Compare and Report have none until
# something is stored, and say so
PAGES = {"home": ("Compression Lab", "Run the teaching demo"), "baseline": ("Baseline", "Train baseline"),
         "prune": ("Prune", "Prune"), "distill": ("Distill", "Distill"), "quantize": ("Quantize", "Quantize"),
         "search": ("Search", "Search"), "compare": ("Compare", None), "report": ("Report", None)}
EMPTY_NOTES = {"baseline": "No baseline on this dataset yet", "prune": "No pruned runs", "distill": "No distillation runs",
               "quantize": "No quantized runs", "search": "No searches yet", "compare": "No runs stored yet",
               "report": "No finished runs yet", "home": "No runs yet"}


def open_page(page: str, dataset: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if dataset:
        at.sidebar.selectbox(key="dataset").set_value(dataset).run()
    if page != "home":
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


@pytest.fixture
def two_runs(lab_home):
    """A baseline and a child run, so charts and lineage have something to draw."""
    store = RunStore()
    _, run = baseline()
    record = dict(run["record"], accuracy=run["record"]["accuracy"] - 0.01, size_bytes=run["record"]["size_bytes"] // 4)
    child = store.add_run("prune", "synthetic", run["model"], {"sparsity": 0.5}, parent_id=run["id"],
                          record=record, method="global_l1", label="global_l1 50%")
    return run["id"], child


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_on_an_empty_store(page):
    at = open_page(page)
    title, button = PAGES[page]
    assert [t.value for t in at.title] == [title]
    assert at.sidebar.selectbox(key="dataset").value == "digits"  # the shared sidebar is there
    if button:
        assert any(b.label == button for b in at.button), [b.label for b in at.button]
    assert any(EMPTY_NOTES[page] in i.value for i in at.info), [i.value for i in at.info]  # says what to do
    assert charts(at) == 0 and not at.error


def test_pages_render_stored_runs(two_runs):
    base, child = two_runs
    home = open_page("home", "synthetic")
    assert [t.value for t in home.title] == ["Compression Lab"] and charts(home) == 2  # accuracy vs params, latency
    assert any(b.label == "Run the teaching demo" for b in home.button) and not home.info

    page = open_page("baseline", "synthetic")
    assert [t.value for t in page.title] == ["Baseline"] and any(b.label == "Train baseline" for b in page.button)
    assert any(s.label == "Baseline run" for s in page.selectbox)  # the run picker
    assert [m.label for m in page.metric][:3] == ["Accuracy", "Parameters", "Size"]
    assert charts(page) == 1  # the stored run's training curves

    page = open_page("compare", "synthetic")
    assert [t.value for t in page.title] == ["Compare"] and charts(page) == 1
    assert len(page.dataframe) == 1 and page.dataframe[0].value["run_id"].tolist() == [base, child]
    assert [b.label for b in page.get("download_button")] == ["Export CSV", "Export JSON"]
    assert any(b.label.startswith("Delete") for b in page.button)

    page = open_page("report", "synthetic")
    assert [t.value for t in page.title] == ["Report"] and charts(page) == 2
    assert len(page.dataframe) == 1 and set(page.dataframe[0].value["run_id"]) == {base, child}
    assert [b.label for b in page.get("download_button")] == ["Download HTML report"]
    assert any("global_l1 50%" in m.value and "smaller" in m.value for m in page.markdown)  # the verdict line


def test_baseline_button_queues_a_train_job_that_the_worker_runs(lab_home):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.sidebar.selectbox(key="dataset").set_value("synthetic").run()
    at.sidebar.selectbox(key="model_name").set_value("mlp").run()
    at.sidebar.text_input(key="model_args").set_value("hidden=16").run()
    at.sidebar.number_input(key="epochs").set_value(2).run()
    at.switch_page("app_pages/baseline.py").run()
    store = RunStore()
    assert store.list_jobs() == []
    at.button[0].click().run()
    jobs = store.list_jobs()
    assert [(j["kind"], j["params"]["model"], j["params"]["epochs"]) for j in jobs] == [("train", "mlp:hidden=16", 2)]
    # the click started a real worker process; it runs the job and stores the run
    wait_for(lambda: store.get_job(jobs[0]["id"])["status"] in ("done", "failed"))
    assert store.get_job(jobs[0]["id"])["status"] == "done", store.get_job(jobs[0]["id"])["error"]
    assert len(store.list_runs(job_id=jobs[0]["id"])) == 1
    at.run()
    assert not at.exception
    assert any(m.label == "Accuracy" for m in at.metric), "metric cards show after the job"


def test_bad_model_argument_is_a_message_not_a_traceback(lab_home):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.sidebar.text_input(key="model_args").set_value("depth=3").run()
    at.switch_page("app_pages/baseline.py").run()
    at.button[0].click().run()
    assert not at.exception
    assert any("Unknown argument" in e.value for e in at.error)
    assert RunStore().list_jobs() == []


def _compare_with_runs(two_runs, extra: int):
    """The Compare page over the baseline, its child and `extra` more children; returns (page, ids)."""
    base, child = two_runs
    store = RunStore()
    ids = [base, child]
    for i in range(extra):
        ids.append(store.add_run("prune", "synthetic", store.get_run(child)["model"], {"sparsity": 0.6 + 0.1 * i},
                                 parent_id=base, record=store.get_run(child)["record"], method="global_l1",
                                 label=f"global_l1 {60 + 10 * i}%"))
    at = open_page("compare")
    assert at.dataframe[0].value["run_id"].tolist() == ids
    return at, ids


def _select_and_delete(at: AppTest, run_ids: list[int]) -> None:
    """Select rows as a click in the table would (AppTest cannot click table rows, but the selection state of a
    keyed dataframe accepts writes), then press Delete."""
    rows = [i for i, run_id in enumerate(at.dataframe[0].value["run_id"]) if run_id in run_ids]
    at.session_state["runs-table"] = {"selection": {"rows": rows, "columns": []}}
    at.run()
    delete = next(b for b in at.button if b.label.startswith("Delete"))
    assert delete.label == f"Delete {len(run_ids)} selected" and not delete.disabled
    delete.click().run()


def test_compare_deletes_selected_runs_and_keeps_the_rest(two_runs):
    at, (base, child, third, fourth) = _compare_with_runs(two_runs, extra=2)
    delete = next(b for b in at.button if b.label.startswith("Delete"))
    assert delete.label == "Delete 0 selected" and delete.disabled  # nothing to delete without a selection
    # the first two rows: the stale selection bug below (rows kept after a delete) cannot crash this page then
    _select_and_delete(at, [base, child])
    store = RunStore()
    assert [r["id"] for r in store.list_runs()] == [third, fourth]  # the selected runs are gone, the rest kept
    assert store.get_run(third)["parent_id"] is None  # its parent was deleted; the run itself is intact
    assert store.get_run(fourth)["record"] == store.get_run(third)["record"]
    assert not at.exception, [e.value for e in at.exception]
    assert at.dataframe[0].value["run_id"].tolist() == [third, fourth]  # the page shows what is left


def test_compare_selection_does_not_outlive_a_delete(two_runs):
    at, (base, child, third) = _compare_with_runs(two_runs, extra=1)
    _select_and_delete(at, [third])  # the last row: after the delete, row 2 no longer exists
    assert [r["id"] for r in RunStore().list_runs()] == [base, child]
    assert not at.exception, [e.value for e in at.exception]
    delete = next(b for b in at.button if b.label.startswith("Delete"))
    assert delete.label == "Delete 0 selected" and delete.disabled  # no run is selected that the user did not pick


def _synthetic_app():
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.sidebar.selectbox(key="dataset").set_value("synthetic").run()
    at.sidebar.selectbox(key="model_name").set_value("mlp").run()
    at.sidebar.text_input(key="model_args").set_value("hidden=16").run()
    return at


def test_prune_form_queues_a_sweep_and_refuses_bad_sparsities(lab_home):
    at = _synthetic_app()
    at.switch_page("app_pages/prune.py").run()
    at.text_input[0].set_value("0.5, 1.5")
    at.button[0].click().run()
    assert not at.exception
    assert any("Sparsity must be in [0, 1)" in e.value for e in at.error)
    assert RunStore().list_jobs() == []
    at.text_input[0].set_value("0.5, 80%")
    at.selectbox[0].set_value("channel_l1")
    at.button[0].click().run()
    job = RunStore().list_jobs()[0]
    assert job["kind"] == "prune" and job["params"]["sparsities"] == [0.5, 0.8]
    assert job["params"]["method"] == "channel_l1" and job["params"]["model"] == "mlp:hidden=16"
    RunStore().request_cancel(job["id"])


def test_prune_page_draws_stored_sweeps(lab_home):
    run_prune(PruneLabConfig(sparsities=[0.5, 0.9], method="global_l1", finetune_epochs=0, with_sensitivity=True,
                             dataset="synthetic", model="mlp:hidden=16", epochs=1, latency_batch=8), quick_ctx())
    store = RunStore()
    child = store.list_runs(kind="prune")[0]
    note = "swin's attention cannot be traced: channel pruning removed MLP hidden units only"
    store.update_run(child["id"], extra={**child["extra"], "notes": [note]})  # as prune_model reports one
    at = _synthetic_app()
    at.switch_page("app_pages/prune.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) >= 6  # sparsity, params, latency, speed-up, per-layer, sensitivity
    assert [i.value for i in at.info] == ["Swin's attention cannot be traced: channel pruning removed MLP hidden "
                                          "units only."]


def test_quantize_page_queues_jobs_and_builds_pipelines(lab_home):
    at = _synthetic_app()
    at.switch_page("app_pages/quantize.py").run()
    assert not at.exception, [e.value for e in at.exception]
    submit = next(b for b in at.button if b.label == "Quantize")
    submit.click().run()
    job = RunStore().list_jobs()[0]
    assert job["kind"] == "quantize" and job["params"]["methods"] == ["dynamic_int8", "static_int8"]
    RunStore().request_cancel(job["id"])
    add = next(b for b in at.button if b.label == "Add stage")
    add.click().run()  # prune channel_l1 0.5
    assert not at.exception, [e.value for e in at.exception]
    run = next(b for b in at.button if b.label == "Run pipeline")
    run.click().run()
    job = RunStore().list_jobs()[0]
    assert job["kind"] == "pipeline" and job["params"]["steps"] == "prune:channel_l1=0.5"
    RunStore().request_cancel(job["id"])


def test_quantize_page_shows_results(lab_home):
    kwargs = dict(dataset="synthetic", model="mlp:hidden=16", epochs=1, latency_batch=8)
    run_quantize(QuantizeLabConfig(methods=["dynamic_int8"], **kwargs), quick_ctx())
    run_pipeline(PipelineLabConfig(steps="prune:global_l1=0.5,quantize:dynamic_int8", **kwargs), quick_ctx())
    at = _synthetic_app()
    at.switch_page("app_pages/quantize.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(m.label == "Size" for m in at.metric)
    assert len(at.get("plotly_chart")) >= 3


def test_distill_page_queues_a_study(lab_home):
    at = _synthetic_app()
    at.sidebar.number_input(key="epochs").set_value(3).run()
    at.switch_page("app_pages/distill.py").run()
    assert not at.exception, [e.value for e in at.exception]
    next(b for b in at.button if b.label == "Distill").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = RunStore().list_jobs()[0]
    assert job["kind"] == "distill" and job["params"]["student"] == "mlp:hidden=16"
    assert job["params"]["seeds"] == [0, 1, 2] and job["params"]["label_fraction"] == 0.1
    assert job["params"]["teacher"] == "mlp:hidden=16" and job["params"]["teacher_epochs"] == 3  # the sidebar's
    RunStore().request_cancel(job["id"])


def test_distill_page_shows_results(lab_home):
    run_distill(DistillLabConfig(teacher="mlp:hidden=32", student="mlp:hidden=4", dataset="synthetic", seeds=[0],
                                 epochs=2, teacher_epochs=1, latency_batch=8), quick_ctx())
    at = _synthetic_app()
    at.switch_page("app_pages/distill.py").run()
    assert not at.exception, [e.value for e in at.exception]
    labels = [m.label for m in at.metric]
    assert labels == ["Teacher accuracy", "Plain student (mean)", "KD student T=4 (mean)"], labels
    assert charts(at) == 1


def test_search_page_queues_a_search_and_shows_the_front(lab_home):
    at = _synthetic_app()
    at.switch_page("app_pages/search.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("architectures" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Search").click().run()
    job = RunStore().list_jobs()[0]
    assert job["kind"] == "search" and job["params"]["space"] == "cnn" and job["params"]["trials"] == 12
    RunStore().request_cancel(job["id"])
    run_search(SearchConfig(dataset="synthetic", space="mlp", trials=3, epochs=1, latency_batch=8), quick_ctx())
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(m.label == "Hypervolume (found)" for m in at.metric)
    next(b for b in at.button if b.label == "Retrain fully").click().run()
    promoted = RunStore().list_jobs()[0]
    assert promoted["kind"] == "train" and promoted["params"]["model"].startswith("mlp:hidden=")
    RunStore().request_cancel(promoted["id"])


def test_home_queues_the_teaching_demo(lab_home):
    at = open_page("home")
    next(b for b in at.button if b.label == "Run the teaching demo").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = RunStore().list_jobs()[0]
    assert job["kind"] == "demo" and job["params"]["dataset"] == "digits" and job["params"]["epochs"] == 10
    RunStore().request_cancel(job["id"])
    from compression.labs.demo import demo_stages
    assert [label for label, _ in demo_stages()][-1] == "search"  # the demo ends with a small search


def _download_format(chart) -> dict:
    return json.loads(chart.proto.config)["toImageButtonOptions"]


def test_every_chart_downloads_as_a_3x_png_or_as_svg(two_runs):
    at = open_page("compare", "synthetic")
    assert [_download_format(c) for c in at.get("plotly_chart")] == [{"format": "png", "scale": 3}] * charts(at)
    at.sidebar.radio(key="image_format").set_value("SVG").run()
    assert charts(at) >= 1 and all(_download_format(c)["format"] == "svg" for c in at.get("plotly_chart"))


@pytest.mark.parametrize("page", ["home", "compare"])
def test_any_first_page_warms_up_a_worker_so_the_demo_starts_at_once(monkeypatch, page):
    assert not worker_running()  # this test's own lab folder: nothing serves it yet
    monkeypatch.setenv("COMPRESSION_LAB_PREWARM", "1")
    open_page(page)
    try:
        assert wait_for(worker_running, timeout=30)  # the page started one (it would exit after 5 s idle)
    finally:
        stop_workers()
    assert not worker_running()


def test_training_curves_draw_accuracy_on_an_axis_that_ends_at_one():
    from dashboard.charts import training_curves

    flat = training_curves([{"epoch": e, "train_loss": 1 / e, "val_accuracy": 1.0} for e in (1, 2, 3)])
    assert list(flat.layout.yaxis2.range) == [0.95, 1.01]  # not Plotly's 0-2 around a constant
    rising = training_curves([{"epoch": 1, "train_loss": 2.0, "val_accuracy": 0.4},
                              {"epoch": 2, "train_loss": 1.0, "val_accuracy": 0.9},
                              {"message": "epoch 3/3, batch 2/9", "fraction": 0.5}])  # progress, not a point
    assert list(rising.layout.yaxis2.range) == pytest.approx([0.35, 1.01])
    assert [list(trace.x) for trace in rising.data] == [[1, 2], [1, 2]]


def test_home_shows_the_queue_once_though_it_has_two_job_panels(lab_home):
    store = RunStore()
    for kind in ("demo", "speedup", "speedup"):
        store.submit_job(kind, {})  # queued only: no worker runs here
    at = open_page("home")
    assert not at.exception
    assert sum(c.value.startswith("Queue: ") for c in at.caption) == 1

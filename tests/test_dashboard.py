"""Every page through streamlit's AppTest, from the entry point, against a real run store."""
import pytest
from streamlit.testing.v1 import AppTest

from compression import RunStore, get_baseline
from conftest import ROOT, wait_for

APP = str(ROOT / "dashboard" / "app.py")
PAGES = ["home", "baseline", "prune", "distill", "quantize", "search", "compare", "report"]


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if page != "home":
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def two_runs(lab_home):
    """A baseline and a child run, so charts and lineage have something to draw."""
    store = RunStore()
    _, run = get_baseline("synthetic", "mlp:hidden=16", epochs=2, latency_batch=16, latency_time=0.02)
    record = dict(run["record"], accuracy=run["record"]["accuracy"] - 0.01, size_bytes=run["record"]["size_bytes"] // 4)
    child = store.add_run("prune", "synthetic", run["model"], {"sparsity": 0.5}, parent_id=run["id"],
                          record=record, method="global_l1", label="global_l1 50%")
    return run["id"], child


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_an_empty_store(page):
    at = open_page(page)
    assert at.title, f"{page} shows no title"
    assert at.sidebar.selectbox(key="dataset").value == "digits"  # the shared sidebar is there


@pytest.mark.parametrize("page", ["home", "baseline", "compare", "report"])
def test_pages_render_stored_runs(two_runs, page):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.sidebar.selectbox(key="dataset").set_value("synthetic").run()
    if page != "home":
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]


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


def test_compare_deletes_selected_runs_and_keeps_the_rest(two_runs):
    base, child = two_runs
    at = open_page("compare")
    assert len(at.dataframe) == 1
    assert at.dataframe[0].value["run_id"].tolist() == [base, child]
    assert any(b.label.startswith("Delete") and b.disabled for b in at.button)
    assert RunStore().list_runs()  # nothing deleted without a selection


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
    from compression.prune_lab import run_prune_sweep
    run_prune_sweep(sparsities=[0.5, 0.9], method="global_l1", finetune_epochs=0, with_sensitivity=True,
                    dataset="synthetic", model="mlp:hidden=16", epochs=1, latency_batch=8, latency_time=0.02)
    at = _synthetic_app()
    at.switch_page("app_pages/prune.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) >= 6  # sparsity, params, latency, speed-up, per-layer, sensitivity


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
    from compression.pipeline import run_pipeline
    from compression.quantize_lab import run_quantize
    kwargs = dict(dataset="synthetic", model="mlp:hidden=16", epochs=1, latency_batch=8, latency_time=0.02)
    run_quantize(methods=["dynamic_int8"], **kwargs)
    run_pipeline(steps="prune:global_l1=0.5,quantize:dynamic_int8", **kwargs)
    at = _synthetic_app()
    at.switch_page("app_pages/quantize.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(m.label == "Size" for m in at.metric)
    assert len(at.get("plotly_chart")) >= 3


def test_distill_page_queues_a_study_and_shows_results(lab_home):
    at = _synthetic_app()
    at.switch_page("app_pages/distill.py").run()
    assert not at.exception, [e.value for e in at.exception]
    next(b for b in at.button if b.label == "Distill").click().run()
    job = RunStore().list_jobs()[0]
    assert job["kind"] == "distill" and job["params"]["student"] == "mlp:hidden=16"
    assert job["params"]["seeds"] == [0, 1, 2] and job["params"]["label_fraction"] == 0.1
    RunStore().request_cancel(job["id"])
    from compression.distill_lab import run_distill
    run_distill(teacher="mlp:hidden=32", student="mlp:hidden=4", dataset="synthetic", seeds=[0], epochs=2,
                epochs_teacher=1, latency_batch=8, latency_time=0.02)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(m.label.startswith("KD student") for m in at.metric)


def test_search_page_queues_a_search_and_shows_the_front(lab_home):
    at = _synthetic_app()
    at.switch_page("app_pages/search.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("architectures" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Search").click().run()
    job = RunStore().list_jobs()[0]
    assert job["kind"] == "search" and job["params"]["space"] == "cnn" and job["params"]["trials"] == 12
    RunStore().request_cancel(job["id"])
    from compression.search import SearchConfig, run_search
    run_search(SearchConfig(dataset="synthetic", space="mlp", trials=3, epochs=1, latency_batch=8))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(m.label == "Hypervolume (found)" for m in at.metric)
    next(b for b in at.button if b.label == "Retrain fully").click().run()
    promoted = RunStore().list_jobs()[0]
    assert promoted["kind"] == "train" and promoted["params"]["model"].startswith("mlp:hidden=")
    RunStore().request_cancel(promoted["id"])

"""Language models, part 2: the language-model teaching demo. Home's second button queues it on pydoc and switches the
sidebar to the text; each stage stores runs timed in pairs with the trained gpt, and its headline pairs are queued
for re-timing per phase. Here its stages run on a two-layer gpt of width 32. The demo itself, clicked in Chromium,
with Home's charts and the Report's claims and completions, is benchmarks/lm_demo_browser.py (a speed goal); what
the Report's claim and completions hold: tests/test_report.py and tests/test_lm_behaviour.py."""
from streamlit.testing.v1 import AppTest

from compression import RunStore
from compression.labs.configs import DemoConfig
from compression.labs.demo import run_demo
from compression.labs.demo import lm_demo_params, lm_demo_stages
from compression.labs.records import as_record
from compression.labs.summary import REPORT_DEFAULT_RUNS, default_report_runs
from conftest import ROOT, quick_ctx

APP = str(ROOT / "dashboard" / "app.py")


def test_home_queues_the_language_model_demo_and_shows_its_text(lab_home):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    next(b for b in at.button if b.label == "Run the language-model demo").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception]
    job = RunStore().list_jobs()[0]
    RunStore().request_cancel(job["id"])
    assert job["kind"] == "demo" and {k: job["params"][k] for k in lm_demo_params()} == lm_demo_params()
    assert at.session_state.dataset == "pydoc"  # the sidebar follows, so the charts below show the demo's runs
    assert at.sidebar.selectbox(key="model_name").value == "gpt"
    assert any("No runs yet" in i.value for i in at.info)  # Home's text branch, until the demo stores runs


def test_the_language_model_demo_runs_every_lab_and_times_each_child_with_the_trained_gpt(lab_home):
    config = DemoConfig.from_dict({**lm_demo_params(), "model": "gpt:layers=2,width=32,heads=2,context=32",
                                   "train_steps": 30, "batch_size": 8})
    out = run_demo(config, quick_ctx())
    assert [s["stage"] for s in out["stages"]] == [label for label, _ in lm_demo_stages()]
    assert all(s["runs"] >= 1 for s in out["stages"]), out["stages"]
    store = RunStore()
    runs = [store.get_run(i) for i in out["run_ids"]]
    parent = runs[0]
    methods = {(r["method"], r["record"].get("pattern") or r["extra"].get("pattern")) for r in runs if r["kind"] == "prune"}
    assert {("magnitude", "2:4"), ("wanda", "2:4"), ("sparsegpt", "2:4")} <= methods
    assert {r["method"] for r in runs if r["kind"] == "prune"} == {"magnitude", "wanda", "sparsegpt", "heads_mlp"}
    assert any(r["kind"] == "quantize" for r in runs)
    for child in (r for r in runs if r["parent_id"] == parent["id"]):  # timed with the trained gpt, both phases
        phases = {s["detail"].get("phase") for s in store.list_speedups(run_a=parent["id"], run_b=child["id"])}
        assert phases == {"prefill", "decode"}, child["label"]
    # the follow-up re-timings cover every claim the Report opens on: each default run, prefill and decode
    shown = default_report_runs([as_record(r) for r in store.list_runs(status="done")])
    assert len(shown) == REPORT_DEFAULT_RUNS
    assert sorted((p["run_b"], p["phase"]) for p in out["retime"]) == [(i, ph) for i in shown for ph in ("decode", "prefill")]

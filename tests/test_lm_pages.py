"""A language-model run on the Baseline, Compare and Report pages (AppTest): its own cards, curves by step, a
Sample panel that writes text, and charts of perplexity that never mix with image runs."""
from streamlit.testing.v1 import AppTest

from compression import BaselineConfig, get_baseline
from compression.text.generate import generate
from conftest import ROOT, baseline, quick_ctx

APP = str(ROOT / "dashboard" / "app.py")
TINY = "gpt:layers=1,width=32,heads=2,context=32"


def open_page(page: str, dataset: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.sidebar.selectbox(key="dataset").set_value(dataset).run()
    if page != "home":
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_text_run_shows_on_baseline_compare_and_report_apart_from_image_runs(lab_home):
    model, run = get_baseline(BaselineConfig(dataset="pydoc", model=TINY, train_steps=20, batch_size=8), quick_ctx())
    baseline()  # an image run in the same store
    at = open_page("baseline", "pydoc")
    assert at.sidebar.selectbox(key="model_name").value == "gpt"  # the picker offers language models for text
    assert set(at.sidebar.selectbox(key="model_name").options) == {"gpt", "hf"}
    assert [m.label for m in at.metric][:2] == ["Perplexity", "Bits per byte"]
    assert len(at.get("plotly_chart")) == 1  # loss and validation perplexity by step
    at.text_area(key=f"prompt-{run['id']}").set_value("The for statement")
    at.number_input(key=f"tokens-{run['id']}").set_value(10)
    at.button(key=f"generate-{run['id']}").click().run()
    assert not at.exception and not at.error
    assert at.code[0].value == "The for statement" + generate(model, "The for statement", 10)
    compare = open_page("compare", "pydoc")
    assert not compare.error and compare.radio[0].value == "text"  # both kinds stored: text, for a text data set
    table = compare.dataframe[0].value
    assert table["run_id"].tolist() == [run["id"]]  # the image run is not on the text chart
    report = open_page("report", "pydoc")
    assert not report.error and len(report.multiselect[0].options) == 1
    assert report.multiselect[0].options[0].startswith(f"#{run['id']} gpt")
    assert len(report.get("plotly_chart")) == 2  # perplexity vs size and vs decode latency
    image_report = open_page("report", "synthetic")
    assert not any(o.startswith(f"#{run['id']} ") for o in image_report.multiselect[0].options)


def test_the_prune_page_offers_the_language_methods_and_lays_out_the_papers_table(lab_home):
    from compression import RunStore
    from compression.labs.configs import PruneLabConfig
    from compression.labs.prune import run_prune
    _, run = get_baseline(BaselineConfig(dataset="pydoc", model=TINY, train_steps=10, batch_size=8), quick_ctx())
    shapes = (("magnitude", {"sparsities": [0.5]}), ("wanda", {"pattern": "2:4"}))
    made = {(m, s.get("pattern") or "50%"): run_prune(PruneLabConfig(from_run=run["id"], method=m, calibration=4, **s),
                                                      quick_ctx())["results"][0] for m, s in shapes}
    at = open_page("prune", "pydoc")
    assert at.selectbox[0].options == ["Magnitude (per layer)", "Wanda (|W| x input norm)", "SparseGPT (OBS update)",
                                       "Heads + MLP units (structured)", "Whole layers (structured)"]
    assert at.radio[0].options == ["unstructured", "2:4", "4:8"]
    table = at.dataframe[0].value  # rows: sparsity or pattern; columns: dense and each method
    assert table.loc["50%", "magnitude"] == round(made["magnitude", "50%"]["perplexity"], 3)
    assert table.loc["2:4", "wanda"] == round(made["wanda", "2:4"]["perplexity"], 3)
    assert table.loc["50%", "dense"] == round(run["record"]["perplexity"], 3)
    assert len(at.get("plotly_chart")) == 3  # perplexity per method, paired speed-ups, per-layer sparsity
    assert any("no such outliers" in c.value for c in at.caption)  # why Wanda lands near magnitude, said plainly
    # the form queues a SparseGPT 2:4 job for the sidebar's model
    at.radio[0].set_value("2:4")
    next(b for b in at.button if b.label == "Prune").click().run()
    job = RunStore().list_jobs()[0]
    assert job["kind"] == "prune" and job["params"]["pattern"] == "2:4" and job["params"]["method"] == "sparsegpt"
    RunStore().request_cancel(job["id"])


def test_the_quantize_page_shows_a_language_models_int8_run_and_what_ran(lab_home):
    from compression.labs.configs import QuantizeLabConfig
    from compression.labs.quantize import run_quantize
    _, run = get_baseline(BaselineConfig(dataset="pydoc", model=TINY, train_steps=10, batch_size=8), quick_ctx())
    out = run_quantize(QuantizeLabConfig(from_run=run["id"], methods=["dynamic_int8"]), quick_ctx())
    child = out["results"][0]
    at = open_page("quantize", "pydoc")
    from compression.techniques.quantize import METHODS, availability
    offered = [METHODS.label(m) for m in METHODS.names() if m != "static_int8" and availability(m, "cpu") is None]
    assert at.multiselect[0].options == offered and "Packed int4 weights" in offered  # the kernels this CPU runs
    assert any("is not offered for language models" in c.value for c in at.caption)  # static int8, and why
    assert next(s for s in at.selectbox if s.label.startswith("Group size")).value == 32
    assert "Packed int4 weights" in at.dataframe[0].value["method"].tolist()  # what each does, measured
    line = next(m.value for m in at.markdown if f"#{child['run_id']} Dynamic int8" in m.value)
    assert "int8 matrix multiplies" in line and "prefill " in line and ", decode " in line  # both phases, paired
    assert [m.label for m in at.metric][:2] == ["Perplexity", "Bits per byte"]
    assert len(at.get("plotly_chart")) == 3  # perplexity vs size, vs prefill latency; paired speed-ups


def test_the_distill_page_shows_a_language_models_students_and_the_gap_closed(lab_home):
    from compression.labs.configs import DistillLabConfig
    from compression.labs.distill import run_distill
    _, run = get_baseline(BaselineConfig(dataset="pydoc", model=TINY, train_steps=20, batch_size=8), quick_ctx())
    out = run_distill(DistillLabConfig(dataset="pydoc", teacher=str(run["id"]), student="pruned:heads_mlp=0.5",
                                       student_steps=5), quick_ctx())
    at = open_page("distill", "pydoc")
    assert not at.error
    assert [m.label for m in at.metric] == ["Teacher perplexity", "Distilled", "Pruned, then distilled"]
    assert at.metric[2].value == f"{out['student_pruned_kd'][0]['perplexity']:.2f}"
    assert any(c.value.startswith("Minitron: cut from the teacher") for c in at.caption)
    assert len(at.get("plotly_chart")) == 1


def test_the_distill_page_never_pairs_one_studys_student_with_anothers(lab_home):
    from compression.labs.configs import DistillLabConfig
    from compression.labs.distill import run_distill
    _, run = get_baseline(BaselineConfig(dataset="pydoc", model=TINY, train_steps=20, batch_size=8), quick_ctx())
    small = run_distill(DistillLabConfig(dataset="pydoc", teacher=str(run["id"]), student_steps=5,
                                         student="gpt:layers=1,width=16,heads=2,context=32"), quick_ctx())
    run_distill(DistillLabConfig(dataset="pydoc", teacher=str(run["id"]), student="pruned:heads_mlp=0.5",
                                 student_steps=5), quick_ctx())  # newer, shown first
    at = open_page("distill", "pydoc")
    assert [m.label for m in at.metric] == ["Teacher perplexity", "Distilled", "Pruned, then distilled"]
    study = next(s for s in at.selectbox if s.label == "Study")
    assert len(study.options) == 2 and "student pruned:heads_mlp=0.5" in study.options[0]
    study.select_index(1).run()  # the older study: the small gpt alone and distilled
    assert [m.label for m in at.metric] == ["Teacher perplexity", "Student alone", "Distilled"]
    assert at.metric[2].value == f"{small['student_kd'][0]['perplexity']:.2f}"
    closed = next(c.value for c in at.caption if c.value.startswith("Gap closed"))
    assert f"{small['gap_closed']:.0%}" in closed  # the study's own gap, from its own two students

"""What did compression change, in the UI: stored answers, Compare's Behaviour view, the Report's What changed,
the flip rate on result cards, and the pure builders behind them."""
import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from compression import PruneLabConfig, RunStore, as_record, load_dataset, run_prune
from compression.core.behaviour import expand_predictions
from compression.labs.diff import diff_runs
from dashboard import charts_behaviour as cb
from dashboard.report_html import build_report
from conftest import ROOT, baseline, quick_ctx

APP = str(ROOT / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One lab folder for the module: a synthetic baseline and its 90% global_l1 child without fine-tuning
    (which changes answers), stored by the real labs. Tests point COMPRESSION_LAB_HOME at it."""
    home = tmp_path_factory.mktemp("behaviour-lab")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COMPRESSION_LAB_HOME", str(home))
        mp.delenv("COMPRESSION_LAB_DB", raising=False)
        _, base = baseline(model="mlp:hidden=16", epochs=3)
        results = run_prune(PruneLabConfig(from_run=base["id"], dataset="synthetic", method="global_l1",
                                           sparsities=[0.5, 0.95], finetune_epochs=0, latency_batch=16),
                            quick_ctx())["results"]
    return {"home": home, "base": base["id"], "half": results[0]["run_id"], "pruned": results[1]["run_id"]}


@pytest.fixture
def in_lab(lab, monkeypatch):
    monkeypatch.setenv("COMPRESSION_LAB_HOME", str(lab["home"]))
    return lab


def _page(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.switch_page(f"app_pages/{name}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _values(array) -> list:
    """A Plotly JSON array: a list, or numpy data as {"dtype", "bdata"} (base64)."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"])).tolist()
    return list(array)


# --------------------------------------------------------------------------- stored answers

def test_runs_store_their_answers_and_flip_rate_at_measurement_time(in_lab):
    store, data = RunStore(), load_dataset("synthetic")
    base, pruned = store.get_run(in_lab["base"]), store.get_run(in_lab["pruned"])
    answers = {}
    for run in (base, pruned):
        labels, _, probs = expand_predictions(run["extra"]["predictions"])
        assert len(labels) == len(data.y_test) and probs.shape == (len(data.y_test), data.num_classes)
        # the stored answers are the ones the record's accuracy was counted from
        assert (labels == data.y_test).double().mean().item() == pytest.approx(run["record"]["accuracy"], abs=1e-12)
        answers[run["id"]] = labels
    changed = (answers[base["id"]] != answers[pruned["id"]]).double().mean().item()
    assert pruned["extra"]["flip_rate"] == pytest.approx(changed, abs=1e-12) and changed > 0
    assert "predictions" not in as_record(pruned)  # records (CLI output, job results) stay small
    assert as_record(pruned)["flip_rate"] == pruned["extra"]["flip_rate"]


def test_a_diff_of_new_runs_needs_no_weights(in_lab, tmp_path, monkeypatch):
    """Stored answers make the diff instant: it works even with both weight files moved away."""
    store = RunStore()
    expected = diff_runs(store, in_lab["base"], in_lab["pruned"])
    monkeypatch.setenv("COMPRESSION_LAB_HOME", str(tmp_path / "copy"))
    copy, ids = RunStore(), []
    for run_id in (in_lab["base"], in_lab["pruned"]):
        run = store.get_run(run_id)
        ids.append(copy.add_run(run["kind"], run["dataset"], run["model"], run["config"], record=run["record"],
                                extra=run["extra"], weights_path=str(tmp_path / "gone.pt")))
    again = diff_runs(copy, *ids)
    assert again["flipped"] == expected["flipped"] and again["ece_b"] == expected["ece_b"]
    assert expected["flip_rate"] == store.get_run(in_lab["pruned"])["extra"]["flip_rate"]


# --------------------------------------------------------------------------- Compare

def test_compare_behaviour_view_defaults_to_a_run_and_its_parent(in_lab):
    at = _page("compare")
    assert at.selectbox(key="behaviour-b").value == in_lab["pruned"]  # the newest run with a parent
    assert at.selectbox(key=f"behaviour-a-{in_lab['pruned']}").value == in_lab["base"]
    diff = diff_runs(RunStore(), in_lab["base"], in_lab["pruned"])
    flips = next(m for m in at.metric if m.label == "Answers changed")
    assert flips.value == f"{diff['flip_rate']:.1%}"
    assert next(m for m in at.metric if m.label == "Newly wrong").value == str(diff["newly_wrong"])
    figures = _figures(at)
    assert len(figures) == 4  # the trade-off chart, per-class deltas, confusion change, reliability
    bars = figures[1]["data"][0]
    assert _values(bars["y"]) == pytest.approx([100 * e["delta"] for e in diff["per_class"] if e["n"]])
    heat = np.asarray([_values(row) for row in figures[2]["data"][0]["z"]])
    assert heat.sum(axis=1).tolist() == [0] * len(heat)  # answers move between columns; each class keeps its n
    assert "ECE" in figures[3]["layout"]["annotations"][0]["text"]
    captions = [c for image in at.image for c in image.captions]
    assert len(captions) == len(diff["gallery"]) > 0
    newly_wrong = [c for c in captions if "newly wrong" in c]
    assert captions[:len(newly_wrong)] == newly_wrong and len(newly_wrong) == min(diff["newly_wrong"], len(captions))
    assert not at.error


def test_picking_another_run_resets_the_reference_to_its_parent(in_lab):
    at = _page("compare")
    at.selectbox(key="behaviour-b").set_value(in_lab["half"]).run()
    assert at.selectbox(key=f"behaviour-a-{in_lab['half']}").value == in_lab["base"]
    diff = diff_runs(RunStore(), in_lab["base"], in_lab["half"])
    assert next(m for m in at.metric if m.label == "Answers changed").value == f"{diff['flip_rate']:.1%}"
    at.selectbox(key=f"behaviour-a-{in_lab['half']}").set_value(in_lab["pruned"]).run()  # any two runs
    diff = diff_runs(RunStore(), in_lab["pruned"], in_lab["half"])
    assert next(m for m in at.metric if m.label == "Answers changed").value == f"{diff['flip_rate']:.1%}"
    assert not at.exception


def test_compare_plots_accuracy_against_flip_rate(in_lab):
    at = _page("compare")
    next(s for s in at.selectbox if s.label == "Cost axis").set_value("flip_rate").run()
    next(c for c in at.checkbox if c.label == "log x").uncheck().run()  # linear x: a flip rate can be 0
    chart = _figures(at)[0]
    # the module's lab is shared: check the runs this module's fixture stored, by id, whatever else is there
    store = RunStore()
    ours = {i: store.get_run(i)["extra"].get("flip_rate") for i in (in_lab["base"], in_lab["half"], in_lab["pruned"])}
    assert ours[in_lab["base"]] is None  # a baseline has no parent to differ from: no point
    points = chart["data"][0]  # one technique: the pruned runs
    drawn = dict(zip(_values(points["customdata"]), _values(points["x"])))
    assert {i: drawn.get(i) for i in (in_lab["half"], in_lab["pruned"])} == pytest.approx(
        {i: ours[i] for i in (in_lab["half"], in_lab["pruned"])})
    assert in_lab["base"] not in drawn
    assert chart["layout"]["xaxis"]["title"]["text"] == cb.FLIP_AXIS


def _old_runs(store, lab_home, datasets):
    """A run and its child as an older version stored them: no stored answers, and weights that are gone."""
    record = {"accuracy": 0.9, "accuracy_ci": [0.8, 0.95], "params": 100, "nonzero_params": 100, "size_bytes": 400,
              "gzip_bytes": 300, "macs": 100, "latency": []}
    spec, gone = {"name": "mlp", "args": {}}, str(lab_home / "weights" / "gone.pt")
    base = store.add_run("train", datasets[0], spec, {}, record=record, label="old base", weights_path=gone)
    child = store.add_run("prune", datasets[1], spec, {}, parent_id=base, record=record, method="global_l1",
                          label="old child", weights_path=gone)
    return base, child


@pytest.mark.parametrize("datasets, message", [(("synthetic", "digits"), "different data sets"),
                                               (("synthetic", "synthetic"), "model file of this run is missing")])
def test_bad_pairs_give_one_clear_message(lab_home, datasets, message):
    base, child = _old_runs(RunStore(), lab_home, datasets)
    at = _page("compare")
    assert at.selectbox(key="behaviour-b").value == child
    assert at.selectbox(key=f"behaviour-a-{child}").value == base
    assert len(at.error) == 1 and message in at.error[0].value, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 1 and not at.image  # nothing half-drawn


# --------------------------------------------------------------------------- Report and cards

def test_report_has_a_what_changed_section_with_a_gallery(in_lab):
    at = _page("report")
    assert any(h.value == "What changed" for h in at.header)
    diff = diff_runs(RunStore(), in_lab["base"], in_lab["pruned"])
    words = cb.what_changed(diff)
    text = " ".join(m.value for m in at.markdown)
    assert words["flips"] in text and words["hurt"] in text and words["ece"] in text
    assert f"{diff['newly_wrong']} newly wrong" in text
    captions = [c for image in at.image for c in image.captions]
    assert 0 < len(captions) <= 2 * 6  # a small gallery per run (two pruned runs)
    report = build_report([(r, b, "") for r, b in _rows(in_lab)], changes=_changes(in_lab))
    assert "<h2>What changed</h2>" in report and words["flips"] in report
    uris = re.findall(r'<img src="data:image/png;base64,([^"]+)"', report)
    assert len(uris) == sum(min(6, len(diff_runs(RunStore(), in_lab["base"], i)["gallery"]))
                            for i in (in_lab["half"], in_lab["pruned"]))
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(uris[0]))))
    assert image.shape == (64, 64) and image.min() == 0 and image.max() == 255  # 8x8 upscaled, stretched
    assert not re.search(r"<(img|script)[^>]+src=\"http", report)  # inline: the file opens offline


def _rows(lab):
    store = RunStore()
    return [(as_record(store.get_run(i)), as_record(store.get_run(lab["base"]))) for i in (lab["half"], lab["pruned"])]


def _changes(lab):
    from dashboard.components import behaviour_of
    return {i: behaviour_of(lab["base"], i) for i in (lab["half"], lab["pruned"])}


def _cards(record, baseline):
    from dashboard.views import metric_cards
    metric_cards(record, baseline)


def test_result_card_says_how_many_answers_changed(in_lab):
    (half, base), (pruned, _) = _rows(in_lab)
    at = AppTest.from_function(_cards, args=(pruned, base), default_timeout=60).run()
    accuracy = next(m for m in at.metric if m.label == "Accuracy")
    points = 100 * (pruned["accuracy"] - base["accuracy"])
    assert accuracy.delta == f"{points:+.1f} pt, but {pruned['flip_rate']:.1%} of answers changed"
    at = AppTest.from_function(_cards, args=(pruned, half), default_timeout=60).run()  # not its parent
    assert "answers changed" not in next(m for m in at.metric if m.label == "Accuracy").delta


# --------------------------------------------------------------------------- pure builders

def test_thumbnails_upscale_and_stretch_each_image():
    rng = np.random.default_rng(0)
    digits = rng.normal(size=(3, 1, 8, 8))
    gray = cb.thumbnails(digits)
    assert [g.shape for g in gray] == [(64, 64)] * 3 and gray[0].dtype == np.uint8
    assert all(g.min() == 0 and g.max() == 255 for g in gray)
    assert (gray[0][::8, ::8] == gray[0][7::8, 7::8]).all()  # nearest: each source pixel is an 8x8 block
    order = np.argsort(digits[0, 0].ravel())
    assert (np.diff(gray[0][::8, ::8].ravel()[order].astype(int)) >= 0).all()  # brightness order kept
    rgb = cb.thumbnails(rng.normal(size=(2, 3, 32, 32)))
    assert rgb[0].shape == (64, 64, 3)
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(cb.png_data_uri(rgb[0]).split(",", 1)[1]))))
    assert (back == rgb[0]).all()  # PNG is lossless


def test_words_add_up():
    diff = {"n_test": 10, "flip_rate": 0.4, "newly_wrong": 3, "newly_right": 0, "ece_a": 0.05, "ece_b": 0.2,
            "most_hurt_classes": [{"name": "8", "delta": -0.5, "ci95_delta": [-0.8, -0.1], "significant": True}]}
    words = cb.what_changed(diff)
    assert words["flips"].startswith("40.0% of answers changed (4 of 10): 3 newly wrong, 0 newly right, 1 wrong")
    assert "class 8: \u221250.0 pt [\u221280.0, \u221210.0]" in words["hurt"] and "noise" not in words["hurt"]
    assert "0.050 \u2192 0.200 (+0.150" in words["ece"]

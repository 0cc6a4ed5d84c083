"""The search lab on text: a gpt space searched on pydoc, every trial a stored language-model run, the front
(validation perplexity against decode latency) Pareto-correct, mismatched spaces refused, and the page drawn."""
import json
import math

import optuna
import pytest
from streamlit.testing.v1 import AppTest

from compression import LabError, RunStore, SearchConfig
from compression.labs.search import create_study, study_summary, work
from compression.search.space import DEFAULT_SPACES, arch_to_spec, infeasible, space_size, suggest
from compression.text.models import build_language_model

from conftest import ROOT, quick_ctx
from test_lm import run_cli

VOCAB = 256  # gpt reads bytes


def dominated_area(points, cost_ref):
    """The hypervolume computed apart from the lab's sweep: the union of the boxes [ln p / ln 256, 1] x
    [min(cost / ref, 1), 1] over (perplexity p, cost) points, cell by cell on the grid their corners make."""
    corners = [(min(math.log(p) / math.log(VOCAB), 1.0), min(c / cost_ref, 1.0)) for p, c in points]
    xs, ys = sorted({x for x, _ in corners} | {1.0}), sorted({y for _, y in corners} | {1.0})
    return sum((x1 - x0) * (y1 - y0) for x0, x1 in zip(xs, xs[1:]) for y0, y1 in zip(ys, ys[1:])
               if any(ex <= x0 and ey <= y0 for ex, ey in corners))


def non_dominated(points):
    """Indices of (perplexity, cost) points no other beats: both no higher, one strictly lower."""
    return {i for i, (p, c) in enumerate(points)
            if not any(p2 <= p and c2 <= c and (p2, c2) != (p, c) for p2, c2 in points)}


def test_sampled_gpts_build_and_a_width_that_does_not_split_into_the_heads_is_named():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = {**DEFAULT_SPACES["gpt"], "width": [30, 32]}  # 30 does not split into 4 heads
    seen = set()
    for _ in range(20):
        trial = study.ask()
        arch = suggest(trial, "gpt", space)
        assert all(arch[dim] in space[dim] for dim in space)
        reason = infeasible("gpt", arch)
        seen.add(reason is None)
        assert (reason is None) == (arch["width"] % arch["heads"] == 0)
        if reason is None:
            model = build_language_model(arch_to_spec("gpt", arch))
            assert model.context == arch["context"] and len(model.blocks) == arch["layers"]
        study.tell(trial, 0.0)
    assert seen == {True, False}
    buildable = sum(w % h == 0 for w in space["width"] for h in space["heads"])
    assert space_size("gpt", space) == len(space["layers"]) * buildable * len(space["context"])


def test_a_text_search_on_the_cli_stores_language_model_trials_on_a_pareto_correct_front(lab_home, capsys):
    code, out, err = run_cli(capsys, "search", "--dataset", "pydoc", "--space", "gpt", "--objective", "decode",
                             "--trials", "3", "--train-steps", "8", "--seed", "1", "--json", "--quiet")
    assert code == 0, err
    result = json.loads(out)
    assert result["data"] == "text" and result["quality"] == "val_perplexity" and len(result["trials"]) == 3
    store = RunStore()
    stored = [store.get_run(t["run_id"]) for t in result["trials"] if t["status"] == "complete"]
    assert len(stored) == 3 and all(r["kind"] == "search_trial" and r["model"]["name"] == "gpt" for r in stored)
    for run, row in zip(stored, result["trials"]):
        record = run["record"]
        lo, hi = record["perplexity_ci95"]
        assert lo <= record["perplexity"] <= hi and row["perplexity"] == record["perplexity"]
        assert record["bits_per_byte"] > 0 and 0 <= record["next_token_accuracy"] <= 1
        decode = next(e for e in record["latency"] if e["phase"] == "decode")
        assert run["extra"]["cost"] == pytest.approx(1e3 / decode["tokens_per_s"])  # ms per generated token
        assert record["context"] == row["arch"]["context"] == run["config"]["context"]
    # the front is exactly the stored trials that no other beats on validation perplexity and decode latency
    points = [(r["extra"]["val_perplexity"], r["extra"]["cost"]) for r in stored]
    assert set(result["pareto"]) == {stored[i]["id"] for i in non_dominated(points)}
    ref = result["reference_point"]
    assert ref["cost"] == pytest.approx(1.1 * max([c for _, c in points] + [z["cost"] for z in result["zoo"]]))
    assert "ln(val perplexity)" in ref["normalisation"] and ref["perplexity"] == VOCAB
    assert result["hypervolume"] == pytest.approx(dominated_area(points, ref["cost"]), abs=1e-9)
    zoo = [(z["val_perplexity"], z["cost"]) for z in result["zoo"] if z["feasible"]]
    assert zoo and result["zoo_hypervolume"] == pytest.approx(dominated_area(zoo, ref["cost"]), abs=1e-9)
    assert 0 < result["hypervolume"] < 1  # better than a uniform guess, cheaper than the reference


@pytest.mark.parametrize("args, message", [
    (["--dataset", "pydoc", "--space", "cnn"], "The cnn space holds image models, and 'pydoc' is text: use --space gpt."),
    (["--dataset", "digits", "--space", "gpt"], "The gpt space holds language models, and 'digits' is an image data "
                                                "set: use --space cnn or mlp."),
    (["--dataset", "pydoc", "--objective", "macs"], "The macs objective is not measured for text models"),
    (["--dataset", "digits", "--objective", "decode"], "The decode objective is not measured for image models"),
])
def test_a_space_or_objective_for_the_other_kind_of_data_is_one_error_line(lab_home, capsys, args, message):
    code, out, err = run_cli(capsys, "search", *args, "--trials", "1", "--quiet")
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert "Traceback" not in err and out == ""
    assert RunStore().list_runs() == []  # refused before any training


def test_the_space_defaults_to_the_datas_own_family():
    assert SearchConfig(dataset="pydoc").space == "gpt" and SearchConfig(dataset="digits").space == "cnn"
    with pytest.raises(LabError, match="No architecture in this gpt space builds"):
        SearchConfig(dataset="pydoc", choices={"width": [30], "heads": [4]})


def test_the_search_page_offers_the_gpt_space_and_draws_perplexity_against_decode_latency(lab_home):
    store = RunStore()
    config = SearchConfig(dataset="pydoc", space="gpt", objective="decode", trials=2, train_steps=3,
                          choices={"layers": [1], "width": [16], "heads": [2, 3], "context": [16]}, study="text-page")
    study = create_study(config, store)
    study.enqueue_trial({"layers": 1, "width": 16, "heads": 2, "context": 16})
    study.enqueue_trial({"layers": 1, "width": 16, "heads": 3, "context": 16})  # 16 does not split into 3
    work(study, config, quick_ctx(store=store))
    summary = study_summary("text-page", store)
    built, skipped = summary["trials"]
    assert built["status"] == "complete" and summary["pareto"] == [built["run_id"]]
    assert skipped["status"] == "pruned" and skipped["run_id"] is None
    assert skipped["note"] == "infeasible: width 16 does not split into 3 heads"
    assert len(store.list_runs(kind="search_trial")) == 1

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=90)
    at.run()
    at.sidebar.selectbox(key="dataset").set_value("pydoc").run()
    at.switch_page("app_pages/search.py").run()
    assert not at.exception and not at.error, [e.value for e in at.exception]
    assert next(r for r in at.radio if r.label == "Space").options == ["GPT family"]  # image families are not offered
    assert next(s for s in at.selectbox if s.label == "Study").options == ["text-page"]
    assert any(m.label == "Hypervolume (found)" and m.value == f"{summary['hypervolume']:.3f}" for m in at.metric)
    front = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert front["layout"]["yaxis"]["title"]["text"] == "validation perplexity (lower is better)"
    assert front["layout"]["xaxis"]["title"]["text"].startswith("decode latency (ms per token")
    found = next(t for t in front["data"] if t["name"] == "Pareto front (found)")
    assert found["y"] == [built["val_perplexity"]] and found["x"] == [built["cost"]]
    table = at.dataframe[0].value
    assert table["val perplexity"].tolist()[0] == pytest.approx(built["val_perplexity"])
    next(b for b in at.button if b.label == "Search").click().run()
    job = store.list_jobs()[0]
    assert job["kind"] == "search" and job["params"]["space"] == "gpt" and job["params"]["objective"] == "decode"
    store.request_cancel(job["id"])

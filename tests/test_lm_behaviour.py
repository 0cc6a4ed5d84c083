"""What changed, for language models: next-token flips, the per-token loss change and greedy completions of two runs
(labs.diff on text runs), checked against counts made here from both models' logits; the CLI's JSON and refusal; the
Compare and Report pages. One tiny gpt (one layer, width 32, context 32, one training step) and its 50%
magnitude-pruned child, made once for the file."""
import json

import pytest
import torch
import torch.nn.functional as F
from streamlit.testing.v1 import AppTest

from compression import RunStore
from compression.core.data import SPLIT_SEED, load_dataset
from compression.labs.configs import PruneLabConfig
from compression.labs.diff import diff_runs
from compression.text.generate import generate
from compression.labs.prune import run_prune
from compression.store.artifacts import load_run_model
from compression.text.behaviour import BETTER, OTHER, PROMPTS, WORSE
from compression.text.corpus import ByteTokenizer
from conftest import ROOT, baseline, quick_ctx
from test_lm import run_cli, tiny_lm

APP = str(ROOT / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def lm_home(tmp_path_factory):
    """A lab folder holding a tiny gpt baseline and its 50% magnitude-pruned child: (home, parent id, child id)."""
    home = tmp_path_factory.mktemp("lm-behaviour")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMPRESSION_LAB_HOME", str(home))
        patch.delenv("COMPRESSION_LAB_DB", raising=False)
        patch.setenv("COMPRESSION_LAB_QUIET_WAIT_S", "0")
        _, parent = tiny_lm(steps=1)  # barely trained: its guesses still vary, so pruning flips many of them
        child = run_prune(PruneLabConfig(from_run=parent["id"], method="magnitude", sparsities=[0.5],
                                         finetune_epochs=0), quick_ctx())["results"][0]["run_id"]
    return home, parent["id"], child


@pytest.fixture
def runs(lm_home, monkeypatch):
    """This test works in the module's lab folder (conftest gave it an empty one)."""
    home, parent, child = lm_home
    monkeypatch.setenv("COMPRESSION_LAB_HOME", str(home))
    return RunStore(), parent, child


def _independent(store, out):
    """Top-1 and per-token loss of both runs' models on the diff's test windows, computed here from their logits."""
    inputs, targets = load_dataset("pydoc").windows(ByteTokenizer(), "test", out["context"], limit=out["sequences"],
                                                    seed=SPLIT_SEED)
    views = []
    for run_id in (out["run_a"], out["run_b"]):
        model = load_run_model(store.get_run(run_id)["weights_path"])
        with torch.no_grad():  # the same batches of 8 as the lab, so float rounding cannot split a near tie
            logits = torch.cat([model(inputs[i:i + 8]) for i in range(0, len(inputs), 8)]).float()
        views.append((logits.argmax(-1), F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")))
    return inputs, targets, views


def test_a_model_against_itself_changes_nothing(runs):
    store, parent, _ = runs
    out = diff_runs(store, parent, parent)
    assert out["kind"] == "text" and out["positions"] == out["sequences"] * out["context"] > 0
    assert out["flips"] == 0 and out["flip_rate"] == 0 and out["flip_rate_ci95"] == [0, 0]
    assert out["loss_change"] == 0 and out["loss_change_ci95"] == [0, 0] and out["perplexity_ratio"] == 1
    assert out["flipped_tokens"] == [] and all(s["change"] is None for s in out["sample"]["segments"])
    assert all(c["a"] == c["b"] for c in out["completions"])
    paired = out["paired_perplexity"]  # the stored perplexities, paired window by window: no difference at all
    assert paired["difference"] == 0 and paired["ci95"] == [0, 0] and not paired["significant"]
    assert "no measurable perplexity difference" in out["paired_perplexity_text"]


def test_flips_and_loss_change_of_a_pruned_child_match_a_count_from_both_models_logits(runs):
    store, parent, child = runs
    out = diff_runs(store, parent, child)
    inputs, targets, ((top_a, loss_a), (top_b, loss_b)) = _independent(store, out)
    flip = top_a != top_b
    assert out["context"] == store.get_run(parent)["record"]["context"]
    assert out["flips"] == int(flip.sum()) > 0 and out["flip_rate"] == pytest.approx(float(flip.double().mean()))
    lo, hi = out["flip_rate_ci95"]
    assert lo <= out["flip_rate"] <= hi and hi > lo
    assert out["newly_wrong"] == int((flip & (top_a == targets) & (top_b != targets)).sum())
    assert out["newly_right"] == int((flip & (top_b == targets) & (top_a != targets)).sum())
    change = (loss_b - loss_a).double()
    assert out["loss_change"] == pytest.approx(float(change.mean()), abs=1e-5)
    assert out["loss_change_ci95"][0] <= out["loss_change"] <= out["loss_change_ci95"][1]
    assert sum(out["loss_change_histogram"]["counts"]) == out["positions"]
    # the whole test set's stored perplexities, paired window by window
    a, b = (store.get_run(i)["record"] for i in (parent, child))
    paired = out["paired_perplexity"]
    assert paired["windows"] == a["n_test_sequences"] and paired["ci95"][0] <= paired["difference"] <= paired["ci95"][1]
    assert paired["difference"] == pytest.approx(b["perplexity"] - a["perplexity"], rel=1e-3, abs=1e-3)
    # the sample: the first window's text, whole, and its flips where the two models' argmax differ in that row
    sample = out["sample"]
    assert sample["prompt"] + "".join(s["text"] for s in sample["segments"]) == bytes(
        inputs[0, :1].tolist() + targets[0].tolist()).decode("utf-8", errors="replace")
    row = torch.nonzero(flip[0]).view(-1).tolist()
    assert [f["position"] - 1 for f in out["flipped_tokens"]] == row
    for f, p in zip(out["flipped_tokens"], row):
        truth, a, b = int(targets[0, p]), int(top_a[0, p]), int(top_b[0, p])
        assert (f["text"], f["a"], f["b"]) == tuple(ByteTokenizer().decode([t]) for t in (truth, a, b))
        assert f["change"] == (BETTER if b == truth else WORSE if a == truth else OTHER)


def test_completions_are_each_models_greedy_continuation(runs):
    store, parent, child = runs
    out = diff_runs(store, parent, child)
    assert [c["prompt"] for c in out["completions"]] == list(PROMPTS)
    tokens, context = out["completion_tokens"], out["context"]
    for run_id, side in ((parent, "a"), (child, "b")):
        model = load_run_model(store.get_run(run_id)["weights_path"])
        for c in out["completions"]:
            assert c[side] == generate(model, c["prompt"], tokens, temperature=0.0, context=context)
        # and greedy by hand, without the key-value cache, for the first prompt
        ids = list(PROMPTS[0].encode())[-(context - tokens):]
        with torch.no_grad():
            for _ in range(tokens):
                ids.append(int(model(torch.tensor([ids[-context:]]))[0, -1].argmax()))
        assert out["completions"][0][side] == bytes(ids[-tokens:]).decode("utf-8", errors="replace")


def test_the_cli_diff_of_two_text_runs_and_the_refusal_of_a_text_run_against_an_image_run(runs, capsys):
    store, parent, child = runs
    code, stdout, _ = run_cli(capsys, "diff", str(parent), str(child), "--json")
    assert code == 0
    out = json.loads(stdout)
    expected = diff_runs(store, parent, child)
    for field in ("flip_rate", "flip_rate_ci95", "loss_change", "loss_change_ci95", "flipped_tokens", "completions",
                  "positions"):
        assert out[field] == expected[field], field
    code, stdout, _ = run_cli(capsys, "diff", str(parent), str(child))
    assert code == 0 and f"A #{parent}: {expected['completions'][0]['a']!r}" in stdout
    _, image = baseline()
    code, stdout, err = run_cli(capsys, "diff", str(parent), str(image["id"]), "--json")
    lines = err.strip().splitlines()
    assert code == 2 and stdout == "" and len(lines) == 1 and lines[0].startswith("error:")
    assert "language model" in lines[0] and "image model" in lines[0]


def _page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.sidebar.selectbox(key="dataset").set_value("pydoc").run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_compare_and_report_show_both_completions_side_by_side(runs):
    store, parent, child = runs
    diff = diff_runs(store, parent, child)
    for page in ("compare", "report"):
        at = _page(page)
        shown = [c.value for c in at.code]
        for c in diff["completions"]:
            assert c["prompt"] + c["a"] in shown and c["prompt"] + c["b"] in shown, page
        # the flipped sample is drawn as HTML: one span with a hover text per flipped token (the legend has none)
        html_bodies = " ".join(e.proto.body for e in at.get("html"))
        assert html_bodies.count(' title="') == len(diff["flipped_tokens"]) > 0, page
    compare = _page("compare")
    assert compare.selectbox(key="text-behaviour-b").value == child
    assert compare.selectbox(key=f"text-behaviour-a-{child}").value == parent


def test_the_flipped_text_is_escaped_in_the_html():
    from dashboard.views.text_behaviour import completions_html, flipped_text_html
    diff = {"sample": {"prompt": "<", "segments": [{"text": "b>&", "change": None},
                                                   {"text": "<i>", "change": WORSE, "a": "\"", "b": "'"}]},
            "completions": [{"prompt": "<script>", "a": "</td>", "b": "&amp;"}]}
    page = flipped_text_html(diff) + completions_html(diff)
    assert "<script>" not in page and "<i>" not in page and "</td></td>" not in page
    assert "&lt;b&gt;&amp;" in page and "&lt;i&gt;" in page and "&amp;amp;" in page

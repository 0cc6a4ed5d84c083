"""Language models: the fair "same budget" control (issue #33). A child that fine-tuned N steps after its parent is
also measured against the parent's own weights trained N more steps with the child's data, seed and schedule: that
control is a run of its own (kind "control"), stored once per (parent, training) and reused, and the child's record
and words give the fair comparison first, paired on the same test windows."""
import json

import pytest
import torch
from streamlit.testing.v1 import AppTest

from compression import RunStore, load_dataset
from compression.labs.configs import DistillLabConfig, PruneLabConfig
from compression.labs.distill import run_distill
from compression.labs.prune import run_prune
from compression.labs.summary import versus_baseline
from compression.store.artifacts import load_run_model
from compression.text.recipes import FINETUNE_LR
from compression.text.train import LMTrainConfig, train_lm
from conftest import ROOT, quick_ctx
from test_lm import TINY, run_cli, tiny_lm

STEPS = 10


def _prune(parent_id: int, sparsities: list[float], **options) -> dict:
    return run_prune(PruneLabConfig(dataset="pydoc", model=TINY, from_run=parent_id, method="heads_mlp", sparsities=sparsities,
                                    calibration=4, **options), quick_ctx())


def test_a_fine_tuned_child_is_measured_against_its_parent_trained_as_long(lab_home, capsys):
    _, parent = tiny_lm(steps=30)
    store = RunStore()
    # two children fine-tuned as long, from the CLI: the second reuses the first one's control (no new training)
    code, out, err = run_cli(capsys, "prune", "--from", str(parent["id"]), "--method", "heads_mlp", "--sparsity",
                             "0.5", "0.25", "--calibration", "4", "--finetune-steps", str(STEPS), "--distill",
                             "--json")
    assert code == 0, err
    out = json.loads(out)
    child, second = out["results"]
    control = store.get_run(child["control_run_id"])
    assert second["control_run_id"] == control["id"]
    assert [r["id"] for r in store.list_runs(kind="control")] == [control["id"]]
    assert [c["run_id"] for c in out["controls"]] == [control["id"]]
    assert (control["kind"], control["method"], control["parent_id"]) == ("control", "control", parent["id"])
    assert control["label"].endswith("(control)") and f"trained {STEPS} more steps" in control["label"]
    # the child's training, exactly: steps, lr, batch, warm-up and seed, from the parent's stored weights
    assert child["finetune_config"] == LMTrainConfig(steps=STEPS, lr=FINETUNE_LR, seed=0).to_dict()
    assert {k: control["config"][k] for k in child["finetune_config"]} == child["finetune_config"]
    assert control["config"]["control_of"] == parent["id"]
    again = load_run_model(parent["weights_path"])
    train_lm(again, load_dataset("pydoc"), LMTrainConfig(**child["finetune_config"]), context=32)
    stored = load_run_model(control["weights_path"]).state_dict()
    for name, tensor in again.state_dict().items():
        assert torch.allclose(stored[name], tensor, rtol=0, atol=1e-6), name
    # the child's record carries both references, the control's from its own stored record
    assert child["control_perplexity"] == control["record"]["perplexity"]
    assert child["perplexity_change_vs_control"] == pytest.approx(child["perplexity"] / child["control_perplexity"] - 1)
    assert child["perplexity_increase"] == pytest.approx(child["perplexity"] / out["baseline"]["perplexity"] - 1)
    paired = child["paired_vs_control"]
    assert paired["windows"] == child["n_test_sequences"] and paired["run_a"] == control["id"]
    assert paired["perplexity_b"] == pytest.approx(child["perplexity"], rel=1e-3)
    lo, hi = paired["ci95"]
    assert lo <= paired["difference"] <= hi and paired["significant"] == (lo > 0 or hi < 0)
    # the words: against the control first, then against the parent as stored; "better" only when the CI says so
    text = versus_baseline(child, out["baseline"])["text"]
    fair, stored_words = text.index(f"the parent trained the same {STEPS} more steps"), text.index("the parent as stored")
    assert fair < stored_words
    assert ("no measurable perplexity difference" in text) == (not paired["significant"])

    # a one-shot child has no control and reads as before
    one_shot = _prune(parent["id"], [0.5])["results"][0]
    assert one_shot.get("control_run_id") is None and "finetune_config" not in one_shot
    assert "trained the same" not in versus_baseline(one_shot, out["baseline"])["text"]

    # Minitron's arms: the pruned student and the same shapes from random init share the teacher trained as long
    result = run_distill(DistillLabConfig(dataset="pydoc", teacher=str(parent["id"]), student="pruned:heads_mlp=0.5",
                                          temperatures=[2.0], seeds=[0], student_steps=STEPS), quick_ctx())
    arms = result["student_pruned_kd"] + result["student_kd"]
    (distill_control,) = result["controls"]
    assert {a["control_run_id"] for a in arms} == {distill_control["run_id"]} != {control["id"]}  # lr differs
    assert distill_control["config"]["steps"] == STEPS and distill_control["parent_id"] == parent["id"]

    # Compare states each fine-tuned run against its fair control first, and so does "what changed" for the newest
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=90)
    at.run()
    at.sidebar.selectbox(key="dataset").set_value("pydoc").run()
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception and not at.error, [e.value for e in at.exception]
    fair = next(m.value for m in at.markdown if m.value.startswith("**Fine-tuned runs against their fair control**"))
    line = next(s for s in fair.splitlines() if s.startswith(f"- **#{child['run_id']} "))
    assert line.index(f"the parent trained the same {STEPS} more steps") < line.index("the parent as stored")
    table = at.dataframe[0].value.set_index("run_id")
    assert table.loc[child["run_id"], "vs_control"].endswith(f"vs #{control['id']}" + ("" if paired["significant"]
                                                                                         else " (noise)"))
    assert table.loc[control["id"], "label"].endswith("(control)")
    assert any(c.value.startswith("B against its fair control: ") for c in at.caption)  # B: the newest student

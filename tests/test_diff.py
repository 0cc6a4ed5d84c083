"""`diff`: what compression changed, checked against an independent recomputation from exported files."""
import json

import numpy as np
import pytest
import torch

from compression import BaselineConfig, PruneLabConfig, RunContext, get_baseline, load_dataset, run_prune
from compression.cli import main
from compression.labs.io.export import export_run


def _ece(conf, correct, bins=15):
    """Guo et al.: equal-width bins over (0, 1], weighted |accuracy - confidence|."""
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    return sum(abs(correct[idx == b].mean() - conf[idx == b].mean()) * (idx == b).mean()
               for b in range(bins) if (idx == b).any())


def test_diff_agrees_with_an_independent_recomputation(store, tmp_path, capsys):
    ctx = RunContext(latency_time=0.02)
    _, base = get_baseline(BaselineConfig(model="mlp:hidden=64", epochs=6, latency_batch=16), ctx)
    pruned = run_prune(PruneLabConfig(from_run=base["id"], method="global_l1", sparsities=[0.9], finetune_epochs=0,
                                      latency_batch=16), ctx)["results"][0]["run_id"]
    assert main(["diff", str(base["id"]), str(pruned), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)

    data = load_dataset("digits")
    x, y = data.x_test, data.y_test
    probs = {}
    for name, run_id in (("a", base["id"]), ("b", pruned)):
        path = tmp_path / f"{name}.pt"
        export_run(store, run_id, "module", path)
        model = torch.load(path, weights_only=False).eval()  # our own export, not a user's file
        with torch.no_grad():
            probs[name] = torch.softmax(model(x), 1).numpy()
    pred_a, pred_b = probs["a"].argmax(1), probs["b"].argmax(1)
    flipped = np.nonzero(pred_a != pred_b)[0].tolist()
    right_a, right_b = pred_a == y.numpy(), pred_b == y.numpy()
    assert out["flipped"] == flipped and flipped  # 90% without fine-tuning changes answers
    assert out["flip_rate"] == pytest.approx(len(flipped) / len(y), abs=0) and out["agreement"] == 1 - out["flip_rate"]
    assert out["newly_wrong"] == int((right_a & ~right_b).sum())
    assert out["newly_right"] == int((~right_a & right_b).sum())
    for row in out["per_class"]:
        mask = y.numpy() == row["class"]
        assert row["n"] == int(mask.sum()) and row["acc_b"] == pytest.approx(right_b[mask].mean(), abs=1e-12)
    assert out["ece_a"] == pytest.approx(_ece(probs["a"].max(1), right_a), abs=1e-3)
    assert out["ece_b"] == pytest.approx(_ece(probs["b"].max(1), right_b), abs=1e-3)


def test_diff_of_runs_on_different_data_sets_is_one_clear_line(store, capsys):
    ctx = RunContext(latency_time=0.02)
    _, a = get_baseline(BaselineConfig(dataset="synthetic", model="mlp:hidden=8", epochs=1, latency_batch=8), ctx)
    _, b = get_baseline(BaselineConfig(dataset="digits", model="mlp:hidden=8", epochs=1, latency_batch=8), ctx)
    assert main(["diff", str(a["id"]), str(b["id"]), "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "different data sets" in err[0]

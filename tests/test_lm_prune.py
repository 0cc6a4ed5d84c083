"""Language models, part 2: weight pruning (magnitude, Wanda, SparseGPT; unstructured and N:M) calibrated on text.

The masks are checked against hand-computed oracles and the patterns counted; SparseGPT must reconstruct a layer's
output better than magnitude (the property it exists for); the lab's runs carry part 1's fields and a paired
speed-up; bad input is one line. Tiny configs: a one-layer gpt of width 32, tiny hf: models saved here.
"""
import copy
import json

import pytest
import torch
from torch import nn

from compression import LabError, RunStore
from compression.store.artifacts import load_run_model
from compression.text.models import GPT
from compression.text.prune import (InputStats, LMPruneConfig, prune_language_model, prune_magnitude,
                                    prune_sparsegpt, prune_wanda, transformer_blocks)
from compression.text.paired_quality import method_comparisons
from test_lm import run_cli, tiny_lm


def _stats(x: torch.Tensor, hessian: bool = True) -> InputStats:
    stats = InputStats(x.shape[-1], hessian)
    stats.add(x)
    return stats


def test_wanda_keeps_the_highest_weight_times_input_norm_in_each_row_as_computed_by_hand():
    torch.manual_seed(0)
    weight = torch.randn(6, 8)
    x = torch.randn(50, 8) * torch.tensor([0.1, 5.0, 1.0, 0.01, 2.0, 1.0, 10.0, 0.5])  # features of unequal size
    pruned = prune_wanda(weight, _stats(x, hessian=False), LMPruneConfig("wanda", 0.5))
    norms = [sum(float(x[t, j]) ** 2 for t in range(50)) ** 0.5 for j in range(8)]
    for i in range(6):  # the oracle: per row, rank |W_ij| * ||X_j|| and keep the top half
        scores = [abs(float(weight[i, j])) * norms[j] for j in range(8)]
        keep = set(sorted(range(8), key=lambda j: scores[j])[4:])
        assert {j for j in range(8) if pruned[i, j] != 0} == keep
        assert all(pruned[i, j] == weight[i, j] for j in keep)  # kept weights unchanged
    # the outlier feature (j=6) survives in rows where its weight is small: magnitude alone would drop it
    magnitude = prune_magnitude(weight, _stats(x, hessian=False), LMPruneConfig("magnitude", 0.5))
    assert (pruned[:, 6] != 0).sum() > (magnitude[:, 6] != 0).sum()


def test_n_of_m_keeps_exactly_n_in_every_group_of_m_for_each_method():
    torch.manual_seed(1)
    weight, x = torch.randn(16, 32), torch.randn(200, 32)
    for method, prune in (("magnitude", prune_magnitude), ("wanda", prune_wanda), ("sparsegpt", prune_sparsegpt)):
        for pattern, (n, m) in (("2:4", (2, 4)), ("4:8", (4, 8))):
            out = prune(weight, _stats(x), LMPruneConfig(method, pattern=pattern))
            kept = (out != 0).reshape(16, 32 // m, m).sum(-1)
            assert torch.equal(kept, torch.full_like(kept, n)), (method, pattern)
    # magnitude's 2:4: in each group the two largest |W|, by hand
    out = prune_magnitude(weight, _stats(x), LMPruneConfig("magnitude", pattern="2:4"))
    for i in range(16):
        for g in range(8):
            group = [abs(float(weight[i, 4 * g + k])) for k in range(4)]
            top = set(sorted(range(4), key=lambda k: group[k])[2:])
            assert {k for k in range(4) if out[i, 4 * g + k] != 0} == top


def test_sparsegpt_reconstructs_the_layer_output_better_than_magnitude():
    torch.manual_seed(0)
    # inputs like a transformer's: features of very different sizes, mildly correlated (what the OBS update uses)
    x = (torch.randn(1000, 48) * torch.exp(torch.randn(48))) @ (torch.eye(48) + 0.3 * torch.randn(48, 48))
    weight = torch.randn(24, 48)
    reference = x @ weight.T

    def error(pruned):
        return float(((x @ pruned.T - reference) ** 2).mean())
    for config in (LMPruneConfig("sparsegpt", 0.5), LMPruneConfig("sparsegpt", pattern="2:4")):
        sparse = prune_sparsegpt(weight, _stats(x), config)
        magnitude = prune_magnitude(weight, _stats(x), LMPruneConfig("magnitude", config.sparsity, config.pattern))
        assert float((sparse == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
        assert error(sparse) < 0.75 * error(magnitude), config  # measured: 0.28 and 0.17


def test_a_gpt_is_pruned_block_by_block_leaving_the_original_embeddings_and_head_alone():
    torch.manual_seed(0)
    model = GPT(256, layers=2, width=32, heads=2, context=16).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calibration = torch.randint(0, 256, (8, 16))
    pruned, report = prune_language_model(model, calibration, LMPruneConfig("sparsegpt", 0.5))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input model is untouched
    linears = {n: m for n, m in pruned.named_modules() if isinstance(m, nn.Linear)}
    for name, layer in linears.items():
        share = float((layer.weight == 0).float().mean())
        assert share == pytest.approx(0.5, abs=0.02) if name.startswith("blocks.") else share == 0.0, name
    assert torch.equal(pruned.token.weight, model.token.weight)
    assert len(report["layers"]) == 12 and report["block_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert report["calibration_tokens"] == 8 * 16
    # block 1 is calibrated on block 0's output as pruned (the papers' order), not on the dense model's
    wanda = LMPruneConfig("wanda", 0.5)
    pruned = prune_language_model(model, calibration, wanda)[0]
    half = copy.deepcopy(model)
    half.blocks[0].load_state_dict(pruned.blocks[0].state_dict())
    expected = prune_wanda(model.blocks[1].fc1.weight.detach(), _stats(_inputs_of(half, half.blocks[1].fc1,
                                                                                   calibration)), wanda)
    assert torch.equal(pruned.blocks[1].fc1.weight, expected)
    on_dense = prune_wanda(model.blocks[1].fc1.weight.detach(), _stats(_inputs_of(model, model.blocks[1].fc1,
                                                                                  calibration)), wanda)
    assert not torch.equal(on_dense != 0, expected != 0)


def _inputs_of(model, layer, ids):
    seen = []
    hook = layer.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach()))
    with torch.no_grad():
        model(ids)
    hook.remove()
    return torch.cat([x.reshape(-1, x.shape[-1]) for x in seen])


def test_a_model_without_linear_blocks_is_refused_in_one_sentence():
    class Conv1DLike(nn.Module):  # GPT-2's projections are transformers' Conv1D, not nn.Linear
        def __init__(self):
            super().__init__()
            self.h = nn.ModuleList([nn.Sequential(nn.LayerNorm(4))])
    with pytest.raises(LabError, match="no list of transformer blocks"):
        transformer_blocks(Conv1DLike())
    with pytest.raises(LabError, match="Unknown pattern '3:4'"):
        LMPruneConfig("wanda", pattern="3:4")
    with pytest.raises(LabError, match="prunes image models"):
        LMPruneConfig("global_l1")


def test_the_cli_prunes_a_stored_gpt_with_each_method_and_times_it_with_its_parent(lab_home, capsys):
    _, parent = tiny_lm(steps=40)
    results = {}
    for method, shape in (("magnitude", ["--pattern", "2:4"]), ("sparsegpt", ["--pattern", "2:4"]),
                          ("wanda", ["--sparsity", "0.5"])):
        code, out, err = run_cli(capsys, "prune", "--from", str(parent["id"]), "--method", method, *shape,
                                 "--calibration", "8", "--json")
        assert code == 0, err
        results[method, shape[1]] = json.loads(out)["results"][0]
    store = RunStore()
    for (method, shape), row in results.items():
        assert row["parent_id"] == parent["id"] and row["method"] == method and row["sparsity"] == 0.5
        assert row["perplexity_ci95"][0] <= row["perplexity"] <= row["perplexity_ci95"][1]
        assert {"bits_per_byte", "next_token_accuracy", "macs_per_token"} <= set(row)
        assert "size only on this machine" in row["speed_note"]
        speed = store.list_speedups(run_a=parent["id"], run_b=row["run_id"])
        # prefill at the record's batch and decode at batch 1, each timed together with the parent
        assert [(s["batch_size"], s["detail"]["phase"]) for s in speed] == [(8, "prefill"), (1, "decode")]
        assert row["speedup_cpu_b8"] == speed[0]["speedup"] and row["speedup_cpu_b1"] == speed[1]["speedup"]
        # half the blocks' weights are zero; the record counts them among all the parameters
        assert row["block_sparsity"] == pytest.approx(0.5, abs=0.01) and 0 < store.get_run(row["run_id"])["record"]["sparsity"] < 0.5
        assert row["pattern"] == (None if shape == "0.5" else shape)
    dense = parent["record"]["perplexity"]
    assert all(row["perplexity"] > dense * 0.98 for row in results.values())  # pruning without fine-tuning
    # the stored files: magnitude keeps the parent's weights where it keeps any; SparseGPT has updated the kept ones
    before = load_run_model(parent["weights_path"]).blocks[0].fc1.weight
    for method, updated in (("magnitude", False), ("sparsegpt", True)):
        after = load_run_model(store.get_run(results[method, "2:4"]["run_id"])["weights_path"]).blocks[0].fc1.weight
        kept = after != 0
        assert torch.equal(after[kept], before[kept]) != updated, method
    # magnitude and SparseGPT at 2:4, paired on the same test windows: the difference of the two stored
    # perplexities, with an interval narrower than either run's own (the windows' spread is shared and cancels)
    (row,) = method_comparisons(list(results.values()))
    magnitude, sparsegpt = results["magnitude", "2:4"], results["sparsegpt", "2:4"]
    assert (row["run_a"], row["run_b"], row["shape"]) == (magnitude["run_id"], sparsegpt["run_id"], "2:4")
    assert row["difference"] == pytest.approx(sparsegpt["perplexity"] - magnitude["perplexity"], rel=1e-3, abs=1e-3)
    assert row["windows"] == magnitude["n_test_sequences"] and row["ci95"][0] <= row["difference"] <= row["ci95"][1]
    width = lambda lo_hi: lo_hi[1] - lo_hi[0]  # noqa: E731
    assert width(row["ci95"]) < min(width(magnitude["perplexity_ci95"]), width(sparsegpt["perplexity_ci95"]))
    assert row["text"].startswith("sparsegpt: ") and "magnitude" in row["text"]


def test_pruning_input_that_does_not_fit_is_one_error_line(lab_home, capsys):
    _, parent = tiny_lm(steps=5)
    image = RunStore().add_run("train", "digits", {"name": "lenet5", "args": {}}, {}, record={})
    cases = [(["--from", str(parent["id"]), "--method", "global_l1", "--sparsity", "0.5"],
              "does not prune language models"),
             (["--from", str(image), "--method", "wanda", "--sparsity", "0.5"], "does not prune image models"),
             (["--from", str(parent["id"]), "--method", "wanda", "--sparsity", "0.5", "--distill"],
              "give --finetune-epochs too"),
             (["--from", str(parent["id"]), "--method", "global_l1", "--pattern", "2:4"], "N:M patterns"),
             (["--from", str(parent["id"]), "--method", "wanda", "--pattern", "2:4", "--sparsity", "0.7"],
              "fixes the sparsity at 50%"),
             (["--from", str(parent["id"]), "--method", "wanda", "--pattern", "1:3"], "Unknown pattern")]
    for args, words in cases:
        code, out, err = run_cli(capsys, "prune", *args, "--json")
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], (args, err)


def test_speedup_times_a_language_model_pair_at_prefill_or_decode(lab_home, capsys):
    _, parent = tiny_lm(steps=5)
    code, out, err = run_cli(capsys, "prune", "--from", str(parent["id"]), "--sparsity", "0.5", "--calibration", "4",
                             "--json")  # no --method: a language model's default is magnitude
    child = json.loads(out)["results"][0]["run_id"]
    assert json.loads(out)["results"][0]["method"] == "magnitude"
    for phase, batch in (("prefill", 8), ("decode", 1)):
        code, out, err = run_cli(capsys, "speedup", str(parent["id"]), str(child), "--phase", phase,
                                 "--time-budget", "0", "--json")
        assert code == 0, err
        timing = json.loads(out)
        assert timing["phase"] == phase and timing["batch_size"] == batch
        assert timing["ci95"][0] <= timing["speedup"] <= timing["ci95"][1]
        assert RunStore().list_speedups(run_b=child)[-1]["detail"]["phase"] == phase


def test_heads_and_mlp_units_are_removed_by_activation_and_the_rest_computes_exactly_as_before():
    from compression.text.structured import activation_importance, prune_heads_mlp
    torch.manual_seed(0)
    model = GPT(256, layers=2, width=32, heads=4, context=16).eval()
    calibration = torch.randint(0, 256, (8, 16))
    pruned, report = prune_heads_mlp(model, calibration, 0.5)
    importance = activation_importance(model, calibration)
    masked = copy.deepcopy(model)  # the oracle: the same model with the removed heads' and units' outputs zeroed
    for block, kept_block, heads, units in zip(masked.blocks, report["blocks"], importance["heads"],
                                               importance["units"]):
        assert kept_block["heads_after"] == 2 and kept_block["mlp_after"] == 64
        for h in torch.argsort(heads)[:2].tolist():  # the two least active heads
            block.attn.out.weight.data[:, h * 8:(h + 1) * 8] = 0
        block.fc2.weight.data[:, torch.argsort(units)[:64]] = 0
    ids = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        assert torch.allclose(pruned(ids), masked(ids), atol=1e-5)
    assert sum(p.numel() for p in pruned.blocks.parameters()) < 0.55 * sum(p.numel() for p in model.blocks.parameters())
    logits, cache = pruned.decode_step(ids[:, :4])  # the KV cache works with fewer heads
    assert torch.allclose(pruned.decode_step(ids[:, 4:5], cache)[0][:, -1], pruned(ids[:, :5])[:, -1], atol=1e-5)


def test_depth_removes_the_blocks_that_change_their_input_least():
    from compression.text.structured import activation_importance, prune_depth
    torch.manual_seed(0)
    model = GPT(256, layers=4, width=32, heads=2, context=16).eval()
    with torch.no_grad():  # block 2 made a near no-op: its residual branches write almost nothing
        model.blocks[2].attn.out.weight.mul_(1e-4)
        model.blocks[2].fc2.weight.mul_(1e-4)
    calibration = torch.randint(0, 256, (8, 16))
    influence = activation_importance(model, calibration)["influence"]
    assert min(range(4), key=lambda i: influence[i]) == 2
    pruned, report = prune_depth(model, calibration, 0.25)
    assert report["kept_layers"] == [0, 1, 3] and len(pruned.blocks) == 3
    skipped = copy.deepcopy(model)
    skipped.blocks = nn.ModuleList([skipped.blocks[i] for i in (0, 1, 3)])
    ids = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        assert torch.equal(pruned(ids), skipped(ids))


def test_heads_mlp_pruning_fine_tuned_with_the_parent_as_teacher_is_smaller_faster_timed_and_better(lab_home, capsys):
    _, parent = tiny_lm(steps=40)
    rows = {}
    for flags in ([], ["--finetune-epochs", "1", "--distill"]):
        code, out, err = run_cli(capsys, "prune", "--from", str(parent["id"]), "--method", "heads_mlp",
                                 "--sparsity", "0.5", "--calibration", "8", *flags, "--json")
        assert code == 0, err
        rows[bool(flags)] = json.loads(out)["results"][0]
    one_shot, tuned = rows[False], rows[True]
    assert tuned["params"] == one_shot["params"] < 0.8 * parent["record"]["params"]  # embeddings and head stay
    assert tuned["finetune_history"] and not one_shot["finetune_history"]
    assert tuned["perplexity"] < one_shot["perplexity"]  # the fine-tune wins perplexity back
    assert "(distilled)" in tuned["label"] and "runs faster" in tuned["speed_note"]
    assert tuned["macs_per_token"] < parent["record"]["macs_per_token"]
    speed = RunStore().list_speedups(run_a=parent["id"], run_b=tuned["run_id"])
    assert len(speed) == 2 and tuned["speedup_cpu_b8"] == speed[0]["speedup"]


def test_fine_tuning_after_wanda_keeps_its_two_of_four_pattern_and_wins_perplexity_back(lab_home, capsys):
    _, parent = tiny_lm(steps=40)
    rows = {}
    for steps in ("0", "80"):
        code, out, err = run_cli(capsys, "prune", "--from", str(parent["id"]), "--method", "wanda", "--pattern", "2:4",
                                 "--calibration", "8", "--finetune-steps", steps, "--json")
        assert code == 0, err
        rows[steps] = json.loads(out)["results"][0]
    tuned = rows["80"]
    assert tuned["finetune_history"] and "zeros held" in tuned["label"]
    assert tuned["perplexity"] < rows["0"]["perplexity"]  # the fine-tune wins perplexity back ...
    model = load_run_model(RunStore().get_run(tuned["run_id"])["weights_path"])
    for layer in transformer_blocks(model).modules():  # ... and every block weight still keeps 2 of every 4
        if isinstance(layer, nn.Linear):
            kept = (layer.weight != 0).reshape(layer.weight.shape[0], -1, 4).sum(-1)
            assert torch.equal(kept, torch.full_like(kept, 2))
    assert "size only on this machine" in tuned["speed_note"]  # zeros still buy no CPU speed

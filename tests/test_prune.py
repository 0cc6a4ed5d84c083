"""Pruning: masks really zero the weights, sparsity is what was asked, every zoo model shrinks."""
import pytest
import torch
from torch import nn

from compression import LabError, PruneLabConfig, RunStore, TrainConfig, build_model, list_models, run_prune, train
from compression.techniques.prune import (PruneConfig, agp_targets, masks_of, parse_sparsities, prunable_layers,
                                          prune_model, sensitivity)

from conftest import quick_ctx


@pytest.fixture(scope="module")
def trained(synthetic):
    torch.manual_seed(0)
    model = build_model("cnn:width=8", synthetic.input_shape, synthetic.num_classes)
    train(model, synthetic, TrainConfig(epochs=3))
    return model


def _weights(model):
    return {n: m.weight.detach() for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


@pytest.mark.parametrize("method", ["l1_unstructured", "random_unstructured", "global_l1"])
def test_sparsity_achieved_is_the_sparsity_requested(trained, synthetic, method):
    pruned, report = prune_model(trained, synthetic, PruneConfig(method=method, sparsity=0.7, finetune_epochs=0))
    weights = _weights(pruned)
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    total = sum(w.numel() for w in weights.values())
    assert abs(zeros / total - 0.7) < 0.005
    if method != "global_l1":  # per-layer methods hit the target in every layer
        for row in report["layers"]:
            assert abs(row["sparsity"] - 0.7) <= 1 / row["params_before"] + 1e-9
    assert sum(1 for _ in trained.parameters()) == sum(1 for _ in pruned.parameters())
    assert int(sum((w == 0).sum() for w in _weights(trained).values())) == 0  # the input is untouched


def test_l1_keeps_the_largest_weights(trained, synthetic):
    pruned, _ = prune_model(trained, synthetic, PruneConfig(method="l1_unstructured", sparsity=0.5, finetune_epochs=0))
    name = prunable_layers(trained)[1]
    before, after = _weights(trained)[name].abs().flatten(), _weights(pruned)[name].flatten()
    kept = before[after != 0]
    dropped = before[after == 0]
    assert kept.min() >= dropped.max()


def test_masks_hold_through_fine_tuning(trained, synthetic):
    pruned_now, _ = prune_model(trained, synthetic, PruneConfig(method="global_l1", sparsity=0.8, finetune_epochs=0))
    tuned, report = prune_model(trained, synthetic, PruneConfig(method="global_l1", sparsity=0.8, finetune_epochs=2))
    assert len(report["finetune_history"]) == 2
    for name, mask in masks_of(pruned_now).items():
        weight = _weights(tuned)[name]
        assert (weight[~mask] == 0).all(), f"{name}: a pruned weight came back during fine-tuning"
    # fine-tuning changed the surviving weights
    assert any(not torch.equal(_weights(tuned)[n], _weights(pruned_now)[n]) for n in masks_of(pruned_now))


def test_iterative_agp_schedule(trained, synthetic):
    assert agp_targets(0.9, 3) == pytest.approx([0.9 * (1 - (2 / 3) ** 3), 0.9 * (1 - (1 / 3) ** 3), 0.9])
    pruned, report = prune_model(trained, synthetic, PruneConfig(method="l1_unstructured", sparsity=0.9,
                                                                 schedule="iterative", steps=3, finetune_epochs=3))
    assert [h["step"] for h in report["finetune_history"]] == [1, 2, 3]
    zeros = sum(int((w == 0).sum()) for w in _weights(pruned).values())
    assert abs(zeros / sum(w.numel() for w in _weights(pruned).values()) - 0.9) < 0.01


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_structured_pruned_runs_and_shrinks(name, synthetic):
    model = build_model(name, synthetic.input_shape, synthetic.num_classes).eval()
    pruned, report = prune_model(model, synthetic, PruneConfig(method="channel_l1", sparsity=0.5, finetune_epochs=0))
    before = sum(p.numel() for p in model.parameters())
    after = sum(p.numel() for p in pruned.parameters())
    assert after < 0.8 * before
    with torch.no_grad():
        assert pruned(torch.randn(3, *synthetic.input_shape)).shape == (3, synthetic.num_classes)


def test_round_to_keeps_channel_counts_multiples_of_8(synthetic):
    model = build_model("cnn:width=32", synthetic.input_shape, synthetic.num_classes)
    pruned, _ = prune_model(model, synthetic, PruneConfig(method="channel_l2", sparsity=0.4, round_to=8,
                                                          finetune_epochs=0))
    widths = [m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    assert all(w % 8 == 0 for w in widths) and max(widths) < 64


def test_skip_first_last_and_layer_choice(trained, synthetic):
    names = prunable_layers(trained)
    pruned, report = prune_model(trained, synthetic, PruneConfig(method="l1_unstructured", sparsity=0.5,
                                                                 skip_first_last=True, finetune_epochs=0))
    by_layer = {r["layer"]: r["sparsity"] for r in report["layers"]}
    assert by_layer[names[0]] == 0 and by_layer[names[-1]] == 0 and by_layer[names[1]] == pytest.approx(0.5, abs=0.01)
    pruned, report = prune_model(trained, synthetic, PruneConfig(method="l1_unstructured", sparsity=0.5,
                                                                 layers=(names[2],), finetune_epochs=0))
    assert [r["layer"] for r in report["layers"] if r["sparsity"] > 0] == [names[2]]


@pytest.mark.parametrize("kwargs,message", [
    (dict(sparsity=1.0), "Sparsity must be in"), (dict(sparsity=-0.1), "Sparsity must be in"),
    (dict(method="magic"), "Unknown pruning method"), (dict(round_to=7), "round_to"),
])
def test_bad_config_is_refused(kwargs, message):
    with pytest.raises(LabError, match=message):
        PruneConfig(**kwargs)


def test_bad_models_and_layers_get_clear_messages(trained, synthetic):
    class NoLayers(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :4]
    with pytest.raises(LabError, match="no conv or linear"):
        prune_model(NoLayers(), synthetic, PruneConfig())
    with pytest.raises(LabError, match="Unknown layer"):
        prune_model(trained, synthetic, PruneConfig(layers=("nope",)))
    tiny = nn.Sequential(nn.Flatten(), nn.Linear(64, 2), nn.ReLU(), nn.Linear(2, 4))  # 8 weights in the last layer
    with pytest.raises(LabError, match="every weight of layer"):
        prune_model(tiny, synthetic, PruneConfig(method="l1_unstructured", sparsity=0.95, finetune_epochs=0))


def test_sensitivity_rows(trained, synthetic):
    rows = sensitivity(trained, synthetic, [0.5, 0.9])
    assert {(r["layer"], r["sparsity"]) for r in rows} == {(n, s) for n in prunable_layers(trained) for s in (0.5, 0.9)}


def test_sweep_stores_one_child_per_sparsity(lab_home):
    store = RunStore()
    out = run_prune(PruneLabConfig(sparsities=[0.5, 0.8], method="global_l1", finetune_epochs=1, dataset="synthetic",
                                   model="mlp:hidden=32", epochs=2, latency_batch=16), quick_ctx())
    base_id = out["baseline"]["run_id"]
    assert [r["sparsity"] for r in out["results"]] == [0.5, 0.8]
    for result in out["results"]:
        run = store.get_run(result["run_id"])
        assert run["parent_id"] == base_id and run["kind"] == "prune" and run["method"] == "global_l1"
        assert result["nonzero_params"] < out["baseline"]["nonzero_params"] and result["layers"]
    with pytest.raises(LabError, match="empty"):
        PruneLabConfig(sparsities=[], dataset="synthetic")
    # --from: start from a stored run (here the 50% one), and the child points at it
    again = run_prune(PruneLabConfig(sparsities=[0.9], from_run=out["results"][0]["run_id"], finetune_epochs=0,
                                     dataset="synthetic", latency_batch=16), quick_ctx())
    child = store.get_run(again["results"][0]["run_id"])
    assert child["parent_id"] == out["results"][0]["run_id"]
    # its config names the model it was applied to, not the baseline flags' defaults it never used
    assert child["config"]["model"] == "mlp:hidden=32" and "epochs" not in child["config"]


def test_sparsity_text_is_parsed_or_refused_clearly():
    assert parse_sparsities("0.3, 0.5 70%") == pytest.approx([0.3, 0.5, 0.7])
    for text, message in [("0.5, 1.5", "Sparsity must be in"), ("abc", "not a sparsity"), (" , ", "empty")]:
        with pytest.raises(LabError, match=message):
            parse_sparsities(text)


@pytest.mark.parametrize("changes,message", [
    (dict(sparsities=[1.0]), "sparsities must be in"), (dict(method="magic"), "Unknown pruning method"),
    (dict(latency_batch=0), "latency batch must be in"), (dict(steps=0), "steps must be in"),
    (dict(nonsense=1), "Unknown parameter 'nonsense'"), (dict(sparsities="abc"), "sparsities must be"),
])
def test_lab_config_refuses_bad_input_naming_the_key(changes, message):
    with pytest.raises(LabError, match=message):
        PruneLabConfig.from_dict({"dataset": "synthetic", "model": "mlp:hidden=16", "sparsities": [0.5], **changes})


def test_lab_config_coerces_loose_input_and_round_trips():
    config = PruneLabConfig.from_dict({"dataset": "synthetic", "model": "mlp:hidden=16", "sparsities": "0.5, 80%",
                                       "epochs": "2", "latency_batch": 16.0, "with_sensitivity": "yes"})
    assert config.sparsities == [0.5, 0.8] and config.epochs == 2 and config.with_sensitivity is True
    assert PruneLabConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("spec,sparsity", [("mlp:hidden=16", 0.95), ("mlp:hidden=64", 0.99), ("cnn:width=8", 0.95)])
def test_a_channel_sparsity_that_would_empty_a_layer_keeps_one_channel_and_says_so(synthetic, spec, sparsity):
    # Torch-Pruning alone would skip such a layer (nothing removed, no word said); issue 13: clamp and say so
    model = build_model(spec, synthetic.input_shape, synthetic.num_classes)
    pruned, report = prune_model(model, synthetic, PruneConfig(method="channel_l1", sparsity=sparsity,
                                                               finetune_epochs=0))
    widths = [m.out_channels if isinstance(m, nn.Conv2d) else m.out_features for m in pruned.modules()
              if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert min(widths[:-1]) == 1 and widths[-1] == synthetic.num_classes
    assert sum(p.numel() for p in pruned.parameters()) < 0.5 * sum(p.numel() for p in model.parameters())
    assert report["notes"] and all("keeps 1 of its" in note for note in report["notes"])
    with torch.no_grad():
        assert pruned(synthetic.x_test[:3]).shape == (3, synthetic.num_classes)

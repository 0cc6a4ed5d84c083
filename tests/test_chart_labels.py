"""Chart legends, axes and hover text use the registries' display names (as the Compare page does), never raw
method ids; a sparsity axis runs 0-100% even when a sweep has one sparsity."""
from __future__ import annotations

from compression.labs.labels import technique_label
from compression.techniques.prune import METHODS as PRUNE_METHODS
from compression.techniques.quantize import METHODS as QUANT_METHODS


def _pruned(method: str, sparsity: float, run_id: int = 2, accuracy: float = 0.9) -> dict:
    return {"run_id": run_id, "method": method, "sparsity": sparsity, "accuracy": accuracy,
            "accuracy_ci": [accuracy - 0.02, accuracy + 0.02], "label": f"{method} {sparsity:.0%}"}


def _legend_names(fig) -> list[str]:
    return [t.name for t in fig.data if t.showlegend is not False and t.name]


def test_accuracy_vs_sparsity_legend_uses_the_registry_names():
    from dashboard.charts_prune import accuracy_vs_sparsity

    fig = accuracy_vs_sparsity([_pruned("channel_l1", 0.5), _pruned("global_l1", 0.5, run_id=3)],
                               {"accuracy": 0.95})
    names = _legend_names(fig)
    assert names == sorted([PRUNE_METHODS.label("channel_l1"), PRUNE_METHODS.label("global_l1")])
    assert "Channel pruning (L1)" in names
    assert not {"channel_l1", "global_l1"} & set(names)
    hover = " ".join(t.hovertemplate or "" for t in fig.data)
    assert "channel_l1" not in hover and "Channel pruning (L1)" in hover


def test_a_sparsity_axis_with_one_sparsity_is_pinned_to_0_100_percent():
    from dashboard.charts_prune import accuracy_vs_sparsity

    fig = accuracy_vs_sparsity([_pruned("global_l1", 0.9)])
    lo, hi = fig.layout.xaxis.range
    assert -0.05 <= lo <= 0 and 1 <= hi <= 1.05  # 0% and 100% in view, nothing like 150%
    assert hi > 0.9 + 0.01  # the point at 90% is not on the edge
    assert fig.layout.xaxis.tickformat == ".0%"


def test_per_layer_sparsity_axis_tops_at_100_percent_and_its_title_is_readable():
    from dashboard.charts_prune import layer_sparsity_bars

    layers = [{"layer": "fc1", "type": "Linear", "sparsity": 0.9, "params_before": 100, "nonzero_after": 10}]
    fig = layer_sparsity_bars(layers, "Per-layer sparsity of channel_l1 90%")
    lo, hi = fig.layout.yaxis.range
    assert lo == 0 and 1 <= hi <= 1.05
    assert "channel_l1" not in fig.layout.title.text and "Channel pruning (L1)" in fig.layout.title.text


def test_speedup_bars_name_runs_with_the_registry_names():
    from dashboard.charts_prune import speedup_bars

    fig = speedup_bars([_pruned("channel_l1", 0.5)], {"run_id": 1})
    assert list(fig.data[0].x) == [f"{PRUNE_METHODS.label('channel_l1')} 50%"]


def test_tradeoff_chart_hover_and_lineage_text_use_the_registry_names():
    from dashboard.charts import runs_frame, tradeoff_chart

    base = {"run_id": 1, "kind": "train", "dataset": "digits", "accuracy": 0.95, "accuracy_ci": [0.94, 0.96],
            "params": 1000, "label": "mlp baseline"}
    child = {**base, "run_id": 2, "kind": "prune", "method": "global_l1", "parent_id": 1, "params": 500,
             "accuracy": 0.9, "accuracy_ci": [0.88, 0.92], "label": "global_l1 50%"}
    fig = tradeoff_chart(runs_frame([base, child]), "params", highlight=[1, 2])
    names = _legend_names(fig)
    assert technique_label("global_l1") in names and "global_l1" not in names
    texts = " ".join(" ".join(map(str, t.text)) for t in fig.data if t.text is not None)
    assert "global_l1" not in texts and "Weight pruning, global (L1) 50%" in texts


def test_training_curves_legend_names_stages_by_their_display_names():
    from dashboard.charts import training_curves

    fig = training_curves([{"epoch": 1, "train_loss": 1.0, "val_accuracy": 0.8, "stage": "channel_l1 50%"}])
    assert _legend_names(fig) == [f"{PRUNE_METHODS.label('channel_l1')} 50%"]


def test_plan_chart_hover_names_quantization_by_its_display_name():
    from dashboard.charts_plan import plan_chart

    state = {"target": {"factor": 2.0, "phrase": "2x smaller", "unit": "smaller"}, "max_drop": 1.0,
             "points": [{"run_id": 5, "number": 0, "factor": 3.0, "loss": 0.5,
                         "label": "plan trial 0: channels -50%, 1 ep, dynamic_int8"}]}
    text = " ".join(" ".join(t.text) for t in plan_chart(state).data if t.text)
    assert "dynamic_int8" not in text and QUANT_METHODS.label("dynamic_int8") in text


def test_readable_leaves_words_that_only_contain_an_id_alone():
    from dashboard.charts import readable

    assert readable("global_l1 90%") == f"{PRUNE_METHODS.label('global_l1')} 90%"
    assert readable("prune channel_l1 50%") == f"prune {PRUNE_METHODS.label('channel_l1')} 50%"
    assert readable("myglobal_l1x") == "myglobal_l1x"
    assert readable(None) == ""

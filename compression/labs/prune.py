"""The prune lab: a sweep of sparsities on one parent, each pruned copy fine-tuned, measured next to the
parent in this process and stored as a child run; optionally a per-layer sensitivity scan."""
from __future__ import annotations

from ..core.data import load_dataset
from ..core.models import build_model
from ..errors import LabError
from ..techniques.prune import METHODS, prunable_layers, prune_model, sensitivity
from .baseline import Child, parent_is_text, prepare_parent, store_child
from .configs import PruneLabConfig
from .context import RunContext
from .records import as_record


def run_prune(config: PruneLabConfig, ctx: RunContext | None = None) -> dict:
    """Returns {"baseline": record, "results": [record + method, sparsity, layers], "sensitivity": [...]}."""
    ctx = ctx or RunContext()
    language = parent_is_text(config, ctx)
    config = config.replace(method=config.method_for(language))
    _check_kind(config, language)
    if language:
        from .lm_prune import run_prune_lm
        return run_prune_lm(config, ctx)
    parent = prepare_parent(config, ctx)
    device = config.device if config.device not in (None, "auto") else "cpu"
    results = []
    span = 0.8 if config.with_sensitivity else 0.9
    prune_configs = config.prune_configs()
    for i, prune_config in enumerate(prune_configs):
        name = f"{config.method} {prune_config.sparsity:.0%}"
        step = ctx.slice(0.1 + span * i / len(prune_configs), 0.1 + span * (i + 1) / len(prune_configs), name)
        pruned, report = prune_model(parent.model, parent.data, prune_config, device,
                                     progress=step.slice(0, 0.9).forward, should_cancel=ctx.should_cancel)
        step.report(0.95, "measuring")
        run = store_child(ctx, parent, pruned, Child(
            "prune", config.method, name, {**config.to_dict(), **prune_config.to_dict()},
            {k: report[k] for k in ("sparsity", "structured", "layers", "finetune_history", "notes") if k in report}))
        results.append({**as_record(run), "method": config.method, "sparsity": prune_config.sparsity})
        ctx.check_cancel()
    out = {"baseline": parent.as_baseline(), "results": results}
    if config.with_sensitivity:
        structured = METHODS[config.method].structured
        ctx.report(0.9, "Sensitivity: pruning each layer alone")
        out["sensitivity"] = sensitivity(parent.model, parent.data, [0.3, 0.5, 0.7, 0.9], structured,
                                         should_cancel=ctx.should_cancel)
        ctx.store.update_run(parent.run["id"], extra={**(parent.run.get("extra") or {}),
                                                      f"sensitivity_{'channel' if structured else 'weight'}":
                                                      out["sensitivity"]})
    ctx.report(1.0, f"Stored {len(results)} pruned run(s)")
    return out


def _check_kind(config: PruneLabConfig, language: bool) -> None:
    """A language model's parent (a text data set, or a stored run of one) takes the language methods, an image
    model's the others."""
    if language != METHODS[config.method].language:
        kind = "language" if language else "image"
        known = [n for n in METHODS.names() if METHODS[n].language == language]
        raise LabError(f"'{config.method}' does not prune {kind} models. For {kind} models: {', '.join(known)}.")


def prunable_layers_of(spec, dataset: str = "digits") -> list[str]:
    """Layer names of a model spec, for the layer picker (builds the model on the data set's shape)."""
    data = load_dataset(dataset)
    return prunable_layers(build_model(spec, data.input_shape, data.num_classes))

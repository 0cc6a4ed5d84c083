"""The prune lab: a sweep of sparsities (or a language model's N:M pattern) on one parent, each pruned copy
fine-tuned as the config asks, measured next to the parent in this process and stored as a child run; for image
models optionally a per-layer sensitivity scan. The parent's task says how each copy is pruned."""
from __future__ import annotations

from ..core.data import load_dataset
from ..core.models import build_model
from ..techniques.prune import METHODS, prunable_layers, sensitivity
from .configs import PruneLabConfig
from .context import RunContext
from ..tasks.base import FINETUNE_CONFIG
from .parent import Child, fair_control, parent_task, prepare_parent, store_child
from .records import as_record


def run_prune(config: PruneLabConfig, ctx: RunContext | None = None) -> dict:
    """Returns {"baseline": record, "results": [record + method, sparsity (, pattern)], "sensitivity": [...]}."""
    ctx = ctx or RunContext()
    task = parent_task(config, ctx)
    config = config.replace(method=config.method_for(task))
    task.check_prune_method(config.method)
    prune_configs = task.prune_configs(config)
    parent = prepare_parent(config, ctx, check=task.prune_check(config.method))
    results, controls = [], {}
    start, span = 0.15, (0.75 if config.with_sensitivity else 0.8)
    for i, prune_config in enumerate(prune_configs):
        name = task.prune_name(config.method, prune_config)
        step = ctx.slice(start + span * i / len(prune_configs), start + span * (i + 1) / len(prune_configs), name)
        pruned, extra, name, fields = task.prune_child(parent, config, prune_config, step, ctx, name)
        # a child that fine-tuned is also measured against its parent trained as long (cached per fine-tune)
        control = fair_control(step.slice(0.7, 0.85), parent, extra.get(FINETUNE_CONFIG))
        if control is not None:
            controls[control["id"]] = as_record(control)
        run = store_child(ctx, parent, pruned, Child("prune", config.method, name,
                                                     {**config.to_dict(), **prune_config.to_dict()}, extra,
                                                     control=control))
        results.append({**as_record(run), "method": config.method, **fields})
        ctx.check_cancel()
    out = {"baseline": parent.as_baseline(), "results": results, "controls": list(controls.values())}
    if config.with_sensitivity:  # image models only: PruneLabConfig refuses it for a language model
        structured = METHODS[config.method].structured
        ctx.report(0.9, "Sensitivity: pruning each layer alone")
        out["sensitivity"] = sensitivity(parent.model, parent.data, [0.3, 0.5, 0.7, 0.9], structured,
                                         should_cancel=ctx.should_cancel)
        ctx.store.update_run(parent.run["id"], extra={**(parent.run.get("extra") or {}),
                                                      f"sensitivity_{'channel' if structured else 'weight'}":
                                                      out["sensitivity"]})
    ctx.report(1.0, f"Stored {len(results)} pruned run(s)")
    return out


def prunable_layers_of(spec, dataset: str = "digits") -> list[str]:
    """Layer names of a model spec, for the layer picker (builds the model on the data set's shape)."""
    data = load_dataset(dataset)
    return prunable_layers(build_model(spec, data.input_shape, data.num_classes))

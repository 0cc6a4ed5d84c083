"""The prune lab on a language model: magnitude, Wanda or SparseGPT (text.prune), at each sparsity of the sweep
or at an N:M pattern, calibrated on training text; each pruned copy stored as a child, measured and timed with
its parent. Unstructured and N:M zeros buy no speed with dense CPU kernels: the record says so."""
from __future__ import annotations

from ..errors import LabError
from ..text.prune import LMPruneConfig, prune_language_model
from .baseline import Child
from .configs import PruneLabConfig
from .context import RunContext
from .lm_child import SIZE_ONLY, prepare_lm_parent, store_lm_child
from .records import as_record


def lm_prune_configs(config: PruneLabConfig) -> list[LMPruneConfig]:
    if config.epochs_after_pruning(language=True):
        raise LabError("Fine-tuning after pruning a language model is not built yet: use --finetune-epochs 0 "
                       "(one-shot, as Wanda and SparseGPT prune).")
    if config.with_sensitivity or config.layers or config.schedule != "oneshot":
        raise LabError("For language models the prune lab takes --method, --sparsity or --pattern, and "
                       "--calibration; --sensitivity, --layers and the iterative schedule are for image models.")
    if config.pattern:
        return [LMPruneConfig(config.method, 0.5, config.pattern, config.calibration, config.seed)]
    return [LMPruneConfig(config.method, float(s), None, config.calibration, config.seed) for s in config.sparsities]


def run_prune_lm(config: PruneLabConfig, ctx: RunContext) -> dict:
    prune_configs = lm_prune_configs(config)
    parent = prepare_lm_parent(config, ctx)
    results = []
    for i, prune_config in enumerate(prune_configs):
        name = f"{config.method} {prune_config.pattern or f'{prune_config.sparsity:.0%}'}"
        step = ctx.slice(0.15 + 0.8 * i / len(prune_configs), 0.15 + 0.8 * (i + 1) / len(prune_configs), name)
        calibration = parent.calibration(prune_config.calibration, prune_config.seed)
        pruned, report = prune_language_model(parent.model, calibration, prune_config,
                                              progress=lambda f, msg: step.report(0.8 * f, f"{name}: {msg}"),
                                              should_cancel=ctx.should_cancel)
        step.report(0.85, f"{name}: measuring perplexity and timing it with its parent")
        extra = {k: report[k] for k in ("sparsity", "pattern", "structured", "layers", "calibration_sequences",
                                         "calibration_tokens", "block_sparsity")}
        extra["speed_note"] = SIZE_ONLY
        run = store_lm_child(ctx, parent, pruned, Child("prune", config.method, name,
                                                        {**config.to_dict(), **prune_config.to_dict()}, extra))
        results.append({**as_record(run), "method": config.method, "sparsity": prune_config.target,
                        "pattern": prune_config.pattern})
        ctx.check_cancel()
    ctx.report(1.0, f"Stored {len(results)} pruned run(s)")
    return {"baseline": parent.as_baseline(), "results": results}

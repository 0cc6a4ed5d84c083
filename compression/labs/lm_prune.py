"""The prune lab on a language model, one child run per sparsity (or pattern), each measured and timed with its
parent:

- magnitude, Wanda or SparseGPT (text.prune), unstructured or N:M, calibrated on training text; one-shot as the
  papers prune, or fine-tuned with the zeros held. The zeros buy no speed with dense CPU kernels, and the record
  says so;
- heads_mlp or depth (text.structured): a smaller dense gpt, really faster, then optionally fine-tuned for
  --finetune-epochs, with the parent as teacher when --distill is given (Minitron's recipe).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import LabError
from ..techniques.prune import layer_report
from ..text.prune import LMPruneConfig, prune_language_model, transformer_blocks
from ..text.structured import STRUCTURED, check_gpt, prune_depth, prune_heads_mlp
from ..text.train import LMTrainConfig, distillation_loss, lm_loss, steps_per_epoch, train_lm
from .baseline import Child
from .configs import PruneLabConfig
from .context import RunContext
from .lm_child import SIZE_ONLY, LMParent, prepare_lm_parent, store_lm_child
from .records import as_record

FINETUNE_LR = 1e-3  # a third of training's peak: the pruned model starts close to a good solution
STRUCTURED_PRUNERS = {"heads_mlp": prune_heads_mlp, "depth": prune_depth}


def lm_prune_configs(config: PruneLabConfig) -> list[LMPruneConfig]:
    if config.distill and not _finetunes(config):
        raise LabError("--distill fine-tunes with the parent as teacher: give --finetune-epochs too.")
    if config.with_sensitivity or config.layers or config.schedule != "oneshot":
        raise LabError("For language models the prune lab takes --method, --sparsity or --pattern, --calibration, "
                       "--finetune-epochs and --distill; --sensitivity, --layers and the iterative schedule are "
                       "for image models.")
    if config.pattern:
        return [LMPruneConfig(config.method, 0.5, config.pattern, config.calibration, config.seed)]
    return [LMPruneConfig(config.method, float(s), None, config.calibration, config.seed) for s in config.sparsities]


def _prune(parent: LMParent, prune_config: LMPruneConfig, step: RunContext, ctx: RunContext, name: str):
    calibration = parent.calibration(prune_config.calibration, prune_config.seed)
    if prune_config.method not in STRUCTURED:
        pruned, report = prune_language_model(parent.model, calibration, prune_config,
                                              progress=lambda f, msg: step.report(0.5 * f, f"{name}: {msg}"),
                                              should_cancel=ctx.should_cancel)
        report["speed_note"] = SIZE_ONLY
        return pruned, report
    pruned, report = STRUCTURED_PRUNERS[prune_config.method](parent.model, calibration, prune_config.sparsity)
    report.update(method=prune_config.method, sparsity=prune_config.sparsity, pattern=None, structured=True,
                  calibration_sequences=int(calibration.shape[0]), calibration_tokens=int(calibration.numel()),
                  speed_note="a smaller dense model: fewer multiply-accumulates, so it runs faster on any kernel")
    report["layers"] = _depth_layers(parent, report) if prune_config.method == "depth" else \
        layer_report(parent.model, pruned)
    return pruned, report


def _depth_layers(parent: LMParent, report: dict) -> list[dict]:
    """Each of the parent's block layers, kept whole or removed with its block (the names of the pruned model's
    blocks shift, so they are reported against the parent's)."""
    rows = []
    for row in layer_report(parent.model, parent.model):
        block = int(row["layer"].split(".")[1]) if row["layer"].startswith("blocks.") else None
        removed = block is not None and block not in report["kept_layers"]
        rows.append({**row, "params_after": 0 if removed else row["params_before"],
                     "nonzero_after": 0 if removed else row["nonzero_after"], "sparsity": 1.0 if removed else 0.0})
    return rows


def held_zeros(model) -> Callable[[], None]:
    """What puts a weight pruner's zeros back after an optimizer step: fine-tuning then keeps the sparsity (and an
    N:M pattern) the method chose, as SparseGPT's and Wanda's fine-tuned variants do. A dense weight's mask is all
    ones, so it costs a multiply and changes nothing."""
    masks = [(layer.weight, layer.weight != 0) for layer in transformer_blocks(model).modules()
             if isinstance(layer, nn.Linear)]

    def restore() -> None:
        with torch.no_grad():
            for weight, mask in masks:
                weight.mul_(mask)
    return restore


def _finetunes(config: PruneLabConfig) -> bool:
    return bool(config.finetune_steps or config.epochs_after_pruning(language=True))


def _finetune_length(config: PruneLabConfig) -> str:
    return f"{config.finetune_steps} steps" if config.finetune_steps else \
        f"{config.epochs_after_pruning(language=True)} ep"


def _finetune(model, parent: LMParent, config: PruneLabConfig, step: RunContext, name: str,
              hold: Callable[[], None] | None = None) -> list[dict]:
    steps = config.finetune_steps or config.epochs_after_pruning(language=True) * steps_per_epoch(
        parent.data, model.tokenizer, LMTrainConfig.batch_size, parent.context)
    train_config = LMTrainConfig(steps=steps, lr=FINETUNE_LR, seed=config.seed)
    teacher = f", the parent teaching" if config.distill else ""

    def on_step(info: dict) -> None:
        if hold:
            hold()  # before the next step and before any evaluation: the model is always as sparse as pruned
        step.report(0.5 + 0.35 * info["step"] / info["steps"],
                    f"{name}: fine-tuning{teacher}, step {info['step']}/{info['steps']}")
    return train_lm(model, parent.data, train_config, context=parent.context,
                    loss_fn=distillation_loss(parent.model) if config.distill else lm_loss, on_step=on_step,
                    should_cancel=step.should_cancel)


def run_prune_lm(config: PruneLabConfig, ctx: RunContext) -> dict:
    prune_configs = lm_prune_configs(config)
    parent = prepare_lm_parent(config, ctx, check=check_gpt if config.method in STRUCTURED else transformer_blocks)
    results = []
    for i, prune_config in enumerate(prune_configs):
        name = f"{config.method} {prune_config.pattern or f'{prune_config.sparsity:.0%}'}"
        step = ctx.slice(0.15 + 0.8 * i / len(prune_configs), 0.15 + 0.8 * (i + 1) / len(prune_configs), name)
        pruned, report = _prune(parent, prune_config, step, ctx, name)
        hold = None if config.method in STRUCTURED else held_zeros(pruned)
        history = _finetune(pruned, parent, config, step, name, hold) if _finetunes(config) else []
        if history:
            name += f", fine-tuned {_finetune_length(config)}" + (" (distilled)" if config.distill else "")
            name += ", zeros held" if hold else ""
        step.report(0.85, f"{name}: measuring perplexity and timing it with its parent")
        extra = {k: report[k] for k in ("sparsity", "pattern", "structured", "layers", "calibration_sequences",
                                         "calibration_tokens", "speed_note") if k in report}
        extra.update({k: report[k] for k in ("block_sparsity", "blocks", "kept_layers") if k in report})
        extra["finetune_history"] = history
        run = store_lm_child(ctx, parent, pruned, Child("prune", config.method, name,
                                                        {**config.to_dict(), **prune_config.to_dict()}, extra))
        results.append({**as_record(run), "method": config.method, "sparsity": prune_config.target,
                        "pattern": prune_config.pattern})
        ctx.check_cancel()
    ctx.report(1.0, f"Stored {len(results)} pruned run(s)")
    return {"baseline": parent.as_baseline(), "results": results}

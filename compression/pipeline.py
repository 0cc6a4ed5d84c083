"""Chains of techniques on one model, e.g. prune -> fine-tune -> quantize; each stage a stored run.

Steps are written "prune:channel_l1=0.5,finetune:5,quantize:static_int8".
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .baseline import as_record, measure_and_store
from .errors import CancelledError, LabError
from .prune import PruneConfig, prune_model
from .quantize import METHODS as QUANT_METHODS
from .quantize import quantize_model
from .quantize_lab import _start
from .store import RunStore
from .train import TrainConfig, train

STAGE_KINDS = ("prune", "finetune", "quantize")


def parse_steps(text: str | list) -> list[dict]:
    """'prune:channel_l1=0.5,finetune:5,quantize:static_int8' -> [{"kind", ...}, ...], validated."""
    items = text if isinstance(text, list) else [s for s in text.split(",") if s.strip()]
    steps = []
    for item in items:
        if isinstance(item, dict):
            steps.append(item)
            continue
        kind, _, arg = item.strip().partition(":")
        if kind == "prune":
            method, _, value = arg.partition("=")
            try:
                steps.append({"kind": "prune", "method": method, "sparsity": float(value)})
            except ValueError:
                raise LabError(f"Bad stage '{item}': write prune:METHOD=SPARSITY, e.g. prune:channel_l1=0.5") from None
        elif kind == "finetune":
            if not arg.isdigit() or int(arg) < 1:
                raise LabError(f"Bad stage '{item}': write finetune:EPOCHS with EPOCHS >= 1")
            steps.append({"kind": "finetune", "epochs": int(arg)})
        elif kind == "quantize":
            steps.append({"kind": "quantize", "method": arg})
        else:
            raise LabError(f"Unknown stage '{kind}'. Known: {', '.join(STAGE_KINDS)}")
    _validate(steps)
    return steps


def _validate(steps: list[dict]) -> None:
    if not steps:
        raise LabError("The pipeline is empty: add at least one stage")
    for i, step in enumerate(steps):
        if step["kind"] == "prune":
            PruneConfig(method=step["method"], sparsity=step["sparsity"])
        elif step["kind"] == "quantize":
            if step["method"] not in QUANT_METHODS:
                raise LabError(f"Unknown quantization method '{step['method']}'. Known: {', '.join(QUANT_METHODS)}")
            if i != len(steps) - 1:
                raise LabError("Quantize must be the last stage: a quantized model has no float weights left to "
                               "prune or fine-tune (prune -> quantize is the order that works, as in Deep Compression).")


def finetune(model: nn.Module, data, epochs: int, device="cpu", seed=0, progress=None, should_cancel=None):
    """Fine-tune a copy, holding existing zeros at zero (so unstructured sparsity survives)."""
    tuned = copy.deepcopy(model)
    masks = {m: (m.weight != 0).float() for m in tuned.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear)) and (m.weight == 0).float().mean() > 0.01}

    @torch.no_grad()
    def hold_masks(_model):
        for module, mask in masks.items():
            module.weight.mul_(mask)
    train(tuned, data, TrainConfig(epochs=epochs, lr=1e-3, seed=seed), device, on_epoch=progress,
          should_cancel=should_cancel, after_step=hold_masks if masks else None)
    return tuned.cpu().eval()


def run_pipeline(*, steps, calibration_batches: int = 8, from_run: int | None = None, store: RunStore | None = None,
                 progress=None, should_cancel=None, job_id=None, exclusive=None, latency_time: float = 0.3,
                 **baseline_kwargs) -> dict:
    """Run each stage on the previous stage's model; each is stored as the child of the one before."""
    store = store or RunStore()
    steps = parse_steps(steps)
    model, parent, data, latency_batch, baseline_record, report = _start(
        store, from_run, progress, should_cancel, job_id, exclusive, latency_time, baseline_kwargs)
    device = baseline_kwargs.get("device") or "cpu"
    seed = baseline_kwargs.get("seed", 0)
    stages, names = [], []
    for i, step in enumerate(steps):
        lo, width = 0.15 + 0.85 * i / len(steps), 0.85 / len(steps)
        stage_progress = lambda info, lo=lo, width=width: report(  # noqa: E731
            lo + width * 0.8 * info.get("epoch", 0) / max(info.get("epochs", 1), 1), f"stage {i + 1}: epoch "
            f"{info.get('epoch')}/{info.get('epochs')}")
        input_dtype, extra = torch.float32, {"stage": i + 1, "step": step}
        float_model = model if step["kind"] == "quantize" else None  # its MACs stand for the int8 model's
        if step["kind"] == "prune":
            name = f"prune {step['method']} {step['sparsity']:.0%}"
            model, prune_report = prune_model(model, data, PruneConfig(method=step["method"], sparsity=step["sparsity"],
                                                                       finetune_epochs=0, seed=seed))
            extra.update(layers=prune_report["layers"], sparsity=step["sparsity"])
            method = step["method"]
        elif step["kind"] == "finetune":
            name, method = f"finetune {step['epochs']} ep", "finetune"
            model = finetune(model, data, step["epochs"], device, seed, stage_progress, should_cancel)
        else:
            name, method = f"quantize {step['method']}", step["method"]
            q_device = "cpu" if QUANT_METHODS[method].real_int8 else device
            model, q_report = quantize_model(model, data, method, q_device, calibration_batches)
            extra.update(q_report)
            input_dtype = QUANT_METHODS[method].input_dtype
        names.append(name)
        report(lo + width * 0.85, f"stage {i + 1} ({name}): measuring")
        run = measure_and_store(store, model, data, parent, kind=step["kind"], method=method,
                                label=" → ".join(names), config={"pipeline": steps, "stage": i + 1, **step},
                                extra=extra, baseline_record=baseline_record, latency_batch=latency_batch,
                                job_id=job_id, exclusive=exclusive, latency_time=latency_time, input_dtype=input_dtype,
                                float_model=float_model)
        stages.append(as_record(run))
        parent = run
        if should_cancel and should_cancel():
            raise CancelledError("cancelled by the user")
    report(1.0, f"Stored {len(stages)} stage(s)")
    return {"baseline": {**as_record(store.get_run(stages[0]["parent_id"])), **baseline_record}, "stages": stages}


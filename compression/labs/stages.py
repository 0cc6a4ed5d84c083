"""Pipeline stages, registered once: how a stage is written ("prune:channel_l1=0.5"), checked and applied.

A pipeline is written "prune:channel_l1=0.5,finetune:5,quantize:static_int8"; each stage runs on the
previous stage's model and is stored as its child run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import LabError
from ..registry import Registry
from ..techniques.finetune import finetune
from ..techniques.prune import PruneConfig, prune_model
from ..techniques.quantize import METHODS as QUANT_METHODS
from ..techniques.quantize import quantize_model


@dataclass(frozen=True)
class StageResult:
    model: object
    name: str                 # "prune channel_l1 50%", for labels
    method: str
    extra: dict
    input_dtype: torch.dtype = torch.float32
    float_model: object = None  # the model before quantization: its MACs stand for the int8 model's


@dataclass(frozen=True)
class Stage:
    parse: Callable[[str, str], dict]              # (argument text, whole item) -> step dict
    apply: Callable[..., StageResult]              # (model, step, data, env) -> StageResult
    last: bool = False                             # must be the last stage


def _parse_prune(arg: str, item: str) -> dict:
    method, _, value = arg.partition("=")
    try:
        step = {"kind": "prune", "method": method, "sparsity": float(value)}
    except ValueError:
        raise LabError(f"Bad stage '{item}': write prune:METHOD=SPARSITY, e.g. prune:channel_l1=0.5") from None
    PruneConfig(method=method, sparsity=step["sparsity"])
    return step


def _apply_prune(model, step, data, env) -> StageResult:
    pruned, report = prune_model(model, data, PruneConfig(method=step["method"], sparsity=step["sparsity"],
                                                          finetune_epochs=0, seed=env["seed"]))
    return StageResult(pruned, f"prune {step['method']} {step['sparsity']:.0%}", step["method"],
                       {"layers": report["layers"], "sparsity": step["sparsity"], "fine_tuned": False})


def _parse_finetune(arg: str, item: str) -> dict:
    if not arg.isdigit() or int(arg) < 1:
        raise LabError(f"Bad stage '{item}': write finetune:EPOCHS with EPOCHS >= 1")
    return {"kind": "finetune", "epochs": int(arg)}


def _apply_finetune(model, step, data, env) -> StageResult:
    tuned = finetune(model, data, step["epochs"], env["device"], env["seed"], env["on_epoch"], env["should_cancel"])
    return StageResult(tuned, f"finetune {step['epochs']} ep", "finetune", {})


def _parse_quantize(arg: str, item: str) -> dict:
    QUANT_METHODS.check(arg)
    return {"kind": "quantize", "method": arg}


def _apply_quantize(model, step, data, env) -> StageResult:
    method = QUANT_METHODS[step["method"]]
    quantized, report = quantize_model(model, data, step["method"], "cpu" if method.real_int8 else env["device"],
                                       env["calibration_batches"])
    return StageResult(quantized, f"quantize {step['method']}", step["method"], report, method.input_dtype, model)


STAGES: Registry[Stage] = Registry("stage")
STAGES.register("prune", Stage(_parse_prune, _apply_prune), about="prune:METHOD=SPARSITY, no fine-tuning")
STAGES.register("finetune", Stage(_parse_finetune, _apply_finetune), about="finetune:EPOCHS, zeros held at zero")
STAGES.register("quantize", Stage(_parse_quantize, _apply_quantize, last=True), about="quantize:METHOD, last")


def parse_steps(text: str | list) -> list[dict]:
    """'prune:channel_l1=0.5,finetune:5,quantize:static_int8' -> [{"kind", ...}, ...], validated."""
    items = text if isinstance(text, list) else [s for s in str(text).split(",") if s.strip()]
    steps = []
    for item in items:
        if isinstance(item, dict):
            item = f"{item['kind']}:" + {"prune": f"{item.get('method')}={item.get('sparsity')}",
                                        "finetune": str(item.get("epochs")), "quantize": str(item.get("method"))
                                        }.get(item["kind"], "")
        kind, _, arg = item.strip().partition(":")
        steps.append(STAGES.get(kind).parse(arg.strip(), item))
    if not steps:
        raise LabError("The pipeline is empty: add at least one stage")
    for i, step in enumerate(steps):
        if STAGES[step["kind"]].last and i != len(steps) - 1:
            raise LabError("Quantize must be the last stage: a quantized model has no float weights left to "
                           "prune or fine-tune (prune -> quantize is the order that works, as in Deep Compression).")
    return steps

"""The quantize lab: each method applied to one parent, measured next to it and stored as a child run."""
from __future__ import annotations

from ..errors import LabError
from ..techniques.quantize import METHODS, quantize_model
from .configs import QuantizeLabConfig
from .context import RunContext
from .parent import Child, prepare_parent, store_child
from .records import as_record


def run_quantize(config: QuantizeLabConfig, ctx: RunContext | None = None) -> dict:
    """Returns {"baseline": record, "results": [record + method], "unavailable": [{method, reason}]}.

    A method this machine (or this kind of model) cannot run is reported in `unavailable` with its reason, not
    raised.
    """
    ctx = ctx or RunContext()
    parent = prepare_parent(config, ctx)
    task = parent.task
    device = config.device if config.device not in (None, "auto") else "cpu"
    results, unavailable = [], []
    for i, method in enumerate(config.methods):
        ctx.report(0.15 + 0.85 * i / len(config.methods), f"{method}: quantizing and measuring")
        target, reason = task.quantize_refusal(method, device)
        if reason:
            unavailable.append({"method": method, "reason": reason})
            continue
        try:
            quantized, report = quantize_model(parent.model, task.quantize_data(parent), method, target,
                                               config.calibration_batches)
        except LabError as err:
            unavailable.append({"method": method, "reason": str(err)})
            continue
        run = store_child(ctx, parent, quantized, Child(
            "quantize", method, METHODS.label(method), {**config.to_dict(), "method": method},
            task.quantize_notes(parent, method, report), input_dtype=METHODS[method].input_dtype,
            float_model=parent.model))
        results.append({**as_record(run), "method": method})
        if ctx.cancelled():
            break
    ctx.report(1.0, f"Stored {len(results)} quantized run(s)")
    return {"baseline": parent.as_baseline(), "results": results, "unavailable": unavailable}

"""The quantize lab: each method applied to one parent, measured next to it and stored as a child run."""
from __future__ import annotations

from ..errors import LabError
from ..techniques.quantize import METHODS, availability, quantize_model
from .baseline import Child, parent_is_text, prepare_parent, store_child
from .configs import QuantizeLabConfig
from .context import RunContext
from .records import as_record


def run_quantize(config: QuantizeLabConfig, ctx: RunContext | None = None) -> dict:
    """Returns {"baseline": record, "results": [record + method], "unavailable": [{method, reason}]}.

    A method this machine cannot run is reported in `unavailable` with its reason, not raised.
    """
    ctx = ctx or RunContext()
    if parent_is_text(config, ctx):
        from .lm_quantize import run_quantize_lm
        return run_quantize_lm(config, ctx)
    parent = prepare_parent(config, ctx)
    device = config.device if config.device not in (None, "auto") else "cpu"
    results, unavailable = [], []
    for i, method in enumerate(config.methods):
        ctx.report(0.15 + 0.85 * i / len(config.methods), f"{method}: quantizing and measuring")
        target = "cpu" if METHODS[method].real_int8 else device  # torch.ao's int8 kernels exist on CPU only
        reason = availability(method, target)
        if reason:
            unavailable.append({"method": method, "reason": reason})
            continue
        try:
            quantized, report = quantize_model(parent.model, parent.data, method, target, config.calibration_batches)
        except LabError as err:
            unavailable.append({"method": method, "reason": str(err)})
            continue
        run = store_child(ctx, parent, quantized, Child(
            "quantize", method, METHODS.label(method), {**config.to_dict(), "method": method}, report,
            input_dtype=METHODS[method].input_dtype, float_model=parent.model))
        results.append({**as_record(run), "method": method})
        if ctx.cancelled():
            break
    ctx.report(1.0, f"Stored {len(results)} quantized run(s)")
    return {"baseline": parent.as_baseline(), "results": results, "unavailable": unavailable}

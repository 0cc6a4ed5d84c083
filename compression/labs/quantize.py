"""The quantize lab: each method applied to one parent, measured next to it and stored as a child run."""
from __future__ import annotations

from ..errors import LabError
from ..techniques.quantize import METHODS, check_fits, quantize_model
from .configs import QuantizeLabConfig
from .context import RunContext
from .parent import Child, parent_task, prepare_parent, store_child
from .records import as_record


def run_quantize(config: QuantizeLabConfig, ctx: RunContext | None = None) -> dict:
    """Returns {"baseline": record, "results": [record + method], "unavailable": [{method, reason}]}.

    Each method's refusal is asked of the parent's task before the parent is trained or loaded, and a method that
    cannot take the parent's layer widths (int4's groups) says so as soon as the parent is loaded, before it is
    measured. Where the task says a refusal is an error (language models) the first one raises (one sentence,
    exit code 2); else (image models) each is reported in `unavailable` with its reason.
    """
    ctx = ctx or RunContext()
    task = parent_task(config, ctx)
    device = config.device if config.device not in (None, "auto") else "cpu"
    refusals = {method: task.quantize_refusal(method, device) for method in config.methods}
    unavailable = [{"method": m, "reason": reason} for m, (_, reason) in refusals.items() if reason]
    runnable = [m for m in config.methods if not refusals[m][1]]

    def refuse(method: str, reason: str) -> None:
        if task.quantize_refusal_is_error:
            raise LabError(reason)
        unavailable.append({"method": method, "reason": reason})
        runnable.remove(method)

    if unavailable and task.quantize_refusal_is_error:
        first = unavailable[0]
        raise LabError(f"{first['method']} cannot quantize {task.model_noun} here: {first['reason'].rstrip('.')}.")

    def check(model) -> None:
        for method in list(runnable):
            try:
                check_fits(model, method, config.group_size)
            except LabError as err:
                refuse(method, str(err))

    parent = prepare_parent(config, ctx, check=check)
    results = []
    for i, method in enumerate(runnable):
        ctx.report(0.15 + 0.85 * i / len(runnable), f"{method}: quantizing and measuring")
        try:
            quantized, report = quantize_model(parent.model, task.quantize_data(parent), method, refusals[method][0],
                                               config.calibration_batches, group_size=config.group_size)
        except LabError as err:
            unavailable.append({"method": method, "reason": str(err)})
            continue
        run = store_child(ctx, parent, quantized, Child(
            "quantize", method, _label(method, report), {**config.to_dict(), "method": method},
            task.quantize_notes(parent, method, report), input_dtype=METHODS[method].input_dtype,
            float_model=parent.model))
        results.append({**as_record(run), "method": method})
        if ctx.cancelled():
            break
    ctx.report(1.0, f"Stored {len(results)} quantized run(s)")
    return {"baseline": parent.as_baseline(), "results": results, "unavailable": unavailable}


def _label(method: str, report: dict) -> str:
    """The method's label, with its group size where it has one ("Packed int4 weights, group 32")."""
    group = report.get("group_size")
    return METHODS.label(method) + (f", group {group}" if group else "")

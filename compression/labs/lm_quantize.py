"""The quantize lab on a language model: each method applied to the parent's Linear layers, measured next to it
(perplexity, prefill and decode) and timed with it at both, stored as a child run. Static int8 needs an FX graph
with calibrated activation ranges, which a KV-cached decoder does not give; it is reported unavailable."""
from __future__ import annotations

from ..errors import LabError
from ..techniques.quantize import METHODS, availability, quantize_model
from .baseline import Child
from .configs import QuantizeLabConfig
from .context import RunContext
from .lm_child import prepare_lm_parent, store_lm_child
from .records import as_record

NOT_FOR_LANGUAGE_MODELS = {
    "static_int8": "static int8 calibrates the activation ranges of an FX graph, and a language model's decode "
                   "loop (its key-value cache) is not one graph; use dynamic_int8, which quantizes each batch's "
                   "activations on the fly"}
# what the speed-up of each method means on a CPU, said next to the figure
SPEED_NOTES = {
    "dynamic_int8": "int8 matrix multiplies (torch.ao, {engine} engine) for every Linear layer; attention's own "
                    "products and the norms stay fp32",
    "weight_only_int8": "simulated: the weights are stored as int8 and turned back into fp32 for every multiply, "
                        "so it is smaller and slower on a CPU",
    "fp16": "half precision: half the size; most CPUs have no fast fp16 kernels, so it runs slower here",
    "bf16": "bfloat16: half the size; fast only on CPUs with AMX or AVX512-BF16 (else slower)",
}


def run_quantize_lm(config: QuantizeLabConfig, ctx: RunContext) -> dict:
    parent = prepare_lm_parent(config, ctx)
    results, unavailable = [], []
    for i, method in enumerate(config.methods):
        ctx.report(0.15 + 0.85 * i / len(config.methods), f"{method}: quantizing and measuring")
        reason = NOT_FOR_LANGUAGE_MODELS.get(method) or availability(method, "cpu")
        if reason:
            unavailable.append({"method": method, "reason": reason})
            continue
        try:
            quantized, report = quantize_model(parent.model, None, method, "cpu")
        except LabError as err:
            unavailable.append({"method": method, "reason": str(err)})
            continue
        report["speed_note"] = SPEED_NOTES[method].format(engine=report.get("engine"))
        # int8 kernels do the same multiply-accumulates as the float model (the counter does not see them)
        report["macs_per_token"] = parent.record["macs_per_token"]
        run = store_lm_child(ctx, parent, quantized, Child("quantize", method, METHODS.label(method),
                                                           {**config.to_dict(), "method": method}, report))
        results.append({**as_record(run), "method": method})
        if ctx.cancelled():
            break
    ctx.report(1.0, f"Stored {len(results)} quantized run(s)")
    return {"baseline": parent.as_baseline(), "results": results, "unavailable": unavailable}

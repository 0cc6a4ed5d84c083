"""What each quantization method means for a language model: which it cannot take, and what its speed-up means on
a CPU (said next to the figure): which kernel ran, its group size, its bits per weight and the weights' bytes."""
from __future__ import annotations

NOT_FOR_LANGUAGE_MODELS = {
    "static_int8": "static int8 calibrates the activation ranges of an FX graph, and a language model's decode "
                   "loop (its key-value cache) is not one graph; use dynamic_int8, which quantizes each batch's "
                   "activations on the fly, or int8_packed / int4_packed, which quantize the weights only"}
SPEED_NOTES = {
    "dynamic_int8": "int8 matrix multiplies (torch.ao, {engine} engine) for every Linear layer; attention's own "
                    "products and the norms stay fp32",
    "weight_only_int8": "simulated: the weights are stored as int8 and turned back into fp32 for every multiply, "
                        "so it is smaller and slower on a CPU (int8_packed multiplies the int8 weights directly)",
    "int8_packed": "{kernel} on int8 weights for one decode step (up to {packed_rows} rows), a {prefill_gemm} GEMM "
                   "on weights dequantized once per call for a prefill; {bits_per_weight:.2f} bits per weight",
    "int4_packed": "{kernel} on 4-bit weights in groups of {group_size} for one decode step (up to {packed_rows} "
                   "rows), a {prefill_gemm} GEMM on weights dequantized once per call for a prefill; "
                   "{bits_per_weight:.2f} bits per weight (scales and zeros included)",
    "bf16_linear": "{kernel} on bf16 weights; norms and attention stay fp32",
    "fp16": "half precision: half the size; most CPUs have no fast fp16 kernels, so it runs slower here",
    "bf16": "bfloat16: half the size; fast only on CPUs with AMX or AVX512-BF16 (else slower)",
}
# Why a small model's decode barely moves, whatever the bits: each step calls ~10 small kernels per block, a few
# microseconds each, and that per-call cost (not reading the weights) sets its pace until the weights reach tens of MB.
SMALL_MODEL_BYTES = 20_000_000


def quantize_notes(parent_record: dict, method: str, report: dict) -> dict:
    """The report of a language model's quantized child, with its speed note and the weights' bytes it reads per
    decoded token (the quantized layers', against their fp32 bytes)."""
    note = SPEED_NOTES[method].format(engine=report.get("engine"), **{k: v for k, v in report.items()
                                                                         if k != "engine"})
    if report.get("weight_bytes"):
        note += (f"; the quantized layers' weights are {report['weight_bytes'] / 1e6:.2f} MB "
                 f"(fp32: {report['float_weight_bytes'] / 1e6:.2f} MB)")
        if report["float_weight_bytes"] < SMALL_MODEL_BYTES:
            note += ("; a model this small is paced by per-call overhead, not by reading its weights, so expect "
                     "little or no decode speed-up")
    report["speed_note"] = note
    # the kernels do the same multiply-accumulates as the float model (the counter does not see them)
    report["macs_per_token"] = parent_record["macs_per_token"]
    return report

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
SMALL_MODEL_WHY = (
    "A small model (the lab's gpt: a few MB of weights) decodes no faster with fewer bits: its weights sit in the "
    "CPU's caches, so a step's time is its kernel calls (about ten per block, each a few microseconds of Python "
    "and dispatch), and a weight-only layer adds a conversion to bf16 and back to each. Fewer bits pay off once "
    "the weights are tens of MB or more, as in the 135M-parameter model these figures come from.")
# Measured, not computed: a SmolLM2-135M-shaped Llama (random weights), each method timed against fp32 in the same
# process, interleaved (median speed-up and its interquartile range); shown on the Quantize page and in the README
MEASURED_ON = ("Measured on a SmolLM2-135M-shaped Llama (30 layers, hidden 576, random weights), each method "
               "against fp32 in interleaved pairs in one process, 2 threads of an Intel Xeon with AMX, torch 2.14, "
               "with other processes busy: decode is batch 1 with a key-value cache, prefill one call of 8 x 128 "
               "tokens. Your runs' own figures (timed with their parent) are below.")
MEASURED = {
    "dynamic_int8": {"decode": "1.59x [1.51, 1.63]", "prefill": "1.74x [1.65, 1.87]", "bits": "8"},
    "weight_only_int8": {"decode": "0.47x [0.44, 0.50]", "prefill": "0.95x [0.89, 1.04]", "bits": "8"},
    "int8_packed": {"decode": "1.27x [1.21, 1.30]", "prefill": "1.42x [1.38, 1.48]", "bits": "8.02"},
    "int4_packed": {"decode": "group 32: 1.68x [1.62, 1.81]; group 64: 1.85x [1.71, 2.04]",
                    "prefill": "group 32: 1.23x [1.22, 1.26]; group 64: 1.69x [1.41, 2.00]", "bits": "5.0 / 4.5"},
    "bf16_linear": {"decode": "0.81x [0.80, 0.83]", "prefill": "1.97x [1.88, 2.12]", "bits": "16"},
    "bf16": {"decode": "0.82x [0.79, 0.86]", "prefill": "2.46x [2.42, 2.51]", "bits": "16"},
}


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

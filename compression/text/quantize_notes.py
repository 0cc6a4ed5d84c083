"""What each quantization method means for a language model: which it cannot take, and what its speed-up means on
a CPU (said next to the figure)."""
from __future__ import annotations

NOT_FOR_LANGUAGE_MODELS = {
    "static_int8": "static int8 calibrates the activation ranges of an FX graph, and a language model's decode "
                   "loop (its key-value cache) is not one graph; use dynamic_int8, which quantizes each batch's "
                   "activations on the fly"}
SPEED_NOTES = {
    "dynamic_int8": "int8 matrix multiplies (torch.ao, {engine} engine) for every Linear layer; attention's own "
                    "products and the norms stay fp32",
    "weight_only_int8": "simulated: the weights are stored as int8 and turned back into fp32 for every multiply, "
                        "so it is smaller and slower on a CPU",
    "fp16": "half precision: half the size; most CPUs have no fast fp16 kernels, so it runs slower here",
    "bf16": "bfloat16: half the size; fast only on CPUs with AMX or AVX512-BF16 (else slower)",
}

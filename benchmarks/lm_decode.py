"""Batch-1 decode of a SmolLM2-135M-shaped Llama, every language-model quantize method against fp32, and how close
each comes to the memory floor (issue 33). Last stdout line: one JSON document.

The model is transformers' LlamaForCausalLM built from a config with SmolLM2-135M's shape (30 layers, hidden 576,
MLP 1536, 9 query heads in 3 KV groups, vocabulary 49,152, tied embeddings), random weights (speed only: nothing is
downloaded), wrapped as the lab wraps a Hugging Face model (text.models.HFCausalLM). Each method in
techniques.quantize.METHODS that the text task does not refuse (tasks.text.quantize_refusal) quantizes a copy
(quantize_model(model, None, method, "cpu", 1): no calibration data, as the lab passes none for text); a refused
or failing method is printed as skipped with its reason. Each is timed against fp32 by the lab's paired timing
(core.paired.time_pair_on: interleaved rounds in this process, the same prompt, adaptive until the CI is 15% wide
or ROUND_BUDGET_S) on the decode workload the lab times (text.measure.phase_workload(model, "decode", CONTEXT):
CONTEXT - 1 cached steps from a one-token prompt).

floor_fraction = (weight bytes a step reads / the machine's read bandwidth, core.bandwidth) / measured time per
token: 1.0 is every weight read once at full memory speed; fp32's is printed too. Where no method reaches 1.8x the
JSON names the kernel that was missing (`missing_kernel`).

Measured on 2 CPU cores (AVX512/AMX Xeon, torch 2.14, transformers 5.23), `.venv/bin/python
benchmarks/lm_decode.py`, 4 minutes with other processes busy at times (paired timings, so the ratios hold better
than the absolute ms): bandwidth 22.4 GB/s; fp32 42 ms/token, 57% of its floor (538 MB a token); int4_packed 1.88x
[1.79, 2.07] (84 MB, 18% of its floor), dynamic_int8 1.63x [1.49, 1.77], int8_packed 1.39x [1.33, 1.56],
bf16_linear 0.84x, fp16 0.90x, bf16 0.77x, weight_only_int8 0.46x [0.42, 0.51]; static_int8 skipped (refused for
language models). Quantized, the model is overhead-bound: fewer layers, not fewer bytes, is what would speed it up.
"""
import copy
import statistics
import sys
import time

import torch
from _common import emit

from compression.core.bandwidth import memory_bandwidth, weight_bytes_per_token
from compression.core.paired import time_pair_on
from compression.core.timing import AdaptiveRounds, machine_fingerprint
from compression.tasks import TEXT_TASK
from compression.techniques.quantize import METHODS, quantize_model
from compression.text.measure import phase_workload
from compression.text.models import HFCausalLM

SHAPE = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
             num_key_value_heads=3, vocab_size=49_152, tie_word_embeddings=True, max_position_embeddings=2048)
CONTEXT = 9              # phase_workload's decode: context - 1 = 8 cached steps a call (fp32: ~0.3 s on 2 cores)
ROUND_BUDGET_S = 8.0     # per method: rounds until the CI is TARGET_REL_CI wide, or this long (at least 5 rounds)
GOAL = 1.8
# What lets a batch-1 decode read fewer bytes without paying for it in overhead: (name, aten op or None, how a
# method that runs it is recognised from its name and its report's `kernels`)
KERNELS = (("packed int4 weights multiplied directly", "_weight_int4pack_mm_for_cpu", ("int4",)),
           ("packed int8 weights multiplied directly", "_weight_int8pack_mm", ("int8",)),
           ("bf16 matrix multiplies in hardware (AMX / AVX512-BF16)", None, ("bf16",)))


def smollm2_shaped() -> HFCausalLM:
    """The Llama, random weights, behind the lab's wrapper. The tokenizer is a one-word stand-in: decode speed
    never reads it, and a real one would need a download or a training run."""
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SHAPE)).eval()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")))
    return HFCausalLM(model, tokenizer, "smollm2-135m-shaped (random weights)")


def floor_fraction(weight_bytes: int, ms_per_token: float, gb_s: float) -> float:
    return weight_bytes / (gb_s * 1e9) * 1e3 / ms_per_token


def uses(kernel: tuple, name: str, report: dict) -> bool:
    """Did `name` run this kernel: its name or its kernels say so, and it is not int8 storage with fp32 compute."""
    words = f"{name} {report.get('kernels', '')}".lower()
    return any(w in words for w in kernel[2]) and "fp32 compute" not in words


def missing_kernel(methods: dict, reports: dict) -> str | None:
    """None where a method reached GOAL; else the first kernel of KERNELS that no timed method ran, and why."""
    if not methods:
        return "no method could be timed: every one was skipped (see skipped)"
    best = max(methods, key=lambda m: methods[m]["speedup"])
    if reached(methods[best]):
        return None
    doubt = " (the timings were noisy: run it again on a quiet machine)" if methods[best]["noisy"] else ""
    flags = set(machine_fingerprint("cpu")["details"]["cpu_simd"])
    for kernel in KERNELS:
        name, op = kernel[0], kernel[1]
        if any(uses(kernel, m, reports[m]) for m in methods):
            continue
        if op and not hasattr(torch.ops.aten, op):
            return f"{name}: this torch build has no aten.{op}{doubt}"
        if op is None and not flags & {"amx_bf16", "avx512_bf16"}:
            return f"{name}: this CPU has neither{doubt}"
        return f"{name}: {'aten.' + op if op else 'the hardware'} is here, but no quantize method runs it{doubt}"
    return (f"none: every kernel ran, and the best ({best}, {methods[best]['speedup']:.2f}x) reached "
            f"{methods[best]['floor_fraction']:.0%} of its memory floor: per-layer overhead, not bytes, limits it"
            + doubt)


def reached(method: dict) -> bool:
    """The goal, from a timing that can be quoted: a noisy one (load, or a CI too wide) does not count."""
    return method["speedup"] >= GOAL and not method["noisy"]


def main() -> None:
    began = time.perf_counter()
    model = smollm2_shaped()
    bandwidth = memory_bandwidth()
    gb_s = bandwidth["gb_s"]
    timed_fp32, prompt, tokens = phase_workload(model, "decode", CONTEXT)
    fp32_bytes = weight_bytes_per_token(model)
    print(f"SmolLM2-135M-shaped Llama, {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters, "
          f"{fp32_bytes / 1e6:.0f} MB read per token in fp32; memory read bandwidth {gb_s:.1f} GB/s "
          f"({bandwidth['method']}); batch-1 decode, {tokens} tokens a call, {torch.get_num_threads()} threads",
          flush=True)
    methods, skipped, reports, fp32_ms = {}, {}, {}, []
    for name in METHODS.names():
        quantized = None
        try:  # the text task's refusal: a reason returned, or (as it may be asked to) raised
            _, reason = TEXT_TASK.quantize_refusal(name, "cpu")
            if reason:
                raise RuntimeError(reason)
            quantized, reports[name] = quantize_model(copy.deepcopy(model), None, name, "cpu", 1)
            timed, _, _ = phase_workload(quantized, "decode", CONTEXT)
            pair = time_pair_on(timed_fp32, timed, prompt, prompt,
                                rounds=AdaptiveRounds(ROUND_BUDGET_S, least=5, processes=1))
        except Exception as err:  # refused, unavailable here, or failing on this model: said, not raised
            skipped[name] = (str(err).splitlines() or [type(err).__name__])[0][:240]
            print(f"{name:>18}: skipped: {skipped[name]}", flush=True)
            continue
        ms_a, ms_b = pair["latency_a_ms"] / tokens, pair["latency_b_ms"] / tokens
        fp32_ms.append(ms_a)
        weight_bytes = weight_bytes_per_token(quantized)
        methods[name] = {"speedup": round(pair["speedup"], 3), "ci95": [round(v, 3) for v in pair["ci95"]],
                         "floor_fraction": round(floor_fraction(weight_bytes, ms_b, gb_s), 3),
                         "ms_per_token": round(ms_b, 2), "weight_bytes_per_token": weight_bytes,
                         "fp32_floor_fraction_in_pair": round(floor_fraction(fp32_bytes, ms_a, gb_s), 3),
                         "kernels": reports[name]["kernels"], "rounds": pair["rounds"], "load": pair["load"],
                         "noisy": pair["noisy"]}
        m = methods[name]
        print(f"{name:>18}: {m['speedup']:.2f}x [{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}] against fp32, "
              f"{ms_b:.1f} ms/token, {weight_bytes / 1e6:.0f} MB a token, {m['floor_fraction']:.0%} of its memory "
              f"floor ({m['kernels']}){' (noisy)' if pair['noisy'] else ''}", flush=True)
        del quantized, timed
    fp32 = {}
    if fp32_ms:
        ms = statistics.median(fp32_ms)
        fp32 = {"ms_per_token": round(ms, 2), "weight_bytes_per_token": fp32_bytes,
                "floor_fraction": round(floor_fraction(fp32_bytes, ms, gb_s), 3)}
        print(f"{'fp32':>18}: {ms:.1f} ms/token, {fp32['floor_fraction']:.0%} of its memory floor", flush=True)
    missing = missing_kernel(methods, reports)
    if missing:
        print(f"no method reached {GOAL}x in a quotable timing; missing kernel: {missing}", flush=True)
    emit({"benchmark": "lm_decode", "model": "SmolLM2-135M-shaped Llama (random weights)", "shape": SHAPE,
          "decode_tokens": tokens, "methods": methods, "skipped": skipped, "fp32": fp32, "bandwidth_gb_s": gb_s,
          "bandwidth": {k: bandwidth.get(k) for k in ("method", "median_gb_s", "noisy", "measured_at")},
          "goal": GOAL, "reached_goal": [m for m in methods if reached(methods[m])],
          "missing_kernel": missing, "machine": machine_fingerprint("cpu")["id"],
          "load": max([m["load"] for m in methods.values()], default=None),
          "wall_s": round(time.perf_counter() - began, 1)})


if __name__ == "__main__":
    sys.exit(main())

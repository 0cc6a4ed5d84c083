"""Quantization and a three-stage pipeline on digits; speed-ups timed as interleaved A/B pairs.

- static_int8 on cnn:width=64: CPU speed-up at batch 256 (goal >= 1.5x), accuracy drop (goal <= 0.5 pt)
- dynamic_int8 on mlp:hidden=256-256: size ratio (goal <= 0.3), drop (goal <= 0.3 pt), speed ratio
- prune:channel_l1=0.5 -> finetune:5 -> quantize:static_int8 on cnn:width=64:
  >= 4x smaller, >= 2x faster, <= 1 pt drop
"""
import _common
import torch

from compression import (BaselineConfig, PipelineLabConfig, QuantizeLabConfig, RunStore, get_baseline, load_dataset,
                         run_pipeline, run_quantize, speedup)
from compression.store.artifacts import load_run_model

BATCH = 256


def paired(model_a, model_b) -> dict:
    """Interleaved A/B timing at the benchmark batch (compression.speedup): the ratio, its 95% CI, and whether
    other processes disturbed it."""
    example = torch.randn(BATCH, *load_dataset("digits").input_shape)
    result = speedup(model_a, model_b, example)
    return {"cpu_speedup_b256": round(result["speedup"], 2), "speedup_ci95": [round(v, 2) for v in result["ci95"]],
            "timing_noisy": result["noisy"]}


def quantize_figures(model_spec, method):
    base_model, _ = get_baseline(BaselineConfig(dataset="digits", model=model_spec, epochs=10, latency_batch=BATCH))
    out = run_quantize(QuantizeLabConfig(methods=[method], dataset="digits", model=model_spec, epochs=10,
                                         latency_batch=BATCH))
    base, result = out["baseline"], out["results"][0]
    quantized = load_run_model(RunStore().get_run(result["run_id"])["weights_path"])
    return {"model": model_spec, "method": method, "kernels": result["kernels"],
            "baseline_accuracy": round(base["accuracy"], 4), "accuracy": round(result["accuracy"], 4),
            "drop_pt": round(100 * (base["accuracy"] - result["accuracy"]), 2),
            "size_ratio": round(result["size_bytes"] / base["size_bytes"], 3), **paired(base_model, quantized)}


def pipeline_figures(model_spec, steps):
    base_model, _ = get_baseline(BaselineConfig(dataset="digits", model=model_spec, epochs=10, latency_batch=BATCH))
    out = run_pipeline(PipelineLabConfig(steps=steps, dataset="digits", model=model_spec, epochs=10,
                                         latency_batch=BATCH))
    base, final = out["baseline"], out["stages"][-1]
    final_model = load_run_model(RunStore().get_run(final["run_id"])["weights_path"])
    return {"model": model_spec, "steps": steps, "baseline_accuracy": round(base["accuracy"], 4),
            "accuracy": round(final["accuracy"], 4), "drop_pt": round(100 * (base["accuracy"] - final["accuracy"]), 2),
            "smaller_x": round(base["size_bytes"] / final["size_bytes"], 2), **paired(base_model, final_model),
            "stages": [{"label": s["label"], "accuracy": round(s["accuracy"], 4), "size_bytes": s["size_bytes"]}
                       for s in out["stages"]]}


if __name__ == "__main__":
    static = quantize_figures("cnn:width=64", "static_int8")
    dynamic = quantize_figures("mlp:hidden=256-256", "dynamic_int8")
    pipe = pipeline_figures("cnn:width=64", "prune:channel_l1=0.5,finetune:5,quantize:static_int8")
    from compression.core.measure import cpu_simd
    _common.emit({"benchmark": "quantize", "dataset": "digits", "device": "cpu", "batch_size": BATCH,
                  "cpu_simd": cpu_simd(), "note": "int8 kernels gain most with VNNI/AMX; this list shows what the CPU has",
                  "static_int8_cnn64": static, "dynamic_int8_mlp256": dynamic, "pipeline_cnn64": pipe,
                  "ratio": static["cpu_speedup_b256"],
                  "goals_met": {"static_speedup_ge_1.5x": static["cpu_speedup_b256"] >= 1.5,
                                "static_drop_le_0.5pt": static["drop_pt"] <= 0.5,
                                "dynamic_size_le_0.3": dynamic["size_ratio"] <= 0.3,
                                "dynamic_drop_le_0.3pt": dynamic["drop_pt"] <= 0.3,
                                "pipeline_smaller_ge_4x": pipe["smaller_x"] >= 4,
                                "pipeline_faster_ge_2x": pipe["cpu_speedup_b256"] >= 2,
                                "pipeline_drop_le_1pt": pipe["drop_pt"] <= 1}})

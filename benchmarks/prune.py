"""Pruning on digits, each figure measured side by side with its baseline in one process.

- global_l1 at 90% + fine-tuning on mlp:hidden=256-256: accuracy drop (goal <= 0.5 pt); pruned gradually
  (AGP, 3 steps x 3 fine-tune epochs): one-shot 90% with 5 epochs lost 1.4 pt in our runs
- channel_l1 at 50% on cnn:width=64: CPU speed-up at batch 256 (goal >= 2.0x), drop (goal <= 1 pt)
- unstructured 90%: latency ratio (expect ~1.0x) and gzip size ratio
"""
import _common

from compression import PruneLabConfig, RunContext, run_prune
from compression.core.measure import latency_of

BATCH = 256


def sweep(model, method, sparsity, finetune, schedule="oneshot", steps=1):
    out = run_prune(PruneLabConfig(sparsities=[sparsity], method=method, finetune_epochs=finetune, schedule=schedule,
                                   steps=steps, dataset="digits", model=model, epochs=10, seed=0,
                                   latency_batch=BATCH), RunContext(latency_time=1.0))
    base, result = out["baseline"], out["results"][0]
    return {"model": model, "method": method, "sparsity": sparsity, "finetune_epochs": finetune,
            "schedule": schedule, "steps": steps,
            "baseline_accuracy": round(base["accuracy"], 4), "accuracy": round(result["accuracy"], 4),
            "drop_pt": round(100 * (base["accuracy"] - result["accuracy"]), 2),
            "cpu_speedup_b256": round(latency_of(base, "cpu", BATCH) / latency_of(result, "cpu", BATCH), 2),
            "predicted_speedup_macs": round(result["speedup_predicted_macs"], 2),
            "gzip_ratio": round(result["gzip_bytes"] / base["gzip_bytes"], 3),
            "params_ratio": round(result["params"] / base["params"], 3),
            "nonzero_ratio": round(result["nonzero_params"] / base["nonzero_params"], 3)}


if __name__ == "__main__":
    global_90 = sweep("mlp:hidden=256-256", "global_l1", 0.9, 9, "iterative", 3)
    channel_50 = sweep("cnn:width=64", "channel_l1", 0.5, 5)
    _common.emit({"benchmark": "prune", "dataset": "digits", "device": "cpu", "batch_size": BATCH,
                  "global_l1_90": global_90, "channel_l1_50": channel_50,
                  "unstructured_90_latency_ratio": global_90["cpu_speedup_b256"],
                  "unstructured_90_gzip_ratio": global_90["gzip_ratio"],
                  "ratio": channel_50["cpu_speedup_b256"],
                  "goals_met": {"global_l1_90_drop_le_0.5pt": global_90["drop_pt"] <= 0.5,
                                "channel_l1_50_speedup_ge_2x": channel_50["cpu_speedup_b256"] >= 2.0,
                                "channel_l1_50_drop_le_1pt": channel_50["drop_pt"] <= 1.0}})

"""Language models, part 2: the Wanda paper's table (arXiv 2306.11695, Table 3's layout) at our scale. One JSON line.

The default `gpt` trained on `pydoc` (seed 0), pruned without fine-tuning by magnitude, Wanda and SparseGPT at
50% unstructured and at 2:4, through the prune lab (calibration: 32 training sequences), test perplexity each:

- table: {"50%": {"dense", "magnitude", "wanda", "sparsegpt"}, "2:4": {...}};
- increase_ratio: SparseGPT's perplexity increase over dense as a share of magnitude's (goal: at most 0.75 at 50%
  and 0.5 at 2:4, the paper's direction);
- speedup: each pruned model's paired prefill speed-up over the dense one (size only on a CPU: about 1x).

The paper's LLaMA-7B figures, for the reading: dense 5.68; 50%: magnitude 17.29, SparseGPT 7.22, Wanda 7.26;
2:4: magnitude 42.13, SparseGPT 11.00, Wanda 11.53.
"""
import time

from _common import emit

from compression import BaselineConfig, RunContext, get_baseline
from compression.labs.configs import PruneLabConfig
from compression.labs.prune import run_prune

METHODS = ("magnitude", "wanda", "sparsegpt")
SHAPES = {"50%": {"sparsities": [0.5]}, "2:4": {"pattern": "2:4"}}


def main() -> None:
    start = time.perf_counter()
    _, parent = get_baseline(BaselineConfig(dataset="pydoc", model="gpt", seed=0), RunContext())
    trained_s = time.perf_counter() - start
    dense = parent["record"]["perplexity"]
    table, speed, seconds = {}, {}, {}
    for shape, options in SHAPES.items():
        table[shape] = {"dense": round(dense, 3)}
        for method in METHODS:
            began = time.perf_counter()
            out = run_prune(PruneLabConfig(from_run=parent["id"], method=method, finetune_epochs=0, **options),
                            RunContext())
            row = out["results"][0]
            seconds[f"{method} {shape}"] = round(time.perf_counter() - began, 1)
            table[shape][method] = round(row["perplexity"], 3)
            speed[f"{method} {shape}"] = [round(row["speedup_cpu_b8"], 3),
                                         [round(v, 3) for v in row["speedup_cpu_b8_ci95"]]]
    ratio = {shape: round((row["sparsegpt"] - dense) / (row["magnitude"] - dense), 3)
             if row["magnitude"] > dense else None for shape, row in table.items()}
    emit({"benchmark": "lm_compress", "model": "gpt (layers=4, width=128, heads=4, context=128)",
          "dataset": "pydoc", "baseline_run_s": round(trained_s, 1), "table": table,
          "sparsegpt_increase_over_magnitude": ratio, "goal": {"50%": 0.75, "2:4": 0.5},
          "prefill_speedup_ci95": speed, "prune_and_measure_s": seconds})


if __name__ == "__main__":
    main()

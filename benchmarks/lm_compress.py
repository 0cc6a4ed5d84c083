"""Language models, part 2: the Wanda paper's table (arXiv 2306.11695, Table 3's layout) at our scale. One JSON line.

The default `gpt` trained on `pydoc` (seed 0), pruned without fine-tuning by magnitude, Wanda and SparseGPT at
50% unstructured and at 2:4, through the prune lab (calibration: 32 training sequences), test perplexity each:

- table: {"50%": {"dense", "magnitude", "wanda", "sparsegpt"}, "2:4": {...}};
- increase_ratio: SparseGPT's perplexity increase over dense as a share of magnitude's (goal: at most 0.75 at 50%
  and 0.5 at 2:4, the paper's direction);
- speedup: each pruned model's paired prefill speed-up over the dense one (size only on a CPU: about 1x);
- structured: heads_mlp and depth at 50%, each fine-tuned 3 epochs with the dense model as teacher, re-timed with it
  in fresh processes (`speedup PARENT RUN`, prefill at the record's batch; goal for heads_mlp: at least 1.5x, at a
  perplexity at most 15% above dense);
- distillation: gpt:layers=2,width=64 trained alone and distilled (T=2, alpha 0.5, 350 steps each), the gap closed
  in perplexity; and Minitron's comparison: half the heads and MLP units cut from the teacher then distilled,
  against the same shapes distilled from random initialisation (288 steps each);
- dynamic_int8: the quantize lab's int8 run (torch.ao, its engine), re-timed with the dense model in fresh processes
  (prefill and decode), its perplexity; and torchao's Int8DynamicActivationInt8WeightConfig timed against it in
  pairs, the measurement that picks which engine the lab uses.

The paper's LLaMA-7B figures, for the reading: dense 5.68; 50%: magnitude 17.29, SparseGPT 7.22, Wanda 7.26;
2:4: magnitude 42.13, SparseGPT 11.00, Wanda 11.53.
"""
import time

from _common import emit

from compression import BaselineConfig, RunContext, get_baseline
from compression.labs.configs import PruneLabConfig, QuantizeLabConfig, RetimeConfig
from compression.labs.prune import run_prune
from compression.labs.quantize import run_quantize
from compression.labs.speed import retime

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
    structured = {method: structured_pruning(parent, method) for method in ("heads_mlp", "depth")}
    int8 = dynamic_int8(parent)
    distilled = distillation(parent)
    ratio = {shape: round((row["sparsegpt"] - dense) / (row["magnitude"] - dense), 3)
             if row["magnitude"] > dense else None for shape, row in table.items()}
    emit({"benchmark": "lm_compress", "model": "gpt (layers=4, width=128, heads=4, context=128)",
          "dataset": "pydoc", "baseline_run_s": round(trained_s, 1), "table": table,
          "sparsegpt_increase_over_magnitude": ratio, "goal": {"50%": 0.75, "2:4": 0.5},
          "prefill_speedup_ci95": speed, "prune_and_measure_s": seconds, "structured": structured,
          "dynamic_int8": int8, "distillation": distilled})


def distillation(parent: dict) -> dict:
    from compression.labs.configs import DistillLabConfig
    from compression.labs.distill import run_distill
    small = run_distill(DistillLabConfig(dataset="pydoc", teacher=str(parent["id"]), temperatures=[2.0], alpha=0.5,
                                         student="gpt:layers=2,width=64,heads=4,context=128"), RunContext())
    minitron = run_distill(DistillLabConfig(dataset="pydoc", teacher=str(parent["id"]), temperatures=[2.0],
                                            alpha=0.5, student="pruned:heads_mlp=0.5", student_steps=288),
                           RunContext())
    return {"teacher": round(parent["record"]["perplexity"], 3),
            "small_alone": round(small["student_plain"][0]["perplexity"], 3),
            "small_distilled": round(small["student_kd"][0]["perplexity"], 3),
            "gap_closed": round(small["gap_closed"], 3),
            "minitron": {k: round(v, 3) for k, v in minitron["minitron"].items()}}


def structured_pruning(parent: dict, method: str) -> dict:
    ctx = RunContext()
    began = time.perf_counter()
    row = run_prune(PruneLabConfig(from_run=parent["id"], method=method, sparsities=[0.5], finetune_epochs=3,
                                   distill=True), ctx)["results"][0]
    out = {"perplexity": round(row["perplexity"], 3),
           "perplexity_increase": round(row["perplexity"] / parent["record"]["perplexity"] - 1, 4),
           "params_ratio": round(row["params"] / parent["record"]["params"], 3),
           "finetune_steps": row["finetune_history"][-1]["steps"], "prune_and_finetune_s":
           round(time.perf_counter() - began, 1)}
    for phase in ("prefill", "decode"):
        timing = retime(ctx.store, RetimeConfig(run_a=parent["id"], run_b=row["run_id"], phase=phase))
        out[phase] = {"speedup": round(timing["speedup"], 3), "ci95": [round(v, 3) for v in timing["ci95"]],
                      "noisy": timing["noisy"], "batch": timing["batch_size"]}
    return out


def dynamic_int8(parent: dict) -> dict:
    import copy

    import torch
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    from compression.core.speedup import paired_speedup
    from compression.store.artifacts import load_run_model
    ctx = RunContext()
    row = run_quantize(QuantizeLabConfig(from_run=parent["id"], methods=["dynamic_int8"]), ctx)["results"][0]
    out = {"engine": row["engine"], "perplexity": round(row["perplexity"], 3),
           "size_ratio": round(row["size_bytes"] / parent["record"]["size_bytes"], 3)}
    for phase in ("prefill", "decode"):
        timing = retime(ctx.store, RetimeConfig(run_a=parent["id"], run_b=row["run_id"], phase=phase))
        out[phase] = {"speedup": round(timing["speedup"], 3), "ci95": [round(v, 3) for v in timing["ci95"]],
                      "noisy": timing["noisy"], "batch": timing["batch_size"]}
    # torchao's dynamic int8 against torch.ao's, prefill at the record's batch (in this process: its tensor
    # subclasses need torchao in the timing process too)
    torch_ao = load_run_model(ctx.store.get_run(row["run_id"])["weights_path"])
    torchao_model = copy.deepcopy(load_run_model(parent["weights_path"])).eval()
    quantize_(torchao_model, Int8DynamicActivationInt8WeightConfig())
    x = torch.zeros(8, parent["config"]["context"], dtype=torch.long)
    versus = paired_speedup(torch_ao, torchao_model, x, rounds=15)
    out["torchao_over_torch_ao_prefill"] = {"speedup": round(versus["speedup"], 3),
                                            "ci95": [round(v, 3) for v in versus["ci95"]], "noisy": versus["noisy"]}
    return out


if __name__ == "__main__":
    main()

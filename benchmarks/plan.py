"""Budget-first compression on digits: the issue's two "done when" plans, run as a user runs them (the CLI).

- latency: `plan --model cnn:width=64 --epochs 10 --target latency=0.4 --max-drop 1.0 --trials 12 --seed 0`:
  best meets (goal), an independent `speedup BASELINE BEST` (goal >= 2.2x), drop (goal <= 1 pt), wall (<= 400 s)
- size: `plan --model mlp:hidden=300-100 --epochs 20 --target size=0.025 ...`: the best run exported with
  `--format compressed` against the baseline's fp32 size_bytes (goal >= 30x; the paper's 40x is the target),
  `compression.load_compressed` gives exactly the recorded accuracy (goal), drop (goal <= 1 pt), wall (<= 400 s)
Each plan starts from a stored baseline, trained first with `train` and timed apart (train_s).
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> tuple[dict, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "compression", *args, "--json", "--quiet"], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ))
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout), time.perf_counter() - start


def plan(model: str, epochs: int, target: str) -> dict:
    common = ["--dataset", "digits", "--model", model, "--epochs", str(epochs), "--seed", "0"]
    _, train_s = cli("train", *common)
    out, wall = cli("plan", *common, "--target", target, "--max-drop", "1.0", "--trials", "12")
    best, base = out["best"], out["baseline"]
    return {"model": model, "target": target, "train_s": round(train_s, 1), "wall_s": round(wall, 1),
            "baseline_run": base["run_id"], "best_run": best["run_id"], "meets": best["meets"], "why": best["why"],
            "best_label": best.get("label"), "baseline_accuracy": round(base["accuracy"], 4),
            "accuracy": round(best["accuracy"], 4), "drop_pt": round(best["accuracy_drop_pt"], 2),
            "plan_speedup": round(best["speedup"], 2), "plan_speedup_ci95": [round(v, 2) for v in best["ci95"]],
            "size_bytes": best["size_bytes"], "baseline_size_bytes": base["size_bytes"],
            "finished_trials": sum(t["status"] == "complete" for t in out["trials"]),
            "stopped_early": sum(t["status"] == "pruned" for t in out["trials"])}


def independent_speedup(result: dict) -> None:
    out, _ = cli("speedup", str(result["baseline_run"]), str(result["best_run"]))
    result["independent_speedup"] = round(out["speedup"], 2)
    result["independent_ci95"] = [round(v, 2) for v in out["ci95"]]
    result["independent_noisy"] = out["noisy"]


def exported(result: dict) -> None:
    import compression
    from compression.core.train import predict
    path = Path(tempfile.mkdtemp()) / "best.cldc"
    cli("export", str(result["best_run"]), "--format", "compressed", "--out", str(path))
    data = compression.load_dataset("digits")
    correct = int((predict(compression.load_compressed(path), data.x_test).argmax(1) == data.y_test).sum())
    result["file_bytes"] = path.stat().st_size
    result["ratio_vs_fp32"] = round(result["baseline_size_bytes"] / result["file_bytes"], 1)
    result["reloaded_accuracy"] = correct / len(data.y_test)
    result["reloaded_exact"] = result["reloaded_accuracy"] == result["accuracy_exact"]


if __name__ == "__main__":
    latency = plan("cnn:width=64", 10, "latency=0.4")
    independent_speedup(latency)
    size = plan("mlp:hidden=300-100", 20, "size=0.025")
    from compression import RunStore
    size["accuracy_exact"] = RunStore().get_run(size["best_run"])["record"]["accuracy"]  # unrounded, as stored
    exported(size)
    _common.emit({"benchmark": "plan", "dataset": "digits", "device": "cpu", "latency": latency, "size": size,
                  "ratio": size["ratio_vs_fp32"],
                  "goals_met": {"latency_meets": latency["meets"], "latency_speedup_ge_2.2x":
                                latency["independent_speedup"] >= 2.2, "latency_drop_le_1pt": latency["drop_pt"] <= 1,
                                "latency_wall_le_400s": latency["wall_s"] <= 400,
                                "size_ge_30x": size["ratio_vs_fp32"] >= 30, "size_reload_exact": size["reloaded_exact"],
                                "size_drop_le_1pt": size["drop_pt"] <= 1, "size_wall_le_400s": size["wall_s"] <= 400}})

"""Is a paired speed-up's CI calibrated across processes? Issue 23's check, as a benchmark.

- trains cnn:width=64 on digits and channel-prunes it 50% (one stored pair, in a throwaway lab folder)
- runs `python -m compression speedup A B --device cpu --batch-size 256 --json` in N fresh processes, one after
  another (`--runs N`, default 8; `--time-budget S` is passed on)
- prints one JSON line: the median and range of the point estimates; how often one run's 95% CI holds another
  run's point estimate (over all ordered pairs; the goal is 0.9 or more); how many runs were flagged (loaded,
  imprecise); the mean relative CI width (goal 0.12 or less); and each run's wall time (goal 15 s or less)

The machine should be quiet: the load each run saw is printed with it.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _common import emit

from compression import BaselineConfig, PruneLabConfig, RunContext, get_baseline, run_prune


def stored_pair() -> tuple[int, int]:
    ctx = RunContext(latency_time=0.05)
    base = dict(dataset="digits", model="cnn:width=64", epochs=3, latency_batch=256)
    _, parent = get_baseline(BaselineConfig(**base), ctx)
    out = run_prune(PruneLabConfig(**base, method="channel_l1", sparsities=[0.5], finetune_epochs=1), ctx)
    return parent["id"], out["results"][0]["run_id"]


def fresh_process_speedup(run_a: int, run_b: int, options: list[str]) -> dict:
    args = [sys.executable, "-m", "compression", "speedup", str(run_a), str(run_b), "--device", "cpu",
            "--batch-size", "256", "--json", "--quiet", *options]
    start = time.monotonic()
    done = subprocess.run(args, capture_output=True, text=True, env=os.environ, timeout=300)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return {**json.loads(done.stdout), "wall_s": time.monotonic() - start}


def coverage(runs: list[dict]) -> float:
    """The share of ordered pairs (i, j), i != j, where run i's CI holds run j's point estimate."""
    pairs = [(a, b) for a in runs for b in runs if a is not b]
    return sum(a["ci95"][0] <= b["speedup"] <= a["ci95"][1] for a, b in pairs) / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--time-budget", help="passed to the speedup verb")
    parser.add_argument("--rounds", help="passed to the speedup verb")
    parser.add_argument("--processes", help="passed to the speedup verb")
    args = parser.parse_args()
    options = [item for name in ("time_budget", "rounds", "processes") if getattr(args, name) is not None
               for item in ("--" + name.replace("_", "-"), getattr(args, name))]
    run_a, run_b = stored_pair()
    runs = [fresh_process_speedup(run_a, run_b, options) for _ in range(args.runs)]
    points = [r["speedup"] for r in runs]
    widths = [(r["ci95"][1] - r["ci95"][0]) / r["speedup"] for r in runs]
    emit({"benchmark": "speedup_calibration", "pair": "cnn:width=64 vs its channel_l1 50% child, batch 256",
          "runs": len(runs), "median": round(statistics.median(points), 3),
          "range": [round(min(points), 3), round(max(points), 3)],
          "coverage": round(coverage(runs), 3), "flagged": sum(bool(r["noisy"]) for r in runs),
          "loaded": sum(bool(r.get("loaded")) for r in runs), "imprecise": sum(bool(r.get("imprecise")) for r in runs),
          "mean_rel_ci_width": round(statistics.mean(widths), 3),
          "wall_s": [round(r["wall_s"], 1) for r in runs], "rounds": [r["rounds"] for r in runs],
          "load": [r["load"] for r in runs], "options": options,
          "per_run": [[round(r["speedup"], 3), [round(v, 3) for v in r["ci95"]]] for r in runs]})


if __name__ == "__main__":
    main()

"""Language models, part 1: the default gpt trained on pydoc, and decode speed measured in pairs. One JSON line:

- train_s: training the default `gpt` on `pydoc` with the default steps (goal: 120 s or less on 2 cores), with
  its test perplexity [95% CI] and bits per byte (goal: below 3.0; a uniform guess over bytes is 8)
- peak_rss_mb: this process's peak resident memory, training included
- decode: the paired decode speed-up (tokens/s at batch 1 with a KV cache) of gpt:width=64 over gpt:width=128,
  timed together in fresh processes (the lab's quotable path), with its CI
"""
import resource
import time

import torch
from _common import emit

from compression import BaselineConfig, RunContext, get_baseline
from compression.core.speedup import paired_speedup
from compression.core.timing import AdaptiveRounds
from compression.core.models import parse_spec
from compression.text.measure import DecodeLoop
from compression.text.models import build_language_model


def main() -> None:
    start = time.perf_counter()
    model, run = get_baseline(BaselineConfig(dataset="pydoc", model="gpt", seed=0), RunContext())
    wall = time.perf_counter() - start
    history = run["extra"]["history"]
    rec = run["record"]
    train_s = history[-1]["elapsed_s"] if history else None
    wide, narrow = (build_language_model(parse_spec(f"gpt:width={w}")).eval() for w in (128, 64))
    prompt = torch.zeros(1, 1, dtype=torch.long)
    decode = paired_speedup(DecodeLoop(wide, 32), DecodeLoop(narrow, 32), prompt, rounds=AdaptiveRounds())
    emit({"benchmark": "lm", "model": "gpt (layers=4, width=128, heads=4, context=128)", "dataset": "pydoc",
          "steps": run["config"]["steps"], "train_s": round(train_s, 1) if train_s else None,
          "run_wall_s": round(wall, 1), "perplexity": round(rec["perplexity"], 3),
          "perplexity_ci95": [round(v, 3) for v in rec["perplexity_ci95"]],
          "bits_per_byte": round(rec["bits_per_byte"], 3), "next_token_accuracy": round(rec["next_token_accuracy"], 4),
          "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
          "decode_tokens_per_s": round([e for e in rec["latency"] if e["phase"] == "decode"][0]["tokens_per_s"]),
          "decode_speedup_width64_over_width128": round(decode["speedup"], 3),
          "decode_ci95": [round(v, 3) for v in decode["ci95"]], "decode_noisy": decode["noisy"],
          "decode_load": decode["load"], "decode_processes": decode["processes"]})


if __name__ == "__main__":
    main()

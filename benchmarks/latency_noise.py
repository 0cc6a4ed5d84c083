"""How far a competing process skews a speed-up, and whether the timing flags it.

- a width-64 vs width-32 conv net on 1x8x8 inputs at batch 256, timed with paired_speedup on a quiet machine
- the same pair again while this script runs its own competing load: a torch matmul loop on 2 threads
  (OpenMP oversubscription: our threads wait at barriers for cores the neighbour holds)
- goal: the loaded timing is flagged `noisy` (load seen), whatever its ratio does

Self-contained apart from compression.core.timing; prints one JSON line.
"""
import json
import subprocess
import sys
import time

import torch
from torch import nn

from compression.core.speedup import paired_speedup  # noqa: E402
from compression.core.timing import LoadSampler, machine_fingerprint  # noqa: E402

BATCH = 256
INPUT_SHAPE = (1, 8, 8)
LOAD_SCRIPT = "import torch\ntorch.set_num_threads(2)\na = torch.randn(1024, 1024)\nwhile True:\n    a @ a\n"


def cnn(width: int) -> nn.Sequential:
    torch.manual_seed(width)
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(width * 4 * 4, 10)).eval()


def summary(result: dict) -> dict:
    return {"speedup": round(result["speedup"], 3), "ci95": [round(v, 3) for v in result["ci95"]],
            "latency_a_ms": round(result["latency_a_ms"], 3), "latency_b_ms": round(result["latency_b_ms"], 3),
            "load": result["load"], "load_before": result["load_before"], "noisy": result["noisy"],
            "noisy_reasons": result["noisy_reasons"]}


def start_load(timeout_s: float = 30.0) -> subprocess.Popen:
    """Start the competing matmul loop and return once it really keeps cores busy (torch import takes a while)."""
    proc = subprocess.Popen([sys.executable, "-c", LOAD_SCRIPT])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        with LoadSampler() as sampler:
            time.sleep(0.25)
        if sampler.load >= 1.0:
            break
    return proc


def main() -> dict:
    wide, narrow = cnn(64), cnn(32)
    x = torch.randn(BATCH, *INPUT_SHAPE)
    quiet = paired_speedup(wide, narrow, x, rounds=7)
    load = start_load()
    try:
        loaded = paired_speedup(wide, narrow, x, rounds=7, max_quiet_wait_s=1)
    finally:
        load.kill()
        load.wait(timeout=10)
    return {"benchmark": "latency_noise", "device": "cpu", "batch_size": BATCH,
            "quiet": summary(quiet), "loaded": summary(loaded),
            "ratio_loaded_over_quiet": round(loaded["speedup"] / quiet["speedup"], 3),
            "latency_a_loaded_over_quiet": round(loaded["latency_a_ms"] / quiet["latency_a_ms"], 2),
            "flagged_when_loaded": loaded["noisy"], "quiet_clean": not quiet["noisy"],
            "machine": quiet["machine"], "machine_details": machine_fingerprint("cpu", quiet["threads"])["details"],
            "threads": quiet["threads"], "torch": torch.__version__}


if __name__ == "__main__":
    print(json.dumps(main()))

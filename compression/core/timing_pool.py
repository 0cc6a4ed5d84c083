"""A quotable speed-up: the same interleaved A/B rounds, in several fresh processes, pooled (pyperf's idea).

Why: one process's rounds describe that process. Measured on a quiet 2-core VM (issue 23), a speed-up timed in
8 fresh processes ranged 2.5x to 3.3x, and one run's 95% CI held only 34-66% of the other runs' estimates:
memory layout, thread placement and the machine's state when the process started shift a whole process's
figure. So the figure to quote is timed in `processes` fresh processes (3 by default) that take turns, a few
rounds each, so that a slow drift of the machine reaches all of them alike; the CI comes from a bootstrap over
processes, then over rounds within each, and so includes the process-to-process spread.

The timing processes (core.timer_process) start once per parent process and are reused for every pair: starting
one costs ~3 s of imports. They sleep on a pipe between turns, so they add no load to each other's timing.
"""
from __future__ import annotations

import atexit
import math
import os
import pickle
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..errors import LabError
from .timing import MAX_ROUNDS, REPRODUCIBILITY_REL_SD, AdaptiveRounds

# glibc's allocator, pinned as a long-running server ends up: buffers up to 32 MiB come from the heap and are
# reused, and the heap is not trimmed. Left dynamic, glibc's mmap threshold depends on the process's history: a
# forward call then either reuses memory or maps fresh pages and faults them in. Measured (issue 23) on one pair
# in 4 fresh processes each: B took 5.8-9.7 ms by process and the speed-up 2.6-3.6x; pinned, 5.6-8.2 ms and
# 2.7-2.9x. (32 MiB is the largest threshold glibc's own dynamic rule would choose.)
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}
ROUNDS_PER_TURN = 4
TURN_LOAD_LIMIT = 0.25  # other processes' busy cores during one turn at or above which the turn is timed again  # two A-first/B-first pairs; each turn also pays one untimed block per side to warm up
_BOOTSTRAP_DRAWS = 2000
_children: list["_TimerProcess"] = []


class TimingProcessError(LabError):
    """A timing process failed or died: a crashing kernel kills that process, not the caller, and the user gets
    one line."""


class _TimerProcess:
    def __init__(self):
        # this process's import path, so that a model class it can import, the child can import to unpickle it
        path = [str(Path(__file__).resolve().parents[2])] + [os.path.abspath(p or ".") for p in sys.path
                                                              if os.path.isdir(p or ".")]
        env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=os.pathsep.join(dict.fromkeys(path)),
                   **STEADY_MALLOC)
        self.process = subprocess.Popen([sys.executable, "-m", "compression.core.timer_process"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.ready = False

    def alive(self) -> bool:
        return self.process.poll() is None

    def _read(self) -> dict:
        try:
            return pickle.load(self.process.stdout)
        except (EOFError, pickle.UnpicklingError, OSError):
            code = self.process.wait(timeout=5)
            raise TimingProcessError(f"A timing process stopped (exit code {code}) while running the models: a "
                                     "kernel crashed, or it ran out of memory. Nothing was stored.") from None

    def send(self, request: dict | bytes) -> None:
        if not self.ready:  # the first reply is "ready", once torch is imported
            self._read()
            self.ready = True
        payload = request if isinstance(request, bytes) else pickle.dumps(request)
        try:
            self.process.stdin.write(len(payload).to_bytes(8, "big") + payload)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: receive() says how

    def receive(self) -> dict:
        reply = self._read()
        if "error" in reply:
            raise TimingProcessError(f"Timing failed in a timing process: {reply['error']}")
        return reply

    def ask(self, request: dict | bytes) -> dict:
        self.send(request)
        return self.receive()

    def close(self) -> None:
        """Close its pipe: it exits when it reads the end. Call finish() after closing them all."""
        try:
            self.process.stdin.close()
        except OSError:
            pass

    def finish(self) -> None:
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_timing_processes(count: int) -> list[_TimerProcess]:
    """`count` timing processes, started now if not running (all at once: their imports overlap).
    Call it early (the `speedup` verb does, before loading its models) to hide the start-up."""
    _children[:] = [child for child in _children if child.alive()]
    while len(_children) < count:
        _children.append(_TimerProcess())
    return _children[:count]


@atexit.register
def stop_timing_processes() -> None:
    for child in _children:  # all pipes first: they exit together
        child.close()
    for child in _children:
        child.finish()
    _children.clear()


def pooled_ci(groups: list[list[float]], confidence: float = 0.95, seed: int = 0,
              floor_rel_sd: float = REPRODUCIBILITY_REL_SD) -> tuple[float, float]:
    """95% CI of the median ratio from a two-level bootstrap: processes with replacement, then rounds within each.

    With k processes a plain bootstrap shrinks the between-process variance by (k-1)/k (3 processes: by a third),
    so the interval's half-widths are widened by sqrt(k/(k-1)). Ratios are bootstrapped as logs: a speed-up's
    error is multiplicative. Neither half is narrower than 1.96 x `floor_rel_sd` (in logs): what one run's rounds
    cannot see, the machine's drift between runs, is still in the interval.
    """
    import numpy as np
    k, n = len(groups), min(len(g) for g in groups)
    logs = np.log(np.array([g[:n] for g in groups], dtype=float))
    rng = np.random.default_rng(seed)
    pick_process = rng.integers(k, size=(_BOOTSTRAP_DRAWS, k))
    pick_round = rng.integers(n, size=(_BOOTSTRAP_DRAWS, k, n))
    medians = np.median(logs[pick_process[:, :, None], pick_round].reshape(_BOOTSTRAP_DRAWS, -1), axis=1)
    centre = float(np.median(logs))
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(medians, [tail, 1 - tail])
    widen = math.sqrt(k / (k - 1)) if k > 1 else 1.0
    floor = 1.96 * floor_rel_sd
    return (math.exp(centre - max(widen * (centre - lo), floor)), math.exp(centre + max(widen * (hi - centre), floor)))


def pack(model: torch.nn.Module):
    """What crosses the pipe: the module itself, or a TorchScript module's saved bytes (it cannot be pickled;
    the lab keeps static int8 models as TorchScript)."""
    if isinstance(model, torch.jit.ScriptModule):
        import io
        buffer = io.BytesIO()
        torch.jit.save(model, buffer)
        return {"torchscript": buffer.getvalue()}
    return model


def unpack(packed) -> torch.nn.Module:
    if isinstance(packed, dict) and "torchscript" in packed:
        import io
        return torch.jit.load(io.BytesIO(packed["torchscript"]))
    return packed


def _relative_width(groups: list[list[float]]) -> float:
    lo, hi = pooled_ci(groups)
    middle = statistics.median([r for g in groups for r in g])
    return (hi - lo) / middle


def pooled_rounds(model_a, model_b, example_a, example_b, *, device, mode, threads: int, block_s: float,
                  plan: AdaptiveRounds) -> dict | None:
    """Rounds of A and B in `plan.processes` timing processes, taking turns, until the pooled CI is
    `plan.target_rel_ci` of the speed-up or the budget is spent. The result has the pooled CI and each
    process's own figure. None when a model cannot be sent to another process (the caller times it here)."""
    try:
        prepare = pickle.dumps({"kind": "prepare", "model_a": pack(model_a), "model_b": pack(model_b),
                                "example_a": example_a,
                                "example_b": example_b, "device": str(device), "mode": mode, "threads": threads,
                                "block_s": block_s, "engine": torch.backends.quantized.engine})
    except Exception:  # e.g. a module holding a lambda or an open handle
        return None
    children = start_timing_processes(plan.processes)
    try:
        for child in children:  # all at once: warm-up and calibration only size the blocks, timing comes later
            child.send(prepare)
        ready = [child.receive() for child in children]
        if any("unportable" in reply for reply in ready):
            return None
        groups = [{"a_ms": [], "b_ms": [], "load_s": 0.0, "wall_s": 0.0} for _ in children]
        start, timed_again = time.perf_counter(), 0
        while True:
            for child, group in zip(children, groups):
                reply = child.ask({"kind": "rounds", "count": ROUNDS_PER_TURN})
                # a turn during which another program woke up (a browser redrawing, a cron job) is timed again,
                # while the budget lasts: one burst would otherwise shift a whole process's figure
                if reply["load"] >= TURN_LOAD_LIMIT and time.perf_counter() - start < plan.budget_s:
                    timed_again += 1
                    continue
                group["a_ms"] += reply["a_ms"]
                group["b_ms"] += reply["b_ms"]
                group["load_s"] += reply["load"] * reply["wall_s"]
                group["wall_s"] += reply["wall_s"]
            if _enough(groups, plan, start):
                break
    finally:
        for child in children:
            if child.alive():
                try:
                    child.ask({"kind": "release"})
                except TimingProcessError:
                    pass
    ratios = [[a / b for a, b in zip(g["a_ms"], g["b_ms"])] for g in groups]
    wall = sum(g["wall_s"] for g in groups)
    return {"a_ms": [a for g in groups for a in g["a_ms"]], "b_ms": [b for g in groups for b in g["b_ms"]],
            "ci95": list(pooled_ci(ratios)), "load": sum(g["load_s"] for g in groups) / wall if wall else 0.0,
            "mode": ready[0]["mode"], "number_a": ready[0]["number_a"], "number_b": ready[0]["number_b"],
            "fallback": ready[0]["fallback"], "processes": len(children), "turns_timed_again": timed_again,
            "per_process": [{"speedup": statistics.median(r), "rounds": len(r), "pid": child.process.pid,
                             "latency_a_ms": statistics.median(g["a_ms"]), "latency_b_ms": statistics.median(g["b_ms"]),
                             "load": round(g["load_s"] / g["wall_s"], 2) if g["wall_s"] else 0.0}
                            for r, g, child in zip(ratios, groups, children)]}


def _enough(groups: list[dict], plan: AdaptiveRounds, start: float) -> bool:
    done = min(len(g["a_ms"]) for g in groups)
    if done < plan.least:
        return False
    if time.perf_counter() - start >= plan.budget_s or done * len(groups) >= MAX_ROUNDS:
        return True
    return _relative_width([[a / b for a, b in zip(g["a_ms"], g["b_ms"])] for g in groups]) <= plan.target_rel_ci

"""`paired_speedup`: the only way the lab computes a speed-up, quick (rounds in this process) or quotable (rounds
in fresh timing processes, pooled: core.timing_pool). Built on core.timing's load sampling, runners and rounds."""
from __future__ import annotations

import math
import statistics
import time

import torch

from .timing import (MAX_ROUNDS, MIN_ROUNDS, NOISY_LOAD_CORES, NOISY_REL_CI, AdaptiveRounds, LoadSampler,
                     _batch_size, _iqr, _noisy_reasons, _resolve_mode, machine_fingerprint, median_ci, num_threads,
                     prepare_pair, time_rounds, wait_for_quiet)
from .timing_pool import pooled_rounds


def _relative_width(ratios: list[float]) -> float:
    lo, hi = median_ci(ratios)
    middle = statistics.median(ratios)
    return (hi - lo) / middle if middle > 0 else math.inf


def _enough_rounds(a_ms: list[float], b_ms: list[float], rounds: int | AdaptiveRounds, start: float) -> bool:
    done = len(a_ms)
    if not isinstance(rounds, AdaptiveRounds):
        return done >= rounds
    if done < rounds.least or done % 2:
        return False
    if done >= MAX_ROUNDS or time.perf_counter() - start >= rounds.budget_s:
        return True
    return _relative_width([a / b for a, b in zip(a_ms, b_ms)]) <= rounds.target_rel_ci


def paired_speedup(model_a, model_b, example_a, example_b=None, *, device="cpu",
                   rounds: int | AdaptiveRounds = 7, threads=None,
                   mode="auto", max_quiet_wait_s=10.0, block_s=0.05) -> dict:
    """How many times faster B is than A: the ONLY way the lab computes a speed-up.

    Waits (bounded) for the machine to be quiet, then runs interleaved rounds, each timing one
    block of A and one of B, alternating which goes first so order effects (cache warmth,
    frequency ramps) cancel. The speed-up is the median of per-round ratios a_ms / b_ms with a
    95% CI.

    `rounds`: an int is exactly that many rounds in this process: the quick figure a lab stores beside each run.
    AdaptiveRounds is the quotable figure: rounds in `processes` fresh processes in turns (core.timing_pool),
    pooled, with a CI that includes the process-to-process spread, until it is narrow enough or the budget is spent.
    Two flags say why a figure is not quotable: `loaded` (other processes kept cores busy) and `imprecise` (the
    CI is wider than the target: AdaptiveRounds' target_rel_ci, or NOISY_REL_CI for fixed rounds); `noisy` is
    either of them, or (fixed rounds) a wide spread of block times.
    `example_b` defaults to `example_a` (an fp16 model needs `example_a.half()`).
    Neither model is modified: flags are restored, and models are deep-copied to move devices.
    """
    adaptive = rounds if isinstance(rounds, AdaptiveRounds) else None
    least = adaptive.least if adaptive else rounds
    if least < MIN_ROUNDS:
        raise ValueError(f"paired_speedup needs rounds >= {MIN_ROUNDS} for a meaningful CI, got {least}")
    example_b = example_a if example_b is None else example_b
    if tuple(example_b.shape) != tuple(example_a.shape):
        raise ValueError(f"A and B must be timed on the same shape: {tuple(example_a.shape)} vs "
                         f"{tuple(example_b.shape)}")
    mode = _resolve_mode(mode, device)
    threads_used = int(threads) if threads is not None else torch.get_num_threads()
    load_before = wait_for_quiet(max_quiet_wait_s)
    timed = None
    if adaptive and adaptive.processes > 1:
        timed = pooled_rounds(model_a, model_b, example_a, example_b, device=device, mode=mode,
                              threads=threads_used, block_s=block_s, plan=adaptive)
    if timed is None:
        timed = _rounds_here(model_a, model_b, example_a, example_b, device=device, mode=mode,
                             threads=threads_used, block_s=block_s, rounds=rounds)
        if adaptive and adaptive.processes > 1:
            timed["pool_note"] = "timed in this process only: a model could not be sent to a fresh process"
    return summarise(timed, adaptive, device=device, threads=threads_used, batch_size=_batch_size(example_a),
                     load_before=load_before)


def _rounds_here(model_a, model_b, example_a, example_b, *, device, mode, threads, block_s, rounds) -> dict:
    """The rounds in this process: {"a_ms", "b_ms", "load", "mode", "number_a", "number_b", "fallback"}."""
    with num_threads(threads):
        runner_a, runner_b, n_a, n_b, fallback = prepare_pair(model_a, model_b, example_a, example_b, device,
                                                              mode, block_s)
        a_ms, b_ms = [], []
        try:
            with LoadSampler() as sampler:
                start = time.perf_counter()
                while not _enough_rounds(a_ms, b_ms, rounds, start):
                    time_rounds(runner_a, runner_b, n_a, n_b, 1, a_ms, b_ms)
        finally:
            runner_a.close()
            runner_b.close()
    return {"a_ms": a_ms, "b_ms": b_ms, "load": sampler.load, "mode": runner_a.mode, "number_a": n_a,
            "number_b": n_b, "fallback": fallback, "processes": 1}


def summarise(timed: dict, adaptive: AdaptiveRounds | None, *, device, threads: int, batch_size: int,
              load_before: float) -> dict:
    """The speed-up record from timed rounds (one process's, or several pooled with their own CI)."""
    a_ms, b_ms = timed["a_ms"], timed["b_ms"]
    ratios = [a / b for a, b in zip(a_ms, b_ms)]
    speedup = statistics.median(ratios)
    lo, hi = timed.get("ci95") or median_ci(ratios)
    lat_a, lat_b = statistics.median(a_ms), statistics.median(b_ms)
    iqr_a, iqr_b = _iqr(a_ms), _iqr(b_ms)
    load = timed["load"]
    rel_ci = (hi - lo) / speedup if speedup > 0 else math.inf
    # with a budget, the CI's width is the verdict on spread; with fixed rounds, the old spread and CI gates
    precision_limit = adaptive.target_rel_ci if adaptive else NOISY_REL_CI
    loaded, imprecise = load >= NOISY_LOAD_CORES, rel_ci > precision_limit
    reasons = ([f"load: other processes kept {load:.2f} cores busy (>= {NOISY_LOAD_CORES})"] * loaded
               + [f"ci: relative width of the 95% CI {rel_ci:.2f} > {precision_limit} after {len(ratios)} rounds"]
               * imprecise)
    if not adaptive:
        reasons += [r for r in _noisy_reasons(0.0, {"A": iqr_a / lat_a, "B": iqr_b / lat_b}) if r not in reasons]
    out = {"speedup": speedup, "ci95": [lo, hi], "rounds": len(ratios), "ratios": ratios,
           "rel_ci": rel_ci, "target_rel_ci": precision_limit,
           "budget_s": adaptive.budget_s if adaptive else 0.0, "processes": timed["processes"],
           "latency_a_ms": lat_a, "latency_b_ms": lat_b, "iqr_a_ms": iqr_a, "iqr_b_ms": iqr_b,
           "number_a": timed["number_a"], "number_b": timed["number_b"], "loaded": loaded, "imprecise": imprecise,
           "load": round(load, 2), "load_before": round(load_before, 2), "noisy": bool(reasons),
           "noisy_reasons": reasons, "machine": machine_fingerprint(device, threads)["id"], "device": str(device),
           "batch_size": batch_size, "threads": threads, "mode": timed["mode"], "time": time.time()}
    if timed.get("per_process"):
        out["per_process"] = timed["per_process"]
    if timed.get("fallback"):
        out["fallback_reason"] = timed["fallback"]
    for key in ("pool_note", "turns_timed_again"):
        if timed.get(key) is not None:
            out[key] = timed[key]
    return out

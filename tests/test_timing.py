"""compression.core.timing: load sampling, machine identity, median CI and paired speed-ups.

Real processes and real timings, no mocks: the busy-load tests spin pure-Python subprocesses.
"""
import copy
import math
import os
import random
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

import psutil
import pytest
import torch
from torch import nn

from compression.core import timing
from compression.core.speedup import paired_speedup
from compression.core.timing import (AdaptiveRounds, LoadSampler, latency_entry, machine_fingerprint, median_ci,
                                     time_forward, wait_for_quiet)
from compression.core.timing_pool import TimingProcessError, pooled_ci, start_timing_processes

pytestmark = pytest.mark.timing  # load sampling and paired timings: run alone (make test)


@contextmanager
def spinners(count: int):
    """`count` pure-Python busy loops (one core each), always killed afterwards."""
    procs = []
    try:
        for _ in range(count):
            procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        time.sleep(0.3)  # let the interpreters start and reach the loop
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(timeout=10)


def mlp(layers: int) -> nn.Sequential:
    torch.manual_seed(layers)
    return nn.Sequential(*[nn.Linear(512, 512) for _ in range(layers)])


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- median_ci

def test_median_ci_small_n_is_min_max():
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 7.0, 6.0]
    assert median_ci(values) == (1.0, 7.0)  # n=7: k=1 covers 1 - 2/128 = 98.4%, k=2 only 87.5%
    assert median_ci([3.0, 1.0, 2.0, 9.0, 4.0]) == (1.0, 9.0)  # n=5: too few for 95%, (min, max)
    assert median_ci([2.5]) == (2.5, 2.5)


def test_median_ci_n20_uses_binomial_order_statistics():
    n = 20
    # Largest k with P(k <= B <= n-k) >= 0.95 for B ~ Binomial(20, 1/2), computed here independently.
    coverage = {k: sum(math.comb(n, i) for i in range(k, n - k + 1)) / 2 ** n for k in range(1, n // 2 + 1)}
    k = max(k for k, c in coverage.items() if c >= 0.95)
    assert k == 6 and coverage[6] == pytest.approx(0.9586, abs=1e-4) and coverage[7] < 0.95
    values = [float(v) for v in range(101, 121)]
    random.Random(0).shuffle(values)
    assert median_ci(values) == (106.0, 115.0)  # x_(6), x_(15)
    assert median_ci(values, confidence=0.8) == (107.0, 114.0)  # k=7 covers 0.885, k=8 only 0.737


def test_median_ci_always_contains_median():
    rng = random.Random(1)
    for n in range(1, 40):
        values = [rng.lognormvariate(0, 1) for _ in range(n)]
        lo, hi = median_ci(values)
        assert lo <= statistics.median(values) <= hi


# ---------------------------------------------------------------- load

def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def test_load_sampler_sees_a_busy_process():
    """The sampler counts at least what a spinner we started used, whatever else the shared machine runs."""
    with spinners(1) as procs:
        before = _cpu_seconds(procs[0].pid)
        with LoadSampler() as busy:
            time.sleep(1.0)
        spinner_cores = (_cpu_seconds(procs[0].pid) - before) / busy.wall_s
    assert spinner_cores > 0.3, "the spinner barely ran: the machine is saturated"
    assert busy.load >= spinner_cores - 0.15


def test_load_sampler_does_not_count_own_work():
    """Our own busy core is subtracted: spinning here reads like sleeping here (paired, so others' load
    cancels out of the difference)."""
    diffs = []
    for _ in range(3):
        with LoadSampler() as idle:
            time.sleep(0.4)
        with LoadSampler() as own:
            end = time.perf_counter() + 0.4
            while time.perf_counter() < end:
                pass
        diffs.append(own.load - idle.load)
    assert statistics.median(diffs) < 0.5


def test_wait_for_quiet_is_bounded_under_load(monkeypatch):
    monkeypatch.setitem(timing._recent, "sample", None)  # forget the quiet the previous test saw
    with spinners(1):
        start = time.monotonic()
        seen = wait_for_quiet(max_wait_s=1.0, probe_s=0.25)
        elapsed = time.monotonic() - start
    assert elapsed < 1.0 + 0.25 + 0.5
    assert seen >= 0.5
    start = time.monotonic()
    wait_for_quiet(max_wait_s=0, probe_s=0.1)  # one probe only
    assert time.monotonic() - start < 0.5


def test_a_quiet_sample_a_moment_ago_skips_the_probe_and_a_stale_one_does_not(monkeypatch):
    monkeypatch.setitem(timing._recent, "sample", (time.monotonic(), 0.1))
    start = time.monotonic()
    assert wait_for_quiet(max_wait_s=5, probe_s=0.3) == 0.1  # reused: no 0.3 s probe
    assert time.monotonic() - start < 0.1
    monkeypatch.setitem(timing._recent, "sample", (time.monotonic() - timing._RECENT_S - 1, 0.1))
    start = time.monotonic()
    wait_for_quiet(max_wait_s=0, probe_s=0.3)
    assert time.monotonic() - start >= 0.3  # too old to describe the machine now: probed
    monkeypatch.setitem(timing._recent, "sample", (time.monotonic(), 2.0))
    start = time.monotonic()
    wait_for_quiet(max_wait_s=0, probe_s=0.3)
    assert time.monotonic() - start >= 0.3  # busy a moment ago: probe again, it may have passed


# ---------------------------------------------------------------- machine identity

def test_machine_fingerprint_stable_and_thread_sensitive():
    a, b = machine_fingerprint("cpu", threads=2), machine_fingerprint("cpu", threads=2)
    assert a == b and len(a["id"]) == 12 and int(a["id"], 16) >= 0
    assert machine_fingerprint("cpu", threads=1)["id"] != a["id"]
    assert a["details"]["threads"] == 2 and a["details"]["torch"] == torch.__version__
    assert a["details"]["gpu"] is None and a["details"]["logical_cores"] >= 1
    assert machine_fingerprint("cpu")["details"]["threads"] == torch.get_num_threads()


# ---------------------------------------------------------------- paired speed-up

def test_paired_speedup_big_vs_small_on_cpu():
    big, small = mlp(8), mlp(2)
    big.train()
    before_big, before_small = state(big), state(small)
    x = torch.randn(64, 512)
    result = paired_speedup(big, small, x, rounds=5, max_quiet_wait_s=2.0)
    assert result["speedup"] > 2
    lo, hi = result["ci95"]
    assert lo <= result["speedup"] <= hi
    assert result["rounds"] >= 5 and len(result["ratios"]) == result["rounds"]
    assert result["latency_a_ms"] > result["latency_b_ms"] > 0
    assert result["machine"] == machine_fingerprint("cpu", result["threads"])["id"]
    assert result["batch_size"] == 64 and result["mode"] == "eager" and "fallback_reason" not in result
    for name, value in before_big.items():
        assert torch.equal(big.state_dict()[name], value)
    for name, value in before_small.items():
        assert torch.equal(small.state_dict()[name], value)
    assert big.training  # train/eval flag given back
    with pytest.raises(ValueError):
        paired_speedup(big, small, x, rounds=4)


def test_paired_speedup_same_model_is_about_one():
    model = mlp(4)
    x = torch.randn(64, 512)
    # one thread: on a small shared machine a second OpenMP thread can stall 30x at a barrier in one block and not
    # the next (ratios of 0.03 and 4.6 in one run under load), which no pairing can cancel
    quick = paired_speedup(model, copy.deepcopy(model), x, threads=1, max_quiet_wait_s=2.0)
    assert abs(quick["speedup"] - 1) <= 0.15, quick  # interleaving keeps the quick median close
    assert quick["ci95"][0] <= quick["speedup"] <= quick["ci95"][1]
    # but its CI describes one process: a module against its own copy once timed 1.11x [1.03, 1.17], and against
    # itself 0.97x [0.88, 1.00], every round on the same side. The quotable figure, pooled over fresh processes,
    # is the one whose CI must hold the true ratio of 1
    pooled = paired_speedup(model, copy.deepcopy(model), x, threads=1, max_quiet_wait_s=2.0,
                            rounds=AdaptiveRounds(budget_s=2.0))
    summary = {k: pooled[k] for k in ("speedup", "ci95", "load", "noisy_reasons", "processes")}
    assert pooled["processes"] == 3 and pooled["ci95"][0] <= 1 <= pooled["ci95"][1], summary


def test_rounds_go_on_until_the_ci_is_narrow_enough_or_the_budget_is_spent():
    big, small, x = mlp(3), mlp(1), torch.randn(64, 512)
    fixed = paired_speedup(big, small, x, rounds=7, max_quiet_wait_s=0, block_s=0.01)
    assert fixed["rounds"] == len(fixed["ratios"]) == 7  # no budget: exactly the rounds asked for
    start = time.monotonic()
    adaptive = paired_speedup(big, small, x, rounds=AdaptiveRounds(budget_s=2.0, processes=1), max_quiet_wait_s=0,
                              block_s=0.01)
    elapsed = time.monotonic() - start
    lo, hi = adaptive["ci95"]
    rel = (hi - lo) / adaptive["speedup"]
    assert adaptive["rel_ci"] == pytest.approx(rel) and adaptive["rounds"] == len(adaptive["ratios"]) >= 8
    assert adaptive["rounds"] % 2 == 0  # in pairs: A first as often as B first
    # it stops at the target, or it has spent its budget and says so
    target = adaptive["target_rel_ci"]
    assert target == timing.TARGET_REL_CI
    assert (rel <= target and not adaptive["imprecise"]) or (adaptive["imprecise"] and elapsed >= 2.0), adaptive
    assert elapsed < 2.0 + 2.5  # the budget bounds the rounds (warm-up and calibration come on top)
    # a target it cannot reach: the whole budget, then `imprecise`, in words, and `noisy` with it
    strict = paired_speedup(big, small, x, rounds=AdaptiveRounds(budget_s=0.5, target_rel_ci=1e-6, processes=1),
                            max_quiet_wait_s=0, block_s=0.01)
    assert strict["imprecise"] and strict["noisy"] and strict["rounds"] > 7
    assert any(reason.startswith("ci: relative width") for reason in strict["noisy_reasons"])


def test_a_quotable_speedup_is_timed_in_three_fresh_processes_and_pooled():
    big, small, x = mlp(3), mlp(1), torch.randn(64, 512)
    result = paired_speedup(big, small, x, rounds=AdaptiveRounds(budget_s=2.0), max_quiet_wait_s=0, block_s=0.01)
    per = result["per_process"]
    assert result["processes"] == len(per) == 3
    assert len({p["pid"] for p in per}) == 3 and os.getpid() not in {p["pid"] for p in per}
    assert sum(p["rounds"] for p in per) == result["rounds"] == len(result["ratios"])
    assert all(p["rounds"] >= 8 for p in per)  # at least `least` (7) each, in whole turns of 4
    assert all(p["speedup"] > 1.5 for p in per) and result["speedup"] > 1.5  # three times the work, each time
    lo, hi = result["ci95"]
    assert lo <= result["speedup"] <= hi
    # the pooled CI covers the processes' spread: never narrower than the middle process's distance to the pool
    middle = sorted(p["speedup"] for p in per)[1]
    assert lo <= middle <= hi, result


def test_the_pooled_ci_includes_the_spread_between_processes():
    rng = random.Random(0)
    same = [[2.0 * rng.uniform(0.98, 1.02) for _ in range(20)] for _ in range(3)]
    apart = [[offset * rng.uniform(0.98, 1.02) for _ in range(20)] for offset in (1.8, 2.0, 2.2)]
    lo_same, hi_same = pooled_ci(same, floor_rel_sd=0)
    lo_apart, hi_apart = pooled_ci(apart, floor_rel_sd=0)
    lo_flat, hi_flat = median_ci([r for g in apart for r in g])  # as if all 60 rounds were one process's
    assert hi_same - lo_same < 0.05 * 2.0  # quiet processes that agree: a tight interval
    assert hi_apart - lo_apart > 2 * (hi_flat - lo_flat)  # processes that disagree: the spread is in the CI
    assert lo_apart < 2.0 < hi_apart
    # the machine's drift between runs, which one run cannot see, is the floor: +-1.96 SD of it in logs
    lo_floor, hi_floor = pooled_ci(same, floor_rel_sd=0.03)
    assert (hi_floor - lo_floor) / 2.0 == pytest.approx(2 * math.sinh(1.96 * 0.03), rel=0.05)
    assert pooled_ci(apart, floor_rel_sd=0.03) == pytest.approx((lo_apart, hi_apart))  # wider already


def test_a_timing_process_that_crashes_is_one_error_and_the_next_timing_works():
    from crashing_model import Crashing
    x = torch.randn(8, 512)
    with pytest.raises(TimingProcessError, match="stopped .* a kernel crashed"):
        paired_speedup(mlp(1), Crashing(), x, rounds=AdaptiveRounds(budget_s=0.5), max_quiet_wait_s=0)
    again = paired_speedup(mlp(2), mlp(1), x, rounds=AdaptiveRounds(budget_s=0.5), max_quiet_wait_s=0,
                           block_s=0.01)
    assert again["processes"] == 3 and again["speedup"] > 1


def test_a_model_that_cannot_leave_the_process_is_timed_here_and_says_so():
    model = mlp(1)
    model.hook = lambda: None  # a lambda cannot be pickled
    result = paired_speedup(model, mlp(1), torch.randn(8, 512), rounds=AdaptiveRounds(budget_s=0.3),
                            max_quiet_wait_s=0, block_s=0.01)
    assert result["processes"] == 1 and "this process only" in result["pool_note"]


def test_paired_speedup_under_competing_load_is_flagged():
    small = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    x = torch.randn(32, 64)
    start_timing_processes(3)
    paired_speedup(small, copy.deepcopy(small), x, rounds=AdaptiveRounds(budget_s=0.2), max_quiet_wait_s=0)
    with spinners(2):  # in this process and in the three timing processes (started before the load)
        here = paired_speedup(small, copy.deepcopy(small), x, threads=1, max_quiet_wait_s=0.5, block_s=0.02,
                              rounds=AdaptiveRounds(budget_s=1.0, processes=1))
        pooled = paired_speedup(small, copy.deepcopy(small), x, threads=1, max_quiet_wait_s=0.5, block_s=0.02,
                                rounds=AdaptiveRounds(budget_s=1.0))
    for result in (here, pooled):
        assert result["load"] >= 0.5
        assert result["noisy"] is True and result["loaded"] is True
        assert any("load" in reason for reason in result["noisy_reasons"])
    assert pooled["processes"] == 3 and pooled["turns_timed_again"] > 0  # loaded turns were tried again first


def test_cuda_graph_mode_falls_back_to_eager_without_cuda():
    model, x = mlp(1), torch.randn(8, 512)
    result = paired_speedup(model, copy.deepcopy(model), x, mode="cuda_graph", max_quiet_wait_s=0, block_s=0.01)
    assert result["mode"] == "eager" and "cuda_graph" in result["fallback_reason"]
    block = time_forward(model, x, mode="cuda_graph", number=3)
    assert block["mode"] == "eager" and block["fallback_reason"] and block["number"] == 3 and block["ms"] > 0
    entry = latency_entry(model, x, mode="cuda_graph", max_quiet_wait_s=0)
    assert entry["mode"] == "eager" and entry["fallback_reason"] and entry["blocks"] >= 7
    assert entry["median_ms"] > 0 and entry["machine"] == machine_fingerprint("cpu")["id"]

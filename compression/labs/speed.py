"""Speed-ups the way the lab reports them: two models timed together (interleaved rounds, one process, same
input and threads), with a 95% CI, the load seen and the machine, stored in the speedups table.

Never a ratio of latencies stored at different times: a cached figure may be from another load, another
machine or another thread count (the Report once said 226x under a competing load, against 0.97x re-timed).
"""
from __future__ import annotations

import torch

from ..core.paired import ROUNDS, record_fields, split_gain, time_pair, time_pair_on  # noqa: F401  (labs read them here)
from ..core.timing import AdaptiveRounds, machine_fingerprint
from ..errors import LabError
from ..store import RunStore
from ..tasks import task_of


def quote_rounds(config) -> int | AdaptiveRounds:
    """A RetimeConfig's rounds: adaptive in fresh processes within its time budget, or (budget 0) exactly
    `rounds` rounds in this process."""
    if config.time_budget <= 0:
        return config.rounds
    return AdaptiveRounds(config.time_budget, least=config.rounds, processes=config.processes)


def relation(store: RunStore, run_a: int, run_b: int) -> str:
    """'parent', 'ancestor', or 'different model': what the Report says about the comparison."""
    chain = [r["id"] for r in store.lineage(run_b)]
    if len(chain) >= 2 and chain[-2] == run_a:
        return "parent"
    return "ancestor" if run_a in chain else "different model"


def retime(store: RunStore, config) -> dict:
    """Re-time two stored runs together on this machine, as `config` (a RetimeConfig) says: the `speedup` verb,
    the pages' re-time job, the demo's headline pairs and the planner's verification."""
    from ..core.data import load_dataset
    from ..core.timing_pool import start_timing_processes
    from ..store.artifacts import load_run_model
    run_a, run_b, device, batch_size = config.run_a, config.run_b, config.device, config.batch_size
    rounds = quote_rounds(config)
    if isinstance(rounds, AdaptiveRounds) and rounds.processes > 1:
        start_timing_processes(rounds.processes)  # their imports overlap with loading the models
    a, b = store.get_run(run_a), store.get_run(run_b)
    if a["dataset"] != b["dataset"]:
        raise LabError(f"Runs {run_a} and {run_b} are on different data sets ({a['dataset']}, {b['dataset']}); "
                       "their inputs differ, so their speed cannot be compared.")
    data = load_dataset(a["dataset"])
    model_a, model_b = load_run_model(a["weights_path"]), load_run_model(b["weights_path"])
    dtype_b = _input_dtype(b)
    if _input_dtype(a) != torch.float32:
        raise LabError(f"Run {run_a} takes {_input_dtype(a)} inputs; put the float32 run first (A is the reference)")
    device = "cpu" if _int8(a) or _int8(b) else device
    timing = task_of(data).retime_pair(a, model_a, model_b, data, phase=config.phase, batch_size=batch_size,
                                       dtype_b=dtype_b, device=device, rounds=rounds)
    store.add_machine(machine_fingerprint(device, timing["threads"]))
    rel = relation(store, run_a, run_b)
    timing["speedup_id"] = store.add_speedup(run_a, run_b, timing, rel)
    return {**timing, "run_a": run_a, "run_b": run_b, "relation": rel}


def _input_dtype(run: dict) -> torch.dtype:
    name = (run.get("extra") or {}).get("input_dtype") or "float32"
    return getattr(torch, name, torch.float32)


def _int8(run: dict) -> bool:
    return bool((run.get("extra") or {}).get("real_int8"))


def latest_speedup(store: RunStore, run_b: int, run_a: int | None = None, *, batch_size: int | None = None,
                   phase: str | None = None) -> dict | None:
    """The paired timing of run B (against A, when given) to show, at the largest batch unless one is named (and,
    for a language model, of one phase: prefill or decode): the newest quotable one (timed in fresh processes)
    that is unflagged; else the newest quotable one, with its flag (a quick in-process figure never hides a
    re-timing); else the newest quick one, unflagged first."""
    rows = [r for r in store.list_speedups(run_b=run_b, run_a=run_a)
            if (batch_size is None or r["batch_size"] == batch_size)
            and (phase is None or (r.get("detail") or {}).get("phase", "prefill") == phase)]
    if not rows:
        return None
    biggest = max(r["batch_size"] for r in rows)
    at_batch = [r for r in rows if r["batch_size"] == (batch_size or biggest)]
    def rank(row: dict) -> tuple:
        return quotable(row) and not row["noisy"], quotable(row), not row["noisy"], row["id"]
    return max(at_batch, key=rank)


def quotable(row: dict) -> bool:
    """Timed in fresh processes (a re-timing), not quickly in the lab's own process; older rows: one process."""
    return ((row.get("detail") or {}).get("processes") or 1) > 1


def speed_text(row: dict | None, this_machine: str | None = None) -> str:
    """'2.3x faster [2.1, 2.5]' with a noisy or foreign note; never a bare headline from a doubtful timing."""
    if row is None:
        return "speed: not timed together"
    ratio, (lo, hi) = row["speedup"], row["ci95"]
    if this_machine and row["machine"] != this_machine:
        return f"speed: measured on another machine ({row['machine']}), not comparable here"
    if lo <= 1 <= hi and 0.95 <= ratio <= 1.05:  # "1.0x slower [1.0, 1.1]" says nothing a reader can use
        text = f"about as fast [{lo:.2f}, {hi:.2f}]"
    else:
        text = (f"{ratio:.1f}x faster [{lo:.1f}, {hi:.1f}]" if ratio >= 1 else
                f"{1 / ratio:.1f}x slower [{1 / hi:.1f}, {1 / lo:.1f}]")
    if row["noisy"]:
        text += f" ({noisy_words(row)})"
    if row.get("relation") == "different model":
        text += " (different model)"
    return text


def noisy_words(row: dict) -> str:
    """Why a stored timing is not quotable, in words: 'noisy: ...' so every badge and banner still finds it."""
    detail = row.get("detail") or row
    why = []
    if detail.get("loaded", "imprecise" not in detail):  # older rows knew only the load
        why.append(f"timed while other programs were busy, load {row['load']:.1f} cores")
    if detail.get("imprecise"):
        why.append(f"not enough rounds for a tight interval in {row['rounds']}")
    return "noisy: " + "; ".join(why or ["spread too wide"])


def run_retime(config, ctx=None) -> dict:
    """The re-time job: `config` is a RetimeConfig; the result is stored in the speedups table."""
    from .context import RunContext
    ctx = ctx or RunContext()
    ctx.report(0.05, f"Timing run {config.run_b} against run {config.run_a}, interleaved")
    out = retime(ctx.store, config)
    ctx.report(1.0, f"{out['speedup']:.2f}x [{out['ci95'][0]:.2f}, {out['ci95'][1]:.2f}]")
    return out

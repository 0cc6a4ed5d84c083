"""Speed-ups the way the lab reports them: two models timed together (interleaved rounds, one process, same
input and threads), with a 95% CI, the load seen and the machine, stored in the speedups table.

Never a ratio of latencies stored at different times: a cached figure may be from another load, another
machine or another thread count (the Report once said 226x under a competing load, against 0.97x re-timed).
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ..core.measure import quiet_wait_s
from ..core.speedup import paired_speedup
from ..core.timing import AdaptiveRounds, machine_fingerprint
from ..errors import LabError
from ..store import RunStore
from ..text.corpus import is_text

ROUNDS = 5


def _example(input_shape, batch_size: int, device: str) -> torch.Tensor:
    return torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0)).to(device)


def time_pair(model_a: nn.Module, model_b: nn.Module, input_shape, batch_size: int, *, device: str = "cpu",
              dtype_b: torch.dtype = torch.float32, rounds: int | AdaptiveRounds = ROUNDS,
              block_s: float = 0.05) -> dict:
    """One paired timing of B against A (speedup = time(A) / time(B)); int8 models always run on the CPU.
    `rounds`: an int is the quick figure a lab stores beside each run (that many rounds, in this process);
    AdaptiveRounds is the figure to quote (fresh processes, pooled; see core.timing_pool)."""
    x = _example(input_shape, batch_size, device)
    return time_pair_on(model_a, model_b, x, x.to(dtype_b), device=device, rounds=rounds, block_s=block_s)


def time_pair_on(model_a: nn.Module, model_b: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, *,
                 device: str = "cpu", rounds: int | AdaptiveRounds = ROUNDS, block_s: float = 0.05) -> dict:
    """time_pair on given inputs: token ids for a language model's prefill, a one-token prompt for its decode."""
    return paired_speedup(model_a, model_b, x_a, x_b, device=device, rounds=rounds,
                          max_quiet_wait_s=quiet_wait_s(), block_s=block_s)


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


def record_fields(timing: dict) -> dict:
    """The run record's speedup_* fields from one paired timing (all of them from that one timing)."""
    key = f"speedup_{timing['device']}_b{timing['batch_size']}"
    return {key: timing["speedup"], f"{key}_ci95": timing["ci95"], f"{key}_noisy": timing["noisy"],
            f"{key}_load": timing["load"], f"{key}_machine": timing["machine"], f"{key}_mode": timing["mode"]}


def fused_reference(model: nn.Module, example: torch.Tensor) -> nn.Module | None:
    """The fp32 model with conv+BN folded (what FX does before int8), to split a static int8 gain into
    'fusing layers' and 'int8'. TorchScript, like the stored int8 model it is timed against: an FX module runs
    its graph in Python, which would charge ~0.15 ms a call to the wrong factor. None when it cannot be traced."""
    try:
        from torch.fx.experimental.optimization import fuse
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            return torch.jit.trace(fuse(copy.deepcopy(model).eval()), example)
    except Exception:
        return None


def split_gain(parent: nn.Module, quantized: nn.Module, input_shape, batch_size: int, block_s: float) -> dict | None:
    """'6.9x = 2.0x from fusing layers x 3.4x from int8': both factors timed in pairs, like the total."""
    fused = fused_reference(parent, _example(input_shape, 1, "cpu"))
    if fused is None:
        return None
    fusion = time_pair(parent, fused, input_shape, batch_size, block_s=block_s)
    int8 = time_pair(fused, quantized, input_shape, batch_size, block_s=block_s)
    return {"fusion": fusion["speedup"], "fusion_ci95": fusion["ci95"], "int8": int8["speedup"],
            "int8_ci95": int8["ci95"], "batch_size": batch_size, "noisy": fusion["noisy"] or int8["noisy"]}


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
    if is_text(data):
        (model_a, model_b), x, batch_size = _language_pair(a, model_a, model_b, config.phase, batch_size)
        timing = time_pair_on(model_a, model_b, x, x, device=device, rounds=rounds)
        timing["phase"] = config.phase
    else:
        timing = time_pair(model_a, model_b, data.input_shape, batch_size or _record_batch(a), device=device,
                           dtype_b=dtype_b, rounds=rounds, block_s=0.05)
    store.add_machine(machine_fingerprint(device, timing["threads"]))
    rel = relation(store, run_a, run_b)
    timing["speedup_id"] = store.add_speedup(run_a, run_b, timing, rel)
    return {**timing, "run_a": run_a, "run_b": run_b, "relation": rel}


def _record_batch(run: dict) -> int:
    """The largest batch run A's record was timed at (the lab's throughput batch), else 256."""
    return max((e.get("batch_size") or 0 for e in (run.get("record") or {}).get("latency", [])), default=0) or 256


def _language_pair(run_a: dict, model_a: nn.Module, model_b: nn.Module, phase: str, batch_size: int | None):
    """((A, B), input, batch) for a language model's phase (text.measure.phase_workload), prefill at the record's
    prefill batch unless one is named."""
    from ..text.measure import PREFILL_BATCH, phase_workload
    prefill = next((e["batch_size"] for e in run_a["record"].get("latency", []) if e.get("phase") == "prefill"),
                   PREFILL_BATCH)
    context = int(run_a["record"]["context"])
    timed_a, x, _ = phase_workload(model_a, phase, context, batch_size or prefill)
    timed_b, _, _ = phase_workload(model_b, phase, context, batch_size or prefill)
    return (timed_a, timed_b), x, len(x)


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
        quotable = ((row.get("detail") or {}).get("processes") or 1) > 1  # older rows: one process
        return quotable and not row["noisy"], quotable, not row["noisy"], row["id"]
    return max(at_batch, key=rank)


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

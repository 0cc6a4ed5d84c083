"""A run against a reference, in the words a stakeholder reads: x smaller, x faster [CI], pt accuracy (for a
language model: prefill and decode speed, each with its CI, and the perplexity change).

Sizes and accuracies are properties of the stored files and the fixed test split, so they compare directly.
Speed does not: it comes only from a paired timing in the speedups table (labs/speed.py), with its CI,
noisy flag and machine, or it is not stated.
"""
from __future__ import annotations

from ..tasks import task_of
from ..text.floor import decode_floor_text
from .parent import CONTROL_KIND
from .speed import latest_speedup, quotable, speed_text


def versus_baseline(record: dict, baseline: dict, speed: dict | None = None, this_machine: str | None = None,
                    decode: dict | None = None) -> dict:
    """Ratios > 1 mean better (smaller, faster). Slower or larger results are said so, not hidden. For a language
    model `speed` is its prefill timing and `decode` its decode timing: int8 can win one and lose the other, and a
    reader must see both."""
    size_ratio = baseline["size_bytes"] / record["size_bytes"] if record.get("size_bytes") else None
    gzip_ratio = baseline["gzip_bytes"] / record["gzip_bytes"] if record.get("gzip_bytes") else None
    task = task_of(record)
    quality, quality_fields = task.quality_change(record, baseline)
    foreign = bool(speed and this_machine and speed["machine"] != this_machine)
    speed_ratio = speed["speedup"] if speed and not foreign else None
    parts = []
    if size_ratio:
        parts.append(f"{size_ratio:.1f}x smaller" if size_ratio >= 1 else f"{1 / size_ratio:.1f}x larger")
    for phase, timing in zip(task.phases, (speed, decode)):  # one figure, or prefill and decode
        floor = decode_floor_text(record, phase)  # the record's own decode entry: how far from its memory floor
        parts.append((f"{phase} " if phase else "") + speed_text(timing, this_machine)
                     + (f"; {floor}" if floor else ""))
    parts.append(quality)
    if record.get("final_stage") is False and record.get("fine_tuned") is False:
        # a pipeline's un-fine-tuned step: its accuracy is not a result, say so beside the number
        parts.append("an intermediate stage, before fine-tuning")
    return {"run_id": record["run_id"], "baseline_id": baseline["run_id"], "size_ratio": size_ratio,
            "gzip_ratio": gzip_ratio, "speed_ratio": speed_ratio,
            "speed_ci95": speed["ci95"] if speed_ratio else None, "speed_noisy": bool(speed and speed["noisy"]),
            "speed_machine": speed["machine"] if speed else None, "speed_batch": speed["batch_size"] if speed else None,
            **quality_fields, "text": ", ".join(parts)}


REPORT_DEFAULT_RUNS = 5  # the Report opens on the newest runs that grew from a baseline, this many


def default_report_runs(records: list[dict]) -> list[int]:
    """The runs the Report opens on, of one task's finished records: the newest REPORT_DEFAULT_RUNS that grew from a
    baseline (a fair control is shown beside its child, not as a result of its own). The demos re-time exactly
    these runs' claims, so what a presenter sees first is what was re-timed."""
    children = [r["run_id"] for r in records if r.get("status") == "done" and r.get("accuracy") is not None
                and r.get("parent_id") is not None and r.get("kind") != CONTROL_KIND]
    return children[-REPORT_DEFAULT_RUNS:]


def claims_to_retime(store, run_id: int, reference: int, phases: tuple, machine: str,
                     default_batch: int | None) -> list[dict]:
    """RetimeConfig params for each claim of `run_id` against `reference` (one per timed phase: a language model's
    prefill and decode) that is not yet quotable here: untimed, timed on another machine, timed quickly in the
    lab's own process, or flagged noisy. Each at its own timing's batch (or `default_batch`)."""
    params = []
    for phase in phases:
        row = latest_speedup(store, run_id, reference, phase=phase)
        if row is None or row["machine"] != machine or row["noisy"] or not quotable(row):
            params.append({"run_a": reference, "run_b": run_id, "device": row["device"] if row else "cpu",
                           "batch_size": row["batch_size"] if row else default_batch,
                           **({"phase": phase} if phase else {})})
    return params


def reference_of(store, run_id: int) -> int | None:
    """The run a result is compared with by default: its lineage root (the baseline it grew from)."""
    chain = store.lineage(run_id)
    return chain[0]["id"] if len(chain) > 1 else None

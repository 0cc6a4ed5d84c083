"""Two language models' perplexities compared on the same test windows, by paired per-window differences.

Each run's perplexity has its own 95% CI over the test windows, and two such intervals overlap even when one model is
better on almost every window: most of each interval is the spread between windows (some text is harder), which
both models share. Pairing removes it. The bootstrap draws the same windows for both runs, so the interval is for
the difference itself: "SparseGPT: 0.2 perplexity [0.1, 0.3] less than magnitude" can be said where two bars
overlap.

Both records must carry `window_nll` (measure_lm stores each test window's summed NLL) over the same windows: the
same text, tokenizer, context and choice of windows. Otherwise there is no pairing, and None says so.
"""
from __future__ import annotations

import math

import torch

BOOTSTRAP_DRAWS = 2000
SAME_WINDOWS = ("corpus", "tokenizer", "context", "n_test_sequences", "n_test")


def same_windows(record_a: dict, record_b: dict) -> bool:
    """Whether two records' perplexities were measured on the same test windows, with per-window losses stored."""
    nll_a, nll_b = record_a.get("window_nll"), record_b.get("window_nll")
    return bool(nll_a and nll_b and len(nll_a) == len(nll_b)
                and all(record_a.get(k) == record_b.get(k) for k in SAME_WINDOWS))


def paired_perplexity(record_a: dict, record_b: dict, seed: int = 0) -> dict | None:
    """b against a on the same windows: {"difference": ppl_b - ppl_a, "ci95", "relative": ppl_b / ppl_a - 1,
    "relative_ci95", "windows", "significant"} (significant: the CI of the difference excludes 0), or None when the
    two were not measured on the same windows (or an older record has no per-window losses)."""
    if not same_windows(record_a, record_b):
        return None
    a = torch.tensor(record_a["window_nll"], dtype=torch.float64)
    b = torch.tensor(record_b["window_nll"], dtype=torch.float64)
    tokens = record_a["n_test"] / len(a)  # tokens per window: every window is one context long
    pick = torch.randint(0, len(a), (BOOTSTRAP_DRAWS, len(a)), generator=torch.Generator().manual_seed(seed))
    ppl_a = torch.exp(a[pick].mean(1) / tokens)
    ppl_b = torch.exp(b[pick].mean(1) / tokens)
    quantiles = torch.tensor([0.025, 0.975], dtype=torch.float64)
    lo, hi = torch.quantile(ppl_b - ppl_a, quantiles).tolist()
    rel_lo, rel_hi = torch.quantile(ppl_b / ppl_a - 1, quantiles).tolist()
    point_a, point_b = math.exp(a.mean().item() / tokens), math.exp(b.mean().item() / tokens)
    return {"run_a": record_a.get("run_id"), "run_b": record_b.get("run_id"), "perplexity_a": point_a,
            "perplexity_b": point_b, "difference": point_b - point_a, "ci95": [lo, hi],
            "relative": point_b / point_a - 1, "relative_ci95": [rel_lo, rel_hi], "windows": len(a),
            "significant": lo > 0 or hi < 0}


def difference_text(pair: dict, name_b: str, name_a: str) -> str:
    """'SparseGPT: 0.21 perplexity [0.12, 0.30] less than magnitude (paired over 128 windows)', or 'no measurable
    difference' when the interval holds 0."""
    lo, hi = pair["ci95"]
    windows = f"paired over {pair['windows']} test windows"
    if not pair["significant"]:
        return (f"{name_b}: no measurable perplexity difference from {name_a} ({pair['difference']:+.2f} "
                f"[{lo:+.2f}, {hi:+.2f}], {windows})")
    word = "more" if pair["difference"] > 0 else "less"
    low, high = sorted((abs(lo), abs(hi)))
    return (f"{name_b}: {abs(pair['difference']):.2f} perplexity [{low:.2f}, {high:.2f}] {word} than {name_a} "
            f"({windows})")


def _shape(record: dict):
    """What a one-shot pruning run is compared at: its N:M pattern, or its share of zeros (to 3 places)."""
    return record.get("pattern") or round(float(record.get("sparsity") or 0.0), 3)


def method_comparisons(records: list[dict], reference_method: str = "magnitude") -> list[dict]:
    """Pruning methods side by side where it is fair: the runs of one parent at one shape (50%, or 2:4), each
    against `reference_method`'s run there (else the group's first run), paired on the same test windows.
    [{"shape", "run_a", "run_b", "text", **paired_perplexity}], groups of one run and unpaired runs left out."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        if record.get("window_nll") and record.get("kind") == "prune":  # not a control, a quantized or a student run
            groups.setdefault((record.get("parent_id"), _shape(record)), []).append(record)
    rows = []
    for (_, shape), group in groups.items():
        group = sorted(group, key=lambda r: r["run_id"])
        reference = next((r for r in group if r["method"] == reference_method), group[0])
        for record in group:
            pair = None if record is reference else paired_perplexity(reference, record)
            if pair is not None:
                rows.append({"shape": shape, **pair,
                             "text": difference_text(pair, record["method"], reference["method"]) + f", at {shape}"})
    return rows

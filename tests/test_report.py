"""The stakeholder summary and the self-contained HTML report."""
import re

from compression.labs.summary import versus_baseline
from dashboard.report_html import build_report


def _record(run_id, acc, size, gzip, ms, label):
    return {"run_id": run_id, "kind": "train" if run_id == 1 else "prune", "parent_id": None if run_id == 1 else 1,
            "label": label, "dataset": "digits", "model_name": "lenet5", "method": None, "status": "done",
            "config": {"epochs": 10}, "accuracy": acc, "accuracy_ci": [acc - 0.01, acc + 0.01], "params": size // 4,
            "nonzero_params": size // 4, "size_bytes": size, "gzip_bytes": gzip, "macs": 1000,
            "latency": [{"device": "cpu", "batch_size": 256, "median_ms": ms, "iqr_ms": 0.1, "threads": 2}]}


BASE = _record(1, 0.980, 82_000, 80_000, 4.6, "lenet5 baseline")
SMALL = _record(2, 0.976, 20_000, 9_000, 2.0, "pruned 75%")
SLOW = _record(3, 0.990, 164_000, 150_000, 9.2, "wider")
MACHINE = "0123456789ab"


def _paired(speedup, lo, hi, noisy=False):
    return {"speedup": speedup, "ci95": [lo, hi], "noisy": noisy, "load": 0.1, "machine": MACHINE,
            "batch_size": 256, "relation": "parent"}


ROWS = [(SMALL, BASE, versus_baseline(SMALL, BASE, _paired(2.3, 2.1, 2.5), MACHINE)["text"]),
        (SLOW, BASE, versus_baseline(SLOW, BASE, _paired(0.5, 0.45, 0.55), MACHINE)["text"])]


def test_versus_baseline_in_plain_words():
    summary = versus_baseline(SMALL, BASE, _paired(2.3, 2.1, 2.5), MACHINE)
    assert summary["size_ratio"] == 82_000 / 20_000 and summary["speed_ratio"] == 2.3
    assert round(summary["accuracy_delta_pt"], 6) == -0.4
    assert summary["text"] == "4.1x smaller, 2.3x faster [2.1, 2.5], \u22120.4 pt accuracy"
    slow = versus_baseline(SLOW, BASE, _paired(0.5, 0.45, 0.55), MACHINE)["text"]
    assert slow == "2.0x larger, 2.0x slower [1.8, 2.2], +1.0 pt accuracy"
    step = versus_baseline({**SMALL, "final_stage": False, "fine_tuned": False}, BASE, None, MACHINE)["text"]
    assert step.endswith("\u22120.4 pt accuracy, an intermediate stage, before fine-tuning")


def test_a_language_models_claim_names_prefill_and_decode_and_the_perplexity_change():
    base = {"run_id": 1, "perplexity": 8.0, "size_bytes": 400_000, "gzip_bytes": 380_000, "accuracy": 0.5}
    int8 = {"run_id": 2, "perplexity": 8.2, "size_bytes": 100_000, "gzip_bytes": 90_000, "accuracy": 0.49}
    prefill, decode = {**_paired(1.5, 1.4, 1.6), "batch_size": 8}, {**_paired(0.6, 0.55, 0.65), "batch_size": 1}
    summary = versus_baseline(int8, base, prefill, MACHINE, decode=decode)
    # int8 wins the batch of prompts and loses one-token-at-a-time decoding: the reader sees both, each with its CI
    assert summary["text"] == ("4.0x smaller, prefill 1.5x faster [1.4, 1.6], decode 1.7x slower [1.5, 1.8], "
                               "perplexity 8.00 \u2192 8.20 (+2.5%)")
    assert summary["perplexity_change"] == 8.2 / 8.0 - 1 and "accuracy_delta_pt" not in summary
    untimed = versus_baseline(int8, base, prefill, MACHINE, decode=None)["text"]
    assert "decode speed: not timed together" in untimed


def test_report_is_one_self_contained_file():
    page = build_report(ROWS)
    assert "4.1x smaller, 2.3x faster [2.1, 2.5]" in page and "pruned 75%" in page and "vs #1" in page
    assert not re.search(r"<script[^>]+src=", page), "must not load scripts from the network"
    assert "plotly" in page.lower() and page.count("Plotly.newPlot") == 3
    assert len(page) > 1_000_000  # plotly.js itself is inlined

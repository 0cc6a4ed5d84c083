"""A run against its baseline, in the words a stakeholder reads: x smaller, x faster, pt accuracy."""
from __future__ import annotations

from ..core.measure import latency_of


def versus_baseline(record: dict, baseline: dict, device: str = "cpu") -> dict:
    """Ratios > 1 mean better (smaller, faster). Slower or larger results are said so, not hidden."""
    size_ratio = baseline["size_bytes"] / record["size_bytes"] if record.get("size_bytes") else None
    gzip_ratio = baseline["gzip_bytes"] / record["gzip_bytes"] if record.get("gzip_bytes") else None
    base_ms, ms = latency_of(baseline, device), latency_of(record, device)
    speed_ratio = base_ms / ms if base_ms and ms else None
    delta_pt = 100 * (record["accuracy"] - baseline["accuracy"])
    parts = []
    if size_ratio:
        parts.append(f"{size_ratio:.1f}x smaller" if size_ratio >= 1 else f"{1 / size_ratio:.1f}x larger")
    if speed_ratio:
        parts.append(f"{speed_ratio:.1f}x faster" if speed_ratio >= 1 else f"{1 / speed_ratio:.1f}x slower")
    parts.append(f"{delta_pt:+.1f} pt accuracy".replace("-", "\u2212"))
    return {"run_id": record["run_id"], "baseline_id": baseline["run_id"], "size_ratio": size_ratio,
            "gzip_ratio": gzip_ratio, "speed_ratio": speed_ratio, "accuracy_delta_pt": delta_pt,
            "device": device, "text": ", ".join(parts)}

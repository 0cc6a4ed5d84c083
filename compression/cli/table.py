"""Readable tables for the CLI (without --json)."""
from __future__ import annotations

from ..core.measure import latency_of

COLUMNS = [("run_id", "id"), ("kind", "kind"), ("status", "status"), ("dataset", "dataset"),
           ("model_name", "model"), ("label", "label")]


def _fmt_bytes(n):
    return "-" if n is None else f"{n / 1024:.1f} KiB"


def summary_row(rec: dict) -> dict:
    row = {title: rec.get(key, "") for key, title in COLUMNS}
    acc = rec.get("accuracy")
    ci = rec.get("accuracy_ci") or [None, None]
    row["accuracy"] = "-" if acc is None else f"{acc:.4f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    row["params"] = rec.get("params", "-")
    row["nonzero"] = rec.get("nonzero_params", "-")
    row["size"] = _fmt_bytes(rec.get("size_bytes"))
    row["gzip"] = _fmt_bytes(rec.get("gzip_bytes"))
    row["MACs"] = rec.get("macs", "-")
    lat = latency_of(rec, "cpu")
    row["cpu ms (max batch)"] = "-" if lat is None else f"{lat:.2f}"
    return row


def format_table(records: list[dict]) -> str:
    rows = [summary_row(r) if "accuracy" in r else r for r in records]
    if not rows:
        return "(nothing)"
    headers = list(rows[0])
    cells = [[str(r.get(h, "")) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(c) for c in cells])

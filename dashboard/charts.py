"""Plotly figure builders. Pure: records or a DataFrame in, a Figure out; no Streamlit here."""
from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go

from compression.core.measure import latency_of
from compression.core.pareto import pareto_mask

COST_AXES = {  # column -> axis title
    "params": "parameters",
    "nonzero_params": "non-zero parameters",
    "size_bytes": "serialized size (bytes)",
    "gzip_bytes": "gzip size (bytes)",
    "macs": "MACs per sample",
    "latency_ms": "latency (ms)",
}
PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
           "#4b5563", "#65a30d"]


def runs_frame(records: list[dict], device: str = "cpu", batch_size: int | None = None) -> pd.DataFrame:
    """One row per run record; `latency_ms` is the chosen device and batch (largest when None)."""
    rows = []
    for r in records:
        ci = r.get("accuracy_ci") or [None, None]
        rows.append({
            "run_id": r["run_id"], "label": r.get("label") or f"run {r['run_id']}", "kind": r["kind"],
            "technique": r.get("method") or r["kind"], "method": r.get("method"), "status": r.get("status"),
            "dataset": r["dataset"], "model": r.get("model_name"), "parent_id": r.get("parent_id"),
            "accuracy": r.get("accuracy"), "acc_lo": ci[0], "acc_hi": ci[1],
            "params": r.get("params"), "nonzero_params": r.get("nonzero_params"),
            "size_bytes": r.get("size_bytes"), "gzip_bytes": r.get("gzip_bytes"), "macs": r.get("macs"),
            "latency_ms": latency_of(r, device, batch_size),
            "config": json.dumps(r.get("config", {}), sort_keys=True),
        })
    columns = ["run_id", "label", "kind", "technique", "method", "status", "dataset", "model", "parent_id",
               "accuracy", "acc_lo", "acc_hi", "params", "nonzero_params", "size_bytes", "gzip_bytes", "macs",
               "latency_ms", "config"]
    return pd.DataFrame(rows, columns=columns)


def lineage_ids(frame: pd.DataFrame, run_id: int) -> list[int]:
    """Ancestry of a run inside the frame, root first, following parent_id."""
    parents = dict(zip(frame["run_id"], frame["parent_id"]))
    chain, current = [], run_id
    while current is not None and not pd.isna(current) and current in parents and current not in chain:
        chain.append(int(current))
        current = parents[current]
    return chain[::-1]


def _hover(row) -> str:
    config = json.loads(row["config"])
    keys = [k for k in config if k not in ("cache_key",)][:10]
    config_text = "<br>".join(f"  {k}: {config[k]}" for k in keys)
    return (f"<b>{row['label']}</b> (run {row['run_id']})<br>model: {row['model']}<br>"
            f"accuracy: {row['accuracy']:.4f} [{row['acc_lo']:.3f}, {row['acc_hi']:.3f}]<br>"
            f"params: {row['params']:,}<br>config:<br>{config_text}")


def tradeoff_chart(frame: pd.DataFrame, cost: str = "params", log_x: bool = True,
                   highlight: list[int] | None = None, title: str | None = None) -> go.Figure:
    """Accuracy vs a cost: points coloured by technique, CI error bars, the Pareto front drawn,
    and an optional lineage path (baseline -> pruned -> quantized) with arrows."""
    fig = go.Figure()
    data = frame.dropna(subset=["accuracy", cost])
    data = data[data[cost] > 0] if log_x else data
    for i, (technique, group) in enumerate(data.groupby("technique", sort=True)):
        fig.add_trace(go.Scatter(
            x=group[cost], y=group["accuracy"], mode="markers", name=str(technique),
            marker=dict(size=10, color=PALETTE[i % len(PALETTE)], line=dict(width=1, color="white")),
            error_y=dict(type="data", symmetric=False, array=group["acc_hi"] - group["accuracy"],
                         arrayminus=group["accuracy"] - group["acc_lo"], thickness=1, width=3),
            text=[_hover(row) for row in group.to_dict("records")], hoverinfo="text",
            customdata=group["run_id"]))
    if len(data):
        mask = pareto_mask(list(data[cost]), list(data["accuracy"]))
        front = data[mask].sort_values(cost)
        fig.add_trace(go.Scatter(x=front[cost], y=front["accuracy"], mode="lines+markers", name="Pareto front",
                                 line=dict(color="#111827", width=2, dash="dot", shape="hv"),
                                 marker=dict(size=16, symbol="circle-open", color="#111827"), hoverinfo="skip"))
    if highlight and len(data):
        path = data.set_index("run_id").reindex(highlight).dropna(subset=["accuracy", cost])
        fig.add_trace(go.Scatter(x=path[cost], y=path["accuracy"], mode="lines+markers+text", name="lineage",
                                 text=path["label"], textposition="top center",
                                 line=dict(color="#f59e0b", width=3), marker=dict(size=12, color="#f59e0b"),
                                 hoverinfo="skip"))
        for (x0, y0), (x1, y1) in zip(path[[cost, "accuracy"]].values[:-1], path[[cost, "accuracy"]].values[1:]):
            fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y",
                               showarrow=True, arrowhead=3, arrowsize=1.5, arrowcolor="#f59e0b", text="")
    if log_x:  # arrows on log axes take log10 positions
        for ann in fig.layout.annotations:
            import math
            ann.x, ann.ax = math.log10(ann.x), math.log10(ann.ax)
    fig.update_layout(title=title or f"Accuracy vs {COST_AXES.get(cost, cost)}",
                      xaxis_title=COST_AXES.get(cost, cost), yaxis_title="test accuracy",
                      xaxis_type="log" if log_x else "linear", height=460, legend_title="technique",
                      margin=dict(l=10, r=10, t=50, b=10), template="plotly_white")
    return fig


def training_curves(events: list[dict]) -> go.Figure:
    """Loss and validation accuracy per epoch, one line per stage (live while a job runs)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation accuracy"))
    frame = pd.DataFrame([e for e in events if "epoch" in e])
    if len(frame):
        frame["stage"] = frame.get("stage", pd.Series(["training"] * len(frame))).fillna("training")
        frame["step"] = range(1, len(frame) + 1)
        for i, (stage, group) in enumerate(frame.groupby("stage", sort=False)):
            color = PALETTE[i % len(PALETTE)]
            fig.add_trace(go.Scatter(x=group["epoch"], y=group["train_loss"], name=str(stage), mode="lines+markers",
                                     line=dict(color=color), legendgroup=str(stage)), row=1, col=1)
            fig.add_trace(go.Scatter(x=group["epoch"], y=group["val_accuracy"], name=str(stage),
                                     mode="lines+markers", line=dict(color=color), legendgroup=str(stage),
                                     showlegend=False), row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), template="plotly_white")
    return fig

"""Plotly figure builders. Pure: records or a DataFrame in, a Figure out; no Streamlit here."""
from __future__ import annotations

import functools
import json
import math
import re

import pandas as pd
import plotly.graph_objects as go

from compression.core.measure import latency_of
from compression.core.pareto import pareto_mask
from compression.labs.labels import technique_label
from compression.labs.distill import METHOD_LABELS as DISTILL_LABELS
from compression.techniques.prune import METHODS as PRUNE_METHODS
from compression.techniques.quantize import METHODS as QUANT_METHODS

COST_AXES = {  # column -> axis title
    "params": "parameters",
    "nonzero_params": "non-zero parameters",
    "size_bytes": "serialized size (bytes)",
    "gzip_bytes": "gzip size (bytes)",
    "macs": "MACs per sample",
    "latency_ms": "latency (ms)",
}
# Okabe-Ito: distinguishable with every common colour-vision deficiency (and in grey on a dim projector)
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]


# a sparsity axis: 0 to 100% whatever the data (one sparsity autoranged to 0-150%); a little margin at both ends
SPARSITY_AXIS = dict(range=[-0.02, 1.02], tickformat=".0%", tick0=0, dtick=0.1)


@functools.cache
def _technique_ids() -> re.Pattern:
    """Every registered technique id as a whole word, longest first (so 'static_int8' wins over 'int8')."""
    ids = [*PRUNE_METHODS.names(), *QUANT_METHODS.names(), *DISTILL_LABELS]
    alternatives = "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
    return re.compile(r"(?<![\w-])(" + alternatives + r")(?![\w-])")


def readable(text) -> str:
    """A run label or stage name with every technique id in it replaced by the registries' display name, as
    the Compare page shows them: "global_l1 90%" -> "Weight pruning, global (L1) 90%"."""
    if text is None:
        return ""
    return _technique_ids().sub(lambda m: technique_label(m.group(1)), str(text))


def runs_frame(records: list[dict], device: str = "cpu", batch_size: int | None = None) -> pd.DataFrame:
    """One row per run record; `latency_ms` is the chosen device and batch (largest when None)."""
    rows = []
    for r in records:
        ci = r.get("accuracy_ci") or [None, None]
        rows.append({
            "run_id": r["run_id"], "label": r.get("label") or f"run {r['run_id']}", "kind": r["kind"],
            "technique": technique_label(r.get("method") or r["kind"]), "method": r.get("method"),
            "status": r.get("status"),
            # a pipeline's prune stage before its fine-tune sits near chance: drawn faded and named as such
            "intermediate": r.get("final_stage") is False and r.get("fine_tuned") is False,
            "dataset": r["dataset"], "model": r.get("model_name"), "parent_id": r.get("parent_id"),
            "accuracy": r.get("accuracy"), "acc_lo": ci[0], "acc_hi": ci[1],
            "params": r.get("params"), "nonzero_params": r.get("nonzero_params"),
            "size_bytes": r.get("size_bytes"), "gzip_bytes": r.get("gzip_bytes"), "macs": r.get("macs"),
            "latency_ms": latency_of(r, device, batch_size),
            "config": json.dumps(r.get("config", {}), sort_keys=True),
        })
    columns = ["run_id", "label", "kind", "technique", "method", "status", "intermediate", "dataset", "model",
               "parent_id",
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
    return (f"<b>{readable(row['label'])}</b> (run {row['run_id']})<br>model: {row['model']}<br>"
            f"accuracy: {row['accuracy']:.4f} [{row['acc_lo']:.3f}, {row['acc_hi']:.3f}]<br>"
            f"params: {row['params']:,}<br>config:<br>{config_text}")


def accuracy_range(data: pd.DataFrame, full: bool = False) -> list[float]:
    """The y range: fitted to the runs' CIs (0.93-0.99 is where results sit; a 0-1 axis flattens it), or 0-1."""
    if full or data.empty:
        return [0, 1.02]
    lo, hi = float(data["acc_lo"].fillna(data["accuracy"]).min()), float(data["acc_hi"].fillna(data["accuracy"]).max())
    pad = max(0.01, 0.08 * (hi - lo))
    return [max(0.0, lo - pad), min(1.02, hi + pad)]


def tradeoff_chart(frame: pd.DataFrame, cost: str = "params", log_x: bool = True,
                   highlight: list[int] | None = None, title: str | None = None, full_y: bool = False) -> go.Figure:
    """Accuracy vs a cost: points coloured by technique (registry names), CI error bars, the Pareto front
    drawn, intermediate stages faded, and an optional lineage path (baseline -> pruned -> quantized)."""
    fig = go.Figure()
    data = frame.dropna(subset=["accuracy", cost])
    data = data[data[cost] > 0] if log_x else data
    intermediate = data["intermediate"].fillna(False).astype(bool)
    for i, (technique, group) in enumerate(data.groupby("technique", sort=True)):
        color, steps = PALETTE[i % len(PALETTE)], intermediate.loc[group.index]
        if (~steps).any():
            _add_points(fig, group[~steps], cost, str(technique), color, 1.0)
        if steps.any():
            _add_points(fig, group[steps], cost, f"{technique} (intermediate, not fine-tuned)", color, 0.35)
    finished = data[~intermediate]  # the front is over finished results only
    if len(finished):
        mask = pareto_mask(list(finished[cost]), list(finished["accuracy"]))
        front = finished[mask].sort_values(cost)
        fig.add_trace(go.Scatter(x=front[cost], y=front["accuracy"], mode="lines+markers", name="Pareto front",
                                 line=dict(color="#111827", width=2, dash="dot", shape="hv"),
                                 marker=dict(size=16, symbol="circle-open", color="#111827"), hoverinfo="skip"))
    if highlight and len(data):
        path = data.set_index("run_id").reindex(highlight).dropna(subset=["accuracy", cost])
        fig.add_trace(go.Scatter(x=path[cost], y=path["accuracy"], mode="lines+markers+text", name="lineage",
                                 text=[readable(t) for t in path["label"]], textposition="top center",
                                 line=dict(color="#f59e0b", width=3), marker=dict(size=12, color="#f59e0b"),
                                 hoverinfo="skip"))
        for (x0, y0), (x1, y1) in zip(path[[cost, "accuracy"]].values[:-1], path[[cost, "accuracy"]].values[1:]):
            fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y",
                               showarrow=True, arrowhead=3, arrowsize=1.5, arrowcolor="#f59e0b", text="")
    if log_x:  # arrows on log axes take log10 positions
        for ann in fig.layout.annotations:
            ann.x, ann.ax = math.log10(ann.x), math.log10(ann.ax)
    fig.update_layout(title=title or f"Accuracy vs {COST_AXES.get(cost, cost)}",
                      xaxis_title=COST_AXES.get(cost, cost), yaxis_title="test accuracy",
                      yaxis_range=accuracy_range(frame.dropna(subset=["accuracy"]), full_y),
                      xaxis_type="log" if log_x else "linear", height=540, legend_title="technique",
                      # below the plot: beside it, the legend took half of a half-width chart
                      legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0),
                      margin=dict(l=10, r=10, t=50, b=10), template="plotly_white")
    return fig


def _add_points(fig: go.Figure, group: pd.DataFrame, cost: str, name: str, color: str, opacity: float) -> None:
    fig.add_trace(go.Scatter(
        x=group[cost], y=group["accuracy"], mode="markers", name=name, opacity=opacity,
        marker=dict(size=10, color=color, line=dict(width=1, color="white")),
        error_y=dict(type="data", symmetric=False, array=group["acc_hi"] - group["accuracy"],
                     arrayminus=group["accuracy"] - group["acc_lo"], thickness=1, width=3),
        text=[_hover(row) for row in group.to_dict("records")], hoverinfo="text", customdata=group["run_id"]))


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
            fig.add_trace(go.Scatter(x=group["epoch"], y=group["train_loss"], name=readable(stage),
                                     mode="lines+markers", line=dict(color=color), legendgroup=str(stage)),
                          row=1, col=1)
            fig.add_trace(go.Scatter(x=group["epoch"], y=group["val_accuracy"], name=readable(stage),
                                     mode="lines+markers", line=dict(color=color), legendgroup=str(stage),
                                     showlegend=False), row=1, col=2)
        lowest = frame["val_accuracy"].min()
        if pd.notna(lowest):  # accuracy ends at 1: a flat 100% run was drawn on an axis from 0 to 2
            fig.update_yaxes(range=[max(0.0, lowest - 0.05), 1.01], row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), template="plotly_white")
    return fig

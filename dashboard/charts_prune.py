"""Prune page figures. Pure: records in, Figure out."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


from compression.labs.labels import technique_label

from .charts import PALETTE, SPARSITY_AXIS, readable

LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=50, b=10), height=420)


def accuracy_vs_sparsity(results: list[dict], baseline: dict | None = None) -> go.Figure:
    """One line per method with its 95% CI band; the baseline as a dashed line."""
    fig = go.Figure()
    frame = pd.DataFrame([{"method": r["method"], "sparsity": r.get("sparsity"), "accuracy": r["accuracy"],
                           "lo": r["accuracy_ci"][0], "hi": r["accuracy_ci"][1]} for r in results])
    for i, (method, group) in enumerate(frame.groupby("method", sort=True) if len(frame) else []):
        group = group.sort_values("sparsity")
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=list(group["sparsity"]) + list(group["sparsity"])[::-1],
                                 y=list(group["hi"]) + list(group["lo"])[::-1], fill="toself", opacity=0.15,
                                 line=dict(width=0), fillcolor=color, showlegend=False, hoverinfo="skip"))
        name = technique_label(method)  # the registry's name, as on the Compare page, not the id
        fig.add_trace(go.Scatter(x=group["sparsity"], y=group["accuracy"], mode="lines+markers", name=name,
                                 line=dict(color=color, width=2),
                                 hovertemplate=f"{name}<br>sparsity %{{x:.0%}}<br>accuracy %{{y:.4f}}<extra></extra>"))
    if baseline is not None:
        fig.add_hline(y=baseline["accuracy"], line_dash="dash", line_color="#111827",
                      annotation_text="baseline", annotation_position="bottom left")
    fig.update_layout(title="Accuracy vs sparsity (95% CI bands)", xaxis_title="sparsity", yaxis_title="test accuracy",
                      xaxis=SPARSITY_AXIS, legend_title="method", **LAYOUT)
    return fig


def layer_sparsity_bars(layers: list[dict], title: str = "Per-layer sparsity") -> go.Figure:
    frame = pd.DataFrame(layers)
    fig = go.Figure(go.Bar(x=frame["layer"], y=frame["sparsity"], marker_color=PALETTE[0],
                           text=[f"{s:.0%}" for s in frame["sparsity"]], textposition="auto", cliponaxis=False,
                           hovertext=[f"{r.layer} ({r.type}): {r.params_before:,} -> {r.nonzero_after:,} weights"
                                      for r in frame.itertuples()], hoverinfo="text"))
    fig.update_layout(title=readable(title), xaxis_title="layer", yaxis_title="sparsity (zeroed or removed)",
                      yaxis={**SPARSITY_AXIS, "range": [0, 1.02]}, **LAYOUT)
    return fig


def sensitivity_heatmap(rows: list[dict]) -> go.Figure:
    """Layer x sparsity -> accuracy drop when that layer alone is pruned (no fine-tuning)."""
    frame = pd.DataFrame(rows).pivot_table(index="layer", columns="sparsity", values="drop_pt", sort=False)
    fig = go.Figure(go.Heatmap(z=frame.values, x=[f"{s:.0%}" for s in frame.columns], y=list(frame.index),
                               colorscale="Reds", colorbar_title="drop (pt)",
                               text=[[f"{v:.1f}" for v in row] for row in frame.values], texttemplate="%{text}"))
    fig.update_layout(title="Sensitivity: accuracy drop when one layer is pruned alone", xaxis_title="sparsity",
                      yaxis_title="layer", yaxis_autorange="reversed", **LAYOUT)
    return fig


def speedup_bars(results: list[dict], baseline: dict, device: str = "cpu") -> go.Figure:
    """Measured speed-up (child and parent timed together, with its 95% CI) next to what the MACs predict:
    unstructured sparsity barely moves latency on dense kernels, removing channels does."""
    labels, measured, lows, highs, predicted, notes = [], [], [], [], [], []
    for r in results:
        batch = max((e["batch_size"] for e in r.get("latency", [])), default=None)
        key = f"speedup_{device}_b{batch}"
        ratio, ci = r.get(key), r.get(f"{key}_ci95") or [None, None]
        noisy = r.get(f"{key}_noisy")
        labels.append(readable(r.get("label") or str(r["run_id"])) + (" (noisy)" if noisy else ""))
        measured.append(ratio)
        lows.append(ratio - ci[0] if ratio and ci[0] else 0)
        highs.append(ci[1] - ratio if ratio and ci[1] else 0)
        predicted.append(r.get("speedup_predicted_macs"))
        notes.append(f"95% CI [{ci[0]:.2f}, {ci[1]:.2f}], load {r.get(f'{key}_load', 0):.1f} cores"
                     if ratio and ci[0] else "not timed together")
    fig = go.Figure([go.Bar(name="measured speed-up (paired, 95% CI)", x=labels, y=measured, marker_color=PALETTE[0],
                            error_y={"type": "data", "symmetric": False, "array": highs, "arrayminus": lows},
                            customdata=notes, hovertemplate="%{x}: %{y:.2f}x<br>%{customdata}<extra></extra>"),
                     go.Bar(name="speed-up the MACs predict", x=labels, y=predicted, marker_color="#9ca3af")])
    fig.add_hline(y=1, line_dash="dot", line_color="#111827")
    fig.update_layout(barmode="group", title=f"Speed-up vs the parent, timed together ({device}, largest batch)",
                      yaxis_title="x faster", **LAYOUT)
    return fig

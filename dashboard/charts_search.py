"""Search page figures. Pure: summaries in, Figure out."""
from __future__ import annotations

import plotly.graph_objects as go

from compression.core.pareto import pareto_mask

from .charts import PALETTE


def search_pareto(trials: list[dict], zoo: list[dict], objective: str) -> go.Figure:
    """Validation accuracy vs the cost: the found front bright, dominated trials dimmed, the zoo as diamonds."""
    done = [t for t in trials if t.get("status") == "complete" and "cost" in t]
    mask = pareto_mask([t["cost"] for t in done], [t["val_accuracy"] for t in done])
    fig = go.Figure()
    for on_front, name, opacity in ((False, "dominated trials", 0.25), (True, "Pareto front (found)", 1.0)):
        pts = [t for t, m in zip(done, mask) if m == on_front]
        pts.sort(key=lambda t: t["cost"])
        fig.add_trace(go.Scatter(
            x=[t["cost"] for t in pts], y=[t["val_accuracy"] for t in pts], name=name, opacity=opacity,
            mode="lines+markers" if on_front else "markers",
            line=dict(color=PALETTE[0], shape="hv", width=2), marker=dict(size=10, color=PALETTE[0]),
            text=[f"trial {t['number']} (run {t['run_id']})<br>{t['arch']}" for t in pts], hoverinfo="text+x+y"))
    fig.add_trace(go.Scatter(x=[z["cost"] for z in zoo], y=[z["val_accuracy"] for z in zoo], name="zoo (hand-designed)",
                             mode="markers+text", text=[z["label"].split(" baseline")[0] for z in zoo],
                             textposition="top center", marker=dict(size=12, symbol="diamond", color=PALETTE[1])))
    axis = {"params": "parameters", "macs": "MACs per sample", "latency": "CPU latency (ms)",
            "none": "parameters"}[objective]
    fig.update_layout(title="Accuracy vs cost: found front and the zoo", xaxis_title=axis, xaxis_type="log",
                      yaxis_title="validation accuracy", template="plotly_white", height=460,
                      margin=dict(l=10, r=10, t=50, b=10))
    return fig

"""Search page figures. Pure: summaries in, Figure out."""
from __future__ import annotations

import plotly.graph_objects as go

from compression.core.pareto import pareto_mask
from compression.search.strategies import LM_OBJECTIVES

from .charts import PALETTE

IMAGE_COST_AXIS = {"params": "parameters", "macs": "MACs per sample", "latency": "CPU latency (ms)",
                   "none": "parameters"}
TEXT_COST_AXIS = {"decode": "decode latency (ms per token, batch 1, measured here)", "params": "parameters",
                  "none": "parameters"}


def _front_figure(trials: list[dict], zoo: list[dict], quality: str, lower_is_better: bool, x_title: str,
                  y_title: str, title: str) -> go.Figure:
    """The quality vs the cost: the found front bright, dominated trials dimmed, the zoo as diamonds."""
    done = [t for t in trials if t.get("status") == "complete" and "cost" in t and quality in t]
    sign = -1 if lower_is_better else 1  # pareto_mask keeps the highest quality at each cost
    mask = pareto_mask([t["cost"] for t in done], [sign * t[quality] for t in done])
    fig = go.Figure()
    for on_front, name, opacity in ((False, "dominated trials", 0.25), (True, "Pareto front (found)", 1.0)):
        pts = [t for t, m in zip(done, mask) if m == on_front]
        pts.sort(key=lambda t: t["cost"])
        fig.add_trace(go.Scatter(
            x=[t["cost"] for t in pts], y=[t[quality] for t in pts], name=name, opacity=opacity,
            mode="lines+markers" if on_front else "markers",
            line=dict(color=PALETTE[0], shape="hv", width=2), marker=dict(size=10, color=PALETTE[0]),
            text=[f"trial {t['number']} (run {t['run_id']})<br>{t['arch']}" for t in pts], hoverinfo="text+x+y"))
    fig.add_trace(go.Scatter(x=[z["cost"] for z in zoo], y=[z[quality] for z in zoo], name="zoo (hand-designed)",
                             mode="markers+text", text=[z["label"].split(" baseline")[0] for z in zoo],
                             textposition="top center", marker=dict(size=12, symbol="diamond", color=PALETTE[1])))
    fig.update_layout(title=title, xaxis_title=x_title, xaxis_type="log", yaxis_title=y_title,
                      template="plotly_white", height=460, margin=dict(l=10, r=10, t=50, b=10))
    return fig


def search_pareto(trials: list[dict], zoo: list[dict], objective: str) -> go.Figure:
    """Validation accuracy vs the cost (image searches)."""
    return _front_figure(trials, zoo, "val_accuracy", False, IMAGE_COST_AXIS[objective], "validation accuracy",
                         "Accuracy vs cost: found front and the zoo")


def text_search_pareto(trials: list[dict], zoo: list[dict], objective: str) -> go.Figure:
    """Validation perplexity vs decode latency or parameters (language-model searches): lower is better on both
    axes, so the front runs along the bottom left; perplexity on a log axis, as its ratios are what matter."""
    fig = _front_figure(trials, zoo, "val_perplexity", True,
                        TEXT_COST_AXIS.get(objective, LM_OBJECTIVES.label(objective)),
                        "validation perplexity (lower is better)",
                        "Perplexity vs cost: found front and the zoo")
    fig.update_layout(yaxis_type="log")
    return fig

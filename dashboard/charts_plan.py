"""Plan page figure. Pure: the plan's state (compression.labs.plan_result.plan_state) in, Figure out."""
from __future__ import annotations

import math

import plotly.graph_objects as go

from .charts import PALETTE, readable


def plan_chart(state: dict, best_run: int | None = None) -> go.Figure:
    """Each finished trial as (how many times cheaper, quality loss: accuracy drop in pt, or a language model's
    perplexity increase in %); the target box shaded: right of the target line and below the bound is where a
    winner must land."""
    target, bound, points = state["target"], state["max_drop"], state["points"]
    quality = state.get("quality") or {"unit": "pt", "what": "accuracy drop"}
    unit = " pt" if quality["unit"] == "pt" else "%"
    xs = [p["factor"] for p in points] + [target["factor"], 1.0]
    drops = [p["loss"] for p in points if p["loss"] is not None]
    x_hi = 1.25 * max(xs)
    y_lo, y_hi = min(drops + [0.0]) - 0.5, max(drops + [bound]) + 0.5
    fig = go.Figure()
    fig.add_shape(type="rect", x0=target["factor"], x1=x_hi, y0=y_lo, y1=bound, line_width=0,
                  fillcolor=PALETTE[2], opacity=0.12, layer="below")
    fig.add_vline(x=target["factor"], line_dash="dash", line_color=PALETTE[5],
                  annotation_text=f"target: {target['phrase']}", annotation_position="top left")
    fig.add_hline(y=bound, line_dash="dot", line_color=PALETTE[7], annotation_text=f"max {quality['what']} {bound:g}{unit}",
                  annotation_position="bottom right")
    inside = [p for p in points if p["factor"] >= target["factor"] and (p["loss"] or 0) <= bound]
    outside = [p for p in points if p not in inside]
    for group, name, color in ((outside, "misses the target", PALETTE[1]), (inside, "meets the target", PALETTE[0])):
        fig.add_trace(go.Scatter(x=[p["factor"] for p in group], y=[p["loss"] for p in group], name=name,
                                 mode="markers", marker=dict(size=11, color=color),
                                 text=[f"trial {p['number']} (run {p['run_id']})<br>{readable(p['label'])}"
                                       for p in group],
                                 hoverinfo="text+x+y"))
    best = [p for p in points if p["run_id"] == best_run]
    if best:
        fig.add_trace(go.Scatter(x=[best[0]["factor"]], y=[best[0]["loss"]], name="winner", mode="markers",
                                 marker=dict(size=22, symbol="star", color=PALETTE[6], line=dict(width=1.5))))
    fig.update_layout(title=f"Trials against the target ({len(points)} finished)", template="plotly_white",
                      xaxis=dict(title=f"x {target['unit']} than the baseline", type="log",
                                 range=[_log10(0.8 * min(xs + [1.0])), _log10(x_hi)]),
                      yaxis=dict(title=f"{quality['what']} ({unit.strip()}, test split)",
                                 range=[y_hi, y_lo]), height=440,
                      margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.2))
    return fig


def _log10(value: float) -> float:
    return math.log10(max(value, 1e-6))

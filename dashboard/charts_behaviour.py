"""What did compression change? Figures, thumbnails and plain words for a `diff` of two runs.

Pure: the dict that `compression.labs.diff.diff_runs` returns (and numpy images) in; Figures, arrays,
strings out. No Streamlit, no torch, so pages and the HTML report draw the same things.
"""
from __future__ import annotations

import base64
import io
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .charts import tradeoff_chart

FLIP_AXIS = "answers changed vs parent (flip rate)"
HURT, HELPED, NOISE = "#dc2626", "#16a34a", "#9ca3af"
LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=90, b=10))


# --------------------------------------------------------------------------- words

def _pt(x: float) -> str:
    """A signed accuracy change in points, with a true minus sign for reading."""
    return f"{100 * x:+.1f}".replace("-", "\u2212")


def class_verdict(entry: dict) -> str:
    """'class 8: −6.1 pt [−11.0, −1.2]', with '(could be noise)' when the paired CI contains 0."""
    lo, hi = entry["ci95_delta"]
    noise = "" if entry.get("significant") else " (could be noise)"
    return f"class {entry['name']}: {_pt(entry['delta'])} pt [{_pt(lo)}, {_pt(hi)}]{noise}"


def what_changed(diff: dict) -> dict[str, str]:
    """The Report's lines: how many answers changed, which classes lost most, and calibration."""
    n, flips = diff["n_test"], round(diff["flip_rate"] * diff["n_test"])
    hurt = [class_verdict(e) for e in diff["most_hurt_classes"]]
    delta_ece = diff["ece_b"] - diff["ece_a"]
    return {
        "flips": (f"{diff['flip_rate']:.1%} of answers changed ({flips} of {n}): {diff['newly_wrong']} newly wrong, "
                  f"{diff['newly_right']} newly right, {flips - diff['newly_wrong'] - diff['newly_right']} wrong "
                  f"both times with a different answer"),
        "hurt": "Most hurt classes: " + ("; ".join(hurt) if hurt else "none lost accuracy"),
        "ece": (f"Calibration error (ECE, 15 bins): {diff['ece_a']:.3f} \u2192 {diff['ece_b']:.3f} "
                f"({'+' if delta_ece >= 0 else chr(0x2212)}{abs(delta_ece):.3f}"
                f"{', less honest confidence' if delta_ece > 0.01 else ''})"),
    }


def gallery_captions(diff: dict, names: tuple[str, str] = ("A", "B")) -> list[str]:
    """One caption per gallery example: the truth, both answers with their confidence, and what changed."""
    classes = {e["class"]: e["name"] for e in diff["per_class"]}
    out = []
    for g in diff["gallery"]:
        if g["pred_a"] == g["label"]:
            what = "newly wrong"
        elif g["pred_b"] == g["label"]:
            what = "newly right"
        else:
            what = "wrong both times"
        out.append(f"#{g['index']} {what} · true {classes[g['label']]} · {names[0]}: {classes[g['pred_a']]} "
                   f"({g['conf_a']:.0%}) → {names[1]}: {classes[g['pred_b']]} ({g['conf_b']:.0%})")
    return out


# --------------------------------------------------------------------------- figures

def per_class_delta_chart(diff: dict, names: tuple[str, str] = ("A", "B")) -> go.Figure:
    """Accuracy change per true class, B − A, with the paired 95% CI; red/green only where the CI excludes 0."""
    rows = [e for e in diff["per_class"] if e["n"]]
    delta = [100 * e["delta"] for e in rows]
    lo, hi = [100 * e["ci95_delta"][0] for e in rows], [100 * e["ci95_delta"][1] for e in rows]
    colours = [NOISE if not e["significant"] else (HURT if e["delta"] < 0 else HELPED) for e in rows]
    hover = [f"class {e['name']} (n={e['n']})<br>{names[0]}: {e['acc_a']:.1%} → {names[1]}: {e['acc_b']:.1%}<br>"
             f"{class_verdict(e)}" for e in rows]
    fig = go.Figure(go.Bar(
        x=[e["name"] for e in rows], y=delta, marker_color=colours, hovertext=hover, hoverinfo="text",
        error_y=dict(type="data", symmetric=False, array=[h - d for h, d in zip(hi, delta)],
                     arrayminus=[d - v for d, v in zip(delta, lo)], thickness=1.2, width=4, color="#374151")))
    fig.add_hline(y=0, line_color="#111827", line_width=1)
    fig.update_layout(title=dict(text=f"Per-class accuracy change, {names[1]} − {names[0]}",
                                 subtitle=dict(text="95% paired CI; grey: could be noise")),
                      xaxis_title="true class", yaxis_title="accuracy change (pt)", xaxis_type="category",
                      height=380, **LAYOUT)
    return fig


def confusion_delta_heatmap(diff: dict, names: tuple[str, str] = ("A", "B")) -> go.Figure:
    """Confusion matrix of B minus that of A: where answers moved (rows true class, columns answer)."""
    delta = np.asarray(diff["confusion_b"]) - np.asarray(diff["confusion_a"])
    labels = [e["name"] for e in diff["per_class"]]
    reach = max(1, int(np.abs(delta).max()))
    text = [[f"{v:+d}" if v else "" for v in row] for row in delta.tolist()]
    fig = go.Figure(go.Heatmap(
        z=delta.tolist(), x=labels, y=labels, text=text, texttemplate="%{text}", zmid=0, zmin=-reach, zmax=reach,
        colorscale="RdBu_r", colorbar=dict(title="count"),
        hovertemplate="true %{y}, answered %{x}: %{z:+d}<extra></extra>"))
    fig.update_layout(title=dict(text=f"Confusion change, {names[1]} − {names[0]}",
                                 subtitle=dict(text="off the diagonal, red: new mistakes")),
                      xaxis_title="answer", yaxis_title="true class", xaxis_type="category", yaxis_type="category",
                      yaxis_autorange="reversed", height=420, **LAYOUT)
    return fig


def reliability_chart(diff: dict, names: tuple[str, str] = ("A", "B")) -> go.Figure:
    """Both reliability diagrams side by side: accuracy per confidence bin against the diagonal, with ECE."""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=(
        f"{names[0]}: ECE {diff['ece_a']:.3f}", f"{names[1]}: ECE {diff['ece_b']:.3f}"))
    for col, key in ((1, "reliability_a"), (2, "reliability_b")):
        bins = [b for b in diff[key] if b["count"]]
        centres = [(b["lo"] + b["hi"]) / 2 for b in bins]
        width = [b["hi"] - b["lo"] for b in bins]
        fig.add_trace(go.Bar(x=centres, y=[b["accuracy"] for b in bins], width=width, name="accuracy",
                             marker_color="#2563eb", marker_line=dict(color="white", width=1), showlegend=col == 1,
                             hovertext=[f"confidence ({b['lo']:.2f}, {b['hi']:.2f}]: {b['count']} answers<br>"
                                        f"accuracy {b['accuracy']:.2f}, mean confidence {b['confidence']:.2f}"
                                        for b in bins], hoverinfo="text"), row=1, col=col)
        fig.add_trace(go.Scatter(x=centres, y=[b["confidence"] for b in bins], mode="markers", name="mean confidence",
                                 marker=dict(color=HURT, symbol="line-ew-open", size=14, line=dict(width=2)),
                                 showlegend=col == 1, hoverinfo="skip"), row=1, col=col)
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                                 line=dict(color="#111827", dash="dot"), showlegend=col == 1, hoverinfo="skip"),
                      row=1, col=col)
    fig.update_xaxes(title_text="top-1 confidence", range=[0, 1])
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=1)
    fig.update_layout(title=dict(text="Reliability: is the confidence honest?",
                                 subtitle=dict(text="bars under the diagonal: overconfident")),
                      height=380, legend=dict(orientation="h", y=-0.25), **LAYOUT)
    return fig


def with_flip_rate(frame: pd.DataFrame, records: list[dict]) -> pd.DataFrame:
    """`frame` (from charts.runs_frame) plus each run's stored flip rate against its parent (NaN if none)."""
    rates = {r["run_id"]: r.get("flip_rate") for r in records}
    return frame.assign(flip_rate=[rates.get(i) if rates.get(i) is not None else math.nan for i in frame["run_id"]])


def flip_tradeoff_chart(frame: pd.DataFrame, log_x: bool = False, highlight: list[int] | None = None) -> go.Figure:
    """Accuracy against the share of answers that changed vs the parent: same accuracy, different churn."""
    fig = tradeoff_chart(frame, "flip_rate", log_x=log_x, highlight=highlight,
                         title="Accuracy vs answers changed (flip rate against each run's parent)")
    fig.update_layout(xaxis_title=FLIP_AXIS, xaxis_tickformat=".1%")
    return fig


# --------------------------------------------------------------------------- images

def thumbnails(x: np.ndarray, size: int = 64) -> list[np.ndarray]:
    """Test inputs (n, C, H, W), standardised, back to viewable uint8 images, upscaled to about `size` px.

    The per-channel mean and std the data set was standardised with are not stored, so each image is
    stretched to its own min..max (contrast is per image; shapes and, for RGB, hues survive).
    Nearest-neighbour upscaling by a whole factor keeps an 8x8 digit's pixels crisp (8x8 -> 64x64).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3:
        x = x[:, None]
    out = []
    for image in x:
        lo, hi = image.min(), image.max()
        scaled = np.zeros_like(image) if hi - lo < 1e-12 else (image - lo) / (hi - lo)
        pixels = np.round(255 * scaled).astype(np.uint8)
        pixels = pixels.transpose(1, 2, 0) if pixels.shape[0] == 3 else pixels[0]  # RGB -> HWC; else first channel
        factor = max(1, round(size / max(pixels.shape[:2])))
        out.append(np.ascontiguousarray(pixels.repeat(factor, axis=0).repeat(factor, axis=1)))
    return out


def png_data_uri(image: np.ndarray) -> str:
    """A uint8 image as an inline `data:image/png;base64,...` URI: the HTML report stays one offline file."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# --------------------------------------------------------------------------- language models

def loss_change_chart(diff: dict, names: tuple[str, str] = ("A", "B")) -> go.Figure:
    """How the per-token loss changed from A to B, as a histogram over the compared positions (a text diff's
    `loss_change_histogram`): mass right of 0 is where B is more surprised by the true next token than A."""
    hist = diff["loss_change_histogram"]
    edges, counts = hist["edges"], hist["counts"]
    centres = [(lo + hi) / 2 for lo, hi in zip(edges, edges[1:])]
    total = sum(counts) or 1
    fig = go.Figure(go.Bar(x=centres, y=[c / total for c in counts], width=edges[1] - edges[0],
                           marker_color=[HURT if x > 0 else HELPED if x < 0 else NOISE for x in centres],
                           hovertemplate="%{x:+.2f} nats: %{y:.1%} of tokens<extra></extra>"))
    clipped = f"; {hist['clipped']} beyond ±{edges[-1]:g} counted at the ends" if hist["clipped"] else ""
    fig.add_vline(x=diff["loss_change"], line_dash="dash", line_color="#111827",
                  annotation_text=f"mean {diff['loss_change']:+.3f}")
    fig.update_layout(**{**LAYOUT, "margin": dict(l=10, r=10, t=60, b=10)}, height=300, bargap=0.05,
                      title=f"Per-token loss change, {names[1]} minus {names[0]} (nats){clipped}",
                      xaxis_title="loss change at the true next token (nats; right of 0: B worse)",
                      yaxis_title="share of tokens", yaxis_tickformat=".0%")
    return fig

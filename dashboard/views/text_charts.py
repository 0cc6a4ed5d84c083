"""Language-model charts: perplexity (lower is better) against a cost, and training curves by step. Pure: records
in, a Figure out. Text runs are never drawn with image runs: accuracy and perplexity share no axis."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from compression.core.pareto import pareto_mask

from ..charts import PALETTE, readable

TEXT_COST_AXES = {  # column -> axis title
    "params": "parameters",
    "size_bytes": "serialized size (bytes)",
    "macs_per_token": "MACs per token",
    "prefill_ms": "prefill latency (ms, one batch)",
    "decode_ms_per_token": "decode latency (ms per token, batch 1)",
}
QUALITY_AXES = {"perplexity": "test perplexity (lower is better)",
                "bits_per_byte": "bits per byte (lower is better)"}


def measured(records: list[dict]) -> list[dict]:
    """The runs with a measured perplexity: a failed or running run (or an image classifier's) has none."""
    return [r for r in records if r.get("perplexity") is not None]


def _phase(record: dict, phase: str) -> dict | None:
    return next((e for e in record.get("latency", []) if e.get("phase") == phase and e.get("median_ms")), None)


def text_frame(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in measured(records):
        prefill, decode = _phase(r, "prefill"), _phase(r, "decode")
        lo, hi = r.get("perplexity_ci95") or [None, None]
        rows.append({"run_id": r["run_id"], "label": r.get("label") or f"run {r['run_id']}", "dataset": r["dataset"],
                     "model": r.get("model_name"), "parent_id": r.get("parent_id"),
                     "perplexity": r.get("perplexity"), "ppl_lo": lo, "ppl_hi": hi,
                     "bits_per_byte": r.get("bits_per_byte"), "next_token_accuracy": r.get("next_token_accuracy"),
                     "params": r.get("params"), "size_bytes": r.get("size_bytes"),
                     "macs_per_token": r.get("macs_per_token"),
                     "prefill_ms": prefill["median_ms"] if prefill else None,
                     "decode_ms_per_token": decode["median_ms"] / decode["tokens"] if decode else None,
                     "decode_tokens_per_s": decode["tokens_per_s"] if decode else None,
                     "vs_control": versus_control_cell(r)})
    return pd.DataFrame(rows, columns=["run_id", "label", "dataset", "model", "parent_id", "perplexity", "ppl_lo",
                                       "ppl_hi", "bits_per_byte", "next_token_accuracy", "params", "size_bytes",
                                       "macs_per_token", "prefill_ms", "decode_ms_per_token",
                                       "decode_tokens_per_s", "vs_control"])


def versus_control_cell(record: dict) -> str | None:
    """A fine-tuned child against its fair control (its parent trained as long), for a table cell: '+3.1% [+1.0%,
    +5.2%] vs #12', with '(noise)' when the paired CI holds 0; None for a run without a control."""
    if record.get("control_perplexity") is None:
        return None
    paired = record.get("paired_vs_control")
    if not paired:
        return f"{100 * record['perplexity_change_vs_control']:+.1f}% vs #{record['control_run_id']}"
    lo, hi = paired["relative_ci95"]
    noise = "" if paired["significant"] else " (noise)"
    return f"{100 * paired['relative']:+.1f}% [{100 * lo:+.1f}%, {100 * hi:+.1f}%] vs #{record['control_run_id']}{noise}"


def perplexity_chart(frame: pd.DataFrame, cost: str = "params", quality: str = "perplexity",
                     title: str | None = None) -> go.Figure:
    """Perplexity (or bits per byte) vs a cost, one colour per data set, with the CI and the Pareto front of
    runs that no other beats on both (lower cost, lower perplexity)."""
    fig = go.Figure()
    data = frame.dropna(subset=[quality, cost])
    for i, (dataset, group) in enumerate(data.groupby("dataset", sort=False)):
        error = (dict(type="data", symmetric=False, array=group["ppl_hi"] - group["perplexity"],
                      arrayminus=group["perplexity"] - group["ppl_lo"], thickness=1, width=3)
                 if quality == "perplexity" else None)
        fig.add_trace(go.Scatter(
            x=group[cost], y=group[quality], mode="markers", name=dataset, error_y=error,
            marker=dict(size=10, color=PALETTE[i % len(PALETTE)], line=dict(width=1, color="white")),
            text=[f"<b>{readable(r['label'])}</b> (run {r['run_id']})<br>perplexity {r['perplexity']:.2f}"
                  f"<br>bits per byte {r['bits_per_byte']:.3f}<br>params {r['params']:,}"
                  for r in group.to_dict("records")], hoverinfo="text"))
    if len(data) > 1:  # lower is better on both axes: the front of the negated quality
        mask = pareto_mask(data[cost].tolist(), (-data[quality]).tolist())
        front = data[mask].sort_values(cost)
        fig.add_trace(go.Scatter(x=front[cost], y=front[quality], mode="lines", name="Pareto front",
                                 line=dict(color="#888", dash="dot"), hoverinfo="skip"))
    fig.update_layout(title=title or f"{QUALITY_AXES[quality].split(' (')[0]} vs {TEXT_COST_AXES[cost]}",
                      xaxis_title=TEXT_COST_AXES[cost], yaxis_title=QUALITY_AXES[quality], height=420,
                      template="plotly_white", margin=dict(l=10, r=10, t=50, b=10))
    fig.update_xaxes(type="log")
    return fig


def lm_training_curves(history: list[dict]) -> go.Figure:
    """Training loss and validation perplexity by step."""
    from plotly.subplots import make_subplots
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation perplexity"))
    frame = pd.DataFrame(history)
    if len(frame):
        step = frame["step"] if "step" in frame else frame["epoch"]
        fig.add_trace(go.Scatter(x=step, y=frame["train_loss"], mode="lines+markers", name="training loss",
                                 line=dict(color=PALETTE[0])), row=1, col=1)
        fig.add_trace(go.Scatter(x=step, y=frame["val_perplexity"], mode="lines+markers",
                                 name="validation perplexity", line=dict(color=PALETTE[1])), row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), template="plotly_white", showlegend=False)
    return fig


def pruning_shape(record: dict) -> str:
    """'50%' or '2:4': how a language-model prune run was shaped (the columns of the Wanda paper's table)."""
    return record.get("pattern") or f"{record.get('sparsity', 0):.0%}"


def perplexity_by_method(children: list[dict], parent: dict) -> go.Figure:
    """The Wanda paper's table as bars: perplexity per method at each sparsity or pattern, the dense model as a
    dashed line; for each shape the newest run of each method."""
    newest = {}
    for r in sorted(children, key=lambda r: r["run_id"]):
        newest[(r["method"], pruning_shape(r))] = r
    shapes = sorted({shape for _, shape in newest}, key=lambda s: (":" in s, s))
    fig = go.Figure()
    for i, method in enumerate(sorted({m for m, _ in newest})):
        rows = [newest.get((method, shape)) for shape in shapes]
        fig.add_trace(go.Bar(
            name=method, x=shapes, y=[r["perplexity"] if r else None for r in rows], marker_color=PALETTE[i % len(PALETTE)],
            error_y=dict(type="data", symmetric=False,
                         array=[r["perplexity_ci95"][1] - r["perplexity"] if r else 0 for r in rows],
                         arrayminus=[r["perplexity"] - r["perplexity_ci95"][0] if r else 0 for r in rows]),
            hovertemplate=f"{method}<br>%{{x}}: perplexity %{{y:.2f}}<extra></extra>"))
    fig.add_hline(y=parent["perplexity"], line_dash="dash", line_color="#111827",
                  annotation_text=f"dense {parent['perplexity']:.2f}", annotation_position="top left")
    fig.update_layout(barmode="group", title="Perplexity after pruning, no fine-tuning (lower is better; 95% CI)",
                      xaxis_title="sparsity or N:M pattern", yaxis_title="test perplexity", legend_title="method",
                      height=420, template="plotly_white", margin=dict(l=10, r=10, t=50, b=10))
    return fig


def structured_table(runs: list[dict], parent: dict) -> pd.DataFrame:
    """One row per structured run: what it kept, its perplexity against the parent's (and, fine-tuned, against its
    fair control's: the parent trained as long), its paired prefill speed-up."""
    rows = []
    for r in sorted(runs, key=lambda r: r["run_id"]):
        key = next((k for k in r if k.startswith("speedup_cpu_b") and k.count("_") == 2), None)
        rows.append({"run": f"#{r['run_id']} {r['label']}", "parameters": f"{r['params'] / parent['params']:.0%}",
                     "perplexity": round(r["perplexity"], 3), "parent's": round(parent["perplexity"], 3),
                     "prefill speed-up (paired)": f"{r[key]:.2f}x [{r[key + '_ci95'][0]:.2f}, "
                                                  f"{r[key + '_ci95'][1]:.2f}]" if key else "not timed",
                     "fine-tune steps": (r.get("finetune_history") or [{}])[-1].get("steps", 0),
                     "vs the parent trained as long": versus_control_cell(r) or "-"})
    return pd.DataFrame(rows)


def perplexity_table(children: list[dict], parent: dict) -> pd.DataFrame:
    """Rows: sparsity or pattern; columns: dense and each method (the newest run of each)."""
    table = {}
    for r in sorted(children, key=lambda r: r["run_id"]):
        table.setdefault(pruning_shape(r), {"dense": round(parent["perplexity"], 3)})[r["method"]] = round(
            r["perplexity"], 3)
    return pd.DataFrame.from_dict(table, orient="index")

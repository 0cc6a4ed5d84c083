"""The Quantize page for a language model: dynamic int8, weight-only int8, fp16 and bf16 of its Linear layers,
each run's perplexity and measured speed next to its parent, and what really ran."""
from __future__ import annotations

import streamlit as st

from compression.text.quantize_notes import NOT_FOR_LANGUAGE_MODELS
from compression.labs.speed import latest_speedup, speed_text
from compression.techniques.quantize import METHODS

from ..charts_prune import speedup_bars
from ..components import submit_job
from ..display import plot
from ..state import get_store
from .jobs import job_panel
from .text_charts import measured, perplexity_chart, text_frame
from .text_widgets import text_metric_cards

LANGUAGE_METHODS = [name for name in METHODS.names() if name not in NOT_FOR_LANGUAGE_MODELS]


def text_quantize_lab(params: dict, all_runs: list[dict], by_id: dict) -> None:
    text_quantize_tab(params, all_runs, by_id)
    st.caption("Pipelines (prune, then fine-tune, then quantize) take image models for now.")


def text_quantize_tab(params: dict, all_runs: list[dict], by_id: dict) -> None:
    with st.form("quantize-text-form"):
        methods = st.multiselect("Methods", LANGUAGE_METHODS, default=["dynamic_int8"], format_func=METHODS.label)
        if st.form_submit_button("Quantize", type="primary"):
            submit_job("quantize", {**params, "methods": methods})
    for name, reason in NOT_FOR_LANGUAGE_MODELS.items():
        st.caption(f"{METHODS.label(name)} is not offered for language models: {reason}.")
    job_panel(("quantize",), key="quantize")
    runs = [r for r in measured(all_runs) if r["kind"] == "quantize" and r["status"] == "done"]
    if not runs:
        st.info("No quantized language-model runs on this data set yet. Pick methods and press **Quantize**.")
        return
    for run in runs[::-1][:6]:
        parent = by_id.get(run["parent_id"])
        st.markdown(f"**#{run['run_id']} {run['label']}** · {run.get('speed_note', '')}"
                    + (f" · vs #{parent['run_id']}: perplexity {parent['perplexity']:.2f} → {run['perplexity']:.2f}, "
                       f"{phase_speeds(run)}" if parent else ""))
        text_metric_cards(run)
    parents = [by_id[i] for i in dict.fromkeys(r["parent_id"] for r in runs) if i in by_id]
    frame = text_frame(parents + runs)
    left, right = st.columns(2)
    plot(container=left, fig=perplexity_chart(frame, "size_bytes"), key="quant-text-size")
    plot(container=right, fig=perplexity_chart(frame, "prefill_ms"), key="quant-text-prefill")
    if parents:
        plot(speedup_bars([r for r in runs if r["parent_id"] == parents[-1]["run_id"]], parents[-1]),
             key="quant-text-speedup")


def phase_speeds(run: dict) -> str:
    """'prefill 1.5x faster [1.4, 1.6], decode 1.7x slower [1.6, 1.8]': both paired timings with the parent."""
    store = get_store()
    parts = []
    for phase, batch in (("prefill", max((e["batch_size"] for e in run["latency"] if e.get("phase") == "prefill"),
                                         default=None)), ("decode", 1)):
        rows = [r for r in store.list_speedups(run_b=run["run_id"], run_a=run["parent_id"])
                if r["batch_size"] == batch]
        if rows:
            parts.append(f"{phase} {speed_text(latest_speedup(store, run['run_id'], run['parent_id'], batch_size=batch))}")
    return ", ".join(parts) or "speed: not timed together"

"""The Quantize page for a language model: dynamic int8, the weight-only kernels (packed int8, packed int4 in groups,
bf16 Linear layers), torchao's simulated int8, fp16 and bf16; what each does to prefill and to decode, each run's
perplexity and measured speed next to its parent, and what really ran."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from compression.labs.speed import latest_speedup, speed_text
from compression.techniques.quantize import METHODS, availability
from compression.techniques.quantize_kernels import DEFAULT_GROUP_SIZE, GROUP_SIZES
from compression.text.quantize_notes import MEASURED, MEASURED_ON, NOT_FOR_LANGUAGE_MODELS, SMALL_MODEL_WHY

from ..charts_prune import speedup_bars
from ..components import submit_job
from ..display import plot
from ..state import get_store
from .jobs import job_panel
from .text_charts import measured, perplexity_chart, text_frame
from .text_widgets import text_metric_cards

LANGUAGE_METHODS = [name for name in METHODS.names() if name not in NOT_FOR_LANGUAGE_MODELS]


@st.cache_data(show_spinner=False)
def _unavailable() -> dict[str, str]:
    """Why a method cannot run on this machine's CPU (its kernels are probed once per machine)."""
    return {name: reason for name in LANGUAGE_METHODS if (reason := availability(name, "cpu"))}


def text_quantize_lab(params: dict, all_runs: list[dict], by_id: dict) -> None:
    text_quantize_tab(params, all_runs, by_id)
    st.caption("Pipelines (prune, then fine-tune, then quantize) take image models for now.")


def text_quantize_tab(params: dict, all_runs: list[dict], by_id: dict) -> None:
    unavailable = _unavailable()
    offered = [name for name in LANGUAGE_METHODS if name not in unavailable]
    with st.expander("What each method does to prefill and to decode", expanded=False):
        st.dataframe(method_table(), hide_index=True)
        st.caption(MEASURED_ON)
        st.caption(SMALL_MODEL_WHY)
    with st.form("quantize-text-form"):
        methods = st.multiselect("Methods", offered, default=[m for m in ("int4_packed",) if m in offered],
                                 format_func=METHODS.label)
        group = st.selectbox("Group size (packed int4)", GROUP_SIZES, index=GROUP_SIZES.index(DEFAULT_GROUP_SIZE),
                             help="input columns that share one scale and zero: smaller groups are more accurate "
                                  "and a little larger; every layer's input width must be a multiple of it")
        if st.form_submit_button("Quantize", type="primary"):
            submit_job("quantize", {**params, "methods": methods, "group_size": int(group)})
    for name, reason in {**NOT_FOR_LANGUAGE_MODELS, **unavailable}.items():
        where = "for language models" if name in NOT_FOR_LANGUAGE_MODELS else "on this machine"
        st.caption(f"{METHODS.label(name)} is not offered {where}: {reason}.")
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


def method_table() -> pd.DataFrame:
    """One row per language-model method: what runs, and its measured decode and prefill speed against fp32."""
    return pd.DataFrame([{"method": METHODS.label(name), "what runs": METHODS[name].kernels,
                          "decode (batch 1)": MEASURED.get(name, {}).get("decode", "-"),
                          "prefill (8 x 128 tokens)": MEASURED.get(name, {}).get("prefill", "-"),
                          "bits per weight": MEASURED.get(name, {}).get("bits", "-")} for name in LANGUAGE_METHODS])


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

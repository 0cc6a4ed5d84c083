"""The Quantize page for an image classifier: each method's kernels and whether it runs here, the quantize tab
(every run's accuracy and measured speed next to its parent) and the pipeline builder (prune, fine-tune, quantize)."""
from __future__ import annotations

import streamlit as st

from compression.labs.summary import versus_baseline
from compression.techniques.prune import METHODS as PRUNE_METHODS
from compression.techniques.quantize import METHODS, availability

from ..charts import lineage_ids, runs_frame, tradeoff_chart
from ..components import submit_job
from ..display import plot
from .image_cards import metric_cards
from .jobs import job_panel


def image_quantize_lab(params: dict, all_runs: list[dict], by_id: dict) -> None:
    device = params["device"]
    with st.expander("What each method does", expanded=False):
        for m in METHODS.values():
            reason = availability(m.name, "cpu" if m.real_int8 else device)
            st.markdown(f"**{m.name}** ({m.kernels}): {m.about}"
                        + (f"  \n:orange[Unavailable here: {reason}]" if reason else ""))
    quant_tab, pipe_tab = st.tabs(["Quantize", "Pipeline builder"])
    with quant_tab:
        _quantize_tab(params, all_runs, by_id)
    with pipe_tab:
        _pipeline_tab(params, all_runs)


def _quantize_tab(params: dict, all_runs: list[dict], by_id: dict) -> None:
    with st.form("quantize-form"):
        methods = st.multiselect("Methods", METHODS.names(), default=["dynamic_int8", "static_int8"],
                                 format_func=METHODS.label)
        calibration = st.number_input("Calibration batches (static int8)", 1, 100, 8,
                                      help="batches of training data whose activation ranges set the int8 scales")
        if st.form_submit_button("Quantize", type="primary"):
            submit_job("quantize", {**params, "methods": methods, "calibration_batches": int(calibration)})
    job_panel(("quantize",), key="quantize")
    runs = [r for r in all_runs
            if r["kind"] == "quantize" and r["status"] == "done" and not r["config"].get("pipeline")]
    if runs:
        for run in runs[::-1][:6]:
            parent = by_id.get(run["parent_id"])
            st.markdown(f"**#{run['run_id']} {run['label']}** · {run.get('kernels', '')}"
                        + (f" · vs #{parent['run_id']}: {versus_baseline(run, parent)['text']}" if parent else ""))
            metric_cards(run, parent)
        frame = runs_frame([by_id[i] for i in {r["parent_id"] for r in runs} if i in by_id] + runs)
        left, right = st.columns(2)
        plot(container=left, fig=tradeoff_chart(frame, "size_bytes"), key="quant-size")
        plot(container=right, key="quant-latency",
             fig=tradeoff_chart(frame, "latency_ms", title="Accuracy vs CPU latency (largest batch)"))
        st.caption("int8 needs real int8 kernels to run faster; fp16/bf16 only pay off on hardware built for them. "
                   "At batch 1 the quantize/dequantize overhead can make int8 slower than fp32: the latency batch "
                   "in the sidebar changes what you see.")
    else:
        st.info("No quantized runs on this dataset yet. Pick methods and press **Quantize**.")


def _pipeline_tab(params: dict, all_runs: list[dict]) -> None:
    st.write("Chain techniques in the order you choose; each stage is stored as a child of the one before, "
             "so Compare can draw the path. Quantize goes last.")
    steps = st.session_state.setdefault("pipeline_steps", [])
    c1, c2, c3 = st.columns([1, 2, 1])
    kind = c1.selectbox("Stage", ["prune", "finetune", "quantize"])
    if kind == "prune":
        image_methods = [n for n in PRUNE_METHODS.names() if not PRUNE_METHODS[n].language]
        method = c2.selectbox("Pruning method", image_methods, index=image_methods.index("channel_l1"),
                              format_func=PRUNE_METHODS.label)
        value = c2.slider("Sparsity", 0.05, 0.95, 0.5, 0.05)
        stage = f"prune:{method}={value}"
    elif kind == "finetune":
        stage = f"finetune:{c2.number_input('Epochs', 1, 100, 5)}"
    else:
        stage = f"quantize:{c2.selectbox('Quantization method', METHODS.names(), index=1, format_func=METHODS.label)}"
    if c3.button("Add stage"):
        steps.append(stage)
    if c3.button("Clear", disabled=not steps):
        steps.clear()
    st.code(" → ".join(steps) if steps else "(no stages yet: e.g. prune → finetune → quantize)")
    if st.button("Run pipeline", type="primary", disabled=not steps):
        submit_job("pipeline", {**params, "steps": ",".join(steps)})
    job_panel(("pipeline",), key="pipeline")
    stages = [r for r in all_runs if r["config"].get("pipeline") and r["status"] == "done"]
    if stages:
        last = st.selectbox("Pipeline ending at", [r["run_id"] for r in stages][::-1],
                            format_func=lambda i: next(f"#{i} {r['label']}" for r in stages if r["run_id"] == i))
        frame = runs_frame(all_runs)
        path = lineage_ids(frame, last)
        plot(tradeoff_chart(frame[frame["run_id"].isin(path)], "size_bytes", highlight=path,
                            title="Every stage of the pipeline, in order"), key="pipe-chart")
        chain = [r for r in all_runs if r["run_id"] in path]
        st.dataframe(runs_frame(chain).drop(columns=["config"]), hide_index=True)

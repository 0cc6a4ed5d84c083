"""The Prune page for an image classifier: unstructured or channel pruning of the sidebar's baseline, one-shot or
iterative, with fine-tuning; the results as accuracy against sparsity, size and measured speed."""
from __future__ import annotations

import streamlit as st

from compression import LabError
from compression.labs.prune import prunable_layers_of
from compression.techniques.prune import METHODS, image_methods, parse_sparsities

from ..charts import runs_frame, tradeoff_chart
from ..charts_prune import accuracy_vs_sparsity, layer_sparsity_bars, sensitivity_heatmap, speedup_bars
from ..components import submit_job
from ..display import plot

INTRO = ("Remove weights (unstructured) or whole channels (structured) from the sidebar's baseline, fine-tune, "
         "and see what it costs in accuracy and what it buys in size and **measured** speed.")

layer_names_of = st.cache_data(prunable_layers_of, show_spinner=False)  # builds the model: once per spec


def image_prune_form(params: dict) -> None:
    methods = image_methods()
    with st.expander("What each method does", expanded=False):
        for name in methods:
            st.markdown(f"**{name}**: {METHODS[name].about}")
    with st.form("prune-form"):
        c1, c2, c3 = st.columns(3)
        method = c1.selectbox("Method", methods, index=methods.index("global_l1"), format_func=METHODS.label)
        sparsity_text = c2.text_input("Sparsities", "0.3, 0.5, 0.7, 0.9", help="one run per value, each in [0, 1)")
        finetune = c3.number_input("Fine-tune epochs", 0, 100, 3)
        c4, c5, c6 = st.columns(3)
        schedule = c4.radio("Schedule", ["oneshot", "iterative"], horizontal=True,
                            help="iterative prunes in steps on the AGP cubic schedule, fine-tuning in between")
        steps = c5.number_input("Steps (iterative)", 1, 20, 3)
        round_to = c6.selectbox("Round channels to (structured)", [None, 8, 16],
                                format_func=lambda v: str(v) if v else "no rounding")
        try:
            layer_names = layer_names_of(params["model"], params["dataset"])
        except LabError as err:
            layer_names = []
            st.error(str(err))
        layers = st.multiselect("Layers to prune (empty = every conv and linear)", layer_names)
        c7, c8 = st.columns(2)
        skip = c7.checkbox("Skip the first and last layers")
        with_sensitivity = c8.checkbox("Also run the per-layer sensitivity analysis")
        submitted = st.form_submit_button("Prune", type="primary")
    st.caption(f"_{METHODS[method].about}_")
    if submitted:
        try:
            sparsities = parse_sparsities(sparsity_text)
        except LabError as err:
            st.error(str(err))
        else:
            submit_job("prune", {**params, "sparsities": sparsities, "method": method,
                                 "finetune_epochs": int(finetune), "schedule": schedule, "steps": int(steps),
                                 "round_to": round_to, "layers": layers or None, "skip_first_last": skip,
                                 "with_sensitivity": with_sensitivity})


def image_prune_results(children: list[dict], parent: dict) -> None:
    # what a run did differently from what was asked (e.g. Swin: MLP hidden units only), once per distinct note
    for note in dict.fromkeys(n for r in children for n in (r.get("notes") or [])):
        st.info(note[0].upper() + note[1:] + ".")
    plot(accuracy_vs_sparsity(children, parent), key="prune-acc")
    left, right = st.columns(2)
    frame = runs_frame([parent] + children)
    plot(container=left, key="prune-params", fig=tradeoff_chart(frame, "nonzero_params", highlight=[parent["run_id"]],
                                                                title="Accuracy vs non-zero parameters"))
    plot(container=right, key="prune-latency", fig=tradeoff_chart(frame, "latency_ms", highlight=[parent["run_id"]],
                                                                  title="Accuracy vs CPU latency (largest batch)"))
    plot(speedup_bars(children, parent), key="prune-speedup")
    st.caption("Dense kernels multiply zeros as fast as any other number: unstructured sparsity shows in the gzip "
               "size, not in latency. Removing channels shrinks the matrices themselves, so it runs faster.")
    chosen = st.selectbox("Per-layer view of", children[::-1], format_func=lambda r: f"#{r['run_id']} {r['label']}")
    plot(layer_sparsity_bars(chosen["layers"], f"Per-layer sparsity of {chosen['label']}"), key="prune-layers")
    for kind in ("weight", "channel"):
        rows = (parent.get(f"sensitivity_{kind}") or [])
        if rows:
            plot(sensitivity_heatmap(rows), key=f"prune-sens-{kind}")

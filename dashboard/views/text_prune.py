"""The Prune page for a language model: magnitude, Wanda and SparseGPT, unstructured or N:M, calibrated on the
training text; the results as the Wanda paper lays them out (perplexity per method and sparsity)."""
from __future__ import annotations

import streamlit as st

from compression import LabError
from compression.text.paired_quality import method_comparisons
from compression.text.recipes import SIZE_ONLY
from compression.techniques.prune import METHODS, parse_sparsities
from compression.text.prune import CALIBRATION_SEQUENCES, PATTERNS

from ..charts_prune import layer_sparsity_bars, speedup_bars
from ..components import submit_job
from ..display import plot
from .text_hf import structured_note
from .text_charts import perplexity_by_method, perplexity_table, structured_table

INTRO = ("Zero weights of the sidebar's language model with magnitude, Wanda or SparseGPT, calibrated on its "
         "training text, and see what it costs in perplexity and what it buys in size and **measured** speed.")
LANGUAGE_METHODS = [name for name in METHODS.names() if METHODS[name].language]
WANDA_AT_THIS_SIZE = (
    "**Why Wanda is no better than magnitude here.** Wanda weighs each weight by its input's norm. In the paper's "
    "LLaMA models a few input features are hundreds of times larger than the rest (the outlier features of large "
    "models), and that is where Wanda wins. A model this small has no such outliers, so Wanda lands near "
    "magnitude. SparseGPT also updates the weights it keeps to make up for the removed ones, and that still pays "
    "at this size.")


def text_prune_form(params: dict) -> None:
    with st.expander("What each method does", expanded=False):
        for name in LANGUAGE_METHODS:
            st.markdown(f"**{name}**: {METHODS[name].about}")
        st.markdown(WANDA_AT_THIS_SIZE)
    with st.form("prune-text-form"):
        c1, c2, c3 = st.columns(3)
        method = c1.selectbox("Method", LANGUAGE_METHODS, index=LANGUAGE_METHODS.index("sparsegpt"),
                              format_func=METHODS.label)
        shape = c2.radio("Sparsity shape", ["unstructured", *PATTERNS], horizontal=True,
                         help="N:M keeps N of every M consecutive weights of a row (2:4 is what sparse GPU "
                              "kernels run)")
        sparsity_text = c3.text_input("Sparsities (unstructured)", "0.5", help="one run per value, each in [0, 1)")
        c4, c5, c6 = st.columns(3)
        calibration = c4.number_input("Calibration sequences", 1, 1024, CALIBRATION_SEQUENCES,
                                      help="windows of the training text that Wanda, SparseGPT and the structured "
                                           "methods measure activations on (magnitude needs none)")
        epochs = c5.number_input("Fine-tune epochs (structured)", 0, 20, 0,
                                 help="heads_mlp and depth: passes over the training text after pruning")
        distill = c6.checkbox("Fine-tune with the parent as teacher", value=True,
                              help="KL on the parent's logits plus cross-entropy, as Minitron does")
        submitted = st.form_submit_button("Prune", type="primary")
    structured = METHODS[method].structured
    st.caption(f"_{METHODS[method].about}_" + (structured_note(params.get("model", ""), method) if structured else
                                              " No fine-tuning after pruning: one-shot, as the papers do."))
    if not submitted:
        return
    if structured and shape != "unstructured":
        st.error(f"{method} removes whole heads, units or layers: N:M patterns are for magnitude, wanda and "
                 "sparsegpt. Pick 'unstructured' and a share to remove.")
        return
    job = {**params, "method": method, "calibration": int(calibration),
           "finetune_epochs": int(epochs) if structured else 0, "distill": bool(distill and structured and epochs)}
    if shape == "unstructured":
        try:
            job["sparsities"] = parse_sparsities(sparsity_text)
        except LabError as err:
            st.error(str(err))
            return
    else:
        job["pattern"] = shape
    submit_job("prune", job)


def paired_lines(records: list[dict]) -> None:
    """Each method against magnitude at the same shape, paired on the same test windows: the bars' CIs above are
    mostly the spread between windows, which both runs share, so two overlapping bars can still differ."""
    rows = method_comparisons(records)
    if rows:
        st.markdown("**Paired on the same test windows**")
        st.markdown("\n".join(f"- {row['text']}" for row in rows))


def text_prune_results(children: list[dict], parent: dict) -> None:
    one_shot = [r for r in children if not r.get("structured")]
    if one_shot:  # the paper's table: zeros, no fine-tuning
        plot(perplexity_by_method(one_shot, parent), key="prune-text-ppl")
        st.dataframe(perplexity_table(one_shot, parent), width="stretch")
        paired_lines(one_shot)
        if {"wanda", "magnitude"} <= {r["method"] for r in one_shot}:
            st.caption(WANDA_AT_THIS_SIZE.replace("**", ""))
    structured = [r for r in children if r.get("structured")]
    if structured:  # a smaller model, often fine-tuned: not comparable with the one-shot table
        st.markdown("**Structured: a smaller dense model**")
        st.dataframe(structured_table(structured, parent), hide_index=True, width="stretch")
    plot(speedup_bars(children, parent), key="prune-text-speedup")
    st.caption(f"Magnitude, Wanda and SparseGPT: {SIZE_ONLY}; the zeros do shrink the gzip size. Heads + MLP units "
               "and whole layers: smaller matrices, or fewer, so they really run faster.")
    chosen = st.selectbox("Per-layer view of", children[::-1], format_func=lambda r: f"#{r['run_id']} {r['label']}")
    plot(layer_sparsity_bars(chosen["layers"], f"Per-layer sparsity of {chosen['label']}"), key="prune-text-layers")

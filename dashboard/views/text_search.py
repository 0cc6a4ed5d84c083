"""The Search page for language models: a gpt space (layers, width, heads, context) on a text data set, each trial
trained for a few steps; the front is validation perplexity against decode latency or parameters."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from compression import LabError
from compression.core.models import format_spec
from compression.labs.configs import TEXT_TRIAL_STEPS
from compression.labs.search.promote import ACTIONS, promotion
from compression.search.strategies import LM_OBJECTIVES, STRATEGIES

from ..charts_search import text_search_pareto
from ..components import submit_job
from ..display import plot

INTRO = ("Let an algorithm try small language models (layers, width, attention heads, context), train each for a "
         "few steps on the text, and keep the best trade-offs between validation perplexity and a cost you choose: "
         "decode latency measured on this machine, or parameters.")


def text_search_form(params: dict, family: str, choices: dict) -> None:
    with st.form("search-text-form"):
        c1, c2, c3, c4 = st.columns(4)
        strategy = c1.selectbox("Strategy", STRATEGIES.names(), format_func=STRATEGIES.label)
        trials = c2.number_input("Trials", 1, 500, 12)
        steps = c3.number_input("Steps per trial", 1, 100_000, TEXT_TRIAL_STEPS,
                                help="optimizer steps (batches of text windows): a low-fidelity proxy of full training")
        objective = c4.selectbox("Cost objective", LM_OBJECTIVES.names(), format_func=LM_OBJECTIVES.label,
                                 help="decode: median time per generated token at batch 1 with a key-value cache")
        c5, c6 = st.columns(2)
        max_params = c5.number_input("Constraint: max parameters (0 = none)", 0, 100_000_000, 0, step=1000)
        early = c6.checkbox("Stop bad trials early (Optuna's median pruner; perplexity-only objective)")
        if st.form_submit_button("Search", type="primary"):
            submit_job("search", {"dataset": params["dataset"], "space": family, "choices": choices,
                                  "strategy": strategy, "trials": int(trials), "train_steps": int(steps),
                                  "objective": objective, "max_params": int(max_params) or None,
                                  "early_stop": early, "seed": params["seed"]})


def text_search_results(summary: dict, params: dict) -> None:
    reference = summary["reference_point"]
    st.caption(f"Hypervolume: area dominated after normalising ({reference['normalisation']}; reference cost "
               f"{reference['cost']:.4g}), reference point (1, 1): higher is better, and both fronts share it.")
    plot(text_search_pareto(summary["trials"], summary["zoo"], summary["config"]["objective"]),
         key="search-text-pareto")
    st.caption("Each model is scored on windows of its own context: a longer context sees more text before each "
               "guess, which is part of what it buys.")
    table = pd.DataFrame([{"trial": t["number"], "status": t["status"], "run": t.get("run_id"),
                           "val perplexity": t.get("val_perplexity"), "test perplexity": t.get("perplexity"),
                           "bits per byte": t.get("bits_per_byte"), "cost": t.get("cost"), "params": t.get("params"),
                           "arch": str(t.get("arch")), "note": t.get("note"),
                           "on front": t.get("run_id") in summary["pareto"]} for t in summary["trials"]])
    st.dataframe(table, hide_index=True)
    _promote(summary, params)


def _promote(summary: dict, params: dict) -> None:
    st.subheader("Promote an architecture")
    done = {t["run_id"]: t for t in summary["trials"] if t.get("run_id")}
    pick = st.selectbox("Trial", sorted(done, key=lambda r: r not in summary["pareto"]),
                        format_func=lambda r: f"run {r}: {format_spec(done[r]['model'])}"
                        + (" (on the front)" if r in summary["pareto"] else ""))
    if pick is None:
        return
    if st.button(ACTIONS["train"]):
        try:
            submit_job(*promotion("train", format_spec(done[pick]["model"]), summary["config"]["dataset"], params))
        except LabError as err:
            st.error(str(err))
    st.caption("Retraining uses the sidebar's training steps (a cached baseline). Prune, quantize or distil the "
               "retrained run from their own pages: their language-model methods differ from the image ones.")

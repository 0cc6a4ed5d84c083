"""The Search page for image classifiers: a space of architectures (MLP or CNN family), each trial trained for a
few epochs; the front is validation accuracy against parameters, MACs or measured latency."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from compression import LabError
from compression.core.models import format_spec
from compression.labs.search.promote import ACTIONS, promotion
from compression.search.strategies import OBJECTIVES, STRATEGIES

from ..charts_search import search_pareto
from ..components import submit_job
from ..display import plot

INTRO = ("Let an algorithm try architectures, train each briefly, and keep the best trade-offs between accuracy and a "
         "cost you choose: parameters, MACs, or latency measured on this machine.")


def image_search_form(params: dict, family: str, choices: dict) -> None:
    with st.form("search-form"):
        c1, c2, c3, c4 = st.columns(4)
        strategy = c1.selectbox("Strategy", STRATEGIES.names(), format_func=STRATEGIES.label)
        trials = c2.number_input("Trials", 1, 500, 12)
        epochs = c3.number_input("Epochs per trial", 1, 50, 3)
        objective = c4.selectbox("Cost objective", OBJECTIVES.names(), format_func=OBJECTIVES.label)
        c5, c6 = st.columns(2)
        max_params = c5.number_input("Constraint: max parameters (0 = none)", 0, 10_000_000, 0, step=1000)
        early = c6.checkbox("Stop bad trials early (Optuna's median pruner; accuracy-only objective)")
        if st.form_submit_button("Search", type="primary"):
            submit_job("search", {"dataset": params["dataset"], "space": family, "choices": choices,
                                  "strategy": strategy, "trials": int(trials), "epochs": int(epochs),
                                  "objective": objective, "max_params": int(max_params) or None,
                                  "early_stop": early, "seed": params["seed"]})


def image_search_results(summary: dict, params: dict) -> None:
    config = summary["config"]
    st.caption(f"Hypervolume: area dominated in (error, cost / {summary['reference_point']['cost']:.4g}) space, "
               "reference point (1, 1): higher is better, and both fronts share the reference.")
    plot(search_pareto(summary["trials"], summary["zoo"], config["objective"]), key="search-pareto")
    table = pd.DataFrame([{"trial": t["number"], "status": t["status"], "run": t.get("run_id"),
                           "val accuracy": t.get("val_accuracy"), "cost": t.get("cost"), "params": t.get("params"),
                           "arch": str(t.get("arch")), "on front": t.get("run_id") in summary["pareto"]}
                          for t in summary["trials"]])
    st.dataframe(table, hide_index=True)

    st.subheader("Promote an architecture")
    done = {t["run_id"]: t for t in summary["trials"] if t.get("run_id")}
    pick = st.selectbox("Trial", sorted(done, key=lambda r: r not in summary["pareto"]),
                        format_func=lambda r: f"run {r}: {format_spec(done[r]['model'])}"
                        + (" (on the front)" if r in summary["pareto"] else ""))
    if pick is not None:
        spec = format_spec(done[pick]["model"])
        for column, (action, title) in zip(st.columns(len(ACTIONS)), ACTIONS.items()):
            if column.button(title):
                try:
                    submit_job(*promotion(action, spec, config["dataset"], params))
                except LabError as err:
                    st.error(str(err))
        st.caption("Each promotion trains the architecture fully with the sidebar's epochs first (a cached "
                   "baseline), then runs the technique; results appear on their pages and in Compare.")

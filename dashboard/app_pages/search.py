import pandas as pd
import streamlit as st

from compression import LabError, RunStore
from compression.core.models import format_spec
from compression.labs.promote import ACTIONS, promotion
from compression.labs.search import list_studies, study_summary
from compression.search.space import DEFAULT_SPACES, IMAGE, TEXT, families_for, space_size
from compression.search.strategies import OBJECTIVES, STRATEGIES
from compression.text.corpus import is_text_name
from dashboard.charts_search import search_pareto
from dashboard.display import plot
from dashboard.components import job_panel, submit_job
from dashboard.search_text import INTRO as TEXT_INTRO
from dashboard.search_text import text_search_form, text_search_results
from dashboard.state import baseline_params


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


# what differs with the kind of data: the intro, the form and how a study's results are drawn
INTRO = {IMAGE: "Let an algorithm try architectures, train each briefly, and keep the best trade-offs between "
                "accuracy and a cost you choose: parameters, MACs, or latency measured on this machine.",
         TEXT: TEXT_INTRO}
FORMS = {IMAGE: image_search_form, TEXT: text_search_form}
RESULTS = {IMAGE: image_search_results, TEXT: text_search_results}

st.title("Search")
params = baseline_params()
data = TEXT if is_text_name(params["dataset"]) else IMAGE
st.write(INTRO[data])
with st.expander("How the strategies differ"):
    st.markdown("**random**: a fair baseline that is hard to beat on small budgets.  \n"
                "**evolution**: regularized evolution (Real et al. 2019): mutate a good recent architecture, let "
                "the oldest die.  \n**tpe**: Optuna's Tree-structured Parzen Estimator models which choices did well.  \n"
                "**nsga2**: a genetic algorithm that keeps the whole quality/cost front.  \n"
                "Trials train only briefly (a low-fidelity proxy); promote a winner to train it fully.")
family = st.radio("Space", families_for(data), horizontal=True, format_func=lambda f: f"{f.upper()} family")
choices = {}
cols = st.columns(3)
for i, (dim, options) in enumerate(DEFAULT_SPACES[family].items()):
    choices[dim] = cols[i % 3].multiselect(dim, options, default=options, key=f"space-{family}-{dim}")
try:
    st.caption(f"The space holds **{space_size(family, choices):,}** architectures"
               + (" (widths that do not split into the heads are skipped)." if data == TEXT else "."))
except LabError as err:
    st.error(str(err))
FORMS[data](params, family, choices)
job_panel(("search",), key="search", show_curves=False)

store = RunStore()
studies = list_studies(store, data)
if not studies:
    st.info(f"No searches yet on {'text' if data == TEXT else 'image data'}. Choose a space and a budget and press "
            "**Search**.")
    st.stop()
name = st.selectbox("Study", studies)
summary = study_summary(name, store)
m1, m2, m3 = st.columns(3)
m1.metric("Trials", len(summary["trials"]))
m2.metric("Hypervolume (found)", f"{summary['hypervolume']:.3f}")
m3.metric("Hypervolume (zoo)", f"{summary['zoo_hypervolume']:.3f}")
RESULTS[data](summary, params)

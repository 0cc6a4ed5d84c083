import streamlit as st

from compression import LabError, RunStore
from compression.labs.search import list_studies, study_summary
from compression.search.space import DEFAULT_SPACES, families_for, space_size
from dashboard.views import baseline_params, current_view
from dashboard.views.jobs import job_panel

st.title("Search")
params = baseline_params()
view = current_view()  # what differs with the kind of data: the intro, the form and how a study is drawn
data = view.task.search_data  # the kind of data the search spaces' families take
st.write(view.search.intro)
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
    st.caption(f"The space holds **{space_size(family, choices):,}** architectures{view.search.space_note}")
except LabError as err:
    st.error(str(err))
view.search.form(params, family, choices)
job_panel(("search",), key="search", show_curves=False)

store = RunStore()
studies = list_studies(store, data)
if not studies:
    st.info(f"No searches yet on {view.search.noun}. Choose a space and a budget and press **Search**.")
    st.stop()
name = st.selectbox("Study", studies)
summary = study_summary(name, store)
m1, m2, m3 = st.columns(3)
m1.metric("Trials", len(summary["trials"]))
m2.metric("Hypervolume (found)", f"{summary['hypervolume']:.3f}")
m3.metric("Hypervolume (zoo)", f"{summary['zoo_hypervolume']:.3f}")
view.search.results(summary, params)

import streamlit as st

from dashboard.components import submit_job
from dashboard.display import plot
from dashboard.state import records
from dashboard.views import baseline_params, current_view, metric_cards, view_of
from dashboard.views.jobs import job_panel

st.title("Baseline")
st.write("Train the model picked in the sidebar, or load it from the cache if it was trained before. "
         "Every later lab compares against this run.")
view = current_view()
params = baseline_params()
st.caption(f"{params['model']} on {params['dataset']} · {view.run.length_text(params)} · seed {params['seed']} · "
           f"{params['device']}")
if st.button("Train baseline", type="primary"):
    submit_job("train", params)
job_panel(("train", "upload"), key="baseline")
view.run.own_model(params)  # an upload of a trained image model, or a language model's Hugging Face folder

runs = [r for r in records(dataset=params["dataset"]) if r["status"] == "done" and r["kind"] in ("train", "upload")]
if not runs:
    st.info("No baseline on this dataset yet: press **Train baseline**.")
    st.stop()
chosen = st.selectbox("Baseline run", runs[::-1], format_func=lambda r: f"#{r['run_id']} {r['label']}")
metric_cards(chosen)
if chosen.get("history"):
    plot(view_of(chosen).run.training_curves(chosen["history"]), key="baseline-history")
view_of(chosen).run.sample(chosen)  # a language model: a prompt box and what it writes

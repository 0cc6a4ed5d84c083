import streamlit as st

from dashboard.charts import training_curves
from dashboard.components import job_panel, metric_cards, submit_job
from dashboard.state import baseline_params, records

st.title("Baseline")
st.write("Train the model picked in the sidebar, or load it from the cache if it was trained before. "
         "Every later lab compares against this run.")
params = baseline_params()
st.caption(f"{params['model']} on {params['dataset']} · {params['epochs']} epochs · seed {params['seed']} "
           f"· {params['device']}")
if st.button("Train baseline", type="primary"):
    submit_job("train", params)
job_panel(("train",), key="baseline")

runs = [r for r in records(kind="train", dataset=params["dataset"]) if r["status"] == "done"]
if not runs:
    st.info("No baseline on this dataset yet: press **Train baseline**.")
    st.stop()
chosen = st.selectbox("Baseline run", runs[::-1], format_func=lambda r: f"#{r['run_id']} {r['label']}")
metric_cards(chosen)
if chosen.get("history"):
    st.plotly_chart(training_curves(chosen["history"]), key="baseline-history")

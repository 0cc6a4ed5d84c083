import streamlit as st

from compression import LabError
from compression.labs.upload import check_upload

from dashboard.charts import training_curves
from dashboard.display import plot
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
job_panel(("train", "upload"), key="baseline")

with st.expander("Or upload trained weights for this model"):
    st.caption(f"A PyTorch state dict (.pt) for {params['model']} on {params['dataset']}. It is read with "
               "torch.load(weights_only=True): no code in the file can run.")
    upload = st.file_uploader("State dict", type=["pt", "pth", "bin"])
    if upload is not None and st.button("Import and measure"):
        try:
            path = check_upload(upload.getvalue(), upload.name, params["model"], params["dataset"])
        except LabError as err:
            st.error(str(err))
        else:  # measuring is a job: the web process never times a model
            submit_job("upload", {"dataset": params["dataset"], "model": params["model"], "path": path,
                                  "filename": upload.name, "latency_batch": params["latency_batch"],
                                  "device": params["device"]})

runs = [r for r in records(dataset=params["dataset"]) if r["status"] == "done" and r["kind"] in ("train", "upload")]
if not runs:
    st.info("No baseline on this dataset yet: press **Train baseline**.")
    st.stop()
chosen = st.selectbox("Baseline run", runs[::-1], format_func=lambda r: f"#{r['run_id']} {r['label']}")
metric_cards(chosen)
if chosen.get("history"):
    plot(training_curves(chosen["history"]), key="baseline-history")

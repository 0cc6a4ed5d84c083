import streamlit as st

from compression import LabError
from compression.labs.upload import MAX_UPLOAD_BYTES, check_upload
from compression.text.corpus import is_text_name
from compression.text.train import DEFAULT_STEPS

from dashboard.charts import training_curves
from dashboard.charts_text import lm_training_curves
from dashboard.display import plot
from dashboard.components import job_panel, metric_cards, sample_panel, submit_job
from dashboard.state import baseline_params, records

st.title("Baseline")
st.write("Train the model picked in the sidebar, or load it from the cache if it was trained before. "
         "Every later lab compares against this run.")
params = baseline_params()
text = is_text_name(params["dataset"])
length = f"{params.get('train_steps') or DEFAULT_STEPS} steps" if text else f"{params['epochs']} epochs"
st.caption(f"{params['model']} on {params['dataset']} · {length} · seed {params['seed']} · {params['device']}")
if st.button("Train baseline", type="primary"):
    submit_job("train", params)
job_panel(("train", "upload"), key="baseline")

if text:
    st.caption("Your own language model: pick **hf** in the sidebar and give its folder (config.json, "
               "*.safetensors and the tokenizer) as `path=...`; it is read offline, and .bin (pickle) weights are "
               "refused.")
else:
    with st.expander("Or upload a trained model"):
        st.caption(f"A state dict (.pt) for {params['model']}, read with torch.load(weights_only=True) so no code in "
                   "the file can run; or a whole model: TorchScript (torch.jit.save) or torch.export (.pt2, with a "
                   f"dynamic batch). It must run one batch of {params['dataset']} and give one score per class; up "
                   f"to {MAX_UPLOAD_BYTES // 2**20} MiB.")
        upload = st.file_uploader("Model file", type=["pt", "pth", "bin", "pt2"])
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
    plot(lm_training_curves(chosen["history"]) if text else training_curves(chosen["history"]), key="baseline-history")
if text:
    sample_panel(chosen)

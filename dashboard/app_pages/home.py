import streamlit as st

from compression.core.measure import hardware_info
from compression.labs.demo import lm_demo_params
from dashboard.components import submit_job
from dashboard.state import dataset_name, get_store, records
from dashboard.views import baseline_params, current_view
from dashboard.views.jobs import job_panel

st.title("Compression Lab")
st.markdown("Make neural networks **smaller and faster** by pruning, distillation, quantization and "
            "architecture search, and see what each costs in accuracy, **measured on this machine**.")
hw = hardware_info()
gpu = ", ".join(hw["cuda"]) or "none detected"
st.caption(f"Hardware: CPU {hw['cpu']} · {hw['threads']} threads · GPU: {gpu} · torch {hw['torch']}")

st.subheader("Name a target")
st.write("Say what you need, e.g. **2.5x faster** or **20x smaller**, and how much accuracy you can spare: the "
         "Plan page searches for the most accurate model that meets it and verifies the winner.")
st.page_link("app_pages/plan.py", label="Plan a compression", icon=":material/flag:")


def _start_demo(params: dict) -> None:
    # a callback runs before the page is drawn again, so the sidebar may switch to the data the demo uses and the
    # charts below show its runs as they come
    st.session_state.dataset = params["dataset"]
    submit_job("demo", {**baseline_params(), **params})


st.subheader("Teaching demos")
image, text = st.columns(2)
image.write("**Image classifiers.** One click runs every lab on the embedded digits data with small defaults: "
            "three baselines, two pruning sweeps, distillation, two quantizations, a prune → fine-tune → int8 "
            "pipeline and a small architecture search.")
IMAGE_DEMO = {"dataset": "digits", "model": "lenet5", "epochs": 10}
image.button("Run the teaching demo", type="primary", on_click=_start_demo, args=(IMAGE_DEMO,))
text.write("**Language models.** A small gpt learns Python's own documentation (pydoc), then is pruned by "
           "magnitude, Wanda and SparseGPT at 50% and 2:4, loses half its heads and MLP units (then fine-tuned), "
           "is quantized to int8 and distilled into a 2-layer student. About 90 s on 2 cores.")
text.button("Run the language-model demo", type="primary", on_click=_start_demo, args=(lm_demo_params(),))
st.caption("Charts fill in as each run finishes; then the Report's speed-ups are timed again in fresh processes, so "
           "its figures can be quoted.")
job_panel(("demo",), key="home")
# then the demo's headline pairs, re-timed (the queue is shown once, above)
job_panel(("speedup",), key="home-retime", show_curves=False, show_queue=False)
last_demo = next((j for j in get_store().list_jobs(("done",), limit=200) if j["kind"] == "demo"), None)
if last_demo and (last_demo.get("result") or {}).get("stages"):
    ran = last_demo["result"]["stages"]
    st.caption(f"The last demo ran {len(ran)} stages in {last_demo['result']['wall_s']:.0f} s: "
               + "; ".join(f"{s['stage']} ({s['runs']} run{'s' if s['runs'] != 1 else ''})" for s in ran))

view = current_view()  # the sidebar's data set: its runs, drawn as its task draws them
frame = view.results.frame(records(dataset=dataset_name()))
if frame.empty:
    st.info("No runs yet. Run a teaching demo, or train a model on the Baseline page.")
else:
    view.results.home(frame)

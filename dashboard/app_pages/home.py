import streamlit as st

from compression.core.measure import hardware_info
from dashboard.charts import runs_frame, tradeoff_chart
from dashboard.display import plot
from dashboard.components import job_panel, submit_job
from dashboard.state import baseline_params, dataset_name, get_store, records

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

st.subheader("Teaching demo")
st.write("One click runs every lab on the embedded digits data with small defaults: three baselines, two "
         "pruning sweeps, distillation, two quantizations, a prune → fine-tune → int8 pipeline and a small "
         "architecture search. Charts fill in as each run finishes; then each run's speed-up is timed again in "
         "fresh processes, so the Report's figures can be quoted.")
if st.button("Run the teaching demo", type="primary"):
    submit_job("demo", {**baseline_params(), "dataset": "digits", "epochs": 10})
job_panel(("demo",), key="home")
job_panel(("speedup",), key="home-retime", show_curves=False)  # then the demo's headline pairs, re-timed
last_demo = next((j for j in get_store().list_jobs(("done",), limit=200) if j["kind"] == "demo"), None)
if last_demo and (last_demo.get("result") or {}).get("stages"):
    ran = last_demo["result"]["stages"]
    st.caption(f"The last demo ran {len(ran)} stages in {last_demo['result']['wall_s']:.0f} s: "
               + "; ".join(f"{s['stage']} ({s['runs']} run{'s' if s['runs'] != 1 else ''})" for s in ran))

frame = runs_frame(records(dataset=dataset_name()))
if frame.empty:
    st.info("No runs yet. Run the teaching demo, or train a model on the Baseline page.")
else:
    left, right = st.columns(2)
    plot(container=left, fig=tradeoff_chart(frame, "params"), key="home-params")
    plot(container=right, fig=tradeoff_chart(frame, "latency_ms", title="Accuracy vs CPU latency (largest batch)"),
         key="home-latency")

import streamlit as st

from compression import LabError
from compression.labs.compressed import run_compressed_bytes
from compression.labs.plan import list_plans, plan_state, target_text
from compression.text.corpus import is_text_name
from dashboard.charts_plan import plan_chart
from dashboard.components import human_bytes, job_panel, submit_job
from dashboard.display import plot
from dashboard.state import baseline_params, get_store

# what a user asks for -> the target kind, and the factors the slider offers
GOALS = {"Faster": ("latency", [1.5, 2.0, 2.5, 3.0, 4.0, 5.0], 2.5),
         "Smaller file": ("size", [2.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0], 20.0),
         "Fewer non-zero parameters": ("params", [2.0, 5.0, 10.0, 20.0], 5.0),
         "Fewer MACs": ("macs", [1.5, 2.0, 3.0, 4.0, 5.0], 3.0)}
# a language model: faster means its prefill (the batch of prompts), and the budget is a perplexity increase
TEXT_GOALS = {"Faster (prefill)": ("latency", [1.25, 1.5, 2.0, 2.5, 3.0], 2.0),
              "Smaller file": ("size", [1.5, 2.0, 3.0, 4.0, 6.0], 3.0),
              "Fewer non-zero parameters": ("params", [1.25, 1.5, 2.0, 3.0], 1.5)}
UNITS = {"latency": "faster", "size": "smaller", "params": "fewer non-zero parameters", "macs": "fewer MACs"}

params = baseline_params()
text = is_text_name(params["dataset"])
st.title("Plan")
if text:
    st.write("Name a target and the largest perplexity increase you accept. The lab searches recipes on the "
             "sidebar's language model (remove whole layers, or attention heads and MLP units, ranked on "
             "calibration text; fine-tune with the model as teacher; dynamic int8), keeps every trial as a run, "
             "and verifies the winner: its prefill timed again together with the baseline.")
else:
    st.write("Name a target and the largest accuracy loss you accept. The lab searches recipes (channel removal, "
             "weight pruning, fine-tuning with distillation, int8 or weight sharing) on the sidebar's model, keeps "
             "every trial as a run, and verifies the winner: timed again together with the baseline, its size the "
             "bytes of its file.")
goals = TEXT_GOALS if text else GOALS
goal = st.radio("I want it", list(goals), horizontal=True)
kind, factors, default = goals[goal]
with st.form("plan-form"):
    factor = st.select_slider("How much", factors, value=default, format_func=lambda f: f"{f:g}x {UNITS[kind]}")
    c1, c2 = st.columns(2)
    if text:
        budget = {"max_ppl_increase": c1.slider("Largest perplexity increase (%)", 0, 50, 10, 1) / 100}
    else:
        budget = {"max_drop": c1.slider("Largest accuracy drop (pt)", 0.0, 5.0, 1.0, 0.1)}
    trials = c2.slider("Trial budget", 2, 24 if text else 48, 4 if text else 12,
                       help="each language-model trial fine-tunes for up to 2 epochs: about a minute on 2 cores"
                       if text else None)
    if st.form_submit_button("Plan", type="primary"):
        submit_job("plan", {**params, "target": target_text(kind, factor), **budget, "trials": trials})
job_panel(("plan",), key="plan", show_curves=False)

store = get_store()
plans = list_plans(store)
if not plans:
    st.info("No plans yet. Name a target and press **Plan**: trials appear here as they finish.")
    st.stop()
name = st.selectbox("Plan", plans)
try:
    state = plan_state(name, store)
except LabError as err:
    st.error(str(err))
    st.stop()
result = state["result"] or {}
best = result.get("best") or {}
quality = state["quality"]
limit = f"{state['max_drop']:g} pt" if quality["unit"] == "pt" else f"{state['max_drop']:g}% perplexity"
st.caption(f"Target **{state['target']['phrase']}** within **{limit}**; "
           f"{state['finished']} of {state['trials']} trials finished"
           + (f", {len(state['stopped'])} stopped early." if state["stopped"] else "."))
if state["points"]:
    plot(plan_chart(state, best.get("run_id")), "plan-chart")
else:
    st.info("No trial has finished yet; the chart fills in as they do.")

if not result:
    st.stop()
st.subheader("The winner")
if best.get("run_id") is None:
    st.warning(best.get("why") or "No trial finished.")
    st.stop()
# a verdict too close to call is not a failure: it says the interval straddles the target (blue, not yellow)
VERDICT_BOX = {"meets": st.success, "too close to call": st.info}
VERDICT_BOX.get(best.get("verdict"), st.success if best["meets"] else st.warning)(
    f"Run {best['run_id']} meets {state['target']['phrase']}: {best['label']}" if best["meets"] else best["why"])
lo, hi = best["ci95"]
m1, m2, m3, m4 = st.columns(4)
m1.metric("Speed-up (verified)", f"{best['speedup']:.2f}x",
          help="timed again together with the baseline: interleaved rounds in fresh processes, pooled, at the "
               "latency batch")
m1.caption(f"95% CI [{lo:.2f}, {hi:.2f}] at batch {best['speedup_batch']}"
           + (" · :orange[noisy]" if best.get("speedup_noisy") else ""))
m2.metric("Size", human_bytes(best["size_bytes"]), f"{best['size_factor']:.1f}x smaller", delta_color="off")
if quality["field"] == "perplexity":
    if best.get("decode_speedup"):
        lo_d, hi_d = best["decode_ci95"]
        m1.caption(f"decode (one token at a time, batch 1): {best['decode_speedup']:.2f}x [{lo_d:.2f}, {hi_d:.2f}], "
                   "the trial's own paired timing")
    m3.metric("Perplexity", f"{best['perplexity']:.3f}", f"{best['quality_loss']:+.1f}%", delta_color="inverse",
              help="lower is better; the change is against the baseline's, on the test split")
    m3.caption(f"95% CI [{best['perplexity_ci95'][0]:.3f}, {best['perplexity_ci95'][1]:.3f}]")
    m4.metric("Next tokens changed", "-" if best.get("flip_rate") is None else f"{best['flip_rate']:.1%}",
              help="share of test positions where the top next-token prediction differs from the baseline's")
else:
    m3.metric("Accuracy", f"{best['accuracy']:.4f}", f"{-best['accuracy_drop_pt']:+.2f} pt")
    m3.caption(f"95% CI [{best['accuracy_ci'][0]:.3f}, {best['accuracy_ci'][1]:.3f}]")
    m4.metric("Answers changed", "-" if best.get("flip_rate") is None else f"{best['flip_rate']:.1%}",
              help="share of test answers that differ from the baseline's (flip rate)")
b1, b2 = st.columns(2)
try:
    b1.download_button("Export", run_compressed_bytes(store, best["run_id"]), file_name=f"run{best['run_id']}.cldc",
                       help="the compressed file; compression.load_compressed(path) rebuilds the model")
except LabError as err:
    b1.caption(f"Export: {err}")
b2.page_link("app_pages/compare.py", label="Open in Compare", icon=":material/scatter_plot:")

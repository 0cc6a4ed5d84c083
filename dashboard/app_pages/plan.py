import streamlit as st

from compression import LabError
from compression.labs.io.compressed import run_compressed_bytes
from compression.labs.plan import list_plans, plan_state, target_text
from dashboard.charts_plan import plan_chart
from dashboard.components import human_bytes, submit_job
from dashboard.display import plot
from dashboard.state import get_store
from dashboard.views import baseline_params, current_view, view_of
from dashboard.views.jobs import job_panel

# a target kind in words; the goals a user picks from (and their factors) are the task's: dashboard/views/
UNITS = {"latency": "faster", "size": "smaller", "params": "fewer non-zero parameters", "macs": "fewer MACs"}

params = baseline_params()
view = current_view()
st.title("Plan")
st.write(view.plan.intro)
goals = view.plan.goals
goal = st.radio("I want it", list(goals), horizontal=True)
kind, factors, default = goals[goal]
with st.form("plan-form"):
    factor = st.select_slider("How much", factors, value=default, format_func=lambda f: f"{f:g}x {UNITS[kind]}")
    c1, c2 = st.columns(2)
    budget = view.plan.budget(c1)  # the largest loss of quality accepted, in the task's own unit
    most, default_trials, why = view.plan.trials
    trials = c2.slider("Trial budget", 2, most, default_trials, help=why)
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
plan_view = view_of(state["baseline"] or {})  # the plan's own task (its baseline's), whatever the sidebar shows
st.caption(f"Target **{state['target']['phrase']}** within **{plan_view.plan.limit(state['max_drop'])}**; "
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
plan_view.plan.winner(best, m1, m3, m4)  # its quality and how many answers changed
b1, b2 = st.columns(2)
try:
    b1.download_button("Export", run_compressed_bytes(store, best["run_id"]), file_name=f"run{best['run_id']}.cldc",
                       help="the compressed file; compression.load_compressed(path) rebuilds the model")
except LabError as err:
    b1.caption(f"Export: {err}")
b2.page_link("app_pages/compare.py", label="Open in Compare", icon=":material/scatter_plot:")

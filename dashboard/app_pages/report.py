import streamlit as st

from compression import LabError
from compression.core.timing import machine_fingerprint
from compression.labs.speed import latest_speedup
from compression.labs.summary import claims_to_retime, default_report_runs, reference_of, versus_baseline
from dashboard.components import submit_job
from dashboard.report_html import build_report
from dashboard.state import get_store, records
from dashboard.views import current_view
from dashboard.views.jobs import job_panel

st.title("Report")
st.write("Pick runs: each is compared with the baseline it grew from (its lineage root), in plain words, with "
         "speed-ups only from timings of the two models made together. Download it as one HTML file that opens "
         "offline.")
# the sidebar's kind of data: image runs (accuracy) and text runs (perplexity) are reported apart
view = current_view()
recs = [r for r in view.records(records()) if r["status"] == "done" and r.get("accuracy") is not None]
if not recs:
    st.info(f"No finished runs yet{view.results.no_runs}. Train a baseline or run the teaching demo on Home.")
    st.stop()
store = get_store()
by_id = {r["run_id"]: r for r in recs}
label = lambda i: f"#{i} {by_id[i]['label']}"  # noqa: E731
picked = st.multiselect("Runs to report", list(by_id), default=default_report_runs(recs) or list(by_id)[-5:],
                        format_func=label)
against = st.selectbox("Compare against", ["own baseline"] + list(by_id)[::-1],
                       format_func=lambda o: "each run's own baseline (lineage root)" if o == "own baseline"
                       else f"one run for all: {label(o)}",
                       help="Comparing with a run that is not an ancestor is allowed, and labelled 'different model'.")
machine = machine_fingerprint("cpu")["id"]
rows, pairs = [], []
for run_id in picked:
    ref_id = reference_of(store, run_id) if against == "own baseline" else against
    if ref_id is None or ref_id == run_id or ref_id not in by_id:
        rows.append((by_id[run_id], None, "a baseline: nothing to compare with"))
        continue
    # one claim per timed phase of the task: the first is the headline (a language model's prefill), and a
    # decode phase is said beside it
    timed = {phase: latest_speedup(store, run_id, ref_id, phase=phase) for phase in view.phases}
    speed = timed[view.phases[0]]
    summary = versus_baseline(by_id[run_id], by_id[ref_id], speed, machine, decode=timed.get("decode"))
    # a re-time job per claim not yet quotable here (the demos queue the same ones), at the claim's own batch
    pairs += claims_to_retime(store, run_id, ref_id, view.phases, machine, view.results.retime_batch)
    rows.append((by_id[run_id], by_id[ref_id], summary["text"]))
for rec, ref, text in rows:
    versus = f" vs #{ref['run_id']}" if ref else ""
    st.markdown(f"- **{rec['label']}**{versus}: {text}")
if any("noisy" in text for _, _, text in rows):
    st.warning("Some timings were **noisy**: other programs were busy, or too few rounds for a tight interval. "
               "Re-time them on a quiet machine before quoting them.")
if pairs and st.button(f"Re-time {len(pairs)} timing(s) on this machine"):
    for params in pairs:
        submit_job("speedup", params)
job_panel(("speedup",), key="report", show_curves=False)

# how a pair's change is computed as (diff, thumbnails) and shown is the task's: dashboard/views/
changes = {}  # run id -> (diff, thumbnails) or the sentence that says why there is none
if any(ref is not None for _, ref, _ in rows):
    st.header("What changed")
    st.caption(view.change.caption)
for rec, ref, _ in rows:
    if ref is None:
        continue
    st.markdown(f"**{rec['label']}** vs #{ref['run_id']}")
    try:
        changes[rec["run_id"]] = view.change.compute(ref["run_id"], rec["run_id"])
    except LabError as err:
        changes[rec["run_id"]] = str(err)
        st.error(str(err))
        continue
    view.change.show(changes[rec["run_id"]], (f"#{ref['run_id']}", f"#{rec['run_id']}"))

selected = [r for r, _, _ in rows]
references = [ref for _, ref, _ in rows if ref is not None]
chosen = list({r["run_id"]: r for r in references + selected}.values())
view.results.report(chosen)
st.download_button("Download HTML report", build_report(rows, changes=changes), "compression-report.html", "text/html",
                   type="primary")

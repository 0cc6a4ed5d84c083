import pandas as pd
import streamlit as st

from compression import LabError
from compression.core.timing import machine_fingerprint
from compression.labs.speed import latest_speedup
from compression.labs.summary import REPORT_DEFAULT_RUNS, reference_of, versus_baseline
from dashboard.charts import runs_frame, tradeoff_chart
from dashboard.behaviour_text import show_text_diff, text_behaviour_of
from dashboard.charts_behaviour import what_changed
from dashboard.components import behaviour_of, flip_gallery, job_panel, submit_job
from dashboard.display import plot
from dashboard.report_html import build_report
from dashboard.charts_text import is_text_record, perplexity_chart, text_frame
from dashboard.state import dataset_name, get_store, records
from compression.text.corpus import is_text_name

st.title("Report")
st.write("Pick runs: each is compared with the baseline it grew from (its lineage root), in plain words, with "
         "speed-ups only from timings of the two models made together. Download it as one HTML file that opens "
         "offline.")
# the sidebar's kind of data: image runs (accuracy) and text runs (perplexity) are reported apart
text_task = is_text_name(dataset_name())
recs = [r for r in records() if r["status"] == "done" and r.get("accuracy") is not None
        and is_text_record(r) == text_task]
if not recs:
    st.info(f"No finished runs yet{' of a language model' if text_task else ''}. Train a baseline or run the "
            "teaching demo on Home.")
    st.stop()
store = get_store()
by_id = {r["run_id"]: r for r in recs}
label = lambda i: f"#{i} {by_id[i]['label']}"  # noqa: E731
children = [r["run_id"] for r in recs if r.get("parent_id") is not None]
picked = st.multiselect("Runs to report", list(by_id), default=(children or list(by_id))[-REPORT_DEFAULT_RUNS:], format_func=label)
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
    phase = "prefill" if text_task else None  # a language model's claim names its phase; decode is said beside it
    speed = latest_speedup(store, run_id, ref_id, phase=phase)
    decode = latest_speedup(store, run_id, ref_id, phase="decode") if text_task else None
    summary = versus_baseline(by_id[run_id], by_id[ref_id], speed, machine, decode=decode)
    timed = (("prefill", speed), ("decode", decode)) if text_task else ((None, speed),)
    for timed_phase, row in timed:  # a re-time job per claim to replace, at the claim's own batch
        if row is None or row["machine"] != machine or row["noisy"]:
            batch = row["batch_size"] if row else (None if text_task else 256)  # None: the record's batch
            pairs.append({"run_a": ref_id, "run_b": run_id, "batch_size": batch,
                          **({"phase": timed_phase} if timed_phase else {})})
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

GALLERY = 6  # a glimpse; Compare's Behaviour view shows the full gallery


def show_image_change(change: tuple, names: tuple[str, str]) -> None:
    diff, images = change
    st.markdown("\n".join(f"- {line}" for line in what_changed(diff).values()))
    flip_gallery(diff, images, names, limit=GALLERY, per_row=GALLERY)


# per kind of run: its caption, how a pair's change is computed as (diff, thumbnails), and how it is shown
WHAT_CHANGED = {
    False: ("Accuracy hides churn: the answers each run gives differently from its reference, the classes that "
            "lost most (95% paired CI), and whether its confidence stayed honest (ECE).", behaviour_of,
            show_image_change),
    True: ("Perplexity hides churn: where each run's most likely next token differs from its reference's, how its "
           "loss per token moved (95% CIs over test sequences), and greedy completions side by side.",
           lambda a, b: (text_behaviour_of(a, b), []),
           lambda change, names: show_text_diff(change[0], (f"A {names[0]}", f"B {names[1]}"), compact=True)),
}
caption, compute_change, show_change = WHAT_CHANGED[text_task]
changes = {}  # run id -> (diff, thumbnails) or the sentence that says why there is none
if any(ref is not None for _, ref, _ in rows):
    st.header("What changed")
    st.caption(caption)
for rec, ref, _ in rows:
    if ref is None:
        continue
    st.markdown(f"**{rec['label']}** vs #{ref['run_id']}")
    try:
        changes[rec["run_id"]] = compute_change(ref["run_id"], rec["run_id"])
    except LabError as err:
        changes[rec["run_id"]] = str(err)
        st.error(str(err))
        continue
    show_change(changes[rec["run_id"]], (f"#{ref['run_id']}", f"#{rec['run_id']}"))

selected = [r for r, _, _ in rows]
references = [ref for _, ref, _ in rows if ref is not None]
chosen = list({r["run_id"]: r for r in references + selected}.values())
left, right = st.columns(2)
if text_task:
    frame = text_frame(chosen)
    plot(perplexity_chart(frame, "size_bytes"), "report-size", left)
    plot(perplexity_chart(frame, "decode_ms_per_token", title="Perplexity vs decode latency"), "report-latency",
         right)
    st.dataframe(frame, hide_index=True)
else:
    frame = runs_frame(chosen)
    plot(tradeoff_chart(frame, "size_bytes"), "report-size", left)
    plot(tradeoff_chart(frame, "latency_ms", title="Accuracy vs CPU latency"), "report-latency", right)
    st.dataframe(pd.DataFrame(frame.drop(columns=["config"])), hide_index=True)
st.download_button("Download HTML report", build_report(rows, changes=changes), "compression-report.html", "text/html",
                   type="primary")

import pandas as pd
import streamlit as st

from compression.labs.summary import versus_baseline
from dashboard.charts import runs_frame, tradeoff_chart
from dashboard.report_html import build_report
from dashboard.state import records

st.title("Report")
st.write("Pick runs and a baseline: get a one-line verdict for each, the charts, and one HTML file that "
         "opens offline in any browser.")
recs = [r for r in records() if r["status"] == "done" and r.get("accuracy") is not None]
if not recs:
    st.info("No finished runs yet. Train a baseline or run the teaching demo on Home.")
    st.stop()
by_id = {r["run_id"]: r for r in recs}
label = lambda i: f"#{i} {by_id[i]['label']}"  # noqa: E731
baselines = [r["run_id"] for r in recs if r["kind"] == "train"] or list(by_id)
baseline_id = st.selectbox("Baseline", baselines[::-1], format_func=label)
others = [i for i in by_id if i != baseline_id]
picked = st.multiselect("Runs to report", others, default=others[-5:], format_func=label)
baseline = by_id[baseline_id]
selected = [by_id[i] for i in picked]

for rec in selected:
    st.markdown(f"- **{rec['label']}**: {versus_baseline(rec, baseline)['text']}")
frame = runs_frame([baseline] + selected)
left, right = st.columns(2)
left.plotly_chart(tradeoff_chart(frame, "size_bytes"), key="report-size")
right.plotly_chart(tradeoff_chart(frame, "latency_ms", title="Accuracy vs CPU latency"), key="report-latency")
st.dataframe(pd.DataFrame(frame.drop(columns=["config"])), hide_index=True)
st.download_button("Download HTML report", build_report(selected, baseline), "compression-report.html",
                   "text/html", type="primary")

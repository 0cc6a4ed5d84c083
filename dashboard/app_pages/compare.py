import streamlit as st

from dashboard.state import records
from dashboard.views import VIEWS, current_view

st.title("Compare")
st.write("Every stored run, measured the same way. Filter, pick the cost axis, and follow a run's lineage.")
all_records = records()
if not all_records:
    st.info("No runs stored yet. Train a baseline or run the teaching demo on Home.")
    st.stop()

# image and text runs never share a chart: accuracy and perplexity have no common axis. The sidebar's task first,
# or the one that has runs; a choice where both have some
present = [name for name, view in VIEWS.items() if view.records(all_records)]
task = current_view().name
task = task if task in present else present[0]
if len(present) > 1:
    task = st.radio("Runs", present, index=present.index(task), horizontal=True,
                    help="image classifiers (accuracy) and language models (perplexity) are compared apart")
view = VIEWS[task]
view.results.compare(view.records(all_records))  # the chart, the table and the behaviour: dashboard/views/

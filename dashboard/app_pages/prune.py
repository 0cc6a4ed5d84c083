import streamlit as st

from dashboard.state import records
from dashboard.views import baseline_params, current_view
from dashboard.views.jobs import job_panel

view = current_view()  # the form and the results are the data set's task's: dashboard/views/
st.title("Prune")
params = baseline_params()
st.write(view.prune.intro)
view.prune.form(params)
job_panel(("prune",), key="prune")

pruned = [r for r in records(kind="prune", dataset=params["dataset"]) if r["status"] == "done"]
if not pruned:
    st.info("No pruned runs on this dataset yet. Choose sparsities and press **Prune**.")
    st.stop()
parents = {r["run_id"]: r for r in records(dataset=params["dataset"])}
newest_first = sorted(pruned, key=lambda r: -r["run_id"])
parent_ids = list(dict.fromkeys(r["parent_id"] for r in newest_first if r["parent_id"] in parents))
parent_id = st.selectbox("Results for parent run", parent_ids, format_func=lambda i: f"#{i} {parents[i]['label']}")
children = [r for r in pruned if r["parent_id"] == parent_id]
view.prune.results(children, parents[parent_id])

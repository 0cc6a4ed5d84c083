import streamlit as st

from dashboard.state import records
from dashboard.views import baseline_params, current_view

st.title("Quantize")
st.write("Store weights (and activations) in fewer bits. Every result is measured on this machine, and says "
         "what really ran: int8 kernels, or int8 storage with fp32 compute.")
params = baseline_params()
all_runs = records(dataset=params["dataset"])  # read once per rerun; the lab's sections filter it
by_id = {r["run_id"]: r for r in all_runs}
# the methods, the form, the results (and for image models the pipeline builder): dashboard/views/
current_view().quantize.form(params, all_runs, by_id)

import streamlit as st

from dashboard.views import baseline_params, current_view

st.title("Distill")
view = current_view()
st.write(view.distill.intro)
view.distill.form(baseline_params())  # the form, the job panel and the studies: dashboard/views/

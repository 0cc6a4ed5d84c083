"""Compression Lab: the frame every page lives in (navigation + the shared sidebar).

`make run` serves this file. Pages live in app_pages/ and only render and call `compression`.
"""
import uuid
from pathlib import Path

import streamlit as st

from dashboard.display import apply_presentation
from dashboard.sidebar import sidebar  # `pip install -e .` (make's first step) makes the dashboard importable
from dashboard.state import prewarm_worker

ROOT = Path(__file__).resolve().parent.parent

st.set_page_config(page_title="Compression Lab", page_icon=str(ROOT / "assets" / "logo.png"), layout="wide")

PAGES = Path(__file__).parent / "app_pages"
pages = {
    "Start": [st.Page(PAGES / "home.py", title="Home", icon=":material/home:", default=True),
              st.Page(PAGES / "baseline.py", title="Baseline", icon=":material/model_training:")],
    "Labs": [st.Page(PAGES / "plan.py", title="Plan", icon=":material/flag:"),
             st.Page(PAGES / "prune.py", title="Prune", icon=":material/content_cut:"),
             st.Page(PAGES / "distill.py", title="Distill", icon=":material/school:"),
             st.Page(PAGES / "quantize.py", title="Quantize", icon=":material/compress:"),
             st.Page(PAGES / "search.py", title="Search", icon=":material/travel_explore:")],
    "Results": [st.Page(PAGES / "compare.py", title="Compare", icon=":material/scatter_plot:"),
                st.Page(PAGES / "report.py", title="Report", icon=":material/summarize:")],
}
navigation = st.navigation(pages)
# a new token per full run lets the job panel tell its own timer reruns from full page runs
st.session_state["page_run_token"] = uuid.uuid4().hex
sidebar()
prewarm_worker()
apply_presentation()
navigation.run()

"""Compression Lab dashboard (minimal): train and show a baseline on the embedded digits data."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st  # noqa: E402

from compression import as_record, get_baseline  # noqa: E402

st.set_page_config(page_title="Compression Lab", layout="wide")
st.title("Compression Lab")
st.write("Explore neural-network compression trade-offs on the embedded digits data.")
if st.button("Train the lenet5 baseline"):
    with st.spinner("Training..."):
        _, run = get_baseline("digits", "lenet5")
    rec = as_record(run)
    st.metric("Accuracy", f"{rec['accuracy']:.3f}")
    st.metric("Params", f"{rec['params']:,}")

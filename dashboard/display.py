"""How every chart is shown: the accuracy-axis toggle, presentation mode, and image export at projector
resolution. Pages call `plot(fig, key)` instead of st.plotly_chart, so one switch changes every chart."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

PRESENT_CSS = """<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], header, .stForm, [data-testid="stExpander"],
.stButton, .stDownloadButton, [data-testid="stWidgetLabel"] ~ div [data-baseweb="select"] {display: none !important;}
[data-testid="stMainBlockContainer"] {max-width: 100% !important; padding-top: 1rem !important;}
html, body, [data-testid="stMarkdownContainer"] p, li {font-size: 1.35rem !important;}
h1 {font-size: 3rem !important;}
</style>"""
# the modebar's camera button saves every chart in the sidebar's format: a PNG at 3x (sharp on a 4K projector
# and in slides) or an SVG (vector: any size, editable in a drawing program)
IMAGE_FORMATS = {"PNG (3x)": {"format": "png", "scale": 3}, "SVG": {"format": "svg", "scale": 1}}
IMAGE_EXPORT = {"toImageButtonOptions": IMAGE_FORMATS["PNG (3x)"], "displaylogo": False}  # the offline report's


def image_export() -> dict:
    return {"toImageButtonOptions": dict(IMAGE_FORMATS[st.session_state.get("image_format", "PNG (3x)")]),
            "displaylogo": False}


def presenting() -> bool:
    return bool(st.session_state.get("present"))


def plot(fig: go.Figure, key: str, container=None) -> None:
    if st.session_state.get("full_y") and (fig.layout.yaxis.title.text or "") == "test accuracy":
        fig.update_yaxes(range=[0, 1.02])
    if presenting():
        fig.update_layout(font_size=20, title_font_size=26, legend_font_size=18, height=640)
        fig.update_traces(marker_size=16, selector=dict(type="scatter"))
    (container or st).plotly_chart(fig, key=key, config=image_export())


def presentation_toggle() -> None:
    """A sidebar switch kept in the URL (?present=1), so a link opens the app ready for a projector."""
    if "present" not in st.session_state:
        st.session_state["present"] = st.query_params.get("present") == "1"
    st.toggle("Presentation mode", key="present", help="hides the controls, enlarges fonts and markers; the URL "
              "keeps it (?present=1). Leave it with ?present=0.")
    if st.session_state["present"]:
        st.query_params["present"] = "1"
    elif "present" in st.query_params:
        del st.query_params["present"]
    st.toggle("Accuracy axis from 0 to 1", key="full_y", help="off: fitted to the runs, so 0.93-0.99 is readable")
    st.radio("Charts download as", list(IMAGE_FORMATS), key="image_format", horizontal=True,
             help="the camera button above each chart saves it in this format")


def apply_presentation() -> None:
    if presenting():
        st.markdown(PRESENT_CSS, unsafe_allow_html=True)
        st.caption("Presentation mode: open the page without ?present=1 to see the controls again.")

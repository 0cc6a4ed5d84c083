"""Shared widgets: human-readable sizes and counts, the behaviour of two runs and its gallery, submitting a job,
lab placeholders. What differs by task (metric cards, forms, the job panel's curves) is in dashboard/views/."""
from __future__ import annotations

import streamlit as st

from compression import LabError
from compression.core.data import load_dataset
from compression.jobs import submit
from compression.labs.diff import diff_runs

from .charts_behaviour import gallery_captions, thumbnails
from .state import get_store


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def human_count(n: float | None) -> str:
    if n is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}"
    return f"{n:.0f}"


def behaviour_of(run_a: int, run_b: int) -> tuple[dict, list]:
    """`diff_runs(A, B)` and its gallery's thumbnails, cached per pair of runs. Instant for runs that stored
    their answers; older runs load their weights once. Raises LabError (different data sets, no weights)."""
    store = get_store()
    stamps = tuple(store.get_run(i)["created_at"] for i in (run_a, run_b))  # a new run under a reused id
    return _behaviour(store.url, run_a, run_b, stamps)


@st.cache_data(show_spinner="Comparing the two runs' answers...", max_entries=64)
def _behaviour(db_url: str, run_a: int, run_b: int, stamps: tuple) -> tuple[dict, list]:
    diff = diff_runs(get_store(), run_a, run_b)
    shown = [g["index"] for g in diff["gallery"]]
    return diff, thumbnails(load_dataset(diff["dataset"]).x_test[shown].numpy())


def flip_gallery(diff: dict, images: list, names: tuple[str, str], limit: int | None = None, per_row: int = 6) -> None:
    """The flipped test examples as images, newly wrong first, each with both answers and confidences."""
    captions = gallery_captions(diff, names)[:limit]
    for start in range(0, len(captions), per_row):
        cols = st.columns(per_row)
        for col, image, caption in zip(cols, images[start:start + per_row], captions[start:start + per_row]):
            col.image(image, caption=caption)


def submit_job(kind: str, params: dict) -> int | None:
    """Queue a job; bad input shows as a message, never a traceback."""
    try:
        job_id = submit(get_store(), kind, params)
    except LabError as err:
        st.error(str(err))
        return None
    st.toast(f"Job {job_id} queued")
    return job_id


def coming_soon(title: str, what: str) -> None:
    st.title(title)
    st.info(f"**Coming soon.** {what}")
    st.caption("Until then, the Baseline page trains models and the Compare page puts every run side by side.")

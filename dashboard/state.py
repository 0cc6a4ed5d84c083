"""The sidebar's choices (as the labs name them) and the store, shared by every page; the sidebar itself is
dashboard/sidebar.py."""
from __future__ import annotations

import os

import streamlit as st

from compression import RunStore, as_record
from compression.core.data import IMAGEFOLDER
from compression.jobs import ensure_worker

FOLDER_CHOICE = "image folder..."


def get_store() -> RunStore:
    return RunStore()  # cheap: the engine behind it is cached per database URL


def prewarm_worker() -> None:
    """Start the job worker once per browser session, on whichever page the reader lands: it imports torch
    (~5 s), which the first job's clock (the demo's, say) would count. COMPRESSION_LAB_PREWARM=0 turns it off."""
    if os.environ.get("COMPRESSION_LAB_PREWARM", "1") == "1" and "worker_warmed" not in st.session_state:
        st.session_state["worker_warmed"] = True
        ensure_worker(get_store(), wait=False)


def dataset_name() -> str:
    """The sidebar's data set as the labs name it: a registered set, or imagefolder:PATH (digits until a folder
    is typed in)."""
    chosen = st.session_state.get("dataset", "digits")
    if chosen == FOLDER_CHOICE:
        folder = (st.session_state.get("image_folder") or "").strip()
        return f"{IMAGEFOLDER}{folder}" if folder else "digits"
    return chosen


def model_spec() -> str:
    args = (st.session_state.get("model_args") or "").strip().replace(" ", "")
    name = st.session_state.get("model_name", "lenet5")
    return f"{name}:{args}" if args else name


def baseline_params() -> dict:
    """What picks the baseline: the same keys as the CLI's train verb."""
    ss = st.session_state
    return {"dataset": dataset_name(), "model": model_spec(), "epochs": int(ss.get("epochs", 10)),
            "seed": int(ss.get("seed", 0)), "device": ss.get("device", "cpu"),
            "data_dir": ss.get("data_dir") or None, "download": bool(ss.get("download", False)),
            "latency_batch": int(ss.get("latency_batch", 256))}


def records(**filters) -> list[dict]:
    return [as_record(r) for r in get_store().list_runs(**filters)]

"""The sidebar's choices (as the labs name them) and the store, shared by every page; the sidebar itself is
dashboard/sidebar.py."""
from __future__ import annotations

import os

import streamlit as st

from compression import RunStore, as_record
from compression.core.data import IMAGEFOLDER
from compression.jobs import ensure_worker

FOLDER_CHOICE = "image folder..."
DEFAULTS = {"dataset": "digits", "model": "lenet5", "device": "cpu"}  # left out of the URL


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


def baseline_params(**task_keys) -> dict:
    """What picks the baseline: the same keys as the CLI's train verb, then `task_keys`, what the data set's task
    adds (pages call views.baseline_params, which passes the sidebar's view's)."""
    ss = st.session_state
    return {"dataset": dataset_name(), "model": model_spec(), "epochs": int(ss.get("epochs", 10)),
            "seed": int(ss.get("seed", 0)), "device": ss.get("device", "cpu"),
            "data_dir": ss.get("data_dir") or None, "download": bool(ss.get("download", False)),
            "latency_batch": int(ss.get("latency_batch", 256)), **task_keys}


def seed_from_url(datasets: list[str], models: list[str], devices: list[str]) -> list[str]:
    """On a session's first run, the sidebar's choices from the URL (?dataset=synthetic&model=mlp:hidden=16
    &device=cpu), so a reload or a shared link opens the same set-up; returns a line for each value the URL
    named that is not known here (that choice keeps its default)."""
    ss = st.session_state
    if ss.get("url_seeded"):
        return []
    ss["url_seeded"] = True
    ss.setdefault("model_name", DEFAULTS["model"])
    url, unknown = st.query_params, []
    if (dataset := url.get("dataset")) is not None:
        if dataset in datasets:
            ss["dataset"] = dataset
        elif dataset.startswith(IMAGEFOLDER) and dataset[len(IMAGEFOLDER):].strip():
            ss["dataset"], ss["image_folder"] = FOLDER_CHOICE, dataset[len(IMAGEFOLDER):].strip()
        else:
            unknown.append(f"data set {dataset!r}")
    if (model := url.get("model")) is not None:
        name, _, args = model.partition(":")
        if name in models:
            ss["model_name"], ss["model_args"] = name, args
        else:
            unknown.append(f"model {model!r}")
    if (device := url.get("device")) is not None:
        if device in devices:
            ss["device"] = device
        else:
            unknown.append(f"device {device!r}")
    return [f"The link's {what} is not known here; using the default." for what in unknown]


def write_url() -> None:
    """The sidebar's choices into the URL, on every run (a page switch may drop the query); other params, such
    as ?present=1, are kept, and a default is left out."""
    chosen = {"dataset": dataset_name(), "model": model_spec(), "device": st.session_state.get("device", "cpu")}
    for key, value in chosen.items():
        if value == DEFAULTS[key]:
            if key in st.query_params:
                del st.query_params[key]
        elif st.query_params.get(key) != value:
            st.query_params[key] = value


def records(**filters) -> list[dict]:
    return [as_record(r) for r in get_store().list_runs(**filters)]

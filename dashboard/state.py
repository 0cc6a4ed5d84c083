"""The sidebar's choices and the store, shared by every page."""
from __future__ import annotations

import os

import streamlit as st

from compression import LabError, RunStore, as_record
from compression.core.data import DATASETS, IMAGEFOLDER, describe_image_folder
from compression.labs.data_upload import MAX_ZIP_BYTES, import_image_zip, upload_label, uploaded_datasets
from compression.core.measure import available_devices, hardware_info
from compression.jobs import ensure_worker
from compression.core.models import MODELS, list_models
from compression.paths import default_data_dir
from dashboard.display import presentation_toggle


FOLDER_CHOICE = "image folder..."
TORCHVISION_SETS = ("mnist", "fashion_mnist", "cifar10")  # read from a data folder, or downloaded when asked


def get_store() -> RunStore:
    return RunStore()  # cheap: the engine behind it is cached per database URL


def prewarm_worker() -> None:
    """Start the job worker once per browser session, on whichever page the reader lands: it imports torch
    (~5 s), which the first job's clock (the demo's, say) would count. COMPRESSION_LAB_PREWARM=0 turns it off."""
    if os.environ.get("COMPRESSION_LAB_PREWARM", "1") == "1" and "worker_warmed" not in st.session_state:
        st.session_state["worker_warmed"] = True
        ensure_worker(get_store(), wait=False)


def sidebar() -> None:
    """The shared sidebar: dataset, device, data folder and baseline model (kept in session_state)."""
    with st.sidebar:
        st.header("Setup")
        st.selectbox("Dataset", DATASETS.names() + uploaded_datasets() + [FOLDER_CHOICE], key="dataset",
                     help="digits is embedded and works offline; an image folder holds one subfolder per class; "
                          "zips you uploaded are listed as 'upload: NAME'",
                     format_func=lambda d: f"{d} (default)" if d == "digits" else upload_label(d))
        if st.session_state.dataset == FOLDER_CHOICE:
            image_folder_choice()
        describe_dataset(dataset_name())
        hw = hardware_info()
        labels = {"cpu": f"cpu ({hw['cpu']}, {hw['threads']} threads)"}
        labels.update({"cuda": f"cuda ({name})" for name in hw["cuda"][:1]})
        st.selectbox("Device", available_devices(), key="device", format_func=labels.get)
        if st.session_state.dataset in TORCHVISION_SETS:
            st.text_input("Data folder", value=str(default_data_dir()), key="data_dir")
            st.checkbox("Download if missing (needs internet)", key="download")
        names = MODELS.names()  # the zoo, then torchvision's classifiers as tv.NAME; type to search
        st.selectbox("Baseline model", names, key="model_name", index=names.index("lenet5"),
                     format_func=lambda n: f"{n} (torchvision)" if n.startswith("tv.") else n,
                     help=f"the model every lab starts from: {len(list_models())} zoo models and "
                          f"{len(names) - len(list_models())} torchvision classifiers; type to search")
        st.caption(MODELS.about(st.session_state.model_name))
        st.text_input("Model arguments", key="model_args", placeholder="e.g. width=64 or hidden=256-256")
        c1, c2 = st.columns(2)
        c1.number_input("Epochs", 1, 200, 10, key="epochs")
        c2.number_input("Seed", 0, 10_000, 0, key="seed")
        st.number_input("Latency batch", 1, 4096, 256, key="latency_batch",
                        help="the throughput batch for latency; batch 1 is always measured too")
        st.divider()
        presentation_toggle()


def describe_dataset(name: str) -> None:
    """What the data set is; for an image folder, also what was found in it (or why it cannot be used)."""
    st.caption(DATASETS.about(name))
    if not name.startswith(IMAGEFOLDER):
        return
    try:
        info = describe_image_folder(name)  # listed, not decoded: this is the web process
    except LabError as err:
        st.error(str(err))
        return
    st.caption(f"{len(info['classes'])} classes · {info['train']} train, {info['val']} val, {info['test']} test "
               f"images at {info['side']}x{info['side']}" + (" · streamed from disk" if info["streamed"] else ""))


def image_folder_choice() -> None:
    """A folder on this machine by path, or a zip of one uploaded from the browser."""
    st.text_input("Image folder", key="image_folder", placeholder="/path/to/images",
                  help="class subfolders, or train/ val/ test/ holding them; resized to 32x32 (add ?size=N). "
                       "A folder larger than memory is read from disk by batch (or add &stream=1)")
    st.file_uploader("Or upload a zip of one", type=["zip"], key="image_zip",
                     help=f"class subfolders of images, up to {MAX_ZIP_BYTES // 2**20} MiB; only the images are "
                          "unpacked, and the folder must load before it is kept")
    if st.session_state.get("image_zip") is not None:
        st.button("Add as a data set", key="add_image_zip", on_click=_add_image_zip)
    if st.session_state.get("image_zip_error"):
        st.error(st.session_state.image_zip_error)


def _add_image_zip() -> None:
    """Button callback (it runs before the widgets, so it may set the Dataset picker): unpack, check, select."""
    upload = st.session_state.get("image_zip")
    st.session_state.image_zip_error = None
    try:
        with st.spinner("Unpacking and checking the images"):
            st.session_state.dataset = import_image_zip(upload.getvalue(), upload.name)
    except LabError as err:
        st.session_state.image_zip_error = str(err)


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

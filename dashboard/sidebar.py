"""The shared sidebar: data set (registered, an image folder by path, or an uploaded zip), device, baseline
model; every choice is kept in session_state and read back through dashboard/state.py."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from compression import LabError
from compression.core.data import DATASETS, IMAGEFOLDER, describe_image_folder
from compression.core.measure import available_devices, hardware_info
from compression.core.models import MODELS
from compression.jobs.placers import where_jobs_go
from compression.paths import lab_home
from compression.text.corpus import MAX_TEXT_BYTES, TEXT, load_text_path
from compression.labs.io.data_upload import MAX_ZIP_BYTES, save_zip, upload_label, uploaded_datasets
from compression.paths import default_data_dir

from .components import submit_job
from .display import presentation_toggle
from .state import FOLDER_CHOICE, dataset_name, get_store, model_spec, seed_from_url, write_url
from .views import current_view
from .views.jobs import job_panel

TORCHVISION_SETS = ("mnist", "fashion_mnist", "cifar10")  # read from a data folder, or downloaded when asked


def sidebar() -> None:
    with st.sidebar:
        st.header("Setup")
        datasets, names, devices = DATASETS.names() + uploaded_datasets(), MODELS.names(), available_devices()
        for line in seed_from_url(datasets, names, devices):  # a reload or a link keeps the set-up (?dataset=...)
            st.warning(line)
        _adopt_imported_zip()  # before the Dataset picker: it may select the data set a finished import added
        datasets += uploaded_texts()
        st.selectbox("Dataset", datasets + [FOLDER_CHOICE], key="dataset",
                     help="digits is embedded and works offline; pydoc is Python's own documentation, text for "
                          "language models; an image folder holds one subfolder per class; zips and texts you "
                          "uploaded are listed as 'upload: NAME'",
                     format_func=dataset_label)
        text_upload()
        if st.session_state.dataset == FOLDER_CHOICE:
            image_folder_choice()
        if st.session_state.dataset == FOLDER_CHOICE and not dataset_name().startswith(IMAGEFOLDER):
            st.caption("Type a folder's path or upload a zip; until then the labs use digits.")
        else:
            describe_dataset(dataset_name())
        hw = hardware_info()
        labels = {"cpu": f"cpu ({hw['cpu']}, {hw['threads']} threads)"}
        labels.update({"cuda": f"cuda ({name})" for name in hw["cuda"][:1]})
        st.selectbox("Device", devices, key="device", format_func=labels.get)
        if st.session_state.dataset in TORCHVISION_SETS:
            st.text_input("Data folder", value=str(default_data_dir()), key="data_dir")
            st.checkbox("Download if missing (needs internet)", key="download")
        # the models of the data set's task (language models for text): the labs refuse the others anyway
        view = current_view()
        names = [n for n in names if view.owns(n)]
        if st.session_state.get("model_name") not in names:  # the data set's task changed: its default model
            st.session_state.model_name, st.session_state.model_args = view.default_model, ""
        # the zoo, then torchvision's classifiers as tv.NAME; type to search. lenet5 is seeded as the default
        st.selectbox("Baseline model", names, key="model_name",
                     format_func=lambda n: f"{n} (torchvision)" if n.startswith("tv.") else n,
                     help=view.sidebar.model_help(names))
        st.caption(MODELS.about(st.session_state.model_name))
        st.text_input("Model arguments", key="model_args", placeholder=view.sidebar.model_args_placeholder)
        view.sidebar.model_note(model_spec())  # e.g. the family recognised in an hf folder
        c1, c2 = st.columns(2)
        view.sidebar.length_input(c1)
        c2.number_input("Seed", 0, 10_000, 0, key="seed")
        st.number_input("Latency batch", 1, 4096, 256, key="latency_batch",
                        help="the throughput batch for latency; batch 1 is always measured too")
        st.divider()
        st.caption(where_jobs_go())  # this machine's worker, or the Ray cluster of COMPRESSION_LAB_CLUSTER
        presentation_toggle()
    write_url()


TEXT_UPLOADS = "texts"  # under the lab's data folder


def dataset_label(name: str) -> str:
    if name == "digits":
        return "digits (default)"
    if name.startswith(TEXT) and Path(name[len(TEXT):]).parent == lab_home() / TEXT_UPLOADS:
        return f"upload: {Path(name).name}"
    return upload_label(name)


def uploaded_texts() -> list[str]:
    folder = lab_home() / TEXT_UPLOADS
    return [f"{TEXT}{p}" for p in sorted(folder.glob("*")) if p.suffix in (".txt", ".md")] if folder.is_dir() else []


def text_upload() -> None:
    """A .txt or .md file of the user's as a text data set: checked (UTF-8, not binary, not empty, under the cap)
    before it is kept, then selected."""
    with st.expander("Upload a text (.txt, .md)"):
        upload = st.file_uploader("Text file", type=["txt", "md"], key="text_file",
                                  on_change=_forget, args=("text_upload_error",),
                                  help=f"UTF-8 text up to {MAX_TEXT_BYTES // 2**20} MB; split by paragraph into "
                                       "train, validation and test")
        if upload is not None:
            st.button("Add as a data set", key="add_text", on_click=_add_text)
        if st.session_state.get("text_upload_error"):
            st.error(st.session_state.text_upload_error)


def _forget(error_key: str) -> None:
    """A new file was chosen: the last file's refusal no longer applies."""
    st.session_state[error_key] = None


def _add_text() -> None:
    """Button callback (it runs before the Dataset picker is drawn, so it may select the new data set)."""
    upload = st.session_state.get("text_file")
    st.session_state.text_upload_error = None
    folder = lab_home() / TEXT_UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / Path(upload.name).name
    staged = folder / f".{path.name}.checking"
    staged.write_bytes(upload.getvalue())
    try:
        load_text_path(f"{TEXT}{staged}")  # every check a training run would make, now
    except LabError as err:
        st.session_state.text_upload_error = str(err).replace(staged.name, upload.name)
        staged.unlink()
        return
    staged.replace(path)
    st.session_state.dataset = f"{TEXT}{path}"


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
                     on_change=_forget, args=("image_zip_error",),
                     help=f"class subfolders of images, up to {MAX_ZIP_BYTES // 2**20} MiB; only the images are "
                          "unpacked, and the folder must load before it is kept")
    if st.session_state.get("image_zip") is not None:
        st.button("Add as a data set", key="add_image_zip", on_click=_add_image_zip)
    if st.session_state.get("image_zip_error"):
        st.error(st.session_state.image_zip_error)
    if st.session_state.get("import_job"):
        job_panel(("import_data",), key="import-data", show_curves=False)


def _add_image_zip() -> None:
    """Button callback: the instant checks here; unpacking and decoding every image is a job (progress, Cancel)."""
    upload = st.session_state.get("image_zip")
    st.session_state.image_zip_error = None
    try:
        path = save_zip(upload.getvalue(), upload.name)
    except LabError as err:
        st.session_state.image_zip_error = str(err)
        return
    st.session_state.import_job = submit_job("import_data", {"path": path, "filename": upload.name})


def _adopt_imported_zip() -> None:
    """Select the data set the session's import job added once it is done, or say why it failed."""
    job_id = st.session_state.get("import_job")
    try:
        job = get_store().get_job(job_id) if job_id else None
    except LabError:  # another database was chosen since
        job = None
    if job is None or job["status"] in ("queued", "running"):
        return
    st.session_state.import_job = None
    if job["status"] == "done":
        st.session_state.dataset = job["result"]["dataset"]
    else:
        st.session_state.image_zip_error = job.get("error") or f"The import was {job['status']}."

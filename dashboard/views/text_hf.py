"""Your own Hugging Face checkpoint on the dashboard: the family the lab recognised in a folder (read from its
config.json, never by loading the model), what the structured methods do to that family, and the Compare page's
download of a run as a Hugging Face folder (what `export --format hf` writes, zipped)."""
from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

import streamlit as st

from compression import LabError
from compression.core.models import parse_spec
from compression.text.families import FAMILIES, family_for_type

from ..state import get_store

FALLBACK = ("it loads through the generic fallback: weight pruning (magnitude, Wanda, SparseGPT) and int8 only; "
            "heads + MLP and depth need a known family ({names})")
# what heads_mlp does, by whether the family's config has a head_dim field (text.structured_hf says why)
HEADS_MLP = {True: "heads go in whole KV groups, and MLP channels with them",
             False: "its heads stay: only MLP channels go (its config ties a head's width to hidden / heads)"}
DEPTH = "whole blocks go, and the config's layer count is rewritten"


def hf_folder(spec: str) -> str | None:
    """The folder of an `hf:` model spec, or None for any other model (or an hf with no path yet)."""
    try:
        parsed = parse_spec(spec)
    except LabError:
        return None
    return (parsed["args"].get("path") or None) if parsed["name"] == "hf" else None


def model_type_of(folder: str) -> str:
    """The folder's config.json model_type; a LabError in one sentence where there is none to read."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise LabError(f"No Hugging Face model folder at {path}: give a local folder with config.json, "
                       "*.safetensors and the tokenizer.")
    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except FileNotFoundError:
        raise LabError(f"{path} has no config.json: it is not a Hugging Face model folder.") from None
    except (OSError, ValueError, AttributeError):
        raise LabError(f"{path}/config.json is not a JSON object the lab can read.") from None
    if not isinstance(model_type, str) or not model_type:
        raise LabError(f"{path}/config.json names no model_type.")
    return model_type


def family_line(folder: str) -> str:
    """One line: the family the lab recognised in the folder, and what that means for the methods."""
    model_type = model_type_of(folder)
    family = family_for_type(model_type)
    if family is None:
        return (f"Family: none recognised (model_type '{model_type}'): "
                + FALLBACK.format(names=", ".join(FAMILIES.names())) + ".")
    return (f"Family: **{family.name}** (model_type '{model_type}'): every method applies; heads + MLP: "
            f"{HEADS_MLP[family.head_dim_key is not None]}.")


def sidebar_model_note(spec: str) -> None:
    """Under the model picker: the recognised family of an hf folder (nothing for other models)."""
    folder = hf_folder(spec)
    if folder is None:
        return
    try:
        st.caption(family_line(folder))
    except LabError as err:
        st.error(str(err))


def structured_note(spec: str, method: str) -> str:
    """What heads_mlp or depth does to the sidebar's hf model's family ("" for a gpt or an unreadable folder)."""
    folder = hf_folder(spec)
    if folder is None:
        return ""
    try:
        model_type = model_type_of(folder)
    except LabError:
        return ""
    family = family_for_type(model_type)
    if family is None:
        return (f" This checkpoint's model_type '{model_type}' is no known family: heads + MLP and depth refuse it; "
                "use magnitude, wanda or sparsegpt.")
    what = DEPTH if method == "depth" else HEADS_MLP[family.head_dim_key is not None]
    return f" On this {family.name} checkpoint: {what}."


# --------------------------------------------------------------------------- Compare: the folder as a download

def hf_zip(run_id: int) -> bytes:
    """The run exported as `export --format hf` writes it (into a temporary folder), zipped in memory."""
    from compression.labs.io.export import export_run
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"run-{run_id}-hf"
        export_run(get_store(), run_id, "hf", out)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(p for p in out.rglob("*") if p.is_file()):
                archive.write(file, f"{out.name}/{file.relative_to(out)}")
    return buffer.getvalue()


def hf_download(records: list[dict]) -> None:
    """For runs of hf: models: a button that prepares the Hugging Face folder, then its download (lazy: the page
    does not export on every rerun); a run transformers cannot load says why in one sentence."""
    runs = [r for r in records if (r.get("model") or {}).get("name") == "hf" and r.get("has_answers")]
    if not runs:
        return
    st.markdown("**Take it home as a Hugging Face folder**")
    chosen = st.selectbox("Run to export", runs[::-1], key="hf-export-run",
                          format_func=lambda r: f"#{r['run_id']} {r.get('label') or r['model_name']}",
                          help="safetensors, the config as the model now is and the tokenizer: "
                               "AutoModelForCausalLM.from_pretrained loads the unzipped folder")
    key = f"hf-zip-{chosen['run_id']}"
    if st.button("Prepare the Hugging Face folder", key="hf-export-prepare"):
        try:
            with st.spinner("Exporting..."):
                st.session_state[key] = hf_zip(chosen["run_id"])
        except LabError as err:
            st.session_state[key] = str(err)
    prepared = st.session_state.get(key)
    if isinstance(prepared, str):
        st.info(prepared)
    elif prepared is not None:
        st.download_button(f"Download run-{chosen['run_id']}-hf.zip", prepared, f"run-{chosen['run_id']}-hf.zip",
                           mime="application/zip", key="hf-export-download")

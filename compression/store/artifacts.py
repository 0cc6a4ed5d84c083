"""Saving and loading model weights in the artifact store: the lab folder's weights/ by default, or any fsspec URL
(`COMPRESSION_LAB_ARTIFACTS`). A run stores a key (`artifact:NAME`), not a machine's path, so a run made by a worker
on another machine loads here when both share the database and the store; a path stored by an older version (an
absolute file name) still loads from this machine's disk."""
from __future__ import annotations

import functools
import io
import uuid
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import LabError
from ..paths import artifacts_url, lab_home

KEY_PREFIX = "artifact:"


def weights_dir() -> Path:
    path = lab_home() / "weights"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _drop_unpicklable_reprs(model: nn.Module) -> None:
    """torchao's quantize_ sets each layer's extra_repr to a functools.partial, which pickle rejects."""
    for module in model.modules():
        if isinstance(module.__dict__.get("extra_repr"), functools.partial):
            del module.extra_repr


def save_model(model: nn.Module, example: torch.Tensor) -> str:
    """Save the whole model so structurally pruned or quantized models load without a spec.

    Tries a pickled module that must load back; FX-quantized graphs that do not unpickle are saved as
    TorchScript instead. Returns the path; called before the run is stored, so no run lacks weights.
    These files are written by the lab itself: user uploads never go through load_run_model.
    """
    _drop_unpicklable_reprs(model)
    with warnings.catch_warnings():  # deprecation notes of torch.jit and storages: not the user's concern
        warnings.simplefilter("ignore")
        return _save(model, example)


def _save(model: nn.Module, example: torch.Tensor) -> str:
    buffer = io.BytesIO()
    try:
        torch.save(model, buffer)
        torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
        return put_bytes(f"{uuid.uuid4().hex}.pt", buffer.getvalue())
    except Exception:
        pass
    buffer = io.BytesIO()
    try:
        with torch.no_grad():
            torch.jit.save(torch.jit.trace(model.eval(), example.to(_dtype_of(model))), buffer)
    except Exception as err:
        raise LabError(f"Could not save this model ({type(err).__name__}: {str(err).splitlines()[0][:120]})") from None
    return put_bytes(f"{uuid.uuid4().hex}.ts", buffer.getvalue())


def _store():
    """(filesystem, root) of the artifact store, from its URL (fsspec: a local folder needs nothing more)."""
    import fsspec
    try:
        fs, root = fsspec.core.url_to_fs(artifacts_url())
    except (ImportError, ValueError) as err:
        raise LabError(f"The artifact store {artifacts_url()} cannot be opened: {str(err).splitlines()[0][:160]}") \
            from None
    return fs, root.rstrip("/")


def put_bytes(name: str, data: bytes) -> str:
    """Write one file into the artifact store; returns the key a run keeps."""
    fs, root = _store()
    try:
        fs.makedirs(root, exist_ok=True)
        fs.pipe_file(f"{root}/{name}", data)
    except OSError as err:
        raise LabError(f"Could not write to the artifact store {artifacts_url()}: {err}") from None
    return KEY_PREFIX + name


def get_bytes(key: str) -> bytes:
    """A stored model file's bytes: a key from the artifact store, or an older run's absolute path on this disk."""
    if not key.startswith(KEY_PREFIX):
        if not Path(key).exists():
            raise LabError(f"The model file of this run is missing ({Path(key).name}); re-run it to recreate it.")
        return Path(key).read_bytes()
    name = key[len(KEY_PREFIX):]
    fs, root = _store()
    try:
        return fs.cat_file(f"{root}/{name}")
    except FileNotFoundError:
        raise LabError(f"The model file of this run ({name}) is not in the artifact store {artifacts_url()}: is "
                       "COMPRESSION_LAB_ARTIFACTS the URL the run was made with? Else re-run it.") from None


def _dtype_of(model: nn.Module) -> torch.dtype:
    floats = [p.dtype for p in model.parameters() if p.dtype.is_floating_point]
    return floats[0] if floats else torch.float32


def load_run_model(path: str | None) -> nn.Module:
    """A run's model from its stored key (or an older run's path). The files are the lab's own, written by
    save_model; user uploads never come through here."""
    if not path:
        raise LabError("This run has no stored model file (it was recorded without weights); re-run it to "
                       "make one.")
    buffer = io.BytesIO(get_bytes(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.endswith(".ts"):
            return torch.jit.load(buffer, map_location="cpu").eval()
        return torch.load(buffer, map_location="cpu", weights_only=False).eval()


def load_state_dict_file(path: str | Path, shown_name: str | None = None) -> dict:
    """Load an untrusted state-dict file safely (weights_only: no pickled code can run). Messages name the
    file as `shown_name` (what the user called it) when the bytes were saved under another name."""
    name = shown_name or Path(path).name
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # corrupt, truncated or hostile file
        raise LabError(f"Could not read weights from {name}: it is not a valid PyTorch state dict.") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LabError(f"{name} is not a state dict of tensors.")
    return state

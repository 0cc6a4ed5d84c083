"""Saving and loading model weights in the artifact store: the lab folder's weights/ by default, or any fsspec URL
(`COMPRESSION_LAB_ARTIFACTS`). A run stores a key (`artifact:NAME`), not a machine's path, so a run made by a worker
on another machine loads here when both share the database and the store; a path stored by an older version (an
absolute file name) still loads from this machine's disk."""
from __future__ import annotations

import io
import uuid
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import LabError
from ..paths import artifacts_url, lab_home
from . import model_file

KEY_PREFIX = "artifact:"
SAFE_SUFFIX = ".clm"  # a safe model file (model_file.py)


def weights_dir() -> Path:
    path = lab_home() / "weights"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_model(model: nn.Module, example: torch.Tensor) -> str:
    """Store the model as a safe model file (model_file.py: tensors plus the lab's description of the architecture,
    so pruned shapes and quantized layers load with no spec and nothing unpickled). A graph (FX static int8, or a
    user's TorchScript upload) is stored as TorchScript, which its own loader reads without Python's pickle, and
    which runs the int8 graph faster than FX's Python does. The file is read back and must give the same outputs
    on `example` before its key is returned; called before the run is stored, so no run lacks weights."""
    with warnings.catch_warnings():  # deprecation notes of torch.jit and storages: not the user's concern
        warnings.simplefilter("ignore")
        if isinstance(model, (torch.jit.ScriptModule, torch.fx.GraphModule)):
            return put_bytes(f"{uuid.uuid4().hex}.ts", _torchscript(model, example))
        try:
            data = model_file.encode(model)
            _check_same_outputs(model, model_file.decode(data), example)
        except model_file.NotDescribable as err:
            raise LabError(f"This model cannot be stored as a safe model file: {err}.") from None
        return put_bytes(f"{uuid.uuid4().hex}{SAFE_SUFFIX}", data)


def _torchscript(model: nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    try:
        if not isinstance(model, torch.jit.ScriptModule):
            with torch.no_grad():
                model = torch.jit.trace(model.eval(), _example_for(model, example))
        torch.jit.save(model, buffer)
    except Exception as err:
        raise LabError(f"Could not save this model ({type(err).__name__}: {str(err).splitlines()[0][:120]})") from None
    return buffer.getvalue()


def _check_same_outputs(model: nn.Module, loaded: nn.Module, example: torch.Tensor) -> None:
    example = _example_for(model, example)
    was_training = model.training
    with torch.no_grad():
        expected, got = _tensors_of(model.eval()(example)), _tensors_of(loaded(example))
    model.train(was_training)
    if len(expected) != len(got) or not all(torch.equal(a, b) for a, b in zip(expected, got)):
        raise LabError("This model does not load back from its model file with the same outputs, so it is not "
                       "stored; please report it.")


def _tensors_of(output) -> list[torch.Tensor]:
    """The tensors in a model's output: a tensor, a tuple, or a Hugging Face output (a dict)."""
    if isinstance(output, torch.Tensor):
        return [output]
    items = output.values() if isinstance(output, dict) else output if isinstance(output, (list, tuple)) else []
    return [t for item in items for t in _tensors_of(item)]


def _store():
    """(filesystem, root) of the artifact store, from its URL (fsspec: a local folder needs nothing more)."""
    import fsspec
    try:
        fs, root = fsspec.core.url_to_fs(artifacts_url())
    except (ImportError, ValueError) as err:
        raise LabError(f"The artifact store {artifacts_url()} cannot be opened: {str(err).splitlines()[0][:160]}") \
            from None
    return fs, root.rstrip("/")


def check_store() -> tuple[object, str]:
    """Open the artifact store, and check that an object store's bucket exists (a worker's first step, so a wrong
    URL, bucket or credential is one sentence at start, not a failure of every job it takes). Returns (fs, root)."""
    fs, root = _store()
    try:
        reachable = "file" in _protocols(fs) or fs.exists(root.split("/")[0])
    except Exception as err:
        raise LabError(f"Could not reach the artifact store {artifacts_url()}: {_first_line(err)}") from None
    if not reachable:
        raise LabError(f"The artifact store {artifacts_url()} has no bucket {root.split('/')[0]}; create it "
                       "first, or check COMPRESSION_LAB_ARTIFACTS.")
    return fs, root


def put_bytes(name: str, data: bytes) -> str:
    """Write one file into the artifact store; returns the key a run keeps. An object store's bucket is never
    made: a typo in its name would scatter the runs."""
    fs, root = check_store()
    try:
        if "file" in _protocols(fs):
            fs.makedirs(root, exist_ok=True)
        fs.pipe_file(f"{root}/{name}", data)
    except Exception as err:  # any store's failure (s3fs: OSError, botocore: BotoCoreError): one sentence
        raise LabError(f"Could not write to the artifact store {artifacts_url()}: {_first_line(err)}") from None
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
    except Exception as err:  # refused (wrong credentials), unreachable: one sentence
        raise LabError(f"Could not read {name} from the artifact store {artifacts_url()}: {_first_line(err)}") \
            from None


def _protocols(fs) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _example_for(model: nn.Module, example: torch.Tensor) -> torch.Tensor:
    """Float inputs in the model's own float dtype (an fp16 model takes fp16); token ids stay integers."""
    if not example.is_floating_point():
        return example
    floats = [p.dtype for p in model.parameters() if p.dtype.is_floating_point]
    return example.to(floats[0] if floats else torch.float32)


def load_run_model(path: str | None) -> nn.Module:
    """A run's model from its stored key (or an older run's path). Nothing from the artifact store is unpickled:
    another machine may have written it. The one exception is a run stored by an older version of the lab on this
    machine, whose key is an absolute path into this machine's own lab folder: that pickled module was written
    by the lab itself, here, and is loaded as it was then."""
    if not path:
        raise LabError("This run has no stored model file (it was recorded without weights); re-run it to "
                       "make one.")
    buffer = io.BytesIO(get_bytes(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.endswith(".ts"):  # TorchScript's own loader builds only TorchScript objects, never Python pickle
            try:
                return torch.jit.load(buffer, map_location="cpu").eval()
            except Exception:
                raise LabError(f"The model file {Path(path).name} is not a readable TorchScript module.") from None
        if path.endswith(SAFE_SUFFIX) or path.startswith(KEY_PREFIX):
            return model_file.decode(buffer.getvalue(), name=f"model file {Path(path).name}")
        if not Path(path).resolve().is_relative_to(weights_dir().resolve()):
            raise LabError(f"The model file {Path(path).name} is outside this lab folder's weights/, so it was not "
                           "written by this lab here; it is not loaded.")
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

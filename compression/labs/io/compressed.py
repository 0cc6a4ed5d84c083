"""Runs stored the Deep Compression way: one file (techniques/codec.py's format) that is the run's size.

The file's JSON header carries what rebuilding needs without pickle: the model spec, the input shape and the
class count (`{"model": "cnn:width=64", "input": [1, 8, 8], "classes": 10, "dataset": "digits"}`); the codec
already records every tensor's name and shape. `load_compressed` builds the spec's model, resizes the layers
that structured pruning narrowed to the stored shapes, and loads the decoded tensors, bit for bit, so the
module answers exactly as the stored run did.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from ...core.models import build_model, format_spec, parse_spec
from ...errors import LabError
from ...store.artifacts import weights_dir
from ...techniques.codec import decode_state_dict, encode_state_dict
from ...tasks import task_of
from ...techniques.quantize import quantized_layers

SUFFIX = ".cldc"
_FP16_MAX = 65504.0


def file_header(spec: dict | str, input_shape, num_classes: int, dataset: str) -> dict:
    """The few keys that rebuild the module (a few dozen bytes: at LeNet-300-100 scale every byte is 0.02x)."""
    return {"model": format_spec(parse_spec(spec)), "input": list(input_shape), "classes": int(num_classes),
            "dataset": dataset}


def round_raw_tensors(model: nn.Module, keep: set[str]) -> nn.Module:
    """Round every float tensor except `keep` (the shared weights) to float16 precision, in place.

    Why: the codec stores a float32 tensor as float16 when that is exact, so rounded biases and BatchNorm
    tensors take half the bytes (~0.8 KB of a 5 KB LeNet-300-100 file). The caller measures accuracy after
    this, so the recorded accuracy is the file's. Tensors beyond float16's range are left as they are.
    """
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name in keep or not tensor.is_floating_point() or tensor.numel() == 0:
                continue
            if tensor.abs().max().item() < _FP16_MAX:
                tensor.copy_(tensor.half().float())
    return model


def encode_model(model: nn.Module, bits: int, header: dict) -> bytes:
    """The compressed file of a float model (fold shared weights first)."""
    if quantized_layers(model) or any(parametrize.is_parametrized(m) for m in model.modules()):
        raise LabError("Only float models with plain weights have a compressed file: int8 models keep packed "
                       "int8 kernels (export them as a module), and shared weights must be folded first.")
    return encode_state_dict(model.state_dict(), bits=bits, header=header)


def save_blob(blob: bytes) -> str:
    """Write a compressed file next to the run weights; returns its path (kept as the run's `compressed_path`)."""
    path = weights_dir() / f"{uuid.uuid4().hex}{SUFFIX}"
    path.write_bytes(blob)
    return str(path)


def compressed_bytes(model: nn.Module, run: dict) -> bytes:
    """The run's compressed file: the stored one (its size is the run's size_bytes), else encoded now."""
    stored = (run.get("extra") or {}).get("compressed_path")
    if stored and Path(stored).exists():
        return Path(stored).read_bytes()
    spec, dataset = run["model"], run["dataset"]
    from ...core.data import load_dataset  # only for runs stored without a file: their input shape
    data = load_dataset(dataset)
    return encode_model(model, 8, file_header(spec, data.input_shape, data.num_classes, dataset))


def run_compressed_bytes(store, run_id: int) -> bytes:
    """A stored run's compressed file (for a download button): the stored file, or its weights encoded now."""
    run = store.get_run(run_id)
    task = task_of(run)
    if not task.compressed_files:
        raise LabError(f"the compressed file (.cldc) holds image models for now; {task.model_noun}'s "
                       f"weights are in its run: python -m compression export {run_id}")
    stored = (run.get("extra") or {}).get("compressed_path")
    if stored and Path(stored).exists():
        return Path(stored).read_bytes()
    from ...store.artifacts import load_run_model
    return compressed_bytes(load_run_model(run["weights_path"]), run)


def _replacement(module: nn.Module, state: dict, name: str) -> nn.Module | None:
    """A layer of the stored shape where structured pruning removed channels, else None."""
    prefix = f"{name}." if name else ""
    weight = state.get(prefix + "weight")
    if isinstance(module, nn.Linear) and weight is not None and weight.shape != module.weight.shape:
        return nn.Linear(weight.shape[1], weight.shape[0], bias=module.bias is not None)
    if isinstance(module, nn.Conv2d) and weight is not None and weight.shape != module.weight.shape:
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        groups = weight.shape[0] if depthwise else module.groups
        return nn.Conv2d(weight.shape[1] * groups, weight.shape[0], module.kernel_size, module.stride,
                         module.padding, module.dilation, groups, module.bias is not None, module.padding_mode)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        stat = state.get(prefix + "running_mean", weight)
        if stat is not None and stat.shape[0] != module.num_features:
            return type(module)(stat.shape[0], module.eps, module.momentum, module.affine,
                                module.track_running_stats)
    return None


def rebuild(spec: dict | str, input_shape, num_classes: int, state: dict) -> nn.Module:
    """The spec's model with each layer resized to the stored shapes, then the stored tensors loaded (strict)."""
    model = build_model(spec, input_shape, num_classes)
    for name, module in list(model.named_modules()):
        new = _replacement(module, state, name)
        if new is not None:
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf, new)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise LabError(f"The stored tensors do not fit {format_spec(parse_spec(spec))}: "
                       f"{str(err).splitlines()[0][:200]}") from None
    return model.eval()


def load_compressed(path: str | Path) -> nn.Module:
    """Rebuild the module a compressed file holds (no pickle: JSON and raw arrays only)."""
    try:
        state, meta = decode_state_dict(Path(path).read_bytes())
    except OSError as err:
        raise LabError(f"Cannot read {path}: {err.strerror or err}") from None
    except ValueError as err:
        raise LabError(f"Cannot load {Path(path).name}: {err}") from None
    if not {"model", "input", "classes"} <= set(meta):
        raise LabError(f"{Path(path).name} holds weights but not the model they belong to (no model spec in "
                       "its header); it was not written by `export --format compressed`.")
    return rebuild(meta["model"], meta["input"], meta["classes"], state)

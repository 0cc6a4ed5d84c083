"""Export a stored run's model. Formats are registered once; the CLI's choices read the registry. Each writes a file
at the given path, except `hf`, which writes a Hugging Face folder there."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ...core.data import load_dataset
from ...core.measure import example_input
from ...errors import LabError
from ...registry import Registry
from ...store import RunStore
from ...store.artifacts import load_run_model
from ...techniques.quantize import quantized_layers
from ...text.families import hf_model

# writer(model, run, path): writes the file
FORMATS: Registry[Callable[[nn.Module, dict, Path], None]] = Registry("export format")


@FORMATS.register("state_dict", about="tensors only (torch.load weights_only=True); pruning masks are folded in")
def _state_dict(model: nn.Module, run: dict, path: Path) -> None:
    torch.save(model.state_dict(), path)


@FORMATS.register("module", about="the whole module: structurally pruned or quantized architectures travel with it")
def _module(model: nn.Module, run: dict, path: Path) -> None:
    if isinstance(model, torch.jit.ScriptModule):
        torch.jit.save(model, str(path))  # FX-quantized graphs are kept as TorchScript
    else:
        torch.save(model, path)


@FORMATS.register("onnx", about="ONNX with a dynamic batch axis, for other runtimes")
def _onnx(model: nn.Module, run: dict, path: Path) -> None:
    example = example_input(model, load_dataset(run["dataset"]).input_shape)
    try:
        torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    except Exception as err:
        path.unlink(missing_ok=True)
        raise LabError(f"This model cannot be exported to ONNX ({type(err).__name__}: "
                       f"{str(err).splitlines()[0][:160]}). Export it as a state dict or module instead.") from None


@FORMATS.register("compressed", about="Deep Compression file: shared codebooks, relative indices, entropy coded; "
                  "compression.load_compressed rebuilds it (a run stored with weight sharing: its size_bytes)")
def _compressed(model: nn.Module, run: dict, path: Path) -> None:
    from .compressed import compressed_bytes
    path.write_bytes(compressed_bytes(model, run))


@FORMATS.register("hf", about="a Hugging Face folder (safetensors, the config as the model now is, the tokenizer) that "
                  "AutoModelForCausalLM.from_pretrained loads: for runs of hf: models, pruned or not (not quantized)")
def _hf(model: nn.Module, run: dict, path: Path) -> None:
    inner = hf_model(model)
    if inner is None:
        raise LabError(f"Run {run['id']} is a {run['model']['name']} model, not a Hugging Face one, so transformers "
                       "cannot load it: export it as state_dict, module or onnx.")
    # torch.ao's packed int8 modules, torchao's int8 tensors and the lab's weight-only layers (bf16 ones too) are
    # this lab's, not a transformers layout
    rows = [row for row in quantized_layers(model)
            if row["dtype"] not in _FLOAT_DTYPES or row["module"].startswith("compression.")]
    if rows:
        raise LabError(f"Run {run['id']} is quantized to {rows[0]['dtype'].removeprefix('q')} ({len(rows)} layers, "
                       f"{rows[0]['layer']} first), which transformers cannot load from a folder: export it as module "
                       "or state_dict.")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise LabError(f"{path} exists and is not an empty folder: give --out a new folder for the Hugging Face "
                       "checkpoint.")
    # safetensors (tied weights written once), and the config as the model now is: a structurally pruned model's
    # config was rewritten with its shapes, so from_pretrained builds the smaller model
    inner.save_pretrained(path)  # transformers 5 writes safetensors only
    tokenizer = getattr(getattr(model, "tokenizer", None), "tokenizer", None)  # HFTokenizer wraps the fast one
    if tokenizer is not None:
        tokenizer.save_pretrained(path)


_FLOAT_DTYPES = ("float32", "float16", "bfloat16")  # a cast model is still a transformers checkpoint


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def export_run(store: RunStore, run_id: int, fmt: str, out: str | Path) -> dict:
    writer = FORMATS.get(fmt)
    run = store.get_run(run_id)
    model = load_run_model(run["weights_path"])
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer(model, run, path)
    return {"run_id": run_id, "format": fmt, "path": str(path), "bytes": _bytes(path)}

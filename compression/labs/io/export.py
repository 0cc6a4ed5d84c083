"""Export a stored run's model. Formats are registered once; the CLI's choices read the registry."""
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


def export_run(store: RunStore, run_id: int, fmt: str, out: str | Path) -> dict:
    writer = FORMATS.get(fmt)
    run = store.get_run(run_id)
    model = load_run_model(run["weights_path"])
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer(model, run, path)
    return {"run_id": run_id, "format": fmt, "path": str(path), "bytes": path.stat().st_size}

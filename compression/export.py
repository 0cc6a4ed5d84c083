"""Export a stored run's model: a state dict (masks folded in), the whole module, or ONNX."""
from __future__ import annotations

from pathlib import Path

import torch

from .artifacts import load_run_model
from .data import load_dataset
from .errors import LabError
from .store import RunStore


def export_run(store: RunStore, run_id: int, fmt: str, out: str) -> dict:
    run = store.get_run(run_id)
    model = load_run_model(run["weights_path"])
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "state_dict":
        torch.save(model.state_dict(), path)  # pruning masks are already folded: zeros in plain weights
    elif fmt == "module":  # structured-pruned or quantized: the architecture travels with the weights
        if isinstance(model, torch.jit.ScriptModule):
            torch.jit.save(model, str(path))  # FX-quantized graphs are kept as TorchScript
        else:
            torch.save(model, path)
    elif fmt == "onnx":
        from .measure import example_input
        example = example_input(model, load_dataset(run["dataset"]).input_shape)
        try:
            torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        except Exception as err:
            path.unlink(missing_ok=True)
            raise LabError(f"This model cannot be exported to ONNX ({type(err).__name__}: "
                           f"{str(err).splitlines()[0][:160]}). Export it as a state dict or module instead.") from None
    else:
        raise LabError(f"Unknown export format '{fmt}'. Known: state_dict, module, onnx")
    return {"run_id": run_id, "format": fmt, "path": str(path), "bytes": path.stat().st_size}

"""Saving and loading model weights under the lab folder."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .errors import LabError
from .paths import lab_home


def weights_dir() -> Path:
    path = lab_home() / "weights"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_run_model(model: nn.Module, run_id: int) -> str:
    """The whole module, so structurally pruned or quantized models load without a spec.

    These files are written by the lab itself; user uploads never go through load_run_model.
    """
    path = weights_dir() / f"run_{run_id}.pt"
    torch.save(model, path)
    return str(path)


def load_run_model(path: str | None) -> nn.Module:
    if not path or not Path(path).exists():
        raise LabError(f"The weights of this run are missing ({path}); re-run it to recreate them.")
    return torch.load(path, map_location="cpu", weights_only=False).eval()


def load_state_dict_file(path: str | Path) -> dict:
    """Load an untrusted state-dict file safely (weights_only: no pickled code can run)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated or hostile file
        raise LabError(f"Could not read weights from {Path(path).name}: not a valid PyTorch state dict "
                       f"({type(err).__name__}).") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LabError(f"{Path(path).name} is not a state dict of tensors.")
    return state

"""Fine-tuning that keeps a pruned model pruned: zeros found in the weights stay zero."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..core.data import Dataset
from ..core.train import TrainConfig, train


def finetune(model: nn.Module, data: Dataset, epochs: int, device="cpu", seed: int = 0, on_epoch=None,
             should_cancel=None, lr: float = 1e-3) -> nn.Module:
    """Fine-tune a copy, holding existing zeros at zero (so unstructured sparsity survives)."""
    tuned = copy.deepcopy(model)
    # layers with more than 1% zeros count as pruned; a dense layer's stray exact zeros are left free
    masks = {m: (m.weight != 0).float() for m in tuned.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear)) and (m.weight == 0).float().mean() > 0.01}

    @torch.no_grad()
    def hold_masks(_model):
        for module, mask in masks.items():
            module.weight.mul_(mask)
    train(tuned, data, TrainConfig(epochs=epochs, lr=lr, seed=seed), device, on_epoch=on_epoch,
          should_cancel=should_cancel, after_step=hold_masks if masks else None)
    return tuned.cpu().eval()

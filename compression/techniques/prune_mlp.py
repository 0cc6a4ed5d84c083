"""Channel pruning of transformer MLPs alone, without tracing the model.

Torch-Pruning cannot trace some attention layers (Swin's shifted windows, MaxViT's block and grid attention), so
channel pruning cannot follow a width through them. An MLP's hidden width, though, is seen by two layers only:
Linear -> activation (-> dropout) -> Linear. Removing the hidden units whose rows in the first layer have the
smallest norm (with their columns in the second) leaves every other width, and the output, as they were. In
these models the MLPs hold about half to two thirds of the weights, so 50% of their hidden units is a quarter to
a third of the model.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LabError

BETWEEN = (nn.GELU, nn.ReLU, nn.SiLU, nn.Tanh, nn.Hardswish, nn.Dropout, nn.Identity)


def mlp_pairs(model: nn.Module, allowed: set[int]) -> list[tuple[nn.Linear, nn.Linear]]:
    """(first, second) Linear of each MLP inside an nn.Sequential, with only activations and dropouts between,
    whose first layer is among `allowed` (ids of the layers the user chose to prune)."""
    pairs = []
    for block in model.modules():
        if not isinstance(block, nn.Sequential):
            continue
        layers = list(block.children())
        for i, first in enumerate(layers):
            if not isinstance(first, nn.Linear) or id(first) not in allowed:
                continue
            j = i + 1
            while j < len(layers) and isinstance(layers[j], BETWEEN):
                j += 1
            if i + 1 < j < len(layers) and isinstance(layers[j], nn.Linear) and \
                    layers[j].in_features == first.out_features:
                pairs.append((first, layers[j]))
    return pairs


class MlpHiddenPruner:
    """Torch-Pruning's pruner interface (`step()`), for MLP hidden units alone: step k of `steps` leaves each MLP
    with (1 - sparsity * k / steps) of its original hidden units, at least one."""

    def __init__(self, model: nn.Module, allowed: list[nn.Module], norm: int, sparsity: float, steps: int = 1,
                 reason: str = "This model's attention cannot be traced"):
        self.pairs = mlp_pairs(model, {id(m) for m in allowed})
        if not self.pairs:
            raise LabError("This model's attention cannot be traced for channel pruning, and it has no MLP "
                           "(Linear, activation, Linear) among the chosen layers whose hidden units could go alone.")
        self.widths = [first.out_features for first, _ in self.pairs]
        self.norm, self.sparsity, self.steps, self.done, self.reason = norm, sparsity, steps, 0, reason

    def step(self) -> None:
        self.done += 1
        ratio = self.sparsity * self.done / self.steps
        for (first, second), width in zip(self.pairs, self.widths):
            keep_n = max(1, int(width * (1 - ratio)))
            if keep_n < first.out_features:
                scores = first.weight.detach().norm(p=self.norm, dim=1)
                keep = scores.topk(keep_n).indices.sort().values  # in their original order
                _keep_outputs(first, keep)
                _keep_inputs(second, keep)

    def note(self) -> str:
        """What was done, for the run's notes: the user asked for channel pruning and got part of it."""
        kept = sum(first.out_features for first, _ in self.pairs) / sum(self.widths)
        return (f"{self.reason}: channel pruning removed MLP hidden units only, in {len(self.pairs)} MLPs (they keep "
                f"{kept:.0%} of them); attention and embedding widths are unchanged")


@torch.no_grad()
def _keep_outputs(layer: nn.Linear, keep: torch.Tensor) -> None:
    layer.weight = nn.Parameter(layer.weight[keep].clone())
    if layer.bias is not None:
        layer.bias = nn.Parameter(layer.bias[keep].clone())
    layer.out_features = len(keep)


@torch.no_grad()
def _keep_inputs(layer: nn.Linear, keep: torch.Tensor) -> None:
    layer.weight = nn.Parameter(layer.weight[:, keep].clone())
    layer.in_features = len(keep)

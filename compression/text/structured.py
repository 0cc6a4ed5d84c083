"""Structured pruning of a `gpt`, for real speed: a smaller dense model, as Minitron prunes (arXiv 2407.14679).

- heads_mlp: in every block, the share of attention heads and of MLP hidden units with the least activation on
  calibration text is removed (q, k, v lose those heads' rows, the output projection their columns; fc1 loses
  rows, fc2 columns). Importance: the mean L2 norm of each head's output, and the mean |activation| of each
  hidden unit after the GELU, over every calibration token (Minitron's activation-based ranking).
- depth: the share of whole blocks that change their input least (1 - cosine similarity of a block's output to
  its input, averaged over tokens: ShortGPT's block influence) is removed.

Both give smaller matrices (or fewer of them), so they run faster on any kernel; both lose perplexity, which a
short fine-tune with the parent as teacher (text.train's distillation loss) wins back.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..errors import LabError
from .models import GPT

STRUCTURED = ("heads_mlp", "depth")


def check_gpt(model: nn.Module) -> None:
    if not isinstance(model, GPT):
        raise LabError("Removing heads, MLP units or layers needs a `gpt` model: its blocks are the lab's own. For "
                       "hf: checkpoints use magnitude, wanda or sparsegpt.")


@torch.no_grad()
def activation_importance(model: GPT, calibration: torch.Tensor) -> dict:
    """Per block: each head's mean output norm, each MLP unit's mean |activation|, and the block's influence
    (1 - mean cosine similarity between its input and its output), over every calibration token."""
    heads = [torch.zeros(b.attn.heads, dtype=torch.float64) for b in model.blocks]
    units = [torch.zeros(b.fc1.out_features, dtype=torch.float64) for b in model.blocks]
    influence = [0.0 for _ in model.blocks]
    hooks = []
    for i, block in enumerate(model.blocks):
        def head_norms(module, args, i=i, block=block):
            x = args[0]  # (B, T, heads * head_dim): the heads' outputs side by side, before the projection
            heads[i] += x.reshape(*x.shape[:2], block.attn.heads, -1).norm(dim=-1).double().sum((0, 1))

        def unit_sizes(module, args, i=i):
            units[i] += args[0].abs().double().sum((0, 1))

        def block_influence(module, args, out, i=i):
            before, after = args[0], out[0]
            influence[i] += float((1 - nn.functional.cosine_similarity(before, after, dim=-1)).double().sum())
        hooks += [block.attn.out.register_forward_pre_hook(head_norms), block.fc2.register_forward_pre_hook(unit_sizes),
                  block.register_forward_hook(block_influence)]
    tokens = calibration_pass(model, calibration, hooks)
    return {"heads": [h / tokens for h in heads], "units": [u / tokens for u in units],
            "influence": [v / tokens for v in influence]}


@torch.no_grad()
def calibration_pass(model: nn.Module, calibration: torch.Tensor, hooks: list) -> int:
    """Run the model over the calibration ids (8 sequences a batch) while `hooks` record what they measure, then
    remove them; the number of tokens seen, to average over."""
    tokens = 0
    try:
        model.eval()
        for ids in calibration.split(8):
            model(ids)
            tokens += ids.numel()
    finally:
        for hook in hooks:
            hook.remove()
    return tokens


def _keep(scores: torch.Tensor, share: float) -> torch.Tensor:
    """Indices of the highest scores after removing `share` of them (at least one kept), in their original order."""
    keep = max(1, len(scores) - int(round(share * len(scores))))
    return torch.sort(torch.topk(scores, keep).indices).values


def _rows(layer: nn.Linear, index: torch.Tensor) -> nn.Linear:
    new = nn.Linear(layer.in_features, len(index), bias=layer.bias is not None)
    new.weight.data = layer.weight.data[index].clone()
    if layer.bias is not None:
        new.bias.data = layer.bias.data[index].clone()
    return new


def _columns(layer: nn.Linear, index: torch.Tensor) -> nn.Linear:
    new = nn.Linear(len(index), layer.out_features, bias=layer.bias is not None)
    new.weight.data = layer.weight.data[:, index].clone()
    if layer.bias is not None:
        new.bias.data = layer.bias.data.clone()
    return new


def prune_heads_mlp(model: nn.Module, calibration: torch.Tensor, share: float) -> tuple[nn.Module, dict]:
    """A copy with `share` of each block's heads and MLP hidden units removed, by activation importance."""
    check_gpt(model)
    if not 0 < share < 1:
        raise LabError(f"The share of heads and MLP units to remove must be in (0, 1), got {share}")
    importance = activation_importance(model, calibration)
    pruned = copy.deepcopy(model).eval()
    report = []
    for block, head_scores, unit_scores in zip(pruned.blocks, importance["heads"], importance["units"]):
        attn = block.attn
        head_dim = attn.q.out_features // attn.heads
        kept_heads = _keep(head_scores, share)
        rows = torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in kept_heads.tolist()])
        attn.q, attn.k, attn.v = (_rows(layer, rows) for layer in (attn.q, attn.k, attn.v))
        attn.out = _columns(attn.out, rows)
        report.append({"heads_before": attn.heads, "heads_after": len(kept_heads),
                       "mlp_before": block.fc1.out_features})
        attn.heads = len(kept_heads)
        kept_units = _keep(unit_scores, share)
        block.fc1, block.fc2 = _rows(block.fc1, kept_units), _columns(block.fc2, kept_units)
        report[-1]["mlp_after"] = len(kept_units)
    return pruned, {"blocks": report, "removed_share": share}


def prune_depth(model: nn.Module, calibration: torch.Tensor, share: float) -> tuple[nn.Module, dict]:
    """A copy without the `share` of blocks that change their input least (at least one block kept)."""
    check_gpt(model)
    if not 0 < share < 1:
        raise LabError(f"The share of layers to remove must be in (0, 1), got {share}")
    influence = torch.tensor(activation_importance(model, calibration)["influence"])
    kept = _keep(influence, share).tolist()
    if len(kept) == len(model.blocks):
        raise LabError(f"Removing {share:.0%} of {len(model.blocks)} layers removes none: raise the share to at "
                       f"least {math.ceil(100 / len(model.blocks))}%.")
    pruned = copy.deepcopy(model).eval()
    pruned.blocks = nn.ModuleList(pruned.blocks[i] for i in kept)
    return pruned, {"kept_layers": kept, "layers_before": len(model.blocks),
                    "influence": [round(v, 5) for v in influence.tolist()], "removed_share": share}


PRUNED_STUDENT = "pruned:"


def parse_pruned_student(text: str) -> tuple[str, float] | None:
    """'pruned:heads_mlp=0.5' -> ("heads_mlp", 0.5): a distillation student cut from its teacher (Minitron); None
    for any other spec. A malformed one is one sentence."""
    if not str(text).startswith(PRUNED_STUDENT):
        return None
    method, _, share = str(text)[len(PRUNED_STUDENT):].partition("=")
    try:
        value = float(share)
    except ValueError:
        value = None
    if method not in STRUCTURED or value is None or not 0 < value < 1:
        raise LabError(f"Write the pruned student as pruned:heads_mlp=0.5 or pruned:depth=0.5 (a share in (0, 1)), "
                       f"not '{text}'.")
    return method, value

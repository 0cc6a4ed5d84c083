"""The fallback for a causal LM whose `model_type` no adapter names (Phi, Falcon, BLOOM, ...): the blocks are found
by their layout, the projections by their type. That is all weight pruning and int8 need; the roles (which
projection is q, which is the MLP's) stay unknown, so structure removal names what is missing instead of guessing.
"""
from __future__ import annotations

from torch import nn

from ...errors import LabError
from .base import Family, is_projection


def _block_lists(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    """Every ModuleList whose entries are all of one class and each hold a projection: a transformer's stack of
    blocks looks like this, and so may a block's list of experts or heads (shorter, or nested inside a block)."""
    found = []
    for path, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) and len({type(b) for b in module}) == 1 and all(
                any(is_projection(m) for m in block.modules()) for block in module):
            found.append((path, module))
    return found


def discover(model: nn.Module, model_type: str) -> Family:
    """A Family for an unknown layout: its blocks are the longest such list (the outermost on a tie, so a block's
    inner list never wins over the stack that holds it)."""
    candidates = _block_lists(model)
    if not candidates:
        raise LabError(f"This {model_type} model has no list of transformer blocks the lab can find (a ModuleList "
                       "of identical blocks holding Linear or Conv1D projections), so its weights cannot be pruned "
                       "or quantized block by block.")
    path, _ = max(candidates, key=lambda item: (len(item[1]), -item[0].count(".")))
    config = getattr(model, "config", None)
    kv = "num_key_value_heads" if getattr(config, "num_key_value_heads", None) else None
    return Family("generic", (model_type,), path, kv_heads_key=kv,
                  head_dim_key="head_dim" if getattr(config, "head_dim", None) else None)

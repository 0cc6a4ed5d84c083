"""Structured pruning of `hf:` checkpoints of every known family (text.families), for real speed, as
structured.py does for the lab's own `gpt` (Minitron's activation ranking, ShortGPT's block influence):

- heads_mlp: in every block the same share of attention heads and MLP channels is removed, so one config
  describes the result. Heads are ranked by the mean L2 norm of their output (the o projection's input) and go in
  whole KV groups under grouped-query attention: a KV head's query heads share its keys and values, so they leave
  with it (their norms summed). q/k/v lose the heads' rows (and biases), o their columns; gate/up lose the
  channels' rows, down their columns (GPT-2's Conv1D stores its weight transposed, in x out).
  Heads are removed only where the config has a `head_dim` field the attention reads (Llama, Qwen2). GPT-2, OPT
  and GPT-NeoX compute a head's width as hidden / heads, so fewer heads of the same width is a model their config
  cannot describe, and `from_pretrained` would build it wrong: there heads_mlp removes MLP channels only, and the
  record says so in its notes.
- depth: the share of whole blocks that change their input least (1 - cosine similarity of a block's output to
  its input, over the calibration tokens) is removed; each kept attention's `layer_idx` is renumbered 0..n-1 (the
  KV cache is indexed by it) and per-layer config lists (Qwen2's `layer_types`) keep the kept layers' entries.

The config is rewritten in place, so `save_pretrained` / `AutoModelForCausalLM.from_pretrained` round-trip the
smaller model with the same logits. A share that would remove every KV group, every channel or every layer is one
sentence (LabError).
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from torch import nn

from ..errors import LabError
from .families import FAMILIES, Family, family_of, hf_model
from .models import GPT
from .structured import calibration_pass, check_gpt, prune_depth, prune_heads_mlp

# the module attributes some attention and MLP classes keep besides the config (rewritten where present)
HEAD_ATTRS, KV_ATTRS, MLP_ATTRS = ("num_heads", "num_attention_heads"), ("num_key_value_heads",), \
    ("intermediate_size",)
HEADS_STAY = ("its attention heads stay: {family}'s config has no head_dim field, its attention takes a head's width "
              "as hidden / heads, so a model with fewer heads of the same width cannot be described by a config "
              "that from_pretrained loads; only MLP channels were removed")
SMALLER = "a smaller dense model: fewer multiply-accumulates, so it runs faster on any kernel"


def check_structured(model: nn.Module) -> None:
    """What heads_mlp and depth need of a parent: the lab's gpt, or an hf: model of a family whose blocks,
    attention and MLP roles are known (the generic fallback finds blocks, not roles). One sentence otherwise."""
    if isinstance(model, GPT):
        return
    family = family_of(model)  # an unknown layout whose blocks cannot be found is its own sentence
    if family is None:
        check_gpt(model)  # neither a gpt nor an hf: checkpoint: the gpt path's sentence
    attention = set(family.attention)
    roles = "o" in attention and ({"q", "k", "v"} <= attention or "qkv" in attention)
    if not roles or not {"up", "down"} <= set(family.mlp) <= {"gate", "up", "down"}:
        raise LabError(f"Removing heads, MLP channels or layers needs a model of a known family "
                       f"({', '.join(FAMILIES.names())}); this checkpoint's model_type is "
                       f"'{hf_model(model).config.model_type}', whose attention and MLP the lab cannot tell apart: "
                       "use magnitude, wanda or sparsegpt.")


def structured_pruner(method: str, model: nn.Module) -> Callable:
    """The function that removes `method`'s structure from this model: structured.py's for a gpt, this module's
    for an hf: checkpoint. Each takes (model, calibration ids, share) and gives (pruned copy, report)."""
    check_structured(model)
    if isinstance(model, GPT):
        return {"heads_mlp": prune_heads_mlp, "depth": prune_depth}[method]
    return {"heads_mlp": prune_hf_heads_mlp, "depth": prune_hf_depth}[method]


# ---------------------------------------------------------------- importance on calibration text

def _blocks(model: nn.Module, family: Family) -> nn.ModuleList:
    return family.block_list(model.model)


def _first(value) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else value[0]


@torch.no_grad()
def hf_importance(model: nn.Module, calibration: torch.Tensor) -> dict:
    """Per block: each query head's mean output norm (at the o projection's input), each MLP channel's mean
    |activation| (at the down projection's input), and the block's influence (1 - mean cosine similarity of its
    output to its input), over every calibration token."""
    family = family_of(model)
    blocks = _blocks(model, family)
    heads, units, influence, hooks = [None] * len(blocks), [None] * len(blocks), [0.0] * len(blocks), []
    head_dim = family.head_dim(model.model.config)

    def add(store: list, i: int, value: torch.Tensor) -> None:
        store[i] = value if store[i] is None else store[i] + value

    for i, block in enumerate(blocks):
        def head_norms(module, args, i=i):
            x = args[0]  # (B, T, heads * head_dim): the heads' outputs side by side, before the o projection
            add(heads, i, x.reshape(-1, x.shape[-1] // head_dim, head_dim).norm(dim=-1).double().sum(0))

        def unit_sizes(module, args, i=i):
            add(units, i, args[0].abs().double().reshape(-1, args[0].shape[-1]).sum(0))

        def block_influence(module, args, kwargs, out, i=i):
            before, after = (args[0] if args else kwargs["hidden_states"]), _first(out)
            influence[i] += float((1 - nn.functional.cosine_similarity(before, after, dim=-1)).double().sum())
        hooks += [block.get_submodule(family.attention["o"]).register_forward_pre_hook(head_norms),
                  block.get_submodule(family.mlp["down"]).register_forward_pre_hook(unit_sizes),
                  block.register_forward_hook(block_influence, with_kwargs=True)]
    tokens = calibration_pass(model, calibration, hooks)
    return {"heads": [h / tokens for h in heads], "units": [u / tokens for u in units],
            "influence": [v / tokens for v in influence]}


# ---------------------------------------------------------------- config fields and shapes

def _mlp_size(config, family: Family) -> int:
    return int(getattr(config, family.mlp_key, None) or 4 * config.hidden_size)  # GPT-2's n_inner=None: 4 x width


def _removed(share: float, total: int) -> int:
    """How many of `total` a share removes, rounded half up (so one KV group at 50% is removed, not kept)."""
    return math.floor(share * total + 0.5)


def _kept(scores: torch.Tensor, removed: int) -> torch.Tensor:
    """Indices of the highest scores after removing `removed` of them, in their original order."""
    return torch.sort(torch.topk(scores, len(scores) - removed).indices).values


def _check_share(share: float, what: str) -> None:
    if not 0 < share < 1:
        raise LabError(f"The share of {what} to remove must be in (0, 1), got {share}")


def _set_weight(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    layer.weight = nn.Parameter(weight.contiguous())
    if bias is not None:
        layer.bias = nn.Parameter(bias.contiguous())
    if isinstance(layer, nn.Linear):
        layer.out_features, layer.in_features = weight.shape
    else:  # transformers' Conv1D: weight (in, out), and nf / nx say its widths
        layer.nx, layer.nf = weight.shape


def _outputs(layer: nn.Module, index: torch.Tensor) -> None:
    """Keep the output features `index` (a Linear's rows, a Conv1D's columns), with their biases."""
    out_dim = 0 if isinstance(layer, nn.Linear) else 1
    bias = layer.bias.detach()[index] if layer.bias is not None else None
    _set_weight(layer, layer.weight.detach().index_select(out_dim, index), bias)


def _inputs(layer: nn.Module, index: torch.Tensor) -> None:
    """Keep the input features `index` (a Linear's columns, a Conv1D's rows); the bias is per output, kept."""
    in_dim = 1 if isinstance(layer, nn.Linear) else 0
    _set_weight(layer, layer.weight.detach().index_select(in_dim, index), None)


def _set_attrs(module: nn.Module, names: tuple[str, ...], value: int) -> None:
    for name in names:
        if isinstance(getattr(module, name, None), int):
            setattr(module, name, value)


def _parent_of(block: nn.Module, path: str) -> nn.Module:
    return block.get_submodule(path.rpartition(".")[0]) if "." in path else block


# ---------------------------------------------------------------- heads and MLP channels

def prune_hf_heads_mlp(model: nn.Module, calibration: torch.Tensor, share: float) -> tuple[nn.Module, dict]:
    """A copy with `share` of each block's KV groups (with their query heads) and MLP channels removed by activation
    importance, its config rewritten; heads stay where the family's config cannot say a head's width."""
    _check_share(share, "heads and MLP channels")
    family, config = family_of(model), model.model.config
    heads, kv_heads, head_dim = family.heads(config), family.kv_heads(config), family.head_dim(config)
    channels = _mlp_size(config, family)
    with_heads = bool(family.head_dim_key) and {"q", "k", "v", "o"} <= set(family.attention)
    groups_out, units_out = _removed(share, kv_heads) if with_heads else 0, _removed(share, channels)
    if groups_out >= kv_heads:
        raise LabError(f"Removing {share:.0%} of the heads removes all {kv_heads} KV group(s) of each layer (under "
                       f"grouped-query attention a KV head's {heads // kv_heads} query head(s) go with it): use a "
                       f"share below {100 * (kv_heads - 0.5) / kv_heads:.0f}%.")
    if units_out >= channels:
        raise LabError(f"Removing {share:.0%} of {channels} MLP channels removes every one: use a smaller share.")
    importance = hf_importance(model, calibration)
    pruned = copy.deepcopy(model).eval()
    per_group = heads // kv_heads
    rows = []
    for block, head_scores, unit_scores in zip(_blocks(pruned, family), importance["heads"], importance["units"]):
        row = {"heads_before": heads, "heads_after": heads, "kv_heads_before": kv_heads, "kv_heads_after": kv_heads,
               "mlp_before": channels}
        if groups_out:
            groups = _kept(head_scores.reshape(kv_heads, per_group).sum(1), groups_out)
            _remove_groups(block, family, groups, per_group, head_dim)
            row.update(heads_after=len(groups) * per_group, kv_heads_after=len(groups))
        kept_units = _kept(unit_scores, units_out)
        _remove_channels(block, family, kept_units)
        rows.append({**row, "mlp_after": len(kept_units)})
    pruned_config = pruned.model.config  # one object shared by every module of the copy
    if groups_out:
        setattr(pruned_config, family.heads_key, rows[0]["heads_after"])
        if family.kv_heads_key:
            setattr(pruned_config, family.kv_heads_key, rows[0]["kv_heads_after"])
        setattr(pruned_config, family.head_dim_key, head_dim)  # explicit: hidden / heads is no longer a head's width
    setattr(pruned_config, family.mlp_key, rows[0]["mlp_after"])
    report = {"blocks": rows, "removed_share": share, "layers": _layer_rows(model, pruned, family)}
    if not with_heads:
        report["notes"] = HEADS_STAY.format(family=family.name)
    elif not groups_out:
        report["notes"] = (f"its attention heads stay: removing {share:.0%} of {kv_heads} KV group(s) rounds to none "
                           "(heads go in whole KV groups); only MLP channels were removed")
    return pruned, report


def _remove_groups(block: nn.Module, family: Family, groups: torch.Tensor, per_group: int, head_dim: int) -> None:
    """Keep the KV heads `groups` and their query heads: q/k/v rows (and biases), o columns, and the attention
    module's own head counts."""
    kv_rows = torch.cat([torch.arange(g * head_dim, (g + 1) * head_dim) for g in groups.tolist()])
    query_heads = [g * per_group + j for g in groups.tolist() for j in range(per_group)]
    q_rows = torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in query_heads])
    projections = family.modules(block, family.attention)
    _outputs(projections["q"], q_rows)
    _outputs(projections["k"], kv_rows)
    _outputs(projections["v"], kv_rows)
    _inputs(projections["o"], q_rows)
    attention = _parent_of(block, family.attention["q"])
    _set_attrs(attention, HEAD_ATTRS, len(query_heads))
    _set_attrs(attention, KV_ATTRS, len(groups))


def _remove_channels(block: nn.Module, family: Family, kept: torch.Tensor) -> None:
    """Keep the MLP channels `kept`: gate/up outputs, down inputs, and the MLP module's own width."""
    projections = family.modules(block, family.mlp)
    for role in ("gate", "up"):
        if role in projections:
            _outputs(projections[role], kept)
    _inputs(projections["down"], kept)
    _set_attrs(_parent_of(block, family.mlp["down"]), MLP_ATTRS, len(kept))


def _layer_rows(before: nn.Module, after: nn.Module, family: Family, kept_blocks: list[int] | None = None) -> list:
    """Each projection of each of the parent's blocks: its weights before and after (0 when its block was
    removed), named as in the parent (a depth-pruned model's blocks are renumbered)."""
    rows = []
    after_blocks = _blocks(after, family)
    for i, block in enumerate(_blocks(before, family)):
        position = i if kept_blocks is None else (kept_blocks.index(i) if i in kept_blocks else None)
        for path in (*family.attention.values(), *family.mlp.values()):
            layer = block.get_submodule(path)
            new = after_blocks[position].get_submodule(path).weight if position is not None else None
            nonzero = int(torch.count_nonzero(new)) if new is not None else 0
            rows.append({"layer": f"model.{family.blocks}.{i}.{path}", "type": type(layer).__name__,
                         "params_before": layer.weight.numel(), "params_after": new.numel() if new is not None else 0,
                         "nonzero_after": nonzero, "sparsity": 1 - nonzero / layer.weight.numel()})
    return rows


# ---------------------------------------------------------------- depth

def prune_hf_depth(model: nn.Module, calibration: torch.Tensor, share: float) -> tuple[nn.Module, dict]:
    """A copy without the `share` of blocks that change their input least, its config and layer indices
    rewritten so that the KV cache and from_pretrained see the kept blocks as layers 0..n-1."""
    _check_share(share, "layers")
    family, config = family_of(model), model.model.config
    blocks = _blocks(model, family)
    removed = _removed(share, len(blocks))
    if removed >= len(blocks):
        raise LabError(f"Removing {share:.0%} of {len(blocks)} layers removes every one: use a share below "
                       f"{100 * (len(blocks) - 0.5) / len(blocks):.0f}%.")
    if not removed:
        raise LabError(f"Removing {share:.0%} of {len(blocks)} layers removes none: raise the share to at least "
                       f"{math.ceil(50 / len(blocks))}%.")
    if getattr(config, "scale_attn_by_inverse_layer_idx", False):
        raise LabError("This GPT-2 scales each attention by 1 / (its layer index + 1) "
                       "(scale_attn_by_inverse_layer_idx), so a block moved to a new index would compute something "
                       "else: depth pruning is refused for it; heads_mlp works.")
    influence = torch.tensor(hf_importance(model, calibration)["influence"])
    kept = _kept(influence, removed).tolist()
    pruned = copy.deepcopy(model).eval()
    holder_path, _, name = family.blocks.rpartition(".")
    holder = pruned.model.get_submodule(holder_path) if holder_path else pruned.model
    setattr(holder, name, nn.ModuleList(_blocks(pruned, family)[i] for i in kept))
    for position, block in enumerate(_blocks(pruned, family)):
        for module in block.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = position  # the KV cache keeps one entry per index: 0..n-1
    _rewrite_layers(pruned.model.config, family, len(blocks), kept)
    return pruned, {"kept_layers": kept, "layers_before": len(blocks), "removed_share": share,
                    "influence": [round(v, 5) for v in influence.tolist()],
                    "layers": _layer_rows(model, pruned, family, kept)}


def _rewrite_layers(config, family: Family, before: int, kept: list[int]) -> None:
    """The layer count, and every per-layer list of the config (e.g. `layer_types`) cut to the kept layers."""
    setattr(config, family.layers_key, len(kept))
    for key, value in list(vars(config).items()):
        if "layer" in key and isinstance(value, (list, tuple)) and len(value) == before:
            setattr(config, key, type(value)(value[i] for i in kept))


# ---------------------------------------------------------------- Minitron's control arm

def reinitialise_hf(model: nn.Module, seed: int) -> nn.Module:
    """A copy of an hf: model with the same shapes and every weight drawn afresh by its own `_init_weights`
    (transformers skips modules and tensors flagged as loaded, so the flags are cleared first)."""
    fresh = copy.deepcopy(model)
    for item in (*fresh.model.modules(), *fresh.model.parameters(), *fresh.model.buffers()):
        if hasattr(item, "_is_hf_initialized"):
            delattr(item, "_is_hf_initialized")
    torch.manual_seed(seed)
    fresh.model.init_weights()
    return fresh

"""What a Hugging Face causal-LM family looks like to the lab: where its blocks are, which modules are its
attention and MLP projections, how many heads and KV heads it has and how wide each is, and how its config is
rewritten when structure is removed (so `save_pretrained` / `from_pretrained` round-trip the smaller model).

One small adapter per family (SliceGPT's pattern, src/slicegpt/adapters/), registered in FAMILIES by the configs'
`model_type`; `family_of(model)` finds it, and a generic fallback discovers the blocks of other layouts (weight
pruning and int8 then work; structure removal names what it is missing, in one sentence).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ...errors import LabError


def is_conv1d(module: nn.Module) -> bool:
    """transformers' Conv1D (GPT-2's projections: a linear layer whose weight is stored in x out). Told by its class,
    not imported: importing transformers costs seconds, and a model that holds one has imported it already."""
    return type(module).__name__ == "Conv1D" and type(module).__module__.startswith("transformers.")


def is_projection(module: nn.Module) -> bool:
    """A linear map with one weight matrix: nn.Linear, or GPT-2's Conv1D."""
    return isinstance(module, nn.Linear) or is_conv1d(module)


def out_in_weight(module: nn.Module) -> torch.Tensor:
    """The projection's weight as (out, in), as nn.Linear keeps it: a Conv1D's transposed (a view, not a copy).
    Per-row and N:M-along-inputs pruning read and write this view (as SparseGPT and llm-compressor do)."""
    return module.weight.T if is_conv1d(module) else module.weight


def in_features(module: nn.Module) -> int:
    return int(out_in_weight(module).shape[1])


@dataclass(frozen=True)
class Family:
    """Paths are dotted attribute paths: `blocks` from the transformers model (e.g. `model.layers`), the
    projections from one block (e.g. `self_attn.q_proj`). A fused projection is named once under `qkv`
    (GPT-2's `attn.c_attn`, GPT-NeoX's `attention.query_key_value`) or `gate_up`."""
    name: str                                   # "llama", "qwen2", "gpt_neox", "opt", "gpt2", or "generic"
    model_types: tuple[str, ...]                # transformers config.model_type values it adapts
    blocks: str                                 # "model.layers", "transformer.h", "gpt_neox.layers", ...
    attention: dict[str, str] = field(default_factory=dict)   # {"q","k","v","o"} or {"qkv","o"} -> path
    mlp: dict[str, str] = field(default_factory=dict)         # {"up","gate","down"}, {"up","down"} or {"gate_up","down"}
    heads_key: str = "num_attention_heads"      # the config's fields it rewrites
    kv_heads_key: str | None = None             # None: every head has its own K and V (no GQA)
    layers_key: str = "num_hidden_layers"
    mlp_key: str = "intermediate_size"          # None-valued in some configs (GPT-2's n_inner): then 4 x width
    head_dim_key: str | None = None             # a config field that unties a head's width from hidden / heads;
                                                # None: removing heads is impossible to express in its config
    qkv_layout: str | None = None               # for a fused qkv: "blocks" ([q; k; v], GPT-2) or "per_head"
                                                # ([q_h, k_h, v_h] per head, GPT-NeoX)

    def modules(self, block: nn.Module, paths: dict[str, str]) -> dict[str, nn.Module]:
        return {role: block.get_submodule(path) for role, path in paths.items()}

    def block_list(self, model: nn.Module) -> nn.ModuleList:
        """The transformers model's blocks (`model` is the transformers model, not the lab's wrapper)."""
        try:
            found = model.get_submodule(self.blocks)
        except AttributeError:
            found = None
        if not isinstance(found, nn.ModuleList) or not len(found):
            raise LabError(f"This {self.name} model has no blocks at `{self.blocks}`, where its family keeps them: "
                           "the checkpoint does not match its config's model_type.")
        return found

    def roles(self, block: nn.Module) -> dict[str, nn.Module]:
        """The attention and MLP projections the family names, by role ("q", "k", "v", "o", "qkv", "up", "gate",
        "down", "gate_up"); empty for the generic fallback."""
        return self.modules(block, {**self.attention, **self.mlp})

    def projections(self, block: nn.Module) -> dict[str, nn.Module]:
        """Every Linear or Conv1D in the block: by role where the family names it, else by its dotted path."""
        named = self.roles(block)
        seen = {id(m) for m in named.values()}
        return {**named, **{path: m for path, m in block.named_modules()
                            if is_projection(m) and id(m) not in seen}}

    def heads(self, config) -> int:
        return int(getattr(config, self.heads_key))

    def kv_heads(self, config) -> int:
        """Heads with their own K and V: fewer than heads under grouped-query attention."""
        value = getattr(config, self.kv_heads_key, None) if self.kv_heads_key else None
        return int(value) if value else self.heads(config)

    def head_dim(self, config) -> int:
        """One head's width: the config's head_dim where the family has one (it need not be hidden / heads)."""
        value = getattr(config, self.head_dim_key, None) if self.head_dim_key else None
        return int(value) if value else int(config.hidden_size) // self.heads(config)

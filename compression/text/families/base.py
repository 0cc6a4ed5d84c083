"""What a Hugging Face causal-LM family looks like to the lab: where its blocks are, which modules are its
attention and MLP projections, how many heads and KV heads it has and how wide each is, and how its config is
rewritten when structure is removed (so `save_pretrained` / `from_pretrained` round-trip the smaller model).

One small adapter per family (SliceGPT's pattern, src/slicegpt/adapters/), registered in FAMILIES by the configs'
`model_type`; `family_of(model)` finds it, and a generic fallback discovers the blocks of other layouts (weight
pruning and int8 then work; structure removal names what it is missing, in one sentence).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn


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

"""The Hugging Face causal-LM families the lab adapts (base.Family), registered by the config's `model_type`.

`family_of(model)` takes the lab's HFCausalLM (or a transformers model) and gives its adapter: one of FAMILIES,
or the generic fallback, which finds the blocks by their layout and the projections by type (weight pruning and
int8 need no more), and names what it is missing when a method needs the roles (structure removal).
"""
from __future__ import annotations

from ...registry import Registry
from .base import Family

FAMILIES: Registry[Family] = Registry("model family")


def register_family(family: Family) -> Family:
    FAMILIES.register(family.name, family, about=", ".join(family.model_types))
    return family


# Llama and the layouts that copy it (SmolLM2, TinyLlama, Mistral): separate q/k/v/o, gated MLP, grouped-query
# attention, and a head_dim field that unties a head's width from hidden / heads
LLAMA = register_family(Family(
    "llama", ("llama", "mistral"), "model.layers",
    attention={"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj"},
    mlp={"gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"},
    kv_heads_key="num_key_value_heads", head_dim_key="head_dim"))

# Qwen2: Llama's layout with biases on q, k and v
QWEN2 = register_family(Family(
    "qwen2", ("qwen2",), "model.layers",
    attention={"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj"},
    mlp={"gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"},
    kv_heads_key="num_key_value_heads", head_dim_key="head_dim"))

# GPT-NeoX (Pythia): one fused query_key_value laid out head by head, [q_h, k_h, v_h]
GPT_NEOX = register_family(Family(
    "gpt_neox", ("gpt_neox",), "gpt_neox.layers",
    attention={"qkv": "attention.query_key_value", "o": "attention.dense"},
    mlp={"up": "mlp.dense_h_to_4h", "down": "mlp.dense_4h_to_h"}, qkv_layout="per_head"))

# OPT, the SparseGPT paper's own family: separate q/k/v/out, fc1/fc2, a head's width is hidden / heads
OPT = register_family(Family(
    "opt", ("opt",), "model.decoder.layers",
    attention={"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.out_proj"},
    mlp={"up": "fc1", "down": "fc2"}, mlp_key="ffn_dim"))

# GPT-2 (and distilgpt2): Conv1D projections (weight stored in x out), one fused c_attn laid out [q; k; v]
GPT2 = register_family(Family(
    "gpt2", ("gpt2",), "transformer.h",
    attention={"qkv": "attn.c_attn", "o": "attn.c_proj"}, mlp={"up": "mlp.c_fc", "down": "mlp.c_proj"},
    heads_key="n_head", layers_key="n_layer", mlp_key="n_inner", qkv_layout="blocks"))

__all__ = ["FAMILIES", "Family", "register_family", "LLAMA", "QWEN2", "GPT_NEOX", "OPT", "GPT2"]

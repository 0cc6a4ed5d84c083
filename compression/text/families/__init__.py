"""The Hugging Face causal-LM families the lab adapts (base.Family), registered by the config's `model_type`.

`family_of(model)` takes the lab's HFCausalLM (or a transformers model) and gives its adapter: one of FAMILIES,
or the generic fallback, which finds the blocks by their layout and the projections by type (weight pruning and
int8 need no more), and names what it is missing when a method needs the roles (structure removal).
"""
from __future__ import annotations

from torch import nn

from ...errors import LabError
from ...registry import Registry
from .base import Family, in_features, is_conv1d, is_projection, out_in_weight
from .generic import discover

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



# ---------------------------------------------------------------- finding a model's family

def _has_hf_config(model) -> bool:
    return isinstance(getattr(getattr(model, "config", None), "model_type", None), str)


def hf_model(model: nn.Module) -> nn.Module | None:
    """The transformers model: the lab's HFCausalLM holds it as `.model`; a transformers model is itself. None for a
    model with no Hugging Face config (the lab's own `gpt`, which keeps its own path)."""
    if _has_hf_config(model):
        return model
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, nn.Module) and _has_hf_config(inner) else None


def family_for_type(model_type: str) -> Family | None:
    return next((f for f in FAMILIES.values() if model_type in f.model_types), None)


def family_of(model: nn.Module) -> Family | None:
    """The adapter of an HFCausalLM or a transformers model, by its config's model_type; an unknown type gets the
    generic fallback (its blocks found by layout), or a LabError naming what cannot be found. None for a model that
    is not a Hugging Face one (gpt)."""
    inner = hf_model(model)
    if inner is None:
        return None
    model_type = inner.config.model_type
    return family_for_type(model_type) or discover(inner, model_type)


def blocks(model: nn.Module) -> nn.ModuleList:
    """A Hugging Face model's transformer blocks, where its family keeps them."""
    family = family_of(model)
    if family is None:
        raise LabError(f"A {type(model).__name__} is not a Hugging Face model: its blocks are its own (gpt's "
                       "`blocks`), not a family's.")
    return family.block_list(hf_model(model))


def projections(block: nn.Module, family: Family | None = None) -> dict[str, nn.Module]:
    """Every Linear or Conv1D in a block: by role where the family names them, else by dotted path (no family: the
    generic fallback's view, by path only)."""
    return (family or Family("generic", (), "")).projections(block)


def _config_family(config) -> Family:
    """The family whose config keys describe this config; an unknown model_type reads the common keys."""
    return family_for_type(getattr(config, "model_type", "")) or Family(
        "generic", (), "", kv_heads_key="num_key_value_heads", head_dim_key="head_dim")


def heads(config) -> int:
    return _config_family(config).heads(config)


def kv_heads(config) -> int:
    return _config_family(config).kv_heads(config)


def head_dim(config) -> int:
    return _config_family(config).head_dim(config)


__all__ = ["FAMILIES", "Family", "register_family", "LLAMA", "QWEN2", "GPT_NEOX", "OPT", "GPT2", "family_of",
           "family_for_type", "hf_model", "blocks", "projections", "heads", "kv_heads", "head_dim", "is_conv1d",
           "is_projection", "out_in_weight", "in_features"]

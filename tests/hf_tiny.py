"""Tiny Hugging Face causal LMs of the five families the lab adapts (compression.text.families), built from configs
and saved with save_pretrained (safetensors) beside ONE byte-level BPE tokenizer trained on pydoc once per test
process. Nothing is downloaded.

Each is a few thousand parameters (hidden 32, 2 layers, 4 heads) yet keeps what makes its family its own:
- llama: grouped-query attention (2 KV heads for 4 query heads), a gated MLP, tied embeddings (SmolLM2);
- qwen2: biases on q, k and v, grouped-query attention;
- gpt_neox: Pythia's fused query_key_value laid out head by head, partial rotary, parallel residual;
- opt: separate q/k/v/out_proj and fc1/fc2, learned positions;
- gpt2: Conv1D projections (weights stored in x out), one fused c_attn, n_inner unset (4 x width), tied embeddings.
Every projection's input width is a multiple of 4, so a 2:4 pattern fits.

Use from a test module: `from hf_tiny import hf_family_folders` (a session fixture: name -> folder), or
`build_family(name, root)` for a folder of one's own.
"""
from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

FAMILY_NAMES = ("llama", "qwen2", "gpt_neox", "opt", "gpt2")
HIDDEN, LAYERS, HEADS, POSITIONS = 32, 2, 4, 64


@functools.lru_cache(maxsize=None)
def bpe_tokenizer(vocab: int = 300):
    """A byte-level BPE of `vocab` tokens trained on the start of pydoc (once per process: about a second)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from compression import load_dataset
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<eos>"])
    tokenizer.train_from_iterator([load_dataset("pydoc").train_text[:60_000]], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>")


def family_config(name: str, vocab: int):
    """The tiny config of one family (transformers' own config class, so from_pretrained reads it back)."""
    import transformers as tf
    if name == "llama":
        return tf.LlamaConfig(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS,
                              num_attention_heads=HEADS, num_key_value_heads=2, max_position_embeddings=POSITIONS,
                              tie_word_embeddings=True)
    if name == "qwen2":  # q/k/v biases are Qwen2's own (the config has no switch for them)
        return tf.Qwen2Config(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS,
                              num_attention_heads=HEADS, num_key_value_heads=2, max_position_embeddings=POSITIONS,
                              tie_word_embeddings=False)
    if name == "gpt_neox":
        return tf.GPTNeoXConfig(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=64,
                                num_hidden_layers=LAYERS, num_attention_heads=HEADS, rotary_pct=0.25,
                                max_position_embeddings=POSITIONS, use_parallel_residual=True,
                                tie_word_embeddings=False)
    if name == "opt":
        return tf.OPTConfig(vocab_size=vocab, hidden_size=HIDDEN, ffn_dim=64, num_hidden_layers=LAYERS,
                            num_attention_heads=HEADS, max_position_embeddings=POSITIONS, word_embed_proj_dim=HIDDEN,
                            pad_token_id=0, bos_token_id=0, eos_token_id=0)
    if name == "gpt2":
        return tf.GPT2Config(vocab_size=vocab, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=POSITIONS,
                             tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)  # 50256 is past this vocab
    raise ValueError(f"unknown family {name!r}: one of {', '.join(FAMILY_NAMES)}")


def build_model(name: str, seed: int = 0):
    """A freshly initialised tiny model of the family (seeded), in eval mode."""
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(family_config(name, len(bpe_tokenizer()))).eval()


def build_family(name: str, root: Path) -> Path:
    """root/name: the family's tiny model and the shared tokenizer, saved as a Hugging Face folder (config.json,
    model.safetensors, tokenizer files). An existing folder is reused."""
    folder = Path(root) / name
    if not (folder / "config.json").exists():
        build_model(name).save_pretrained(folder)  # safetensors: transformers 5 writes no other format
        bpe_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hf_family_folders(tmp_path_factory) -> dict[str, Path]:
    """name -> folder, for the five families, built once per test process."""
    root = tmp_path_factory.mktemp("hf_families")
    return {name: build_family(name, root) for name in FAMILY_NAMES}

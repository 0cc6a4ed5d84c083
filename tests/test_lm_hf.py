"""Your own Hugging Face checkpoint (`hf:PATH`): tiny Llama and GPT-2 models built from configs, with a BPE
tokenizer trained here on pydoc, saved with save_pretrained, loaded through transformers' own offline loaders,
trained and measured by the lab. And the folders it refuses: missing, and pickle-only (.bin) weights."""
import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from compression import BaselineConfig, get_baseline, load_dataset
from compression.cli import main
from compression.text.generate import generate
from conftest import quick_ctx
from hf_tiny import bpe_tokenizer

TINY_GPT = "gpt:layers=1,width=32,heads=2,context=32"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    tokenizer = bpe_tokenizer()
    torch.manual_seed(0)
    made = {
        "llama": LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                              num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                              max_position_embeddings=64)),
        "gpt2": GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2,
                                           n_positions=64)),
    }
    for name, model in made.items():
        model.save_pretrained(root / name)  # safetensors, as transformers writes by default
        tokenizer.save_pretrained(root / name)
    pickled = root / "pickled"  # the old format: a pickled state dict (transformers 5 no longer writes one)
    made["gpt2"].config.save_pretrained(pickled)
    torch.save(made["gpt2"].state_dict(), pickled / "pytorch_model.bin")
    return root


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_a_tiny_checkpoint_trains_and_is_measured_through_hf_path(lab_home, checkpoints, name):
    model, run = get_baseline(BaselineConfig(dataset="pydoc", model=f"hf:{checkpoints / name}", train_steps=8,
                                             batch_size=4, context=32), quick_ctx())
    rec = run["record"]
    assert run["model"] == {"name": "hf", "args": {"path": str(checkpoints / name)}}
    assert rec["tokenizer"] == f"hf:{checkpoints / name}" and rec["context"] == 32
    history = run["extra"]["history"]
    assert history and history[-1]["val_loss"] < history[0]["val_loss"] + 0.5  # it trained without diverging
    # bits per byte use the bytes its BPE tokens stand for: fewer bits per byte than per token
    assert rec["bits_per_byte"] < math.log2(rec["perplexity"])
    assert {e["phase"] for e in rec["latency"]} == {"prefill", "decode"}
    assert rec["params"] == sum(p.numel() for p in model.parameters())
    text = generate(model, "The for statement", 5)
    assert isinstance(text, str) and text == generate(model, "The for statement", 5)


def test_missing_and_pickle_only_checkpoints_are_refused_in_one_line(lab_home, checkpoints, capsys):
    cases = {checkpoints / "nowhere": "No Hugging Face model folder at",
             checkpoints / "pickled": "has only .bin weights, which are pickles"}
    for path, message in cases.items():
        capsys.readouterr()
        code = main(["train", "--dataset", "pydoc", "--model", f"hf:{path}", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_a_tiny_llama_is_pruned_and_quantized_and_what_it_cannot_do_is_one_sentence_each(lab_home, checkpoints):
    from compression import LabError
    from compression.labs.configs import DistillLabConfig, PruneLabConfig, QuantizeLabConfig
    from compression.labs.distill import run_distill
    from compression.labs.prune import run_prune
    from compression.labs.quantize import run_quantize
    from compression.text.prune import LMPruneConfig, prune_language_model
    model, llama = get_baseline(BaselineConfig(dataset="pydoc", model=f"hf:{checkpoints / 'llama'}", train_steps=4,
                                               batch_size=4, context=32), quick_ctx())
    # the lab's whole path once (calibrate, prune, measure, time with the parent, store) ...
    row = run_prune(PruneLabConfig(from_run=llama["id"], method="sparsegpt", pattern="2:4", calibration=4),
                    quick_ctx())["results"][0]
    assert row["perplexity"] > 0 and row["parent_id"] == llama["id"]
    layers = {"sparsegpt": row["layers"]}
    # ... and the other two methods on the same model (the lab around them is the same)
    calibration = load_dataset("pydoc").windows(model.tokenizer, "train", 32, limit=4)[0]
    for method in ("magnitude", "wanda"):
        layers[method] = prune_language_model(model, calibration, LMPruneConfig(method, pattern="2:4"))[1]["layers"]
    for method, rows in layers.items():
        # q, k, v, o and the gate, up and down projections of its one layer: each exactly 2 of every 4 kept
        assert len(rows) == 7 and all(r["sparsity"] == 0.5 for r in rows), (method, rows)
    # heads, MLP channels and layers of hf: models: tests/test_hf_structured.py
    from compression.text.models import load_hf
    from compression.text.prune import transformer_blocks
    gpt2 = load_hf(str(checkpoints / "gpt2"))  # what the lab checks before measuring: GPT-2's Conv1D blocks are found
    assert transformer_blocks(gpt2) is gpt2.model.transformer.h
    # int8 of its Linear layers; and what needs a gpt (distillation's students, the plan) or one tokenizer
    int8 = run_quantize(QuantizeLabConfig(from_run=llama["id"], methods=["dynamic_int8"]), quick_ctx())["results"][0]
    assert int8["parent_id"] == llama["id"] and int8["perplexity"] > 0 and int8["size_bytes"] < llama["record"]["size_bytes"]
    refusals = [  # (what was asked, the words that name what it cannot handle)
        (lambda: run_distill(DistillLabConfig(dataset="pydoc", teacher=str(llama["id"]), student=TINY_GPT,
                                              temperatures=[2.0], student_steps=2), quick_ctx()), "one tokenizer"),
        (lambda: run_distill(DistillLabConfig(dataset="pydoc", teacher=str(llama["id"]), student="pruned:depth=0.5",
                                              temperatures=[2.0], student_steps=2), quick_ctx()),
         "1 layers removes every one")]  # its one layer (plan --model hf: is tests/test_lm_plan.py's)
    for ask, words in refusals:
        with pytest.raises(LabError, match=words):
            ask()

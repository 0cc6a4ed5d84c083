"""Structured pruning of your own Hugging Face checkpoint, for real speed (issue 32). One JSON line.

A Llama-layout model (hidden 256, 4 layers, 8 heads in 4 KV groups, intermediate 688, a 1024-token byte-level BPE
trained here on pydoc; built from a config and saved with save_pretrained, nothing downloaded) is trained briefly
on pydoc through `hf:PATH` (120 steps of 16 x 128 tokens: the speed is the point), then pruned through the prune
lab, each child fine-tuned 30 steps with the parent as teacher (Minitron):

- heads_mlp 50%: 2 of 4 KV groups (with their 4 query heads) and 344 of 688 MLP channels in every block;
- depth 50%: the 2 blocks of 4 that change their input least (ShortGPT's block influence).

Each child is timed with its parent by the prune lab (interleaved, in one process: the record's figure) and
re-timed with the `speedup` verb's function (labs.speed.retime: fresh processes, pooled, a CI to quote) at prefill
(the record's batch x 128 tokens) and at decode (cached steps at batch 1). Goals: heads_mlp >= 1.3x at prefill,
depth >= 1.5x at decode (whether the lower end of the re-timed CI clears the floor too is reported beside it).

Measured on 2 CPU cores (torch 2.14, transformers 5.23), `.venv/bin/python benchmarks/hf_structured.py`, about 4
minutes on a quiet machine: heads_mlp prefill 1.69x (re-timed CI 1.60-1.78), decode 1.13x; depth decode 1.67x
(CI 1.58-1.77), prefill 1.84x; parameters 0.54x each; perplexity 235.6 -> 242.8 (heads_mlp) and 214.7 (depth: the short fine-tune also
trains the briefly trained parent's survivors further).
"""
import tempfile
import time
from pathlib import Path

from _common import emit

from compression import BaselineConfig, RunContext, get_baseline, load_dataset
from compression.labs.configs import PruneLabConfig, RetimeConfig
from compression.labs.prune import run_prune
from compression.labs.speed import retime

SHAPE = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
             intermediate_size=688, max_position_embeddings=256)
VOCAB, TRAIN_STEPS, BATCH, FINETUNE_STEPS = 1024, 120, 16, 30  # brief: speed is the point, and 2 cores train slowly
GOALS = {"heads_mlp": ("prefill", 1.3), "depth": ("decode", 1.5)}


def llama_folder(root: Path) -> Path:
    """A Llama-layout checkpoint with its own tokenizer, as a user would bring it (save_pretrained: safetensors)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator([load_dataset("pydoc").train_text], trainers.BpeTrainer(
        vocab_size=VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<eos>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>")
    torch.manual_seed(0)
    folder = root / "llama"
    LlamaForCausalLM(LlamaConfig(vocab_size=len(fast), tie_word_embeddings=True, **SHAPE)).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def structured(parent: dict, method: str) -> dict:
    ctx = RunContext()
    began = time.perf_counter()
    row = run_prune(PruneLabConfig(from_run=parent["id"], method=method, sparsities=[0.5],
                                   finetune_steps=FINETUNE_STEPS, distill=True), ctx)["results"][0]
    out = {"params_ratio": round(row["params"] / parent["record"]["params"], 3),
           "perplexity": round(row["perplexity"], 3),
           "perplexity_increase": round(row["perplexity"] / parent["record"]["perplexity"] - 1, 4),
           "prune_finetune_measure_s": round(time.perf_counter() - began, 1),
           "kept_layers": row.get("kept_layers"), "blocks": (row.get("blocks") or [None])[0]}
    batches = {e["phase"]: e["batch_size"] for e in parent["record"]["latency"]}
    for phase in ("prefill", "decode"):
        key = f"speedup_cpu_b{batches[phase]}"  # the prune lab's paired figure (record_fields), in one process
        timing = retime(ctx.store, RetimeConfig(run_a=parent["id"], run_b=row["run_id"], phase=phase))
        out[phase] = {"lab_paired": round(row[key], 3), "lab_ci95": [round(v, 3) for v in row[f"{key}_ci95"]],
                      "retimed": round(timing["speedup"], 3), "ci95": [round(v, 3) for v in timing["ci95"]],
                      "noisy": timing["noisy"], "batch": timing["batch_size"]}
    phase, floor = GOALS[method]
    out["goal"] = {"phase": phase, "at_least": floor, "met": out[phase]["retimed"] >= floor,
                   "ci_low_met": out[phase]["ci95"][0] >= floor}
    return out


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="hf-structured-"))
    began = time.perf_counter()
    folder = llama_folder(root)
    _, parent = get_baseline(BaselineConfig(dataset="pydoc", model=f"hf:{folder}", train_steps=TRAIN_STEPS,
                                            batch_size=BATCH, seed=0), RunContext())
    trained_s = round(time.perf_counter() - began, 1)
    results = {method: structured(parent, method) for method in GOALS}
    emit({"benchmark": "hf_structured", "model": "llama layout (hidden 256, 4 layers, 8 heads / 4 KV heads, "
          f"intermediate 688, vocab {VOCAB}, tied embeddings)", "dataset": "pydoc",
          "context": parent["record"]["context"], "params": parent["record"]["params"],
          "train_steps": TRAIN_STEPS, "finetune_steps": FINETUNE_STEPS, "baseline_s": trained_s,
          "perplexity": round(parent["record"]["perplexity"], 3), **results,
          "goals_met": {f"{m}_{GOALS[m][0]}_ge_{GOALS[m][1]}x": results[m]["goal"]["met"] for m in GOALS}})


if __name__ == "__main__":
    main()

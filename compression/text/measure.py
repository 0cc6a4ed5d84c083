"""The record of a language-model run: named once here, read by the CLI's JSON, the store and the pages.

- perplexity on the fixed test sequences, with a 95% bootstrap CI over sequences (fixed seed);
- bits per byte: the same loss per UTF-8 byte of text, comparable across tokenizers (perplexity is not);
- next-token accuracy with a Wilson CI (tokens of one text are not independent: read it as a lower bound on
  the uncertainty);
- parameters, non-zero parameters, file size and MACs per token;
- latency with the lab's timing machinery (core.timing): prefill of one batch of B x T tokens, and decode
  tokens per second at batch 1 with a key-value cache.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.measure import count_params, quiet_wait_s, serialized_size, wilson_interval
from ..core.timing import latency_entry, wait_for_quiet
from .corpus import TextDataset
from .floor import floor_fields

BOOTSTRAP_DRAWS = 1000
DECODE_TOKENS = 32
PREFILL_BATCH = 8
LM_FIELDS = ("perplexity", "perplexity_ci95", "bits_per_byte", "next_token_accuracy", "next_token_accuracy_ci",
             "macs_per_token")


class DecodeLoop(nn.Module):
    """`tokens` greedy decode steps with a key-value cache, from a one-token prompt: what decode latency times.
    A module, so the paired timing (and its fresh timing processes) treat it like any model."""

    def __init__(self, model: nn.Module, tokens: int):
        super().__init__()
        self.model, self.tokens = model, tokens

    def forward(self, prompt: torch.Tensor) -> torch.Tensor:
        logits, cache = self.model.decode_step(prompt)
        for _ in range(self.tokens - 1):
            logits, cache = self.model.decode_step(logits[:, -1:].argmax(-1), cache)
        return logits


@torch.no_grad()
def sequence_losses(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch: int = 16):
    """Per sequence: (sum of token NLL in nats, tokens right)."""
    model.eval()
    nll, right = [], []
    for i in range(0, len(inputs), batch):
        logits = model(inputs[i:i + batch]).float()
        loss = F.cross_entropy(logits.transpose(1, 2), targets[i:i + batch], reduction="none")
        nll += loss.sum(1).tolist()
        right += (logits.argmax(-1) == targets[i:i + batch]).sum(1).tolist()
    return nll, right


def perplexity_ci(nll: list[float], tokens_per_sequence: int, seed: int = 0) -> tuple[float, float]:
    sums = torch.tensor(nll, dtype=torch.float64)
    pick = torch.randint(0, len(sums), (BOOTSTRAP_DRAWS, len(sums)), generator=torch.Generator().manual_seed(seed))
    draws = torch.exp(sums[pick].mean(1) / tokens_per_sequence)
    lo, hi = torch.quantile(draws, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return lo, hi


def macs_per_token(model: nn.Module, context: int) -> int:
    """Multiply-accumulates per token over a full context (attention's grow with position; this is their mean)."""
    from torch.utils.flop_counter import FlopCounterMode  # imports triton (~0.5 s): only where MACs are counted
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            model.eval()(torch.zeros(1, context, dtype=torch.long))
    except Exception:
        return 0
    return int(counter.get_total_flops() // 2 // context)


def measure_lm(model: nn.Module, data: TextDataset, context: int, *, latency_batch: int = PREFILL_BATCH,
               min_run_time: float = 0.3) -> dict:
    tokenizer = model.tokenizer
    inputs, targets = data.windows(tokenizer, "test", context)
    wait_for_quiet(quiet_wait_s())
    nll, right = sequence_losses(model, inputs, targets)
    tokens = targets.numel()
    total_nll = sum(nll)
    byte_count = sum(tokenizer.byte_count(row.tolist()) for row in targets)
    correct = int(sum(right))
    params, nonzero = count_params(model)
    size, gz = serialized_size(model)
    lo, hi = perplexity_ci(nll, targets.shape[1])
    accuracy_ci = list(wilson_interval(correct, tokens))
    macs = macs_per_token(model, context)  # one counted forward over a full context; both fields are this figure
    return {"task": "text", "perplexity": math.exp(total_nll / tokens), "perplexity_ci95": [lo, hi],
            "bits_per_byte": total_nll / math.log(2) / byte_count, "next_token_accuracy": correct / tokens,
            "next_token_accuracy_ci": accuracy_ci,
            # the image runs' fields, so tables that list any run still read: accuracy is next-token accuracy
            "accuracy": correct / tokens, "accuracy_ci": accuracy_ci, "correct": correct, "n_test": tokens,
            "n_test_sequences": len(inputs), "context": context,
            # each test window's summed NLL (nats): two runs on the same windows are compared window by window
            # (text/paired_quality.py), which settles differences that two overlapping CIs cannot
            "window_nll": [round(v, 4) for v in nll], "tokenizer": tokenizer.name,
            "corpus": data.fingerprint, "params": params, "nonzero_params": nonzero,
            "sparsity": 1 - nonzero / params if params else 0.0, "size_bytes": size, "gzip_bytes": gz,
            "macs_per_token": macs, "macs": macs,
            "latency": lm_latency(model, context, latency_batch, min_run_time)}


PHASES = ("prefill", "decode")


def phase_workload(model: nn.Module, phase: str, context: int, batch: int = PREFILL_BATCH):
    """(module, input, tokens) that one call of `phase` times: prefill runs the model once on batch x context
    tokens; decode runs DecodeLoop's cached steps from a one-token prompt at batch 1. The record's latency and
    every paired timing of a language model time exactly this."""
    if phase == "decode":
        steps = max(1, min(DECODE_TOKENS, context - 1))
        return DecodeLoop(model, steps), torch.zeros(1, 1, dtype=torch.long), steps
    return model, torch.zeros(batch, context, dtype=torch.long), batch * context


def lm_latency(model: nn.Module, context: int, batch: int, min_run_time: float) -> list[dict]:
    """Prefill (batch x context tokens in one call) and decode (tokens per second at batch 1, KV cache; with its
    memory floor: the weight bytes a step reads, the machine's bandwidth, floor_ms and floor_fraction)."""
    blocks = max(7, int(min_run_time / 0.02))
    entries = []
    for phase in PHASES:
        module, x, tokens = phase_workload(model, phase, context, batch)
        entry = latency_entry(module, x, blocks=blocks, max_quiet_wait_s=quiet_wait_s())
        entry = {**entry, "phase": phase, "tokens": tokens, "tokens_per_s": tokens / (entry["median_ms"] / 1e3)}
        if phase == "decode":  # batch 1 reads every weight once a token: how far from that floor (text.floor)
            entry.update(floor_fields(model, entry))
        entries.append(entry)
    return entries

"""What did compression change in a language model? Two models' next-token predictions on the same text, compared
token by token: the image runs' flipped answers (core.behaviour), for text.

Perplexity alone hides churn: a pruned model can keep its perplexity and still pick another most likely next token
at many positions, which is what greedy decoding writes. This module measures, on a fixed slice of the test split:

- the next-token flip rate: the share of positions where the two models' top-1 (argmax) predictions differ;
- the per-token loss change: loss_b - loss_a at the true next token (nats), its mean and spread;
- on one sample sequence, the tokens where top-1 flipped, each marked better, worse or neither against the truth.

Tokens of one text are not independent, so every interval is a bootstrap over whole sequences (as the record's
perplexity CI is, text.measure). Pure functions: tensors in, JSON-able values out; torch only.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PROMPTS", "COMPLETION_TOKENS", "MAX_POSITIONS", "next_token_view", "compare_next_tokens",
           "sample_flips", "sequences_for"]

# Fixed prompts for the side-by-side greedy completions: short, and like the pydoc text the default models learn.
PROMPTS = ("The for statement", "def ", "An exception is raised when")
COMPLETION_TOKENS = 40
MAX_POSITIONS = 4096        # positions compared: 32 sequences of the default gpt's 128; about a second on 2 cores
BOOTSTRAP_DRAWS = 1000
# nats, bins 0.5 wide centred on -4 ... 4 (one centred on 0: unchanged): fixed, so two diffs read alike
HISTOGRAM_EDGES = [x / 2 - 0.25 for x in range(-8, 10)]
DECIMALS = 6

# A flipped position, judged against the true next token.
BETTER, WORSE, OTHER = "better", "worse", "other"


def sequences_for(context: int) -> int:
    """How many test sequences of `context` tokens to compare: MAX_POSITIONS in all, at least one."""
    return max(1, MAX_POSITIONS // max(1, context))


@torch.no_grad()
def next_token_view(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                    batch: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(top1, loss), both (N, T): the model's most likely next token and its loss (nats) at the true one.
    Only these are kept, not the logits: an hf: model's vocabulary would make them hundreds of MB."""
    model.eval()
    top1, loss = [], []
    for i in range(0, len(inputs), batch):
        logits = model(inputs[i:i + batch]).float()
        top1.append(logits.argmax(-1))
        loss.append(F.cross_entropy(logits.transpose(1, 2), targets[i:i + batch], reduction="none").double())
    return torch.cat(top1), torch.cat(loss)


def _bootstrap_ci(per_sequence: torch.Tensor, seed: int) -> list[float]:
    """95% percentile interval of the mean over sequences, resampling whole sequences (fixed seed)."""
    values = per_sequence.double()
    if len(values) < 2:
        return [float(values.mean())] * 2
    pick = torch.randint(0, len(values), (BOOTSTRAP_DRAWS, len(values)), generator=torch.Generator().manual_seed(seed))
    lo, hi = torch.quantile(values[pick].mean(1), torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return [lo, hi]


def _histogram(values: torch.Tensor) -> dict:
    """Counts over HISTOGRAM_EDGES; values beyond the ends count in the end bins (named in `clipped`)."""
    edges = torch.tensor(HISTOGRAM_EDGES, dtype=torch.float64)
    inner = values.clamp(edges[0], edges[-1])
    index = (torch.bucketize(inner, edges, right=True) - 1).clamp(0, len(edges) - 2)
    counts = torch.bincount(index, minlength=len(edges) - 1)
    clipped = int(((values < edges[0]) | (values > edges[-1])).sum())
    return {"edges": HISTOGRAM_EDGES, "counts": counts.tolist(), "clipped": clipped}


def compare_next_tokens(top1_a: torch.Tensor, loss_a: torch.Tensor, top1_b: torch.Tensor, loss_b: torch.Tensor,
                        targets: torch.Tensor, seed: int = 0) -> dict:
    """Flip rate and loss change of B against A on the same (N, T) positions, with 95% bootstrap CIs over sequences.

    Returns sequences, positions, flips, flip_rate, flip_rate_ci95, agreement, newly_right and newly_wrong (flips
    where only B, or only A, predicted the true token), accuracy_a/_b (next-token accuracy), loss_a/_b (mean nats
    per token), loss_change (mean of loss_b - loss_a), loss_change_ci95, perplexity_ratio (exp of the loss change:
    B's perplexity over A's on these tokens) with its CI, loss_change_quantiles and loss_change_histogram.
    """
    shapes = {tuple(t.shape) for t in (top1_a, loss_a, top1_b, loss_b, targets)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"both models' predictions and the targets must share one (sequences, tokens) shape, got "
                         f"{sorted(shapes)}")
    n, t = targets.shape
    if n * t == 0:
        raise ValueError("no positions to compare")
    flip = top1_a != top1_b
    right_a, right_b = top1_a == targets, top1_b == targets
    change = (loss_b - loss_a).double()
    flip_ci = _bootstrap_ci(flip.double().mean(1), seed)
    change_ci = _bootstrap_ci(change.mean(1), seed)
    mean_change = float(change.mean())
    quantiles = torch.quantile(change.flatten(), torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64))
    flips = int(flip.sum())
    return {
        "sequences": n, "positions": n * t, "flips": flips,
        "flip_rate": flips / (n * t), "flip_rate_ci95": flip_ci, "agreement": 1 - flips / (n * t),
        "newly_right": int((flip & right_b & ~right_a).sum()), "newly_wrong": int((flip & right_a & ~right_b).sum()),
        "accuracy_a": float(right_a.double().mean()), "accuracy_b": float(right_b.double().mean()),
        "loss_a": float(loss_a.double().mean()), "loss_b": float(loss_b.double().mean()),
        "loss_change": mean_change, "loss_change_ci95": change_ci,
        "perplexity_ratio": math.exp(mean_change),
        "perplexity_ratio_ci95": [math.exp(x) for x in change_ci],
        "loss_change_quantiles": dict(zip(("p5", "p25", "median", "p75", "p95"),
                                          (round(float(q), DECIMALS) for q in quantiles))),
        "loss_change_histogram": _histogram(change.flatten()),
    }


def _judge(truth: int, a: int, b: int) -> str:
    return BETTER if b == truth != a else WORSE if a == truth != b else OTHER


def sample_flips(inputs: torch.Tensor, targets: torch.Tensor, top1_a: torch.Tensor, top1_b: torch.Tensor,
                 decode) -> dict:
    """One sequence as text, cut into segments for display: {"prompt", "segments", "flipped_tokens"}.

    `prompt` is its first input token (the context no prediction is made for); then each target token in order,
    with runs of unflipped tokens merged into one segment {"text", "change": None} (decoded together, so a
    character of several bytes stays whole) and each flipped token its own segment {"text", "change", "a", "b"}:
    the true token, whether B's top-1 is better, worse or neither against it, and both models' top-1 tokens.
    `flipped_tokens` lists the flips alone, with their position in the sequence.
    """
    truth, a, b = (row.tolist() for row in (targets, top1_a, top1_b))
    segments, flipped, plain = [], [], []
    for position, (want, got_a, got_b) in enumerate(zip(truth, a, b)):
        if got_a == got_b:
            plain.append(want)
            continue
        if plain:
            segments.append({"text": decode(plain), "change": None})
            plain = []
        token = {"text": decode([want]), "change": _judge(want, got_a, got_b), "a": decode([got_a]),
                 "b": decode([got_b])}
        segments.append(token)
        flipped.append({"position": position + 1, **token})  # the target at t is token t + 1 of the window
    if plain:
        segments.append({"text": decode(plain), "change": None})
    return {"prompt": decode(inputs[:1].tolist()), "segments": segments, "flipped_tokens": flipped}

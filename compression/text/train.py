"""Training a language model on a text data set: AdamW, warm-up then a cosine schedule, gradient clipping.

Steps, not epochs: a step is one batch of random windows of the training text (seeded), so a run's length does
not depend on the text's size, and progress, ETA and Cancel work per step.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..core.timing import num_threads
from ..errors import CancelledError, DivergedError, LabError
from .corpus import TextDataset

DEFAULT_STEPS = 350  # the default gpt on pydoc at batch 32: ~95 s on 2 cores (a uniform guess over bytes is 8 bits)
EVALS = 10                 # validation points on the curve
VAL_SEQUENCES = 32         # validation windows per point (fixed, seeded)
SMALL_BATCH_TOKENS = 1024  # below this many tokens a step is too small to share across CPU cores well
# (measured for the default gpt on 2 cores: 2 threads take a step of 8, 16 or 32 x 128 tokens 1.6-1.8x faster)


@dataclass(frozen=True)
class LMTrainConfig:
    steps: int = DEFAULT_STEPS
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup: float = 0.05        # share of the steps spent warming the learning rate up
    clip: float = 1.0           # gradient norm clip: one bad batch must not wreck a small model
    seed: int = 0

    def __post_init__(self):
        if self.steps < 0 or self.batch_size < 1:
            raise LabError(f"steps must be >= 0 and the batch size >= 1, got {self.steps} and {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise LabError(f"learning rate must be a positive number, got {self.lr}")

    def to_dict(self) -> dict:
        return asdict(self)


def lr_at(step: int, config: LMTrainConfig) -> float:
    warm = max(1, int(config.warmup * config.steps))
    if step < warm:
        return config.lr * (step + 1) / warm
    progress = (step - warm) / max(1, config.steps - warm)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))  # down to a tenth


def _optimizer(model: nn.Module, config: LMTrainConfig) -> torch.optim.Optimizer:
    """Weight decay on matrices only: decaying norms, biases and embeddings towards zero only hurts."""
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2 and "token" not in n
             and "position" not in n]
    rest = [p for p in model.parameters() if p.requires_grad and all(p is not q for q in decay)]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95), fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95))


def lm_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model(inputs)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def distillation_loss(teacher: nn.Module, temperature: float = 2.0, alpha: float = 0.5) -> Callable:
    """alpha x T^2 x KL(teacher || student) on the logits at temperature T, plus (1 - alpha) x cross-entropy on
    the text: the student learns the teacher's whole next-token distribution, not only its top guess."""
    teacher.eval()

    def loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = model(inputs).float()
        with torch.no_grad():
            taught = teacher(inputs).float()
        vocab = logits.shape[-1]
        kl = F.kl_div(F.log_softmax(logits.reshape(-1, vocab) / temperature, -1),
                      F.log_softmax(taught.reshape(-1, vocab) / temperature, -1), log_target=True,
                      reduction="batchmean") * temperature ** 2
        return alpha * kl + (1 - alpha) * F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
    return loss


def steps_per_epoch(data: TextDataset, tokenizer, batch_size: int, context: int) -> int:
    """Steps of `batch_size` windows that cover the training split once: what an epoch means for text."""
    return max(1, math.ceil(len(data.tokens(tokenizer)["train"]) / (batch_size * context)))


@torch.no_grad()
def evaluate_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch: int = 32) -> float:
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(inputs), batch):
        logits = model(inputs[i:i + batch])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets[i:i + batch].reshape(-1),
                                 reduction="sum").item()
        count += targets[i:i + batch].numel()
    model.train(was)
    return total / max(count, 1)


def train_lm(model: nn.Module, data: TextDataset, config: LMTrainConfig, *, context: int,
             on_step: Callable[[dict], None] | None = None, on_eval: Callable[[dict], None] | None = None,
             should_cancel: Callable[[], bool] | None = None, loss_fn: Callable = lm_loss) -> list[dict]:
    """Train in place (on `loss_fn`: the text's cross-entropy, or distillation_loss from a teacher); returns the curve: EVALS points of {"step", "steps", "train_loss", "val_loss",
    "val_perplexity", "elapsed_s"}. NaN loss raises DivergedError; should_cancel() raises CancelledError."""
    ids = data.tokens(model.tokenizer)["train"]
    if len(ids) <= context + 1:
        raise LabError(f"The training split of '{data.name}' has {len(ids)} tokens, fewer than one context of "
                       f"{context} + 1: use a longer text or a smaller context.")
    val_inputs, val_targets = data.windows(model.tokenizer, "val", context, limit=VAL_SEQUENCES)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    optimizer = _optimizer(model, config)
    eval_every = max(1, config.steps // EVALS)
    history, running, start = [], [], time.perf_counter()
    threads = 1 if config.batch_size * context < SMALL_BATCH_TOKENS else None
    model.train()
    with num_threads(threads):
        for step in range(config.steps):
            if should_cancel and should_cancel():
                raise CancelledError("cancelled by the user")
            starts = torch.randint(0, len(ids) - context - 1, (config.batch_size,), generator=generator)
            rows = torch.stack([ids[s:s + context + 1] for s in starts.tolist()])
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, config)
            loss = loss_fn(model, rows[:, :-1], rows[:, 1:])
            if not torch.isfinite(loss):
                raise DivergedError(f"The loss became {loss.item()} at step {step + 1}: try a lower learning rate.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            running.append(loss.item())
            done = step + 1
            if on_step:
                on_step({"step": done, "steps": config.steps, "train_loss": running[-1]})
            if done % eval_every == 0 or done == config.steps:
                val = evaluate_loss(model, val_inputs, val_targets)
                point = {"step": done, "steps": config.steps, "train_loss": sum(running) / len(running),
                         "val_loss": val, "val_perplexity": math.exp(val),
                         "elapsed_s": time.perf_counter() - start}
                history.append(point)
                running = []
                if on_eval:
                    on_eval(point)
    model.eval()
    return history

"""Pruning a language model's weights on calibration text, one transformer block after another, as the papers do:

- magnitude: the smallest |W| in each layer;
- Wanda (Sun et al. 2023, arXiv 2306.11695): |W_ij| x ||X_j||, the weight times its input feature's norm over the
  calibration tokens, compared within each output row;
- SparseGPT (Frantar & Alistarh 2023, arXiv 2301.00774): masks chosen and the remaining weights updated with the
  layer's inverse Hessian (the OBS update), in column blocks, so the layer's output on the calibration inputs
  changes as little as possible.

Unstructured (a sparsity per layer) or N:M (N weights kept in every M consecutive inputs: 2:4, 4:8). Every
projection inside the blocks is pruned (nn.Linear, or GPT-2's Conv1D through its transposed (out, in) view, as
SparseGPT's code does); embeddings and the output head stay dense (as in both papers). Block i is
calibrated on the outputs of blocks 0..i-1 *as pruned*, so each block compensates for the error before it.

Neither buys CPU speed with dense kernels: the result is a smaller gzip size, and the lab says so.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import CancelledError, LabError
from ..techniques.prune import METHODS, Method, layer_report
from .families import family_of, hf_model, in_features, is_projection, out_in_weight
from .structured import STRUCTURED

PATTERNS = ("2:4", "4:8")
CALIBRATION_SEQUENCES = 32  # windows of the training split (the papers use 128 of 2048 tokens)
SPARSEGPT_BLOCK = 128       # columns updated together (the paper's block size)
SPARSEGPT_DAMP = 0.01       # of the mean Hessian diagonal, added to it: keeps the inverse well conditioned


@dataclass(frozen=True)
class LMPruneConfig:
    method: str = "wanda"
    sparsity: float = 0.5            # unstructured: of each layer's weights; with a pattern, (M - N) / M
    pattern: str | None = None       # "2:4": keep 2 of every 4 consecutive input weights
    calibration: int = CALIBRATION_SEQUENCES
    seed: int = 0

    def __post_init__(self):
        if self.method not in (*TEXT_ALGORITHMS, *STRUCTURED):
            raise LabError(f"'{self.method}' prunes image models. For language models: "
                           f"{', '.join((*TEXT_ALGORITHMS, *STRUCTURED))}.")
        if self.pattern is not None:
            if self.method in STRUCTURED:
                raise LabError(f"{self.method} removes whole heads, units or layers: an N:M pattern is for "
                               f"magnitude, wanda and sparsegpt.")
            n_m(self.pattern)
        elif not 0 <= self.sparsity < 1:
            raise LabError(f"Sparsity must be in [0, 1), got {self.sparsity}")
        if self.calibration < 1:
            raise LabError(f"calibration sequences must be at least 1, got {self.calibration}")

    @property
    def target(self) -> float:
        if self.pattern is None:
            return self.sparsity
        keep, group = n_m(self.pattern)
        return 1 - keep / group

    def to_dict(self) -> dict:
        return asdict(self)


def n_m(pattern: str) -> tuple[int, int]:
    """'2:4' -> (2, 4): keep N of every M."""
    if pattern not in PATTERNS:
        raise LabError(f"Unknown pattern '{pattern}'. Known: {', '.join(PATTERNS)} (N of every M weights kept).")
    keep, group = pattern.split(":")
    return int(keep), int(group)


# ---------------------------------------------------------------- one layer

def _keep_top(score: torch.Tensor, drop_per_row: int) -> torch.Tensor:
    """A mask that drops the `drop_per_row` lowest scores of each row (ties broken by position, stably)."""
    mask = torch.ones_like(score, dtype=torch.bool)
    if drop_per_row:
        lowest = torch.sort(score, dim=1, stable=True).indices[:, :drop_per_row]
        mask.scatter_(1, lowest, False)
    return mask


def _keep_n_of_m(score: torch.Tensor, keep: int, group: int) -> torch.Tensor:
    rows, cols = score.shape
    if cols % group:
        raise LabError(f"A layer with {cols} inputs cannot hold a {keep}:{group} pattern ({cols} is not a multiple "
                       f"of {group}).")
    grouped = score.reshape(rows, cols // group, group)
    lowest = torch.topk(grouped, group - keep, dim=2, largest=False).indices
    mask = torch.ones_like(grouped, dtype=torch.bool)
    mask.scatter_(2, lowest, False)
    return mask.reshape(rows, cols)


def mask_by_score(score: torch.Tensor, config: LMPruneConfig, per_row: bool) -> torch.Tensor:
    """Which weights stay: the highest scores, per row (Wanda) or per layer (magnitude), or N of every M."""
    if config.pattern is not None:
        return _keep_n_of_m(score, *n_m(config.pattern))
    if per_row:
        return _keep_top(score, int(score.shape[1] * config.sparsity))
    drop = int(score.numel() * config.sparsity)
    mask = torch.ones(score.numel(), dtype=torch.bool)
    if drop:
        mask[torch.sort(score.flatten(), stable=True).indices[:drop]] = False
    return mask.reshape(score.shape)


class InputStats:
    """What a layer's calibration inputs tell each method: the sum of squares of each input feature (Wanda) and
    X^T X (SparseGPT's Hessian, up to a factor), over every calibration token."""

    def __init__(self, features: int, hessian: bool):
        self.sumsq = torch.zeros(features, dtype=torch.float64)
        self.xtx = torch.zeros(features, features, dtype=torch.float64) if hessian else None
        self.tokens = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).double()
        self.sumsq += (x * x).sum(0)
        if self.xtx is not None:
            self.xtx += x.T @ x
        self.tokens += x.shape[0]


def prune_magnitude(weight: torch.Tensor, stats: InputStats, config: LMPruneConfig) -> torch.Tensor:
    return weight * mask_by_score(weight.abs(), config, per_row=False)


def prune_wanda(weight: torch.Tensor, stats: InputStats, config: LMPruneConfig) -> torch.Tensor:
    score = weight.abs() * stats.sumsq.sqrt().to(weight.dtype).unsqueeze(0)
    return weight * mask_by_score(score, config, per_row=True)


def _inverse_hessian_cholesky(stats: InputStats, damp: float) -> torch.Tensor:
    """The upper Cholesky factor of H^-1 (H = 2 X^T X / n, dampened), as SparseGPT's update reads it."""
    h = 2 * stats.xtx / max(stats.tokens, 1)
    dead = torch.diag(h) == 0  # inputs that were always zero: their weights cannot matter
    h[dead, dead] = 1
    for attempt in range(4):  # a rank-deficient H (few calibration tokens): more dampening until it factors
        lam = damp * 10 ** attempt * torch.mean(torch.diag(h))
        try:
            chol = torch.linalg.cholesky(h + lam * torch.eye(len(h), dtype=h.dtype))
            return torch.linalg.cholesky(torch.cholesky_inverse(chol), upper=True), dead
        except RuntimeError:
            continue
    raise LabError("SparseGPT could not invert this layer's Hessian even with 10x more dampening: use more "
                   "calibration sequences.")


def prune_sparsegpt(weight: torch.Tensor, stats: InputStats, config: LMPruneConfig,
                    block: int = SPARSEGPT_BLOCK, damp: float = SPARSEGPT_DAMP) -> torch.Tensor:
    """The paper's Algorithm 1: left to right in blocks of columns, choose the block's mask by w^2 / [H^-1]_jj^2
    (adaptive mask selection), zero those weights and spread each one's error over the columns not yet visited."""
    w = weight.detach().double().clone()
    hinv, dead = _inverse_hessian_cholesky(stats, damp)
    w[:, dead] = 0
    rows, cols = w.shape
    keep_n, group = n_m(config.pattern) if config.pattern else (0, 0)
    if group and cols % group:
        raise LabError(f"A layer with {cols} inputs cannot hold a {config.pattern} pattern.")
    for start in range(0, cols, block):
        end = min(start + block, cols)
        w1, hinv1 = w[:, start:end].clone(), hinv[start:end, start:end]
        err1 = torch.zeros_like(w1)
        diag = torch.diag(hinv1)
        if group:
            pruned = torch.zeros_like(w1, dtype=torch.bool)
        else:
            score = w1 ** 2 / diag.unsqueeze(0) ** 2
            pruned = ~mask_by_score(score, LMPruneConfig("sparsegpt", config.sparsity), per_row=False)
        for i in range(end - start):
            if group and i % group == 0:
                score = w1[:, i:i + group] ** 2 / diag[i:i + group].unsqueeze(0) ** 2
                lowest = torch.topk(score, group - keep_n, dim=1, largest=False).indices
                pruned[:, i:i + group].scatter_(1, lowest, True)
            col = w1[:, i]
            q = torch.where(pruned[:, i], torch.zeros_like(col), col)
            err = (col - q) / hinv1[i, i]
            w1[:, i:] -= err.unsqueeze(1) @ hinv1[i, i:].unsqueeze(0)
            w1[:, i] = q  # exactly zero where pruned (the update above leaves rounding there)
            err1[:, i] = err
        w[:, start:end] = w1
        w[:, end:] -= err1 @ hinv[start:end, end:]
    return w.to(weight.dtype)


@dataclass(frozen=True)
class Algorithm:
    prune: Callable[[torch.Tensor, InputStats, LMPruneConfig], torch.Tensor]
    needs_hessian: bool = False


TEXT_ALGORITHMS = {"magnitude": Algorithm(prune_magnitude), "wanda": Algorithm(prune_wanda),
                   "sparsegpt": Algorithm(prune_sparsegpt, needs_hessian=True)}

for _m in [
    Method("magnitude", "Magnitude (per layer)", False,
           "Language models: zeroes the smallest weights of each layer. The baseline both papers beat. Size only: "
           "dense kernels run no faster.", language=True),
    Method("wanda", "Wanda (|W| x input norm)", False,
           "Language models: weight times its input's norm on calibration text, per output row (arXiv 2306.11695). "
           "Its edge comes from the large outlier features of big models; on a small model it lands near "
           "magnitude. Size only on this machine.", language=True),
    Method("sparsegpt", "SparseGPT (OBS update)", False,
           "Language models: chooses the mask with the layer's inverse Hessian and updates the kept weights to "
           "make up for the removed ones (arXiv 2301.00774). Best perplexity of the three; size only on this "
           "machine.", language=True),
    Method("heads_mlp", "Heads + MLP units (structured)", True,
           "Language models (gpt): removes that share of each block's attention heads and MLP hidden units, the "
           "least active on calibration text (as Minitron ranks them). A smaller dense model: really faster. "
           "Fine-tune with --distill to win the perplexity back.", language=True),
    Method("depth", "Whole layers (structured)", True,
           "Language models (gpt): removes that share of the blocks, those that change their input least. Faster "
           "in proportion; costs more perplexity than narrowing, before fine-tuning.", language=True),
]:
    METHODS.register(_m.name, _m, about=_m.about, label=_m.label)


# ---------------------------------------------------------------- the whole model, block by block

def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's list of transformer blocks: a Hugging Face model's where its family keeps them (text.families:
    `model.layers`, `transformer.h`, `gpt_neox.layers`, `model.decoder.layers`, or found by layout), gpt's `blocks`
    (the first ModuleList whose every entry holds linear layers)."""
    family = family_of(model)
    if family is not None:
        return family.block_list(hf_model(model))
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) and all(
                any(isinstance(m, nn.Linear) for m in block.modules()) for block in module):
            return module
    raise LabError("This model has no list of transformer blocks with linear layers to prune: weight pruning of "
                   "language models supports gpt and hf: models.")


class _Stop(Exception):
    """Raised after the block being calibrated: the rest of the forward pass is not needed."""


def _calibrate_block(model: nn.Module, block: nn.Module, layers: dict[str, nn.Module], batches: list[torch.Tensor],
                     hessian: bool) -> dict[str, InputStats]:
    stats = {name: InputStats(in_features(layer), hessian) for name, layer in layers.items()}
    hooks = [layer.register_forward_hook(lambda mod, args, out, name=name: stats[name].add(args[0]))
             for name, layer in layers.items()]

    def stop(*_):
        raise _Stop

    hooks.append(block.register_forward_hook(stop))
    try:
        with torch.no_grad():
            for ids in batches:
                try:
                    model(ids)
                except _Stop:
                    pass
    finally:
        for hook in hooks:
            hook.remove()
    return stats


def prune_language_model(model: nn.Module, calibration: torch.Tensor, config: LMPruneConfig,
                         progress: Callable[[float, str], None] | None = None,
                         should_cancel: Callable[[], bool] | None = None) -> tuple[nn.Module, dict]:
    """(pruned copy, report). `calibration`: (N, T) token ids from the training split."""
    pruned = copy.deepcopy(model).cpu().eval()
    blocks = transformer_blocks(pruned)
    algorithm = TEXT_ALGORITHMS[config.method]
    batches = list(calibration.split(8))
    for index, block in enumerate(blocks):
        if should_cancel and should_cancel():
            raise CancelledError("cancelled by the user")
        layers = {name: m for name, m in block.named_modules() if is_projection(m)}
        stats = _calibrate_block(pruned, block, layers, batches, algorithm.needs_hessian)
        for name, layer in layers.items():
            # each method reads rows as outputs and columns as inputs: a Conv1D (in x out) is pruned through its
            # transposed view, which writes into its own weight
            weight = out_in_weight(layer)
            with torch.no_grad():
                weight.copy_(algorithm.prune(weight.detach().float(), stats[name], config))
        if progress:
            progress((index + 1) / len(blocks), f"block {index + 1}/{len(blocks)} pruned")
    layers = block_report(model, pruned)
    kept = sum(r["nonzero_after"] for r in layers)
    total = sum(r["params_before"] for r in layers)
    return pruned, {"method": config.method, "sparsity": config.target, "pattern": config.pattern,
                    "structured": False, "layers": layers, "calibration_sequences": int(calibration.shape[0]),
                    "calibration_tokens": int(calibration.numel()),
                    "block_sparsity": 1 - kept / total if total else 0.0, "config": config.to_dict()}


def block_report(before: nn.Module, after: nn.Module) -> list[dict]:
    """Each projection inside the blocks (Linear or Conv1D), its weight count before and after and its sparsity: the
    rows techniques.prune.layer_report gives an image model's layers, for the blocks only."""
    blocks = transformer_blocks(before)
    prefix = next(name for name, m in before.named_modules() if m is blocks) + "."
    return layer_report(before, after, keep=lambda name, module: name.startswith(prefix) and is_projection(module))

"""An image plan's recipe: which techniques, how hard, in which order. nn.Module in, nn.Module out; no store.

Order (Deep Compression's, with channel removal in front): remove channels (structured) -> zero weights
(unstructured, global magnitude) -> fine-tune with the zeros held, optionally distilling from the parent ->
either quantize to int8 or share weights (k-means codebooks per layer, centroids fine-tuned) for the file.
Pruning is gradual: the AGP schedule in up to 3 steps, the fine-tuning epochs spread over them (one-shot 92%
lost 4.7 pt on LeNet-300-100/digits in our runs, 3 steps 0.0 pt, same epochs).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import optuna
import torch
from torch import nn
from torch.nn.utils import parametrize

from ...core.data import Dataset
from ...core.train import TrainConfig, train
from ...techniques.codec import fold_shared, share_weights
from ...techniques.distill import kd_loss
from ...techniques.prune import PruneConfig, agp_targets, prunable_layers, prune_model
from ...techniques.quantize import METHODS as QUANT_METHODS
from ...techniques.quantize import quantize_model
from ..io.compressed import encode_model, round_raw_tensors

KD_TEMPERATURE, KD_ALPHA = 4.0, 0.7   # Hinton's T; most of the loss from the parent's soft targets
SHARE_EPOCHS = 2                      # centroid fine-tuning after sharing (Han et al.: a short retrain)
SHARE_LR_FACTOR = 0.2                 # centroids move with a fifth of the training learning rate
AGP_STEPS = 3
MAX_STRUCTURED, MAX_UNSTRUCTURED = 0.7, 0.97


@dataclass(frozen=True)
class Recipe:
    structured: float = 0.0              # share of channels removed (every stage, or the early one)
    structured_late: float | None = None  # per-stage pruning: the late stage's share; None: one global share
    unstructured: float = 0.0            # share of the remaining weights set to zero (global magnitude)
    epochs: int = 1                      # fine-tuning epochs, spread over the pruning steps
    kd: bool = False                     # distil from the parent while fine-tuning
    quantize: str | None = None          # a torch.ao int8 method, or None
    bits: int | None = None              # weight-sharing bits (float weights only), or None

    def label(self) -> str:
        parts = []
        if self.structured or self.structured_late:
            parts.append(f"channels -{self.structured:.0%}" if self.structured_late is None else
                         f"channels -{self.structured:.0%}/-{self.structured_late:.0%}")
        if self.unstructured:
            parts.append(f"{self.unstructured:.0%} zeros")
        parts.append(f"{self.epochs} ep" + (" KD" if self.kd else ""))
        if self.quantize:
            parts.append(self.quantize)
        if self.bits:
            parts.append(f"shared {self.bits}-bit")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Space:
    """What the search may choose from (the plan's config narrows it)."""
    max_epochs: int
    quantize: tuple[str, ...]
    bits: tuple[int, ...]


def suggest(trial: optuna.Trial, space: Space) -> Recipe:
    structured = trial.suggest_float("structured", 0.0, MAX_STRUCTURED, step=0.05)
    per_stage = trial.suggest_categorical("per_stage", [False, True])
    late = trial.suggest_float("structured_late", 0.0, MAX_STRUCTURED, step=0.05) if per_stage else None
    unstructured = trial.suggest_float("unstructured", 0.0, MAX_UNSTRUCTURED, step=0.01)
    epochs = trial.suggest_int("epochs", 1, space.max_epochs)
    kd = trial.suggest_categorical("kd", [True, False])
    quant = trial.suggest_categorical("quantize", ["none", *space.quantize])
    bits = trial.suggest_categorical("bits", [0, *space.bits]) if quant == "none" else 0
    return Recipe(round(structured, 2), None if late is None else round(late, 2), round(unstructured, 2), epochs,
                  kd, None if quant == "none" else quant, bits or None)


def seed_params(prior: dict, space: Space) -> dict:
    """A prior recipe (target.py) as Optuna parameters, with this plan's epochs and choices."""
    quant = prior.get("quantize", "none")
    params = {"structured": prior.get("structured", 0.0), "per_stage": False,
              "unstructured": prior.get("unstructured", 0.0), "epochs": space.max_epochs, "kd": prior.get("kd", True),
              "quantize": quant if quant in space.quantize else "none"}
    if params["quantize"] == "none":
        bits = prior.get("bits", 0)
        params["bits"] = bits if bits in space.bits else 0
    return params


@dataclass
class Tuning:
    """How fine-tuning runs: the data, the device, the base learning rate and seed, the parent's logits."""
    data: Dataset
    device: str = "cpu"
    lr: float = 5e-3
    seed: int = 0
    teacher_logits: torch.Tensor | None = None
    should_cancel: Callable[[], bool] | None = None
    on_epoch: Callable[[dict], None] | None = None     # may raise optuna.TrialPruned to stop a bad trial early


@dataclass
class Built:
    model: nn.Module                      # what is stored and measured
    float_model: nn.Module                # before quantization (its MACs stand for the int8 model's)
    blob: bytes | None = None             # the compressed file, when weights are shared
    input_dtype: torch.dtype = torch.float32
    report: dict = field(default_factory=dict)


def _stages(model: nn.Module) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Early and late halves of the prunable layers (the classifier is never narrowed)."""
    names = prunable_layers(model)[:-1]
    half = max(1, math.ceil(len(names) / 2))
    return tuple(names[:half]), tuple(names[half:])


def _narrow(model: nn.Module, data: Dataset, share: float, layers: tuple[str, ...] | None, seed: int) -> nn.Module:
    if share <= 0 or layers == ():
        return model
    pruned, _ = prune_model(model, data, PruneConfig(method="channel_l1", sparsity=share, layers=layers,
                                                     finetune_epochs=0, seed=seed))
    return pruned


def _relative(now: float, before: float) -> float:
    """The share of what is left to remove at this step so that `now` of the original is gone in total."""
    return 0.0 if now <= before else 1 - (1 - now) / (1 - before)


def shape(model: nn.Module, data: Dataset, recipe: Recipe, fractions: tuple[float, float], seed: int = 0) -> nn.Module:
    """One pruning step (no training): from `fractions[0]` to `fractions[1]` of the recipe's strength.

    (0, 1) is the one-shot model, whose layer shapes and zero count the gradual one ends with too: the plan
    prices a trial on it before paying for fine-tuning.
    """
    before, now = fractions
    if recipe.structured_late is None:
        model = _narrow(model, data, _relative(now * recipe.structured, before * recipe.structured), None, seed)
    else:
        early, late = _stages(model)
        model = _narrow(model, data, _relative(now * recipe.structured, before * recipe.structured), early, seed)
        model = _narrow(model, data, _relative(now * recipe.structured_late, before * recipe.structured_late),
                        late, seed)
    if recipe.unstructured > 0:
        model, _ = prune_model(model, data, PruneConfig(method="global_l1", sparsity=now * recipe.unstructured,
                                                        finetune_epochs=0, seed=seed))
    return model


def finetune_held(model: nn.Module, epochs: int, tuning: Tuning, lr: float | None = None) -> nn.Module:
    """Train in place; zeros stay zero (shared layers need no help: their mask is built in)."""
    masks = {m: (m.weight != 0).float() for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear)) and not parametrize.is_parametrized(m, "weight")
             and (m.weight == 0).float().mean() > 0.01}

    @torch.no_grad()
    def hold(_model):
        for module, mask in masks.items():
            module.weight.mul_(mask)
    loss_fn = None
    if tuning.teacher_logits is not None:
        teacher = tuning.teacher_logits

        def loss_fn(_model, logits, targets, idx):
            return kd_loss(logits, teacher[idx], targets, KD_TEMPERATURE, KD_ALPHA, label_smoothing=0.1)
    train(model, tuning.data, TrainConfig(epochs=epochs, lr=lr or tuning.lr, seed=tuning.seed), tuning.device,
          on_epoch=tuning.on_epoch, should_cancel=tuning.should_cancel, loss_fn=loss_fn,
          after_step=hold if masks else None)
    return model.cpu().eval()


def _steps(recipe: Recipe) -> list[tuple[tuple[float, float], int]]:
    """(fractions, epochs) per pruning step: the AGP schedule, at most one step per epoch."""
    pruned = recipe.structured or recipe.structured_late or recipe.unstructured
    n = min(AGP_STEPS, recipe.epochs) if pruned else 1
    ends = agp_targets(1.0, n) if n > 1 else [1.0]
    starts = [0.0] + ends[:-1]
    epochs = [recipe.epochs // n + (1 if i < recipe.epochs % n else 0) for i in range(n)]
    return list(zip(zip(starts, ends), epochs))


def build(parent: nn.Module, recipe: Recipe, tuning: Tuning, header: dict) -> Built:
    """The recipe applied to a copy of `parent`: gradual pruning with fine-tuning, then int8 or a shared file."""
    model = copy.deepcopy(parent).cpu().eval()
    for fractions, epochs in _steps(recipe):
        model = shape(model, tuning.data, recipe, fractions, tuning.seed)
        if epochs:
            model = finetune_held(model, epochs, tuning)
    return store_as(model, recipe, tuning, header)


def store_as(model: nn.Module, recipe: Recipe, tuning: Tuning, header: dict) -> Built:
    """The last step: int8 kernels, or weight sharing with the centroids fine-tuned and the file encoded."""
    if recipe.quantize:
        method = QUANT_METHODS[recipe.quantize]
        quantized, report = quantize_model(model, tuning.data, recipe.quantize, "cpu")
        return Built(quantized, model, None, method.input_dtype, {"quantize": report})
    if recipe.bits:
        shared, report = share_weights(model, recipe.bits)
        if tuning.on_epoch is not None:  # centroid epochs are not pruning epochs: no early stop in them
            tuning = dataclasses.replace(tuning, on_epoch=None)
        folded = fold_shared(finetune_held(shared, SHARE_EPOCHS, tuning, tuning.lr * SHARE_LR_FACTOR))
        round_raw_tensors(folded, {f"{r['layer']}.weight" for r in report["layers"]})
        return Built(folded, folded, encode_model(folded, recipe.bits, header), torch.float32, {"sharing": report})
    return Built(model, model)

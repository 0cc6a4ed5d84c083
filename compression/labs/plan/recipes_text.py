"""A language model's plan recipe: Minitron's. Remove a share of the layers (depth) or of the attention heads and MLP
hidden units (heads_mlp), ranked by their activations on calibration text (text.structured for a gpt,
text.structured_hf for a Hugging Face checkpoint of a known family); fine-tune for some optimizer steps with the
parent as teacher (steps, not passes over the text: an epoch of a large text is long); optionally quantize the
projections to dynamic int8. nn.Module in, nn.Module out; no store (text.py runs the trials)."""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import asdict, dataclass

import optuna
from torch import nn

from ...techniques.quantize import quantize_model
from ...text.prune import CALIBRATION_SEQUENCES
from ...text.prune import transformer_blocks
from ...text.structured import STRUCTURED
from ...text.structured_hf import structured_pruner
from ..parent import Parent
from .target import Target

MAX_SHARE = 0.75


@dataclass(frozen=True)
class LMRecipe:
    method: str = "depth"         # what is removed: whole layers, or heads and MLP units in every layer
    share: float = 0.0            # the share removed
    steps: int = 0                # fine-tuning steps with the parent as teacher (0: one-shot)
    quantize: str | None = None   # dynamic_int8 of the Linear layers afterwards, or None

    def label(self) -> str:
        parts = [f"{self.method} -{self.share:.0%}" if self.share else "dense",
                 f"{self.steps} steps KD" if self.steps else "no fine-tune"]
        return ", ".join(parts + ([self.quantize] if self.quantize else []))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LMSpace:
    max_steps: int                # the most fine-tuning steps one trial may use
    quantize: tuple[str, ...]

    def step_choices(self) -> list[int]:
        """None, a quarter, half or all of the most steps: coarse, since each trial is minutes of CPU."""
        return sorted({0, self.max_steps // 4, self.max_steps // 2, self.max_steps})


def suggest(trial: optuna.Trial, space: LMSpace) -> LMRecipe:
    quantize = trial.suggest_categorical("quantize", ["none", *space.quantize])
    return LMRecipe(method=trial.suggest_categorical("method", list(STRUCTURED)),
                    share=round(trial.suggest_float("share", 0.0, MAX_SHARE, step=0.05), 2),
                    steps=trial.suggest_categorical("steps", space.step_choices()),
                    quantize=None if quantize == "none" else quantize)


def _step(value: float) -> float:
    return round(min(MAX_SHARE, max(0.0, math.ceil(value * 20) / 20)), 2)


# target kind -> (ratio, space) -> the recipes tried first. A gpt's time and parameters are mostly its blocks
# (the embedding and head are a small share at the default width), so removing a share s of the layers keeps
# about 1 - s of the prefill time; aim a little past the target, as timing on a shared machine is noisy.
# Dynamic int8 stores a Linear weight in a quarter of the bytes.
LM_PRIORS = {
    "latency": lambda r, space: [{"method": "depth", "share": _step(1 - r + 0.05), "steps": space.max_steps},
                                 {"method": "heads_mlp", "share": _step(1 - r + 0.1), "steps": space.max_steps}],
    "params": lambda r, space: [{"method": "depth", "share": _step(1 - r + 0.05), "steps": space.max_steps}],
    "size": lambda r, space: ([{"method": "depth", "share": _step(1 - r / 0.3), "steps": space.max_steps,
                                "quantize": "dynamic_int8"}] if "dynamic_int8" in space.quantize else []) +
                             [{"method": "depth", "share": _step(1 - r + 0.05), "steps": space.max_steps}],
    "macs": lambda r, space: [{"method": "depth", "share": _step(1 - r + 0.05), "steps": space.max_steps}],
}


def prior_params(target: Target, space: LMSpace) -> list[dict]:
    return [{"quantize": "none", **p}
            for p in LM_PRIORS[target.kind](target.ratio, space)]


def snapped(recipe: LMRecipe, layers: int) -> LMRecipe:
    """Depth removes whole layers: its share rounded up to one (a 30% share of 4 layers removes 2: 50%), and at
    least one layer kept. The recipe then says what was done."""
    if recipe.method != "depth" or not recipe.share:
        return recipe
    removed = min(math.ceil(recipe.share * layers - 1e-9), layers - 1)
    return dataclasses.replace(recipe, share=round(removed / layers, 4))


def shaped(parent: Parent, recipe: LMRecipe, seed: int) -> nn.Module:
    """The recipe's structure removed from a copy of the parent (no training)."""
    if not recipe.share:
        return copy.deepcopy(parent.model)  # the fine-tune or int8 alone
    calibration = parent.calibration(CALIBRATION_SEQUENCES, seed)
    model, _ = structured_pruner(recipe.method, parent.model)(parent.model, calibration, recipe.share)
    return model


def layer_count(model: nn.Module) -> int:
    """The blocks a depth recipe removes whole ones of: gpt's, or a Hugging Face family's."""
    return len(transformer_blocks(model))


def quantized(model: nn.Module, recipe: LMRecipe) -> nn.Module:
    return quantize_model(model, None, recipe.quantize, "cpu")[0] if recipe.quantize else model

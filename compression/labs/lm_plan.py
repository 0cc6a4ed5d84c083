"""The plan lab on a language model: name a target ("2x faster"), get the lowest-perplexity model that meets it
within a perplexity increase (`--max-ppl-increase 10%`), verified.

A recipe is Minitron's: remove a share of the layers (depth) or of the attention heads and MLP hidden units
(heads_mlp), ranked by their activations on calibration text (text.structured); fine-tune for some epochs with the
parent as teacher; optionally quantize the Linear layers to dynamic int8. Optuna searches it on two objectives,
validation perplexity and the target's cost, seeded with the recipes the target suggests (LM_PRIORS). Each
finished trial is a child run, measured and timed with its parent at prefill and decode (lm_child). A trial whose
untrained model already misses the target, when a finished one within the bound is closer, stops before its
fine-tuning. The winner is verified like an image plan's (plan_result): a fresh paired timing at the parent's
prefill batch, which is what `latency=` means for a language model (decode is reported beside it).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import asdict, dataclass

import optuna
import torch
from torch import nn

from ..errors import CancelledError, LabError
from ..store import worker_name
from ..techniques.quantize import availability, quantize_model
from ..core.measure import serialized_size
from ..text.measure import macs_per_token, phase_workload
from ..text.prune import CALIBRATION_SEQUENCES
from ..text.structured import check_gpt, prune_depth, prune_heads_mlp
from ..text.train import LMTrainConfig, distillation_loss, evaluate_loss, steps_per_epoch, train_lm
from .baseline import Child
from .context import RunContext
from .lm_child import LMParent, prepare_lm_parent, store_lm_child
from .lm_prune import FINETUNE_LR
from .lm_quantize import NOT_FOR_LANGUAGE_MODELS
from .plan_bound import Bound, bound_for
from .plan_result import summarize
from .plan_study import open_plan_study
from .plan_target import Target
from .search_kind import FINISHED, optimize_until
from .plan_config import PlanConfig
from .speed import time_pair_on

MAX_SHARE = 0.75
VAL_SEQUENCES = 32
SHAPERS = {"depth": prune_depth, "heads_mlp": prune_heads_mlp}


@dataclass(frozen=True)
class LMRecipe:
    method: str = "depth"         # what is removed: whole layers, or heads and MLP units in every layer
    share: float = 0.0            # the share removed
    epochs: int = 1               # fine-tuning epochs with the parent as teacher (0: one-shot)
    quantize: str | None = None   # dynamic_int8 of the Linear layers afterwards, or None

    def label(self) -> str:
        parts = [f"{self.method} -{self.share:.0%}" if self.share else "dense",
                 f"{self.epochs} ep KD" if self.epochs else "no fine-tune"]
        return ", ".join(parts + ([self.quantize] if self.quantize else []))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LMSpace:
    max_epochs: int
    quantize: tuple[str, ...]


def suggest(trial: optuna.Trial, space: LMSpace) -> LMRecipe:
    quantize = trial.suggest_categorical("quantize", ["none", *space.quantize])
    return LMRecipe(method=trial.suggest_categorical("method", list(SHAPERS)),
                    share=round(trial.suggest_float("share", 0.0, MAX_SHARE, step=0.05), 2),
                    epochs=trial.suggest_int("epochs", 0, space.max_epochs),
                    quantize=None if quantize == "none" else quantize)


def _step(value: float) -> float:
    return round(min(MAX_SHARE, max(0.0, math.ceil(value * 20) / 20)), 2)


# target kind -> (ratio, space) -> the recipes tried first. A gpt's time and parameters are mostly its blocks
# (the embedding and head are a small share at the default width), so removing a share s of the layers keeps
# about 1 - s of the prefill time; aim a little past the target, as timing on a shared machine is noisy.
# Dynamic int8 stores a Linear weight in a quarter of the bytes.
LM_PRIORS = {
    "latency": lambda r, space: [{"method": "depth", "share": _step(1 - r + 0.05), "epochs": space.max_epochs},
                                 {"method": "heads_mlp", "share": _step(1 - r + 0.1), "epochs": space.max_epochs}],
    "params": lambda r, space: [{"method": "depth", "share": _step(1 - r + 0.05), "epochs": space.max_epochs}],
    "size": lambda r, space: ([{"method": "depth", "share": _step(1 - r / 0.3), "epochs": space.max_epochs,
                                "quantize": "dynamic_int8"}] if "dynamic_int8" in space.quantize else []) +
                             [{"method": "depth", "share": _step(1 - r + 0.05), "epochs": space.max_epochs}],
    "macs": lambda r, space: [{"method": "depth", "share": _step(1 - r + 0.05), "epochs": space.max_epochs}],
}


def prior_params(target: Target, space: LMSpace) -> list[dict]:
    return [{"quantize": "none", **p, "epochs": min(p["epochs"], space.max_epochs)}
            for p in LM_PRIORS[target.kind](target.ratio, space)]


@dataclass
class LMEnv:
    """What every trial of one process shares."""
    config: PlanConfig
    target: Target
    bound: Bound
    parent: LMParent
    space: LMSpace
    val: tuple[torch.Tensor, torch.Tensor]   # validation windows: what the search sees (the test split picks)
    val_base: float                          # the parent's validation perplexity
    ctx: RunContext
    study: str = ""


def _cost(env: LMEnv, record: dict) -> float:
    """The target's cost as a share of the parent's, from a record measured next to it (latency: the paired prefill
    timing's speed-up; a language model's `latency=` target is its prefill, at the parent's prefill batch)."""
    kind, parent = env.target.kind, env.parent.record
    if kind == "latency":
        return 1 / record[f"speedup_cpu_b{env.parent.prefill_batch}"]
    field = {"size": "size_bytes", "params": "nonzero_params", "macs": "macs_per_token"}[kind]
    return record[field] / parent[field]


def snapped(recipe: LMRecipe, layers: int) -> LMRecipe:
    """Depth removes whole layers: its share rounded up to one (a 30% share of 4 layers removes 2: 50%), and at
    least one layer kept. The recipe then says what was done."""
    if recipe.method != "depth" or not recipe.share:
        return recipe
    removed = min(math.ceil(recipe.share * layers - 1e-9), layers - 1)
    return dataclasses.replace(recipe, share=round(removed / layers, 4))


def _shape(env: LMEnv, recipe: LMRecipe, seed: int) -> nn.Module:
    if not recipe.share:
        return copy.deepcopy(env.parent.model)  # the fine-tune or int8 alone
    calibration = env.parent.calibration(CALIBRATION_SEQUENCES, seed)
    model, _ = SHAPERS[recipe.method](env.parent.model, calibration, recipe.share)
    return model


def _quantized(model: nn.Module, recipe: LMRecipe) -> nn.Module:
    return quantize_model(model, None, recipe.quantize, "cpu")[0] if recipe.quantize else model


def _one_shot_cost(env: LMEnv, model: nn.Module, recipe: LMRecipe) -> float:
    """What the trial will cost, before any training: a quick paired prefill timing, or the count."""
    if env.target.kind != "latency":
        quick = _quantized(model, recipe)
        record = {"size_bytes": serialized_size(quick)[0], "macs_per_token": macs_per_token(model, env.parent.context),
                  "nonzero_params": sum(int(p.count_nonzero()) for p in model.parameters())}
        return _cost(env, record)
    timed_parent, x, _ = phase_workload(env.parent.model, "prefill", env.parent.context, env.parent.prefill_batch)
    timed_child, _, _ = phase_workload(_quantized(model, recipe), "prefill", env.parent.context,
                                       env.parent.prefill_batch)
    return 1 / time_pair_on(timed_parent, timed_child, x, x, rounds=5, block_s=0.01)["speedup"]


def _price_first(env: LMEnv, trial: optuna.Trial, model: nn.Module, recipe: LMRecipe) -> None:
    """Stop the trial before fine-tuning when it cannot be the answer (plan.py's rule, for language models)."""
    done = [t for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if "cost" in t.user_attrs and t.user_attrs.get("val_increase_pct", 1e9) <= env.bound.limit]
    if not done:
        return
    closest = min(done, key=lambda t: t.user_attrs["cost"])
    estimate = _one_shot_cost(env, model, recipe)
    trial.set_user_attr("cost_estimate", estimate)
    if estimate > env.target.ratio and estimate >= closest.user_attrs["cost"]:
        trial.set_constraint("cost", estimate / env.target.ratio - 1)
        trial.set_constraint("quality", 0.0)
        note = (f"stopped before fine-tuning: its one-shot model is {env.target.phrase(estimate)}, short of "
                f"{env.target.phrase()}, and trial {closest.number} is closer")
        trial.set_user_attr("note", note)
        raise optuna.TrialPruned(note)


def _progress(env: LMEnv, trial: optuna.Trial, within: float) -> float:
    """The plan's fraction: trials share 0.15-0.95 of the bar, `within` is how far this one is."""
    done = len(trial.study.get_trials(deepcopy=False, states=FINISHED))
    return min(0.15 + 0.8 * (done + within) / env.config.trials, 0.95)


def _finetune(env: LMEnv, model: nn.Module, recipe: LMRecipe, seed: int, trial: optuna.Trial) -> list[dict]:
    if not recipe.epochs:
        return []
    parent = env.parent
    steps = recipe.epochs * steps_per_epoch(parent.data, model.tokenizer, LMTrainConfig.batch_size, parent.context)
    return train_lm(model, parent.data, LMTrainConfig(steps=steps, lr=FINETUNE_LR, seed=seed), context=parent.context,
                    loss_fn=distillation_loss(parent.model),
                    on_step=lambda info: env.ctx.report(
                        _progress(env, trial, 0.8 * info["step"] / info["steps"]),
                        f"trial {trial.number} ({recipe.label()}): fine-tuning with the parent teaching, "
                        f"step {info['step']}/{info['steps']}"),
                    should_cancel=env.ctx.should_cancel)


def make_objective(env: LMEnv):
    def objective(trial: optuna.Trial):
        if env.ctx.cancelled():
            trial.study.stop()
            raise CancelledError("cancelled by the user")
        recipe = snapped(suggest(trial, env.space), len(env.parent.model.blocks))
        seed = env.config.seed + trial.number
        trial.set_user_attr("recipe", recipe.to_dict())
        trial.set_user_attr("worker", worker_name())
        try:
            model = _shape(env, recipe, seed)
        except LabError as err:  # a share that empties a layer: a recipe that cannot be, not a crash
            trial.set_constraint("cost", 0.0)
            trial.set_constraint("quality", 1.0)
            trial.set_user_attr("note", f"not possible: {err}")
            raise optuna.TrialPruned(str(err)) from None
        _price_first(env, trial, model, recipe)
        history = _finetune(env, model, recipe, seed, trial)
        float_macs = macs_per_token(model, env.parent.context)
        model = _quantized(model.eval(), recipe)
        val_ppl = math.exp(evaluate_loss(model, *env.val))
        val_increase = 100 * (val_ppl / env.val_base - 1)  # validation perplexity increase, in per cent like the bound
        extra = {"study": env.study, "trial": trial.number, "recipe": recipe.to_dict(), "target": env.target.text(),
                 "val_perplexity": val_ppl, "finetune_history": history, "structured": bool(recipe.share),
                 # int8 kernels do the float model's multiply-accumulates (the counter does not see them)
                 "macs_per_token": float_macs}
        run = store_lm_child(env.ctx, env.parent, model, Child(
            "plan", "plan", f"plan trial {trial.number}: {recipe.label()}",
            {**env.config.to_dict(), "study": env.study, "recipe": recipe.to_dict()}, extra))
        cost = _cost(env, {**run["record"], "macs_per_token": float_macs})
        env.ctx.store.update_run(run["id"], extra={**run["extra"], "cost": cost})
        trial.set_constraint("cost", cost / env.target.ratio - 1)
        trial.set_constraint("quality", (val_increase - env.bound.limit) / 10)
        for key, value in (("run_id", run["id"]), ("cost", cost), ("val_perplexity", val_ppl),
                           ("val_increase_pct", val_increase)):
            trial.set_user_attr(key, value)
        env.ctx.report(_progress(env, trial, 1.0), f"trial {trial.number}: {env.target.phrase(cost)}, val perplexity {val_ppl:.3f} "
                       f"({recipe.label()})")
        return val_ppl, cost
    return objective


def _space(config: PlanConfig, unavailable: list[dict]) -> LMSpace:
    """int8 methods that run on a language model here (the others are reported, as the quantize lab does)."""
    methods = []
    default = next(f for f in dataclasses.fields(config) if f.name == "quantize").default_factory()
    for method in config.quantize:
        reason = NOT_FOR_LANGUAGE_MODELS.get(method) or availability(method, "cpu")
        if reason:
            if config.quantize != default or method not in NOT_FOR_LANGUAGE_MODELS:
                unavailable.append({"method": method, "reason": reason})  # the image default is not a request
        else:
            methods.append(method)
    return LMSpace(config.finetune_epochs, tuple(methods))


def open_study(config: PlanConfig, target: Target, space: LMSpace, url: str) -> optuna.Study:
    """Create the study (seeded with the target's prior recipes) or join an existing one."""
    return open_plan_study(config, url, ["minimize", "minimize"], prior_params(target, space)[:max(1, config.trials // 2)])


def run_lm_plan(config: PlanConfig, ctx: RunContext) -> dict:
    """plan.run_plan for a language-model parent: search, pick on test perplexity, verify."""
    unavailable: list[dict] = []
    parent = prepare_lm_parent(config, ctx, check=check_gpt)
    target = config.parsed_target()
    val = parent.data.windows(parent.model.tokenizer, "val", parent.context, limit=VAL_SEQUENCES)
    env = LMEnv(config, target, bound_for(parent.record, config.max_drop, config.max_ppl_increase), parent,
                _space(config, unavailable), val, math.exp(evaluate_loss(parent.model, *val)), ctx)
    study = open_study(config, target, env.space, ctx.store.url)
    env.study = study.study_name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optimize_until(study, make_objective(env), config.trials, ctx.cancelled)
    ctx.check_cancel()
    ctx.report(0.95, "Verifying the winner: timing it with the parent again (prefill)")
    out = summarize(study, parent, target, env.bound, ctx, "cpu")
    ctx.report(1.0, out["best"]["why"] if not out["best"]["meets"] else
               f"Run {out['best']['run_id']} meets {target.phrase()}")
    return {**out, "unavailable": unavailable}

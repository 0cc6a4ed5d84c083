"""A language model's plan: name a target ("2x faster"), get the lowest-perplexity model that meets it within a
perplexity increase (`--max-ppl-increase 10%`), verified.

Optuna searches recipes_text's recipes (Minitron's: depth or heads and MLP units removed, fine-tuned with the
parent as teacher, optionally int8) on two objectives, validation perplexity and the target's cost, seeded with
the recipes the target suggests (LM_PRIORS). Each finished trial is a child run, measured and timed with its
parent at prefill and decode (parent.store_child). A trial whose untrained model already misses the target, when
a finished one within the bound is closer, stops before its fine-tuning. The winner is verified like an image
plan's (result.py): a fresh paired timing at the parent's prefill batch, which is what `latency=` means for a
language model (decode is reported beside it).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import optuna
import torch
from torch import nn

from ...core.measure import serialized_size
from ...core.paired import time_pair_on
from ...errors import LabError
from ...store import worker_name
from ...techniques.quantize import availability
from ...text.measure import macs_per_token, phase_workload
from ...text.quantize_notes import NOT_FOR_LANGUAGE_MODELS
from ...text.recipes import FINETUNE_LR
from ...text.structured_hf import check_structured
from ...text.train import LMTrainConfig, distillation_loss, evaluate_loss, steps_per_epoch, train_lm
from ..context import RunContext
from ...store.artifacts import load_run_model
from ...tasks.base import FINETUNE_CONFIG
from ..parent import Child, Parent, fair_control, prepare_parent, store_child
from ..search import FINISHED
from .bound import Bound, bound_for
from .config import PlanConfig
from .planner import Planner, closest_cost, stop_before_finetuning, stop_if_cancelled
from .recipes_text import LMRecipe, LMSpace, layer_count, prior_params, quantized, shaped, snapped, suggest
from .target import Target

VAL_SEQUENCES = 32
FINETUNE_STEPS = 100  # the most fine-tuning steps of one trial when the config names none: ~10-30 s of a small model
DIRECTIONS = ("minimize", "minimize")  # validation perplexity, the target's cost


@dataclass
class LMEnv:
    """What every trial of one process shares."""
    config: PlanConfig
    target: Target
    bound: Bound
    parent: Parent
    space: LMSpace
    val: tuple[torch.Tensor, torch.Tensor]   # validation windows: what the search sees (the test split picks)
    val_base: float                          # the parent's validation perplexity
    ctx: RunContext
    study: str = ""
    started: float = field(default_factory=time.monotonic)  # the search's time budget counts from here
    controls: dict = field(default_factory=dict)  # fine-tune steps -> (its fair control run, its val perplexity)


def _cost(env: LMEnv, record: dict) -> float:
    """The target's cost as a share of the parent's, from a record measured next to it (latency: the paired prefill
    timing's speed-up; a language model's `latency=` target is its prefill, at the parent's prefill batch)."""
    kind, parent = env.target.kind, env.parent.record
    if kind == "latency":
        return 1 / record[f"speedup_cpu_b{env.parent.prefill_batch}"]
    field = {"size": "size_bytes", "params": "nonzero_params", "macs": "macs_per_token"}[kind]
    return record[field] / parent[field]


def _one_shot_cost(env: LMEnv, model: nn.Module, recipe: LMRecipe) -> float:
    """What the trial will cost, before any training: a quick paired prefill timing, or the count."""
    if env.target.kind != "latency":
        quick = quantized(model, recipe)
        record = {"size_bytes": serialized_size(quick)[0], "macs_per_token": macs_per_token(model, env.parent.context),
                  "nonzero_params": sum(int(p.count_nonzero()) for p in model.parameters())}
        return _cost(env, record)
    timed_parent, x, _ = phase_workload(env.parent.model, "prefill", env.parent.context, env.parent.prefill_batch)
    timed_child, _, _ = phase_workload(quantized(model, recipe), "prefill", env.parent.context,
                                       env.parent.prefill_batch)
    return 1 / time_pair_on(timed_parent, timed_child, x, x, rounds=5, block_s=0.01)["speedup"]


def _price_first(env: LMEnv, trial: optuna.Trial, model: nn.Module, recipe: LMRecipe) -> None:
    """Stop the trial before fine-tuning when it cannot be the answer (the image plan's rule, for language models)."""
    closest = closest_cost(trial, "val_increase_pct", env.bound.limit)
    if closest is None:
        return
    estimate = _one_shot_cost(env, model, recipe)
    stop_before_finetuning(trial, env.target, estimate, closest, "quality")


def _progress(env: LMEnv, trial: optuna.Trial, within: float) -> float:
    """The plan's fraction: trials share 0.15-0.95 of the bar, `within` is how far this one is; under a time budget,
    the share of it spent when that is further (the bar's ETA then says when the budget ends)."""
    done = len(trial.study.get_trials(deepcopy=False, states=FINISHED))
    by_trials = (done + within) / env.config.trials
    budget = env.config.time_budget
    by_time = (time.monotonic() - env.started) / budget if budget else 0.0
    return min(0.15 + 0.8 * max(by_trials, by_time), 0.95)


def _training(env: LMEnv, steps: int) -> LMTrainConfig:
    """A trial's fine-tune: every trial of a plan sees the same batches (the plan's seed), so trials differ only by
    their recipe, and one fair control per fine-tune length serves them all."""
    return LMTrainConfig(steps=steps, lr=FINETUNE_LR, seed=env.config.seed)


def _control(env: LMEnv, trial: optuna.Trial, steps: int) -> tuple[dict, float]:
    """The parent trained `steps` more steps as the trial's fine-tune was (labs.parent.fair_control: stored once per
    parent and training, reused by later plans too), and its validation perplexity: what a fine-tuned trial's
    quality is checked against."""
    if steps not in env.controls:
        at = _progress(env, trial, 0.85)
        run = fair_control(env.ctx.slice(at, at, f"trial {trial.number}: its fair control"), env.parent,
                           _training(env, steps).to_dict())
        env.controls[steps] = (run, math.exp(evaluate_loss(load_run_model(run["weights_path"]), *env.val)))
    return env.controls[steps]


def _finetune(env: LMEnv, model: nn.Module, recipe: LMRecipe, trial: optuna.Trial) -> list[dict]:
    if not recipe.steps:
        return []
    parent = env.parent
    return train_lm(model, parent.data, _training(env, recipe.steps),
                    context=parent.context,
                    loss_fn=distillation_loss(parent.model),
                    on_step=lambda info: env.ctx.report(
                        _progress(env, trial, 0.8 * info["step"] / info["steps"]),
                        f"trial {trial.number} ({recipe.label()}): fine-tuning with the parent teaching, "
                        f"step {info['step']}/{info['steps']}"),
                    should_cancel=env.ctx.should_cancel)


def _store_trial(env: LMEnv, trial: optuna.Trial, recipe: LMRecipe, model: nn.Module, history: list[dict],
                 control: dict | None) -> tuple[dict, float, float]:
    """Measure the trial's model, store it as a child timed with the parent; its run, validation perplexity, cost."""
    float_macs = macs_per_token(model, env.parent.context)
    model = quantized(model.eval(), recipe)
    val_ppl = math.exp(evaluate_loss(model, *env.val))
    extra = {"study": env.study, "trial": trial.number, "recipe": recipe.to_dict(), "target": env.target.text(),
             "val_perplexity": val_ppl, "finetune_history": history, "structured": bool(recipe.share),
             # int8 kernels do the float model's multiply-accumulates (the counter does not see them)
             "macs_per_token": float_macs}
    if history:
        extra[FINETUNE_CONFIG] = _training(env, recipe.steps).to_dict()
    run = store_child(env.ctx, env.parent, model, Child(
        "plan", "plan", f"plan trial {trial.number}: {recipe.label()}",
        {**env.config.to_dict(), "study": env.study, "recipe": recipe.to_dict()}, extra, control=control))
    cost = _cost(env, {**run["record"], "macs_per_token": float_macs})
    env.ctx.store.update_run(run["id"], extra={**run["extra"], "cost": cost})
    return run, val_ppl, cost


def make_objective(env: LMEnv):
    def objective(trial: optuna.Trial):
        stop_if_cancelled(env.ctx, trial)
        recipe = snapped(suggest(trial, env.space), layer_count(env.parent.model))
        seed = env.config.seed + trial.number
        trial.set_user_attr("recipe", recipe.to_dict())
        trial.set_user_attr("worker", worker_name())
        try:
            model = shaped(env.parent, recipe, seed)
        except LabError as err:  # a share that empties a layer: a recipe that cannot be, not a crash
            trial.set_constraint("cost", 0.0)
            trial.set_constraint("quality", 1.0)
            trial.set_user_attr("note", f"not possible: {err}")
            raise optuna.TrialPruned(str(err)) from None
        _price_first(env, trial, model, recipe)
        history = _finetune(env, model, recipe, trial)
        # a trial that fine-tuned is checked against the parent trained as long (its fair control), not as stored
        control, val_reference = _control(env, trial, recipe.steps) if history else (None, env.val_base)
        run, val_ppl, cost = _store_trial(env, trial, recipe, model, history, control)
        val_increase = 100 * (val_ppl / val_reference - 1)  # validation perplexity increase, in per cent like the bound
        trial.set_constraint("cost", cost / env.target.ratio - 1)
        trial.set_constraint("quality", (val_increase - env.bound.limit) / 10)
        for key, value in (("run_id", run["id"]), ("cost", cost), ("val_perplexity", val_ppl),
                           ("val_increase_pct", val_increase), ("control_run_id", control and control["id"])):
            trial.set_user_attr(key, value)
        env.ctx.report(_progress(env, trial, 1.0), f"trial {trial.number}: {env.target.phrase(cost)}, "
                       f"val perplexity {val_ppl:.3f} ({recipe.label()})")
        return val_ppl, cost
    return objective


def _space(config: PlanConfig, parent: Parent, unavailable: list[dict]) -> LMSpace:
    """int8 methods that run on a language model here (the others are reported, as the quantize lab does), and the
    most fine-tuning steps of a trial: --finetune-steps, or --finetune-epochs passes over the text, or
    FINETUNE_STEPS."""
    methods = []
    default = next(f for f in dataclasses.fields(config) if f.name == "quantize").default_factory()
    for method in config.quantize:
        reason = NOT_FOR_LANGUAGE_MODELS.get(method) or availability(method, "cpu")
        if reason:
            if config.quantize != default or method not in NOT_FOR_LANGUAGE_MODELS:
                unavailable.append({"method": method, "reason": reason})  # the image default is not a request
        else:
            methods.append(method)
    steps = config.finetune_steps or (config.finetune_epochs * steps_per_epoch(
        parent.data, parent.model.tokenizer, LMTrainConfig.batch_size, parent.context) if config.finetune_epochs
        else FINETUNE_STEPS)
    return LMSpace(steps, tuple(methods))


def priors(config: PlanConfig, space: LMSpace) -> list[dict]:
    """The target's first recipes (LM_PRIORS), half of the budget at most."""
    return prior_params(config.parsed_target(), space)[:max(1, config.trials // 2)]


def prepare(config: PlanConfig, ctx: RunContext, unavailable: list[dict]) -> LMEnv:
    parent = prepare_parent(config, ctx, check=check_structured)
    val = parent.data.windows(parent.model.tokenizer, "val", parent.context, limit=VAL_SEQUENCES)
    return LMEnv(config, config.parsed_target(), bound_for(parent.record, config.max_drop, config.max_ppl_increase),
                 parent, _space(config, parent, unavailable), val, math.exp(evaluate_loss(parent.model, *val)), ctx)


def _verified(best: dict, row: dict) -> dict:
    """Latency is a language model's prefill; its decode (batch 1) timing from the trial is shown beside. The
    perplexity increase is against the parent as stored (the record's); quality_loss, which the bound checks, is
    against the fair control for a winner that fine-tuned."""
    return {"perplexity_increase": row["perplexity_increase"], "decode_speedup": row.get("speedup_cpu_b1"),
            "decode_ci95": row.get("speedup_cpu_b1_ci95")}


TEXT_PLANNER = Planner(prepare=prepare, directions=DIRECTIONS, priors=priors, objective=make_objective,
                       device=lambda config: "cpu",  # where its trials were timed, at prefill and decode
                       verifying="Verifying the winner: timing it with the parent again (prefill)", verified=_verified)

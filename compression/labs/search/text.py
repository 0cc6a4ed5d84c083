"""The search lab on text: each trial trains a gpt from the space for a few steps, measures it like any
language-model run (text.measure: perplexity with its CI, bits per byte, next-token accuracy, prefill and decode
latency) and stores it as a "search_trial" run. The front is validation perplexity (minimise) against the cost:
decode latency per token, measured in this process, or parameters.

What the search lab shares with image searches (the study, workers, resuming, the summary) is in study.py and
run.py; this module is the text DataKind, registered in KINDS as "text".
"""
from __future__ import annotations

import math

import optuna
import torch
from torch import nn

from ...core.data import load_dataset
from ...core.measure import count_params
from ...core.models import format_spec
from ...errors import LabError
from ...search.space import arch_to_spec, infeasible, smallest_arch
from ...search.strategies import LM_OBJECTIVES, ZOO, perplexity_score
from ...store.artifacts import save_model
from ...tasks.text import lm_train_config
from ...text.corpus import ByteTokenizer, TextDataset
from ...text.measure import measure_lm
from ...text.models import build_language_model
from ...text.train import VAL_SEQUENCES, evaluate_loss, train_lm
from ..baseline import get_baseline
from ..configs import BaselineConfig, SearchConfig
from ..context import RunContext
from ..records import as_record
from .kinds import KINDS, DataKind
from .study import FINISHED, start_trial

VOCAB = ByteTokenizer.vocab_size  # every gpt reads bytes: a uniform guess has perplexity 256
NORMALISATION = (f"quality = 1 - ln(val perplexity) / ln({VOCAB}): a uniform guess over the {VOCAB} byte tokens "
                 "scores 0, a perfect model 1; cost / reference cost; both in [0, 1]")


def training_of(config: SearchConfig, spec: str, seed: int) -> BaselineConfig:
    """The training every trial and every zoo model gets: one BaselineConfig, so lm_train_config gives them the
    same steps, batch and learning rate, and a zoo model is an ordinary (cached) baseline."""
    return BaselineConfig(dataset=config.dataset, model=spec, train_steps=config.steps_per_trial(), seed=seed,
                          device=config.device, data_dir=config.data_dir, download=config.download)


def validation_perplexity(model: nn.Module, data: TextDataset, context: int) -> float:
    """On the fixed validation windows train_lm's curve uses: the figure the front ranks, trials and zoo alike."""
    inputs, targets = data.windows(model.tokenizer, "val", context, limit=VAL_SEQUENCES)
    return math.exp(evaluate_loss(model, inputs, targets))


def _too_big(config: SearchConfig, model: nn.Module) -> str | None:
    if config.max_params is not None and (p := count_params(model)[0]) > config.max_params:
        return f"{p:,} params > {config.max_params:,}"
    return None  # max_macs is refused for text by SearchConfig


def check_feasible(config: SearchConfig, data: TextDataset) -> None:
    cheapest = build_language_model(arch_to_spec(config.space, smallest_arch(config.space, config.choices)))
    reason = _too_big(config, cheapest)
    if reason:
        raise LabError(f"No architecture in this space satisfies the constraint: even the smallest has {reason}.")


def make_objective(config: SearchConfig, study_name: str, data: TextDataset, ctx: RunContext):
    def objective(trial: optuna.Trial):
        arch, spec = start_trial(trial, config, ctx)
        reason = infeasible(config.space, arch)
        model = None
        if reason is None:
            torch.manual_seed(config.seed + trial.number)
            model = build_language_model(spec)
            reason = _too_big(config, model)
        if reason:  # skip training: it cannot be built, or cannot be chosen anyway
            trial.set_user_attr("status", f"infeasible: {reason}")
            raise optuna.TrialPruned(reason)
        train_config = lm_train_config(training_of(config, format_spec(spec), config.seed + trial.number))
        context = arch["context"]

        def on_eval(point: dict) -> None:
            if config.early_stop:
                trial.report(point["val_perplexity"], point["step"])
                if trial.should_prune():
                    raise optuna.TrialPruned(f"stopped early at step {point['step']}")
        history = train_lm(model, data, train_config, context=context, on_eval=on_eval,
                           should_cancel=ctx.should_cancel)
        val_perplexity = validation_perplexity(model, data, context)
        record = measure_lm(model, data, context, min_run_time=ctx.latency_time)
        cost = LM_OBJECTIVES.get(config.objective)(record)
        run_config = {**config.to_dict(), **train_config.to_dict(), "context": context, "task": "text",
                      "study": study_name, "trial": trial.number}
        run_id = ctx.store.add_run("search_trial", config.dataset, spec, run_config, record=record,
                                   method=config.strategy, label=f"{study_name} trial {trial.number}",
                                   extra={"arch": arch, "val_perplexity": val_perplexity, "cost": cost,
                                          "study": study_name, "history": history},
                                   job_id=ctx.job_id,
                                   weights_path=save_model(model, config.task().example_input(data, context)))
        trial.set_user_attr("run_id", run_id)
        done = len(trial.study.get_trials(deepcopy=False, states=FINISHED))
        ctx.report(min(0.1 + 0.85 * (done + 1) / config.trials, 0.95),
                   f"trial {trial.number}: val perplexity {val_perplexity:.2f}, {config.objective} {cost:,.4g}")
        return val_perplexity if config.objective == "none" else (val_perplexity, cost)
    return objective


def zoo_records(config: SearchConfig, ctx: RunContext) -> list[dict]:
    """Hand-picked gpts (strategies.ZOO), trained as the trials are and measured by the same measure_lm at the
    same timing budget: ordinary baselines, so a later search with the same training reuses them (and the decode
    latency they were measured at) instead of training them again."""
    data = load_dataset(config.dataset, config.data_dir, config.download)
    quiet = ctx.with_(progress=None, job_id=None)
    out = []
    for i, spec in enumerate(ZOO[config.space]):
        model, run = get_baseline(training_of(config, spec, config.seed), quiet)
        ctx.report(0.1 * (i + 1) / len(ZOO[config.space]), f"zoo: {spec}")
        context = int(run["record"]["context"])
        out.append({**as_record(run), "val_perplexity": validation_perplexity(model, data, context),
                    "cost": LM_OBJECTIVES.get(config.objective)(run["record"]),
                    "feasible": _too_big(config, model) is None})
    return out


TEXT_SEARCH = KINDS.register("text", DataKind(
    "val_perplexity", "validation perplexity (lower is better)", "minimize", make_objective, zoo_records,
    check_feasible, lambda perplexity: perplexity_score(perplexity, VOCAB), {"perplexity": float(VOCAB)},
    NORMALISATION))

"""The search lab on images: each trial trains a model of the family for a few epochs, is ranked by validation
accuracy (maximise) against one cost of search.strategies.OBJECTIVES, and is stored as a "search_trial" run. The
zoo is the family's hand-designed models, trained and measured the same way. Registered in KINDS as "image"."""
from __future__ import annotations

import optuna
import torch

from ...core.data import load_dataset
from ...core.measure import count_macs, count_params, measure
from ...core.models import build_model
from ...core.train import TrainConfig, accuracy, train
from ...errors import LabError
from ...search.space import arch_to_spec, smallest_arch
from ...search.strategies import OBJECTIVES, ZOO
from ...store.artifacts import save_model
from ...tasks.image import predictions_on_test
from ..baseline import get_baseline
from ..configs import BaselineConfig, SearchConfig
from ..context import RunContext
from ..records import as_record
from .kinds import KINDS, DataKind
from .study import FINISHED, start_trial


def _cost(config: SearchConfig, model, data) -> float:
    return OBJECTIVES.get(config.objective)(model, data, config.latency_batch)


def _violation(config: SearchConfig, model, data) -> str | None:
    if config.max_params is not None and (p := count_params(model)[0]) > config.max_params:
        return f"{p:,} params > {config.max_params:,}"
    if config.max_macs is not None and (m := count_macs(model, data.input_shape)) > config.max_macs:
        return f"{m:,} MACs > {config.max_macs:,}"
    return None


def _device(config: SearchConfig) -> str:
    return config.device if config.device not in (None, "auto") else "cpu"


def image_check_feasible(config: SearchConfig, data) -> None:
    cheapest = build_model(arch_to_spec(config.space, smallest_arch(config.space, config.choices)),
                           data.input_shape, data.num_classes)
    reason = _violation(config, cheapest, data)
    if reason:
        raise LabError(f"No architecture in this space satisfies the constraint: even the smallest has {reason}.")


def image_objective(config: SearchConfig, study_name: str, data, ctx: RunContext):
    def objective(trial: optuna.Trial):
        arch, spec = start_trial(trial, config, ctx)
        torch.manual_seed(config.seed + trial.number)
        model = build_model(spec, data.input_shape, data.num_classes)
        reason = _violation(config, model, data)
        if reason:  # skip training: it cannot be chosen anyway
            trial.set_user_attr("status", f"infeasible: {reason}")
            raise optuna.TrialPruned(reason)

        def on_epoch(info):
            if config.early_stop:
                trial.report(info["val_accuracy"], info["epoch"])
                if trial.should_prune():
                    raise optuna.TrialPruned(f"stopped early at epoch {info['epoch']}")
        train(model, data, TrainConfig(epochs=config.epochs, seed=config.seed + trial.number), _device(config),
              on_epoch=on_epoch, should_cancel=ctx.should_cancel)
        model.cpu()
        val_acc = accuracy(model, data.x_val, data.y_val)
        cost = _cost(config, model, data)
        record = measure(model, data, latency_batch=config.latency_batch, min_run_time=0.05)
        run_id = ctx.store.add_run("search_trial", config.dataset, spec, {**config.to_dict(), "study": study_name,
                                                                          "trial": trial.number},
                                   record=record, method=config.strategy, label=f"{study_name} trial {trial.number}",
                                   extra={"arch": arch, "val_accuracy": val_acc, "cost": cost, "study": study_name,
                                          # stored answers and weights: any two trials can be compared on the
                                          # Compare page, and a trial can be pruned or exported as it is
                                          "predictions": predictions_on_test(model, data)},
                                   job_id=ctx.job_id, weights_path=save_model(model, config.task().example_input(data)))
        trial.set_user_attr("run_id", run_id)
        done = len(trial.study.get_trials(deepcopy=False, states=FINISHED))
        ctx.report(min(0.1 + 0.85 * (done + 1) / config.trials, 0.95),
                   f"trial {trial.number}: val acc {val_acc:.3f}, {config.objective} {cost:,.4g}")
        return val_acc if config.objective == "none" else (val_acc, cost)
    return objective


def image_zoo(config: SearchConfig, ctx: RunContext) -> list[dict]:
    """The hand-designed models of the family, trained with the same epochs and measured the same way."""
    data = load_dataset(config.dataset, config.data_dir, config.download)
    out = []
    quick = ctx.with_(latency_time=0.05, progress=None, job_id=None)
    for i, spec in enumerate(ZOO[config.space]):
        model, run = get_baseline(BaselineConfig(dataset=config.dataset, model=spec, epochs=config.epochs,
                                                 seed=config.seed, latency_batch=config.latency_batch,
                                                 device=config.device, data_dir=config.data_dir), quick)
        ctx.report(0.1 * (i + 1) / len(ZOO[config.space]), f"zoo: {spec}")
        out.append({**as_record(run), "val_accuracy": accuracy(model, data.x_val, data.y_val),
                    "cost": _cost(config, model, data), "feasible": _violation(config, model, data) is None})
    return out


IMAGE_SEARCH = KINDS.register("image", DataKind(
    "val_accuracy", "validation accuracy (higher is better)", "maximize", image_objective, image_zoo,
    image_check_feasible, lambda accuracy: accuracy, {"accuracy": 0.0},
    "error = 1 - val accuracy; cost / reference cost; both in [0, 1]"))

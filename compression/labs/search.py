"""The search lab: small hardware-aware architecture searches on Optuna; the study lives in the run database.

Objectives: a validation quality and one cost (minimise). On image data the quality is validation accuracy
(maximise) and the cost one of search.strategies.OBJECTIVES; on text (labs.lm_search) it is validation
perplexity (minimise) and the cost one of LM_OBJECTIVES. What differs by kind of data is one DataKind in KINDS;
the study, its workers, resuming and the summary are shared. Every trial is a stored run.

More processes or machines join with `python -m compression worker --study NAME --db URL`; trials spread over
all of them. A study is resumable: a killed worker's trial is failed by the heartbeat and
retried, and `trials` counts finished trials, so a kill -9 costs time, not budget.
"""
from __future__ import annotations

import functools
import logging
import os
import time

import optuna
import torch
from optuna.storages import RetryHeartbeatStaleTrialCallback

from ..core.data import load_dataset
from ..core.measure import count_macs, count_params, measure
from ..core.models import build_model
from ..core.pareto import pareto_mask
from ..core.train import TrainConfig, accuracy, train
from ..errors import LabError
from ..registry import Registry
from ..search.space import IMAGE, TEXT, arch_to_spec, smallest_arch, space_size
from ..search.strategies import OBJECTIVES, ZOO, hypervolume, sampler
from ..store import RunStore, worker_alive
from ..store.artifacts import save_model
from ..text.corpus import is_text_name
from .baseline import get_baseline, predictions_on_test
from .configs import BaselineConfig, SearchConfig
from .context import RunContext
from .lm_search import TEXT_SEARCH
from .records import as_record
from .search_kind import FINISHED, DataKind, optimize_until, start_trial  # noqa: F401  (FINISHED: the plan labs read it here too)

log = logging.getLogger("compression.search")


def _storage(url: str):
    return _process_storage(url, os.getpid())


@functools.lru_cache(maxsize=16)
def _process_storage(url: str, pid: int):  # pid in the key: never share a connection pool across fork
    # One storage (one engine and pool) per database and process: a page polls studies every few seconds, and a
    # new storage per call left its connections open until garbage collection; three pages and two workers
    # then ran PostgreSQL out of connections ("too many clients already").
    # Heartbeats let any worker mark a killed worker's trial as failed (no trial stays "running" forever), and
    # the retry callback re-enqueues it with the same parameters, so the budget counts finished trials.
    return optuna.storages.RDBStorage(url, heartbeat_interval=2, grace_period=6,
                                      heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))


def _cost(config: SearchConfig, model, data) -> float:
    return OBJECTIVES.get(config.objective)(model, data, config.latency_batch)


def _violation(config: SearchConfig, model, data) -> str | None:
    if config.max_params is not None and (p := count_params(model)[0]) > config.max_params:
        return f"{p:,} params > {config.max_params:,}"
    if config.max_macs is not None and (m := count_macs(model, data.input_shape)) > config.max_macs:
        return f"{m:,} MACs > {config.max_macs:,}"
    return None


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
                                   job_id=ctx.job_id, weights_path=save_model(model, data.x_test[:1]))
        trial.set_user_attr("run_id", run_id)
        done = len(trial.study.get_trials(deepcopy=False, states=FINISHED))
        ctx.report(min(0.1 + 0.85 * (done + 1) / config.trials, 0.95),
                   f"trial {trial.number}: val acc {val_acc:.3f}, {config.objective} {cost:,.4g}")
        return val_acc if config.objective == "none" else (val_acc, cost)
    return objective


def _device(config: SearchConfig) -> str:
    return config.device if config.device not in (None, "auto") else "cpu"


def create_study(config: SearchConfig, store: RunStore, name: str | None = None) -> optuna.Study:
    name = name or config.study or f"search-{config.space}-{config.strategy}-{int(time.time() * 1000) % 10**9}"
    quality = kind_of(config).direction
    directions = [quality] if config.objective == "none" else [quality, "minimize"]
    study = optuna.create_study(study_name=name, storage=_storage(store.url), directions=directions,
                                sampler=sampler(config.strategy, config.seed), load_if_exists=True,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    study.set_user_attr("config", config.to_dict())
    return study


def load_config(study_name: str, store: RunStore) -> tuple[optuna.Study, SearchConfig]:
    try:
        summary = optuna.load_study(study_name=study_name, storage=_storage(store.url))
    except KeyError:
        raise LabError(f"No study named '{study_name}' in {store.shown_url}") from None
    if "config" not in summary.user_attrs:  # created a moment ago, its config not written yet
        raise LabError(f"Study '{study_name}' in {store.shown_url} is being created: try again in a moment")
    config = SearchConfig.from_dict(summary.user_attrs["config"])
    study = optuna.load_study(study_name=study_name, storage=_storage(store.url),
                              sampler=sampler(config.strategy, config.seed + int(time.time() * 1000) % 1000),
                              pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    return study, config


def wait_for_study(study_name: str, store: RunStore, wait_s: float,
                   say=lambda message: None) -> tuple[optuna.Study, SearchConfig]:
    """load_config, waiting up to `wait_s` seconds for the study to appear: a class can start its workers before
    anyone starts the search. `say` is told once that it waits."""
    deadline = time.monotonic() + wait_s
    waiting = False
    while True:
        try:
            return load_config(study_name, store)
        except LabError as err:
            if time.monotonic() >= deadline:
                raise LabError(f"{err} (waited {wait_s:g} s)" if wait_s else str(err)) from None
            if not waiting:
                say(f"waiting up to {wait_s:g} s for study '{study_name}' in {store.shown_url}")
                waiting = True
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def reclaim_dead_trials(study: optuna.Study) -> list[int]:
    """Trials left "running" by a killed worker on this host are failed now and re-enqueued with the same
    parameters, without waiting for their heartbeat to go stale. Returns the reclaimed trial numbers."""
    reclaimed = []
    retry = RetryHeartbeatStaleTrialCallback(max_retry=3)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if worker and not worker_alive(worker):
            # what optuna.storages.fail_stale_trials does, for a worker we know is dead (it has no public
            # per-trial form): fail the trial through the storage, then let the retry callback re-enqueue it
            storage, trial_id = study._storage, trial._trial_id
            try:
                failed = storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # its heartbeat check got there first
            if failed:
                retry(study, storage.get_trial(trial_id))
                reclaimed.append(trial.number)
    return reclaimed


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def work(study: optuna.Study, config: SearchConfig, ctx: RunContext) -> None:
    """Run trials until the study holds `config.trials` finished ones, whichever worker ran them (search_kind)."""
    data = load_dataset(config.dataset, config.data_dir, config.download)
    objective = kind_of(config).make_objective(config, study.study_name, data, ctx)
    reclaim_dead_trials(study)
    optimize_until(study, objective, config.trials, ctx.cancelled)


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


KINDS: Registry[DataKind] = Registry("kind of data")
KINDS.register(IMAGE, DataKind("val_accuracy", "validation accuracy (higher is better)", "maximize", image_objective,
                               image_zoo, image_check_feasible, lambda accuracy: accuracy, {"accuracy": 0.0},
                               "error = 1 - val accuracy; cost / reference cost; both in [0, 1]"))
KINDS.register(TEXT, TEXT_SEARCH)


def data_of(dataset: str) -> str:
    return TEXT if is_text_name(dataset) else IMAGE


def kind_of(config: SearchConfig) -> DataKind:
    return KINDS.get(data_of(config.dataset))


def summarize(study: optuna.Study, config: SearchConfig, store: RunStore, zoo: list[dict]) -> dict:
    kind = kind_of(config)
    trials = []
    for t in study.get_trials(deepcopy=False):
        row = {"number": t.number, "status": t.state.name.lower(), "arch": t.user_attrs.get("arch"),
               "run_id": t.user_attrs.get("run_id"), "note": t.user_attrs.get("status")}
        if row["run_id"] is not None:
            try:
                run = store.get_run(row["run_id"])
                row.update(as_record(run))  # with the run's extra: its quality and cost
            except LabError:
                pass  # the run was deleted; the trial stays
        row["status"] = t.state.name.lower()
        trials.append(row)
    scored = [t for t in trials if t["status"] == "complete" and "cost" in t and kind.quality in t]
    zoo_ok = [z for z in zoo if z["feasible"]]
    cost_ref = 1.1 * max([t["cost"] for t in scored] + [z["cost"] for z in zoo] + [1e-9])
    points = [(kind.score(t[kind.quality]), t["cost"]) for t in scored]
    front = pareto_mask([c for _, c in points], [q for q, _ in points])
    return {"study": study.study_name, "config": config.to_dict(), "data": data_of(config.dataset),
            "quality": kind.quality, "quality_label": kind.label,
            "space_size": space_size(config.space, config.choices), "trials": trials,
            "pareto": [t["run_id"] for t, keep in zip(scored, front) if keep],
            "hypervolume": hypervolume(points, cost_ref),
            "zoo": zoo, "zoo_hypervolume": hypervolume([(kind.score(z[kind.quality]), z["cost"]) for z in zoo_ok],
                                                       cost_ref),
            "reference_point": {**kind.reference, "cost": cost_ref, "objective": config.objective,
                                "normalisation": kind.normalisation}}


def run_search(config: SearchConfig, ctx: RunContext | None = None) -> dict:
    """Create (or resume) a study, measure the zoo, run trials here, and summarise both fronts."""
    ctx = ctx or RunContext()
    kind = kind_of(config)
    data = load_dataset(config.dataset, config.data_dir, config.download)
    kind.check_feasible(config, data)
    zoo = kind.zoo_records(config, ctx)
    study = create_study(config, ctx.store)
    study.set_user_attr("zoo", [{k: z[k] for k in ("run_id", "label", "model_name", kind.quality, "cost", "feasible")}
                                for z in zoo])
    work(study, config, ctx)
    ctx.report(1.0, f"{finished_trials(study)} finished trials in {study.study_name}")
    return summarize(study, config, ctx.store, zoo)


def list_studies(store: RunStore, data: str | None = None) -> list[str]:
    """Search studies, newest first; only those on `data` (IMAGE or TEXT) when given."""
    return [s.study_name for s in optuna.get_all_study_summaries(storage=_storage(store.url))
            if s.user_attrs.get("kind", "search") == "search"  # plan studies share the database
            and (data is None or data_of(s.user_attrs.get("config", {}).get("dataset", "")) == data)][::-1]


def study_summary(study_name: str, store: RunStore) -> dict:
    """The live state of a study (trials so far, its zoo, both hypervolumes), for the Search page."""
    study, config = load_config(study_name, store)
    return summarize(study, config, store, study.user_attrs.get("zoo", []))

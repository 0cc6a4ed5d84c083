"""The Optuna mechanics every study of the lab shares: the storage in the run database, a trial's start, a budget
of finished trials, loading, waiting for and reclaiming studies. The search kinds (image.py, text.py) and the plan
labs build on it, so none imports another's internals."""
from __future__ import annotations

import functools
import os
import time
from typing import Callable

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

from ...errors import CancelledError, LabError
from ...search.space import arch_to_spec, suggest
from ...search.strategies import sampler
from ...store import RunStore, worker_alive, worker_name
from ..configs import SearchConfig

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)  # what counts against a budget


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


def start_trial(trial: optuna.Trial, config, ctx) -> tuple[dict, dict]:
    """(arch, spec) of a search trial: stops the study when the user cancelled, samples the architecture and
    records it and the worker (host:pid, to see how trials spread over workers) on the trial."""
    if ctx.cancelled():
        trial.study.stop()
        raise CancelledError("cancelled by the user")
    arch = suggest(trial, config.space, config.choices)
    trial.set_user_attr("arch", arch)
    trial.set_user_attr("worker", worker_name())
    return arch, arch_to_spec(config.space, arch)


def optimize_until(study: optuna.Study, objective: Callable, trials: int, cancelled: Callable[[], bool],
                   deadline: float | None = None) -> bool:
    """Run trials until the study holds `trials` finished ones, whichever process or machine ran them, or until
    `deadline` (time.monotonic()) has passed: then no trial starts, and the one running finishes. Returns whether
    the deadline stopped it.

    Failed trials (a crash, or a worker killed mid-trial and failed by the heartbeat) do not count; the retry
    callback re-enqueues them. Attempts are capped so a trial that always crashes cannot loop forever.
    """
    def past_deadline() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def stop_at_deadline(study: optuna.Study, _trial) -> None:
        if past_deadline():
            study.stop()
    optuna.storages.fail_stale_trials(study)  # other machines' dead workers: failed once their heartbeat is stale
    for _ in range(3 * trials):
        remaining = trials - len(study.get_trials(deepcopy=False, states=FINISHED))
        if remaining <= 0 or cancelled():
            return False
        if past_deadline():
            return True
        study.optimize(objective, n_trials=remaining, catch=(Exception,), gc_after_trial=False,
                       callbacks=[optuna.study.MaxTrialsCallback(trials, states=FINISHED), stop_at_deadline])
    return past_deadline()


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


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

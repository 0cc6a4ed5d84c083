"""What a search does on one kind of data (image or text), as data, and the Optuna mechanics every study of the lab
shares (a trial's start, a budget of finished trials): labs.search, labs.lm_search and the plan labs build on it,
so none imports another's internals."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import optuna

from ..errors import CancelledError
from ..search.space import arch_to_spec, suggest
from ..store import worker_name

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)  # what counts against a budget


@dataclass(frozen=True)
class DataKind:
    """What a search does on one kind of data: how a trial runs, what its zoo is, and how trials rank."""
    quality: str                       # the trial field the front ranks: "val_accuracy", "val_perplexity"
    label: str                         # that field for a reader, with its direction
    direction: str                     # Optuna's direction for it
    make_objective: Callable           # (config, study_name, data, ctx) -> objective(trial)
    zoo_records: Callable              # (config, ctx) -> [{**record, quality, "cost", "feasible"}]
    check_feasible: Callable           # (config, data) -> None, or a LabError when nothing in the space can be
    score: Callable[[float], float]    # quality -> [0, 1], higher is better: what the front and hypervolume read
    reference: dict                    # the quality where the score is 0 (the hypervolume's reference point)
    normalisation: str                 # how quality and cost were normalised, said in every summary


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


def optimize_until(study: optuna.Study, objective: Callable, trials: int, cancelled: Callable[[], bool]) -> None:
    """Run trials until the study holds `trials` finished ones, whichever process or machine ran them.

    Failed trials (a crash, or a worker killed mid-trial and failed by the heartbeat) do not count; the retry
    callback re-enqueues them. Attempts are capped so a trial that always crashes cannot loop forever.
    """
    optuna.storages.fail_stale_trials(study)  # other machines' dead workers: failed once their heartbeat is stale
    for _ in range(3 * trials):
        remaining = trials - len(study.get_trials(deepcopy=False, states=FINISHED))
        if remaining <= 0 or cancelled():
            return
        study.optimize(objective, n_trials=remaining, catch=(Exception,), gc_after_trial=False,
                       callbacks=[optuna.study.MaxTrialsCallback(trials, states=FINISHED)])

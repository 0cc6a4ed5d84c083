"""What a search does on one kind of data (image or text), as data: labs.search and labs.lm_search both build on
it, so neither imports the other's internals."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import optuna

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

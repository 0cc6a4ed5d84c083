"""What a search does on one task's data (image or text), as data: one DataKind per task in KINDS, keyed by the
task's name. The study, its workers, resuming and the summary are shared (study.py, run.py); image.py and text.py
each register the DataKind they are."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ...registry import Registry
from ...tasks import task_of


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


KINDS: Registry[DataKind] = Registry("kind of data")  # task name ("image", "text") -> DataKind


def kind_of(config) -> DataKind:
    """The DataKind of a search: the one its data set's task registered."""
    return KINDS.get(task_of(config.dataset).name)

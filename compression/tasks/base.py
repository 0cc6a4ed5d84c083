"""What a task is: everything that differs between an image classifier and a language model, declared once.

Labs and pages never ask "is this text?": they find the task (`tasks.task_of`) and ask it. A Task declares its
quality metric and which way is better (as lm-evaluation-harness's Task declares `higher_is_better`), its timing
phases, the labs it offers (with one sentence for what it cannot do), its defaults, and the hooks the labs call
to build, train, measure and time its models. Adding a task is one new module that registers one Task
(docs/adding-a-task.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry


@dataclass(frozen=True)
class Quality:
    """A task's quality metric: the record field, how a reader names it, and which way is better."""
    field: str                 # the record's field: "accuracy" or "perplexity"
    label: str                 # for axes and sentences: "test accuracy", "perplexity"
    higher_is_better: bool
    unit: str                  # how a child's change is stated: "pt" (points lost) or "%" (relative increase)
    change: str                # that change for a reader: "accuracy drop", "perplexity increase"

    def loss(self, value: float, base: float) -> float:
        """How much worse `value` is than `base` (positive: worse), in `unit`."""
        return 100 * (base - value) if self.higher_is_better else 100 * (value / base - 1)

    def score(self, value: float) -> float:
        """Higher is better, whatever the field: for sorting and Pareto fronts."""
        return value if self.higher_is_better else -value


class Task:
    """One task. Subclasses set the class attributes and implement the hooks; see image.py and text.py."""
    name: str                          # the key in TASKS and in every record's "task" field
    title: str                         # "image classification", "language modelling"
    quality: Quality
    phases: tuple[str | None, ...]     # the timed phases: (None,) for one figure, ("prefill", "decode")
    labs: frozenset[str]               # the labs that take this task's data sets
    search_data: str                   # search.space's data kind for its architecture spaces
    default_model: str                 # the model a new user starts from
    model_noun: str                    # "an image model", "a language model"
    data_noun: str                     # "an image data set", "text"
    model_hint: str                    # what to pick on this task's data when a model of another task was given
    data_hint: str                     # what to pick for this task's models when data of another task was given

    def owns_dataset(self, name: str) -> bool:
        raise NotImplementedError

    def owns_model(self, name: str) -> bool:
        raise NotImplementedError

    def unavailable(self, lab: str) -> str | None:
        """Why `lab` does not run on this task's models, in one sentence; None when it does."""
        return None

    def __repr__(self) -> str:
        return f"<task {self.name}>"


TASKS: Registry[Task] = Registry("task")


def register_task(task: Task) -> Task:
    """Each task module registers its one Task at import (tasks/__init__ imports them all)."""
    TASKS.register(task.name, task, about=task.title)
    return task

"""The task seam: `TASKS` (name -> Task) and `task_of(anything)`, the one way the lab finds out what kind of model
and data it handles. See base.Task for what a task declares, and docs/adding-a-task.md for how to add one."""
from __future__ import annotations

from ..errors import LabError
from .base import TASKS, Quality, Task, register_task
from .image import IMAGE_TASK  # each task module registers its Task
from .text import TEXT_TASK

DEFAULT_TASK = IMAGE_TASK  # a name no task claims (an unknown data set, a torchvision model) is an image one


def task_of(thing) -> Task:
    """The task of a data set name, a model spec (str or dict), a loaded Dataset, a stored run, a record or a
    config dict, or a Task. Records and runs say their task (older ones fall back to their data set's)."""
    if isinstance(thing, Task):
        return thing
    if isinstance(thing, str):
        return next((t for t in TASKS.values() if t is not DEFAULT_TASK and (t.owns_dataset(thing) or
                                                                           t.owns_model(thing))), DEFAULT_TASK)
    if isinstance(thing, dict):
        named = thing.get("task") or (thing.get("record") or {}).get("task")
        if named in TASKS:
            return TASKS.get(named)
        if "dataset" in thing:
            return task_of(str(thing["dataset"]))
        if "name" in thing:  # a parsed model spec
            return task_of(str(thing["name"]))
        return DEFAULT_TASK
    kind = getattr(thing, "kind", None)  # a loaded Dataset
    if kind in TASKS:
        return TASKS.get(kind)
    return task_of(str(thing)) if thing is not None else DEFAULT_TASK


def check_model_fits_data(dataset: str, model: str | dict) -> None:
    """A model of the data set's task (an image model on images, a language model on text): one sentence
    otherwise, with what to pick instead."""
    from ..core.models import format_spec, parse_spec
    spec = parse_spec(model)
    data_task, model_task = task_of(str(dataset)), task_of(spec)
    if data_task is not model_task:
        hint = data_task.model_hint if data_task is not DEFAULT_TASK else model_task.data_hint
        raise LabError(f"{format_spec(spec)} is {model_task.model_noun}, and '{dataset}' is {data_task.data_noun}: "
                       f"{hint}.")


__all__ = ["TASKS", "Task", "Quality", "task_of", "check_model_fits_data", "register_task", "IMAGE_TASK", "TEXT_TASK"]

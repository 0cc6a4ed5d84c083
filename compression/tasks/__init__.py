"""The task seam: `TASKS` (name -> Task) and `task_of(anything)`, the one way the lab finds out what kind of model
and data it handles. See base.Task for what a task declares, and docs/adding-a-task.md for how to add one."""
from __future__ import annotations

from .base import TASKS, Quality, Task, Training, check_model_fits_data, register_task, task_of
from .image import IMAGE_TASK  # each task module registers its Task
from .text import TEXT_TASK

__all__ = ["TASKS", "Task", "Quality", "task_of", "check_model_fits_data", "register_task", "IMAGE_TASK", "TEXT_TASK"]

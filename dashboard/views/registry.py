"""The views by task name, and the one way a page finds the view of a thing. Kept apart from views/__init__ so that
the view modules (and the job panel) can import it while the package registers them."""
from __future__ import annotations

from compression.registry import Registry
from compression.tasks import task_of

from .base import View

VIEWS: Registry[View] = Registry("view")


def register_view(view: View) -> View:
    """Each view module registers its one View at import (views/__init__ imports them all)."""
    VIEWS.register(view.name, view, about=view.task.title)
    return view


def view_of(thing) -> View:
    """The view of a data set name, a model spec, a run, a record, a job's params or a Task."""
    return VIEWS[task_of(thing).name]

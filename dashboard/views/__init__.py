"""The dashboard's side of the task seam: one View per task (views/image.py, views/text.py), registered in VIEWS by
task name. Pages ask `current_view()` (the sidebar's data set) or `view_of(record)` and call what it holds; none
branches on text vs image. A new task is one module that registers its View (see base.View for the fields)."""
from __future__ import annotations

import streamlit as st

from .. import state
from .base import View
from .registry import VIEWS, register_view, view_of
from .image import IMAGE_VIEW  # each view module registers its View
from .text import TEXT_VIEW


def current_view() -> View:
    """The view of the sidebar's data set."""
    return view_of(state.dataset_name())


def baseline_params() -> dict:
    """What picks the baseline: the same keys as the CLI's train verb, with the sidebar's data set's own (a language
    model's training steps)."""
    return state.baseline_params(**current_view().sidebar.train_params(st.session_state))


def metric_cards(record: dict, baseline: dict | None = None) -> None:
    """A run's metric cards, as its own task shows them; deltas against a baseline where the task has them."""
    view_of(record).run.metric_cards(record, baseline)


__all__ = ["VIEWS", "View", "view_of", "current_view", "register_view", "baseline_params", "metric_cards",
           "IMAGE_VIEW", "TEXT_VIEW"]

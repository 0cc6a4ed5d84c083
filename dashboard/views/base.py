"""What a view is: everything a page draws differently for one task, declared once (the dashboard's side of
compression.tasks). Pages never ask "is this text?": they take `current_view()` (the sidebar's data set) or
`view_of(record)` and call what it holds. Adding a task to the dashboard is one module that registers one View.

Each field is plain data (a label, a sentence, a dict of choices) or a function that draws a section with
Streamlit; the page around it draws what every task shares (titles, the job panel, the run pickers)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from compression.tasks import Task, task_of

Draw = Callable[..., None]


@dataclass(frozen=True)
class View:
    task: Task
    # --- the sidebar
    model_help: Callable[[list[str]], str]      # the Baseline model picker's help, given the names it lists
    model_args_placeholder: str
    length_input: Callable[[Any], None]          # the training-length widget (epochs or steps), in a column
    train_params: Callable[[Any], dict]          # what that widget adds to the baseline's params (session state in)
    # --- the Baseline page
    length_text: Callable[[dict], str]           # "10 epochs", "300 steps"
    own_model: Draw                              # (params): how to bring one's own trained model
    training_curves: Callable[[list[dict]], Any]  # a stored run's history as a Figure
    live_curves: Callable[[list[dict]], Any]     # a running job's events as a Figure (cached)
    after_baseline: Draw                         # (record): what follows the baseline's cards and curves
    metric_cards: Draw                           # (record, baseline or None)
    # --- the labs
    prune_intro: str
    prune_form: Draw                             # (params)
    prune_results: Draw                          # (children, parent)
    quantize: Draw                               # (params, all runs of the data set, runs by id): the whole lab
    distill_intro: str
    distill: Draw                                # (params): the form, the job panel and the studies
    search_intro: str
    search_form: Draw                            # (params, family, choices)
    search_results: Draw                         # (study summary, params)
    space_note: str                              # ends the "The space holds N architectures" line
    search_noun: str                             # "No searches yet on ..."
    plan_intro: str
    plan_goals: dict                             # what a user asks for -> (target kind, factors, default factor)
    plan_budget: Callable[[Any], dict]           # the quality budget's slider, in a column -> the job's keys
    plan_trials: tuple                           # the trial budget slider: (most, default, help)
    plan_limit: Callable[[float], str]           # a plan's quality limit in words: "1 pt", "10% perplexity"
    plan_winner: Draw                            # (best, speed column, quality column, churn column)
    # --- the results
    frame: Callable[[list[dict]], Any]           # records -> the DataFrame its charts and tables read
    home_charts: Draw                            # (frame)
    compare: Draw                                # (this view's records): the Compare page
    report_charts: Draw                          # (records): the Report's charts and table
    no_runs: str                                 # "No finished runs yet{no_runs}."
    retime_batch: int | None                     # the batch a missing claim is re-timed at (None: the record's)
    change_caption: str                          # the Report's "What changed" caption
    compute_change: Callable[[int, int], tuple]  # (run A, run B) -> (diff, thumbnails)
    show_change: Draw                            # (change, names)
    change_html: Callable[..., str]              # (diff, thumbnails, names) -> the offline report's HTML
    change_intro: str                            # the offline report's paragraph before those

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def phases(self) -> tuple:
        return self.task.phases

    @property
    def default_model(self) -> str:
        return self.task.default_model

    def owns(self, thing) -> bool:
        """A data set, model name, run or record of this view's task."""
        return task_of(thing).name == self.name

    def records(self, records: list[dict]) -> list[dict]:
        return [r for r in records if self.owns(r)]

    def __repr__(self) -> str:
        return f"<view {self.name}>"

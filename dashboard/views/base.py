"""What a view is: everything a page draws differently for one task, declared once (the dashboard's side of
compression.tasks). Pages never ask "is this text?": they take `current_view()` (the sidebar's data set) or
`view_of(record)` and call what it holds. Adding a task to the dashboard is one module that registers one View.

A View holds one small table per part of the app. Each field is plain data (a sentence, a dict of choices) or a
function that draws a section with Streamlit; the page around it draws what every task shares (titles, the job
panel, the run pickers)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from compression.tasks import Task, task_of

Draw = Callable[..., None]  # draws with Streamlit; what it takes is said beside each field


@dataclass(frozen=True)
class Sidebar:
    model_help: Callable[[list[str]], str]      # the Baseline model picker's help, given the names it lists
    model_args_placeholder: str
    length_input: Callable[[Any], None]          # the training-length widget (epochs or steps), in a column
    train_params: Callable[[Any], dict]          # what that widget adds to the baseline's params (session state in)
    model_note: Draw = lambda spec: None         # (the model spec): a line under the picker, e.g. hf's family


@dataclass(frozen=True)
class Run:
    """How one run is shown: its cards and curves, and what the Baseline page says around it."""
    metric_cards: Draw                           # (record, baseline or None)
    training_curves: Callable[[list[dict]], Any]  # a stored run's history -> a Figure
    live_curves: Callable[[list[dict]], Any]     # a running job's events -> a Figure (cached: the panel polls)
    length_text: Callable[[dict], str]           # the baseline's params -> "10 epochs", "300 steps"
    own_model: Draw                              # (params): how to bring one's own trained model
    sample: Draw                                 # (record): what follows the baseline's cards (what a model writes)


@dataclass(frozen=True)
class Lab:
    """A lab's part of its page: the task's form, how its results are drawn (None: `form` draws the whole lab,
    results included), and the sentence under the page's title where it differs by task."""
    form: Draw
    results: Draw | None = None
    intro: str = ""


@dataclass(frozen=True)
class Search:
    intro: str
    form: Draw                                   # (params, family, choices)
    results: Draw                                # (study summary, params)
    space_note: str                              # ends "The space holds N architectures"
    noun: str                                    # "No searches yet on ..."


@dataclass(frozen=True)
class Plan:
    intro: str
    goals: dict                                  # what a user asks for -> (target kind, factors, default factor)
    budget: Callable[[Any], dict]                # the quality budget's slider, in a column -> the job's keys
    trials: tuple                                # the trial budget slider: (most, default, help)
    limit: Callable[[float], str]                # a plan's quality limit in words: "1 pt", "10% perplexity"
    winner: Draw                                 # (best, speed column, quality column, churn column)


@dataclass(frozen=True)
class Results:
    frame: Callable[[list[dict]], Any]           # records -> the DataFrame the charts and tables read
    home: Draw                                   # (frame): Home's two charts
    compare: Draw                                # (this view's records): the Compare page below its picker
    report: Draw                                 # (records): the Report's charts and table
    no_runs: str                                 # "No finished runs yet{no_runs}."
    retime_batch: int | None                     # the batch a missing claim is re-timed at (None: the record's)


@dataclass(frozen=True)
class Change:
    """What compression changed between two runs, on the Report and in its offline HTML."""
    caption: str
    compute: Callable[[int, int], tuple]         # (run A, run B) -> (diff, thumbnails)
    show: Draw                                   # (change, names)
    html: Callable[..., str]                     # (diff, thumbnails, names) -> the offline report's HTML
    intro: str                                   # the offline report's paragraph before those


@dataclass(frozen=True)
class View:
    task: Task
    sidebar: Sidebar
    run: Run
    prune: Lab                                   # form (params), results (children, parent)
    quantize: Lab                                # form (params, the data set's runs, runs by id): the whole lab
    distill: Lab                                 # form (params): the whole lab
    search: Search
    plan: Plan
    results: Results
    change: Change

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

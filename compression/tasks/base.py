"""What a task is: everything that differs between an image classifier and a language model, declared once.

Labs and pages never ask "is this text?": they find the task (`tasks.task_of`) and ask it. A Task declares its
quality metric and which way is better (as lm-evaluation-harness's Task declares `higher_is_better`), its timing
phases, the labs it offers (with one sentence for what it cannot do), its defaults, and the hooks the labs call
to build, train, measure and time its models. Adding a task is one new module that registers one Task
(docs/adding-a-task.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..core.models import format_spec, parse_spec
from ..errors import LabError
from ..registry import Registry


@dataclass
class Training:
    """How a baseline is trained, found before training: the key a stored baseline is reused by, and what a task
    had to load or build to compute it (a language model's key needs its corpus and its context)."""
    key: str
    train_config: Any
    data: Any = None
    model: Any = None
    context: int | None = None


@dataclass
class Arm:
    """One student of a distillation study: how it is trained, and what its child run says."""
    method: str                  # "student_plain", "student_kd", "student_pruned_kd"
    label: str
    seed: int
    temperature: float | None    # None for a student trained alone
    spec: dict                   # the student's model spec
    config: dict                 # the child run's config
    extra: dict                  # the child run's extra, besides its training history
    train: Callable              # (step: RunContext) -> (model, history)


# the key of a child's extra that says how it trained after its parent (the task's own training config, as a dict):
# the labs hand it to Task.control, which makes the child's fair reference from it
FINETUNE_CONFIG = "finetune_config"


@dataclass
class Control:
    """A child's fair reference: its parent trained on exactly as the child was after it (same steps, data, seed and
    schedule), so a child that trained longer than its parent is not credited with the parent's under-training."""
    key: str                     # the stored control it is reused from (with its parent): one per training
    label: str                   # "gpt ... trained 150 more steps, lr 0.001, seed 0 (control)"
    config: dict                 # the control run's config: its parent, its training, `key` as "cache_key"
    train: Callable              # (model: the parent's stored weights, loaded afresh; step: RunContext) -> history


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
    """One task. A subclass sets the declarations and implements every hook (image.py and text.py are the two);
    labs call the hooks with their own objects (a config, a RunContext `ctx`, a labs.parent.Parent and Child),
    so a task never imports a lab."""
    # --- what it is -------------------------------------------------------------------------------------------
    name: str                          # the key in TASKS and in every record's "task" field
    title: str                         # "image classification", "language modelling"
    quality: Quality
    phases: tuple[str | None, ...]     # the timed phases: (None,) for one figure, or ("prefill", "decode")
    labs: frozenset[str]               # the labs that take this task's data sets
    generates: bool                    # its models continue a prompt (the `generate` verb)
    compressed_files: bool             # the lab's .cldc codec (labs.io.compressed) encodes its models
    search_data: str                   # search.space's data kind: which architecture spaces fit it
    search_constraints: tuple[str, ...]  # the search constraints it measures ("max_params", "max_macs")
    # --- defaults and words -----------------------------------------------------------------------------------
    default_model: str                 # the model a new user starts from
    default_prune_method: str
    finetune_epochs: int               # after pruning, unless the user says
    model_noun: str                    # "an image model", "a language model"
    data_noun: str                     # "an image data set", "text"
    model_hint: str                    # what to pick on this task's data when a model of another task was given
    data_hint: str                     # what to pick for this task's models when data of another task was given
    quantize_refusal_is_error = False  # a quantize method it refuses stops the lab (exit code 2), not a note

    def owns_dataset(self, name: str) -> bool:
        """Is `name` one of this task's data sets? (The default task owns every name no other task claims.)"""
        raise NotImplementedError

    def owns_model(self, name: str) -> bool:
        """Is `name` (a model spec's name) one of this task's model families?"""
        raise NotImplementedError

    def unavailable(self, lab: str) -> str | None:
        """Why `lab` does not run on this task's models, in one sentence; None when it does."""
        return None

    # --- baselines: labs.baseline's one path --------------------------------------------------------------------
    def training(self, config, spec: dict, ctx) -> Training:
        """How a BaselineConfig trains this spec, and the key a stored baseline is reused by."""
        raise NotImplementedError

    def reusable(self, run: dict, config) -> bool:
        """May a stored baseline with the same key stand for this config (e.g. the same latency batch)?"""
        raise NotImplementedError

    def reused(self, ctx, config, model, run: dict) -> dict:
        """The stored run as reused here (re-timed when its timing does not hold on this machine)."""
        raise NotImplementedError

    def train_baseline(self, config, spec: dict, training: Training, data, ctx) -> tuple:
        """(model, history, run-config fields): built and trained (or loaded), ready to measure."""
        raise NotImplementedError

    def baseline_label(self, spec: dict, config, training: Training) -> str:
        raise NotImplementedError

    def baseline_extra(self, model, data, history: list) -> dict:
        """What a baseline run keeps besides its record (its curve; an image model's test answers)."""
        raise NotImplementedError

    # --- measuring and timing: one record and paired speed-ups for every run ----------------------------------
    def measure(self, model, data, ctx, latency_batch: int, context: int | None = None, input_dtype=None) -> dict:
        """The run record: quality, size, MACs and latency, stamped with this task's name."""
        raise NotImplementedError

    def example_input(self, data, context: int | None = None):
        """One input, for tracing and the model file's read-back check."""
        raise NotImplementedError

    def parent_fields(self, model, run: dict, data, ctx, latency_batch: int) -> dict:
        """A Parent's record measured in this process, its latency batch, and (language models) its context."""
        raise NotImplementedError

    def measure_child(self, ctx, parent, model, child, reloaded) -> dict:
        """A child's record, measured like its parent's; `reloaded` is the model as stored (what gets timed)."""
        raise NotImplementedError

    def paired_timings(self, ctx, parent, model, child, record: dict) -> list[dict]:
        """The child timed together with its parent in each phase: the only source of its speed-ups."""
        raise NotImplementedError

    def child_extra(self, ctx, parent, model, child, under: dict) -> dict:
        """What a child run keeps besides its record (an image model's answers and flip rate)."""
        raise NotImplementedError

    def retime_pair(self, run_a: dict, model_a, model_b, data, *, phase, batch_size, dtype_b, device,
                    rounds) -> dict:
        """Two stored runs timed together again (the `speedup` verb, the Report's re-timing)."""
        raise NotImplementedError

    def quality_change(self, record: dict, baseline: dict) -> tuple[str, dict]:
        """A child's quality against its reference, as a reader says it, and the field it is stored as; a child
        with a fair control (`control`) is stated against it first."""
        raise NotImplementedError

    # --- fair controls: a child that trained after its parent against the parent trained as long ---------------
    def control(self, parent, training: dict | None) -> Control | None:
        """How to make the fair reference of a child that trained `training` (its extra's FINETUNE_CONFIG) after
        `parent` (a labs.parent.Parent): the parent's own weights trained just as long, on the same data, seed and
        schedule, with the plain task loss. None when the child did not train, or when the task's children have
        their fair references elsewhere (image: the distill lab's arms)."""
        raise NotImplementedError

    def versus_control(self, record: dict, control: dict) -> dict:
        """The fields a child's record gains from its stored `control` run: its id and quality, the change against
        it and a paired comparison on the same test examples where the task has one."""
        raise NotImplementedError

    # --- the labs' questions ----------------------------------------------------------------------------------
    def check_prune_method(self, method: str) -> None:
        """One sentence (LabError) when `method` does not prune this task's models."""
        raise NotImplementedError

    def prune_configs(self, config) -> list:
        """The prune lab's sweep for a PruneLabConfig: one technique config per child."""
        raise NotImplementedError

    def prune_check(self, method: str):
        """What `method` needs of the parent model, checked before it is measured (a callable), or None."""
        raise NotImplementedError

    def prune_name(self, method: str, prune_config) -> str:
        raise NotImplementedError

    def prune_child(self, parent, config, prune_config, step, ctx, name: str) -> tuple:
        """(pruned model, its run's extra, its label, its result's fields), fine-tuned as the config asks."""
        raise NotImplementedError

    def quantize_refusal(self, method: str, device: str) -> tuple[str, str | None]:
        """(the device the method runs on, why it cannot run here or None)."""
        raise NotImplementedError

    def quantize_data(self, parent):
        """The calibration data a quantization method gets (None: it needs none)."""
        raise NotImplementedError

    def quantize_notes(self, parent, method: str, report: dict) -> dict:
        """The method's report, with what its speed-up means for this task's models."""
        raise NotImplementedError

    def check_distill(self, config) -> None:
        """A DistillLabConfig's task-specific checks, one sentence each."""
        raise NotImplementedError

    def teacher_baseline(self, config) -> dict:
        """The BaselineConfig fields of a teacher named by its spec."""
        raise NotImplementedError

    def check_teacher(self, model, data) -> None:
        raise NotImplementedError

    def distill_arms(self, config, teacher) -> list[Arm]:
        """Every student of the study, each a fair pair: the same seed, data and training with and without the
        teacher."""
        raise NotImplementedError

    def distill_summary(self, config, teacher, results: dict) -> dict:
        """The study's output from its students' records, grouped by method."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<task {self.name}>"


TASKS: Registry[Task] = Registry("task")


def register_task(task: Task) -> Task:
    """Each task module registers its one Task at import (tasks/__init__ imports them all)."""
    TASKS.register(task.name, task, about=task.title)
    return task


DEFAULT_TASK = "image"  # a name no task claims (an unknown data set, a torchvision model) is an image one's


def _default() -> Task:
    return TASKS.get(DEFAULT_TASK)


def task_of(thing) -> Task:
    """The task of a data set name, a model spec (str or dict), a loaded Dataset, a stored run, a record or a
    config dict, or a Task. Records and runs say their task (older ones fall back to their data set's)."""
    if isinstance(thing, Task):
        return thing
    if isinstance(thing, str):
        return next((t for t in TASKS.values() if t is not _default() and (t.owns_dataset(thing) or
                                                                           t.owns_model(thing))), _default())
    if isinstance(thing, dict):
        named = thing.get("task") or (thing.get("record") or {}).get("task")
        if named in TASKS:
            return TASKS.get(named)
        if "dataset" in thing:
            return task_of(str(thing["dataset"]))
        if "name" in thing:  # a parsed model spec
            return task_of(str(thing["name"]))
        # a bare record (hand-written, or a test's): the task whose quality metric it carries, the default's last
        # (a language model's record may carry an accuracy too: next-token accuracy)
        return next((t for t in TASKS.values() if t is not _default() and thing.get(t.quality.field) is not None),
                    _default())
    kind = getattr(thing, "kind", DEFAULT_TASK)  # a loaded Dataset (image ones have no kind)
    return TASKS.get(kind) if kind in TASKS else _default()


def check_model_fits_data(dataset: str, model: str | dict) -> None:
    """A model of the data set's task (an image model on images, a language model on text): one sentence
    otherwise, with what to pick instead."""
    spec = parse_spec(model)
    data_task, model_task = task_of(str(dataset)), task_of(spec)
    if data_task is not model_task:
        hint = data_task.model_hint if data_task is not _default() else model_task.data_hint
        raise LabError(f"{format_spec(spec)} is {model_task.model_noun}, and '{dataset}' is {data_task.data_noun}: "
                       f"{hint}.")

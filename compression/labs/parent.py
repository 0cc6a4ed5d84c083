"""Parents and children, for every task: the model a technique starts from, measured in this process, and a
technique's output stored as a child run, measured the same way and timed together with its parent. What differs
by task (the measurement, the timed phases, the answers kept) is the parent's Task's to say."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..core.data import Dataset, load_dataset
from ..core.models import format_spec
from ..core.timing import machine_fingerprint
from ..errors import LabError
from ..store.artifacts import load_run_model, save_model
from ..tasks import Task, task_of
from .configs import BaselineConfig, CommonConfig, TechniqueConfig
from .context import RunContext
from ..core.paired import record_fields
from .records import as_record


@dataclass
class Parent:
    """The model a technique starts from, its data, and its measurement taken in this process."""
    model: nn.Module
    run: dict
    data: Dataset
    record: dict
    latency_batch: int                 # the batch a latency figure means (a language model's: its prefill batch)
    task: Task
    context: int | None = None         # a language model's tokens per sequence, as its record was measured

    def as_baseline(self) -> dict:
        return {**as_record(self.run), **self.record}

    @property
    def prefill_batch(self) -> int:
        return self.latency_batch

    def calibration(self, sequences: int, seed: int) -> torch.Tensor:
        """`sequences` windows of the training split (seeded), the papers' calibration data."""
        return self.data.windows(self.model.tokenizer, "train", self.context, limit=sequences, seed=seed)[0]


def measured_parent(model: nn.Module, run: dict, data: Dataset, ctx: RunContext, latency_batch: int) -> Parent:
    """A stored run measured in this process, so its children's speed-ups compare timings taken together."""
    task = task_of(run)
    return Parent(model, run, data, task=task, **task.parent_fields(model, run, data, ctx, latency_batch))


def resolve_parent(config: TechniqueConfig, ctx: RunContext) -> tuple[nn.Module, dict]:
    """The model a technique starts from: any stored run (`from_run`), else the cached baseline."""
    if config.from_run is not None:
        run = ctx.store.get_run(config.from_run)
        if run["status"] != "done":
            raise LabError(f"Run {config.from_run} is {run['status']}, not done; it has no model to start from.")
        return load_run_model(run["weights_path"]), run
    from .baseline import get_baseline  # the baseline path stores its runs through this module's measure
    return get_baseline(config.subset(BaselineConfig), ctx)


def prepare_parent(config: TechniqueConfig, ctx: RunContext,
                   check: Callable[[nn.Module], None] | None = None) -> Parent:
    """Resolve the parent (10% of the bar), `check` it (a method that cannot handle it says so before any
    measuring), load its data and measure it here."""
    model, run = resolve_parent(config, ctx.slice(0.0, 0.1))
    if check is not None:
        check(model)
    data = load_dataset(run["dataset"], config.data_dir, config.download)
    return measured_parent(model, run, data, ctx, config.latency_batch)


def parent_task(config: TechniqueConfig, ctx: RunContext) -> Task:
    """The task of the model a technique starts from (a stored run's, with `--from`), known before it loads."""
    return task_of(ctx.store.get_run(config.from_run) if config.from_run is not None else config.dataset)


@dataclass
class Child:
    """What a technique made, to be stored as a child run: its kind, method, label, config and report."""
    kind: str
    method: str
    label: str
    config: dict
    extra: dict = field(default_factory=dict)
    model_spec: dict | None = None            # when the child is a new architecture (a distilled student)
    input_dtype: torch.dtype = torch.float32
    float_model: nn.Module | None = None      # the model before quantization: int8 kernels do its MACs
    control: dict | None = None               # its fair control run (fair_control), for a child that trained


def store_child(ctx: RunContext, parent: Parent, model: nn.Module, child: Child, under: dict | None = None) -> dict:
    """Measure a technique's output in this process, next to its parent, and store it as a child run of
    `under` (default: the parent). Speed-ups are against the parent's measurement from this process.

    The model is saved first and, when the store keeps it as TorchScript (FX-quantized graphs do not unpickle),
    measured as reloaded: the FX module runs its graph in Python, about 0.15 ms a call, and a claim timed on it
    was 1.1x where every re-timing of the stored file said 1.5-1.8x (issue 23)."""
    task = parent.task
    weights_path = save_model(model, task.example_input(parent.data, parent.context))
    timed = load_run_model(weights_path) if weights_path.endswith(".ts") else model
    record = task.measure_child(ctx, parent, model, child, timed)
    if child.control is not None:  # measured on the same test windows: the paired comparison is the fair one
        record.update(task.versus_control(record, child.control))
    timings = task.paired_timings(ctx, parent, timed, child, record)
    for timing in timings:
        record.update(record_fields(timing))
    up = under or parent.run
    record["speedup_reference"] = parent.run["id"]  # every speedup_* field is against this run, timed together
    extra = task.child_extra(ctx, parent, timed, child, up)
    run_id = ctx.store.add_run(child.kind, up["dataset"], child.model_spec or up["model"],
                               config_as_applied(child.config, parent.run), parent_id=up["id"], record=record,
                               extra=extra, method=child.method,
                               label=child.label, job_id=ctx.job_id, weights_path=weights_path)
    reference = "parent" if up["id"] == parent.run["id"] else "ancestor"
    for timing in timings:
        ctx.store.add_machine(machine_fingerprint(timing["device"], timing["threads"]))
        ctx.store.add_speedup(parent.run["id"], run_id, timing, reference)
    return ctx.store.get_run(run_id)


CONTROL_KIND = "control"


def fair_control(ctx: RunContext, parent: Parent, training: dict | None) -> dict | None:
    """The fair reference of a child that trained `training` (its extra's FINETUNE_CONFIG) after `parent`: the
    parent's own stored weights trained just as long, with the same data, seed and schedule (the task's `control`),
    stored as a run of kind "control" under the parent, measured and timed like any child. Stored once per (parent
    run, training): a second child with the same fine-tune reuses it. None when the child did not train."""
    control = parent.task.control(parent, training)
    if control is None:
        return None
    for run in reversed(ctx.store.list_runs(kind=CONTROL_KIND, dataset=parent.run["dataset"], status="done")):
        if run["parent_id"] == parent.run["id"] and run["config"].get("cache_key") == control.key:
            ctx.report(1.0, f"Reusing the control run {run['id']}: {control.label}")
            return run
    model = load_run_model(parent.run["weights_path"])  # its own stored weights, not a copy that a lab touched
    history = control.train(model, ctx.slice(0.0, 0.8, control.label))
    ctx.report(0.85, f"{control.label}: measuring it and timing it with its parent")
    return store_child(ctx, parent, model.eval(), Child(CONTROL_KIND, CONTROL_KIND, control.label, control.config,
                                                        {"history": history, "control_of": parent.run["id"]}))


# flags that only say how to train a baseline: a technique started from a stored run (--from) never used them
_TRAINING_ONLY = set(BaselineConfig.field_names()) - set(CommonConfig.field_names()) - {"model"}


def config_as_applied(config: dict, parent_run: dict) -> dict:
    """The config stored with a child: from a stored run, it names that run's model and data set, not the
    baseline flags' defaults (which were ignored), so a reader of the run is not told "lenet5, 10 epochs"."""
    if not config.get("from_run"):
        return config
    out = {k: v for k, v in config.items() if k not in _TRAINING_ONLY}
    return {**out, "model": format_spec(parent_run["model"]), "dataset": parent_run["dataset"]}

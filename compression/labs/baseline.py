"""Baselines: train (or reuse) the model a technique starts from, measure it and store it as a run. One path for
every task; the task says how its models are keyed, built, trained and measured."""
from __future__ import annotations

from torch import nn

from ..core.data import load_dataset
from ..core.models import parse_spec
from ..store.artifacts import load_run_model, save_model
from ..tasks import Task, Training
from .configs import BaselineConfig
from .context import RunContext
from .records import as_record


def _stored_baseline(ctx: RunContext, config: BaselineConfig, task: Task, key: str):
    """A stored baseline with the same data, spec and training (and what else the task requires, e.g. an image
    model's latency batch), if its weights load: (model, run, as the task reuses it), else None."""
    for run in reversed(ctx.store.list_runs(kind="train", dataset=config.dataset, status="done")):
        if run["config"].get("cache_key") == key and task.reusable(run, config):
            try:
                model = load_run_model(run["weights_path"])
            except Exception:
                continue  # weights missing or stale: fall through and rebuild
            return model, task.reused(ctx, config, model, run)
    return None


def get_baseline(config: BaselineConfig, ctx: RunContext | None = None) -> tuple[nn.Module, dict]:
    """Return (model, run). A stored run with the same data, spec, training (and for images latency batch) is
    reused as is (instant); else the model is trained (or its cached weights loaded), then measured."""
    ctx = ctx or RunContext()
    task = config.task()
    spec = parse_spec(config.model)
    training: Training = task.training(config, spec, ctx)
    stored = _stored_baseline(ctx, config, task, training.key)
    if stored is not None:
        ctx.report(1.0, f"Loaded stored baseline run {stored[1]['id']}")
        return stored
    data = training.data or load_dataset(config.dataset, config.data_dir, config.download)
    model, history, fields = task.train_baseline(config, spec, training, data, ctx)
    record = task.measure(model, data, ctx, config.latency_batch, training.context)
    run_id = ctx.store.add_run("train", config.dataset, spec, {**config.to_dict(), **fields}, record=record,
                               method="baseline", label=task.baseline_label(spec, config, training),
                               extra=task.baseline_extra(model, data, history), job_id=ctx.job_id,
                               weights_path=save_model(model, task.example_input(data, training.context)))
    ctx.report(1.0, f"Stored baseline run {run_id}")
    return model, ctx.store.get_run(run_id)


def run_train(config: BaselineConfig, ctx: RunContext | None = None) -> dict:
    """The train lab: the baseline's record."""
    _, run = get_baseline(config, ctx)
    return as_record(run)

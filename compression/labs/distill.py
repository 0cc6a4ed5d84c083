"""The distill lab: students trained alone next to the same students distilled from a teacher (same seeds, data
and training), or a language model's Minitron arms; each student a child run of the teacher, measured and timed
with it. The teacher's task says which students there are and how each trains."""
from __future__ import annotations

import statistics

from ..core.data import load_dataset
from ..errors import LabError
from ..store.artifacts import load_run_model
from ..tasks.image import gap_closed  # noqa: F401  (the Distill page reads it here)
from .baseline import get_baseline
from .configs import BaselineConfig, DistillLabConfig
from .context import RunContext
from ..tasks.base import FINETUNE_CONFIG
from .parent import Child, fair_control, measured_parent, store_child
from .records import as_record

METHOD_LABELS = {"student_plain": "Student alone", "student_kd": "Student with KD"}


def _teacher(config: DistillLabConfig, ctx: RunContext):
    """A stored run id, or a model spec whose baseline is trained (or loaded) as the task trains teachers."""
    if str(config.teacher).isdigit():
        run = ctx.store.get_run(int(config.teacher))
        if run["dataset"] != config.dataset:
            raise LabError(f"Teacher run {config.teacher} was trained on {run['dataset']}, not {config.dataset}: "
                           "teacher and student must use the same data set.")
        return load_run_model(run["weights_path"]), run
    return get_baseline(BaselineConfig(**config.task().teacher_baseline(config)), ctx)


def run_distill(config: DistillLabConfig, ctx: RunContext | None = None) -> dict:
    """Returns {"teacher", "student_plain": [per seed], "student_kd": [per seed and T], "gap_closed", "sweep"}, and
    for a language model's Minitron arms "student_pruned_kd" and "minitron"."""
    ctx = ctx or RunContext()
    task = config.task()
    teacher_model, teacher_run = _teacher(config, ctx.slice(0.0, 0.1, "teacher"))
    data = load_dataset(config.dataset, config.data_dir, config.download)
    task.check_teacher(teacher_model, data)
    teacher = measured_parent(teacher_model, teacher_run, data, ctx, config.latency_batch)
    arms = task.distill_arms(config, teacher)
    results: dict[str, list[dict]] = {}
    for i, arm in enumerate(arms):
        step = ctx.slice(0.12 + 0.85 * i / len(arms), 0.12 + 0.85 * (i + 1) / len(arms), arm.label)
        model, history = arm.train(step)
        # every student is also measured against the teacher trained as long, on the same batches (one per seed)
        control = fair_control(step.slice(0.85, 0.95), teacher, arm.extra.get(FINETUNE_CONFIG))
        if control is not None and all(c["run_id"] != control["id"] for c in results.get("control", [])):
            results.setdefault("control", []).append(as_record(control))
        run = store_child(ctx, teacher, model, Child("distill", arm.method, arm.label, arm.config,
                                                     {"history": history, **arm.extra}, model_spec=arm.spec,
                                                     control=control))
        results.setdefault(arm.method, []).append({**as_record(run), "temperature": arm.temperature,
                                                   "seed": arm.seed})
    ctx.report(1.0, f"Stored {len(arms)} student run(s)")
    return task.distill_summary(config, teacher, results)


def study_summary(records: list[dict], teacher: dict | None) -> dict:
    """The Distill page's headline for one study: teacher, mean plain and KD accuracy per T, gap closed."""
    plain = [r["accuracy"] for r in records if r["method"] == "student_plain"]
    per_t = []
    for temp in sorted({r["temperature"] for r in records if r["method"] == "student_kd"}):
        kd = [r["accuracy"] for r in records if r["method"] == "student_kd" and r["temperature"] == temp]
        closed = gap_closed(teacher["accuracy"], plain, kd) if teacher and plain else None
        per_t.append({"temperature": temp, "kd_mean": statistics.mean(kd), "gap_closed": closed})
    return {"teacher_accuracy": teacher["accuracy"] if teacher else None,
            "plain_mean": statistics.mean(plain) if plain else None, "kd": per_t}

"""The distill lab: KD students next to the same students trained alone (same seeds, data and epochs)."""
from __future__ import annotations

import statistics

import torch

from ..core.data import load_dataset
from ..core.measure import measure
from ..core.models import build_model, format_spec, parse_spec
from ..errors import LabError
from ..store.artifacts import load_run_model
from ..text.corpus import is_text_name
from ..techniques.distill import check_compatible, distill_student, train_plain_student
from .baseline import Child, Parent, get_baseline, store_child
from .configs import BaselineConfig, DistillLabConfig
from .context import RunContext
from .records import as_record

METHOD_LABELS = {"student_plain": "Student alone", "student_kd": "Student with KD"}


def _teacher(config: DistillLabConfig, ctx: RunContext):
    """A stored run id, or a model spec whose baseline is trained (or loaded) on all labels."""
    if str(config.teacher).isdigit():
        run = ctx.store.get_run(int(config.teacher))
        if run["dataset"] != config.dataset:
            raise LabError(f"Teacher run {config.teacher} was trained on {run['dataset']}, not {config.dataset}: "
                           "teacher and student must use the same data set.")
        return load_run_model(run["weights_path"]), run
    baseline = BaselineConfig(dataset=config.dataset, model=config.teacher, epochs=config.teacher_epochs,
                              device=config.device, data_dir=config.data_dir, download=config.download,
                              latency_batch=config.latency_batch)
    return get_baseline(baseline, ctx)


def gap_closed(teacher_acc: float, plain: list[float], kd: list[float]) -> float | None:
    """(mean KD - mean plain) / (teacher - mean plain): 1 = KD matched the teacher, 0 = no help."""
    gap = teacher_acc - statistics.mean(plain)
    return (statistics.mean(kd) - statistics.mean(plain)) / gap if abs(gap) > 1e-9 else None


def run_distill(config: DistillLabConfig, ctx: RunContext | None = None) -> dict:
    """Returns {"teacher", "student_plain": [per seed], "student_kd": [per seed and T], "gap_closed", "sweep"}."""
    ctx = ctx or RunContext()
    if is_text_name(config.dataset):
        from .lm_distill import run_distill_lm
        return run_distill_lm(config, ctx)
    student_spec = parse_spec(config.student)
    teacher_model, teacher_run = _teacher(config, ctx.slice(0.0, 0.1, "teacher"))
    data = load_dataset(config.dataset, config.data_dir, config.download)
    check_compatible(teacher_model, data)
    teacher_record = measure(teacher_model, data, latency_batch=config.latency_batch, exclusive=ctx.exclusive,
                             min_run_time=ctx.latency_time)
    parent = Parent(teacher_model, teacher_run, data, teacher_record, config.latency_batch)
    device = config.device if config.device not in (None, "auto") else "cpu"
    configs = config.distill_configs()
    jobs = [("plain", None, s) for s in config.seeds] + [("kd", t, s) for t in config.temperatures for s in config.seeds]
    plain, kd = [], []
    for i, (kind, temp, seed) in enumerate(jobs):
        distill_config = configs[(temp or config.temperatures[0], seed)]
        stage = f"plain seed {seed}" if kind == "plain" else f"KD T={temp:g} seed {seed}"
        step = ctx.slice(0.1 + 0.9 * i / len(jobs), 0.1 + 0.9 * (i + 1) / len(jobs), stage)
        torch.manual_seed(seed)  # the plain and the KD student start from the same weights
        student = build_model(student_spec, data.input_shape, data.num_classes)
        if kind == "plain":
            model, history = train_plain_student(student, data, distill_config, device, step.on_epoch(0, 0.9),
                                                 ctx.should_cancel)
        else:
            model, history = distill_student(teacher_model, student, data, distill_config, device,
                                             step.on_epoch(0, 0.9), ctx.should_cancel)
        method = "student_plain" if kind == "plain" else "student_kd"
        label = (f"{format_spec(student_spec)} {'plain' if kind == 'plain' else f'KD T={temp:g}'} "
                 f"{config.label_fraction:.0%} labels, seed {seed}")
        run = store_child(ctx, parent, model, Child(
            "distill", method, label, {**distill_config.to_dict(), "student": student_spec,
                                       "teacher_run": teacher_run["id"], "with_teacher": kind == "kd"},
            {"history": history, "temperature": temp, "seed": seed, "label_fraction": config.label_fraction},
            model_spec=student_spec))
        (plain if kind == "plain" else kd).append({**as_record(run), "temperature": temp, "seed": seed})
    plain_acc = [r["accuracy"] for r in plain]
    sweep = []
    for t in config.temperatures:
        kd_acc = [r["accuracy"] for r in kd if r["temperature"] == t]
        sweep.append({"temperature": t, "kd_mean": statistics.mean(kd_acc), "plain_mean": statistics.mean(plain_acc),
                      "gap_closed": gap_closed(teacher_record["accuracy"], plain_acc, kd_acc)})
    ctx.report(1.0, f"Stored {len(plain) + len(kd)} student run(s)")
    return {"teacher": parent.as_baseline(), "student_plain": plain, "student_kd": kd,
            "gap_closed": sweep[0]["gap_closed"], "sweep": sweep}


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

"""A distillation study as the CLI and the Distill page run it: KD vs plain students over seeds."""
from __future__ import annotations

import statistics

from .artifacts import load_run_model
from .baseline import as_record, get_baseline, measure_and_store
from .data import load_dataset
from .distill import DistillConfig, check_compatible, distill_student, train_plain_student
from .errors import LabError
from .measure import DEFAULT_LATENCY_BATCH, measure
from .models import format_spec, parse_spec
from .store import RunStore


def _teacher(store, teacher, dataset, progress, should_cancel, job_id, exclusive, baseline_kwargs):
    """A stored run id, or a model spec whose baseline is trained (or loaded) on all labels."""
    if isinstance(teacher, int) or (isinstance(teacher, str) and teacher.isdigit()):
        run = store.get_run(int(teacher))
        if run["dataset"] != dataset:
            raise LabError(f"Teacher run {teacher} was trained on {run['dataset']}, not {dataset}: teacher and "
                           "student must use the same data set.")
        return load_run_model(run["weights_path"]), run
    return get_baseline(dataset=dataset, model=teacher, progress=progress, should_cancel=should_cancel,
                        job_id=job_id, exclusive=exclusive, store=store, **baseline_kwargs)


def gap_closed(teacher_acc: float, plain: list[float], kd: list[float]) -> float | None:
    """(mean KD - mean plain) / (teacher - mean plain): 1 = KD matched the teacher, 0 = no help."""
    gap = teacher_acc - statistics.mean(plain)
    return (statistics.mean(kd) - statistics.mean(plain)) / gap if abs(gap) > 1e-9 else None


def run_distill(*, teacher, student, dataset: str = "digits", temperatures=(4.0,), alpha: float = 0.9,
                label_fraction: float = 1.0, seeds=(0,), epochs: int = 20, store: RunStore | None = None,
                progress=None, should_cancel=None, job_id=None, exclusive=None, latency_time: float = 0.3,
                device: str | None = None, data_dir=None, download=False,
                latency_batch: int = DEFAULT_LATENCY_BATCH, epochs_teacher: int = 10, **teacher_kwargs) -> dict:
    """Returns {"teacher", "student_plain": [per seed], "student_kd": [per seed and T], "gap_closed", "sweep"}."""
    store = store or RunStore()
    temperatures, seeds = list(temperatures), list(seeds)
    if not seeds or not temperatures:
        raise LabError("Give at least one seed and one temperature")
    configs = {(t, s): DistillConfig(t, alpha, label_fraction, epochs, s) for t in temperatures for s in seeds}
    student_spec = parse_spec(student)
    if not (isinstance(teacher, int) or str(teacher).isdigit()):
        parse_spec(teacher)  # an unknown teacher fails before any training
    device = device or "cpu"
    report = lambda frac, msg, **kw: progress and progress({"fraction": frac, "message": msg, **kw})  # noqa: E731
    teacher_model, teacher_run = _teacher(store, teacher, dataset,
                                          lambda i: report(0.1 * i["fraction"], f"teacher: {i['message']}"),
                                          should_cancel, job_id, exclusive,
                                          {"data_dir": data_dir, "download": download, "device": device,
                                           "latency_batch": latency_batch, "epochs": epochs_teacher,
                                           **teacher_kwargs})
    data = load_dataset(dataset, data_dir, download)
    check_compatible(teacher_model, data)
    teacher_record = measure(teacher_model, data, latency_batch=latency_batch, exclusive=exclusive,
                             min_run_time=latency_time)
    jobs = [("plain", None, s) for s in seeds] + [("kd", t, s) for t in temperatures for s in seeds]
    plain, kd = [], []
    for i, (kind, temp, seed) in enumerate(jobs):
        config = configs[(temp or temperatures[0], seed)]
        stage = f"plain seed {seed}" if kind == "plain" else f"KD T={temp:g} seed {seed}"
        lo, width = 0.1 + 0.9 * i / len(jobs), 0.9 / len(jobs)

        def on_epoch(info, lo=lo, width=width, stage=stage):
            report(lo + width * 0.9 * info["epoch"] / info["epochs"], f"{stage}: epoch {info['epoch']}/{info['epochs']}, "
                   f"val acc {info['val_accuracy']:.3f}", stage=stage, **{k: info[k] for k in
                                                                           ("epoch", "epochs", "train_loss", "val_accuracy")})
        if kind == "plain":
            model, history = train_plain_student(student_spec, data, config, device, on_epoch, should_cancel)
        else:
            model, history = distill_student(teacher_model, student_spec, data, config, device, on_epoch, should_cancel)
        label = f"{format_spec(student_spec)} {'plain' if kind == 'plain' else f'KD T={temp:g}'} " \
                f"{label_fraction:.0%} labels, seed {seed}"
        run = measure_and_store(store, model, data, teacher_run, kind="distill",
                                method="student_plain" if kind == "plain" else "student_kd", label=label,
                                config={**config.to_dict(), "student": student_spec, "teacher_run": teacher_run["id"],
                                        "with_teacher": kind == "kd"},
                                extra={"history": history, "temperature": temp, "seed": seed,
                                       "label_fraction": label_fraction},
                                baseline_record=teacher_record, latency_batch=latency_batch, job_id=job_id,
                                exclusive=exclusive, latency_time=latency_time, model_spec=student_spec)
        (plain if kind == "plain" else kd).append({**as_record(run), "temperature": temp, "seed": seed})
    plain_acc = [r["accuracy"] for r in plain]
    sweep = [{"temperature": t, "kd_mean": statistics.mean(a := [r["accuracy"] for r in kd if r["temperature"] == t]),
              "plain_mean": statistics.mean(plain_acc), "gap_closed": gap_closed(teacher_record["accuracy"], plain_acc, a)}
             for t in temperatures]
    report(1.0, f"Stored {len(plain) + len(kd)} student run(s)")
    return {"teacher": {**as_record(teacher_run), **teacher_record}, "student_plain": plain, "student_kd": kd,
            "gap_closed": sweep[0]["gap_closed"], "sweep": sweep}

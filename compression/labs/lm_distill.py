"""The distill lab on language models: a teacher LM and a smaller student, the student trained alone and distilled
(KL on the teacher's logits at T, plus cross-entropy), with the same seed, text and steps; the gap closed is said
in perplexity. And the Minitron recipe (arXiv 2407.14679): a student pruned from the teacher
(`--student pruned:heads_mlp=0.5` or `pruned:depth=0.5`) and distilled, against the same-shaped student distilled
from random initialisation."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..core.data import load_dataset
from ..core.models import format_spec, parse_spec
from ..errors import LabError
from ..store.artifacts import load_run_model
from ..text.models import GPT, build_language_model
from ..text.structured import PRUNED_STUDENT, parse_pruned_student
from ..text.train import DEFAULT_STEPS, LMTrainConfig, distillation_loss, lm_loss, train_lm
from .baseline import Child
from .configs import BaselineConfig, DistillLabConfig
from .context import RunContext
from .lm_child import LMParent, measured_parent, store_lm_child
from .lm_prune import STRUCTURED_PRUNERS
from .records import as_record

LABELS = {"student_plain": "alone", "student_kd": "distilled", "student_pruned_kd": "pruned from the teacher, distilled"}


def _teacher(config: DistillLabConfig, ctx: RunContext) -> tuple[nn.Module, dict]:
    if str(config.teacher).isdigit():
        run = ctx.store.get_run(int(config.teacher))
        if run["dataset"] != config.dataset:
            raise LabError(f"Teacher run {config.teacher} was trained on {run['dataset']}, not {config.dataset}.")
        return load_run_model(run["weights_path"]), run
    from .lm import get_lm_baseline
    return get_lm_baseline(BaselineConfig(dataset=config.dataset, model=config.teacher, seed=0), ctx)


def _reinitialised(model: GPT, seed: int) -> GPT:
    """The same shapes as `model`, every weight drawn afresh as gpt initialises them: Minitron's control arm."""
    fresh = copy.deepcopy(model)
    torch.manual_seed(seed)
    fresh.init_weights()
    return fresh


def _tokenizer_name(model: nn.Module) -> str:
    tokenizer = model.tokenizer
    return getattr(tokenizer, "name", type(tokenizer).__name__)


def _check_same_tokenizer(teacher: nn.Module, student: nn.Module, spec: str) -> None:
    """A student learns the teacher's distribution over next tokens: both must read and predict the same tokens."""
    if _tokenizer_name(teacher) != _tokenizer_name(student):
        raise LabError(f"The student {spec} reads {_tokenizer_name(student)} tokens and the teacher "
                       f"{_tokenizer_name(teacher)} tokens: distillation matches their next-token distributions, "
                       "so both need one tokenizer (a gpt teacher for a gpt student, or an hf: student with the "
                       "teacher's tokenizer).")


def _students(config: DistillLabConfig, teacher: LMParent, seed: int) -> list[tuple[str, nn.Module, dict]]:
    """(method, initial model, spec) per arm."""
    text = str(config.student)
    cut = parse_pruned_student(text)
    if cut:
        method, share = cut
        calibration = teacher.calibration(32, seed)
        pruned, _ = STRUCTURED_PRUNERS[method](teacher.model, calibration, share)
        spec = teacher.run["model"]
        return [("student_pruned_kd", pruned, spec), ("student_kd", _reinitialised(pruned, seed), spec)]
    spec = parse_spec(text)
    torch.manual_seed(seed)
    student = build_language_model(spec)
    _check_same_tokenizer(teacher.model, student, text)
    if getattr(student, "context", 0) < teacher.context:
        raise LabError(f"The student's context ({student.context}) is shorter than the teacher's {teacher.context}.")
    return [("student_plain", student, spec), ("student_kd", copy.deepcopy(student), spec)]


def run_distill_lm(config: DistillLabConfig, ctx: RunContext) -> dict:
    teacher_model, teacher_run = _teacher(config, ctx.slice(0.0, 0.1, "teacher"))
    data = load_dataset(config.dataset, config.data_dir, config.download)
    teacher = measured_parent(teacher_model, teacher_run, data, ctx)
    context = teacher.context
    steps = config.student_steps or DEFAULT_STEPS
    arms = [(seed, arm) for seed in config.seeds for arm in _students(config, teacher, seed)]
    results = {}
    for i, (seed, (method, student, spec)) in enumerate(arms):
        taught = method != "student_plain"
        name = config.student if str(config.student).startswith(PRUNED_STUDENT) else format_spec(spec)
        label = f"{name} {LABELS[method]}{f' T={config.temperatures[0]:g}' if taught else ''}, seed {seed}"
        step = ctx.slice(0.12 + 0.85 * i / len(arms), 0.12 + 0.85 * (i + 1) / len(arms), label)
        loss = distillation_loss(teacher.model, config.temperatures[0], config.alpha) if taught else lm_loss
        history = train_lm(student, data, LMTrainConfig(steps=steps, seed=seed), context=context, loss_fn=loss,
                           on_step=lambda info: step.report(0.85 * info["step"] / info["steps"],
                                                            f"step {info['step']}/{info['steps']}"),
                           should_cancel=ctx.should_cancel)
        run = store_lm_child(ctx, teacher, student, Child(
            "distill", method, label, {**config.to_dict(), "steps": steps, "seed": seed, "with_teacher": taught},
            {"history": history, "temperature": config.temperatures[0] if taught else None, "seed": seed,
             "speed_note": "a smaller model, timed together with its teacher"}, model_spec=spec))
        results.setdefault(method, []).append({**as_record(run), "seed": seed})
    out = {"teacher": teacher.as_baseline(), "student_plain": results.get("student_plain", []),
           "student_kd": results.get("student_kd", []), "student_pruned_kd": results.get("student_pruned_kd", []),
           "gap_closed": _gap_closed(teacher.record, results), "sweep": []}
    if "student_pruned_kd" in results:
        out["minitron"] = {"pruned_then_distilled": _mean(results["student_pruned_kd"]),
                           "random_init_distilled": _mean(results["student_kd"])}
    ctx.report(1.0, f"Stored {len(arms)} student run(s)")
    return out


def _mean(rows: list[dict]) -> float:
    return sum(r["perplexity"] for r in rows) / len(rows)


def _gap_closed(teacher: dict, results: dict) -> float | None:
    """(plain - distilled) / (plain - teacher), in perplexity: 1 = the student matched its teacher, 0 = no help."""
    if "student_plain" not in results:
        return None
    plain, kd = _mean(results["student_plain"]), _mean(results["student_kd"])
    gap = plain - teacher["perplexity"]
    return (plain - kd) / gap if abs(gap) > 1e-9 else None

"""The language-model pruning recipes the prune lab runs through the text task: one-shot weight pruning
(magnitude, Wanda, SparseGPT; unstructured or N:M) or structured removal (heads_mlp, depth), then optionally
Minitron's fine-tune with the parent as teacher. Weight pruners' zeros are held through fine-tuning."""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from ..core.models import format_spec, parse_spec
from ..errors import LabError
from ..techniques.prune import layer_report
from .families import is_projection
from .prune import LMPruneConfig, prune_language_model, transformer_blocks
from .models import GPT, build_language_model
from .structured import PRUNED_STUDENT, STRUCTURED, parse_pruned_student
from .structured_hf import SMALLER, reinitialise_hf, structured_pruner
from .train import DEFAULT_STEPS, LMTrainConfig, distillation_loss, lm_loss, steps_per_epoch, train_lm

SIZE_ONLY = ("size only on this machine: the zeros are stored, but dense kernels still multiply them, so it runs "
             "no faster")


FINETUNE_LR = 1e-3  # a third of training's peak: the pruned model starts close to a good solution


def lm_prune_configs(config) -> list[LMPruneConfig]:
    if config.distill and not finetunes(config):
        raise LabError("--distill fine-tunes with the parent as teacher: give --finetune-epochs too.")
    if config.with_sensitivity or config.layers or config.schedule != "oneshot":
        raise LabError("For language models the prune lab takes --method, --sparsity or --pattern, --calibration, "
                       "--finetune-epochs and --distill; --sensitivity, --layers and the iterative schedule are "
                       "for image models.")
    if config.pattern:
        return [LMPruneConfig(config.method, 0.5, config.pattern, config.calibration, config.seed)]
    return [LMPruneConfig(config.method, float(s), None, config.calibration, config.seed) for s in config.sparsities]


def _prune_once(parent, prune_config: LMPruneConfig, step, ctx, name: str):
    calibration = parent.calibration(prune_config.calibration, prune_config.seed)
    if prune_config.method not in STRUCTURED:
        pruned, report = prune_language_model(parent.model, calibration, prune_config,
                                              progress=lambda f, msg: step.report(0.5 * f, f"{name}: {msg}"),
                                              should_cancel=ctx.should_cancel)
        report["speed_note"] = SIZE_ONLY
        return pruned, report
    # a gpt's pruner (structured.py) or an hf: family's (structured_hf.py), chosen by the parent model
    pruner = structured_pruner(prune_config.method, parent.model)
    pruned, report = pruner(parent.model, calibration, prune_config.sparsity)
    report.update(method=prune_config.method, sparsity=prune_config.sparsity, pattern=None, structured=True,
                  calibration_sequences=int(calibration.shape[0]), calibration_tokens=int(calibration.numel()),
                  speed_note=SMALLER + (f"; {report['notes']}" if report.get("notes") else ""))
    if "layers" not in report:  # an hf: pruner reports its projections itself (Conv1D and renumbered blocks)
        report["layers"] = _depth_layers(parent, report) if prune_config.method == "depth" else \
            layer_report(parent.model, pruned)
    return pruned, report


def _depth_layers(parent, report: dict) -> list[dict]:
    """Each of the parent's block layers, kept whole or removed with its block (the names of the pruned model's
    blocks shift, so they are reported against the parent's)."""
    rows = []
    for row in layer_report(parent.model, parent.model):
        block = int(row["layer"].split(".")[1]) if row["layer"].startswith("blocks.") else None
        removed = block is not None and block not in report["kept_layers"]
        rows.append({**row, "params_after": 0 if removed else row["params_before"],
                     "nonzero_after": 0 if removed else row["nonzero_after"], "sparsity": 1.0 if removed else 0.0})
    return rows


def held_zeros(model) -> Callable[[], None]:
    """What puts a weight pruner's zeros back after an optimizer step: fine-tuning then keeps the sparsity (and an
    N:M pattern) the method chose, as SparseGPT's and Wanda's fine-tuned variants do. A dense weight's mask is all
    ones, so it costs a multiply and changes nothing."""
    masks = [(layer.weight, layer.weight != 0) for layer in transformer_blocks(model).modules()
             if is_projection(layer)]  # GPT-2's Conv1D too

    def restore() -> None:
        with torch.no_grad():
            for weight, mask in masks:
                weight.mul_(mask)
    return restore


def finetunes(config) -> bool:
    return bool(config.finetune_steps or config.finetune_epochs or 0)


def finetune_length(config) -> str:
    return f"{config.finetune_steps} steps" if config.finetune_steps else \
        f"{config.finetune_epochs or 0} ep"


def finetune_config(model, parent, config) -> LMTrainConfig:
    """A pruned child's fine-tune: --finetune-steps, or --finetune-epochs passes over the training text, at
    FINETUNE_LR; its fair control trains the parent with exactly this."""
    steps = config.finetune_steps or (config.finetune_epochs or 0) * steps_per_epoch(
        parent.data, model.tokenizer, LMTrainConfig.batch_size, parent.context)
    return LMTrainConfig(steps=steps, lr=FINETUNE_LR, seed=config.seed)


def finetune(model, parent, config, step, name: str,
             hold: Callable[[], None] | None = None) -> list[dict]:
    train_config = finetune_config(model, parent, config)
    teacher = f", the parent teaching" if config.distill else ""

    def on_step(info: dict) -> None:
        if hold:
            hold()  # before the next step and before any evaluation: the model is always as sparse as pruned
        step.report(0.5 + 0.2 * info["step"] / info["steps"],  # 0.7-0.85: its fair control (labs/prune.py)
                    f"{name}: fine-tuning{teacher}, step {info['step']}/{info['steps']}")
    return train_lm(model, parent.data, train_config, context=parent.context,
                    loss_fn=distillation_loss(parent.model) if config.distill else lm_loss, on_step=on_step,
                    should_cancel=step.should_cancel)


def prune_child(parent, config, prune_config: LMPruneConfig, step, ctx, name: str) -> tuple[nn.Module, dict, str]:
    """(pruned model, its report for the run's extra, its label): pruned as the method says, then fine-tuned
    when the config asks (weight pruners' zeros held)."""
    pruned, report = _prune_once(parent, prune_config, step, ctx, name)
    hold = None if prune_config.method in STRUCTURED else held_zeros(pruned)
    history = finetune(pruned, parent, config, step, name, hold) if finetunes(config) else []
    if history:
        name += f", fine-tuned {finetune_length(config)}" + (" (distilled)" if config.distill else "")
        name += ", zeros held" if hold else ""
    step.report(0.85, f"{name}: measuring perplexity and timing it with its parent")
    extra = {k: report[k] for k in ("sparsity", "pattern", "structured", "layers", "calibration_sequences",
                                     "calibration_tokens", "speed_note") if k in report}
    extra.update({k: report[k] for k in ("block_sparsity", "blocks", "kept_layers", "notes") if k in report})
    extra["finetune_history"] = history
    return pruned, extra, name


# --- distillation: a student alone and distilled, or Minitron's pruned student (arXiv 2407.14679) ------------------
LABELS = {"student_plain": "alone", "student_kd": "distilled", "student_pruned_kd": "pruned from the teacher, distilled"}


def _reinitialised(model: nn.Module, seed: int) -> nn.Module:
    """The same shapes as `model`, every weight drawn afresh as the model initialises them: Minitron's control
    arm (an hf: model by its own `_init_weights`)."""
    if not isinstance(model, GPT):
        return reinitialise_hf(model, seed)
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


def students(config, teacher, seed: int) -> list[tuple[str, nn.Module, dict]]:
    """(method, initial model, spec) per arm."""
    text = str(config.student)
    cut = parse_pruned_student(text)
    if cut:
        method, share = cut
        calibration = teacher.calibration(32, seed)
        pruned, _ = structured_pruner(method, teacher.model)(teacher.model, calibration, share)
        spec = teacher.run["model"]
        return [("student_pruned_kd", pruned, spec), ("student_kd", _reinitialised(pruned, seed), spec)]
    spec = parse_spec(text)
    torch.manual_seed(seed)
    student = build_language_model(spec)
    _check_same_tokenizer(teacher.model, student, text)
    if getattr(student, "context", 0) < teacher.context:
        raise LabError(f"The student's context ({student.context}) is shorter than the teacher's {teacher.context}.")
    return [("student_plain", student, spec), ("student_kd", copy.deepcopy(student), spec)]


def distill_arms(config, teacher, arm):
    """Every student of a language-model distillation, seed by seed: (plain, distilled) from the same weights, or
    Minitron's (pruned from the teacher, the same shapes from random init), both distilled. `arm` is tasks.Arm."""
    steps = config.student_steps or DEFAULT_STEPS
    arms = []
    for seed in config.seeds:
        for method, student, spec in students(config, teacher, seed):
            taught = method != "student_plain"
            name = config.student if str(config.student).startswith(PRUNED_STUDENT) else format_spec(spec)
            label = f"{name} {LABELS[method]}{f' T={config.temperatures[0]:g}' if taught else ''}, seed {seed}"
            arms.append(arm(method, label, seed, config.temperatures[0] if taught else None, spec,
                            {**config.to_dict(), "steps": steps, "seed": seed, "with_teacher": taught},
                            {"temperature": config.temperatures[0] if taught else None, "seed": seed,
                             "speed_note": "a smaller model, timed together with its teacher"},
                            _trainer(teacher, student, config, steps, seed, taught)))
    return arms


def arm_training(steps: int, seed: int) -> LMTrainConfig:
    """How every student arm of one seed trains (the teacher trained so is their fair control)."""
    return LMTrainConfig(steps=steps, seed=seed)


def _trainer(teacher, student, config, steps: int, seed: int, taught: bool):
    def train(step) -> tuple[nn.Module, list]:
        loss = distillation_loss(teacher.model, config.temperatures[0], config.alpha) if taught else lm_loss
        history = train_lm(student, teacher.data, arm_training(steps, seed), context=teacher.context,
                           loss_fn=loss, on_step=lambda info: step.report(0.85 * info["step"] / info["steps"],
                                                                          f"step {info['step']}/{info['steps']}"),
                           should_cancel=step.should_cancel)
        return student, history
    return train


def distill_summary(teacher, results: dict) -> dict:
    """The study's figures in perplexity; with Minitron's arms, both students' mean perplexity side by side."""
    out = {"teacher": teacher.as_baseline(), "controls": results.get("control", []),
           "student_plain": results.get("student_plain", []),
           "student_kd": results.get("student_kd", []), "student_pruned_kd": results.get("student_pruned_kd", []),
           "gap_closed": _gap_closed(teacher.record, results), "sweep": []}
    if "student_pruned_kd" in results:
        out["minitron"] = {"pruned_then_distilled": _mean(results["student_pruned_kd"]),
                           "random_init_distilled": _mean(results["student_kd"])}
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

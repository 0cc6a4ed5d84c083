"""The language-modelling task: perplexity (lower is better, with bits per byte; changes as a % increase), two
timed phases (a prefill batch and a cached decode step), the labs that compress language models. Its hooks build,
train (by optimizer steps), measure (text.measure) and time (prefill and decode, each paired) language models."""
from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

from ..core.data import load_dataset
from ..core.models import format_spec
from ..core.paired import time_pair_on
from ..errors import LabError
from ..search.space import TEXT
from ..text.corpus import TEXT as TEXT_PREFIX, TEXT_DATASETS
from ..text.measure import PHASES, PREFILL_BATCH, measure_lm, phase_workload
from ..text.models import LANGUAGE_MODELS, build_language_model
from ..text.prune import transformer_blocks
from ..text.quantize_notes import NOT_FOR_LANGUAGE_MODELS, quantize_notes
from ..text.recipes import (arm_training, distill_arms, distill_summary, finetune_config, lm_prune_configs,
                             prune_child)
from ..text.structured import STRUCTURED, parse_pruned_student
from ..text.structured_hf import check_structured
from ..techniques.quantize import availability
from ..text.paired_quality import paired_perplexity
from ..text.train import DEFAULT_STEPS, LMTrainConfig, lm_loss, train_lm
from .base import FINETUNE_CONFIG, Arm, Control, Quality, Task, Training, check_model_fits_data, register_task

HF_DEFAULT_CONTEXT = 128


def lm_train_config(config) -> LMTrainConfig:
    """A BaselineConfig's training for a language model: optimizer steps (0: the default), batch, lr, seed."""
    return LMTrainConfig(steps=config.train_steps or DEFAULT_STEPS, batch_size=config.batch_size, lr=config.lr,
                         seed=config.seed)


def context_for(model: nn.Module, config) -> int:
    """The sequence length a run trains and is measured on: the config's, or the model's own (gpt's context=)."""
    positions = int(getattr(model, "context", 0) or 0)
    wanted = config.context or (positions if not hasattr(model, "path") else min(positions, HF_DEFAULT_CONTEXT))
    if positions and wanted > positions:
        raise LabError(f"A context of {wanted} tokens is longer than this model's {positions} positions: "
                       f"use --context {positions} or less.")
    return wanted


def _key(config, spec: dict, data, train_config: LMTrainConfig, context: int) -> str:
    blob = json.dumps({"dataset": config.dataset, "corpus": data.fingerprint.get("sha256"), "model": spec,
                       "train": train_config.to_dict(), "context": context, "v": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class TextTask(Task):
    name = "text"
    title = "language modelling"
    quality = Quality("perplexity", "perplexity", False, "%", "perplexity increase")
    phases = ("prefill", "decode")
    labs = frozenset({"train", "prune", "quantize", "distill", "search", "plan", "demo"})
    generates = True              # its models continue a prompt (`generate`)
    compressed_files = False       # the .cldc codec (labs.io.compressed) encodes its models
    search_data = TEXT
    default_model = "gpt"
    model_noun = "a language model"
    data_noun = "text"
    model_hint = "pick a language model (gpt, or hf:PATH for your own Hugging Face checkpoint)"
    data_hint = "pick a text data set (pydoc, or text:PATH for your own)"
    default_prune_method = "magnitude"
    finetune_epochs = 0          # language models are pruned one-shot, as the papers do
    search_constraints = ("max_params",)  # MACs are counted per image
    quantize_refusal_is_error = True  # asking for a method that cannot run is a mistake to fix, not a result to store

    def owns_dataset(self, name: str) -> bool:
        return name in TEXT_DATASETS or str(name).startswith(TEXT_PREFIX)

    def owns_model(self, name: str) -> bool:
        return str(name).partition(":")[0] in LANGUAGE_MODELS

    def unavailable(self, lab: str) -> str | None:
        if lab in self.labs:
            return None
        return (f"The {lab} lab works on image models for now; on text you can train, prune, quantize, distill, "
                "search and plan language models.")

    # --- baselines -------------------------------------------------------------------------------------------
    def training(self, config, spec: dict, ctx) -> Training:
        """The key names the corpus's hash and the context, which is the model's own unless the config names
        one: the model is built (seeded) and the text loaded before any stored baseline can be looked up."""
        data = load_dataset(config.dataset, config.data_dir, config.download)
        torch.manual_seed(config.seed)
        ctx.report(0.01, f"Building {format_spec(spec)}")
        model = build_language_model(spec, download=config.download)
        context = context_for(model, config)
        train_config = lm_train_config(config)
        return Training(_key(config, spec, data, train_config, context), train_config, data, model, context)

    def reusable(self, run: dict, config) -> bool:
        return True

    def reused(self, ctx, config, model: nn.Module, run: dict) -> dict:
        return run

    def train_baseline(self, config, spec: dict, training: Training, data, ctx) -> tuple[nn.Module, list, dict]:
        def on_step(info: dict) -> None:
            ctx.report(0.85 * info["step"] / max(info["steps"], 1),
                       f"Training: step {info['step']}/{info['steps']}, loss {info['train_loss']:.3f}")

        def on_eval(point: dict) -> None:  # a curve point: the job keeps "epoch" events for the Baseline page
            ctx.report(0.85 * point["step"] / max(point["steps"], 1),
                       f"step {point['step']}/{point['steps']}, validation perplexity {point['val_perplexity']:.2f}",
                       epoch=point["step"], epochs=point["steps"], train_loss=point["train_loss"],
                       val_loss=point["val_loss"], val_perplexity=point["val_perplexity"],
                       elapsed_s=point["elapsed_s"])
        model, train_config = training.model, training.train_config
        history = train_lm(model, data, train_config, context=training.context, on_step=on_step, on_eval=on_eval,
                           should_cancel=ctx.should_cancel) if train_config.steps else []
        ctx.report(0.87, "Measuring perplexity, bits per byte, size and latency (prefill and decode)")
        return model, history, {**train_config.to_dict(), "context": training.context, "cache_key": training.key,
                                "task": self.name}

    def baseline_label(self, spec: dict, config, training: Training) -> str:
        return f"{format_spec(spec)} baseline ({training.train_config.steps} steps, seed {config.seed})"

    def baseline_extra(self, model: nn.Module, data, history: list) -> dict:
        return {"history": history}

    # --- measuring ---------------------------------------------------------------------------------------------
    def measure(self, model: nn.Module, data, ctx, latency_batch: int, context: int | None = None,
                input_dtype: torch.dtype = torch.float32) -> dict:
        """Perplexity with its CI, bits per byte, size, and prefill (at PREFILL_BATCH) and decode latency."""
        return {**measure_lm(model, data, context, min_run_time=ctx.latency_time), "task": self.name}

    def example_input(self, data, context: int | None = None) -> torch.Tensor:
        return torch.zeros(1, min(context, 8), dtype=torch.long)

    def parent_fields(self, model: nn.Module, run: dict, data, ctx, latency_batch: int) -> dict:
        """A stored language-model run measured in this process, at the context its record was measured at; a
        latency figure means its prefill batch."""
        ctx.report(0.12, f"Measuring run {run['id']} in this process")
        context = int(run["record"]["context"])
        model.eval()
        return {"record": self.measure(model, data, ctx, PREFILL_BATCH, context), "latency_batch": PREFILL_BATCH,
                "context": context}

    def measure_child(self, ctx, parent, model: nn.Module, child, reloaded: nn.Module) -> dict:
        record = self.measure(reloaded, parent.data, ctx, parent.latency_batch, parent.context)
        record["perplexity_increase"] = record["perplexity"] / parent.record["perplexity"] - 1
        return record

    def paired_timings(self, ctx, parent, model: nn.Module, child, record: dict) -> list[dict]:
        """Timed together at prefill and at decode: int8 that wins prefill can lose decode, and a reader must
        see both."""
        timings = []
        for phase in PHASES:
            timed_parent, x, _ = phase_workload(parent.model, phase, parent.context, parent.latency_batch)
            timed_child, _, _ = phase_workload(model, phase, parent.context, parent.latency_batch)
            timings.append({**time_pair_on(timed_parent, timed_child, x, x, block_s=max(0.01, ctx.latency_time / 6)),
                            "phase": phase})
        return timings

    def child_extra(self, ctx, parent, model: nn.Module, child, under: dict) -> dict:
        return child.extra

    def check_distill(self, config) -> None:
        """A language model's student may be pruned:heads_mlp=0.5 (Minitron); one temperature."""
        if not parse_pruned_student(config.student):
            check_model_fits_data(config.dataset, config.student)
        if not str(config.teacher).isdigit():
            check_model_fits_data(config.dataset, config.teacher)
        if not config.seeds or len(config.temperatures) != 1:
            raise LabError("A language model's distillation takes one --temperature and at least one seed "
                           "(a temperature sweep is for image models)")

    def quality_change(self, record: dict, baseline: dict) -> tuple[str, dict]:
        """'perplexity 7.78 -> 7.99 (+2.7%)' (lower is better). A child that trained after its parent is stated
        against its fair control first (the parent trained as long), then against the reference as stored."""
        change = record["perplexity"] / baseline["perplexity"] - 1
        fields = {"perplexity_change": change}
        fair = control_text(record)
        if fair is None:
            return (f"perplexity {baseline['perplexity']:.2f} \u2192 {record['perplexity']:.2f} ({100 * change:+.1f}%)",
                    fields)
        stored = "the parent as stored" if baseline.get("run_id") in (None, record.get("parent_id")) else \
            f"#{baseline['run_id']} as stored"
        fields["perplexity_change_vs_control"] = record["perplexity_change_vs_control"]
        return (f"{fair}; {100 * change:+.1f}% against {stored} ({baseline['perplexity']:.2f} \u2192 "
                f"{record['perplexity']:.2f})", fields)

    # --- fair controls: the parent trained on as long as a child fine-tuned or was distilled -------------------
    def control(self, parent, training: dict | None) -> Control | None:
        """The parent's own weights trained `training`'s steps more with the child's LMTrainConfig (steps, lr,
        batch, warm-up and cosine, seed: the same batches of the same text) on the plain LM loss: the parent
        teaching itself would be a no-op. Keyed by the parent run and that training, so a second child with the
        same fine-tune reuses it."""
        if not training or not training.get("steps"):
            return None
        train_config = LMTrainConfig(**training)
        key = hashlib.sha256(json.dumps({
            "parent": parent.run["id"], "created": parent.run.get("created_at"), "train": train_config.to_dict(),
            "context": parent.context, "corpus": parent.data.fingerprint.get("sha256"), "v": 1},
            sort_keys=True).encode()).hexdigest()[:16]
        label = (f"{format_spec(parent.run['model'])} #{parent.run['id']} trained {train_config.steps:,} more steps, "
                 f"lr {train_config.lr:g}, seed {train_config.seed} (control)")

        def train(model: nn.Module, step) -> list[dict]:
            return train_lm(model, parent.data, train_config, context=parent.context, loss_fn=lm_loss,
                            on_step=lambda info: step.report(info["step"] / info["steps"], f"the control: the parent "
                                                             f"trained on, step {info['step']}/{info['steps']}"),
                            should_cancel=step.should_cancel)
        config = {**train_config.to_dict(), "control_of": parent.run["id"], "dataset": parent.run["dataset"],
                  "model": format_spec(parent.run["model"]), "context": parent.context, "cache_key": key,
                  "task": self.name}
        return Control(key, label, config, train)

    def versus_control(self, record: dict, control: dict) -> dict:
        """control_run_id, control_perplexity (+ CI), control_steps, perplexity_change_vs_control, and
        paired_vs_control: the child against its control on the same test windows (None without per-window
        losses)."""
        reference = {**control["record"], "run_id": control["id"]}
        paired = paired_perplexity(reference, record)
        if paired:
            paired.pop("run_b")  # the child is not stored yet: its run id is the record's own
        return {"control_run_id": control["id"], "control_perplexity": reference["perplexity"],
                "control_perplexity_ci95": reference.get("perplexity_ci95"),
                "control_steps": control["config"].get("steps"),
                "perplexity_change_vs_control": record["perplexity"] / reference["perplexity"] - 1,
                "paired_vs_control": paired}

    # --- lab hooks: what the prune, quantize and distill labs' one loop each asks ---------------------------------
    def check_prune_method(self, method: str) -> None:
        from .image import _check_methods_of
        _check_methods_of(self, method, language=True)

    def prune_configs(self, config) -> list:
        return lm_prune_configs(config)

    def prune_check(self, method: str):
        """What the method needs of the parent, checked before it is measured: for structured removal a gpt or an
        hf: model of a known family."""
        return check_structured if method in STRUCTURED else transformer_blocks

    def prune_name(self, method: str, prune_config) -> str:
        return f"{method} {prune_config.pattern or f'{prune_config.sparsity:.0%}'}"

    def prune_child(self, parent, config, prune_config, step, ctx, name: str) -> tuple[nn.Module, dict, str, dict]:
        pruned, extra, name = prune_child(parent, config, prune_config, step, ctx, name)
        if extra["finetune_history"]:  # how it trained after its parent: its fair control trains the parent so
            extra[FINETUNE_CONFIG] = finetune_config(pruned, parent, config).to_dict()
        return pruned, extra, name, {"sparsity": prune_config.target, "pattern": prune_config.pattern}

    def quantize_refusal(self, method: str, device: str) -> tuple[str, str | None]:
        """Language models run on the CPU; a method that cannot run here, or does not apply to a language model,
        is refused (and with quantize_refusal_is_error, the lab stops before the parent is trained or loaded)."""
        return "cpu", NOT_FOR_LANGUAGE_MODELS.get(method) or availability(method, "cpu")

    def quantize_data(self, parent):
        return None  # dynamic and weight-only methods need no calibration text

    def quantize_notes(self, parent, method: str, report: dict) -> dict:
        return quantize_notes(parent.record, method, report)

    def teacher_baseline(self, config) -> dict:
        return dict(dataset=config.dataset, model=config.teacher, seed=0)

    def check_teacher(self, model: nn.Module, data) -> None:
        return None  # the students' tokenizer is checked against it (text.recipes.students)

    def distill_arms(self, config, teacher) -> list[Arm]:
        arms = distill_arms(config, teacher, Arm)
        for a in arms:  # every student of a seed trains so: the teacher trained as long is their fair control
            a.extra[FINETUNE_CONFIG] = arm_training(a.config["steps"], a.seed).to_dict()
        return arms

    def distill_summary(self, config, teacher, results: dict) -> dict:
        return distill_summary(teacher, results)

    def retime_pair(self, run_a: dict, model_a: nn.Module, model_b: nn.Module, data, *, phase: str | None,
                    batch_size: int | None, dtype_b: torch.dtype, device: str, rounds) -> dict:
        """One phase of a language model (text.measure.phase_workload), prefill at the record's prefill batch
        unless one is named."""
        prefill = next((e["batch_size"] for e in run_a["record"].get("latency", []) if e.get("phase") == "prefill"),
                       PREFILL_BATCH)
        context = int(run_a["record"]["context"])
        timed_a, x, _ = phase_workload(model_a, phase, context, batch_size or prefill)
        timed_b, _, _ = phase_workload(model_b, phase, context, batch_size or prefill)
        return {**time_pair_on(timed_a, timed_b, x, x, device=device, rounds=rounds), "phase": phase}


def control_text(record: dict) -> str | None:
    """A child against its fair control, in words, the fair comparison a reader should see first: '+3.1%
    perplexity [+1.2%, +5.0%] against the parent trained the same 2,000 more steps (#12: 6.27 -> 6.47, paired over
    64 test windows)'. No child is called better (or worse) than its control unless the paired CI excludes 0.
    None for a child without a control."""
    if record.get("control_perplexity") is None:
        return None
    steps = record.get("control_steps")
    who = f"the parent trained the same {steps:,} more steps" if steps else "the parent trained as long"
    values = f"#{record['control_run_id']}: {record['control_perplexity']:.2f} \u2192 {record['perplexity']:.2f}"
    paired = record.get("paired_vs_control")
    if not paired:
        return (f"{100 * record['perplexity_change_vs_control']:+.1f}% perplexity against {who} ({values}; not "
                "paired: a record without per-window losses)")
    lo, hi = paired["relative_ci95"]
    ci = f"[{100 * lo:+.1f}%, {100 * hi:+.1f}%]"
    windows = f"paired over {paired['windows']} test windows"
    if not paired["significant"]:
        return (f"no measurable perplexity difference from {who} ({100 * paired['relative']:+.1f}% {ci}, {values}, "
                f"{windows})")
    return f"{100 * paired['relative']:+.1f}% perplexity {ci} against {who} ({values}, {windows})"


TEXT_TASK = register_task(TextTask())

"""Language-model baselines: train (or reuse) a `gpt` or `hf:` model on a text data set, measure it
(text.measure) and store it as a run, like an image baseline; and `generate` text from any stored language model."""
from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

from ..core.data import load_dataset
from ..core.models import format_spec, parse_spec
from ..errors import LabError
from ..store.artifacts import load_run_model, save_model
from ..text.measure import measure_lm
from ..text.models import build_language_model, is_language_model
from ..text.train import DEFAULT_STEPS, LMTrainConfig, train_lm
from .configs import BaselineConfig
from .context import RunContext

HF_DEFAULT_CONTEXT = 128


def lm_train_config(config: BaselineConfig) -> LMTrainConfig:
    return LMTrainConfig(steps=config.train_steps or DEFAULT_STEPS, batch_size=config.batch_size, lr=config.lr,
                         seed=config.seed)


def context_for(model: nn.Module, config: BaselineConfig) -> int:
    """The sequence length a run trains and is measured on: the config's, or the model's own (gpt's context=)."""
    positions = int(getattr(model, "context", 0) or 0)
    wanted = config.context or (positions if not hasattr(model, "path") else min(positions, HF_DEFAULT_CONTEXT))
    if positions and wanted > positions:
        raise LabError(f"A context of {wanted} tokens is longer than this model's {positions} positions: "
                       f"use --context {positions} or less.")
    return wanted


def _key(config: BaselineConfig, spec: dict, data, train_config: LMTrainConfig, context: int) -> str:
    blob = json.dumps({"dataset": config.dataset, "corpus": data.fingerprint.get("sha256"), "model": spec,
                       "train": train_config.to_dict(), "context": context, "v": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def get_lm_baseline(config: BaselineConfig, ctx: RunContext | None = None) -> tuple[nn.Module, dict]:
    """(model, run): a stored run with the same text, spec, training and context is reused as is."""
    ctx = ctx or RunContext()
    spec = parse_spec(config.model)
    data = load_dataset(config.dataset, config.data_dir, config.download)
    torch.manual_seed(config.seed)
    ctx.report(0.01, f"Building {format_spec(spec)}")
    model = build_language_model(spec, download=config.download)
    context = context_for(model, config)
    train_config = lm_train_config(config)
    key = _key(config, spec, data, train_config, context)
    for run in reversed(ctx.store.list_runs(kind="train", dataset=config.dataset, status="done")):
        if run["config"].get("cache_key") == key:
            try:
                ctx.report(1.0, f"Loaded stored baseline run {run['id']}")
                return load_run_model(run["weights_path"]), run
            except Exception:
                continue

    def on_step(info: dict) -> None:
        ctx.report(0.85 * info["step"] / max(info["steps"], 1), f"Training: step {info['step']}/{info['steps']}, "
                   f"loss {info['train_loss']:.3f}")

    def on_eval(point: dict) -> None:  # a curve point: the job keeps "epoch" events for the Baseline page
        ctx.report(0.85 * point["step"] / max(point["steps"], 1),
                   f"step {point['step']}/{point['steps']}, validation perplexity {point['val_perplexity']:.2f}",
                   epoch=point["step"], epochs=point["steps"], train_loss=point["train_loss"],
                   val_loss=point["val_loss"], val_perplexity=point["val_perplexity"],
                   elapsed_s=point["elapsed_s"])
    history = train_lm(model, data, train_config, context=context, on_step=on_step, on_eval=on_eval,
                       should_cancel=ctx.should_cancel) if train_config.steps else []
    ctx.report(0.87, "Measuring perplexity, bits per byte, size and latency (prefill and decode)")
    record = measure_lm(model, data, context, min_run_time=ctx.latency_time)
    run_config = {**config.to_dict(), **train_config.to_dict(), "context": context, "cache_key": key,
                  "task": "text"}
    run_id = ctx.store.add_run("train", config.dataset, spec, run_config, record=record, method="baseline",
                               label=f"{format_spec(spec)} baseline ({train_config.steps} steps, seed {config.seed})",
                               extra={"history": history}, job_id=ctx.job_id,
                               weights_path=save_model(model, torch.zeros(1, min(context, 8), dtype=torch.long)))
    ctx.report(1.0, f"Stored baseline run {run_id}")
    return model, ctx.store.get_run(run_id)


@torch.no_grad()
def generate(model: nn.Module, prompt: str, tokens: int, temperature: float = 0.0, seed: int = 0,
             context: int | None = None) -> str:
    """The prompt's continuation: greedy (temperature 0) or sampled with a seed; with a key-value cache."""
    if tokens < 1:
        raise LabError(f"--tokens must be at least 1, got {tokens}")
    if temperature < 0:
        raise LabError(f"--temperature must be >= 0, got {temperature}")
    tokenizer = model.tokenizer
    limit = int(context or getattr(model, "context", 0) or 2048)
    if tokens >= limit:
        raise LabError(f"{tokens} new tokens do not fit this model's context of {limit}: ask for at most {limit - 1}.")
    ids = tokenizer.encode(prompt)[-(limit - tokens):] or [0]
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    logits, cache = model.decode_step(torch.tensor([ids]))
    out = []
    for step in range(tokens):
        last = logits[0, -1].float()
        if temperature > 0:
            token = int(torch.multinomial(torch.softmax(last / temperature, -1), 1, generator=generator))
        else:
            token = int(last.argmax())
        out.append(token)
        if step + 1 < tokens:
            logits, cache = model.decode_step(torch.tensor([[token]]), cache)
    return tokenizer.decode(out)


def generate_from_run(store, run_id: int, prompt: str, tokens: int, temperature: float = 0.0,
                      seed: int = 0) -> dict:
    run = store.get_run(run_id)
    if not is_language_model(run["model"]):
        raise LabError(f"Run {run_id} is an image model ({format_spec(run['model'])}); generate needs a language "
                       "model run.")
    model = load_run_model(run["weights_path"])
    text = generate(model, prompt, tokens, temperature, seed, run["config"].get("context"))
    return {"run_id": run_id, "prompt": prompt, "completion": text, "tokens": tokens, "temperature": temperature,
            "seed": seed}

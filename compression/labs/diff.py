"""What did compression change? Two runs' answers on the same test split, compared example by example
(Hooker et al. 2019): flipped answers, per-class deltas with paired CIs, calibration (ECE) and confusion.
For two language-model runs: next-token flips, the per-token loss change and greedy completions side by side
(text.behaviour)."""
from __future__ import annotations

import torch

from ..core.behaviour import compact_predictions, diff_predictions
from ..core.data import SPLIT_SEED, load_dataset
from ..core.train import predict
from ..errors import LabError
from ..store import RunStore
from ..store.artifacts import load_run_model
from ..text.behaviour import (COMPLETION_TOKENS, PROMPTS, compare_next_tokens, next_token_view, sample_flips,
                              sequences_for)
from ..core.models import format_spec
from ..tasks import task_of
from ..text.generate import generate
from ..text.paired_quality import difference_text, paired_perplexity

SAMPLE_SEQUENCE = 0  # the sequence shown with its flipped tokens: the first of the fixed slice, not a chosen one


def predictions_of(store: RunStore, run: dict, data) -> dict:
    """The run's stored test predictions, or recomputed from its weights (older runs), then stored."""
    stored = (run.get("extra") or {}).get("predictions")
    if stored and len(stored.get("label", [])) == len(data.y_test):
        return stored
    model = load_run_model(run["weights_path"])
    dtype = getattr(torch, (run.get("extra") or {}).get("input_dtype") or "float32", torch.float32)
    logits = predict(model, data.x_test.to(dtype))
    stored = compact_predictions(logits)
    store.update_run(run["id"], extra={**(run.get("extra") or {}), "predictions": stored})
    return stored


def _diff_images(store: RunStore, a: dict, b: dict, max_flipped: int | None) -> dict:
    data = load_dataset(a["dataset"])
    try:
        out = diff_predictions(predictions_of(store, a, data), predictions_of(store, b, data), data.y_test,
                               list(data.class_names), max_flipped)
    except ValueError as err:
        raise LabError(f"Runs {a['id']} and {b['id']} cannot be compared: {err}") from None
    return {"kind": "image", **out}


def context_of(run: dict) -> int:
    """The context a language-model run was measured at (its record's; older records kept it in the config)."""
    return int((run.get("record") or {}).get("context") or run["config"].get("context") or 0)


def _diff_text(store: RunStore, a: dict, b: dict, max_flipped: int | None) -> dict:
    """Both models on the same fixed test sequences (at the shorter of their two contexts), and their greedy
    completions of PROMPTS. Roughly a second for the default gpt: MAX_POSITIONS bounds the work."""
    model_a, model_b = load_run_model(a["weights_path"]), load_run_model(b["weights_path"])
    tokenizer = model_a.tokenizer
    if tokenizer.name != model_b.tokenizer.name:
        raise LabError(f"Runs {a['id']} and {b['id']} read text with different tokenizers ({tokenizer.name} and "
                       f"{model_b.tokenizer.name}): their next-token predictions cannot be compared token by token.")
    contexts = [c for c in (context_of(a), context_of(b)) if c]
    if not contexts:
        raise LabError(f"Runs {a['id']} and {b['id']} record no context length: re-measure them to compare them.")
    context = min(contexts)
    data = load_dataset(a["dataset"])
    inputs, targets = data.windows(tokenizer, "test", context, limit=sequences_for(context), seed=SPLIT_SEED)
    top1_a, loss_a = next_token_view(model_a, inputs, targets)
    top1_b, loss_b = next_token_view(model_b, inputs, targets)
    out = compare_next_tokens(top1_a, loss_a, top1_b, loss_b, targets)
    sample = sample_flips(inputs[SAMPLE_SEQUENCE], targets[SAMPLE_SEQUENCE], top1_a[SAMPLE_SEQUENCE],
                          top1_b[SAMPLE_SEQUENCE], tokenizer.decode)
    tokens = min(COMPLETION_TOKENS, context // 2)  # generate keeps the prompt's last (context - tokens) tokens
    completions = [{"prompt": prompt, "a": generate(model_a, prompt, tokens, context=context),
                    "b": generate(model_b, prompt, tokens, context=context)} for prompt in PROMPTS]
    flipped = sample.pop("flipped_tokens")
    # the two stored perplexities on the whole test set, paired window by window (None: not the same windows)
    paired = paired_perplexity(a.get("record") or {}, b.get("record") or {})
    return {"kind": "text", "context": context, "tokenizer": tokenizer.name, **out,
            "paired_perplexity": paired, "paired_perplexity_text": difference_text(paired, "B", "A") if paired else None,
            "sample_sequence": SAMPLE_SEQUENCE, "sample": sample,
            "flipped_tokens": flipped if max_flipped is None else flipped[:max_flipped],
            "completion_tokens": tokens, "completions": completions}


# how each task's runs are compared: image classifiers by their stored answers, language models by their tokens
COMPARISONS = {"image": _diff_images, "text": _diff_text}


def diff_runs(store: RunStore, run_a: int, run_b: int, max_flipped: int | None = None) -> dict:
    """What changed from run A (the reference, e.g. the parent) to run B. Image runs: core.behaviour's fields with
    kind "image"; language-model runs: kind "text", see _diff_text. Raises LabError when they cannot be compared."""
    a, b = store.get_run(run_a), store.get_run(run_b)
    task_a, task_b = task_of(a), task_of(b)
    if task_a is not task_b:
        raise LabError(f"Run {run_a} is {task_a.model_noun} on '{a['dataset']}' and run {run_b} {task_b.model_noun} on "
                       f"'{b['dataset']}': only two runs on the same data set can be compared.")
    if a["dataset"] != b["dataset"]:
        raise LabError(f"Runs {run_a} and {run_b} were evaluated on different data sets ({a['dataset']} and "
                       f"{b['dataset']}): their answers cannot be compared example by example.")
    return {"run_a": run_a, "run_b": run_b, "dataset": a["dataset"],
            **COMPARISONS[task_a.name](store, a, b, max_flipped)}


def generate_from_run(store, run_id: int, prompt: str, tokens: int, temperature: float = 0.0,
                      seed: int = 0) -> dict:
    run = store.get_run(run_id)
    if not task_of(run["model"]).generates:
        raise LabError(f"Run {run_id} is an image model ({format_spec(run['model'])}); generate needs a language "
                       "model run.")
    model = load_run_model(run["weights_path"])
    text = generate(model, prompt, tokens, temperature, seed, run["config"].get("context"))
    return {"run_id": run_id, "prompt": prompt, "completion": text, "tokens": tokens, "temperature": temperature,
            "seed": seed}

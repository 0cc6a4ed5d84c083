"""The language-modelling task: perplexity (lower is better, with bits per byte; changes as a % increase), two
timed phases (a prefill batch and a cached decode step), the labs that compress language models."""
from __future__ import annotations

from ..search.space import TEXT
from ..text.corpus import TEXT as TEXT_PREFIX, TEXT_DATASETS
from ..text.models import LANGUAGE_MODELS
from .base import Quality, Task, register_task


class TextTask(Task):
    name = "text"
    title = "language modelling"
    quality = Quality("perplexity", "perplexity", False, "%", "perplexity increase")
    phases = ("prefill", "decode")
    labs = frozenset({"train", "prune", "quantize", "distill", "search", "plan", "demo"})
    search_data = TEXT
    default_model = "gpt"
    model_noun = "a language model"
    data_noun = "text"
    model_hint = "pick a language model (gpt, or hf:PATH for your own Hugging Face checkpoint)"
    data_hint = "pick a text data set (pydoc, or text:PATH for your own)"
    default_prune_method = "magnitude"
    finetune_epochs = 0          # language models are pruned one-shot, as the papers do

    def owns_dataset(self, name: str) -> bool:
        return name in TEXT_DATASETS or str(name).startswith(TEXT_PREFIX)

    def owns_model(self, name: str) -> bool:
        return str(name).partition(":")[0] in LANGUAGE_MODELS

    def unavailable(self, lab: str) -> str | None:
        if lab in self.labs:
            return None
        return (f"The {lab} lab works on image models for now; on text you can train, prune, quantize, distill, "
                "search and plan language models.")


TEXT_TASK = register_task(TextTask())

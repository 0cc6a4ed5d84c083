"""Human names for every technique id, read from the registries, for legends and pickers on a projector
("Channel pruning (L1)", not "channel_l1")."""
from __future__ import annotations

from ..techniques.prune import METHODS as PRUNE_METHODS
from ..techniques.quantize import METHODS as QUANT_METHODS
from .distill import METHOD_LABELS as DISTILL_LABELS

OTHER_LABELS = {"baseline": "Baseline", "finetune": "Fine-tune", "uploaded": "Uploaded model", "train": "Baseline",
                "random": "Search: random", "evolution": "Search: evolution", "tpe": "Search: TPE",
                "nsga2": "Search: NSGA-II", "search_trial": "Search trial"}


def technique_label(name: str | None) -> str:
    if not name:
        return "Other"
    for registry in (PRUNE_METHODS, QUANT_METHODS):
        if name in registry:
            return registry.label(name)
    return DISTILL_LABELS.get(name) or OTHER_LABELS.get(name) or name.replace("_", " ").capitalize()

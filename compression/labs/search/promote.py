"""Promoting a searched architecture: what each "promote" button on the Search page submits.

Kept here, not in the page, so the defaults (sparsities, methods, student epochs) are the lab's decision,
checked by the same configs as any job.
"""
from __future__ import annotations

from ..configs import BaselineConfig, DistillLabConfig, PruneLabConfig, QuantizeLabConfig

ACTIONS = {"train": "Retrain fully", "distill": "Distil into it", "prune": "Prune it", "quantize": "Quantize it"}


def promotion(action: str, spec: str, dataset: str, baseline: dict) -> tuple[str, dict]:
    """(job kind, params) for one promote action on architecture `spec`; `baseline` is the sidebar's choices."""
    base = BaselineConfig.from_dict({**baseline, "dataset": dataset, "model": spec}).to_dict()
    if action == "train":
        return "train", base
    if action == "distill":  # the sidebar's model teaches the searched one, with 3x its epochs
        return "distill", DistillLabConfig(teacher=baseline["model"], student=spec, dataset=dataset,
                                           temperatures=[4.0], seeds=[0], epochs=max(1, base["epochs"]) * 3,
                                           label_fraction=1.0, latency_batch=base["latency_batch"],
                                           device=base["device"]).to_dict()
    if action == "prune":
        return "prune", PruneLabConfig.from_dict({**base, "sparsities": [0.5, 0.7], "method": "channel_l1",
                                                  "finetune_epochs": 3}).to_dict()
    return "quantize", QuantizeLabConfig.from_dict({**base, "methods": ["dynamic_int8", "static_int8"]}).to_dict()

"""A language-model parent and its children: what labs.baseline's Parent and store_child are for image models.

The parent is measured in this process (perplexity, bits per byte, prefill and decode speed) and each child is
measured the same way, then timed together with it (prefill at the record's batch, and decode at batch 1), so every
speed-up is paired.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..core.data import load_dataset
from ..core.timing import machine_fingerprint
from ..store.artifacts import save_model
from ..text.corpus import TextDataset
from ..text.measure import DECODE_TOKENS, PREFILL_BATCH, DecodeLoop, measure_lm
from .baseline import Child, config_as_applied, resolve_parent
from .configs import TechniqueConfig
from .context import RunContext
from .records import as_record
from .speed import record_fields, time_pair_on

SIZE_ONLY = ("size only on this machine: the zeros are stored, but dense kernels still multiply them, so it runs "
             "no faster")


@dataclass
class LMParent:
    model: nn.Module
    run: dict
    data: TextDataset
    record: dict
    context: int
    prefill_batch: int = PREFILL_BATCH

    def as_baseline(self) -> dict:
        return {**as_record(self.run), **self.record}

    def prefill_input(self) -> torch.Tensor:
        return torch.zeros(self.prefill_batch, self.context, dtype=torch.long)

    def calibration(self, sequences: int, seed: int) -> torch.Tensor:
        """`sequences` windows of the training split (seeded), the papers' calibration data."""
        return self.data.windows(self.model.tokenizer, "train", self.context, limit=sequences, seed=seed)[0]


def prepare_lm_parent(config: TechniqueConfig, ctx: RunContext,
                      check: Callable[[nn.Module], None] | None = None) -> LMParent:
    """The parent, loaded, `check`ed (a method that cannot handle it says so before any measuring), measured."""
    model, run = resolve_parent(config, ctx.slice(0.0, 0.1))
    if check is not None:
        check(model)
    data = load_dataset(run["dataset"], config.data_dir, config.download)
    context = int(run["config"].get("context") or run["record"].get("context") or model.context)
    ctx.report(0.12, "Measuring the parent model in this process")
    record = measure_lm(model, data, context, min_run_time=ctx.latency_time)
    return LMParent(model.eval(), run, data, record, context)


def store_lm_child(ctx: RunContext, parent: LMParent, model: nn.Module, child: Child) -> dict:
    """Measure a compressed language model next to its parent, time the two together (prefill), store the child."""
    weights_path = save_model(model, torch.zeros(1, min(parent.context, 8), dtype=torch.long))
    record = measure_lm(model, parent.data, parent.context, min_run_time=ctx.latency_time)
    block_s = max(0.01, ctx.latency_time / 6)
    x = parent.prefill_input()
    timings = [{**time_pair_on(parent.model, model, x, x, block_s=block_s), "phase": "prefill"}]
    # decode too (batch 1, cached steps): int8 that wins prefill can lose here, and a reader must see both
    steps = max(1, min(DECODE_TOKENS, parent.context - 1))
    prompt = torch.zeros(1, 1, dtype=torch.long)
    timings.append({**time_pair_on(DecodeLoop(parent.model, steps), DecodeLoop(model, steps), prompt, prompt,
                                   block_s=block_s), "phase": "decode"})
    for timing in timings:
        record.update(record_fields(timing))
    record["speedup_reference"] = parent.run["id"]
    record["perplexity_increase"] = record["perplexity"] / parent.record["perplexity"] - 1
    run_id = ctx.store.add_run(child.kind, parent.run["dataset"], child.model_spec or parent.run["model"],
                               config_as_applied(child.config, parent.run), parent_id=parent.run["id"],
                               record=record, extra=child.extra, method=child.method, label=child.label,
                               job_id=ctx.job_id, weights_path=weights_path)
    for timing in timings:
        ctx.store.add_machine(machine_fingerprint(timing["device"], timing["threads"]))
        ctx.store.add_speedup(parent.run["id"], run_id, timing, "parent")
    return ctx.store.get_run(run_id)

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
from ..text.measure import PHASES, PREFILL_BATCH, measure_lm, phase_workload
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

    @property
    def latency_batch(self) -> int:
        """The batch a latency figure means (labs.baseline.Parent's name for it): the prefill batch."""
        return self.prefill_batch

    def calibration(self, sequences: int, seed: int) -> torch.Tensor:
        """`sequences` windows of the training split (seeded), the papers' calibration data."""
        return self.data.windows(self.model.tokenizer, "train", self.context, limit=sequences, seed=seed)[0]


def prepare_lm_parent(config: TechniqueConfig, ctx: RunContext,
                      check: Callable[[nn.Module], None] | None = None) -> LMParent:
    """The parent, loaded, `check`ed (a method that cannot handle it says so before any measuring), measured."""
    model, run = resolve_parent(config, ctx.slice(0.0, 0.1))
    if check is not None:
        check(model)
    return measured_parent(model, run, load_dataset(run["dataset"], config.data_dir, config.download), ctx)


def measured_parent(model: nn.Module, run: dict, data: TextDataset, ctx: RunContext) -> LMParent:
    """A stored language-model run measured in this process, at the context its record was measured at."""
    ctx.report(0.12, f"Measuring run {run['id']} in this process")
    context = int(run["record"]["context"])
    return LMParent(model.eval(), run, data, measure_lm(model, data, context, min_run_time=ctx.latency_time),
                    context)


def store_lm_child(ctx: RunContext, parent: LMParent, model: nn.Module, child: Child) -> dict:
    """Measure a compressed language model next to its parent, time the two together at prefill and at decode
    (int8 that wins prefill can lose decode, and a reader must see both), store the child."""
    weights_path = save_model(model, torch.zeros(1, min(parent.context, 8), dtype=torch.long))
    record = measure_lm(model, parent.data, parent.context, min_run_time=ctx.latency_time)
    timings = []
    for phase in PHASES:
        timed_parent, x, _ = phase_workload(parent.model, phase, parent.context, parent.prefill_batch)
        timed_child, _, _ = phase_workload(model, phase, parent.context, parent.prefill_batch)
        timings.append({**time_pair_on(timed_parent, timed_child, x, x, block_s=max(0.01, ctx.latency_time / 6)),
                        "phase": phase})
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

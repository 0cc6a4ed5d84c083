"""The teaching demos, one per task: every lab on the task's embedded data with small defaults, in one go, so a
newcomer sees each chart fill in. A demo is a list of stages (what the progress bar says, stage(config, ctx) ->
run ids), each reporting into its slice of one progress bar; then the Report's headline pairs are re-timed."""
from __future__ import annotations

import time

from ...core.measure import quiet_wait_limit
from ..configs import DemoConfig, RetimeConfig
from ..context import RunContext
from ...core.timing import machine_fingerprint
from ..records import as_record
from ..summary import claims_to_retime, default_report_runs, reference_of
from .image import DEMO_BASELINES, DEMO_QUIET_WAIT_S, demo_stages
from .text import lm_demo_params, lm_demo_stages

DEMOS = {"image": demo_stages, "text": lm_demo_stages}  # each task's stages, by task name


def run_demo(config: DemoConfig, ctx: RunContext | None = None) -> dict:
    # short timing blocks: the demo shows the method live on small models; re-time pairs for quotable figures
    ctx = (ctx or RunContext()).with_(latency_time=0.1)
    start = time.perf_counter()
    stages = DEMOS[config.task().name]()
    ids, ran = [], []
    # and a short quiet wait: in a browser, the page drawing each new run is the load a timing would wait out
    with quiet_wait_limit(DEMO_QUIET_WAIT_S):
        for i, (label, stage) in enumerate(stages):
            began = time.perf_counter()
            stage_ids = stage(config, ctx.slice(i / len(stages), (i + 1) / len(stages), label))
            ids += stage_ids
            ran.append({"stage": label, "runs": len(stage_ids), "wall_s": round(time.perf_counter() - began, 1)})
    return {"run_ids": ids, "stages": ran, "wall_s": time.perf_counter() - start,
            "retime": headline_pairs(ctx.store, config.task())}


def headline_pairs(store, task) -> list[dict]:
    """Every claim the Report opens on for `task` (summary.default_report_runs: its newest runs that grew from a
    baseline, each against its lineage root, at the batch of its timing, and for a language model both prefill and
    decode), as RetimeConfig params. The demo's stages time each pair quickly, in this process, to draw the charts
    live; the job queue then re-times these in fresh processes, pooled, so every figure the Report shows a presenter
    is calibrated. Any other pair is one click on the Report."""
    machine = machine_fingerprint("cpu")["id"]
    records = [r for r in map(as_record, store.list_runs(status="done")) if r.get("task") == task.name]
    pairs = []
    for run_id in default_report_runs(records):
        reference = reference_of(store, run_id)
        if reference is not None:
            pairs += [RetimeConfig(**params).to_dict()
                      for params in claims_to_retime(store, run_id, reference, task.phases, machine, None)]
    return pairs


__all__ = ["run_demo", "headline_pairs", "demo_stages", "lm_demo_stages", "lm_demo_params", "DEMOS", "DEMO_BASELINES"]

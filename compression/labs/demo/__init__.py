"""The teaching demos, one per task: every lab on the task's embedded data with small defaults, in one go, so a
newcomer sees each chart fill in. A demo is a list of stages (what the progress bar says, stage(config, ctx) ->
run ids), each reporting into its slice of one progress bar; then the Report's headline pairs are re-timed."""
from __future__ import annotations

import time

from ...core.measure import quiet_wait_limit
from ..configs import DemoConfig, RetimeConfig
from ..context import RunContext
from ..speed import latest_speedup
from ..summary import REPORT_DEFAULT_RUNS, reference_of
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
            "retime": headline_pairs(ctx.store, ids, config.device)}


def headline_pairs(store, run_ids: list[int], device: str) -> list[dict]:
    """The claims the Report opens on (its newest REPORT_DEFAULT_RUNS runs, each against its lineage root, at the
    largest batch timed), as RetimeConfig params. The demo's stages time each pair quickly, in this process, to
    draw the charts live; the job queue then re-times these in fresh processes, pooled, so the figures a presenter
    quotes are calibrated. (All eleven would take ~80 s after the demo; any other is one click on the Report.)"""
    pairs = []
    with_parent = [i for i in run_ids if store.get_run(i).get("parent_id") is not None]
    for run_id in with_parent[-REPORT_DEFAULT_RUNS:]:
        reference = reference_of(store, run_id)
        row = latest_speedup(store, run_id, reference) if reference is not None else None
        if row is not None:
            phase = (row.get("detail") or {}).get("phase")  # a language model's: prefill, at its batch
            pairs.append(RetimeConfig(run_a=reference, run_b=run_id, batch_size=row["batch_size"],
                                      device=row["device"] if row["device"] == "cpu" else device,
                                      **({"phase": phase} if phase else {})).to_dict())
    return pairs


__all__ = ["run_demo", "headline_pairs", "demo_stages", "lm_demo_stages", "lm_demo_params", "DEMOS", "DEMO_BASELINES"]

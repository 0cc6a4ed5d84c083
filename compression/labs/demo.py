"""The teaching demo: every lab on the embedded digits data with small defaults, in one go, so a newcomer
sees each chart fill in. Each stage reports into its slice of one progress bar."""
from __future__ import annotations

import time

from ..core.measure import quiet_wait_limit
from .baseline import get_baseline
from .configs import (BaselineConfig, DemoConfig, DistillLabConfig, PipelineLabConfig, PruneLabConfig,
                      QuantizeLabConfig, RetimeConfig, SearchConfig)
from .context import RunContext
from .distill import run_distill
from .lm_demo import lm_demo_stages
from .pipeline import run_pipeline
from .prune import run_prune
from .quantize import run_quantize
from .records import run_ids
from .search import run_search
from .speed import latest_speedup
from .summary import REPORT_DEFAULT_RUNS, reference_of
from ..text.corpus import is_text_name

DEMO_BASELINES = ["lenet5", "mlp:hidden=64", "cnn:width=16"]
DEMO_QUIET_WAIT_S = 1.0


def _baseline(spec):
    def stage(config: DemoConfig, ctx: RunContext) -> list[int]:
        _, run = get_baseline(config.subset(BaselineConfig).replace(model=spec), ctx)
        return [run["id"]]
    return stage


def _prune(**options):
    def stage(config: DemoConfig, ctx: RunContext) -> list[int]:
        lab = PruneLabConfig.from_dict({**config.subset(BaselineConfig).to_dict(), "model": DEMO_BASELINES[0],
                                        **options})
        return run_ids(run_prune(lab, ctx)["results"])
    return stage


def _distill(config: DemoConfig, ctx: RunContext) -> list[int]:
    lab = DistillLabConfig(teacher=DEMO_BASELINES[0], student="mlp:hidden=16", dataset=config.dataset,
                           label_fraction=0.1, seeds=[0], epochs=30, teacher_epochs=max(config.epochs, 1),
                           latency_batch=config.latency_batch, device=config.device)
    out = run_distill(lab, ctx)
    return run_ids(out["student_plain"] + out["student_kd"])


def _quantize(config: DemoConfig, ctx: RunContext) -> list[int]:
    lab = QuantizeLabConfig.from_dict({**config.subset(BaselineConfig).to_dict(), "model": DEMO_BASELINES[0],
                                       "methods": ["dynamic_int8", "static_int8"]})
    return run_ids(run_quantize(lab, ctx)["results"])


def _pipeline(config: DemoConfig, ctx: RunContext) -> list[int]:
    lab = PipelineLabConfig.from_dict({**config.subset(BaselineConfig).to_dict(), "model": "cnn:width=16",
                                       "steps": "prune:channel_l1=0.5,finetune:3,quantize:static_int8"})
    return run_ids(run_pipeline(lab, ctx)["stages"])


def _search(config: DemoConfig, ctx: RunContext) -> list[int]:
    # a small MLP search (6 trials x 2 epochs): enough to draw a front next to the zoo in a few seconds
    lab = SearchConfig(dataset=config.dataset, space="mlp", strategy="random", trials=6, epochs=2,
                       objective="params", seed=config.seed, latency_batch=64, device=config.device,
                       study=f"demo-search-{int(time.time())}")
    out = run_search(lab, ctx)
    return [t["run_id"] for t in out["trials"] if t.get("run_id")]


def demo_stages() -> list[tuple[str, callable]]:
    """Each lab adds its stage here: (what the progress bar says, stage(config, ctx) -> run ids)."""
    return ([(f"baseline {spec}", _baseline(spec)) for spec in DEMO_BASELINES] +
            [("prune global_l1", _prune(method="global_l1", sparsities=[0.5, 0.8, 0.9], finetune_epochs=4,
                                        schedule="iterative", steps=3)),  # gradual: one-shot 90% lost 19 pt
             ("prune channel_l1", _prune(method="channel_l1", sparsities=[0.5], finetune_epochs=4)),
             ("distill", _distill),
             ("quantize", _quantize),
             ("pipeline", _pipeline),
             ("search", _search)])


def run_demo(config: DemoConfig, ctx: RunContext | None = None) -> dict:
    # short timing blocks: the demo shows the method live on small models; re-time pairs for quotable figures
    ctx = (ctx or RunContext()).with_(latency_time=0.1)
    start = time.perf_counter()
    stages = lm_demo_stages() if is_text_name(config.dataset) else demo_stages()
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

"""The image teaching demo: every lab on the embedded digits data with small defaults, in one go, so a newcomer
sees each chart fill in. Each stage reports into its slice of one progress bar."""
from __future__ import annotations

import time

from ..baseline import get_baseline
from ..configs import (BaselineConfig, DemoConfig, DistillLabConfig, PipelineLabConfig, PruneLabConfig,
                      QuantizeLabConfig, SearchConfig)
from ..context import RunContext
from ..distill import run_distill
from ..pipeline import run_pipeline
from ..prune import run_prune
from ..quantize import run_quantize
from ..records import run_ids
from ..search import run_search

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

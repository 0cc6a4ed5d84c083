"""The language-model teaching demo: a small gpt trained on the embedded Python documentation, then every
language-model lab on it with small defaults, so a newcomer sees the perplexity charts fill in within two minutes
on 2 cores. The stages are labs.demo's: (what the progress bar says, stage(config, ctx) -> run ids).

- the three weight pruners of the papers (magnitude, Wanda, SparseGPT) at 50% and at 2:4, one-shot;
- heads and MLP units removed by half, fine-tuned for an epoch with the model as teacher (the one that is faster);
- dynamic int8;
- a 2-layer student distilled from it, next to the same student trained alone.

Each fine-tuned child and student comes with its fair control (labs.parent.fair_control): the gpt's own weights
trained as many more steps, the same way, labelled "(control)" and among the demo's runs, so its charts show what
the extra training alone buys.
"""
from __future__ import annotations

from ..configs import BaselineConfig, DemoConfig, DistillLabConfig, PruneLabConfig, QuantizeLabConfig
from ..context import RunContext
from ..distill import run_distill
from ..baseline import get_baseline
from ..prune import run_prune
from ..quantize import run_quantize
from ..records import run_ids

# four layers of width 64 over 64-token windows: ~15 s of training on 2 cores, and a model that has learnt enough
# of the text (perplexity ~8 against the default gpt's 6.8) for pruning to hurt it visibly
LM_DEMO_MODEL = "gpt:layers=4,width=64,heads=4,context=64"
LM_DEMO_STUDENT = "pruned:depth=0.5"  # two of the four layers, cut from the teacher and distilled (Minitron)
LM_DEMO_STEPS, LM_DEMO_BATCH = 300, 32
LM_DEMO_CALIBRATION = 16   # sequences: the papers' 128 buy nothing measurable on a model this small


def lm_demo_params() -> dict:
    """What Home submits for the language-model demo (the baseline part of a DemoConfig)."""
    return {"dataset": "pydoc", "model": LM_DEMO_MODEL, "train_steps": LM_DEMO_STEPS, "batch_size": LM_DEMO_BATCH}


def _baseline_config(config: DemoConfig) -> dict:
    return config.subset(BaselineConfig).to_dict()


def _follow_up_steps(config: DemoConfig) -> int:
    """Steps of each fine-tune and student: half the gpt's own training (150 for the demo's 300), so a demo on a
    smaller budget stays in proportion."""
    return max(1, (config.train_steps or LM_DEMO_STEPS) // 2)


def _train(config: DemoConfig, ctx: RunContext) -> list[int]:
    _, run = get_baseline(config.subset(BaselineConfig), ctx)
    return [run["id"]]


def _prune(method: str, options: dict | None = None, fine_tune: bool = False):
    """One method at 50% and at 2:4 (one-shot); or, with `fine_tune`, a structured method at 50%, fine-tuned."""
    shapes = [{"sparsities": [0.5]}] if fine_tune else [{"sparsities": [0.5]}, {"pattern": "2:4"}]

    def stage(config: DemoConfig, ctx: RunContext) -> list[int]:
        ids = []
        steps = {"finetune_steps": _follow_up_steps(config)} if fine_tune else {}
        for i, shape in enumerate(shapes):
            lab = PruneLabConfig.from_dict({**_baseline_config(config), "method": method,
                                            "calibration": LM_DEMO_CALIBRATION, **shape, **(options or {}), **steps})
            out = run_prune(lab, ctx.slice(i / len(shapes), (i + 1) / len(shapes)))
            ids += run_ids(out["controls"] + out["results"])  # a fine-tuned child beside its fair control
        return ids
    return stage


def _quantize(config: DemoConfig, ctx: RunContext) -> list[int]:
    lab = QuantizeLabConfig.from_dict({**_baseline_config(config), "methods": ["dynamic_int8"]})
    return run_ids(run_quantize(lab, ctx)["results"])


def _distill(config: DemoConfig, ctx: RunContext) -> list[int]:
    _, teacher = get_baseline(config.subset(BaselineConfig), ctx.slice(0.0, 0.05))
    lab = DistillLabConfig(dataset=config.dataset, teacher=str(teacher["id"]), student=LM_DEMO_STUDENT,
                           temperatures=[2.0], seeds=[0], student_steps=_follow_up_steps(config), device=config.device)
    out = run_distill(lab, ctx.slice(0.05, 1.0))
    return run_ids(out["controls"] + out["student_plain"] + out["student_pruned_kd"] + out["student_kd"])


def lm_demo_stages() -> list[tuple[str, callable]]:
    return [("train gpt on pydoc", _train),
            ("prune magnitude", _prune("magnitude")),
            ("prune wanda", _prune("wanda")),
            ("prune sparsegpt", _prune("sparsegpt")),
            ("prune heads + MLP, fine-tuned", _prune("heads_mlp", {"distill": True}, fine_tune=True)),
            ("quantize dynamic int8", _quantize),
            ("distill a 2-layer student", _distill)]

"""The pipeline lab: chains of techniques on one model, e.g. prune -> fine-tune -> quantize; each stage is
stored as the child of the one before, so Compare can draw the path."""
from __future__ import annotations

from .parent import Child, prepare_parent, store_child
from .configs import PipelineLabConfig
from .context import RunContext
from .records import as_record
from .stages import STAGES, parse_steps


def run_pipeline(config: PipelineLabConfig, ctx: RunContext | None = None) -> dict:
    """Run each stage on the previous stage's model. Returns {"baseline": record, "stages": [record, ...]}."""
    ctx = ctx or RunContext()
    steps = parse_steps(config.steps)
    parent = prepare_parent(config, ctx)
    device = config.device if config.device not in (None, "auto") else "cpu"
    model, previous, stages, names = parent.model, parent.run, [], []
    for i, step in enumerate(steps):
        stage_ctx = ctx.slice(0.15 + 0.85 * i / len(steps), 0.15 + 0.85 * (i + 1) / len(steps), f"stage {i + 1}")
        env = {"device": device, "seed": config.seed, "calibration_batches": config.calibration_batches,
               "on_epoch": stage_ctx.on_epoch(0.0, 0.8), "should_cancel": ctx.should_cancel}
        result = STAGES[step["kind"]].apply(model, step, parent.data, env)
        model = result.model
        names.append(result.name)
        stage_ctx.report(0.85, f"{result.name}: measuring")
        run = store_child(ctx, parent, model, Child(
            step["kind"], result.method, " → ".join(names),
            {**config.to_dict(), "pipeline": steps, "stage": i + 1, **step},
            {"stage": i + 1, "step": step, "final_stage": i == len(steps) - 1, **result.extra},
            input_dtype=result.input_dtype, float_model=result.float_model), under=previous)
        stages.append(as_record(run))
        previous = run
        ctx.check_cancel()
    ctx.report(1.0, f"Stored {len(stages)} stage(s)")
    return {"baseline": parent.as_baseline(), "stages": stages}

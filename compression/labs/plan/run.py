"""The plan lab's one loop, for every task: find the task of the model planned for, ask its Planner for the ends
(planner.py), and run the same flow: prepare, open the study, trials until the budget is spent, verify, summarize.

The study lives in the run database: more processes join it with the same command and `--study NAME`, and the
budget counts finished trials, whoever ran them. The search sees validation quality only; the winner is picked,
like every front in the lab, on the recorded test quality, then verified (result.py): timed again in pairs with the
parent, its size is its file.
"""
from __future__ import annotations

import time

import optuna

from ..context import RunContext
from ..parent import parent_task
from ..search import optimize_until
from .config import PlanConfig
from .image import IMAGE_PLANNER
from .planner import Planner
from .result import summarize
from .study import open_plan_study
from .text import TEXT_PLANNER

PLANNERS: dict[str, Planner] = {"image": IMAGE_PLANNER, "text": TEXT_PLANNER}  # task name -> its plan's ends


def run_plan(config: PlanConfig, ctx: RunContext | None = None) -> dict:
    """Search, pick and verify. Returns {"baseline", "best", "front", "trials", "study", "target", ...}."""
    ctx = ctx or RunContext()
    task = parent_task(config, ctx)
    planner = PLANNERS[task.name]
    config = config.for_models(task)
    unavailable: list[dict] = []
    env = planner.prepare(config, ctx, unavailable)
    study = open_plan_study(config, ctx.store.url, list(planner.directions), planner.priors(config, env.space))
    env.study = study.study_name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.monotonic()
    deadline = started + config.time_budget if config.time_budget else None
    out_of_time = optimize_until(study, planner.objective(env), config.trials, ctx.cancelled, deadline)
    ctx.check_cancel()
    ctx.report(0.95, (f"Time budget of {config.time_budget:g} s spent: verifying the best trial so far"
                      if out_of_time else planner.verifying))
    out = summarize(study, env.parent, env.target, env.bound, ctx, planner.device(config), planner.verified)
    ctx.report(1.0, out["best"]["why"] if not out["best"]["meets"] else
               f"Run {out['best']['run_id']} meets {env.target.phrase()}")
    budget = {"time_budget_s": config.time_budget or None, "stopped_by_time_budget": out_of_time,
              "search_s": round(time.monotonic() - started, 1)}
    return {**out, **budget, "unavailable": unavailable}


def plan_rows(out: dict) -> list[dict]:
    """The CLI's table: the parent, then every finished trial."""
    return [out["baseline"]] + [t for t in out["trials"] if "accuracy" in t]


def plan_created(out: dict) -> list[int]:
    return [t["run_id"] for t in out["trials"] if t.get("run_id") is not None]


def plan_summary(out: dict) -> dict:
    """What a finished plan job keeps besides its run ids."""
    return {k: out[k] for k in ("study", "target", "best", "front")}

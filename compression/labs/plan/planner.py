"""What a task's plan brings to the one loop (run.run_plan): a Planner, registered per task name in run.PLANNERS.

The loop is the same for every task: prepare what the trials share (the parent measured here, the recipe space, the
validation data), open or join the study seeded with the target's first recipes, run trials until the budget is
spent, verify the winner, summarize. A task supplies the ends, as transformers' pipelines do: its recipe space and
objective (image.py, text.py), where its winner is timed again, and the fields its answer adds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import optuna

from ...errors import CancelledError
from ..context import RunContext
from ..parent import Parent
from .bound import Bound
from .config import PlanConfig
from .target import Target


class PlanEnv(Protocol):
    """What every trial of one process shares, whatever the task: each planner's env has at least these."""
    config: PlanConfig
    target: Target
    bound: Bound
    parent: Parent
    space: Any          # the task's recipe space (recipes_image.Space, recipes_text.LMSpace)
    ctx: RunContext
    study: str          # the study's name, once it is open


@dataclass(frozen=True)
class Planner:
    """One task's plan: the hooks run.run_plan calls, in its order."""
    prepare: Callable[[PlanConfig, RunContext, list[dict]], PlanEnv]  # methods it cannot run go to the list
    directions: tuple[str, str]                         # the study's: validation quality's, then the cost's
    priors: Callable[[PlanConfig, Any], list[dict]]     # (config, space) -> the first trials' parameters
    objective: Callable[[PlanEnv], Callable[[optuna.Trial], tuple[float, float]]]
    device: Callable[[PlanConfig], str]                 # where the winner is timed again
    verifying: str                                      # the progress line while it is
    verified: Callable[[dict, dict], dict]              # (verified best, its trial's row) -> the task's fields


def stop_if_cancelled(ctx: RunContext, trial: optuna.Trial) -> None:
    """A trial started after the user cancelled stops the study instead of running."""
    if ctx.cancelled():
        trial.study.stop()
        raise CancelledError("cancelled by the user")


def closest_cost(trial: optuna.Trial, loss_attr: str, limit: float) -> tuple[float, int] | None:
    """The lowest cost among finished trials within the quality bound (their validation loss, `loss_attr`, at most
    `limit`), and its trial number; None when there is none yet."""
    done = [t for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if "cost" in t.user_attrs and t.user_attrs.get(loss_attr, 1e9) <= limit]
    if not done:
        return None
    best = min(done, key=lambda t: t.user_attrs["cost"])
    return best.user_attrs["cost"], best.number


def stop_before_finetuning(trial: optuna.Trial, target: Target, estimate: float, closest: tuple[float, int],
                           quality_constraint: str) -> None:
    """Both planners' rule: a trial whose one-shot model already misses the target, when a finished trial within
    the quality bound is closer to it, stops before its fine-tuning (it cannot become the answer)."""
    trial.set_user_attr("cost_estimate", estimate)
    if estimate > target.ratio and estimate >= closest[0]:
        trial.set_constraint("cost", estimate / target.ratio - 1)
        trial.set_constraint(quality_constraint, 0.0)
        note = (f"stopped before fine-tuning: its one-shot model is {target.phrase(estimate)}, short of "
                f"{target.phrase()}, and trial {closest[1]} is closer")
        trial.set_user_attr("note", note)
        raise optuna.TrialPruned(note)

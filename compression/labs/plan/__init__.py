"""The plan lab: name a target ("2.5x faster", "40x smaller"), get the best model that meets it within a quality
bound (most accurate for an image model, lowest perplexity for a language model), verified.

One loop for every task (run.py) asks the task's Planner (planner.py, PLANNERS) for what differs: the recipe space
and objective (image.py with recipes_image.py; text.py with recipes_text.py), where the winner is timed again, and
what its answer adds. Shared by all: the config (config.py), the target (target.py), the quality bound in the
task's metric (bound.py), the study (study.py) and the answer, verified (result.py).
"""
from __future__ import annotations

from .bound import Bound, bound_for
from .config import PlanConfig
from .image import open_study
from .planner import Planner
from .recipes_image import Built, Recipe, Space, Tuning, build, seed_params
from .recipes_text import LMRecipe, LMSpace, snapped
from .result import _why, list_plans, plan_state, ranked, summarize, verdict
from .run import PLANNERS, plan_created, plan_rows, plan_summary, run_plan
from .target import TARGETS, Target, parse_target, target_text

__all__ = ["PlanConfig", "run_plan", "plan_rows", "plan_created", "plan_summary", "PLANNERS", "Planner",
           "open_study", "list_plans", "plan_state", "summarize", "ranked", "verdict", "_why", "Bound", "bound_for",
           "Target", "TARGETS", "parse_target", "target_text", "Recipe", "Space", "Tuning", "Built", "build",
           "seed_params", "LMRecipe", "LMSpace", "snapped"]

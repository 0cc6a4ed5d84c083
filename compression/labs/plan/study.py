"""A plan's Optuna study, shared by the plans of every task: created seeded with the target's first recipes, or
joined by another process with the same `--study` name."""
from __future__ import annotations

import time

import optuna

from ...errors import LabError
from ..search import _storage
from .config import PlanConfig


def _sampler(config: PlanConfig, joined: bool) -> optuna.samplers.BaseSampler:
    # a joining process samples with another seed, or it would repeat the first process's recipes
    seed = config.seed + (int(time.time() * 1000) % 1000 + 1 if joined else 0)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, config.trials // 3))


def open_plan_study(config: PlanConfig, url: str, directions: list[str], priors: list[dict]) -> optuna.Study:
    """Create the study (seeded with the `priors`, the target's first recipes) or join an existing one."""
    name = config.study or f"plan-{config.target}-{int(time.time() * 1000) % 10**9}"
    try:
        existing = optuna.load_study(study_name=name, storage=_storage(url))
    except KeyError:
        existing = None
    study = optuna.create_study(study_name=name, storage=_storage(url), directions=directions,
                                sampler=_sampler(config, existing is not None), load_if_exists=True)
    if existing is None:
        study.set_user_attr("kind", "plan")
        study.set_user_attr("config", config.to_dict())
        for prior in priors:
            study.enqueue_trial(prior, skip_if_exists=True)
    elif existing.user_attrs.get("kind") != "plan":
        raise LabError(f"Study '{name}' is not a plan (it is a {existing.user_attrs.get('kind', 'search')} "
                       "study); pick another name.")
    return study

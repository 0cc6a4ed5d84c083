"""A search from start to summary: create (or resume) a study, run its trials in this process, and summarise the
front against the zoo's. What differs by task is the DataKind that KINDS holds for it (image.py, text.py)."""
from __future__ import annotations

import time

import optuna

from ...core.data import load_dataset
from ...core.pareto import pareto_mask
from ...errors import LabError
from ...search.space import space_size
from ...search.strategies import hypervolume, sampler
from ...store import RunStore
from ...tasks import task_of
from ..configs import SearchConfig
from ..context import RunContext
from ..records import as_record
from . import image, text  # noqa: F401  (each registers its DataKind in KINDS)
from .kinds import kind_of
from .study import _storage, finished_trials, load_config, optimize_until, reclaim_dead_trials


def create_study(config: SearchConfig, store: RunStore, name: str | None = None) -> optuna.Study:
    name = name or config.study or f"search-{config.space}-{config.strategy}-{int(time.time() * 1000) % 10**9}"
    quality = kind_of(config).direction
    directions = [quality] if config.objective == "none" else [quality, "minimize"]
    study = optuna.create_study(study_name=name, storage=_storage(store.url), directions=directions,
                                sampler=sampler(config.strategy, config.seed), load_if_exists=True,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    study.set_user_attr("config", config.to_dict())
    return study


def work(study: optuna.Study, config: SearchConfig, ctx: RunContext) -> None:
    """Run trials until the study holds `config.trials` finished ones, whichever worker ran them (study.py)."""
    data = load_dataset(config.dataset, config.data_dir, config.download)
    objective = kind_of(config).make_objective(config, study.study_name, data, ctx)
    reclaim_dead_trials(study)
    optimize_until(study, objective, config.trials, ctx.cancelled)


def summarize(study: optuna.Study, config: SearchConfig, store: RunStore, zoo: list[dict]) -> dict:
    kind = kind_of(config)
    trials = []
    for t in study.get_trials(deepcopy=False):
        row = {"number": t.number, "status": t.state.name.lower(), "arch": t.user_attrs.get("arch"),
               "run_id": t.user_attrs.get("run_id"), "note": t.user_attrs.get("status")}
        if row["run_id"] is not None:
            try:
                run = store.get_run(row["run_id"])
                row.update(as_record(run))  # with the run's extra: its quality and cost
            except LabError:
                pass  # the run was deleted; the trial stays
        row["status"] = t.state.name.lower()
        trials.append(row)
    scored = [t for t in trials if t["status"] == "complete" and "cost" in t and kind.quality in t]
    zoo_ok = [z for z in zoo if z["feasible"]]
    cost_ref = 1.1 * max([t["cost"] for t in scored] + [z["cost"] for z in zoo] + [1e-9])
    points = [(kind.score(t[kind.quality]), t["cost"]) for t in scored]
    front = pareto_mask([c for _, c in points], [q for q, _ in points])
    return {"study": study.study_name, "config": config.to_dict(), "data": _search_data(config.dataset),
            "quality": kind.quality, "quality_label": kind.label,
            "space_size": space_size(config.space, config.choices), "trials": trials,
            "pareto": [t["run_id"] for t, keep in zip(scored, front) if keep],
            "hypervolume": hypervolume(points, cost_ref),
            "zoo": zoo, "zoo_hypervolume": hypervolume([(kind.score(z[kind.quality]), z["cost"]) for z in zoo_ok],
                                                       cost_ref),
            "reference_point": {**kind.reference, "cost": cost_ref, "objective": config.objective,
                                "normalisation": kind.normalisation}}


def run_search(config: SearchConfig, ctx: RunContext | None = None) -> dict:
    """Create (or resume) a study, measure the zoo, run trials here, and summarise both fronts."""
    ctx = ctx or RunContext()
    kind = kind_of(config)
    data = load_dataset(config.dataset, config.data_dir, config.download)
    kind.check_feasible(config, data)
    zoo = kind.zoo_records(config, ctx)
    study = create_study(config, ctx.store)
    study.set_user_attr("zoo", [{k: z[k] for k in ("run_id", "label", "model_name", kind.quality, "cost", "feasible")}
                                for z in zoo])
    work(study, config, ctx)
    ctx.report(1.0, f"{finished_trials(study)} finished trials in {study.study_name}")
    return summarize(study, config, ctx.store, zoo)


def list_studies(store: RunStore, data: str | None = None) -> list[str]:
    """Search studies, newest first; only those on `data` (IMAGE or TEXT, a task's search_data) when given."""
    return [s.study_name for s in optuna.get_all_study_summaries(storage=_storage(store.url))
            if s.user_attrs.get("kind", "search") == "search"  # plan studies share the database
            and (data is None or _search_data(s.user_attrs.get("config", {}).get("dataset", "")) == data)][::-1]


def _search_data(dataset: str) -> str:
    """IMAGE or TEXT: the architecture spaces of the data set's task (what the Search page filters studies by)."""
    return task_of(dataset).search_data


def study_summary(study_name: str, store: RunStore) -> dict:
    """The live state of a study (trials so far, its zoo, both hypervolumes), for the Search page."""
    study, config = load_config(study_name, store)
    return summarize(study, config, store, study.user_attrs.get("zoo", []))

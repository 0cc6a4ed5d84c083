"""Small hardware-aware architecture searches on Optuna; the study lives in the run database.

Objectives: validation accuracy (maximise) and one cost (minimise): params, MACs or latency measured on
this device. Every trial is a stored run. More processes or machines join with
`python -m compression worker --study NAME --db URL`; trials spread over all of them.
"""
from __future__ import annotations

import logging
import random
import time
import warnings
from dataclasses import asdict, dataclass, field

import optuna
import torch

from .baseline import as_record, get_baseline
from .data import load_dataset
from .errors import CancelledError, LabError
from .measure import count_macs, count_params, measure, measure_latency
from .models import build_model, format_spec
from .pareto import pareto_mask
from .search_space import arch_to_spec, smallest_arch, space_size, suggest, validate_space
from .store import RunStore, worker_name
from .train import TrainConfig, accuracy, train

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the heartbeat is "experimental"
log = logging.getLogger("compression.search")
STRATEGIES = ("random", "evolution", "tpe", "nsga2")
OBJECTIVES = ("params", "macs", "latency", "none")
ZOO = {"cnn": ["lenet5", "cnn:width=8", "cnn:width=16", "cnn:width=32", "resnet_tiny:width=8", "mobilenet_tiny:width=8"],
       "mlp": ["mlp:hidden=32", "mlp:hidden=64", "mlp:hidden=128", "mlp:hidden=256-256"]}


@dataclass
class SearchConfig:
    dataset: str = "digits"
    space: str = "cnn"
    choices: dict = field(default_factory=dict)  # overrides of the default choices per dimension
    strategy: str = "random"
    trials: int = 20
    epochs: int = 3            # low fidelity: a few epochs per trial
    objective: str = "params"  # the cost; "none" = accuracy only (then Optuna's pruner can stop bad trials)
    max_params: int | None = None
    max_macs: int | None = None
    early_stop: bool = False
    seed: int = 0
    latency_batch: int = 64

    def __post_init__(self):
        self.choices = validate_space(self.space, self.choices)
        if self.strategy not in STRATEGIES:
            raise LabError(f"Unknown strategy '{self.strategy}'. Known: {', '.join(STRATEGIES)}")
        if self.objective not in OBJECTIVES:
            raise LabError(f"Unknown objective '{self.objective}'. Known: {', '.join(OBJECTIVES)}")
        if self.trials < 1 or self.epochs < 1:
            raise LabError(f"The budget must be at least 1 trial of 1 epoch, got {self.trials} x {self.epochs}")
        if self.early_stop and self.objective != "none":
            raise LabError("Optuna's pruners stop bad trials only in single-objective studies: use objective "
                           "'none' (accuracy, with a --max-params or --max-macs constraint) to stop trials early.")

    def to_dict(self) -> dict:
        return asdict(self)


class RegularizedEvolutionSampler(optuna.samplers.BaseSampler):
    """Regularized evolution (Real et al. 2019) as an Optuna sampler: the population is the latest
    `population` finished trials (the oldest die), a tournament picks a parent among them, and the child
    copies it with one dimension mutated."""

    def __init__(self, population: int = 10, tournament: int = 3, seed: int | None = None):
        self.population, self.tournament = population, tournament
        self._rng = random.Random(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._plans: dict[int, tuple[dict | None, str | None]] = {}

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def _plan(self, study, trial):
        done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
        if len(done) < self.population:
            return None, None  # warm-up: random architectures
        contestants = self._rng.sample(done[-self.population:], min(self.tournament, self.population))
        values = [t.values for t in contestants]
        best = [c for c, v in zip(contestants, values)  # non-dominated within the tournament
                if not any(_dominates(w, v, study.directions) for w in values if w is not v)]
        parent = self._rng.choice(best)
        mutable = [k for k, d in parent.distributions.items() if len(getattr(d, "choices", (0, 1))) > 1]
        return dict(parent.params), (self._rng.choice(mutable) if mutable else None)

    def sample_independent(self, study, trial, name, distribution):
        if trial.number not in self._plans:
            self._plans[trial.number] = self._plan(study, trial)
        parent, mutate = self._plans[trial.number]
        if parent is None or name not in parent:
            return self._random.sample_independent(study, trial, name, distribution)
        if name == mutate:
            others = [c for c in distribution.choices if c != parent[name]]
            return self._rng.choice(others) if others else parent[name]
        return parent[name]


def _dominates(a, b, directions) -> bool:
    better = [(x >= y) if d == optuna.study.StudyDirection.MAXIMIZE else (x <= y) for x, y, d in zip(a, b, directions)]
    strictly = [x != y for x, y in zip(a, b)]
    return all(better) and any(strictly)


def _sampler(strategy: str, seed: int):
    return {"random": lambda: optuna.samplers.RandomSampler(seed=seed),
            "evolution": lambda: RegularizedEvolutionSampler(population=8, tournament=3, seed=seed),
            "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=6),
            "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed, population_size=8)}[strategy]()


def _storage(url: str):
    # heartbeats let a surviving worker mark a killed worker's trial as failed, so none runs forever
    return optuna.storages.RDBStorage(url, heartbeat_interval=2, grace_period=10)


def _cost(config: SearchConfig, model, data) -> float:
    if config.objective in ("params", "none"):
        return float(count_params(model)[0])
    if config.objective == "macs":
        return float(count_macs(model, data.input_shape))
    return measure_latency(model, data.input_shape, "cpu", config.latency_batch, min_run_time=0.1)["median_ms"]


def _violation(config: SearchConfig, model, data) -> str | None:
    if config.max_params is not None and (p := count_params(model)[0]) > config.max_params:
        return f"{p:,} params > {config.max_params:,}"
    if config.max_macs is not None and (m := count_macs(model, data.input_shape)) > config.max_macs:
        return f"{m:,} MACs > {config.max_macs:,}"
    return None


def check_feasible(config: SearchConfig, data) -> None:
    cheapest = build_model(arch_to_spec(config.space, smallest_arch(config.space, config.choices)),
                           data.input_shape, data.num_classes)
    reason = _violation(config, cheapest, data)
    if reason:
        raise LabError(f"No architecture in this space satisfies the constraint: even the smallest has {reason}.")


def make_objective(config: SearchConfig, study_name: str, store: RunStore, data, progress=None,
                   should_cancel=None, job_id=None):
    def objective(trial: optuna.Trial):
        if should_cancel and should_cancel():
            trial.study.stop()
            raise CancelledError("cancelled by the user")
        arch = suggest(trial, config.space, config.choices)
        spec = arch_to_spec(config.space, arch)
        trial.set_user_attr("arch", arch)
        trial.set_user_attr("worker", worker_name())  # host:pid, to see how trials spread over workers
        torch.manual_seed(config.seed + trial.number)
        model = build_model(spec, data.input_shape, data.num_classes)
        reason = _violation(config, model, data)
        if reason:  # skip training: it cannot be chosen anyway
            trial.set_user_attr("status", f"infeasible: {reason}")
            raise optuna.TrialPruned(reason)

        def on_epoch(info):
            if config.early_stop:
                trial.report(info["val_accuracy"], info["epoch"])
                if trial.should_prune():
                    raise optuna.TrialPruned(f"stopped early at epoch {info['epoch']}")
        train(model, data, TrainConfig(epochs=config.epochs, seed=config.seed + trial.number), "cpu",
              on_epoch=on_epoch, should_cancel=should_cancel)
        val_acc = accuracy(model, data.x_val, data.y_val)
        cost = _cost(config, model, data)
        record = measure(model, data, latency_batch=config.latency_batch, min_run_time=0.05)
        run_id = store.add_run("search_trial", config.dataset, spec, {**config.to_dict(), "study": study_name,
                                                                      "trial": trial.number},
                               record=record, method=config.strategy, label=f"{study_name} trial {trial.number}",
                               extra={"arch": arch, "val_accuracy": val_acc, "cost": cost, "study": study_name},
                               job_id=job_id)
        trial.set_user_attr("run_id", run_id)
        if progress:
            done = len(trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                                      optuna.trial.TrialState.PRUNED,
                                                                      optuna.trial.TrialState.FAIL)))
            progress({"fraction": min(0.1 + 0.85 * (done + 1) / config.trials, 0.95),
                      "message": f"trial {trial.number}: val acc {val_acc:.3f}, {config.objective} {cost:,.4g}"})
        return val_acc if config.objective == "none" else (val_acc, cost)
    return objective


def create_study(config: SearchConfig, store: RunStore, name: str | None = None) -> optuna.Study:
    name = name or f"search-{config.space}-{config.strategy}-{int(time.time() * 1000) % 10**9}"
    directions = ["maximize"] if config.objective == "none" else ["maximize", "minimize"]
    study = optuna.create_study(study_name=name, storage=_storage(store.url), directions=directions,
                                sampler=_sampler(config.strategy, config.seed), load_if_exists=True,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    study.set_user_attr("config", config.to_dict())
    return study


def load_config(study_name: str, store: RunStore) -> tuple[optuna.Study, SearchConfig]:
    try:
        summary = optuna.load_study(study_name=study_name, storage=_storage(store.url))
    except KeyError:
        raise LabError(f"No study named '{study_name}' in {store.url}") from None
    config = SearchConfig(**summary.user_attrs["config"])
    study = optuna.load_study(study_name=study_name, storage=_storage(store.url),
                              sampler=_sampler(config.strategy, config.seed + hash(time.time()) % 1000),
                              pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    return study, config


def work(study: optuna.Study, config: SearchConfig, store: RunStore, progress=None, should_cancel=None,
         job_id=None) -> None:
    """Run trials until the study holds `config.trials` of them, whichever worker ran them."""
    data = load_dataset(config.dataset)
    objective = make_objective(config, study.study_name, store, data, progress, should_cancel, job_id)
    remaining = config.trials - len(study.get_trials(deepcopy=False))
    if remaining <= 0:
        return
    study.optimize(objective, n_trials=remaining, catch=(Exception,), gc_after_trial=False,
                   callbacks=[optuna.study.MaxTrialsCallback(config.trials, states=None)])


def hypervolume(points: list[tuple[float, float]], cost_ref: float) -> float:
    """2-D hypervolume of (accuracy, cost) points, normalised: error = 1 - accuracy and cost / cost_ref,
    both minimised, reference point (1, 1). Same normalisation for every front, so they compare."""
    norm = sorted((1 - a, min(c / cost_ref, 1.0)) for a, c in points)
    volume, best_cost = 0.0, 1.0
    for error, cost in norm:  # sweep by error; each point adds the strip below the best cost so far
        if cost < best_cost:
            volume += (1 - error) * (best_cost - cost)
            best_cost = cost
    return volume


def zoo_records(config: SearchConfig, store: RunStore, progress=None) -> list[dict]:
    """The hand-designed models of the family, trained with the same epochs and measured the same way."""
    data = load_dataset(config.dataset)
    out = []
    for i, spec in enumerate(ZOO[config.space]):
        model, run = get_baseline(config.dataset, spec, epochs=config.epochs, seed=config.seed,
                                  latency_batch=config.latency_batch, latency_time=0.05, store=store)
        if progress:
            progress({"fraction": 0.1 * (i + 1) / len(ZOO[config.space]), "message": f"zoo: {spec}"})
        out.append({**as_record(run), "val_accuracy": accuracy(model, data.x_val, data.y_val),
                    "cost": _cost(config, model, data), "feasible": _violation(config, model, data) is None})
    return out


def summarize(study: optuna.Study, config: SearchConfig, store: RunStore, zoo: list[dict]) -> dict:
    trials = []
    for t in study.get_trials(deepcopy=False):
        row = {"number": t.number, "status": t.state.name.lower(), "arch": t.user_attrs.get("arch"),
               "run_id": t.user_attrs.get("run_id"), "note": t.user_attrs.get("status")}
        if row["run_id"] is not None:
            try:
                run = store.get_run(row["run_id"])
                row.update(as_record(run), val_accuracy=run["extra"]["val_accuracy"], cost=run["extra"]["cost"])
            except LabError:
                pass  # the run was deleted; the trial stays
        row["status"] = t.state.name.lower()
        trials.append(row)
    scored = [t for t in trials if t["status"] == "complete" and "cost" in t]
    zoo_ok = [z for z in zoo if z["feasible"]]
    cost_ref = 1.1 * max([t["cost"] for t in scored] + [z["cost"] for z in zoo] + [1e-9])
    front = pareto_mask([t["cost"] for t in scored], [t["val_accuracy"] for t in scored])
    return {"study": study.study_name, "config": config.to_dict(),
            "space_size": space_size(config.space, config.choices), "trials": trials,
            "pareto": [t["run_id"] for t, keep in zip(scored, front) if keep],
            "hypervolume": hypervolume([(t["val_accuracy"], t["cost"]) for t in scored], cost_ref),
            "zoo": zoo, "zoo_hypervolume": hypervolume([(z["val_accuracy"], z["cost"]) for z in zoo_ok], cost_ref),
            "reference_point": {"accuracy": 0.0, "cost": cost_ref, "objective": config.objective,
                                "normalisation": "error = 1 - val accuracy; cost / reference cost; both in [0, 1]"}}


def run_search(config: SearchConfig, store: RunStore | None = None, study_name: str | None = None, progress=None,
               should_cancel=None, job_id=None) -> dict:
    """Create (or resume) a study, measure the zoo, run trials here, and summarise both fronts."""
    store = store or RunStore()
    data = load_dataset(config.dataset)
    check_feasible(config, data)
    zoo = zoo_records(config, store, progress)
    study = create_study(config, store, study_name)
    study.set_user_attr("zoo", [{k: z[k] for k in ("run_id", "label", "model_name", "val_accuracy", "cost", "feasible")}
                                for z in zoo])
    work(study, config, store, progress, should_cancel, job_id)
    if progress:
        progress({"fraction": 1.0, "message": f"{len(study.trials)} trials in {study.study_name}"})
    return summarize(study, config, store, zoo)


def list_studies(store: RunStore) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(storage=_storage(store.url))][::-1]


def study_summary(study_name: str, store: RunStore) -> dict:
    """The live state of a study (trials so far, its zoo, both hypervolumes), for the Search page."""
    study, config = load_config(study_name, store)
    return summarize(study, config, store, study.user_attrs.get("zoo", []))

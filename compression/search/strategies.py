"""Search strategies (Optuna samplers) and objectives (the cost a trial minimises), each registered once.

A new strategy is one `STRATEGIES.register(name, factory)`; a new objective one `OBJECTIVES.register(...)`.
"""
from __future__ import annotations

import math
import random
import warnings
from typing import Callable

import optuna

from ..core.measure import count_macs, count_params, measure_latency
from ..registry import Registry
from .space import IMAGE, TEXT

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the heartbeat is "experimental"

ZOO = {"cnn": ["lenet5", "cnn:width=8", "cnn:width=16", "cnn:width=32", "resnet_tiny:width=8", "mobilenet_tiny:width=8"],
       "mlp": ["mlp:hidden=32", "mlp:hidden=64", "mlp:hidden=128", "mlp:hidden=256-256"],
       # two hand-picked points, a small and a medium one: two more trainings per search, not six
       "gpt": ["gpt:layers=1,width=32,heads=2,context=32", "gpt:layers=2,width=64,heads=4,context=64"]}


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




STRATEGIES: Registry[Callable[[int], optuna.samplers.BaseSampler]] = Registry("strategy")
STRATEGIES.register("random", lambda seed: optuna.samplers.RandomSampler(seed=seed), label="Random search",
                    about="uniform samples: the baseline every strategy must beat")
STRATEGIES.register("evolution", lambda seed: RegularizedEvolutionSampler(population=8, tournament=3, seed=seed),
                    label="Regularized evolution", about="Real et al. 2019: mutate a tournament winner, oldest die")
STRATEGIES.register("tpe", lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=6),
                    label="TPE (Bayesian)", about="Optuna's tree-structured Parzen estimator")
STRATEGIES.register("nsga2", lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=8),
                    label="NSGA-II (genetic)", about="multi-objective genetic algorithm")


def sampler(strategy: str, seed: int) -> optuna.samplers.BaseSampler:
    return STRATEGIES.get(strategy)(seed)


# objective(model, data, latency_batch) -> cost to minimise
OBJECTIVES: Registry[Callable] = Registry("objective")
OBJECTIVES.register("params", lambda model, data, batch: float(count_params(model)[0]), label="Parameters",
                    about="number of parameters")
OBJECTIVES.register("macs", lambda model, data, batch: float(count_macs(model, data.input_shape)),
                    label="MACs per sample", about="multiply-accumulates for one sample")
OBJECTIVES.register("latency", lambda model, data, batch: measure_latency(
    model, data.input_shape, "cpu", batch, min_run_time=0.1)["median_ms"], label="CPU latency (ms)",
    about="median CPU latency at the latency batch, measured on this machine")
OBJECTIVES.register("none", lambda model, data, batch: float(count_params(model)[0]), label="Accuracy only",
                    about="accuracy alone (parameters are recorded); lets Optuna's pruner stop bad trials")


# a language model's objective(record) -> cost to minimise, read from its measure_lm record: the trial's own
# measurement, so the cost and the stored record can never disagree
def _ms_per_token(record: dict, phase: str) -> float:
    entry = next(e for e in record["latency"] if e["phase"] == phase)
    return 1e3 / entry["tokens_per_s"]


LM_OBJECTIVES: Registry[Callable[[dict], float]] = Registry("objective")
LM_OBJECTIVES.register("decode", lambda record: _ms_per_token(record, "decode"),
                       label="Decode latency (ms per token)",
                       about="median time per generated token at batch 1 with a key-value cache, measured here")
LM_OBJECTIVES.register("params", lambda record: float(record["params"]), label="Parameters",
                       about="number of parameters")
LM_OBJECTIVES.register("none", lambda record: float(record["params"]), label="Perplexity only",
                       about="perplexity alone (parameters are recorded); lets Optuna's pruner stop bad trials")

OBJECTIVES_BY_DATA = {IMAGE: OBJECTIVES, TEXT: LM_OBJECTIVES}


def objective_names() -> list[str]:
    """Every objective of any kind of data, once: what a config may name before its data set is known."""
    return list(dict.fromkeys(name for table in OBJECTIVES_BY_DATA.values() for name in table.names()))


def perplexity_score(perplexity: float, vocab_size: int) -> float:
    """1 - ln(perplexity) / ln(vocab size), clipped to [0, 1]: a uniform guess over the vocabulary scores 0 and
    a perfect model 1. Bits per token over their most, so it needs no worst trial and never moves as trials come."""
    return min(max(1 - math.log(perplexity) / math.log(vocab_size), 0.0), 1.0)


def hypervolume(points: list[tuple[float, float]], cost_ref: float) -> float:
    """2-D hypervolume of (accuracy, cost) points, normalised: error = 1 - accuracy and cost / cost_ref,
    both minimised, reference point (1, 1). Same normalisation for every front, so they compare. Any quality
    in [0, 1] where higher is better stands for accuracy (a language model's perplexity_score)."""
    norm = sorted((1 - a, min(c / cost_ref, 1.0)) for a, c in points)
    volume, best_cost = 0.0, 1.0
    for error, cost in norm:  # sweep by error; each point adds the strip below the best cost so far
        if cost < best_cost:
            volume += (1 - error) * (best_cost - cost)
            best_cost = cost
    return volume



"""Architecture search on Optuna with a real SQLite study shared by real worker processes."""
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from compression import LabError, RunStore, build_model
from compression.search import (SearchConfig, create_study, hypervolume, load_config, run_search, work)
from compression.search_space import DEFAULT_SPACES, arch_to_spec, space_size, suggest

from conftest import ROOT, cli_env, wait_for

TINY = dict(dataset="synthetic", trials=4, epochs=1, latency_batch=8)


@pytest.mark.parametrize("family", ["cnn", "mlp"])
def test_sampling_yields_only_valid_choices_that_build(family, synthetic):
    space = DEFAULT_SPACES[family]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(25):
        trial = study.ask()
        arch = suggest(trial, family, space)
        for name, value in trial.params.items():
            key = name.split("_")[0] if name.split("_")[0] in space else name
            assert value in space[key]
        model = build_model(arch_to_spec(family, arch), synthetic.input_shape, synthetic.num_classes)
        assert model(synthetic.x_val[:2]).shape == (2, synthetic.num_classes)
        study.tell(trial, 0.0)


def test_space_size_counts_per_stage_choices():
    assert space_size("mlp", {"depth": [1, 2], "width": [16, 32, 64]}) == 3 + 9
    assert space_size("cnn", {"stages": [2], "channels": [8, 16], "kernel": [3], "depthwise": [False],
                              "activation": ["relu"], "head": [0]}) == 4


@pytest.mark.parametrize("strategy", ["random", "evolution", "tpe", "nsga2"])
def test_each_strategy_runs_a_tiny_search(strategy, lab_home):
    out = run_search(SearchConfig(space="mlp", strategy=strategy, objective="params", seed=1,
                                  **{**TINY, "trials": 10 if strategy == "evolution" else 4}))
    assert len(out["trials"]) == (10 if strategy == "evolution" else 4)
    complete = [t for t in out["trials"] if t["status"] == "complete"]
    assert complete and all(RunStore().get_run(t["run_id"])["kind"] == "search_trial" for t in complete)
    assert set(out["pareto"]) <= {t["run_id"] for t in complete}
    assert 0 <= out["hypervolume"] <= 1 and 0 <= out["zoo_hypervolume"] <= 1 and out["zoo"]


def test_evolution_children_differ_from_a_parent_in_one_dimension(lab_home):
    out = run_search(SearchConfig(space="mlp", strategy="evolution", objective="params", seed=3,
                                  choices={"depth": [2], "width": [16, 32, 64, 128]}, **{**TINY, "trials": 14}))
    archs = [tuple(t["arch"]["hidden"]) for t in out["trials"]]
    for i in range(8, len(archs)):  # each child is exactly one mutation away from a member of the population
        population = archs[i - 8:i]
        assert any(sum(a != b for a, b in zip(archs[i], parent)) == 1 for parent in population), (i, archs)


def test_hypervolume_by_hand():
    # points (acc, cost) with cost_ref 10: normalised (error, cost) = (0.1, 0.8) and (0.5, 0.2)
    assert hypervolume([(0.9, 8), (0.5, 2)], 10) == pytest.approx(0.9 * 0.2 + 0.5 * 0.6)
    assert hypervolume([], 10) == 0


@pytest.mark.parametrize("kwargs,message", [
    (dict(trials=0), "budget"), (dict(choices={"width": []}, space="mlp"), "empty"),
    (dict(strategy="annealing"), "Unknown strategy"), (dict(objective="energy"), "Unknown objective"),
    (dict(early_stop=True), "single-objective"), (dict(space="transformer"), "Unknown search space"),
])
def test_bad_search_input_is_refused(kwargs, message):
    with pytest.raises(LabError, match=message):
        SearchConfig(**kwargs)


def test_a_constraint_nothing_satisfies_is_refused(lab_home):
    with pytest.raises(LabError, match="No architecture in this space satisfies"):
        run_search(SearchConfig(space="mlp", max_params=10, **TINY))


def test_constraint_prunes_violating_trials_and_early_stopping_works(lab_home):
    out = run_search(SearchConfig(space="mlp", objective="none", max_params=3000, early_stop=True,
                                  choices={"depth": [1], "width": [16, 256]}, **{**TINY, "trials": 6}))
    for t in out["trials"]:
        if t["arch"]["hidden"] == [256]:
            assert t["status"] == "pruned" and "params" in t["note"]
        else:
            assert t["status"] in ("complete", "pruned")


def _worker(home, study, url):
    return subprocess.Popen([sys.executable, "-m", "compression", "worker", "--study", study, "--db", url, "--json",
                             "--quiet"], cwd=ROOT, env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_two_worker_processes_split_the_trials_and_lose_none(lab_home):
    store = RunStore()
    config = SearchConfig(space="mlp", strategy="random", objective="params", **{**TINY, "trials": 20, "epochs": 3})
    study = create_study(config, store, "split-test")
    workers = [_worker(lab_home, "split-test", store.url) for _ in range(2)]
    for w in workers:
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
    trials = optuna.load_study(study_name="split-test", storage=store.url).get_trials()
    assert len(trials) >= 20 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    runs = [r for r in store.list_runs(kind="search_trial")]
    assert sorted(r["config"]["trial"] for r in runs) == sorted(t.number for t in trials)  # every trial stored once
    assert len({r["extra"]["study"] for r in runs}) == 1
    assert {t.user_attrs["run_id"] for t in trials} == {r["id"] for r in runs}


def test_a_killed_workers_trial_becomes_failed_and_the_study_goes_on(lab_home):
    store = RunStore()
    config = SearchConfig(space="cnn", strategy="random", objective="params", dataset="digits", trials=3, epochs=200,
                          choices={"stages": [3], "channels": [64]}, latency_batch=8)
    create_study(config, store, "kill-test")
    victim = _worker(lab_home, "kill-test", store.url)
    wait_for(lambda: any(t.state == optuna.trial.TrialState.RUNNING for t in
                         optuna.load_study(study_name="kill-test", storage=store.url).get_trials()), timeout=120)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    time.sleep(11)  # the heartbeat's grace period
    study, config = load_config("kill-test", store)
    config.epochs = 1
    config.trials = 2  # the killed trial + one more
    study.set_user_attr("config", config.to_dict())
    optuna.storages.fail_stale_trials(study)
    states = [t.state for t in study.get_trials()]
    assert states[0] == optuna.trial.TrialState.FAIL
    work(study, config, store)
    assert optuna.trial.TrialState.COMPLETE in [t.state for t in study.get_trials()]

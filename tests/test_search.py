"""Architecture search on Optuna with a real SQLite study shared by real worker processes."""
import signal
import subprocess
import sys
import time

import optuna
import pytest

from compression import LabError, RunStore, SearchConfig, build_model
from compression.labs.diff import diff_runs
from compression.labs.search import create_study, finished_trials, load_config, run_search, study_summary, work
from compression.search.space import DEFAULT_SPACES, arch_to_spec, space_size, suggest
from compression.search.strategies import hypervolume
from compression.store.artifacts import load_run_model

from conftest import ROOT, cli_env, quick_ctx, wait_for

TINY = dict(dataset="synthetic", trials=4, epochs=1, latency_batch=8)


def dominated_area(points, cost_ref):
    """The hypervolume computed independently of the lab's sweep: the area of the union of the boxes
    [1 - acc, 1] x [min(cost / ref, 1), 1], cell by cell on the grid the corners make."""
    corners = [(1 - a, min(c / cost_ref, 1.0)) for a, c in points]
    xs = sorted({x for x, _ in corners} | {1.0})
    ys = sorted({y for _, y in corners} | {1.0})
    area = 0.0
    for x0, x1 in zip(xs, xs[1:]):
        for y0, y1 in zip(ys, ys[1:]):
            if any(ex <= x0 and ey <= y0 for ex, ey in corners):
                area += (x1 - x0) * (y1 - y0)
    return area


def non_dominated(points):
    """Indices of the points no other point beats: cost no higher and accuracy no lower, one strictly."""
    return {i for i, (a, c) in enumerate(points)
            if not any(a2 >= a and c2 <= c and (a2, c2) != (a, c) for a2, c2 in points)}


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


def _check_front_and_hypervolumes(out: dict) -> None:
    complete = [t for t in out["trials"] if t["status"] == "complete"]
    assert complete and all(RunStore().get_run(t["run_id"])["kind"] == "search_trial" for t in complete)
    # the cost is the objective (parameters), the reference 1.1x the largest cost seen, trials and zoo alike
    for t in complete:
        assert t["cost"] == t["params"] > 0 and 0 <= t["val_accuracy"] <= 1
    ref = out["reference_point"]["cost"]
    assert ref == pytest.approx(1.1 * max([t["cost"] for t in complete] + [z["cost"] for z in out["zoo"]]))
    # the front is exactly the non-dominated trials, and both hypervolumes match an independent computation
    points = [(t["val_accuracy"], t["cost"]) for t in complete]
    assert set(out["pareto"]) == {complete[i]["run_id"] for i in non_dominated(points)}
    assert out["hypervolume"] == pytest.approx(dominated_area(points, ref), abs=1e-9)
    zoo = [(z["val_accuracy"], z["cost"]) for z in out["zoo"] if z["feasible"]]
    assert len(out["zoo"]) == 4 and out["zoo_hypervolume"] == pytest.approx(dominated_area(zoo, ref), abs=1e-9)
    # every cost is below the reference, so any trial better than chance dominates some area
    assert 0 < out["hypervolume"] < 1 and 0 < out["zoo_hypervolume"] < 1


@pytest.mark.parametrize("strategy", ["random", "tpe", "nsga2"])  # evolution: the next test
def test_each_strategy_runs_a_tiny_search(strategy, lab_home):
    out = run_search(SearchConfig(space="mlp", strategy=strategy, objective="params", seed=1,
                                  **{**TINY, "trials": 4}), quick_ctx())
    assert len(out["trials"]) == 4
    _check_front_and_hypervolumes(out)


def test_evolution_children_differ_from_a_parent_in_one_dimension(lab_home):
    out = run_search(SearchConfig(space="mlp", strategy="evolution", objective="params", seed=3,
                                  choices={"depth": [2], "width": [16, 32, 64, 128]}, **{**TINY, "trials": 14}),
                     quick_ctx())
    assert len(out["trials"]) == 14
    _check_front_and_hypervolumes(out)
    archs = [tuple(t["arch"]["hidden"]) for t in out["trials"]]
    for i in range(8, len(archs)):  # each child is exactly one mutation away from a member of the population
        population = archs[i - 8:i]
        assert any(sum(a != b for a, b in zip(archs[i], parent)) == 1 for parent in population), (i, archs)


def test_hypervolume_by_hand():
    # points (acc, cost) with cost_ref 10: normalised (error, cost) = (0.1, 0.8) and (0.5, 0.2)
    assert hypervolume([(0.9, 8), (0.5, 2)], 10) == pytest.approx(0.9 * 0.2 + 0.5 * 0.6)
    assert hypervolume([], 10) == 0
    # a dominated point adds nothing; the order of the points does not matter
    assert hypervolume([(0.5, 2), (0.4, 3), (0.9, 8)], 10) == pytest.approx(0.48)
    # a cost beyond the reference is clipped to it and dominates no area; a perfect free model fills the square
    assert hypervolume([(0.9, 20)], 10) == 0
    assert hypervolume([(1.0, 0)], 10) == pytest.approx(1.0)
    # three steps: (0.2, 0.6), (0.4, 0.3), (0.7, 0.1) -> 0.8*0.4 + 0.6*0.3 + 0.3*0.2
    assert hypervolume([(0.8, 6), (0.6, 3), (0.3, 1)], 10) == pytest.approx(0.32 + 0.18 + 0.06)
    assert dominated_area([(0.8, 6), (0.6, 3), (0.3, 1)], 10) == pytest.approx(0.56)  # the test's own check agrees


@pytest.mark.parametrize("kwargs,message", [
    (dict(trials=0), r"trials must be in \[1, 10000\], got 0"), (dict(choices={"width": []}, space="mlp"), "empty"),
    (dict(strategy="annealing"), "Unknown strategy"), (dict(objective="energy"), "Unknown objective"),
    (dict(early_stop=True), "single-objective"), (dict(space="transformer"), "Unknown space 'transformer'"),
])
def test_bad_search_input_is_refused(kwargs, message):
    with pytest.raises(LabError, match=message):
        SearchConfig(**kwargs)


def test_a_constraint_nothing_satisfies_is_refused(lab_home):
    with pytest.raises(LabError, match="No architecture in this space satisfies"):
        run_search(SearchConfig(space="mlp", max_params=10, **TINY), quick_ctx())
    assert RunStore().list_runs() == []  # refused before any training


def test_constraint_prunes_violating_trials_without_training_them(lab_home):
    out = run_search(SearchConfig(space="mlp", objective="none", max_params=3000, seed=2,
                                  choices={"depth": [1], "width": [16, 256]}, **{**TINY, "trials": 8}), quick_ctx())
    wide = [t for t in out["trials"] if t["arch"]["hidden"] == [256]]
    narrow = [t for t in out["trials"] if t["arch"]["hidden"] == [16]]
    assert wide and narrow, "the seed must sample both widths"
    for t in wide:  # 17,924 parameters > 3,000: refused before training, so no run is stored
        assert t["status"] == "pruned" and t["note"].startswith("infeasible") and "params" in t["note"]
        assert t["run_id"] is None
    assert all(t["status"] == "complete" and t["params"] <= 3000 for t in narrow)  # no early stop asked for
    assert len(RunStore().list_runs(kind="search_trial")) == len(narrow)


def test_early_stopping_stops_trials_that_cannot_catch_up(lab_home):
    """Three wide MLPs (100% validation accuracy after one epoch on synthetic data) complete first; then
    1-unit MLPs, which cannot pass ~60% on four classes, must be stopped by the median pruner at epoch 1."""
    store = RunStore()
    config = SearchConfig(space="mlp", objective="none", early_stop=True, choices={"depth": [1], "width": [1, 64]},
                          dataset="synthetic", trials=6, epochs=4, latency_batch=8, study="early-stop")
    study = create_study(config, store)
    for width in (64, 64, 64, 1, 1, 1):
        study.enqueue_trial({"depth": 1, "width_0": width})
    work(study, config, quick_ctx(store=store))
    trials = study.get_trials()
    assert [t.params["width_0"] for t in trials] == [64, 64, 64, 1, 1, 1]
    wide, narrow = trials[:3], trials[3:]
    assert all(t.state == optuna.trial.TrialState.COMPLETE and t.value > 0.9 for t in wide)
    for t in narrow:
        assert t.state == optuna.trial.TrialState.PRUNED
        assert len(t.intermediate_values) < config.epochs  # stopped before its last epoch
        assert max(t.intermediate_values.values()) < 0.7
    summary = study_summary("early-stop", store)
    assert [t["status"] for t in summary["trials"]] == ["complete"] * 3 + ["pruned"] * 3
    assert len(store.list_runs(kind="search_trial")) == 3  # stopped trials store no run


def _worker(home, study, url, *flags):
    return subprocess.Popen([sys.executable, "-m", "compression", "worker", "--study", study, "--db", url, "--json",
                             *(flags or ["--quiet"])], cwd=ROOT, env=cli_env(home), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_worker_without_a_study_says_so_in_one_line_after_its_wait(lab_home, capsys):
    from compression.cli import main
    start = time.monotonic()
    code = main(["worker", "--study", "never", "--wait", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: No study named 'never'") and "(waited 1 s)" in err
    assert time.monotonic() - start >= 1.0 and err.count("\n") == 1


def test_a_killed_workers_trial_becomes_failed_and_the_study_goes_on(lab_home):
    store = RunStore()
    # cheap epochs (an MLP on digits), but a thousand of them: the first trial is surely running when it is killed
    config = SearchConfig(space="mlp", strategy="random", objective="params", dataset="digits", trials=3,
                          epochs=1000, choices={"depth": [2], "width": [128]}, latency_batch=8)
    create_study(config, store, "kill-test")
    victim = _worker(lab_home, "kill-test", store.url)
    wait_for(lambda: any(t.state == optuna.trial.TrialState.RUNNING and "worker" in t.user_attrs for t in
                         optuna.load_study(study_name="kill-test", storage=store.url).get_trials()), timeout=120)
    # past a heartbeat interval (2 s): a trial killed before its first heartbeat can never go stale (a busy
    # machine made that race real in a full run)
    time.sleep(3)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    study, config = load_config("kill-test", store)
    config = config.replace(epochs=1, trials=2)  # the killed trial + one more
    study.set_user_attr("config", config.to_dict())

    def failed_by_heartbeat():  # the trial stays "running" until its heartbeat is older than the grace period
        optuna.storages.fail_stale_trials(study)
        return study.get_trials()[0].state == optuna.trial.TrialState.FAIL
    wait_for(failed_by_heartbeat, timeout=60, every=0.5)
    assert store.list_runs(kind="search_trial") == []  # the killed trial stored nothing
    work(study, config, quick_ctx(store=store))
    trials = study.get_trials()
    assert finished_trials(study) == 2
    retried = [t for t in trials if optuna.storages.RetryFailedTrialCallback.retried_trial_number(t) == 0]
    assert retried and retried[0].state == optuna.trial.TrialState.COMPLETE  # the killed trial ran again
    assert retried[0].params == trials[0].params
    assert len(store.list_runs(kind="search_trial")) == 2


def test_any_two_trials_can_be_compared_answer_by_answer(lab_home):
    out = run_search(SearchConfig(space="mlp", strategy="random", objective="params", seed=2, **{**TINY, "trials": 2}),
                     quick_ctx())
    first, second = [t["run_id"] for t in out["trials"] if t["status"] == "complete"][:2]
    store = RunStore()
    diff = diff_runs(store, first, second)
    # the answers were stored with the trial: the diff agrees with each trial's own test accuracy
    assert diff["accuracy_a"] == pytest.approx(store.get_run(first)["record"]["accuracy"])
    assert diff["accuracy_b"] == pytest.approx(store.get_run(second)["record"]["accuracy"])
    model = load_run_model(store.get_run(first)["weights_path"])  # and the weights, to prune or export it as is
    assert sum(p.numel() for p in model.parameters()) == store.get_run(first)["record"]["params"]

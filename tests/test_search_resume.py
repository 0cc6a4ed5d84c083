"""A search killed with kill -9 mid-trial, then resumed, ends with the budget of completed trials."""
import signal
import subprocess
import sys

import optuna

from compression import RunStore
from conftest import ROOT, cli_env, wait_for

BUDGET = 3  # the kill comes after a finished trial, so the killed one and one more are left for the resumed run
ARGS = ["search", "--dataset", "synthetic", "--space", "mlp", "--trials", str(BUDGET), "--epochs", "60",
        "--latency-batch", "8", "--study", "resume-me", "--quiet", "--json"]


def _study(store):
    return optuna.load_study(study_name="resume-me", storage=store.url)


def _states(store):
    try:
        return [t.state for t in _study(store).get_trials(deepcopy=False)]
    except KeyError:  # the study is not created yet
        return []


def test_a_killed_search_resumes_to_its_budget_of_completed_trials(lab_home):
    store = RunStore()
    first = subprocess.Popen([sys.executable, "-m", "compression", *ARGS], cwd=ROOT, env=cli_env(lab_home),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # kill while a trial is running, after at least one finished
        wait_for(lambda: first.poll() is not None or (_states(store).count(optuna.trial.TrialState.COMPLETE) >= 1
                                                      and optuna.trial.TrialState.RUNNING in _states(store)),
                 timeout=400, every=0.1)
        assert first.poll() is None, "the search finished before it could be killed mid-trial"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        first.kill()
    states = _states(store)
    assert optuna.trial.TrialState.RUNNING in states and states.count(optuna.trial.TrialState.COMPLETE) < BUDGET

    resumed = subprocess.run([sys.executable, "-m", "compression", *ARGS], cwd=ROOT, env=cli_env(lab_home),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    trials = _study(store).get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == BUDGET
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]  # the dead worker's trial was reclaimed
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0]._trial_id
               or t.system_attrs.get("retry_history")]
    assert retried and retried[0].params == failed[0].params  # the killed architecture was run again

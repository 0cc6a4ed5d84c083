"""Jobs on a real Ray cluster (#34): `ray start --head` as processes on 127.0.0.1 with 2 CPUs, one per test session
(every Ray test is in this module, so one pytest-xdist process starts it), stopped at the end. Jobs are submitted
from this test's lab folder (A) with --cluster; the cluster's tasks write A's database and artifact store, and
every run they made is exported, diffed and re-timed from A. A killed Ray worker's job is retried, Cancel reaches a
running task, ten jobs on two workers run once each, and a bad or unreachable cluster is one sentence."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from compression import RunStore
from compression.cli import main
from compression.jobs import submit
from compression.jobs.placers import where_jobs_go
from compression.labs.configs import RetimeConfig
from compression.labs.diff import diff_runs
from compression.labs.io.export import export_run
from compression.labs.speed import retime
from conftest import QUICK_LATENCY_S, ROOT, cli_env, wait_for
from ray_cluster import RayCluster, free_port
from test_cli import assert_one_error_line, in_process

TINY_TRAIN = {"dataset": "synthetic", "model": "mlp:hidden=8", "epochs": 1, "latency_batch": 4}
ENDLESS = {**TINY_TRAIN, "model": "mlp:hidden=16", "epochs": 10_000}  # minutes, in epochs of milliseconds
TINY_GPT = "gpt:layers=1,width=32,heads=2,context=32"
ENDED = ("done", "failed", "cancelled", "interrupted")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The session's one cluster (only this module starts one), stopped when its tests are done rather than when the
    xdist worker's session ends: an idle head is a load on the tests that run after it. Started with this process's environment: the quick timing settings of `make test`,
    one torch thread, and a lab folder of its own (each job is told its database and artifact store)."""
    env = {**RayCluster.env_for(tmp_path_factory.mktemp("ray-lab")), "COMPRESSION_LAB_QUIET_WAIT_S": "0",
           "COMPRESSION_LAB_LATENCY_S": os.environ.get("COMPRESSION_LAB_LATENCY_S", str(QUICK_LATENCY_S)),
           "COMPRESSION_LAB_PREWARM": "0"}
    started = RayCluster(env)
    yield started
    import ray
    if ray.is_initialized():
        ray.shutdown()  # this process's client, before its server goes
    print(f"\nRay head: started in {started.start_s:.1f} s, stopped in {started.stop():.1f} s")


def jobs_of(store, ids):
    return [store.get_job(i) for i in ids]


def wait_ended(store, ids, timeout=300):
    wait_for(lambda: all(j["status"] in ENDED for j in jobs_of(store, ids)), timeout=timeout, every=0.5)
    return jobs_of(store, ids)


def submit_cli(capsys, *args) -> int:
    code, out, err = in_process(capsys, "jobs", "submit", *args, "--json")
    assert code == 0, err
    return json.loads(out)["job_id"]


def test_a_prune_sweep_a_distillation_a_language_model_prune_and_a_search_run_on_the_cluster_and_are_used_here(
        cluster, lab_home, tmp_path, capsys):
    started = time.monotonic()
    store = RunStore()
    # the verbs' own flags and checks, and the cluster by flag
    prune = submit_cli(capsys, "prune", "--dataset", "synthetic", "--model", "mlp:hidden=16", "--epochs", "1",
                       "--latency-batch", "8", "--sparsity", "0.5", "0.8", "--finetune-epochs", "0",
                       "--cluster", cluster.url)
    distill = submit_cli(capsys, "distill", "--dataset", "synthetic", "--teacher", "mlp:hidden=32", "--student",
                         "mlp:hidden=8", "--teacher-epochs", "1", "--epochs", "1", "--seeds", "0", "--latency-batch",
                         "8", "--cluster", cluster.url)
    lm_prune = submit_cli(capsys, "prune", "--dataset", "pydoc", "--model", TINY_GPT, "--train-steps", "20",
                          "--batch-size", "8", "--method", "magnitude", "--sparsity", "0.5", "--calibration", "8",
                          "--cluster", cluster.url)
    search = submit_cli(capsys, "search", "--dataset", "synthetic", "--space", "mlp", "--trials", "8", "--epochs",
                        "1", "--latency-batch", "8", "--cluster", cluster.url)
    queued = time.monotonic() - started
    jobs = wait_ended(store, [prune, distill, lm_prune, search])
    ran = time.monotonic() - started
    assert [j["status"] for j in jobs] == ["done"] * 4, [j["error"] for j in jobs]
    assert all(j["worker"].startswith("ray:") for j in jobs)  # claimed by Ray tasks, each naming its machine
    # the search's trials ran as tasks beside the job's own: the study holds its budget, every trial a run
    result = store.get_job(search)["result"]
    trials = store.list_runs(job_id=search)
    assert len([r for r in trials if r["status"] == "done"]) >= 8 and set(result["run_ids"]) <= {r["id"] for r in trials}
    assert result["study"] == f"search-job{search}" and result["trial_tasks"] == 1  # 2 CPUs: the job and one more
    import optuna
    from compression.labs.search import _storage
    workers = {t.user_attrs.get("worker") for t in optuna.load_study(study_name=result["study"],
                                                                      storage=_storage(store.url)).trials}

    for job_id in (prune, distill, lm_prune):  # every run, from here: exported, diffed against its root, re-timed
        runs = store.list_runs(job_id=job_id)
        roots = [r for r in runs if r["parent_id"] is None]
        assert len(roots) == 1 and len(runs) > 1, runs
        for run in runs:
            export_run(store, run["id"], "state_dict", tmp_path / f"run{run['id']}.pt")
            if run is roots[0]:
                continue
            assert diff_runs(store, roots[0]["id"], run["id"])["kind"] in ("image", "text")
            timing = retime(store, RetimeConfig(run_a=roots[0]["id"], run_b=run["id"], time_budget=0, rounds=5))
            assert timing["ci95"][0] <= timing["speedup"] <= timing["ci95"][1]
            assert all(entry["machine"] for entry in run["record"]["latency"])  # each figure names its machine
    done_trials = [r for r in trials if r["status"] == "done"]
    for run in done_trials:
        export_run(store, run["id"], "state_dict", tmp_path / f"run{run['id']}.pt")
    a, b = done_trials[0]["id"], done_trials[1]["id"]
    assert diff_runs(store, a, b)["n_test"] > 0

    # a re-time job on the cluster is pinned to the node that measured its runs, and names its machine
    from compression.jobs.ray_cluster import pinned_node
    retime_job = submit(store, "speedup", {"run_a": a, "run_b": b, "time_budget": 0, "rounds": 5},
                        cluster=cluster.url)
    import ray
    node = pinned_node(store, store.get_job(retime_job))
    assert node in {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    (timed,) = wait_ended(store, [retime_job])
    assert timed["status"] == "done", timed["error"]
    speed = store.list_speedups(run_a=a, run_b=b)
    assert speed and all(store.get_machine(s["machine"]) for s in speed)
    print(f"\nfour jobs queued in {queued:.1f} s, done at {ran:.1f} s; used here and re-timed on the cluster at "
          f"{time.monotonic() - started:.1f} s; "
          f"trial workers {sorted(w for w in workers if w)}")


def test_a_killed_worker_is_retried_or_interrupted_cancel_reaches_the_task_and_ten_jobs_on_two_workers_run_once(
        cluster, lab_home, monkeypatch):
    store = RunStore()
    retried = submit(store, "train", ENDLESS, cluster=cluster.url)
    monkeypatch.setenv("COMPRESSION_LAB_RAY_RETRIES", "0")
    interrupted = submit(store, "train", {**ENDLESS, "seed": 1}, cluster=cluster.url)  # no retry: interrupted
    monkeypatch.delenv("COMPRESSION_LAB_RAY_RETRIES")
    ids = [submit(store, "train", {**TINY_TRAIN, "seed": seed}, cluster=cluster.url) for seed in range(10)]
    running = {}
    for job_id in (retried, interrupted):  # both hold the cluster's two CPUs
        running[job_id] = wait_for(lambda: (j := store.get_job(job_id))["status"] == "running" and j["progress"] > 0
                                   and j, timeout=120)
    for job in running.values():
        os.kill(int(job["worker"].rpartition(":")[2]), signal.SIGKILL)  # the Ray worker process running it
    gone = wait_for(lambda: (j := store.get_job(interrupted))["status"] == "interrupted" and j, timeout=60)
    assert "The Ray worker running it died (no retries asked)" in gone["error"], gone["error"]
    # Ray runs the other task again in a new worker, which takes the row over from its dead attempt
    again = wait_for(lambda: (j := store.get_job(retried))["worker"] != running[retried]["worker"]
                     and j["status"] == "running" and j, timeout=180)
    assert again["worker"].startswith("ray:"), again

    asked = time.monotonic()
    store.request_cancel(retried)  # as the job panel does, from any machine: no Ray connection needed
    wait_for(lambda: store.get_job(retried)["status"] == "cancelled", timeout=30, every=0.1)
    assert time.monotonic() - asked <= 10
    jobs = wait_ended(store, ids)
    # none lost (those done before the kills too), none twice: one run each
    assert [j["status"] for j in jobs] == ["done"] * 10, [j["error"] for j in jobs]
    runs = store.list_runs(kind="train")
    assert sorted(r["job_id"] for r in runs if r["job_id"] in ids) == ids
    assert all(j["worker"].startswith("ray:") for j in jobs)


def test_a_bad_or_unreachable_cluster_is_one_sentence_and_the_job_stays_queued_here(lab_home, capsys, monkeypatch):
    closed = free_port()
    for url, says in ((f"ray://127.0.0.1:{closed}", "Cannot reach the Ray cluster"),
                      ("http://127.0.0.1:10001", "Bad cluster URL"), ("ray://nowhere", "Bad cluster URL")):
        code, out, err = in_process(capsys, "jobs", "submit", "train", "--dataset", "synthetic", "--epochs", "1",
                                    "--cluster", url, "--json")
        assert_one_error_line(code, out, err, says, lab_home)
        assert "stays queued here" in err
    assert [j["status"] for j in RunStore().list_jobs()] == ["queued"] * 3
    # the verb's flags and the older key=value pairs (a list as 0.5-0.7 or JSON) queue the same checked params
    for words in (["--dataset", "synthetic", "--sparsity", "0.5", "0.7", "--from", "3"],
                  ["dataset=synthetic", "sparsities=0.5-0.7", "from_run=3"],
                  ["dataset=synthetic", "sparsities=[0.5, 0.7]", "from_run=3"]):
        code, out, err = in_process(capsys, "jobs", "submit", "prune", *words, "--cluster", "ray://nowhere", "--json")
        assert code == 2 and "stays queued here" in err, err
    queued = [j["params"] for j in RunStore().list_jobs(limit=3)]
    assert queued[0] == queued[1] == queued[2] and queued[0]["sparsities"] == [0.5, 0.7] and queued[0]["from_run"] == 3
    monkeypatch.setenv("COMPRESSION_LAB_CLUSTER", f"ray://127.0.0.1:{closed}")  # the variable, as the flag
    assert_one_error_line(*in_process(capsys, "jobs", "submit", "train", "epochs=1", "--json"), "Cannot reach",
                          lab_home)
    assert where_jobs_go() == f"Jobs run on the Ray cluster at ray://127.0.0.1:{closed}."
    # without it, a job is queued, listed and its place said, all without importing Ray
    probe = ("import sys; from compression import RunStore; from compression.cli import main; "
             "from compression.jobs import submit; from compression.jobs.placers import where_jobs_go; "
             "submit(RunStore(), 'train', {'epochs': 1}, start_worker=False); main(['jobs', 'list', '--json']); "
             "print(where_jobs_go()); print('ray' in sys.modules)")
    monkeypatch.delenv("COMPRESSION_LAB_CLUSTER")
    run = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=cli_env(lab_home), capture_output=True,
                         text=True, timeout=120)
    assert run.stdout.splitlines()[-2:] == ["Jobs run on this machine (the lab folder's worker).", "False"], run


def test_the_job_panel_says_a_ray_task_ran_the_job_and_on_which_machine(lab_home):
    from streamlit.testing.v1 import AppTest
    store = RunStore()
    job_id = store.submit_job("train", TINY_TRAIN)
    store.claim_next_job(worker="ray:gpu-box:4242")  # as a Ray task names itself in the row
    store.finish_job(job_id, "done", result={"run_ids": []})

    def panel():
        from dashboard.views.jobs import job_panel
        job_panel(("train",), "test")
    at = AppTest.from_function(panel, default_timeout=30).run()
    assert not at.exception
    assert any(f"Job {job_id} (train) finished in" in s.value and "on gpu-box (Ray);" in s.value for s in at.success)

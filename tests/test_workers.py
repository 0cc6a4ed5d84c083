"""Workers for every job kind (#24): `python -m compression worker --db URL --artifacts URL` serves the shared job
queue from any lab folder (any machine). Jobs run once each, a killed worker's job becomes interrupted, runs made
elsewhere are exported, diffed and re-timed here, and a worker takes only the kinds and devices it was started for."""
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
import torch

from compression import RunStore
from compression.cli import main
from compression.jobs import Serves, submit
from compression.labs.configs import RetimeConfig
from compression.labs.diff import diff_runs
from compression.labs.io.export import export_run
from compression.labs.speed import retime
from compression.store.artifacts import KEY_PREFIX
from conftest import QUICK_LATENCY_S, ROOT, cli_env, wait_for
from test_cli import assert_one_error_line, in_process

TINY_TRAIN = {"dataset": "synthetic", "model": "mlp:hidden=8", "epochs": 1, "latency_batch": 4}
# a job that would run for minutes, in epochs of a few milliseconds: surely still running when it is killed
ENDLESS = {**TINY_TRAIN, "model": "mlp:hidden=16", "epochs": 10_000}


def start_worker(home, url, artifacts, *flags):
    """A `worker` process with its own lab folder, sharing only the database and the artifact store."""
    # short latency timing: the records' figures are not what these tests check
    env = {**cli_env(home), "COMPRESSION_LAB_LATENCY_S": str(QUICK_LATENCY_S)}
    env.pop("COMPRESSION_LAB_ARTIFACTS", None)  # the flag alone must set it
    return subprocess.Popen([sys.executable, "-m", "compression", "worker", "--db", url, "--artifacts", str(artifacts),
                             "--quiet", "--json", *flags], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def name_of(process) -> str:
    return f"{socket.gethostname()}:{process.pid}"


def stop(processes) -> None:
    for p in processes:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=30)


def test_two_workers_run_each_job_once_a_cancel_reaches_them_and_a_killed_workers_job_becomes_interrupted(
        lab_home, tmp_path):
    store = RunStore()
    ids = [submit(store, "train", {**TINY_TRAIN, "seed": seed}, start_worker=False) for seed in range(10)]
    workers = [start_worker(tmp_path / f"lab-{n}", store.url, tmp_path / "shared", "--wait", "60") for n in (1, 2)]
    try:
        wait_for(lambda: all(store.get_job(i)["status"] not in ("queued", "running") for i in ids), timeout=120)
        jobs = [store.get_job(i) for i in ids]
        assert [j["status"] for j in jobs] == ["done"] * 10, [j["error"] for j in jobs]  # none lost
        assert {j["worker"] for j in jobs} <= {name_of(w) for w in workers}  # each one's worker recorded
        runs = store.list_runs(kind="train")
        assert sorted(r["job_id"] for r in runs) == ids  # each job ran exactly once: one run each, none twice
        shared = {p.name for p in (tmp_path / "shared").iterdir()}  # --artifacts alone sent them there
        assert all(r["weights_path"].startswith(KEY_PREFIX) and r["weights_path"][len(KEY_PREFIX):] in shared
                   for r in runs)

        # cancelled from here (the dashboard's machine): the worker that runs it stops at its next progress check
        cancelled = submit(store, "train", ENDLESS, start_worker=False)
        wait_for(lambda: (j := store.get_job(cancelled))["status"] == "running" and j["progress"] > 0)
        store.request_cancel(cancelled)
        wait_for(lambda: store.get_job(cancelled)["status"] == "cancelled", timeout=60)
        assert all(w.poll() is None for w in workers)  # both still serving

        # a worker killed mid-job: the other one marks its job interrupted (same host, dead pid) and goes on
        endless = submit(store, "train", ENDLESS, start_worker=False)
        running = wait_for(lambda: (j := store.get_job(endless))["status"] == "running" and j["progress"] > 0 and j)
        victim = next(w for w in workers if name_of(w) == running["worker"])
        survivor = next(w for w in workers if w is not victim)
        after = [submit(store, "train", {**TINY_TRAIN, "seed": seed}, start_worker=False) for seed in (10, 11)]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        wait_for(lambda: store.get_job(endless)["status"] == "interrupted", timeout=60)
        assert "worker stopped" in store.get_job(endless)["error"]
        wait_for(lambda: all(store.get_job(i)["status"] == "done" for i in after), timeout=120)
        assert {store.get_job(i)["worker"] for i in after} == {name_of(survivor)}
        assert survivor.poll() is None  # still serving
    finally:
        stop(workers)


def runs_of(store, job_id):
    """(the job's root run: the pruned model's parent or the distillation's teacher, every other run it made)"""
    runs = store.list_runs(job_id=job_id)
    roots = [r for r in runs if r["parent_id"] is None]
    assert len(roots) == 1 and all(r["parent_id"] == roots[0]["id"] for r in runs if r is not roots[0])
    return roots[0], [r for r in runs if r is not roots[0]]


def test_prune_and_distill_jobs_run_in_another_lab_folder_are_usable_here_after_it_is_gone(
        lab_home, tmp_path, monkeypatch, s3_artifacts):
    """On the real S3 server (the queue test above shares a folder; test_artifacts runs a search on both)."""
    shared, _ = s3_artifacts  # its AWS_* variables are in this process's environment, which the worker inherits
    monkeypatch.setenv("COMPRESSION_LAB_ARTIFACTS", shared)
    store = RunStore()  # lab folder A queues; B runs
    prune = submit(store, "prune", {"dataset": "synthetic", "model": "mlp:hidden=16", "epochs": 1, "latency_batch": 8,
                                    "sparsities": [0.5, 0.8], "finetune_epochs": 0}, start_worker=False)
    distill = submit(store, "distill", {"dataset": "synthetic", "teacher": "mlp:hidden=32", "student": "mlp:hidden=8",
                                        "teacher_epochs": 1, "epochs": 1, "seeds": [0], "latency_batch": 8},
                     start_worker=False)
    home_b = tmp_path / "lab-b"
    worker = start_worker(home_b, store.url, shared, "--once")
    out, err = worker.communicate(timeout=300)
    assert worker.returncode == 0, err
    assert '"jobs_run": 2' in out
    for job_id in (prune, distill):
        job = store.get_job(job_id)
        assert job["status"] == "done" and job["worker"] == name_of(worker), job["error"]
    assert home_b.exists() and not list(home_b.glob("weights/*"))  # its model files went to the shared store
    shutil.rmtree(home_b)  # ... and B is gone, as when that machine is unreachable
    for job_id, made in ((prune, 2), (distill, 2)):  # two sparsities; a distilled and a plain student
        root, children = runs_of(store, job_id)
        assert len(children) == made
        export_run(store, root["id"], "state_dict", tmp_path / f"run{root['id']}.pt")
        for run in children:
            assert run["weights_path"].startswith(KEY_PREFIX)
            export_run(store, run["id"], "state_dict", tmp_path / f"run{run['id']}.pt")
            assert diff_runs(store, root["id"], run["id"])["n_test"] > 0
            timing = retime(store, RetimeConfig(run_a=root["id"], run_b=run["id"], batch_size=8, time_budget=0,
                                                rounds=5))
            assert timing["ci95"][0] <= timing["speedup"] <= timing["ci95"][1]
            # B's own timings name the machine they were taken on, whose details are stored once
            assert all(entry["machine"] for entry in run["record"]["latency"])
            assert all(store.get_machine(s["machine"]) for s in store.list_speedups(run_b=run["id"]))


def test_a_worker_takes_only_its_kinds_and_a_cuda_job_only_with_a_gpu(lab_home, capsys, monkeypatch):
    monkeypatch.setattr("compression.labs.context.LATENCY_TIME_S", QUICK_LATENCY_S)  # the job runs in this process
    store = RunStore()
    prune = submit(store, "prune", {"dataset": "synthetic", "sparsities": [0.5]}, start_worker=False)
    on_gpu = submit(store, "train", {**TINY_TRAIN, "device": "cuda"}, start_worker=False)
    on_cpu = submit(store, "train", TINY_TRAIN, start_worker=False)
    code, out, err = in_process(capsys, "worker", "--kinds", "train", "--once", "--quiet", "--json")
    assert code == 0 and '"jobs_run": 1' in out, err
    # the first job it may run is the third: a prune job is not its kind, a CUDA job not its device
    assert [store.get_job(i)["status"] for i in (prune, on_gpu, on_cpu)] == ["queued", "queued", "done"]
    # a worker started with --device cuda takes it (the claim itself; running it needs the GPU)
    assert store.claim_next_job(kinds=["prune"], accepts=Serves(cuda=True).accepts)["id"] == prune
    assert store.claim_next_job(accepts=Serves(cuda=False).accepts) is None
    assert store.claim_next_job(accepts=Serves(cuda=True).accepts)["id"] == on_gpu


def test_a_worker_says_it_waits_for_work_and_stops_after_its_wait(lab_home, capsys):
    code, out, err = in_process(capsys, "worker", "--wait", "1", "--json")
    assert code == 0 and '"jobs_run": 0' in out
    assert err.strip() == "no job queued for this worker (kinds: any; device: cpu): waiting up to 1 s"


BAD_WORKER_INPUT = [
    (["worker", "--kinds", "train,nonsense"], "Unknown job kind 'nonsense'. Known: train, prune"),
    (["worker", "--kinds", ","], "--kinds is empty"),
    (["worker", "--wait", "-1"], "--wait must be between 0 and 86400 seconds, got -1"),
    (["worker", "--device", "tpu"], "invalid choice: 'tpu'"),
    (["worker", "--study", "s", "--kinds", "train"], "--kinds: for the job queue"),
    pytest.param(["worker", "--device", "cuda"], "--device cuda: no CUDA device is available on this machine",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")),
]


@pytest.mark.parametrize("args,message", BAD_WORKER_INPUT, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_worker_input_exits_2_with_one_line(lab_home, capsys, args, message):
    assert_one_error_line(*in_process(capsys, *args, "--json"), message, lab_home)


def test_the_artifacts_flag_holds_for_the_verb_only(lab_home, capsys, monkeypatch):
    monkeypatch.delenv("COMPRESSION_LAB_ARTIFACTS", raising=False)
    code, out, err = in_process(capsys, "runs", "list", "--artifacts", "/elsewhere", "--json")
    assert code == 0 and "COMPRESSION_LAB_ARTIFACTS" not in os.environ  # main() called in a longer-lived process


def test_a_second_worker_in_one_lab_folder_says_who_holds_it(lab_home, capsys):
    from compression.jobs.queue import _lock_worker
    lock, pid = _lock_worker()
    with lock:
        code, out, err = in_process(capsys, "worker", "--once", "--json")
    assert code == 2 and f"Another worker (pid {pid}) already serves the lab folder" in err


@pytest.mark.parametrize("worker, shown", [("gpu-box:4242", "on gpu-box;"),
                                           (f"{socket.gethostname()}:4242", "on this machine;")])
def test_the_job_panel_says_which_machine_runs_each_job(lab_home, worker, shown):
    from streamlit.testing.v1 import AppTest
    store = RunStore()
    job_id = store.submit_job("train", TINY_TRAIN)
    store.claim_next_job(worker=worker)
    store.finish_job(job_id, "done", result={"run_ids": []})

    def panel():
        from dashboard.views.jobs import job_panel
        job_panel(("train",), "test")
    at = AppTest.from_function(panel, default_timeout=30).run()
    assert not at.exception
    assert any(f"Job {job_id} (train) finished in" in s.value and shown in s.value for s in at.success)

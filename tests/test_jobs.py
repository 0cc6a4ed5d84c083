"""Background jobs against a real store and real worker processes."""
import os
import signal

import pytest

from compression import LabError, PruneLabConfig, RunStore
from compression.jobs import ensure_worker, recover_interrupted, register_job, run_job, submit, worker_running

from conftest import wait_for


@register_job("test_partial_then_fail")
def _partial_then_fail(params, ctx):
    ctx.store.add_run("train", "synthetic", {"name": "mlp", "args": {}}, {}, job_id=ctx.job_id, record={})
    ctx.progress({"fraction": 0.5, "message": "half way"})
    raise LabError("the second stage needs a sparsity below 1")


def test_a_failed_job_keeps_its_message_and_its_finished_runs(store):
    job_id = store.submit_job("test_partial_then_fail", {})
    assert run_job(store, store.claim_next_job()) == "failed"
    job = store.get_job(job_id)
    assert job["status"] == "failed" and job["error"] == "the second stage needs a sparsity below 1"
    assert "Traceback" not in job["error"]
    assert len(store.list_runs(job_id=job_id)) == 1


def test_a_diverging_training_fails_with_a_clear_message(store):
    # lr 10 is the largest the train config accepts, and plain SGD diverges with it here
    job_id = submit(store, "train", {"dataset": "synthetic", "model": "mlp:hidden=64", "epochs": 30,
                                     "lr": 10, "optimizer": "sgd"}, start_worker=False)
    assert run_job(store, store.claim_next_job()) == "failed"
    assert "diverged" in store.get_job(job_id)["error"]
    assert store.list_runs(job_id=job_id) == []


def test_submit_refuses_bad_input_before_queueing(store):
    with pytest.raises(LabError, match="Unknown model"):
        submit(store, "train", {"model": "vgg99"}, start_worker=False)
    with pytest.raises(LabError, match="Unknown job kind"):
        submit(store, "nonsense", {}, start_worker=False)
    with pytest.raises(LabError, match="Unknown parameter 'epochs_teacher' for distill"):  # renamed: teacher_epochs
        submit(store, "distill", {"teacher": "lenet5", "student": "mlp:hidden=8", "epochs_teacher": 3},
               start_worker=False)
    with pytest.raises(LabError, match=r"lr must be in \(0, 10\], got 1e\+12"):
        submit(store, "train", {"lr": 1e12}, start_worker=False)
    with pytest.raises(LabError, match="sparsities must be in"):
        submit(store, "prune", {"sparsities": [0.5, 1.7]}, start_worker=False)
    assert store.list_jobs() == []


def test_submit_stores_the_checked_config(store):
    job_id = submit(store, "prune", {"dataset": "synthetic", "sparsities": "0.5, 80%", "epochs": "2"},
                    start_worker=False)
    params = store.get_job(job_id)["params"]
    assert params["sparsities"] == [0.5, 0.8] and params["epochs"] == 2 and params["method"] is None  # resolved once the parent is known
    assert set(params) == set(PruneLabConfig.field_names())


def test_progress_eta_events_and_exclusive_latency(store):
    job_id = store.submit_job("train", {"dataset": "synthetic", "model": "mlp:hidden=16", "epochs": 3,
                                        "latency_batch": 8})
    assert run_job(store, store.claim_next_job()) == "done"
    job = store.get_job(job_id)
    assert job["progress"] == 1.0 and [e["epoch"] for e in job["events"]] == [1, 2, 3]
    run = store.get_run(job["result"]["run_ids"][0])
    assert run["job_id"] == job_id
    assert all(entry["exclusive"] is True for entry in run["record"]["latency"])


# a job that would run for minutes, in epochs of a few milliseconds: it is surely still running when the test
# acts on it, and a cancel is seen within one batch
ENDLESS = {"dataset": "synthetic", "model": "mlp:hidden=16", "epochs": 10_000, "latency_batch": 4}


def test_cancel_a_running_job_in_a_real_worker(store):
    job_id = submit(store, "train", ENDLESS)
    wait_for(lambda: store.get_job(job_id)["status"] == "running" and store.get_job(job_id)["progress"] > 0)
    store.request_cancel(job_id)
    job = wait_for(lambda: (j := store.get_job(job_id))["status"] == "cancelled" and j, timeout=60)
    assert "Cancelled by the user" in job["error"] and job["progress"] < 1.0
    assert store.list_runs(job_id=job_id) == []  # stopped mid-training: nothing half-made is stored


def test_a_killed_worker_leaves_an_interrupted_job_not_a_running_one(store):
    job_id = submit(store, "train", ENDLESS)
    job = wait_for(lambda: (j := store.get_job(job_id))["status"] == "running" and j)
    pid = int(job["worker"].rpartition(":")[2])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not worker_running(), timeout=30)
    assert recover_interrupted(store) == [job_id]
    job = store.get_job(job_id)
    assert job["status"] == "interrupted" and "worker stopped" in job["error"]
    # a new worker serves the queue again
    next_id = submit(store, "train", {"dataset": "synthetic", "model": "mlp:hidden=8", "epochs": 1,
                                      "latency_batch": 4})
    wait_for(lambda: store.get_job(next_id)["status"] in ("done", "failed"), timeout=120)
    assert store.get_job(next_id)["status"] == "done", store.get_job(next_id)["error"]


def test_only_one_worker_per_lab_folder(store):
    ensure_worker(store)
    wait_for(worker_running, timeout=30)
    from compression.jobs import worker_loop
    assert worker_loop(RunStore(), once=True) == 0  # the lock is taken: this one leaves at once


def test_cancel_of_an_unknown_job_is_an_error(store):
    with pytest.raises(LabError, match="no job 5"):
        store.request_cancel(5)


def test_a_headline_pair_becomes_a_retime_job_that_stores_a_pooled_timing(store):
    """The demo's follow-ups, without the demo: its headline pairs (each run against its lineage root, at the batch
    its quick figure was timed at) queued as `speedup` jobs, each timed in fresh processes and stored."""
    from compression.labs.demo import headline_pairs
    from compression.tasks import TASKS
    from compression.labs.prune import run_prune
    from conftest import quick_ctx
    out = run_prune(PruneLabConfig(dataset="synthetic", model="mlp:hidden=64", epochs=1, latency_batch=16,
                                   method="channel_l1", sparsities=[0.5], finetune_epochs=0), quick_ctx())
    parent, child = out["baseline"]["run_id"], out["results"][0]["run_id"]
    pairs = headline_pairs(store, TASKS["image"])
    assert [(p["run_a"], p["run_b"], p["batch_size"]) for p in pairs] == [(parent, child, 16)]  # the root has no pair
    job_id = submit(store, "speedup", pairs[0], start_worker=False)
    assert run_job(store, store.claim_next_job()) == "done"
    row = store.list_speedups(run_a=parent, run_b=child)[-1]
    assert row["detail"]["processes"] == 3 and row["batch_size"] == 16 and row["relation"] == "parent"
    assert store.get_job(job_id)["result"]["speedup"] == row["speedup"]

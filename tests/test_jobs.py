"""Background jobs against a real store and real worker processes."""
import os
import signal

import pytest

from compression import LabError, RunStore
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
    job_id = store.submit_job("train", {"dataset": "synthetic", "model": "mlp:hidden=64", "epochs": 30,
                                        "lr": 1e12, "optimizer": "sgd"})
    assert run_job(store, store.claim_next_job()) == "failed"
    assert "diverged" in store.get_job(job_id)["error"]


def test_submit_refuses_bad_input_before_queueing(store):
    with pytest.raises(LabError, match="Unknown model"):
        submit(store, "train", {"model": "vgg99"}, start_worker=False)
    with pytest.raises(LabError, match="Unknown job kind"):
        submit(store, "nonsense", {}, start_worker=False)
    assert store.list_jobs() == []


def test_progress_eta_events_and_exclusive_latency(store):
    job_id = store.submit_job("train", {"dataset": "synthetic", "model": "mlp:hidden=16", "epochs": 3,
                                        "latency_batch": 8})
    assert run_job(store, store.claim_next_job()) == "done"
    job = store.get_job(job_id)
    assert job["progress"] == 1.0 and [e["epoch"] for e in job["events"]] == [1, 2, 3]
    run = store.get_run(job["result"]["run_ids"][0])
    assert run["job_id"] == job_id
    assert all(entry["exclusive"] is True for entry in run["record"]["latency"])


def test_cancel_a_running_job_in_a_real_worker(store):
    job_id = submit(store, "train", {"dataset": "digits", "model": "cnn:width=32", "epochs": 200})
    wait_for(lambda: store.get_job(job_id)["status"] == "running" and store.get_job(job_id)["progress"] > 0)
    store.request_cancel(job_id)
    wait_for(lambda: store.get_job(job_id)["status"] == "cancelled", timeout=60)


def test_a_killed_worker_leaves_an_interrupted_job_not_a_running_one(store):
    job_id = submit(store, "train", {"dataset": "digits", "model": "cnn:width=32", "epochs": 200})
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
    wait_for(lambda: store.get_job(next_id)["status"] == "done", timeout=120)


def test_only_one_worker_per_lab_folder(store):
    ensure_worker(store)
    wait_for(worker_running, timeout=30)
    from compression.jobs import worker_loop
    assert worker_loop(RunStore(), once=True) == 0  # the lock is taken: this one leaves at once

"""The run store on a real SQLite file: lineage, deletion, jobs, and several writing processes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from compression import LabError, RunStore
from compression.store.runs import answers_table


def _add(store, kind="train", parent=None, **kw):
    return store.add_run(kind, "digits", {"name": "lenet5", "args": {}}, {"epochs": 1}, parent_id=parent,
                         record={"accuracy": 0.9}, **kw)


def test_runs_round_trip_with_json_fields(store):
    run_id = _add(store, method="baseline", label="lenet5 baseline")
    run = store.get_run(run_id)
    assert run["model"] == {"name": "lenet5", "args": {}} and run["record"] == {"accuracy": 0.9}
    assert run["status"] == "done" and run["created_at"] > 0
    assert [r["id"] for r in store.list_runs(kind="train")] == [run_id]
    assert store.list_runs(kind="prune") == []


def test_count_runs_counts_what_a_listing_would_list(store):
    job = store.submit_job("prune", {})
    assert store.count_runs() == 0 and store.count_runs(job_id=job) == 0
    for _ in range(3):
        _add(store, job_id=job)
    _add(store)
    assert store.count_runs(job_id=job) == len(store.list_runs(job_id=job)) == 3
    assert store.count_runs() == len(store.list_runs()) == 4


def test_answers_live_apart_from_listings_and_go_with_their_run(store):
    answers = {"label": [3, 1, 4], "confidence": [0.9, 0.5, 0.7]}
    run_id = _add(store, extra={"history": [1], "predictions": answers})
    assert store.get_run(run_id)["extra"] == {"history": [1], "has_answers": True, "predictions": answers}
    listed = store.list_runs()[0]["extra"]
    assert listed == {"history": [1], "has_answers": True}  # a listing never decodes every run's answers
    newer = {"label": [0, 0, 0], "confidence": [1.0, 1.0, 1.0]}
    store.update_run(run_id, extra={**listed, "predictions": newer})  # replaced, not duplicated
    assert store.get_run(run_id)["extra"]["predictions"] == newer
    store.update_run(run_id, extra={**listed, "note": "kept"})  # an update without answers keeps them
    assert store.get_run(run_id)["extra"]["predictions"] == newer
    other = _add(store)
    store.delete_runs([run_id])
    with store.engine.connect() as conn:  # deleted with the run: a new run under a reused id starts clean
        assert conn.execute(answers_table.select()).all() == []
    assert "predictions" not in (store.get_run(other)["extra"] or {})


def test_lineage_and_delete_keep_children(store):
    base = _add(store)
    pruned = _add(store, "prune", base)
    quant = _add(store, "quantize", pruned)
    assert [r["id"] for r in store.lineage(quant)] == [base, pruned, quant]
    assert store.delete_runs([pruned]) == 1
    assert store.get_run(quant)["parent_id"] is None  # the child stays; nothing else is lost
    assert len(store.list_runs()) == 2
    with pytest.raises(LabError, match="no run"):
        store.get_run(pruned)


def test_bad_status_and_url_are_refused(store):
    with pytest.raises(LabError, match="Unknown run status 'exploded'. Known: "):
        _add(store, status="exploded")
    with pytest.raises(LabError, match="database URL"):
        RunStore("not a url")


def test_survives_a_new_store_object(lab_home):
    run_id = _add(RunStore())
    assert RunStore().get_run(run_id)["kind"] == "train"  # persisted, not held in memory


def _run_processes(*args, count: int) -> list[list[int]]:
    """Start `count` real processes of tests/store_worker.py at once; return what each printed."""
    script = Path(__file__).with_name("store_worker.py")
    procs = [subprocess.Popen([sys.executable, str(script), *map(str, args)], stdout=subprocess.PIPE, text=True)
             for _ in range(count)]
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * count
    return [json.loads(out) for out in outputs]


def test_concurrent_writers_lose_nothing(store):
    results = _run_processes("writer", store.url, 25, count=4)
    ids = [i for ids in results for i in ids]
    assert len(ids) == len(set(ids)) == 100
    assert sorted(r["id"] for r in store.list_runs()) == sorted(ids)


def test_two_workers_never_claim_the_same_job(store, tmp_path):
    jobs = [store.submit_job("train", {"n": i}) for i in range(30)]
    claimed = _run_processes("claimer", store.url, tmp_path / "barrier", 3, count=3)  # they start together
    flat = [j for part in claimed for j in part]
    assert sorted(flat) == jobs  # every job once, none twice
    assert sum(1 for part in claimed if part) >= 2, claimed  # the claims really raced: more than one got jobs
    assert all(store.get_job(j)["status"] == "done" for j in jobs)


def test_cancel_and_interrupted_jobs(store):
    queued = store.submit_job("train", {})
    store.request_cancel(queued)
    assert store.get_job(queued)["status"] == "cancelled"
    running = store.submit_job("train", {})
    assert store.claim_next_job()["id"] == running
    assert store.mark_interrupted(stale_after_s=3600) == []  # fresh heartbeat: still running
    assert store.mark_interrupted(stale_after_s=-1) == [running]
    job = store.get_job(running)
    assert job["status"] == "interrupted" and "worker stopped" in job["error"]

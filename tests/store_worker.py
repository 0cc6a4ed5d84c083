"""Run as a separate process by test_store.py: `python store_worker.py writer URL N` or
`python store_worker.py claimer URL BARRIER_DIR COUNT`.

Prints the ids it wrote or claimed as JSON. (Plain processes rather than multiprocessing: AppTest
replaces sys.modules['__main__'], which multiprocessing's spawn would re-run in every child.)

Claimers start together: each one imports, connects, then waits at a file barrier until all COUNT have arrived, so
one that started first cannot drain the queue before the others exist; each holds a job for a moment (as a worker
running it would) before it claims the next, so the claims interleave and really race.
"""
import json
import os
import sys
import time
from pathlib import Path

from compression import RunStore

HOLD_S = 0.01  # per claimed job: 30 jobs cost 0.3 s in all


def writer(store: RunStore, count: int) -> list[int]:
    return [store.add_run("train", "digits", {"name": "lenet5", "args": {}}, {"epochs": 1}, label=f"w{i}",
                          record={"accuracy": 0.9}) for i in range(count)]


def barrier(folder: Path, count: int, timeout: float = 120.0) -> None:
    """Arrive (one file per process), then wait until `count` processes have."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout
    while sum(1 for _ in folder.iterdir()) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"barrier: only {sum(1 for _ in folder.iterdir())} of {count} claimers arrived")
        time.sleep(0.005)


def claimer(store: RunStore, folder: Path, count: int) -> list[int]:
    store.list_jobs()  # connect (and create the engine) before the barrier, not in the race
    barrier(folder, count)
    claimed = []
    while (job := store.claim_next_job()) is not None:
        claimed.append(job["id"])
        time.sleep(HOLD_S)
        store.finish_job(job["id"], "done")
    return claimed


if __name__ == "__main__":
    role, url = sys.argv[1], sys.argv[2]
    store = RunStore(url)
    if role == "writer":
        print(json.dumps(writer(store, int(sys.argv[3]))))
    else:
        print(json.dumps(claimer(store, Path(sys.argv[3]), int(sys.argv[4]))))

"""Run as a separate process by test_store.py: `python store_worker.py writer|claimer URL [N]`.

Prints the ids it wrote or claimed as JSON. (Plain processes rather than multiprocessing: AppTest
replaces sys.modules['__main__'], which multiprocessing's spawn would re-run in every child.)
"""
import json
import sys

from compression import RunStore


def writer(store: RunStore, count: int) -> list[int]:
    return [store.add_run("train", "digits", {"name": "lenet5", "args": {}}, {"epochs": 1}, label=f"w{i}",
                          record={"accuracy": 0.9}) for i in range(count)]


def claimer(store: RunStore) -> list[int]:
    claimed = []
    while (job := store.claim_next_job()) is not None:
        claimed.append(job["id"])
        store.finish_job(job["id"], "done")
    return claimed


if __name__ == "__main__":
    role, url = sys.argv[1], sys.argv[2]
    store = RunStore(url)
    print(json.dumps(writer(store, int(sys.argv[3])) if role == "writer" else claimer(store)))

"""Server-side render time of the Compare page with 1,000 stored runs vs 10, side by side.

Prints one JSON line: median seconds for each and `ratio` = 1000-run time / 10-run time.
"""
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import _common

from compression import BaselineConfig, RunContext, RunStore, get_baseline

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


def fill(store: RunStore, template: dict, count: int) -> None:
    rng = random.Random(0)
    base_id = None
    for i in range(count):
        record = dict(template["record"], accuracy=rng.uniform(0.8, 0.99), params=rng.randint(1_000, 100_000),
                      size_bytes=rng.randint(5_000, 400_000))
        run_id = store.add_run("prune" if i else "train", "digits", template["model"], {"sparsity": i / count},
                               parent_id=base_id, record=record, method="global_l1" if i else "baseline",
                               label=f"run {i}")
        base_id = base_id or run_id


def render_seconds(home: str, repeats: int = 5) -> float:
    from streamlit.testing.v1 import AppTest
    os.environ["COMPRESSION_LAB_HOME"] = home
    times = []
    for _ in range(repeats):
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        start = time.perf_counter()
        at.switch_page("app_pages/compare.py").run()
        times.append(time.perf_counter() - start)
        assert not at.exception, at.exception
    return statistics.median(times)


if __name__ == "__main__":
    _, template = get_baseline(BaselineConfig(dataset="synthetic", model="mlp:hidden=16", epochs=1, latency_batch=16),
                               RunContext(latency_time=0.02))
    homes = {}
    for count in (10, 1000):
        homes[count] = tempfile.mkdtemp(prefix=f"bench-compare-{count}-")
        os.environ["COMPRESSION_LAB_HOME"] = homes[count]
        fill(RunStore(), template, count)
    small, large = render_seconds(homes[10]), render_seconds(homes[1000])
    _common.emit({"benchmark": "compare_page", "runs_small": 10, "runs_large": 1000,
                  "render_s_10_runs": round(small, 3), "render_s_1000_runs": round(large, 3),
                  "ratio": round(large / small, 2)})

"""The teaching demo, headless: the same job the Home page's button queues (every lab on digits), run in this
process on a fresh lab folder. Prints its wall time per stage and in total (goal: <= 60 s on 2 quiet cores)."""
import time

import _common

from compression.core.timing import LoadSampler, machine_fingerprint
from compression.labs.configs import DemoConfig
from compression.labs.context import RunContext
from compression.labs.demo import demo_stages

if __name__ == "__main__":
    config, ctx = DemoConfig(dataset="digits", epochs=10), RunContext(exclusive=True)
    stages, start = [], time.perf_counter()
    with LoadSampler() as sampler:
        for label, stage in demo_stages():
            began = time.perf_counter()
            runs = stage(config, ctx)
            stages.append({"stage": label, "runs": len(runs), "wall_s": round(time.perf_counter() - began, 1)})
    wall = time.perf_counter() - start
    _common.emit({"benchmark": "demo", "wall_s": round(wall, 1), "goal_s": 60, "met": wall <= 60,
                  "runs": sum(s["runs"] for s in stages), "stages": stages, "other_load_cores": round(sampler.load, 2),
                  "machine": machine_fingerprint("cpu")["id"]})

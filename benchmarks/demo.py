"""The teaching demo, headless: the same job the Home page's button queues (every lab on digits), run in this
process on a fresh lab folder. Prints its wall time per stage and in total (goal: <= 60 s on 2 quiet cores)."""
import _common

from compression.core.timing import LoadSampler, machine_fingerprint
from compression.labs.configs import DemoConfig
from compression.labs.context import RunContext
from compression.labs.demo import run_demo

if __name__ == "__main__":
    with LoadSampler() as sampler:
        out = run_demo(DemoConfig(dataset="digits", epochs=10), RunContext(exclusive=True))
    _common.emit({"benchmark": "demo", "wall_s": round(out["wall_s"], 1), "goal_s": 60, "met": out["wall_s"] <= 60,
                  "runs": len(out["run_ids"]), "stages": out["stages"], "other_load_cores": round(sampler.load, 2),
                  "machine": machine_fingerprint("cpu")["id"]})

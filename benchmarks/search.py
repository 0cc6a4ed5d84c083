"""Architecture search on digits.

- 20 trials x 3 epochs of the CNN space, random search: wall time (goal <= 3 min on 2 cores)
- the found front's hypervolume vs the zoo's, same reference point (goal: found >= zoo)
- regularized evolution vs random search over 3 seeds (mean hypervolume of each; ratio = evolution / random)
"""
import statistics
import time

import _common

from compression import SearchConfig
from compression.labs.search import run_search


def search(strategy, seed, trials=20):
    start = time.perf_counter()
    out = run_search(SearchConfig(dataset="digits", space="cnn", strategy=strategy, trials=trials, epochs=3,
                                  objective="params", seed=seed))
    return out, time.perf_counter() - start


if __name__ == "__main__":
    main, wall = search("random", 0)
    evo = [search("evolution", s)[0]["hypervolume"] for s in (1, 2, 3)]
    rnd = [search("random", s)[0]["hypervolume"] for s in (1, 2, 3)]
    _common.emit({"benchmark": "search", "dataset": "digits", "space": "cnn", "objective": "params", "trials": 20,
                  "epochs": 3, "wall_s_random_20x3": round(wall, 1), "hypervolume": round(main["hypervolume"], 4),
                  "zoo_hypervolume": round(main["zoo_hypervolume"], 4), "reference_point": main["reference_point"],
                  "evolution_hv_by_seed": [round(v, 4) for v in evo], "random_hv_by_seed": [round(v, 4) for v in rnd],
                  "ratio": round(statistics.mean(evo) / statistics.mean(rnd), 3),
                  "goals_met": {"wall_le_180s": wall <= 180, "found_hv_ge_zoo": main["hypervolume"] >= main["zoo_hypervolume"]}})

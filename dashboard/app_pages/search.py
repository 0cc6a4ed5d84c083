from dashboard.components import coming_soon

coming_soon("Search", "Small hardware-aware architecture searches on Optuna, with a live Pareto front of "
            "accuracy against params, MACs or measured latency.")

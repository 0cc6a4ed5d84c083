from dashboard.components import coming_soon

coming_soon("Prune", "Unstructured and structured pruning to the sparsities you choose, with fine-tuning, "
            "sweeps and per-layer sensitivity; measured latency next to the speed-up MACs predict.")

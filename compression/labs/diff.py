"""What did compression change? Two runs' answers on the same test split, compared example by example
(Hooker et al. 2019): flipped answers, per-class deltas with paired CIs, calibration (ECE) and confusion."""
from __future__ import annotations

import torch

from ..core.behaviour import compact_predictions, diff_predictions
from ..core.data import load_dataset
from ..core.train import predict
from ..errors import LabError
from ..store import RunStore
from ..store.artifacts import load_run_model


def predictions_of(store: RunStore, run: dict, data) -> dict:
    """The run's stored test predictions, or recomputed from its weights (older runs), then stored."""
    stored = (run.get("extra") or {}).get("predictions")
    if stored and len(stored.get("label", [])) == len(data.y_test):
        return stored
    model = load_run_model(run["weights_path"])
    dtype = getattr(torch, (run.get("extra") or {}).get("input_dtype") or "float32", torch.float32)
    logits = predict(model, data.x_test.to(dtype))
    stored = compact_predictions(logits)
    store.update_run(run["id"], extra={**(run.get("extra") or {}), "predictions": stored})
    return stored


def diff_runs(store: RunStore, run_a: int, run_b: int, max_flipped: int | None = None) -> dict:
    a, b = store.get_run(run_a), store.get_run(run_b)
    if a["dataset"] != b["dataset"]:
        raise LabError(f"Runs {run_a} and {run_b} were evaluated on different data sets ({a['dataset']} and "
                       f"{b['dataset']}): their answers cannot be compared example by example.")
    data = load_dataset(a["dataset"])
    try:
        out = diff_predictions(predictions_of(store, a, data), predictions_of(store, b, data), data.y_test,
                               list(data.class_names), max_flipped)
    except ValueError as err:
        raise LabError(f"Runs {run_a} and {run_b} cannot be compared: {err}") from None
    return {"run_a": run_a, "run_b": run_b, "dataset": a["dataset"], **out}

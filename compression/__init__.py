"""Compression Lab's backend: data, models, training, measurement, techniques and the run store.

Never imports Streamlit; progress leaves it only through callbacks. Each lab is one function that
measures its results next to their parent in the same process and stores them as child runs.
"""
from .baseline import as_record, get_baseline
from .data import Dataset, list_datasets, load_dataset
from .errors import CancelledError, DatasetNotFoundError, DivergedError, LabError, UnknownNameError
from .measure import available_devices, latency_of, measure, paired_speedup, wilson_interval
from .models import build_model, format_spec, list_models, model_args, parse_spec
from .store import RunStore
from .train import TrainConfig, accuracy, train


def __getattr__(name):  # the labs import torch-pruning, optuna and torchao: load them on first use
    lazy = {"run_prune_sweep": ("prune_lab", "run_prune_sweep"), "run_distill": ("distill_lab", "run_distill"),
            "run_quantize": ("quantize_lab", "run_quantize"), "run_pipeline": ("pipeline", "run_pipeline"),
            "run_search": ("search", "run_search"), "SearchConfig": ("search", "SearchConfig")}
    if name in lazy:
        import importlib
        module, attr = lazy[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'compression' has no attribute '{name}'")


__all__ = [
    "as_record", "get_baseline",
    "Dataset", "list_datasets", "load_dataset",
    "CancelledError", "DatasetNotFoundError", "DivergedError", "LabError", "UnknownNameError",
    "available_devices", "latency_of", "measure", "paired_speedup", "wilson_interval",
    "build_model", "format_spec", "list_models", "model_args", "parse_spec",
    "RunStore",
    "TrainConfig", "accuracy", "train",
    "run_prune_sweep", "run_distill", "run_quantize", "run_pipeline", "run_search", "SearchConfig",
]

"""Compression Lab's backend: data, models, training, measurement, techniques and the run store.

Never imports Streamlit; progress leaves it only through callbacks.
"""
from .baseline import as_record, get_baseline
from .data import Dataset, list_datasets, load_dataset
from .errors import CancelledError, DatasetNotFoundError, DivergedError, LabError, UnknownNameError
from .measure import available_devices, latency_of, measure, wilson_interval
from .models import build_model, format_spec, list_models, model_args, parse_spec
from .store import RunStore
from .train import TrainConfig, accuracy, train

__all__ = [
    "as_record", "get_baseline",
    "Dataset", "list_datasets", "load_dataset",
    "CancelledError", "DatasetNotFoundError", "DivergedError", "LabError", "UnknownNameError",
    "available_devices", "latency_of", "measure", "wilson_interval",
    "build_model", "format_spec", "list_models", "model_args", "parse_spec",
    "RunStore",
    "TrainConfig", "accuracy", "train",
]

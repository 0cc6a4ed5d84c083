"""Compression Lab's backend. Never imports Streamlit; progress leaves it only through callbacks.

Layers, imported one way: core (data, models, train, measure, timing) <- techniques (nn.Module in, nn.Module out)
<- text (language models) <- tasks (what differs between an image classifier and a language model: task_of)
<- labs (configs, RunContext, stored runs) <- jobs <- cli, and the dashboard. The store serves labs and jobs.

    import compression
    pruned = compression.prune(model, loader, method="channel_l1", sparsity=0.5)
    compression.speedup(model, pruned, torch.randn(64, 3, 32, 32))    # paired, with a 95% CI
"""
from .api import distill, measure, prune, quantize, speedup
from .core.data import Dataset, list_datasets, load_dataset
from .core.measure import latency_of, wilson_interval
from .core.models import build_model, format_spec, list_models, parse_spec
from .core.train import TrainConfig, accuracy, train
from .errors import CancelledError, DatasetNotFoundError, DivergedError, LabError, UnknownNameError
from .labs.baseline import get_baseline
from .labs.configs import (BaselineConfig, DistillLabConfig, PipelineLabConfig, PruneLabConfig, QuantizeLabConfig,
                           SearchConfig)
from .labs.io.compressed import load_compressed
from .labs.context import RunContext
from .labs.distill import run_distill
from .labs.pipeline import run_pipeline
from .labs.prune import run_prune
from .labs.quantize import run_quantize
from .labs.records import as_record
from .store import RunStore
from .tasks import TASKS, task_of
from .text import corpus as _text_data, models as _language_models  # noqa: F401  registers pydoc, text:, gpt, hf:
from .text import prune as _text_pruning  # noqa: F401  registers magnitude, wanda, sparsegpt

__all__ = [
    # model-first
    "prune", "quantize", "distill", "measure", "speedup", "load_compressed",
    # data, models, training
    "Dataset", "list_datasets", "load_dataset", "build_model", "format_spec", "list_models", "parse_spec",
    "TrainConfig", "accuracy", "train", "latency_of", "wilson_interval",
    # errors
    "LabError", "CancelledError", "DatasetNotFoundError", "DivergedError", "UnknownNameError",
    # tasks: image classification and language modelling, found by lookup
    "TASKS", "task_of",
    # labs: a typed config and a RunContext in, stored runs out
    "RunStore", "RunContext", "as_record", "get_baseline", "BaselineConfig", "PruneLabConfig", "QuantizeLabConfig",
    "PipelineLabConfig", "DistillLabConfig", "SearchConfig", "run_prune", "run_quantize", "run_pipeline",
    "run_distill", "run_search",
]


def __getattr__(name):  # the search lab imports Optuna: loaded on first use
    if name == "run_search":
        from .labs.search import run_search
        return run_search
    raise AttributeError(f"module 'compression' has no attribute '{name}'")

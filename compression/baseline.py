"""Train (or load from the cache) a baseline, measure it and store it as a run."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .artifacts import load_run_model, save_model
from .data import load_dataset
from .errors import LabError
from .measure import DEFAULT_LATENCY_BATCH, measure
from .models import build_model, format_spec, parse_spec
from .paths import checkpoints_dir
from .store import RunStore
from .train import TrainConfig, cache_key, resolve_device, train

# progress(info): info has "fraction" (0-1) and "message", plus per-epoch fields while training
Progress = Callable[[dict], None]


def as_record(run: dict) -> dict:
    """The flat record the CLI prints and every chart reads: run metadata + measurement."""
    out = {"run_id": run["id"], "kind": run["kind"], "parent_id": run["parent_id"], "job_id": run.get("job_id"),
           "status": run["status"],
           "dataset": run["dataset"], "model": run["model"], "model_name": format_spec(run["model"]),
           "method": run.get("method"), "label": run.get("label"), "config": run["config"]}
    out.update(run.get("record") or {})
    out.update(run.get("extra") or {})
    if run.get("error"):
        out["error"] = run["error"]
    return out


def _stage_progress(progress: Progress | None, lo: float, hi: float, label: str):
    """Map a stage's epochs onto [lo, hi] of the overall bar."""
    def on_epoch(info):
        if progress:
            frac = lo + (hi - lo) * info["epoch"] / max(info["epochs"], 1)
            progress({**info, "fraction": frac,
                      "message": f"{label}: epoch {info['epoch']}/{info['epochs']}, "
                                 f"val acc {info['val_accuracy']:.3f}"})
    return on_epoch


def get_baseline(dataset: str = "digits", model: str | dict = "lenet5", epochs: int = 10, seed: int = 0,
                 *, batch_size: int = TrainConfig.batch_size, lr: float = TrainConfig.lr,
                 optimizer: str = TrainConfig.optimizer, device: str | None = None,
                 data_dir: str | None = None, download: bool = False,
                 latency_batch: int = DEFAULT_LATENCY_BATCH, store: RunStore | None = None,
                 progress: Progress | None = None, should_cancel=None, job_id: int | None = None,
                 exclusive: bool | None = None, latency_time: float = 0.3) -> tuple[nn.Module, dict]:
    """Return (model, run). A stored run with the same data, spec, config and latency batch is reused
    as is (instant); else cached weights are loaded, or the model is trained, then measured."""
    store = store or RunStore()
    spec = parse_spec(model)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed)
    key = cache_key(dataset, spec, config)
    dev = resolve_device(device)
    for run in reversed(store.list_runs(kind="train", dataset=dataset, status="done")):
        cfg = run["config"]
        if cfg.get("cache_key") == key and cfg.get("latency_batch") == latency_batch:
            try:
                net = load_run_model(run["weights_path"])
            except Exception:
                continue  # weights missing or stale: fall through and rebuild
            if progress:
                progress({"fraction": 1.0, "message": f"Loaded stored baseline run {run['id']}"})
            return net, run

    data = load_dataset(dataset, data_dir, download)
    torch.manual_seed(seed)
    net = build_model(spec, data.input_shape, data.num_classes)
    checkpoint = checkpoints_dir() / f"baseline_{key}.pt"
    history = []
    if checkpoint.exists():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        net.load_state_dict(saved["state_dict"])
        history = saved["history"]
        if progress:
            progress({"fraction": 0.8, "message": "Loaded cached baseline weights"})
    else:
        history = train(net, data, config, dev, on_epoch=_stage_progress(progress, 0.0, 0.8, "Training"),
                        should_cancel=should_cancel)
        net.cpu()
        torch.save({"state_dict": net.state_dict(), "history": history}, checkpoint)
    if progress:
        progress({"fraction": 0.85, "message": "Measuring accuracy, size, MACs and latency"})
    net.cpu().eval()
    record = measure(net, data, latency_batch=latency_batch, exclusive=exclusive, min_run_time=latency_time)
    run_config = {**config.to_dict(), "cache_key": key, "latency_batch": latency_batch,
                  "train_device": str(dev)}
    run_id = store.add_run("train", dataset, spec, run_config, record=record, method="baseline",
                           label=f"{format_spec(spec)} baseline ({epochs} ep, seed {seed})", extra={"history": history},
                           job_id=job_id, weights_path=save_model(net, data.x_test[:1]))
    if progress:
        progress({"fraction": 1.0, "message": f"Stored baseline run {run_id}"})
    return net, store.get_run(run_id)


def resolve_parent(store: RunStore, from_run: int | None = None, progress: Progress | None = None,
                   should_cancel=None, job_id=None, exclusive=None, **baseline_kwargs) -> tuple[nn.Module, dict]:
    """The model a technique starts from: any stored run (`from_run`), else the cached baseline."""
    if from_run is not None:
        run = store.get_run(from_run)
        if run["status"] != "done":
            raise LabError(f"Run {from_run} is {run['status']}, not done; it has no model to start from.")
        return load_run_model(run["weights_path"]), run
    return get_baseline(**baseline_kwargs, store=store, progress=progress, should_cancel=should_cancel,
                        job_id=job_id, exclusive=exclusive)


def measure_and_store(store: RunStore, model: nn.Module, data, parent: dict, *, kind: str, method: str,
                      label: str, config: dict, extra: dict, baseline_record: dict, latency_batch: int,
                      job_id=None, exclusive=None, latency_time: float = 0.3,
                      input_dtype: torch.dtype = torch.float32, float_model: nn.Module | None = None,
                      model_spec: dict | None = None) -> dict:
    """Measure a technique's output in this process, next to its baseline, and store it as a child run.

    `float_model`: the model before quantization; int8 kernels do its multiply-accumulates, which the
    flop counter cannot see in the quantized model.
    """
    record = measure(model, data, latency_batch=latency_batch, exclusive=exclusive, min_run_time=latency_time,
                     input_dtype=input_dtype)
    if float_model is not None:  # quantization changes the arithmetic's precision, not its count
        from .measure import count_macs, effective_macs
        record["macs"] = count_macs(float_model, data.input_shape)
        record["effective_macs"] = effective_macs(float_model, data.input_shape)
        record["macs_note"] = "counted on the float model: the int8 kernels do the same multiply-accumulates"
    record.update(speedups(record, baseline_record))
    run_id = store.add_run(kind, parent["dataset"], model_spec or parent["model"], config, parent_id=parent["id"],
                           record=record, extra=extra, method=method, label=label, job_id=job_id,
                           weights_path=save_model(model, data.x_test[:1]))
    return store.get_run(run_id)


def speedups(record: dict, baseline_record: dict) -> dict:
    """Measured latency speed-up (same process, same batch) and the speed-up MACs predict."""
    from .measure import latency_of
    out = {}
    for entry in record["latency"]:
        base = latency_of(baseline_record, entry["device"], entry["batch_size"])
        if base and entry.get("median_ms"):
            out[f"speedup_{entry['device']}_b{entry['batch_size']}"] = base / entry["median_ms"]
    if record.get("effective_macs"):
        out["speedup_predicted_macs"] = baseline_record["macs"] / record["effective_macs"]
    return out

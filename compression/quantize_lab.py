"""Quantize runs and pipelines as the CLI and the pages run them: every result a stored child run."""
from __future__ import annotations

from .baseline import as_record, measure_and_store, resolve_parent
from .data import load_dataset
from .errors import LabError
from .measure import DEFAULT_LATENCY_BATCH, measure
from .quantize import METHODS, availability, quantize_model
from .store import RunStore


def _start(store, from_run, progress, should_cancel, job_id, exclusive, latency_time, baseline_kwargs):
    report = lambda frac, msg: progress and progress({"fraction": frac, "message": msg})  # noqa: E731
    model, parent = resolve_parent(store, from_run, progress=lambda i: report(0.1 * i["fraction"], i["message"]),
                                   should_cancel=should_cancel, job_id=job_id, exclusive=exclusive, **baseline_kwargs)
    data = load_dataset(parent["dataset"], baseline_kwargs.get("data_dir"), baseline_kwargs.get("download", False))
    latency_batch = baseline_kwargs.get("latency_batch", DEFAULT_LATENCY_BATCH)
    report(0.12, "Measuring the parent model in this process")
    baseline_record = measure(model, data, latency_batch=latency_batch, exclusive=exclusive, min_run_time=latency_time)
    return model, parent, data, latency_batch, baseline_record, report


def run_quantize(*, methods: list[str], calibration_batches: int = 8, from_run: int | None = None,
                 store: RunStore | None = None, progress=None, should_cancel=None, job_id=None, exclusive=None,
                 latency_time: float = 0.3, **baseline_kwargs) -> dict:
    """Quantize the parent with each method; returns {"baseline": record, "results": [record + method]}.

    A method this machine cannot run is reported in `unavailable` with its reason, not raised.
    """
    store = store or RunStore()
    if not methods:
        raise LabError(f"Pick at least one method: {', '.join(METHODS)}")
    if int(calibration_batches) <= 0:
        raise LabError(f"The calibration batch count must be at least 1, got {calibration_batches}")
    for method in methods:
        availability(method)  # unknown names fail before any work
    model, parent, data, latency_batch, baseline_record, report = _start(
        store, from_run, progress, should_cancel, job_id, exclusive, latency_time, baseline_kwargs)
    device = baseline_kwargs.get("device") or "cpu"
    results, unavailable = [], []
    for i, method in enumerate(methods):
        report(0.15 + 0.85 * i / len(methods), f"{method}: quantizing and measuring")
        reason = availability(method, "cpu" if METHODS[method].real_int8 else device)
        if reason:
            unavailable.append({"method": method, "reason": reason})
            continue
        try:
            quantized, qreport = quantize_model(model, data, method, "cpu" if METHODS[method].real_int8 else device,
                                                calibration_batches)
        except LabError as err:
            unavailable.append({"method": method, "reason": str(err)})
            continue
        run = measure_and_store(store, quantized, data, parent, kind="quantize", method=method, label=method,
                                config={"method": method, "calibration_batches": int(calibration_batches)},
                                extra=qreport, baseline_record=baseline_record, latency_batch=latency_batch,
                                job_id=job_id, exclusive=exclusive, latency_time=latency_time,
                                input_dtype=METHODS[method].input_dtype, float_model=model)
        results.append({**as_record(run), "method": method})
        if should_cancel and should_cancel():
            break
    report(1.0, f"Stored {len(results)} quantized run(s)")
    return {"baseline": {**as_record(parent), **baseline_record}, "results": results, "unavailable": unavailable}

"""A pruning sweep as the CLI and the Prune page run it: one stored child run per sparsity."""
from __future__ import annotations

from .baseline import as_record, measure_and_store, resolve_parent
from .data import load_dataset
from .errors import CancelledError, LabError
from .measure import DEFAULT_LATENCY_BATCH, measure
from .prune import METHODS, PruneConfig, prune_model, sensitivity
from .store import RunStore


def validate_sweep(sparsities: list[float], method: str, **config) -> list[PruneConfig]:
    if not sparsities:
        raise LabError("The sweep is empty: give at least one sparsity, e.g. 0.5 0.7 0.9")
    return [PruneConfig(method=method, sparsity=float(s), **config) for s in sparsities]


def run_prune_sweep(*, sparsities: list[float], method: str = "global_l1", finetune_epochs: int = 5,
                    schedule: str = "oneshot", steps: int = 1, layers=None, skip_first_last: bool = False,
                    round_to: int | None = None, with_sensitivity: bool = False, from_run: int | None = None,
                    store: RunStore | None = None, progress=None, should_cancel=None, job_id=None,
                    exclusive=None, latency_time: float = 0.3, **baseline_kwargs) -> dict:
    """Prune the parent model at each sparsity, fine-tune, measure next to the parent, store each run.

    Returns {"baseline": record, "results": [record + method, sparsity, layers], "sensitivity": [...]}.
    """
    store = store or RunStore()
    configs = validate_sweep(sparsities, method, finetune_epochs=finetune_epochs, schedule=schedule, steps=steps,
                             layers=tuple(layers) if layers else None, skip_first_last=skip_first_last,
                             round_to=round_to, seed=baseline_kwargs.get("seed", 0))
    report = lambda frac, msg, **kw: progress and progress({"fraction": frac, "message": msg, **kw})  # noqa: E731
    model, parent = resolve_parent(store, from_run, progress=lambda i: report(0.1 * i["fraction"], i["message"]),
                                   should_cancel=should_cancel, job_id=job_id, exclusive=exclusive,
                                   **baseline_kwargs)
    data = load_dataset(parent["dataset"], baseline_kwargs.get("data_dir"), baseline_kwargs.get("download", False))
    latency_batch = baseline_kwargs.get("latency_batch", DEFAULT_LATENCY_BATCH)
    report(0.1, "Measuring the parent model in this process")
    baseline_record = measure(model, data, latency_batch=latency_batch, exclusive=exclusive, min_run_time=latency_time)
    baseline = {**as_record(parent), **baseline_record}
    results = []
    span = 0.8 if with_sensitivity else 0.9
    for i, config in enumerate(configs):
        lo, width = 0.1 + span * i / len(configs), span / len(configs)

        def step_progress(info, lo=lo, width=width, s=config.sparsity):
            report(lo + width * 0.9 * info["fraction"], f"{method} {s:.0%}: {info['message']}",
                   **{k: info[k] for k in ("epoch", "epochs", "train_loss", "val_accuracy") if k in info},
                   stage=f"{method} {s:.0%}")
        pruned, prune_report = prune_model(model, data, config, baseline_kwargs.get("device") or "cpu",
                                           progress=step_progress, should_cancel=should_cancel)
        report(lo + width * 0.95, f"{method} {config.sparsity:.0%}: measuring")
        run = measure_and_store(store, pruned, data, parent, kind="prune", method=method,
                                label=f"{method} {config.sparsity:.0%}", config=config.to_dict(),
                                extra={k: prune_report[k] for k in ("sparsity", "structured", "layers",
                                                                    "finetune_history")},
                                baseline_record=baseline_record, latency_batch=latency_batch, job_id=job_id,
                                exclusive=exclusive, latency_time=latency_time)
        results.append({**as_record(run), "method": method, "sparsity": config.sparsity})
        if should_cancel and should_cancel():
            raise CancelledError("cancelled by the user")
    out = {"baseline": baseline, "results": results}
    if with_sensitivity:
        report(0.9, "Sensitivity: pruning each layer alone")
        out["sensitivity"] = sensitivity(model, data, [0.3, 0.5, 0.7, 0.9], METHODS[method].structured,
                                         should_cancel=should_cancel)
        store.update_run(parent["id"], extra={**(parent.get("extra") or {}),
                                              f"sensitivity_{'channel' if METHODS[method].structured else 'weight'}":
                                              out["sensitivity"]})
    report(1.0, f"Stored {len(results)} pruned run(s)")
    return out

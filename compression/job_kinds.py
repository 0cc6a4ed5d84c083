"""The built-in job kinds. Each validates its params at submit time and runs in the worker."""
from __future__ import annotations

import time

from .baseline import get_baseline
from .data import list_datasets
from .errors import LabError, UnknownNameError
from .jobs import JobContext, register_job
from .models import parse_spec
from .train import TrainConfig

BASELINE_KEYS = ("dataset", "model", "epochs", "seed", "batch_size", "lr", "optimizer", "device", "data_dir", "download",
                 "latency_batch")


def _validate_baseline(params: dict) -> None:
    dataset = params.get("dataset", "digits")
    if dataset not in list_datasets():
        raise UnknownNameError("dataset", dataset, list_datasets())
    parse_spec(params.get("model", "lenet5"))
    TrainConfig(epochs=int(params.get("epochs", 10)), batch_size=int(params.get("batch_size", 32)),
                lr=float(params.get("lr", TrainConfig.lr)), optimizer=params.get("optimizer", "adam"))
    if int(params.get("latency_batch", 256)) < 1:
        raise LabError("The latency batch must be at least 1")


def baseline_args(params: dict) -> dict:
    return {k: params[k] for k in BASELINE_KEYS if params.get(k) is not None}


@register_job("train", validate=_validate_baseline)
def train_job(params: dict, ctx: JobContext) -> dict:
    _, run = get_baseline(**baseline_args(params), **ctx.backend_kwargs())
    return {"run_ids": [run["id"]]}


def _stage_kwargs(ctx: JobContext, progress) -> dict:
    """A demo stage reports into its slice of the demo's progress bar."""
    return {**ctx.backend_kwargs(), "progress": progress}


# The teaching demo: small defaults on digits, every lab that exists, in one go.
DEMO_BASELINES = ["lenet5", "mlp:hidden=64", "cnn:width=16"]


def _validate_demo(params: dict) -> None:
    _validate_baseline({**params, "model": DEMO_BASELINES[0]})


def _demo_baseline(spec: str):
    def stage(params, ctx, progress):
        _, run = get_baseline(**{**baseline_args(params), "model": spec}, **_stage_kwargs(ctx, progress))
        return [run["id"]]
    return stage


def _demo_prune(method: str, sparsities: list[float], **options):
    def stage(params, ctx, progress):
        from .prune_lab import run_prune_sweep
        out = run_prune_sweep(sparsities=sparsities, method=method, **options,
                              **{**baseline_args(params), "model": DEMO_BASELINES[0]}, **_stage_kwargs(ctx, progress))
        return [r["run_id"] for r in out["results"]]
    return stage


def demo_stages() -> list[tuple[str, callable]]:
    """Each lab adds its stage here when it lands."""
    return ([(f"baseline {spec}", _demo_baseline(spec)) for spec in DEMO_BASELINES] +
            [("prune global_l1", _demo_prune("global_l1", [0.5, 0.8, 0.9], finetune_epochs=6,
                                              schedule="iterative", steps=3)),  # gradual: one-shot 90% lost 19 pt
             ("prune channel_l1", _demo_prune("channel_l1", [0.5], finetune_epochs=4)),
             ("distill", _demo_distill()),
             ("quantize", _demo_quantize(["dynamic_int8", "static_int8"])),
             ("pipeline", _demo_pipeline("prune:channel_l1=0.5,finetune:3,quantize:static_int8"))])


def _demo_distill():
    def stage(params, ctx, progress):
        from .distill_lab import run_distill
        out = run_distill(teacher=DEMO_BASELINES[0], student="mlp:hidden=16", dataset=params.get("dataset", "digits"),
                          label_fraction=0.1, seeds=[0], epochs=30, epochs_teacher=int(params.get("epochs", 10)),
                          latency_batch=int(params.get("latency_batch", 256)), **_stage_kwargs(ctx, progress))
        return [r["run_id"] for r in out["student_plain"] + out["student_kd"]]
    return stage


def _demo_quantize(methods: list[str]):
    def stage(params, ctx, progress):
        from .quantize_lab import run_quantize
        out = run_quantize(methods=methods, **{**baseline_args(params), "model": DEMO_BASELINES[0]},
                           **_stage_kwargs(ctx, progress))
        return [r["run_id"] for r in out["results"]]
    return stage


def _demo_pipeline(steps: str):
    def stage(params, ctx, progress):
        from .pipeline import run_pipeline
        out = run_pipeline(steps=steps, **{**baseline_args(params), "model": "cnn:width=16"},
                           **_stage_kwargs(ctx, progress))
        return [r["run_id"] for r in out["stages"]]
    return stage


@register_job("demo", validate=_validate_demo)
def demo_job(params: dict, ctx: JobContext) -> dict:
    start = time.perf_counter()
    stages = demo_stages()
    run_ids = []
    for i, (label, stage) in enumerate(stages):
        lo, hi = i / len(stages), (i + 1) / len(stages)

        def scaled(info, lo=lo, hi=hi, label=label):
            ctx.progress({**info, "fraction": lo + (hi - lo) * info.get("fraction", 0.0),
                          "stage": info.get("stage", label), "message": f"[{label}] {info.get('message', '')}"})
        run_ids += stage(params, ctx, scaled)
    return {"run_ids": run_ids, "wall_s": time.perf_counter() - start}


PRUNE_KEYS = ("sparsities", "method", "finetune_epochs", "schedule", "steps", "layers", "skip_first_last",
              "round_to", "with_sensitivity", "from_run")


def _validate_prune(params: dict) -> None:
    from .prune_lab import validate_sweep
    if params.get("from_run") is None:
        _validate_baseline(params)
    validate_sweep(params.get("sparsities") or [], params.get("method", "global_l1"),
                   finetune_epochs=int(params.get("finetune_epochs", 5)), schedule=params.get("schedule", "oneshot"),
                   steps=int(params.get("steps", 1)), round_to=params.get("round_to"))


@register_job("prune", validate=_validate_prune)
def prune_job(params: dict, ctx: JobContext) -> dict:
    from .prune_lab import run_prune_sweep
    out = run_prune_sweep(**{k: params[k] for k in PRUNE_KEYS if params.get(k) is not None},
                          **baseline_args(params), **ctx.backend_kwargs())
    return {"run_ids": [r["run_id"] for r in out["results"]], "sensitivity": out.get("sensitivity")}


def _validate_technique_parent(params: dict) -> None:
    if params.get("from_run") is None:
        _validate_baseline(params)


def _validate_quantize(params: dict) -> None:
    from .quantize import availability
    _validate_technique_parent(params)
    if not params.get("methods"):
        raise LabError("Pick at least one quantization method")
    for method in params["methods"]:
        availability(method)
    if int(params.get("calibration_batches", 8)) <= 0:
        raise LabError(f"The calibration batch count must be at least 1, got {params.get('calibration_batches')}")


@register_job("quantize", validate=_validate_quantize)
def quantize_job(params: dict, ctx: JobContext) -> dict:
    from .quantize_lab import run_quantize
    out = run_quantize(methods=params["methods"], calibration_batches=int(params.get("calibration_batches", 8)),
                       from_run=params.get("from_run"), **baseline_args(params), **ctx.backend_kwargs())
    return {"run_ids": [r["run_id"] for r in out["results"]], "unavailable": out["unavailable"]}


def _validate_pipeline(params: dict) -> None:
    from .pipeline import parse_steps
    _validate_technique_parent(params)
    parse_steps(params.get("steps") or [])


@register_job("pipeline", validate=_validate_pipeline)
def pipeline_job(params: dict, ctx: JobContext) -> dict:
    from .pipeline import run_pipeline
    out = run_pipeline(steps=params["steps"], calibration_batches=int(params.get("calibration_batches", 8)),
                       from_run=params.get("from_run"), **baseline_args(params), **ctx.backend_kwargs())
    return {"run_ids": [r["run_id"] for r in out["stages"]]}


DISTILL_KEYS = ("teacher", "student", "dataset", "temperatures", "alpha", "label_fraction", "seeds", "epochs",
                "epochs_teacher", "device", "data_dir", "download", "latency_batch")


def _validate_distill(params: dict) -> None:
    from .distill import DistillConfig
    parse_spec(params.get("student", ""))
    teacher = params.get("teacher", "")
    if not (isinstance(teacher, int) or str(teacher).isdigit()):
        parse_spec(teacher)
    if not params.get("seeds") or not params.get("temperatures"):
        raise LabError("Give at least one seed and one temperature")
    for t in params["temperatures"]:
        DistillConfig(float(t), float(params.get("alpha", 0.9)), float(params.get("label_fraction", 1.0)),
                      int(params.get("epochs", 20)))


@register_job("distill", validate=_validate_distill)
def distill_job(params: dict, ctx: JobContext) -> dict:
    from .distill_lab import run_distill
    out = run_distill(**{k: params[k] for k in DISTILL_KEYS if params.get(k) is not None}, **ctx.backend_kwargs())
    return {"run_ids": [r["run_id"] for r in out["student_plain"] + out["student_kd"]],
            "gap_closed": out["gap_closed"], "sweep": out["sweep"]}


SEARCH_KEYS = ("dataset", "space", "choices", "strategy", "trials", "epochs", "objective", "max_params", "max_macs",
               "early_stop", "seed", "latency_batch")


def _search_config(params: dict):
    from .search import SearchConfig
    return SearchConfig(**{k: params[k] for k in SEARCH_KEYS if params.get(k) is not None})


@register_job("search", validate=lambda params: _search_config(params))
def search_job(params: dict, ctx: JobContext) -> dict:
    from .search import run_search
    out = run_search(_search_config(params), ctx.store, params.get("study"), progress=ctx.progress,
                     should_cancel=ctx.should_cancel, job_id=ctx.job_id)
    return {"study": out["study"], "pareto": out["pareto"], "hypervolume": out["hypervolume"],
            "zoo_hypervolume": out["zoo_hypervolume"], "run_ids": [t["run_id"] for t in out["trials"] if t.get("run_id")]}

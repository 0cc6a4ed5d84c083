"""The CLI's verbs. Each adds its arguments and a handler that calls the backend."""
from __future__ import annotations

import sys

from .baseline import as_record, get_baseline
from .cli import ProgressBar, baseline_kwargs, common_args, emit, output_args, verb
from .errors import LabError
from .store import RunStore


@verb("train", "train (or load from the cache) a baseline, measure it and store it")
def _train(p):
    common_args(p)
    output_args(p)

    def handler(args):
        with ProgressBar(not args.quiet, "train") as bar:
            _, run = get_baseline(**baseline_kwargs(args), store=RunStore(args.db), progress=bar)
        emit(args, as_record(run))
    p.set_defaults(handler=handler)


@verb("runs", "list, show or delete stored runs")
def _runs(p):
    p.add_argument("action", choices=["list", "show", "delete"])
    p.add_argument("ids", nargs="*", type=int)
    p.add_argument("--kind")
    p.add_argument("--dataset")
    output_args(p)

    def handler(args):
        store = RunStore(args.db)
        if args.action == "list":
            records = [as_record(r) for r in store.list_runs(kind=args.kind, dataset=args.dataset)]
            emit(args, records, records)
        elif args.action == "show":
            records = [as_record(store.get_run(i)) for i in args.ids]
            emit(args, records[0] if len(records) == 1 else records, records)
        else:
            deleted = store.delete_runs(args.ids)
            emit(args, {"deleted": deleted}, [{"deleted": deleted}])
    p.set_defaults(handler=handler)


@verb("registry", "list the registered data sets and models")
def _registry(p):
    output_args(p)

    def handler(args):
        from . import data, models
        payload = {"datasets": data.DESCRIPTIONS,
                   "models": {n: {"description": models.DESCRIPTIONS[n], "args": models.model_args(n)}
                              for n in models.list_models()}}
        rows = ([{"kind": "dataset", "name": k, "about": v} for k, v in data.DESCRIPTIONS.items()] +
                [{"kind": "model", "name": k, "about": v["description"]} for k, v in payload["models"].items()])
        emit(args, payload, rows)
    p.set_defaults(handler=handler)


@verb("jobs", "the background job queue: list jobs, run a worker, submit or cancel a job")
def _jobs(p):
    p.add_argument("action", choices=["list", "work", "submit", "cancel"])
    p.add_argument("args", nargs="*", help="submit: KIND key=value ...; cancel: JOB_ID")
    p.add_argument("--once", action="store_true", help="work: exit when the queue is empty")
    output_args(p)

    def handler(args):
        import logging

        from . import jobs
        from .models import _parse_value
        store = RunStore(args.db)
        if args.action == "work":
            logging.basicConfig(level=logging.INFO)
            count = jobs.worker_loop(store, idle_exit_s=0 if args.once else jobs.IDLE_EXIT_S, once=args.once)
            emit(args, {"jobs_run": count}, [{"jobs_run": count}])
        elif args.action == "submit":
            if not args.args:
                raise LabError(f"jobs submit needs a kind. Known: {', '.join(jobs.job_kinds())}")
            params = dict(item.split("=", 1) for item in args.args[1:])
            params = {k: (v if k in ("model", "dataset", "data_dir", "device") else _parse_value(v))
                      for k, v in params.items()}
            job_id = jobs.submit(store, args.args[0], params)
            emit(args, {"job_id": job_id}, [{"job_id": job_id}])
        elif args.action == "cancel":
            for job_id in args.args:
                store.request_cancel(int(job_id))
            emit(args, {"cancelled": args.args}, [{"cancel requested": ", ".join(args.args)}])
        else:
            jobs.recover_interrupted(store)
            rows = [{k: j[k] for k in ("id", "kind", "status", "progress", "message", "error")}
                    for j in store.list_jobs()]
            emit(args, rows, rows)
    p.set_defaults(handler=handler)


@verb("prune", "prune a baseline (or any run) to one or more sparsities, fine-tune, measure and store each")
def _prune(p):
    from .prune import METHODS, SCHEDULES
    common_args(p, from_run=True)
    p.add_argument("--method", default="global_l1", choices=list(METHODS))
    p.add_argument("--sparsity", type=float, nargs="+", required=True)
    p.add_argument("--finetune-epochs", type=int, default=5)
    p.add_argument("--schedule", default="oneshot", choices=list(SCHEDULES))
    p.add_argument("--steps", type=int, default=1, help="pruning steps for the iterative schedule")
    p.add_argument("--layers", nargs="+", default=None, help="module names to prune (default: all conv/linear)")
    p.add_argument("--skip-first-last", action="store_true")
    p.add_argument("--round-to", type=int, default=None, choices=[8, 16])
    p.add_argument("--sensitivity", action="store_true", help="also prune each layer alone at 30-90%%")
    output_args(p)

    def handler(args):
        from .prune_lab import run_prune_sweep
        with ProgressBar(not args.quiet, "prune") as bar:
            out = run_prune_sweep(sparsities=args.sparsity, method=args.method, finetune_epochs=args.finetune_epochs,
                                  schedule=args.schedule, steps=args.steps, layers=args.layers,
                                  skip_first_last=args.skip_first_last, round_to=args.round_to,
                                  with_sensitivity=args.sensitivity, from_run=args.from_run,
                                  store=RunStore(args.db), progress=bar, **baseline_kwargs(args))
        emit(args, out, [out["baseline"]] + out["results"])
    p.set_defaults(handler=handler)


@verb("quantize", "quantize a baseline (or any run) with one or more methods; measure and store each")
def _quantize(p):
    from .quantize import METHODS
    common_args(p, from_run=True)
    p.add_argument("--method", nargs="+", required=True, choices=list(METHODS))
    p.add_argument("--calibration-batches", type=int, default=8)
    output_args(p)

    def handler(args):
        from .quantize_lab import run_quantize
        with ProgressBar(not args.quiet, "quantize") as bar:
            out = run_quantize(methods=args.method, calibration_batches=args.calibration_batches,
                               from_run=args.from_run, store=RunStore(args.db), progress=bar, **baseline_kwargs(args))
        for item in out["unavailable"]:
            print(f"note: {item['method']} unavailable: {item['reason']}", file=sys.stderr)
        emit(args, out, [out["baseline"]] + out["results"])
    p.set_defaults(handler=handler)


@verb("pipeline", "chain techniques, e.g. --steps prune:channel_l1=0.5,finetune:5,quantize:static_int8")
def _pipeline(p):
    common_args(p, from_run=True)
    p.add_argument("--steps", required=True)
    p.add_argument("--calibration-batches", type=int, default=8)
    output_args(p)

    def handler(args):
        from .pipeline import run_pipeline
        with ProgressBar(not args.quiet, "pipeline") as bar:
            out = run_pipeline(steps=args.steps, calibration_batches=args.calibration_batches, from_run=args.from_run,
                               store=RunStore(args.db), progress=bar, **baseline_kwargs(args))
        emit(args, out, [out["baseline"]] + out["stages"])
    p.set_defaults(handler=handler)


@verb("export", "export a stored run's model as a state dict, a loadable module, or ONNX")
def _export(p):
    p.add_argument("run_id", type=int)
    p.add_argument("--format", default="state_dict", choices=["state_dict", "module", "onnx"])
    p.add_argument("--out", required=True, help="output file")
    output_args(p)

    def handler(args):
        from .export import export_run
        info = export_run(RunStore(args.db), args.run_id, args.format, args.out)
        emit(args, info, [info])
    p.set_defaults(handler=handler)


@verb("distill", "distil a student from a teacher, next to the same student trained without it, over seeds")
def _distill(p):
    p.add_argument("--dataset", default="digits")
    p.add_argument("--teacher", required=True, help="a model spec (trains or loads its baseline) or a run id")
    p.add_argument("--student", required=True, help="a model spec, e.g. mlp:hidden=16")
    p.add_argument("--temperature", type=float, nargs="+", default=[4.0], help="one or more: a sweep")
    p.add_argument("--alpha", type=float, default=0.9)
    p.add_argument("--label-fraction", type=float, default=1.0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=20, help="student epochs")
    p.add_argument("--teacher-epochs", type=int, default=10)
    p.add_argument("--device", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--download", action="store_true")
    p.add_argument("--latency-batch", type=int, default=256)
    output_args(p)

    def handler(args):
        from .distill_lab import run_distill
        with ProgressBar(not args.quiet, "distill") as bar:
            out = run_distill(teacher=args.teacher, student=args.student, dataset=args.dataset,
                              temperatures=args.temperature, alpha=args.alpha, label_fraction=args.label_fraction,
                              seeds=args.seeds, epochs=args.epochs, epochs_teacher=args.teacher_epochs,
                              device=args.device, data_dir=args.data_dir, download=args.download,
                              latency_batch=args.latency_batch, store=RunStore(args.db), progress=bar)
        emit(args, out, [out["teacher"]] + out["student_plain"] + out["student_kd"])
    p.set_defaults(handler=handler)


def _search_config(args):
    from .search import SearchConfig
    return SearchConfig(dataset=args.dataset, space=args.space, strategy=args.strategy, trials=args.trials,
                        epochs=args.epochs, objective=args.objective, max_params=args.max_params,
                        max_macs=args.max_macs, early_stop=args.early_stop, seed=args.seed,
                        latency_batch=args.latency_batch)


@verb("search", "a small architecture search on Optuna: accuracy vs a cost, every trial a stored run")
def _search(p):
    from .search import OBJECTIVES, STRATEGIES
    p.add_argument("--dataset", default="digits")
    p.add_argument("--space", default="cnn", choices=["cnn", "mlp"])
    p.add_argument("--strategy", default="random", choices=list(STRATEGIES))
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=3, help="epochs per trial (low fidelity)")
    p.add_argument("--objective", default="params", choices=list(OBJECTIVES))
    p.add_argument("--max-params", type=int, default=None)
    p.add_argument("--max-macs", type=int, default=None)
    p.add_argument("--early-stop", action="store_true", help="Optuna's median pruner (objective none only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latency-batch", type=int, default=64)
    p.add_argument("--study", default=None, help="study name (default: generated); an existing one resumes")
    output_args(p)

    def handler(args):
        from .search import run_search
        with ProgressBar(not args.quiet, "search") as bar:
            out = run_search(_search_config(args), RunStore(args.db), args.study, progress=bar)
        emit(args, out, [t for t in out["trials"] if "accuracy" in t])
    p.set_defaults(handler=handler)


@verb("worker", "join a running search: run its trials from this process (or machine) until the budget is used")
def _worker(p):
    p.add_argument("--study", required=True)
    output_args(p)

    def handler(args):
        from .search import load_config, work
        store = RunStore(args.db)
        study, config = load_config(args.study, store)
        work(study, config, store, progress=ProgressBar(not args.quiet, "worker"))
        mine = len(study.get_trials(deepcopy=False))
        emit(args, {"study": args.study, "trials_in_study": mine}, [{"study": args.study, "trials": mine}])
    p.set_defaults(handler=handler)

"""The CLI's verbs. Each adds its arguments and a handler that calls the backend."""
from __future__ import annotations

from .baseline import as_record, get_baseline
from .cli import ProgressBar, baseline_kwargs, common_args, emit, output_args, verb
from .store import RunStore


@verb("train", "train (or load from the cache) a baseline, measure it and store it")
def _train(p):
    common_args(p)
    output_args(p)

    def handler(args):
        bar = ProgressBar(not args.quiet, "train")
        try:
            _, run = get_baseline(**baseline_kwargs(args), store=RunStore(args.db), progress=bar)
        finally:
            bar.close()
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

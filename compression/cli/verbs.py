"""The CLI's verbs: one per lab, made from the lab catalogue and its config, plus the store's verbs."""
from __future__ import annotations

import sys

from ..core.data import DATASETS
from ..core.models import MODELS, model_args
from ..errors import LabError
from ..labs.catalog import LABS, Lab
from ..labs.context import RunContext
from ..labs.records import as_record
from ..store import RunStore, worker_name
from .base import ProgressBar, add_config_arguments, config_from_args, emit, output_args, verb

LAB_HELP = {
    "plan": "name a target (--target latency=0.4 or size=0.025): the most accurate model that meets it, verified",
    "train": "train (or load from the cache) a baseline, measure it and store it",
    "prune": "prune a baseline (or any run) to one or more sparsities, fine-tune, measure and store each",
    "quantize": "quantize a baseline (or any run) with one or more methods; measure and store each",
    "pipeline": "chain techniques, e.g. --steps prune:channel_l1=0.5,finetune:5,quantize:static_int8",
    "distill": "distil a student from a teacher, next to the same student trained without it, over seeds",
    "search": "a small architecture search on Optuna: accuracy vs a cost, every trial a stored run",
}


def _lab_verb(name: str, lab: Lab):
    def add(p):
        add_config_arguments(p, lab.config)
        output_args(p)

        def handler(args):
            config = config_from_args(lab.config, args)
            with ProgressBar(not args.quiet, name) as bar:
                out = lab.run(config, RunContext(store=RunStore(args.db), progress=bar))
            for item in out.get("unavailable", []):
                print(f"note: {item['method']} unavailable: {item['reason']}", file=sys.stderr)
            emit(args, out, lab.rows(out))
        p.set_defaults(handler=handler)
    verb(name, LAB_HELP[name])(add)


for _name in LAB_HELP:
    _lab_verb(_name, LABS[_name])


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
            for run_id in args.ids:
                store.get_run(run_id)  # an unknown id is an error, before anything is deleted
            deleted = store.delete_runs(args.ids)
            emit(args, {"deleted": deleted}, [{"deleted": deleted}])
    p.set_defaults(handler=handler)


@verb("registry", "list the registered data sets and models")
def _registry(p):
    output_args(p)

    def handler(args):
        payload = {"datasets": {**{n: DATASETS.about(n) for n in DATASETS},
                                **{f"{p}PATH": DATASETS.about(p) for p in DATASETS.families()}},
                   "models": {n: {"description": MODELS.about(n), "args": model_args(n)} for n in MODELS}}
        rows = ([{"kind": "dataset", "name": k, "about": v} for k, v in payload["datasets"].items()] +
                [{"kind": "model", "name": k, "about": v["description"]} for k, v in payload["models"].items()])
        emit(args, payload, rows)
    p.set_defaults(handler=handler)


@verb("export", "export a stored run's model as a state dict, a loadable module, ONNX, or (hf: runs) a Hugging Face "
                "folder that AutoModelForCausalLM.from_pretrained loads")
def _export(p):
    from ..labs.io.export import FORMATS
    p.add_argument("run_id", type=int)
    p.add_argument("--format", default="state_dict", choices=FORMATS.names())
    p.add_argument("--out", required=True, help="output file (--format hf: an empty or new folder)")
    output_args(p)

    def handler(args):
        from ..labs.io.export import export_run
        info = export_run(RunStore(args.db), args.run_id, args.format, args.out)
        emit(args, info, [info])
    p.set_defaults(handler=handler)


@verb("import-data", "unpack a zip of an image folder (class subfolders) into the lab as a data set")
def _import_data(p):
    p.add_argument("zip", help="a .zip of class subfolders of images, or of train/ val/ test/ holding them")
    output_args(p)

    def handler(args):
        from pathlib import Path

        from ..core.data import describe_image_folder
        from ..labs.io.data_upload import check_zip_size, import_image_zip
        path = Path(args.zip)
        if not path.is_file():
            raise LabError(f"{args.zip} is not a file.")
        check_zip_size(path.stat().st_size, path.name)  # before reading it all into memory
        with ProgressBar(not args.quiet, "import-data") as bar:
            name = import_image_zip(path.read_bytes(), path.name, RunContext(progress=bar))
        described = describe_image_folder(name)  # from the listing: import_image_zip has decoded every image
        info = {"dataset": name, "num_classes": len(described["classes"]), **described}
        emit(args, info, [{"dataset": name, "classes": info["num_classes"], "train": info["train"],
                           "val": info["val"], "test": info["test"]}])
    p.set_defaults(handler=handler)


WORKER_DEVICES = ("cpu", "cuda")
QUEUE_ONLY = ("kinds", "device", "once")  # worker flags that a --study search does not take


@verb("worker", "serve the shared job queue from this process (or machine): jobs of any kind, or of --kinds; with "
                "--study, join a running search and run its trials until the budget is used")
def _worker(p):
    p.add_argument("--study", default=None, help="join this search study instead of serving the job queue")
    p.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                   help="with --study: wait this long for the study to be created (workers may start before the "
                        "search); else: with nothing queued, wait this long for a job, then exit (default: serve "
                        "until stopped; with --once: do not wait)")
    p.add_argument("--device", default=None, choices=WORKER_DEVICES,
                   help="cuda: also take jobs that ask for a GPU (default: cpu, which never takes them)")
    p.add_argument("--kinds", default=None, metavar="KIND,KIND",
                   help="take only these job kinds, e.g. prune,distill (default: any)")
    p.add_argument("--once", action="store_true",
                   help="exit as soon as nothing is queued for this worker (after --wait for the first job, if given)")
    output_args(p)

    def handler(args):
        if not 0 <= (args.wait or 0) <= 86_400:
            raise LabError(f"--wait must be between 0 and 86400 seconds, got {args.wait:g}")
        say = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
        (_join_study if args.study else _serve_queue)(args, RunStore(args.db), say)
    p.set_defaults(handler=handler)


def _join_study(args, store: RunStore, say) -> None:
    from ..labs.search import finished_trials, wait_for_study, work
    given = [f"--{name}" for name in QUEUE_ONLY if getattr(args, name) not in (None, False)]
    if given:
        raise LabError(f"{', '.join(given)}: for the job queue; a --study worker runs that search's trials as its "
                       "config says")
    from ..store.artifacts import check_store
    check_store()
    study, config = wait_for_study(args.study, store, args.wait or 0.0, say=say)
    work(study, config, RunContext(store=store, progress=ProgressBar(not args.quiet, "worker")))
    done = finished_trials(study)
    emit(args, {"study": args.study, "trials_in_study": len(study.get_trials(deepcopy=False)),
                "finished_trials": done}, [{"study": args.study, "finished trials": done}])


def _serve_queue(args, store: RunStore, say) -> None:
    """Jobs of every kind from the shared database, timed on this machine; model files to the artifact store."""
    import logging

    from .. import jobs
    from ..paths import lab_home
    from ..store.artifacts import check_store
    serves = jobs.Serves(kinds=_worker_kinds(args.kinds), cuda=_worker_cuda(args.device or "cpu"))
    check_store()
    logging.basicConfig(filename=lab_home() / "worker.log", level=logging.INFO)  # a crashed job's traceback
    idle_exit_s = args.wait if args.wait is not None else (0.0 if args.once else None)
    count = jobs.worker_loop(store, idle_exit_s=idle_exit_s, once=args.once, serves=serves, say=say,
                             refuse_if_busy=True)
    payload = {"jobs_run": count, "worker": worker_name(), "kinds": ", ".join(serves.kinds or ("any",)),
               "device": "cuda" if serves.cuda else "cpu"}
    emit(args, payload, [payload])


def _worker_kinds(text: str | None) -> tuple[str, ...] | None:
    """--kinds prune,distill: each one a registered job kind (an unknown one is an error naming the known)."""
    if text is None:
        return None
    from ..jobs import JOB_KINDS
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    if not kinds:
        raise LabError(f"--kinds is empty. Known: {', '.join(JOB_KINDS.names())}")
    for kind in kinds:
        JOB_KINDS.get(kind)  # "Unknown job kind 'x'. Known: ..."
    return kinds


def _worker_cuda(device: str) -> bool:
    """Whether this worker takes CUDA jobs: only when asked, and only on a machine that has a GPU."""
    import torch
    if device == "cuda" and not torch.cuda.is_available():
        raise LabError("--device cuda: no CUDA device is available on this machine; start the worker with "
                       "--device cpu, or on a machine with a GPU")
    return device == "cuda"


@verb("speedup", "time two stored runs together (interleaved A/B rounds): how many times faster B is than A")
def _speedup(p):
    from ..labs.configs import RetimeConfig
    p.add_argument("run_a", type=int, help="the reference run (A)")
    p.add_argument("run_b", type=int, help="the candidate run (B)")
    add_config_arguments(p, RetimeConfig)
    output_args(p)

    def handler(args):
        from ..labs.speed import retime
        config = RetimeConfig.from_dict({**{k: getattr(args, k) for k in RetimeConfig.field_names()
                                            if hasattr(args, k)}, "run_a": args.run_a, "run_b": args.run_b})
        out = retime(RunStore(args.db), config)
        emit(args, out, [{k: out[k] for k in ("run_a", "run_b", "speedup", "ci95", "rounds", "noisy", "loaded",
                                               "imprecise", "load", "processes", "machine", "device", "batch_size",
                                               "mode", "relation")}])
    p.set_defaults(handler=handler)


def _ci(pair, fmt: str) -> str:
    return f"[{format(pair[0], fmt)}, {format(pair[1], fmt)}]"


# the diff's table row, by the kind of runs compared (labs.diff.COMPARISONS)
DIFF_ROWS = {
    "image": lambda out: {"flip rate": f"{out['flip_rate']:.2%}", "newly wrong": out["newly_wrong"],
                          "newly right": out["newly_right"], "ECE A": f"{out['ece_a']:.4f}",
                          "ECE B": f"{out['ece_b']:.4f}",
                          "most hurt": ", ".join(c["name"] for c in out["most_hurt_classes"]) or "-"},
    "text": lambda out: {"next-token flip rate": f"{out['flip_rate']:.2%} {_ci(out['flip_rate_ci95'], '.2%')}",
                         "loss change (nats/token)":
                             f"{out['loss_change']:+.4f} {_ci(out['loss_change_ci95'], '+.4f')}",
                         "newly wrong": out["newly_wrong"], "newly right": out["newly_right"],
                         "positions": out["positions"]},
}


@verb("diff", "what compression changed: flipped test answers (next tokens for language models), per-class deltas "
              "with CIs, calibration (ECE); side-by-side completions for language models")
def _diff(p):
    p.add_argument("run_a", type=int, help="the reference run (A), e.g. the parent")
    p.add_argument("run_b", type=int, help="the compressed run (B)")
    output_args(p)

    def handler(args):
        from ..labs.diff import diff_runs
        out = diff_runs(RunStore(args.db), args.run_a, args.run_b)
        emit(args, out, [DIFF_ROWS[out["kind"]](out)])
        if not args.json and out["kind"] == "text":  # the completions say more than any figure: print them too
            for c in out["completions"]:
                print(f"\n{c['prompt']!r}\n  A #{out['run_a']}: {c['a']!r}\n  B #{out['run_b']}: {c['b']!r}")
    p.set_defaults(handler=handler)


@verb("generate", "continue a prompt with a stored language-model run: greedy, or sampled with a seed")
def _generate(p):
    p.add_argument("run", type=int, help="a stored language-model run")
    p.add_argument("--prompt", default="", help="the text to continue")
    p.add_argument("--tokens", type=int, default=80, help="new tokens to generate")
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy; above 0: sampled")
    p.add_argument("--seed", type=int, default=0, help="the sampling seed")
    output_args(p)

    def handler(args):
        from ..labs.diff import generate_from_run
        out = generate_from_run(RunStore(args.db), args.run, args.prompt, args.tokens, args.temperature, args.seed)
        if args.json:
            emit(args, out)
        else:
            print(args.prompt + out["completion"])
    p.set_defaults(handler=handler)

"""`jobs`: the background queue from the command line. `jobs submit KIND` speaks the verb's own language (`jobs submit
prune --from 3 --sparsity 0.5 0.7`: the prune verb's flags and checks, from the same parser), takes `--cluster URL`
(else $COMPRESSION_LAB_CLUSTER) for where the job runs, and still reads the older `key=value` pairs."""
from __future__ import annotations

import argparse
import json

from ..core.models import parse_value
from ..errors import LabError
from ..store import RunStore
from .base import VERBS, Parser, add_config_arguments, emit, global_options, output_args, verb

TEXT_PARAMS = ("model", "teacher", "student", "steps", "data_dir", "device")  # key=value: never parsed as numbers


def _job_params(items: list[str]) -> dict:
    """The older form: key=value pairs, a list written 0.5-0.7 (or as JSON, [0.5, 0.7])."""
    params = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise LabError(f"Bad job parameter '{item}': write key=value")
        params[key] = value if key in TEXT_PARAMS else _json_list(value) or parse_value(value)
    return params


def _json_list(value: str) -> list | None:
    """[0.5, 0.7] as a list; anything else None (then parse_value reads it, or the config says what is wrong)."""
    if not (value.startswith("[") and value.endswith("]")):
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, list) and parsed else None


def placement_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster", default=None, metavar="URL",
                   help="run the job on this cluster: ray://HOST:PORT, the Ray head's client server (default: "
                        "$COMPRESSION_LAB_CLUSTER, else this machine's worker)")
    p.add_argument("--cpus", type=int, default=None, metavar="N",
                   help="CPUs the job takes on a cluster, and torch threads it uses (default: 1, or "
                        "$COMPRESSION_LAB_TASK_CPUS)")


def _kind_parser(kind: str) -> Parser:
    """The verb of that name's own parser (its flags, positionals and checks); for a kind without a verb (demo,
    upload, import_data), flags made from its lab's config."""
    from ..labs.catalog import LABS
    p = Parser(prog=f"python -m compression jobs submit {kind}")
    if kind in VERBS.names():
        VERBS.get(kind)(p)
    else:
        add_config_arguments(p, LABS.get(kind).config)
        output_args(p)
    placement_args(p)
    return p


def _old_form(rest: list[str]) -> bool:
    """key=value pairs, not flags: the first word is neither a flag nor a run id (speedup's positionals)."""
    return bool(rest) and not rest[0].startswith("-") and not rest[0].isdigit()


def _submit(words: list[str], before: list[str]) -> None:
    """`words`: KIND and what follows it; `before`: the flags given before KIND."""
    from .. import jobs
    from ..labs.catalog import LABS
    if not words or words[0].startswith("-"):
        raise LabError(f"jobs submit needs a kind. Known: {', '.join(jobs.job_kinds())}")
    kind, rest = words[0], words[1:] + before
    jobs.JOB_KINDS.get(kind)  # "Unknown job kind 'x'. Known: ..."
    if _old_form(rest) or kind not in LABS.names():
        flags = Parser(prog=f"python -m compression jobs submit {kind}")
        output_args(flags)
        placement_args(flags)
        args, items = flags.parse_known_args(rest)
        params = _job_params(items)
    else:
        args = _kind_parser(kind).parse_args(rest)
        params = {name: getattr(args, name) for name in LABS.get(kind).config.field_names() if hasattr(args, name)}
    if args.cpus is not None and not 1 <= args.cpus <= 1024:
        raise LabError(f"--cpus must be between 1 and 1024, got {args.cpus}")
    with global_options(args):  # --artifacts: the store the job's model files go to
        job_id = jobs.submit(RunStore(args.db), kind, params, cluster=args.cluster, cpus=args.cpus)
    emit(args, {"job_id": job_id}, [{"job_id": job_id}])


def _given_before_kind(args: argparse.Namespace) -> list[str]:
    """`jobs submit --json prune ...`: the flags argparse took before KIND, as words for the kind's parser."""
    words = [f"--{name}" for name in ("json", "quiet") if getattr(args, name)]
    for name in ("db", "artifacts", "cluster", "cpus"):
        if getattr(args, name) is not None:
            words += [f"--{name}", str(getattr(args, name))]
    return words


@verb("jobs", "the background job queue: list jobs, run a worker, submit (here or to a Ray cluster) or cancel a job")
def _jobs(p):
    actions = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    listing = actions.add_parser("list", help="the newest jobs, their status and machine")
    work = actions.add_parser("work", help="run this lab folder's worker")
    work.add_argument("--once", action="store_true", help="exit when the queue is empty")
    submit = actions.add_parser("submit", help="queue a job: KIND and that verb's flags, e.g. prune --from 3 "
                                               "--sparsity 0.5 0.7 [--cluster ray://HOST:PORT]", add_help=False)
    submit.add_argument("args", nargs=argparse.REMAINDER, help="KIND and its flags (or key=value pairs)")
    output_args(submit)  # given before KIND (argparse reads them there); after KIND the kind's parser reads them
    placement_args(submit)
    cancel = actions.add_parser("cancel", help="cancel jobs: a queued one at once, a running one at its next "
                                               "progress check (on a cluster, ray.cancel after that)")
    cancel.add_argument("ids", nargs="*", help="JOB_ID ...")
    for sub in (listing, work, cancel):
        output_args(sub)

    def handler(args):
        import logging

        from .. import jobs
        if args.action == "submit":
            return _submit(args.args, _given_before_kind(args))
        store = RunStore(args.db)
        if args.action == "work":
            logging.basicConfig(level=logging.INFO)
            count = jobs.worker_loop(store, idle_exit_s=0 if args.once else jobs.queue.IDLE_EXIT_S, once=args.once)
            emit(args, {"jobs_run": count}, [{"jobs_run": count}])
        elif args.action == "cancel":
            if not args.ids:
                raise LabError("jobs cancel needs a job id")
            for job_id in args.ids:
                if not job_id.isdigit():
                    raise LabError(f"'{job_id}' is not a job id")
                store.request_cancel(int(job_id))  # a cluster's job runner sees it in the row: no connection here
            emit(args, {"cancelled": args.ids}, [{"cancel requested": ", ".join(args.ids)}])
        else:
            jobs.recover_interrupted(store)
            rows = [{k: j[k] for k in ("id", "kind", "status", "progress", "message", "error", "worker")}
                    for j in store.list_jobs()]
            emit(args, rows, rows)
    p.set_defaults(handler=handler)

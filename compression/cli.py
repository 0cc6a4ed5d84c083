"""`python -m compression <verb> ... [--json]`: the headless face of the same backend the UI uses.

With --json, stdout holds one JSON document and nothing else; progress goes to stderr.
Bad input exits 2 with a one-line message (set COMPRESSION_LAB_DEBUG=1 for tracebacks).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

from .errors import LabError
from .train import TrainConfig

VERBS = {}  # name -> (add_arguments, handler); filled by @verb


def verb(name: str, help: str):
    def wrap(fn):
        VERBS[name] = (help, fn)
        return fn
    return wrap


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + error
        raise LabError(f"{self.prog}: {message}")


class ProgressBar:
    """A tqdm bar on stderr fed by the backend's progress(info) callback."""

    def __init__(self, enabled: bool, desc: str):
        self.enabled, self.desc, self.bar = enabled, desc, None

    def __call__(self, info: dict):
        if self.enabled and self.bar is None:  # created on first use: an early error prints no bar
            from tqdm import tqdm
            self.bar = tqdm(total=100, desc=self.desc, file=sys.stderr, leave=False,
                            bar_format="{desc} {bar} {percentage:3.0f}% [{elapsed}<{remaining}] {postfix}")
        if self.bar is not None:
            self.bar.n = round(100 * info.get("fraction", 0))
            self.bar.set_postfix_str(info.get("message", "")[:60], refresh=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def common_args(p: argparse.ArgumentParser, model_default: str | None = "lenet5", from_run: bool = False):
    """The arguments that pick a cached baseline, shared by train and every technique."""
    if from_run:
        p.add_argument("--from", dest="from_run", type=int, default=None, help="start from this stored run id")
    p.add_argument("--dataset", default="digits")
    if model_default is not None:
        p.add_argument("--model", default=model_default, help="spec: NAME or NAME:key=value,...")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--optimizer", default=TrainConfig.optimizer, choices=["adam", "sgd"])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--download", action="store_true", help="download mnist/fashion_mnist/cifar10 if missing")
    p.add_argument("--latency-batch", type=int, default=256)


def output_args(p: argparse.ArgumentParser):
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument("--db", default=None, help="database URL (default: sqlite file in the lab folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")


def baseline_kwargs(args) -> dict:
    return dict(dataset=args.dataset, model=args.model, epochs=args.epochs, seed=args.seed,
                batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer, device=args.device, data_dir=args.data_dir,
                download=args.download, latency_batch=args.latency_batch)


def _clean(obj):
    """JSON has no NaN/Inf: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def emit(args, payload, table_rows: list[dict] | None = None):
    if args.json:
        json.dump(_clean(payload), sys.stdout, default=str)
        sys.stdout.write("\n")
        return
    from .report_text import format_table
    print(format_table(table_rows if table_rows is not None else [payload]))


def build_parser() -> argparse.ArgumentParser:
    from . import cli_verbs  # noqa: F401  (registers the verbs)

    parser = _Parser(prog="python -m compression", description="Compression Lab, headless.")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for name, (help_text, fn) in VERBS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        fn(p)  # each verb adds its arguments and sets `handler`
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args) or 0
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # never a traceback for the user; the debug switch shows it
        if os.environ.get("COMPRESSION_LAB_DEBUG"):
            raise
        print(f"error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", file=sys.stderr)
        return 1

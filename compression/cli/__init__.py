"""`python -m compression <verb> ... [--json]`: the headless face of the same backend the UI uses."""
from __future__ import annotations

import os
import sys

from ..errors import LabError
from . import queue_verbs, verbs  # noqa: F401  (register the verbs)
from .base import VERBS, Parser, global_options


def build_parser() -> Parser:
    parser = Parser(prog="python -m compression", description="Compression Lab, headless.")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)
    for name, add in VERBS.items():
        p = sub.add_parser(name, help=VERBS.about(name), description=VERBS.about(name))
        add(p)  # each verb adds its arguments and sets `handler`
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        with global_options(args):
            return args.handler(args) or 0
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug, not bad input: one line for the user; the debug switch shows the traceback
        if os.environ.get("COMPRESSION_LAB_DEBUG"):
            raise
        first = (str(err).strip().splitlines() or ["no message"])[0][:200]
        print(f"error: internal error ({first}); run again with COMPRESSION_LAB_DEBUG=1 for details",
              file=sys.stderr)
        return 1

"""`ctscribe` entry point: builds the parser from the command modules and maps errors.

Each command module exposes `register(subparsers)` and keeps its heavy imports (torch,
pydicom, fastapi) inside its handler, so `ctscribe inspect` starts fast. Every expected
failure is a `CtscribeError`: exit code 2 and one line `error: <code>: <message>` on stderr
(with `--json`, `{"error": {...}}` on stdout too), never a traceback. Anything else is a
bug of ours, not of the input: exit code 1 and one line `error: internal: ...`; the
traceback is printed only with CTSCRIBE_DEBUG=1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback

from app.version import package_version
from ctscribe.errors import CtscribeError

# Command modules, in the order `ctscribe --help` lists them. A module missing from a
# partial install is skipped rather than breaking the other commands.
COMMAND_MODULES = [
    "app.cli.inspect_cmd",
    "app.cli.synth_cmd",
    "app.cli.report_cmd",
    "app.cli.demo_cmd",
    "app.cli.serve_cmd",
    "app.cli.train_cmd",
    "app.cli.eval_cmd",
]

EXIT_USAGE = 2
EXIT_INTERNAL = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctscribe", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=package_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(subparsers)
    return parser


def _show_progress_notes() -> None:
    """The model's one-line notes (e.g. the one-time GGUF conversion) on stderr, as plain lines
    (`serve` logs them with everything else instead); frameworks' loggers are left alone."""
    import logging

    logger = logging.getLogger("ctscribe.model")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        _show_progress_notes()
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except CtscribeError as err:
        if getattr(args, "json", False):
            print(json.dumps({"error": err.to_dict()}))
        print(f"error: {err.code.value}: {err.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence of a CLI
        if os.environ.get("CTSCRIBE_DEBUG"):
            traceback.print_exc()
        detail = " ".join(str(exc).split())[:500]
        print(f"error: internal: {type(exc).__name__}: {detail} (CTSCRIBE_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())

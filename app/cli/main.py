"""`ctscribe` entry point: builds the parser from the command modules and maps errors.

Each command module exposes `register(subparsers)` and keeps its heavy imports (torch,
pydicom, fastapi) inside its handler, so `ctscribe inspect` starts fast. Every expected
failure is a `CtscribeError`: exit code 2 and one line `error: <code>: <message>` on stderr
(with `--json`, `{"error": {...}}` on stdout too), never a traceback. Anything else is a
bug of ours, not of the input: exit code 1 and one line `error: internal: ...`; the
traceback is printed only with CTSCRIBE_DEBUG=1.

A command that needs a module of an optional extra which is not installed (app/cli/extras.py)
is still listed by `ctscribe --help`, and running it is one `invalid_request` line naming
the module and the extra to install. A command module that fails to import for any other
reason is a bug: it is reported (exit code 1), never skipped.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback

from app.cli.extras import missing_extra
from app.version import package_version
from ctscribe.errors import CtscribeError

COMMAND_MODULES = {
    "app.cli.inspect_cmd": ("inspect",),
    "app.cli.synth_cmd": ("synth",),
    "app.cli.report_cmd": ("report", "vqa"),
    "app.cli.demo_cmd": ("demo",),
    "app.cli.serve_cmd": ("serve",),
    "app.cli.train_cmd": ("train",),
    "app.cli.eval_cmd": ("eval",),
}
"""Command modules, in the order `ctscribe --help` lists them, and the commands each registers
(listed even when the module cannot be imported for want of an optional extra)."""

EXIT_USAGE = 2
EXIT_INTERNAL = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctscribe", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=package_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, commands in COMMAND_MODULES.items():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            error = missing_extra(exc)
            if error is None:
                raise
            for command in commands:
                _add_unavailable(subparsers, command, error)
            continue
        module.register(subparsers)
    return parser


def _add_unavailable(subparsers: argparse._SubParsersAction, command: str, error: CtscribeError) -> None:
    """A command whose module needs a missing optional extra: listed, and running it is `error`."""
    parser = subparsers.add_parser(command, help=f"unavailable: {error.message}",
                                   description=f"unavailable: {error.message}")

    def fail(args: argparse.Namespace) -> int:
        raise error

    parser.set_defaults(func=fail, unavailable=True)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as exc:  # imported by the handler: an optional extra, or a bug
        error = missing_extra(exc)
        if error is None:
            raise
        raise error from exc


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
    try:
        parser = build_parser()
    except Exception as exc:  # noqa: BLE001 - a command module that does not import: a bug, said so
        return _internal_error(exc)
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "unavailable", False):  # an unavailable command takes anything
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command != "serve":
        _show_progress_notes()
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return _run(args)
    except CtscribeError as err:
        if getattr(args, "json", False):
            print(json.dumps({"error": err.to_dict()}))
        print(f"error: {err.code.value}: {err.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence of a CLI
        return _internal_error(exc)


def _internal_error(exc: Exception) -> int:
    if os.environ.get("CTSCRIBE_DEBUG"):
        traceback.print_exc()
    detail = " ".join(str(exc).split())[:500]
    print(f"error: internal: {type(exc).__name__}: {detail} (CTSCRIBE_DEBUG=1 shows the traceback)",
          file=sys.stderr)
    return EXIT_INTERNAL

if __name__ == "__main__":
    sys.exit(main())

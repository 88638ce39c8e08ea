"""The CLI dispatcher: errors become exit code 2 and one line, never a traceback."""

import argparse
import json

from app.cli import main as cli
from ctscribe.errors import ImagingError


def _failing_command(subparsers):
    parser = subparsers.add_parser("fail")
    parser.add_argument("--json", action="store_true")

    def handler(args):
        raise ImagingError("corrupt_file", "the gzip stream ends early")

    parser.set_defaults(func=handler)
    crash = subparsers.add_parser("crash")

    def crash_handler(args):
        raise ValueError("a bug\nover two lines")

    crash.set_defaults(func=crash_handler)


_ORIGINAL_BUILD_PARSER = cli.build_parser


def _run_with(monkeypatch, argv, capsys):
    def build_parser():
        parser = _ORIGINAL_BUILD_PARSER()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        _failing_command(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", build_parser)
    code = cli.main(argv)
    return code, capsys.readouterr()


def test_error_is_one_line_and_exit_2(monkeypatch, capsys):
    code, out = _run_with(monkeypatch, ["fail"], capsys)
    assert code == 2
    assert out.err.strip() == "error: corrupt_file: the gzip stream ends early"
    assert "Traceback" not in out.err


def test_json_error_on_stdout(monkeypatch, capsys):
    code, out = _run_with(monkeypatch, ["fail", "--json"], capsys)
    assert code == 2
    assert json.loads(out.out) == {"error": {"code": "corrupt_file", "message": "the gzip stream ends early"}}


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage: ctscribe" in capsys.readouterr().out


def test_a_bug_is_exit_1_and_one_line_unless_debugging(monkeypatch, capsys):
    monkeypatch.delenv("CTSCRIBE_DEBUG", raising=False)
    code, out = _run_with(monkeypatch, ["crash"], capsys)
    assert code == 1
    assert out.err.count("\n") == 1 and out.err.startswith("error: internal: ValueError: a bug over two lines")
    monkeypatch.setenv("CTSCRIBE_DEBUG", "1")
    code, out = _run_with(monkeypatch, ["crash"], capsys)
    assert code == 1 and "Traceback" in out.err

"""The CLI dispatcher: errors become exit code 2 and one line, never a traceback."""

import argparse
import json

from app.cli import main as cli
from imaging.errors import ImagingError


def _failing_command(subparsers):
    parser = subparsers.add_parser("fail")
    parser.add_argument("--json", action="store_true")

    def handler(args):
        raise ImagingError("corrupt_file", "the gzip stream ends early")

    parser.set_defaults(func=handler)


def _run_with(monkeypatch, argv, capsys):
    original = cli.build_parser

    def build_parser():
        parser = original()
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

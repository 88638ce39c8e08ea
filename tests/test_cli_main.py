"""The CLI dispatcher: errors become exit code 2 and one line, never a traceback."""

import argparse
import importlib
import json
import re
from pathlib import Path

import pytest

from app.cli import main as cli
from app.cli.extras import OPTIONAL_MODULES
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


# A command module whose optional extra is missing, and one that is simply broken.

_REAL_IMPORT = importlib.import_module


def _imports_failing(monkeypatch, module: str, error: ImportError) -> None:
    """Importing `module` raises `error`, as it would if the module imported a missing dependency."""

    def import_module(name, package=None):
        if name == module:
            raise error
        return _REAL_IMPORT(name, package)

    monkeypatch.setattr(importlib, "import_module", import_module)


def _missing(name: str) -> ModuleNotFoundError:
    return ModuleNotFoundError(f"No module named '{name}'", name=name)


def test_a_command_whose_optional_extra_is_missing_is_still_listed(monkeypatch, capsys):
    _imports_failing(monkeypatch, "app.cli.eval_cmd", _missing("evaluate"))
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    listing = capsys.readouterr().out
    assert re.search(r"\n\s+eval\s+unavailable: the optional module 'evaluate' is not installed", listing)
    assert all(re.search(rf"\n\s+{command}\s", listing) for command in ("inspect", "report", "vqa", "train"))


@pytest.mark.parametrize("argv", [["eval"], ["eval", "score", "--predictions", "p.jsonl", "--out", "o"]])
def test_running_it_is_one_clear_line_with_a_stable_code(monkeypatch, capsys, argv):
    _imports_failing(monkeypatch, "app.cli.eval_cmd", _missing("evaluate"))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err == ("error: invalid_request: the optional module 'evaluate' is not installed "
                   "(pip install 'ctscribe[eval]')\n")


def test_an_optional_module_missing_when_the_command_runs_is_the_same_line(monkeypatch, capsys):
    import app.cli.eval_cmd as eval_cmd

    def score(args):
        raise _missing("rouge_score")

    monkeypatch.setattr(eval_cmd, "_score", score)
    assert cli.main(["eval", "score", "--predictions", "p.jsonl", "--out", "o"]) == 2
    assert capsys.readouterr().err == ("error: invalid_request: the optional module 'rouge_score' is not installed "
                                       "(pip install 'ctscribe[eval]')\n")


@pytest.mark.parametrize("error", [
    _missing("pydicom"),  # a required dependency: a broken install
    _missing("app.cli.eval_cmd"),  # our own module: a broken install
    ImportError("cannot import name 'score' from 'eval'"),  # a bug of ours
])
def test_any_other_import_error_surfaces_as_a_bug(monkeypatch, capsys, error):
    monkeypatch.delenv("CTSCRIBE_DEBUG", raising=False)
    _imports_failing(monkeypatch, "app.cli.eval_cmd", error)
    with pytest.raises(type(error)):
        cli.build_parser()
    assert cli.main(["inspect", "--help"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: internal: {type(error).__name__}: {error}") and err.count("\n") == 1


def test_a_missing_required_module_while_running_is_a_bug(monkeypatch, capsys):
    import app.cli.eval_cmd as eval_cmd

    def score(args):
        raise _missing("pandas")

    monkeypatch.setattr(eval_cmd, "_score", score)
    assert cli.main(["eval", "score", "--predictions", "p.jsonl", "--out", "o"]) == 1
    assert capsys.readouterr().err.startswith("error: internal: ModuleNotFoundError: No module named 'pandas'")


def test_unknown_arguments_of_an_available_command_are_still_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["synth", "out", "--n", "1", "--no-such-flag"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_the_command_table_names_what_each_module_registers():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    declared = [command for commands in cli.COMMAND_MODULES.values() for command in commands]
    assert list(sub.choices) == declared


def test_the_optional_modules_are_the_extras_of_pyproject():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    extras = {name: requirements for name, requirements in project["optional-dependencies"].items() if name != "dev"}
    declared = {(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower().replace("-", "_"), extra)
                for extra, requirements in extras.items() for req in requirements}
    assert declared == set(OPTIONAL_MODULES.items())

"""Inside app/, imports run one way: the CLI (app/cli) may import the server, never the reverse;
a route only declares its endpoint and calls a flow (app/flow), and a flow never calls back
into the routes. Read from the syntax tree, so imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)]
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _offending(folder: Path, forbidden: str, skip: str | None = None) -> list[str]:
    return [
        f"{path.relative_to(APP.parent)}:{line} imports {name}"
        for path in sorted(folder.rglob("*.py"))
        if skip is None or skip not in path.relative_to(APP).parts
        for line, name in _imports(path)
        if name == forbidden or name.startswith(forbidden + ".")
    ]


def test_the_server_never_imports_the_cli():
    assert _offending(APP, "app.cli", skip="cli") == []


def test_flows_never_import_routes():
    assert _offending(APP / "flow", "app.routes") == []


def test_the_job_task_names_are_the_declared_ones():
    from app.flow.fields import JOB_FIELDS, JOB_TASKS
    from app.flow.tasks import TASK_MAKERS

    assert tuple(TASK_MAKERS) == JOB_TASKS == tuple(JOB_FIELDS["task"]["enum"])

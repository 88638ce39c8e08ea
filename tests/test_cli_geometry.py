"""`--resample-geometry` on `ctscribe report` and `vqa` (as on `inspect`): a tilted-gantry DICOM series
is `gantry_tilt` (exit 2) by default and read with a warning when asked; MCQ options are 2-4 and
distinct, as over HTTP."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.cli import main as cli
from tests.imaging.dicom_factory import write_ct_series


@pytest.fixture(scope="module")
def tilted_dir(tmp_path_factory):
    zyx = np.full((16, 40, 40), -1000.0)
    zyx[:, 6:34, 4:36] = 40.0
    zyx[:, 12:28, 8:18] = -850.0
    zyx[:, 12:28, 22:32] = -850.0
    directory = tmp_path_factory.mktemp("tilted")
    write_ct_series(directory, zyx, (2.5, 0.8, 0.8), tilt_deg=15.0)
    return directory


COMMANDS = {
    "report": ["report"],
    "vqa": ["vqa", "--question", "Which side?", "--choice", "left", "--choice", "right"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_tilted_series_is_refused_by_default(tilted_dir, capsys, command):
    argv = [*COMMANDS[command], str(tilted_dir), "--checkpoint", "tiny", "--max-new-tokens", "2"]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.startswith("error: gantry_tilt:")


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("flag", [["--resample-geometry"], ["--on-gantry-tilt", "resample"]])
def test_resample_geometry_reads_it_with_a_warning(tilted_dir, capsys, command, flag):
    argv = [*COMMANDS[command], str(tilted_dir), "--checkpoint", "tiny", "--max-new-tokens", "2", "--json", *flag]
    assert cli.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert any(w["code"] == "input" and "tilt" in w["message"].lower() for w in doc["warnings"])


def test_a_specific_policy_wins_over_resample_geometry(tilted_dir, capsys):
    argv = ["report", str(tilted_dir), "--checkpoint", "tiny", "--resample-geometry", "--on-gantry-tilt", "reject"]
    assert cli.main(argv) == 2
    assert "gantry_tilt" in capsys.readouterr().err


@pytest.mark.parametrize("choices,message", [
    (["effusion", "Effusion "], "options 1 and 2 are the same"),
    (["a", "b", "c", "d", "e"], "give 2 to 4 options"),
    (["only"], "give 2 to 4 options"),
])
def test_vqa_choices_follow_the_http_rule(tilted_dir, capsys, choices, message):
    argv = ["vqa", str(tilted_dir), "--question", "Which?", "--checkpoint", "tiny"]
    for choice in choices:
        argv += ["--choice", choice]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid_request: choices:") and message in err

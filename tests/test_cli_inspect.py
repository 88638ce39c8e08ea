"""`ctscribe inspect`: the JSON document, the table, options, and errors without tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from app.cli.main import build_parser, main

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ct"
JSON_KEYS = {
    "format", "shape_zyx", "spacing_mm_zyx", "origin_mm", "orientation_in", "hu", "series", "candidates", "warnings",
}  # fmt: skip


def _real(name: str) -> Path:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"real CT data not present at {DATA} (see shared/data/README.md)")
    return path


def _small_nifti(tmp_path: Path) -> Path:
    data = np.full((20, 18, 10), -1000, dtype=np.int16)
    data[5:15, 4:14, :] = 40
    path = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.9, 2.5, 1.0])), path)
    return path


def test_json_summary_of_a_nifti(tmp_path, capsys):
    assert main(["inspect", str(_small_nifti(tmp_path)), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == JSON_KEYS
    assert summary["format"] == "nifti"
    assert summary["shape_zyx"] == [10, 18, 20]
    assert summary["spacing_mm_zyx"] == pytest.approx([2.5, 0.9, 0.8])
    assert summary["orientation_in"] == "RAS"
    assert summary["hu"]["min"] == -1000 and summary["hu"]["max"] == 40
    assert set(summary["hu"]) == {"min", "max", "mean", "p1", "p99"}


def test_json_summary_of_a_dicom_series(capsys):
    assert main(["inspect", str(_real("abdomen_dicom_series")), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "dicom" and summary["shape_zyx"] == [20, 512, 512]
    assert summary["series"]["n_slices"] == 20 and summary["candidates"]


def test_table_output(tmp_path, capsys):
    assert main(["inspect", str(_small_nifti(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "nifti" in out and "10 x 18 x 20" in out and "RAS" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_bad_input_exit_2_one_line(tmp_path, capsys):
    junk = tmp_path / "scan.nii.gz"
    junk.write_bytes(b"\x00garbage" * 100)
    assert main(["inspect", str(junk)]) == 2
    out = capsys.readouterr()
    assert out.err.startswith("error: unsupported_format: ") and out.err.count("\n") == 1
    assert out.out == ""

    assert main(["inspect", str(junk), "--json"]) == 2
    out = capsys.readouterr()
    assert json.loads(out.out)["error"]["code"] == "unsupported_format"
    assert out.err.startswith("error: unsupported_format: ")


def test_geometry_flags_reach_the_reader(tmp_path, capsys):
    angle = np.radians(25)
    affine = np.eye(4)
    affine[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(np.full((16, 16, 10), -1000, dtype=np.int16), affine), path)
    assert main(["inspect", str(path)]) == 2
    assert "error: oblique_orientation:" in capsys.readouterr().err
    assert main(["inspect", str(path), "--resample-geometry", "--json"]) == 0
    assert any("oblique" in w for w in json.loads(capsys.readouterr().out)["warnings"])
    assert main(["inspect", str(path), "--resample-geometry", "--on-oblique", "reject"]) == 2


def test_options_built_from_flags():
    from app.cli.inspect_cmd import build_options

    args = build_parser().parse_args(
        ["inspect", "x", "--series", "1.2.3", "--resample-geometry", "--on-gantry-tilt", "reject",
         "--rescale-intercept", "-1024", "--min-slices", "4"]
    )  # fmt: skip
    options = build_options(args)
    assert options.series_uid == "1.2.3"
    assert (options.on_non_uniform, options.on_gantry_tilt, options.on_oblique) == (
        "resample",
        "reject",
        "resample",
    )
    assert options.rescale_intercept == -1024.0 and options.rescale_slope is None
    assert options.min_slices == 4


def _console_script() -> str:
    found = shutil.which("ctscribe") or str(Path(sys.executable).parent / "ctscribe")
    if not os.access(found, os.X_OK):
        pytest.skip("the ctscribe console script is not installed (pip install -e .)")
    return found


def test_installed_console_script_exit_2_without_traceback(tmp_path):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    result = subprocess.run(
        [_console_script(), "inspect", str(empty), "--json"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: corrupt_file: the file is empty"
    assert json.loads(result.stdout) == {"error": {"code": "corrupt_file", "message": "the file is empty"}}

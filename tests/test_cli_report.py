"""`ctscribe report` / `vqa`: `--consistency`, and structured warnings in `--json` and on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import main as cli

REAL_CT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ct" / "chest_cta_crop.nii.gz"
NOT_REAL = "model_not_trained_on_real_ct"


@pytest.fixture(scope="module")
def small_ct(tmp_path_factory) -> Path:
    import nibabel as nib

    data = np.full((40, 40, 24), -1000, np.int16)
    data[8:32, 8:32, :] = 40
    path = tmp_path_factory.mktemp("ct") / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.5, 1.0])), path)
    return path


@pytest.fixture(scope="module")
def phantom_checkpoint(tmp_path_factory) -> Path:
    import model

    directory = tmp_path_factory.mktemp("ckpt") / "phantom"
    model.build("tiny", seed=0).save(directory, trained_on="synthetic-phantom")
    return directory


def test_a_bad_consistency_value_is_exit_2(small_ct, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", str(small_ct), "--checkpoint", "tiny", "--consistency", "fix"])
    assert exit_.value.code == 2
    assert "--consistency" in capsys.readouterr().err


def test_json_report_has_structured_warnings(small_ct, capsys):
    assert cli.main(["report", str(small_ct), "--checkpoint", "tiny", "--json", "--max-new-tokens", "3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert isinstance(doc["warnings"], list)
    assert all({"code", "message"} <= set(w) for w in doc["warnings"])
    assert NOT_REAL not in [w["code"] for w in doc["warnings"]]  # the tiny preset says nothing of its training
    assert cli.main(["report", str(small_ct), "--checkpoint", "tiny", "--json", "--max-new-tokens", "3",
                     "--consistency", "off"]) == 0
    assert [w for w in json.loads(capsys.readouterr().out)["warnings"] if w["code"] != "input"] == []


@pytest.mark.skipif(not REAL_CT.is_file(), reason="../shared/data/ct is absent")
def test_a_phantom_model_on_a_real_ct_warns_in_json_and_on_stderr(phantom_checkpoint, capsys):
    base = [str(REAL_CT), "--checkpoint", str(phantom_checkpoint), "--max-new-tokens", "2"]
    assert cli.main(["report", *base, "--json", "--consistency", "off"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [w["code"] for w in doc["warnings"] if w["code"] != "input"] == [NOT_REAL]
    assert cli.main(["vqa", *base, "--question", "Is there a nodule?"]) == 0
    out = capsys.readouterr()
    assert f"warning: {NOT_REAL}: this model was trained on synthetic phantoms only" in out.err
    assert NOT_REAL not in out.out  # stdout keeps the answer alone
    assert cli.main(["vqa", *base, "--json", "--question", "Which side?", "--choice", "left", "--choice", "right"]) == 0
    assert NOT_REAL in [w["code"] for w in json.loads(capsys.readouterr().out)["warnings"]]


def test_a_phantom_model_on_a_phantom_file_is_not_warned(phantom_checkpoint, tmp_path, capsys):
    from imaging.phantom import PhantomConfig, render_case, sample_case
    from imaging.phantom.dataset import write_nifti

    path = write_nifti(render_case(sample_case(4, config=PhantomConfig.with_shape((24, 48, 48)))),
                       tmp_path / "phantom.nii.gz")
    assert cli.main(["report", str(path), "--checkpoint", str(phantom_checkpoint), "--json",
                     "--max-new-tokens", "2"]) == 0
    assert NOT_REAL not in [w["code"] for w in json.loads(capsys.readouterr().out)["warnings"]]

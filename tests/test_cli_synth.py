"""`ctscribe synth` through the CLI dispatcher."""

import csv
import json

from app.cli.main import main


def test_synth_writes_a_small_dataset_and_resumes(tmp_path, capsys):
    out = tmp_path / "set"
    code = main(
        ["synth", str(out), "--n", "2", "--seed", "3", "--size", "16x32x32", "--split", "train", "--json"]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_rendered"] == 2 and summary["split"] == "train"
    assert (out / "train" / "train_2" / "train_2_a" / "train_2_a_1.nii.gz").is_file()
    with open(out / "train_metadata.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert json.loads(row["XYSpacing"]) == [10.0, 10.0] and float(row["ZSpacing"]) == 16.0
    assert (
        main(
            ["synth", str(out), "--n", "2", "--seed", "3", "--size", "16x32x32", "--split", "train", "--json"]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["n_skipped"] == 2


def test_synth_dicom_only(tmp_path, capsys):
    out = tmp_path / "dcm"
    assert main(["synth", str(out), "--n", "1", "--size", "16x32x32", "--dicom", "--no-nifti"]) == 0
    case = out / "valid" / "valid_1" / "valid_1_a"
    assert len(list((case / "valid_1_a_1_dicom").glob("*.dcm"))) == 16
    assert not (case / "valid_1_a_1.nii.gz").exists()
    assert "wrote 1 valid cases" in capsys.readouterr().out


def test_synth_bad_arguments_exit_2_with_one_line(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "x"), "--n", "0"]) == 2
    assert main(["synth", str(tmp_path / "x"), "--n", "1", "--size", "big"]) == 2
    assert main(["synth", str(tmp_path / "x"), "--n", "1", "--no-nifti"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: invalid_request: ") for line in err)

"""The phantom dataset writer: CT-RATE layout, tables, NIfTI/DICOM geometry, atomic resumable writes."""

import csv
import json

import numpy as np
import pytest

from ctscribe.errors import ImagingError
from ctscribe.labels import CTRATE_LABELS
from imaging.phantom import PhantomConfig, render_case, sample_case
from imaging.phantom.dataset import dicom_dir, volume_path, write_dataset

SMALL = PhantomConfig.with_shape((24, 48, 48))  # same anatomy and FOV, coarse voxels: fast


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = write_dataset(out, 3, seed=5, split="valid", config=SMALL, dicom=True)
    return out, summary


def _rows(path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def test_ctrate_layout_and_tables(dataset):
    out, summary = dataset
    assert summary.n_rendered == 3 and summary.n_skipped == 0
    for pid in (1, 2, 3):
        assert (out / "valid" / f"valid_{pid}" / f"valid_{pid}_a" / f"valid_{pid}_a_1.nii.gz").is_file()
    names = [f"valid_{pid}_a_1.nii.gz" for pid in (1, 2, 3)]
    cols, rows = _rows(out / "valid_reports.csv")
    assert cols == ["VolumeName", "ClinicalInformation_EN", "Technique_EN", "Findings_EN", "Impressions_EN"]
    assert [r["VolumeName"] for r in rows] == names and all(r["Findings_EN"] for r in rows)
    cols, labels = _rows(out / "valid_predicted_labels.csv")
    assert cols == ["VolumeName", *CTRATE_LABELS]
    cols, meta = _rows(out / "valid_metadata.csv")
    assert {"VolumeName", "RescaleSlope", "RescaleIntercept", "XYSpacing", "ZSpacing"} <= set(cols)
    assert json.loads(meta[0]["XYSpacing"]) == [SMALL.spacing_mm_zyx[1], SMALL.spacing_mm_zyx[2]]
    assert float(meta[0]["ZSpacing"]) == SMALL.spacing_mm_zyx[0]
    assert (meta[0]["RescaleSlope"], meta[0]["RescaleIntercept"]) == ("1", "0")  # stored values are HU
    truth = [json.loads(line) for line in (out / "valid_findings.jsonl").read_text().splitlines()]
    for row, record in zip(labels, truth, strict=True):
        assert record["volume"] == row["VolumeName"]
        assert {k for k in CTRATE_LABELS if row[k] == "1"} == {f["label"] for f in record["findings"]}
    vqa = [json.loads(line) for line in (out / "valid_vqa.jsonl").read_text().splitlines()]
    assert {q["volume"] for q in vqa} == set(names)
    assert all({"volume", "question", "answer", "kind"} <= set(q) for q in vqa)
    assert all(q["answer"] in q["choices"] for q in vqa if q["kind"] == "mcq")


def test_nifti_reads_back_with_nibabel_to_the_same_array(dataset):
    import nibabel as nib

    out, _ = dataset
    img = nib.load(volume_path(out, "valid", 2))
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert img.get_data_dtype() == np.int16
    expected = np.rint(render_case(sample_case(5, 2, SMALL)).hu)
    stored = np.asarray(img.dataobj)  # (x, y, z), slope 1 / intercept 0 applied
    assert np.array_equal(stored.transpose(2, 1, 0), expected)
    # Canonicalising through nibabel (RAS+) then flipping x and y gives the LPS array again.
    ras = nib.as_closest_canonical(img)
    assert np.array_equal(np.asarray(ras.dataobj)[::-1, ::-1, :].transpose(2, 1, 0), expected)
    zooms = img.header.get_zooms()
    assert zooms == pytest.approx((SMALL.spacing_mm_zyx[2], SMALL.spacing_mm_zyx[1], SMALL.spacing_mm_zyx[0]))


def test_nifti_round_trips_through_the_project_reader(dataset):
    read_nifti = pytest.importorskip("imaging.nifti").read_nifti
    out, _ = dataset
    vol = read_nifti(volume_path(out, "valid", 1))
    expected = render_case(sample_case(5, 1, SMALL))
    assert np.array_equal(vol.hu, np.rint(expected.hu))
    assert vol.spacing_mm_zyx == pytest.approx(expected.spacing_mm_zyx)
    assert vol.origin_mm == pytest.approx(expected.origin_mm)


def test_dicom_series_geometry(dataset):
    import pydicom

    out, _ = dataset
    files = sorted(dicom_dir(out, "valid", 3).glob("*.dcm"))
    expected = render_case(sample_case(5, 3, SMALL))
    assert len(files) == SMALL.shape_zyx[0]
    slices = [pydicom.dcmread(f) for f in files]
    slices.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    first = slices[0]
    assert first.Modality == "CT"
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in first.PixelSpacing] == pytest.approx(
        [SMALL.spacing_mm_zyx[1], SMALL.spacing_mm_zyx[2]]
    )
    assert [float(v) for v in first.ImagePositionPatient] == pytest.approx(expected.origin_mm, abs=1e-3)
    steps = np.diff([float(ds.ImagePositionPatient[2]) for ds in slices])
    assert steps == pytest.approx(SMALL.spacing_mm_zyx[0], abs=1e-4)
    assert len({ds.SeriesInstanceUID for ds in slices}) == 1 and len(
        {ds.SOPInstanceUID for ds in slices}
    ) == len(slices)
    hu = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in slices])
    assert np.array_equal(hu, np.rint(expected.hu))


def test_dicom_round_trips_through_the_project_reader(dataset):
    read_dicom_series = pytest.importorskip("imaging.dicom").read_dicom_series
    out, _ = dataset
    vol = read_dicom_series(sorted(dicom_dir(out, "valid", 3).glob("*.dcm")))
    expected = render_case(sample_case(5, 3, SMALL))
    assert vol.orientation_in == "LPS"
    assert np.array_equal(vol.hu, np.rint(expected.hu))
    assert vol.origin_mm == pytest.approx(expected.origin_mm, abs=1e-3)


def test_rerun_skips_finished_cases_extends_and_is_deterministic(dataset, tmp_path):
    out, _ = dataset
    before = volume_path(out, "valid", 1).read_bytes()
    again = write_dataset(out, 3, seed=5, split="valid", config=SMALL, dicom=True)
    assert again.n_rendered == 0 and again.n_skipped == 3
    # A fresh folder with the same arguments gives byte-identical files.
    other = write_dataset(tmp_path, 1, seed=5, split="valid", config=SMALL)
    assert other.n_rendered == 1
    assert volume_path(tmp_path, "valid", 1).read_bytes() == before
    assert (tmp_path / "valid_reports.csv").read_text().splitlines()[1] == (
        out / "valid_reports.csv"
    ).read_text().splitlines()[1]
    # An interrupted case (no volume yet) is rendered on the next run; no temp files remain.
    volume_path(tmp_path, "valid", 1).unlink()
    assert write_dataset(tmp_path, 2, seed=5, split="valid", config=SMALL).n_rendered == 2
    assert not list(tmp_path.rglob(".*tmp*"))


def test_mismatched_rerun_and_bad_arguments_are_refused(dataset, tmp_path):
    out, _ = dataset
    with pytest.raises(ImagingError) as err:
        write_dataset(out, 3, seed=6, split="valid", config=SMALL)
    assert err.value.code.value == "invalid_request"
    with pytest.raises(ImagingError):
        write_dataset(tmp_path, 0)
    with pytest.raises(ImagingError):
        write_dataset(tmp_path, 1, split="test")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImagingError):
        write_dataset(tmp_path / "file", 1)


def test_phantom_files_read_back_as_phantoms_and_other_files_do_not(dataset, tmp_path):
    import nibabel as nib

    from imaging.read import read_volume
    from imaging.volume import PHANTOM_SOURCE_HINT

    out, _ = dataset
    assert read_volume(volume_path(out, "valid", 1)).source_hint == PHANTOM_SOURCE_HINT  # NIfTI descrip
    assert read_volume(dicom_dir(out, "valid", 1)).source_hint == PHANTOM_SOURCE_HINT  # DICOM manufacturer/model
    assert render_case(sample_case(5, config=SMALL)).source_hint == PHANTOM_SOURCE_HINT  # in memory (demo)
    other = tmp_path / "other.nii.gz"
    image = nib.Nifti1Image(np.full((16, 16, 12), -1000, np.int16), np.diag([1.0, 1.0, 2.5, 1.0]))
    image.header["descrip"] = b"some scanner"
    nib.save(image, other)
    assert read_volume(other).source_hint == ""

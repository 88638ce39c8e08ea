"""Writes a synthetic phantom dataset in the CT-RATE layout (DESIGN.md §3).

```
OUT/<split>/<split>_<pid>/<split>_<pid>_a/<split>_<pid>_a_1.nii.gz     volume (int16 HU)
OUT/<split>/<split>_<pid>/<split>_<pid>_a/<split>_<pid>_a_1_dicom/     with --dicom: DICOM series
OUT/<split>_reports.csv            VolumeName, ClinicalInformation_EN, Technique_EN, Findings_EN, Impressions_EN
OUT/<split>_predicted_labels.csv   VolumeName + the 18 CT-RATE labels (0/1)
OUT/<split>_metadata.csv           VolumeName, ..., XYSpacing "[2.5, 2.5]", RescaleIntercept, RescaleSlope, ZSpacing
OUT/<split>_vqa.jsonl              {volume, question, choices?, answer, answer_choice?, kind, topic}
OUT/<split>_findings.jsonl         ground truth: findings with locations and sizes, per volume
OUT/<split>_synth.json             the arguments that made the set (a re-run must match them)
```

Volumes are written like CT-RATE v2 (`*_fixed`): the stored int16 values ARE Hounsfield
units, the NIfTI header has scl_slope 1 / scl_inter 0 and the metadata CSV says
RescaleSlope 1, RescaleIntercept 0, so applying the metadata again is harmless (identity)
and no reader has to guess between v1 (raw) and v2 (HU) conventions.

The NIfTI array is the canonical (z, y, x) LPS array transposed to (x, y, z) with the affine
diag(-sx, -sy, sz) (LPS -> RAS flips x and y): nibabel reports axcodes ('L', 'P', 'S') and a
canonicalising reader recovers the exact array. Every file is written under a temporary
name and renamed, so an interrupted run leaves no half files; a re-run with the same
arguments skips the finished volumes and rewrites the (cheap) tables.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ctscribe.errors import ErrorCode, ImagingError
from ctscribe.labels import CTRATE_LABELS
from imaging.phantom.case import CaseSpec, describe_case, render_case, sample_case
from imaging.phantom.config import PhantomConfig
from imaging.volume import PHANTOM_NIFTI_DESCRIP, Volume

REPORT_COLUMNS = ("VolumeName", "ClinicalInformation_EN", "Technique_EN", "Findings_EN", "Impressions_EN")
LABEL_COLUMNS = ("VolumeName", *CTRATE_LABELS)
METADATA_COLUMNS = (
    "VolumeName",
    "Manufacturer",
    "SeriesDescription",
    "ManufacturerModelName",
    "PatientPosition",
    "ReconstructionDiameter",
    "ConvolutionKernel",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "Rows",
    "Columns",
    "XYSpacing",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "NumberofSlices",
    "ZSpacing",
)
SPLITS = ("train", "valid")
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SynthSummary:
    out_dir: str
    split: str
    n_cases: int
    n_rendered: int
    n_skipped: int
    seconds: float


def volume_name(split: str, pid: int) -> str:
    return f"{split}_{pid}_a_1.nii.gz"


def volume_path(out_dir: Path, split: str, pid: int) -> Path:
    return out_dir / split / f"{split}_{pid}" / f"{split}_{pid}_a" / volume_name(split, pid)


def dicom_dir(out_dir: Path, split: str, pid: int) -> Path:
    path = volume_path(out_dir, split, pid)
    return path.with_name(path.name[: -len(".nii.gz")] + "_dicom")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def nifti_bytes(volume: Volume) -> bytes:
    """The volume as .nii.gz bytes: int16 HU, (x, y, z) array order, LPS-axis affine in RAS terms."""
    import nibabel as nib

    sz, sy, sx = (float(s) for s in volume.spacing_mm_zyx)
    ox, oy, oz = (float(o) for o in volume.origin_mm)
    data = np.rint(volume.hu).clip(-32768, 32767).astype(np.int16).transpose(2, 1, 0)  # (X, Y, Z)
    affine = np.array([[-sx, 0, 0, -ox], [0, -sy, 0, -oy], [0, 0, sz, oz], [0, 0, 0, 1]], dtype=np.float64)
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    img.header.set_xyzt_units("mm")
    img.header.set_slope_inter(1.0, 0.0)
    img.header["descrip"] = PHANTOM_NIFTI_DESCRIP.encode()  # read back as Volume.source_hint
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    # mtime=0: the same case gives byte-identical files.
    return gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)  # noise barely compresses: be fast


def write_nifti(volume: Volume, path: str | Path) -> Path:
    path = Path(path)
    _atomic_write(path, nifti_bytes(volume))
    return path


def _write_table(path: Path, columns, rows) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(path, buf.getvalue().encode("utf-8"))


def _write_jsonl(path: Path, records) -> None:
    _atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8"))


def _config_record(seed: int, cfg: PhantomConfig) -> dict:
    c = asdict(cfg)
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "config": json.loads(json.dumps(c)),
    }  # tuples -> lists, as read back from JSON


def _check_or_record(out_dir: Path, split: str, seed: int, cfg: PhantomConfig) -> None:
    path = out_dir / f"{split}_synth.json"
    record = _config_record(seed, cfg)
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if old != record:
            raise ImagingError(
                ErrorCode.INVALID_REQUEST,
                f"{out_dir} already holds a '{split}' phantom set made with other arguments "
                f"(see {path.name}); use the same --seed/--size or another output folder",
            )
        return
    _atomic_write(path, (json.dumps(record, indent=1) + "\n").encode("utf-8"))


def _metadata_row(name: str, spec: CaseSpec) -> dict:
    grid = spec.grid
    sz, sy, sx = grid.spacing_mm_zyx
    nz, ny, nx = grid.shape_zyx
    return {
        "VolumeName": name,
        "Manufacturer": "ctscribe",
        "SeriesDescription": "phantom",
        "ManufacturerModelName": "phantom",
        "PatientPosition": "HFS",
        "ReconstructionDiameter": f"{nx * sx:g}",
        "ConvolutionKernel": "SYNTH",
        "ImagePositionPatient": json.dumps([round(v, 4) for v in grid.origin_mm_xyz]),
        "ImageOrientationPatient": "[1, 0, 0, 0, 1, 0]",
        "Rows": ny,
        "Columns": nx,
        "XYSpacing": json.dumps([sy, sx]),
        "RescaleIntercept": 0,
        "RescaleSlope": 1,
        "RescaleType": "HU",
        "NumberofSlices": nz,
        "ZSpacing": sz,
    }


def write_dataset(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    split: str = "valid",
    config: PhantomConfig | None = None,
    *,
    nifti: bool = True,
    dicom: bool = False,
    progress=None,
) -> SynthSummary:
    """Generate `n` cases (pids 1..n) into `out_dir`; resumable (finished volumes are kept)."""
    cfg = config or PhantomConfig()
    if n < 1:
        raise ImagingError(ErrorCode.INVALID_REQUEST, f"--n must be at least 1, got {n}")
    if split not in SPLITS:
        raise ImagingError(ErrorCode.INVALID_REQUEST, f"split must be one of {SPLITS}, got {split!r}")
    if not (nifti or dicom):
        raise ImagingError(ErrorCode.INVALID_REQUEST, "nothing to write: enable NIfTI and/or DICOM output")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ImagingError(ErrorCode.INVALID_REQUEST, f"output path {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    _check_or_record(out, split, seed, cfg)

    start = time.perf_counter()
    reports, labels, metadata, vqa, truth = [], [], [], [], []
    rendered = skipped = 0
    for pid in range(1, n + 1):
        spec = sample_case(seed, pid, cfg)
        name = volume_name(split, pid)
        nii, dcm = volume_path(out, split, pid), dicom_dir(out, split, pid)
        todo_nii, todo_dcm = nifti and not nii.exists(), dicom and not dcm.exists()
        if todo_nii or todo_dcm:
            volume = render_case(spec)
            if todo_nii:
                write_nifti(volume, nii)
            if todo_dcm:
                from imaging.phantom.dicom_export import write_dicom_series

                write_dicom_series(
                    volume,
                    dcm,
                    uid_entropy=["ctscribe-phantom", str(seed), split, str(pid)],
                    patient_id=f"{split}_{pid}",
                )
            rendered += 1
        else:
            skipped += 1
        report, questions = describe_case(spec)
        reports.append({"VolumeName": name, **report})
        labels.append({"VolumeName": name, **spec.labels()})
        metadata.append(_metadata_row(name, spec))
        vqa.extend({"volume": name, **q} for q in questions)
        truth.append(
            {
                "volume": name,
                "seed": seed,
                "index": pid,
                "labels": spec.labels(),
                "findings": [f.to_dict() for f in spec.findings],
                "shape_zyx": list(spec.grid.shape_zyx),
                "spacing_mm_zyx": list(spec.grid.spacing_mm_zyx),
                "origin_mm_xyz": [round(v, 4) for v in spec.grid.origin_mm_xyz],
            }
        )
        if progress is not None:
            progress(pid, n)
    _write_table(out / f"{split}_reports.csv", REPORT_COLUMNS, reports)
    _write_table(out / f"{split}_predicted_labels.csv", LABEL_COLUMNS, labels)
    _write_table(out / f"{split}_metadata.csv", METADATA_COLUMNS, metadata)
    _write_jsonl(out / f"{split}_vqa.jsonl", vqa)
    _write_jsonl(out / f"{split}_findings.jsonl", truth)
    return SynthSummary(str(out), split, n, rendered, skipped, round(time.perf_counter() - start, 3))

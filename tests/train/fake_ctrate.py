"""Tiny fake CT-RATE trees (real NIfTI files written by nibabel) for the importer tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from ctscribe.labels import CTRATE_LABELS

SHAPE_XYZ = (20, 18, 10)
SPACING_XYZ_MM = (0.8, 0.8, 2.0)


def chest_hu(seed: int = 0) -> np.ndarray:
    """(x, y, z) int16 HU: air outside a body ellipse, soft tissue, two 'lungs'."""
    rng = np.random.default_rng(seed)
    x, y, _ = np.meshgrid(*(np.linspace(-1, 1, n) for n in SHAPE_XYZ), indexing="ij")
    hu = np.full(SHAPE_XYZ, -1000.0)
    hu[(x / 0.9) ** 2 + (y / 0.8) ** 2 < 1] = 40.0
    hu[((x - 0.4) / 0.3) ** 2 + (y / 0.5) ** 2 < 1] = -850.0
    hu[((x + 0.4) / 0.3) ** 2 + (y / 0.5) ** 2 < 1] = -850.0
    hu += rng.normal(0, 5, SHAPE_XYZ)
    return np.round(hu).astype(np.int16)


def write_nifti(path: Path, values: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*SPACING_XYZ_MM, 1.0])
    img = nib.Nifti1Image(values, affine)
    img.header.set_slope_inter(1.0, 0.0)
    nib.save(img, str(path))
    return path


def volume_path(root: Path, name: str) -> Path:
    split, pid, scan = name.split("_")[:3]
    return root / split / f"{split}_{pid}" / f"{split}_{pid}_{scan}" / name


def build_tree(root: Path, volumes: dict[str, str], *, metadata_rows: dict[str, tuple] | None = None) -> dict:
    """Write `volumes` {VolumeName: "raw"|"hu"} plus the three CSVs; returns the paths and HU truth.

    "raw" stores HU + 1024 (CT-RATE v1: slope 1, intercept -1024), "hu" stores HU as is.
    """
    truth = {}
    for i, (name, kind) in enumerate(volumes.items()):
        hu = chest_hu(i)
        stored = hu + 1024 if kind == "raw" else hu
        write_nifti(volume_path(root, name), stored.astype(np.int16))
        truth[name] = hu
    names = list(volumes)
    reports = root / "train_reports.csv"
    lines = ["VolumeName,ClinicalInformation_EN,Technique_EN,Findings_EN,Impressions_EN"]
    for i, name in enumerate(names):
        lines.append(f'{name},"Cough.","Non-contrast.","Findings {i}, lungs clear.","Impression {i}."')
    reports.write_text("\n".join(lines) + "\n")
    labels = root / "train_labels.csv"
    rows = ["VolumeName," + ",".join(CTRATE_LABELS)]
    for i, name in enumerate(names):
        rows.append(name + "," + ",".join(str((i + j) % 2) for j in range(len(CTRATE_LABELS))))
    labels.write_text("\n".join(rows) + "\n")
    metadata = root / "train_metadata.csv"
    meta = ["VolumeName,Manufacturer,XYSpacing,RescaleIntercept,RescaleSlope,ZSpacing"]
    for name in names:
        slope, intercept, xy, z = (metadata_rows or {}).get(name, (1, -1024, "[0.8, 0.8]", 2.0))
        meta.append(f'{name},ACME,"{xy}",{intercept},{slope},{z}')
    metadata.write_text("\n".join(meta) + "\n")
    return {"reports": reports, "labels": labels, "metadata": metadata, "truth": truth}

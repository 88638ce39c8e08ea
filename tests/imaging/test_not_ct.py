"""NIfTI/NRRD/MetaImage carry no modality: values that cannot be CT in Hounsfield units are
`not_ct` (MR, normalised images), raw CT is a warning with its fix, real CT and phantoms pass."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from ctscribe.errors import ErrorCode, ImagingError
from imaging.options import ReadOptions
from imaging.phantom.case import generate_case
from imaging.phantom.config import PhantomConfig
from imaging.phantom.dataset import write_nifti
from imaging.read import read_volume

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ct"
AFFINE = np.diag([1.0, 1.0, 1.2, 1.0])
SHAPE_XYZ = (64, 72, 40)


def _head(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks (scalp, skull, brain) of an ellipsoidal head filling most of the field of view."""
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in SHAPE_XYZ), indexing="ij")
    r = np.sqrt((x / 0.85) ** 2 + (y / 0.92) ** 2 + (z / 1.1) ** 2)
    r += rng.normal(0, 0.01, r.shape)
    return (r < 1.0) & (r >= 0.93), (r < 0.93) & (r >= 0.86), r < 0.86


def t1_brain_uint8(seed: int = 0) -> np.ndarray:
    """A T1-weighted brain as MR converters often save it: uint8 0..254, background 0, fat-bright
    scalp, dark skull, grey/white matter 90..170, no air at -1000."""
    rng = np.random.default_rng(seed)
    scalp, skull, brain = _head(rng)
    data = np.zeros(SHAPE_XYZ, np.float64)
    data[scalp] = 230
    data[skull] = 25
    white = brain & (rng.random(SHAPE_XYZ) < 0.45)
    data[brain] = 105
    data[white] = 160
    data += rng.normal(0, 6, SHAPE_XYZ) * (data > 0)
    return np.clip(data, 0, 254).astype(np.uint8)


def mr_scanner_units(seed: int = 1) -> np.ndarray:
    """An MR in scanner units, cropped to the head (p1..p99 about 1200..12700): int16."""
    rng = np.random.default_rng(seed)
    scalp, skull, brain = _head(rng)
    data = np.full(SHAPE_XYZ, 1300.0)
    data[scalp] = 12000
    data[skull] = 1500
    data[brain] = rng.uniform(4000, 9000, SHAPE_XYZ)[brain]
    return (data + rng.normal(0, 80, SHAPE_XYZ)).astype(np.int16)


def chest_raw(seed: int = 2) -> np.ndarray:
    """A chest CT as CT-RATE v1 stores it (HU + 1024): air ~0, lungs ~200, tissue ~1064, int16 >= 0."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-1, 1, SHAPE_XYZ[0]), np.linspace(-1, 1, SHAPE_XYZ[1]), indexing="ij")
    hu = np.full(SHAPE_XYZ[:2], -1000.0)
    hu[(x / 0.9) ** 2 + (y / 0.7) ** 2 < 1] = 40
    for side in (-0.4, 0.4):
        hu[((x - side) / 0.3) ** 2 + (y / 0.45) ** 2 < 1] = -850
    hu = np.repeat(hu[:, :, None], SHAPE_XYZ[2], axis=2) + rng.normal(0, 10, SHAPE_XYZ)
    return np.clip(hu + 1024, 0, None).astype(np.int16)


def _nifti(tmp_path: Path, data: np.ndarray, name: str = "v.nii.gz") -> Path:
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    return path


def _not_ct(source, options=ReadOptions()) -> str:
    with pytest.raises(ImagingError) as err:
        read_volume(source, options)
    assert err.value.code is ErrorCode.NOT_CT
    return err.value.message


@pytest.mark.parametrize(
    "make",
    [t1_brain_uint8, mr_scanner_units, lambda: (chest_raw() / 4096.0).astype(np.float32)],
    ids=["t1-0..254", "mr-scanner-units", "ct-normalised-0..1"],
)
def test_non_ct_intensities_are_not_ct(tmp_path, make):
    message = _not_ct(_nifti(tmp_path, make()))
    assert "Hounsfield" in message and "percentile" in message


def test_the_check_applies_to_nrrd_and_metaimage_too(tmp_path):
    path = tmp_path / "t1.mha"
    sitk.WriteImage(sitk.GetImageFromArray(t1_brain_uint8().transpose(2, 1, 0).copy()), str(path))
    _not_ct(path)


def test_raw_ct_is_a_warning_and_passes_with_its_intercept(tmp_path):
    # The rescale override (CT-RATE v1 metadata, as training manifests of raw volumes pass it)
    # makes the values HU before they are judged.
    path = _nifti(tmp_path, chest_raw())
    volume = read_volume(path)
    assert any("raw stored CT values" in w for w in volume.warnings)
    fixed = read_volume(path, ReadOptions(rescale_slope=1.0, rescale_intercept=-1024.0))
    assert fixed.warnings == [] and fixed.hu.min() < -900


def test_an_mr_rescaled_by_the_caller_is_still_judged_after_the_rescale(tmp_path):
    # The check reads the values meant to be HU: an intercept that puts MR units below 0 cannot
    # turn the T1 into a plausible CT here, its p99 is far above soft tissue.
    _not_ct(_nifti(tmp_path, mr_scanner_units()), ReadOptions(rescale_intercept=-1024.0))


def test_a_phantom_passes(tmp_path):
    case = generate_case(seed=3, config=PhantomConfig(shape_zyx=(24, 64, 64)))
    volume = read_volume(write_nifti(case.volume, tmp_path / "phantom.nii.gz"))
    assert volume.shape_zyx == (24, 64, 64) and not any("raw" in w for w in volume.warnings)


@pytest.mark.parametrize("name", ["abdomen_ct.nii.gz", "chest_cta_crop.nii.gz", "thorax_crop.nii.gz"])
def test_real_ct_passes(name):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"real CT data not present at {DATA} (see shared/data/README.md)")
    assert read_volume(path).warnings == []

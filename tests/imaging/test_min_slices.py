"""The minimum-slice rule counts slices in every plane: a thin stack is refused whichever way
it was acquired, and NIfTI, NRRD/MHA and DICOM agree on the same data."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from ctscribe.errors import ErrorCode, ImagingError
from imaging.options import ReadOptions
from imaging.read import read_volume
from tests.imaging.dicom_factory import write_ct_series

SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # rows along +y (posterior), columns along -z
LPS_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])  # NIfTI i -> Left, j -> Posterior, k -> Superior


def _body(shape_xyz) -> np.ndarray:
    """Air around a soft-tissue block: plain CT values, only the shape is under test."""
    data = np.full(shape_xyz, -1000, dtype=np.int16)
    data[tuple(slice(n // 4, n - n // 4) for n in shape_xyz)] = 40
    return data


def _refused(source, options=ReadOptions()) -> ImagingError:
    with pytest.raises(ImagingError) as err:
        read_volume(source, options)
    assert err.value.code is ErrorCode.TOO_FEW_SLICES
    return err.value


@pytest.mark.parametrize(
    ("shape_xyz", "plane"),
    [((2, 40, 40), "sagittal"), ((40, 2, 40), "coronal"), ((40, 40, 2), "axial")],
)
def test_a_thin_nifti_is_too_few_slices_in_any_plane(tmp_path, shape_xyz, plane):
    path = tmp_path / "thin.nii.gz"
    nib.save(nib.Nifti1Image(_body(shape_xyz), LPS_AFFINE), path)
    assert f"2 {plane} slices" in _refused(path).message


def test_a_thin_mha_is_too_few_slices(tmp_path):
    path = tmp_path / "thin.mha"
    sitk.WriteImage(sitk.GetImageFromArray(_body((40, 40, 2))), str(path))  # array [k, j, i]: i has 2
    assert "2 sagittal slices" in _refused(path).message


def test_nifti_and_dicom_agree_on_a_two_slice_sagittal_stack(tmp_path):
    data_xyz = _body((2, 40, 40))
    nifti = tmp_path / "sagittal.nii.gz"
    nib.save(nib.Nifti1Image(data_xyz, LPS_AFFINE), nifti)
    # The same voxels as two sagittal DICOM images: image k is the plane x = k, rows run along
    # y, columns along -z.
    images = np.stack([data_xyz[k][:, ::-1] for k in range(2)]).astype(np.float32)
    paths = write_ct_series(tmp_path / "dicom", images, (1.0, 1.0, 1.0), orientation=SAGITTAL)
    _refused(nifti)
    _refused(paths)


def test_the_rule_follows_min_slices(tmp_path):
    path = tmp_path / "thin.nii.gz"
    nib.save(nib.Nifti1Image(_body((4, 40, 40)), LPS_AFFINE), path)
    _refused(path, ReadOptions(min_slices=8))
    assert read_volume(path, ReadOptions(min_slices=4)).shape_zyx == (40, 40, 4)

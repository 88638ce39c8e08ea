"""The fast header walker must agree with pydicom on every file either can read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ImplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from imaging.dicom.fastparse import PIXEL_DATA, parse_header
from imaging.dicom.headers import read_headers
from tests.imaging.dicom_factory import (
    random_hu_volume,
    write_ct_series,
    write_enhanced_ct,
    write_junk,
    write_localizer,
    write_sr,
)

REAL_SERIES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ct" / "abdomen_dicom_series"


def _compare(paths: list[Path]) -> int:
    fast = {(h.path, h.frame): h for h in read_headers(paths).headers}
    slow = {(h.path, h.frame): h for h in read_headers(paths, use_fast_parser=False).headers}
    assert fast.keys() == slow.keys()
    for key, f in fast.items():
        s, path = slow[key], key[0]
        a, b = dataclasses.asdict(f), dataclasses.asdict(s)
        if f.pixel_offset is None:  # no pixel data: pydicom stops at end of file instead
            a.pop("pixel_offset"), b.pop("pixel_offset")
        assert a == b, path.name
    return len(fast)


def test_agrees_with_pydicom_on_factory_files(tmp_path):
    paths = []
    for i, syntax in enumerate(
        ["1.2.840.10008.1.2.1", ImplicitVRLittleEndian, RLELossless, JPEG2000Lossless]
    ):
        paths += write_ct_series(
            tmp_path, random_hu_volume((2, 32, 32)), (2, 1, 1), transfer_syntax=syntax, prefix=f"s{i}"
        )
    paths += [write_localizer(tmp_path), write_sr(tmp_path), write_junk(tmp_path / "junk.dcm")]
    paths.append(write_enhanced_ct(tmp_path / "enhanced.dcm", random_hu_volume((3, 8, 8)), (2, 1, 1)))
    assert _compare(paths) == len(paths) - 1 + 2  # junk skipped; the enhanced file gives 3 frames


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom complains about its own odd fixtures
def test_agrees_with_pydicom_on_pydicoms_own_test_files():
    folder = Path(get_testdata_file("CT_small.dcm")).parent
    paths = sorted(folder.glob("*.dcm"))
    assert _compare(paths) > 50  # a zoo of syntaxes, VRs, sequences and oddities


def test_agrees_with_pydicom_on_real_siemens_files():
    if not REAL_SERIES.is_dir():
        pytest.skip(f"real CT data not present at {REAL_SERIES}")
    assert _compare(sorted(REAL_SERIES.iterdir())) == 20


def test_pixel_offset_points_at_the_pixel_data_element(tmp_path):
    vol = random_hu_volume((2, 8, 8))
    path = write_ct_series(tmp_path, vol, (2, 1, 1))[0]
    values, offset = parse_header(path)
    data = path.read_bytes()
    tag = int.from_bytes(data[offset : offset + 2], "little") << 16 | int.from_bytes(
        data[offset + 2 : offset + 4], "little"
    )
    assert tag == PIXEL_DATA
    assert values["Rows"] == 8 and values["Modality"] == "CT"
    ds = pydicom.dcmread(path)
    raw = np.frombuffer(data[offset + 12 : offset + 12 + 128], dtype="<i2").reshape(8, 8)
    np.testing.assert_array_equal(raw, ds.pixel_array)


def test_long_header_beyond_the_first_read(tmp_path):
    path = write_ct_series(tmp_path, random_hu_volume((2, 8, 8)), (2, 1, 1))[0]
    ds = pydicom.dcmread(path)
    ds.add_new(0x00291010, "OB", b"\x01" * 200_000)  # a large private block, like a Siemens CSA header
    ds.save_as(path)
    values, offset = parse_header(path)
    assert offset is not None and offset > 200_000
    assert values["ImagePositionPatient"] == ["0.0000", "0.0000", "0.0000"]

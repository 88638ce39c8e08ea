"""SeriesDescription is free text (technologists type names into it): it is left out of
summaries, warnings and error messages unless `ReadOptions.show_series_description` asks."""

from __future__ import annotations

import json

import pytest

from ctscribe.errors import ImagingError
from imaging.options import ReadOptions
from imaging.read import inspect_source
from tests.imaging.dicom_factory import random_hu_volume, write_ct_series

NAME = "Doe^Jane"
SPACING = (2.0, 0.7, 0.7)


@pytest.fixture
def two_series(tmp_path):
    """A 12-slice and a 9-slice CT series whose descriptions carry a name."""
    write_ct_series(tmp_path, random_hu_volume((12, 16, 16), seed=1), SPACING, prefix="a",
                    description=f"chest {NAME} 1mm")
    write_ct_series(tmp_path, random_hu_volume((9, 16, 16), seed=2), SPACING, prefix="b",
                    description=f"{NAME} recon 2")
    return tmp_path


def test_summary_and_warnings_leave_the_description_out(two_series):
    summary = inspect_source(two_series)
    assert NAME not in json.dumps(summary)
    assert "description" not in summary["series"]
    assert len(summary["candidates"]) == 2 and any("other series" in w for w in summary["warnings"])


def test_error_listings_leave_the_description_out(two_series):
    with pytest.raises(ImagingError) as err:
        inspect_source(two_series, ReadOptions(series_uid="0123456789abcdef"))
    assert "12 images" in err.value.message and NAME not in err.value.message


def test_opt_in_shows_it_everywhere(two_series):
    options = ReadOptions(show_series_description=True)
    summary = inspect_source(two_series, options)
    assert summary["series"]["description"] == f"chest {NAME} 1mm"
    assert {c["description"] for c in summary["candidates"]} == {f"chest {NAME} 1mm", f"{NAME} recon 2"}
    assert any(NAME in w for w in summary["warnings"])
    with pytest.raises(ImagingError) as err:
        inspect_source(two_series, ReadOptions(series_uid="0123456789abcdef", show_series_description=True))
    assert NAME in err.value.message

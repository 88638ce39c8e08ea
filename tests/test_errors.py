"""The error contract shared by CLI and HTTP (DESIGN.md §3)."""

import pytest

from ctscribe.errors import CtscribeError, ErrorCode, ImagingError, http_status_for

DESIGN_CODES = (
    "unsupported_format corrupt_file unsupported_transfer_syntax not_ct too_few_slices not_3d "
    "non_uniform_spacing missing_slices gantry_tilt oblique_orientation ambiguous_series no_series "
    "archive_limits_exceeded payload_too_large invalid_request queue_full model_not_ready timeout"
).split()


def test_codes_are_exactly_the_designed_set():
    assert sorted(c.value for c in ErrorCode) == sorted(DESIGN_CODES)


@pytest.mark.parametrize("code", DESIGN_CODES)
def test_every_input_error_is_4xx_and_overload_is_retryable(code):
    status = http_status_for(ErrorCode(code))
    if code in ("queue_full", "model_not_ready"):
        assert status in (429, 503)
    elif code == "timeout":
        assert status == 504
    else:
        assert 400 <= status < 500


def test_error_carries_code_and_message():
    err = ImagingError("not_ct", "modality is MR")
    assert isinstance(err, CtscribeError)
    assert err.code is ErrorCode.NOT_CT
    assert err.to_dict() == {"code": "not_ct", "message": "modality is MR"}


def test_unknown_code_is_refused():
    with pytest.raises(ValueError):
        CtscribeError("not_a_code", "x")

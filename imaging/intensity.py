"""Is a volume's intensity distribution CT in Hounsfield units? (NIfTI, NRRD, MetaImage)

A DICOM series says what it is (Modality); a NIfTI/NRRD/MetaImage file does not, and an MR
volume read as HU gives a fluent report about nothing. The values say enough to refuse the
clear cases, judged on percentiles of a strided sample (a few stray voxels never decide):

- a body CT in HU holds air (about -1000) and fat (about -100): its 1st percentile is far
  below 0. Raw CT (CT-RATE v1, stored HU + 1024) has no negative values but its soft tissue
  sits near +1000, so its 99th percentile is well above 900: that one is only warned about,
  with the fix (pass the rescale intercept).
- values >= 0 at the 1st percentile and <= 900 at the 99th are neither: an MR (T1 scaled to
  0..255), a normalised image (0..1), a mask. `not_ct`.
- a 1st percentile above +500 HU (no air, no soft tissue: MR in scanner units, e.g. 1205 ..
  12721) or a 99th above 4000 HU (above the CT range for more than 1 % of the voxels). `not_ct`.

The check runs on the values meant to be HU, after the file's scaling or the caller's
rescale override, so raw training volumes read with their metadata's intercept pass.
"""

from __future__ import annotations

import numpy as np

from ctscribe.errors import ErrorCode, ImagingError

NO_AIR_P1_HU = 0.0
"""A 1st percentile at or above this: no air or fat in the volume."""
RAW_SOFT_TISSUE_P99 = 900.0
"""Raw CT (air ~0) reaches soft tissue (~1024) above this at the 99th percentile."""
MAX_P1_HU = 500.0
"""A 1st percentile above this: nothing as light as soft tissue (MR in scanner units)."""
MAX_P99_HU = 4000.0
"""A 99th percentile above this: beyond the CT scale (12-bit CT tops out at 3071 HU)."""
_SAMPLE_STEPS = 32
"""About this many planes sampled along each of the two outer axes."""
_RESCALE_HINT = "if it is CT stored as raw values, pass the rescale slope/intercept (e.g. intercept -1024)"


def sample_percentiles(voxels: np.ndarray) -> tuple[float, float]:
    """(1st, 99th) percentile of a strided sample of a 3D array (cheap on 512^3)."""
    sample = voxels[:: max(1, voxels.shape[0] // _SAMPLE_STEPS), :: max(1, voxels.shape[1] // _SAMPLE_STEPS)]
    p1, p99 = np.percentile(sample, [1, 99])
    return float(p1), float(p99)


def check_ct_intensities(voxels: np.ndarray, fmt: str) -> list[str]:
    """Raise `not_ct` for a distribution that cannot be CT in HU; return warnings (raw CT)."""
    p1, p99 = sample_percentiles(voxels)
    span = f"1st-99th percentile {p1:.0f} .. {p99:.0f}"
    if p1 > MAX_P1_HU or p99 > MAX_P99_HU:
        raise ImagingError(
            ErrorCode.NOT_CT,
            f"the {fmt} values are not CT Hounsfield units ({span}; CT air is about -1000 HU and "
            f"little exceeds 3000 HU): an MR or another modality? {_RESCALE_HINT}",
        )
    if p1 >= NO_AIR_P1_HU and p99 <= RAW_SOFT_TISSUE_P99:
        raise ImagingError(
            ErrorCode.NOT_CT,
            f"the {fmt} values are not CT Hounsfield units ({span}: no air or fat below 0 HU, and "
            "no soft tissue near +1000 as raw CT stores it): an MR, a normalised image or a mask?",
        )
    if p1 >= NO_AIR_P1_HU:
        return [
            f"values look like raw stored CT values, not HU ({span}): air should be near -1000 HU; "
            f"{_RESCALE_HINT}"
        ]
    return []

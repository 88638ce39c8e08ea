"""CT files -> `Volume`: NIfTI, DICOM series, NRRD/MHA; validation; the synthetic phantom."""

from imaging.errors import CtscribeError, ErrorCode, ImagingError
from imaging.volume import SeriesInfo, Volume

__all__ = ["CtscribeError", "ErrorCode", "ImagingError", "SeriesInfo", "Volume"]

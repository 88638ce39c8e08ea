"""CT files -> `Volume`: NIfTI, DICOM series, NRRD/MHA; validation; the synthetic phantom."""

from imaging.options import ReadOptions
from imaging.read import inspect_source, read_volume
from imaging.volume import SeriesInfo, Volume

__all__ = [
    "ReadOptions",
    "SeriesInfo",
    "Volume",
    "inspect_source",
    "read_volume",
]

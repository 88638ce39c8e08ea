"""DICOM series reading: header pass, series selection, geometry checks, pixel decode."""

from imaging.dicom.reader import read_dicom_series
from imaging.dicom.series import SeriesCandidate, scan_series, select_series, uid_hash

__all__ = ["SeriesCandidate", "read_dicom_series", "scan_series", "select_series", "uid_hash"]

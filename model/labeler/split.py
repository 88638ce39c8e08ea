"""The fixed dev / held-out split of the 800 manually labelled CT-RATE reports.

Reports are ordered by sha256 of their `AccessionNo` (as a decimal string); the first
`N_HELDOUT` (300) are held out and the remaining 500 are the development set. The rules in
`model/labeler/rules.py` were written by reading dev reports only; the held-out part is
only ever scored (`bench/labeler.py`, the regression test).
"""

from __future__ import annotations

import hashlib

N_HELDOUT = 300


def accession_hash(accession) -> str:
    return hashlib.sha256(str(accession).strip().encode("utf-8")).hexdigest()


def heldout_accessions(accessions) -> set[str]:
    """The held-out accession numbers (as strings) among `accessions`."""
    ordered = sorted((str(a).strip() for a in accessions), key=accession_hash)
    return set(ordered[:N_HELDOUT])


def split_frame(frame, column: str = "AccessionNo"):
    """(dev, heldout) row subsets of a pandas frame of the labelled reports."""
    held = heldout_accessions(frame[column])
    is_held = frame[column].astype(str).str.strip().isin(held)
    return frame[~is_held], frame[is_held]

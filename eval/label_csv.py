"""`ctscribe eval label`: run the 18-label labeler over a CSV of reports and write a labels CSV.

The text column is `--text-column` when given; otherwise `report_text`, or CT-RATE's reports
CSV layout (`Findings_EN` + `Impressions_EN`, joined). The output has an id column
(`VolumeName`, `AccessionNo` or `id` when present, else the row number) and one 0/1 column
per label in CT-RATE order, the layout of CT-RATE's labels CSV.
"""

from __future__ import annotations

from pathlib import Path

from ctscribe.errors import CtscribeError, ErrorCode
from ctscribe.labels import CTRATE_LABELS

ID_COLUMNS = ("VolumeName", "AccessionNo", "id")
CTRATE_TEXT_COLUMNS = ("Findings_EN", "Impressions_EN")


def report_texts(frame, text_column: str | None) -> list[str]:
    if text_column:
        if text_column not in frame.columns:
            raise CtscribeError(ErrorCode.INVALID_REQUEST,
                                f"column {text_column!r} not in CSV (columns: {', '.join(map(str, frame.columns))})")
        return frame[text_column].fillna("").astype(str).tolist()
    if "report_text" in frame.columns:
        return frame["report_text"].fillna("").astype(str).tolist()
    present = [c for c in CTRATE_TEXT_COLUMNS if c in frame.columns]
    if present:
        parts = frame[present].fillna("").astype(str)
        return [" ".join(p.strip() for p in row if p.strip()) for row in parts.itertuples(index=False)]
    raise CtscribeError(ErrorCode.INVALID_REQUEST,
                        "no report text column: pass --text-column (found: " + ", ".join(map(str, frame.columns)) + ")")


def label_csv(path: Path, out: Path, text_column: str | None = None) -> int:
    """Label every report of a CSV; returns the number of reports written."""
    import pandas as pd

    from model.labeler import label_reports

    path = Path(path)
    if not path.is_file():
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"reports CSV not found: {path}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"cannot read {path} as CSV: {exc}") from None
    labels = label_reports(report_texts(frame, text_column))
    id_column = next((c for c in ID_COLUMNS if c in frame.columns), None)
    out_frame = pd.DataFrame(labels, columns=list(CTRATE_LABELS))
    out_frame.insert(0, id_column or "row", frame[id_column].tolist() if id_column else list(range(len(frame))))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    out_frame.to_csv(out, index=False)
    return len(out_frame)

"""A `ctscribe synth` dataset -> manifest samples (through the CT-RATE importer).

The synth command writes the CT-RATE layout (imaging/phantom/dataset.py):
`<split>_reports.csv`, `<split>_predicted_labels.csv` (or `<split>_labels.csv`),
`<split>_metadata.csv`, `<split>_vqa.jsonl` and the volumes under `<split>/...`. Its volumes
store HU under v1-style names (no `_fixed`), so the dataset's convention is declared as HU
instead of the name rule; the values are still checked and a disagreement is reported.
"""

from __future__ import annotations

from pathlib import Path

from ctscribe.errors import CtscribeError, ErrorCode
from dataset.ctrate import ImportResult, import_ctrate

LABEL_FILE_NAMES = ("{split}_predicted_labels.csv", "{split}_labels.csv", "{split}_manual_labels.csv")


def synth_splits(root: Path) -> list[str]:
    """Splits present in a synth dataset (those with a reports CSV)."""
    return sorted(p.name[: -len("_reports.csv")] for p in root.glob("*_reports.csv"))


def import_phantom(root: str | Path, splits: list[str] | None = None, *, check_values: bool = True) -> ImportResult:
    """All (or the given) splits of a synth dataset as one import result."""
    root = Path(root)
    if not root.is_dir():
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"synth dataset folder not found: {root}")
    splits = splits or synth_splits(root)
    if not splits:
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{root} holds no <split>_reports.csv: not a synth dataset")
    merged = ImportResult(samples=[])
    for split in splits:
        reports = root / f"{split}_reports.csv"
        labels = next((root / n.format(split=split) for n in LABEL_FILE_NAMES if (root / n.format(split=split)).is_file()), None)
        metadata = root / f"{split}_metadata.csv"
        vqa = root / f"{split}_vqa.jsonl"
        result = import_ctrate(
            root,
            reports,
            labels_csv=labels,
            metadata_csv=metadata if metadata.is_file() else None,
            vqa_jsonl=vqa if vqa.is_file() else None,
            split=split,
            check_values=check_values,
            declared_hu_source="hu",
        )
        merged.samples.extend(result.samples)
        merged.warnings.extend(result.warnings)
        merged.skipped.extend(result.skipped)
    return merged

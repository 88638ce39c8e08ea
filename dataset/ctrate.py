"""CT-RATE (and CT-RATE-layout phantom sets) -> manifest samples.

Inputs, as CT-RATE publishes them: a reports CSV (`VolumeName, ClinicalInformation_EN,
Technique_EN, Findings_EN, Impressions_EN`), an optional labels CSV (`VolumeName` + the 18
label columns), an optional metadata CSV (`RescaleSlope, RescaleIntercept, XYSpacing`
"[0.75, 0.75]", `ZSpacing`) and an optional VQA JSONL (`{volume, question, choices?,
answer, kind?}`). Volumes live at `ROOT/{train,valid}/<split>_<pid>/<split>_<pid>_<scan>/
<name>.nii.gz`. Raw (v1) vs HU (v2) is decided per file by `volume_io.decide_hu_source`.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ctscribe.errors import CtscribeError, ErrorCode
from ctscribe.labels import CTRATE_LABELS
from dataset.manifest import Question, Sample, validate_labels
from dataset.volume_io import decide_hu_source, volume_stem

log = logging.getLogger(__name__)

REPORT_COLUMNS = ("VolumeName", "Findings_EN", "Impressions_EN")
METADATA_COLUMNS = ("VolumeName", "RescaleSlope", "RescaleIntercept")
_NAME = re.compile(r"^(?P<split>[a-z]+)_(?P<pid>\d+)_(?P<scan>[a-z]+)_(?P<rec>\d+)")


@dataclass
class ImportResult:
    samples: list[Sample]
    warnings: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Volume names in the reports CSV whose file was not found (with missing="skip")."""


def read_csv(path: str | Path, required: tuple[str, ...], what: str) -> pd.DataFrame:
    """A CSV with the columns `required` (strings kept as strings), or a clear error."""
    path = Path(path)
    if not path.is_file():
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{what} CSV not found: {path}")
    try:
        frame = pd.read_csv(path, dtype={"VolumeName": str}, keep_default_na=True)
    except Exception as exc:
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"cannot parse {what} CSV {path}: {exc}") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CtscribeError(
            ErrorCode.INVALID_REQUEST, f"{what} CSV {path} lacks column(s) {missing}; has {list(frame.columns)}"
        )
    return frame


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def parse_xy_spacing(value) -> tuple[float, float]:
    """CT-RATE's XYSpacing cell ("[0.75, 0.75]") -> (row mm, column mm)."""
    try:
        parsed = ast.literal_eval(value) if isinstance(value, str) else value
        y_mm, x_mm = (float(v) for v in parsed)
    except Exception:
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"cannot parse XYSpacing {value!r}") from None
    return y_mm, x_mm


def volume_key(name: str) -> str:
    """The join key across CSVs: the file stem without the v2 `_fixed` suffix."""
    stem = volume_stem(name)
    return stem[: -len("_fixed")] if stem.endswith("_fixed") else stem


def locate_volume(root: Path, name: str, index: Callable[[], dict[str, Path]]) -> Path | None:
    """The file for VolumeName `name`: the CT-RATE folder rule first, then a name index of ROOT."""
    key = volume_key(name)
    match = _NAME.match(key)
    if match:
        split, pid, scan = match["split"], match["pid"], match["scan"]
        folder = root / split / f"{split}_{pid}" / f"{split}_{pid}_{scan}"
        for stem in (volume_stem(name), key, key + "_fixed"):
            for suffix in (".nii.gz", ".nii"):
                candidate = folder / (stem + suffix)
                if candidate.is_file():
                    return candidate
    found = index()
    return found.get(volume_stem(name)) or found.get(key) or found.get(key + "_fixed")


def _lazy_index(root: Path) -> Callable[[], dict[str, Path]]:
    cache: dict[str, Path] = {}
    built = False

    def index() -> dict[str, Path]:
        nonlocal built
        if not built:
            for path in sorted(root.rglob("*.nii*")):
                cache.setdefault(volume_stem(path), path)
            built = True
        return cache

    return index


def read_vqa_jsonl(path: str | Path) -> dict[str, list[Question]]:
    """`{volume, question, choices?, answer, kind?}` lines -> questions per volume key."""
    path = Path(path)
    out: dict[str, list[Question]] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(raw, dict) or not isinstance(raw.get("volume"), str):
                raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{where}: each line needs a 'volume' string")
            question = Question.from_dict(raw, where)
            out.setdefault(volume_key(raw["volume"]), []).append(question)
    return out


def import_ctrate(
    root: str | Path,
    reports_csv: str | Path,
    *,
    labels_csv: str | Path | None = None,
    metadata_csv: str | Path | None = None,
    vqa_jsonl: str | Path | None = None,
    extra_questions: dict[str, list[Question]] | None = None,
    split: str | None = None,
    check_values: bool = True,
    missing: str = "skip",
    workers: int = 4,
    declared_hu_source: str | None = None,
) -> ImportResult:
    """Build manifest samples for every row of `reports_csv` whose volume exists under `root`.

    `missing` = "skip" (warn and leave the row out) or "error". Volumes without a metadata
    row are taken as slope 1 / intercept -1024 when they turn out to be raw (CT-RATE's
    values for every volume) with a warning. `workers` threads read the value samples.
    """
    root = Path(root)
    if not root.is_dir():
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"dataset root is not a folder: {root}")
    reports = read_csv(reports_csv, REPORT_COLUMNS, "reports")
    labels = _labels_by_key(labels_csv) if labels_csv else {}
    metadata = _metadata_by_key(metadata_csv) if metadata_csv else {}
    questions = read_vqa_jsonl(vqa_jsonl) if vqa_jsonl else {}
    for key, extra in (extra_questions or {}).items():
        questions.setdefault(volume_key(key), []).extend(extra)

    result = ImportResult(samples=[])
    index = _lazy_index(root)
    rows = []
    for row in reports.itertuples(index=False):
        name = _text(row.VolumeName)
        path = locate_volume(root, name, index)
        if path is None:
            message = f"volume {name!r} from the reports CSV was not found under {root}"
            if missing == "error":
                raise CtscribeError(ErrorCode.INVALID_REQUEST, message)
            result.skipped.append(name)
            result.warnings.append(message)
            continue
        rows.append((name, path, row))

    def build(item) -> tuple[Sample, list[str]]:
        name, path, row = item
        return _sample(name, path, row, root, labels, metadata, questions, split, check_values, declared_hu_source)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for sample, warnings in pool.map(build, rows):
            result.samples.append(sample)
            result.warnings.extend(warnings)
    for warning in result.warnings:
        log.warning(warning)
    return result


def _sample(name, path: Path, row, root, labels, metadata, questions, split, check_values, declared=None):
    warnings: list[str] = []
    key = volume_key(name)
    meta = metadata.get(key)
    if meta is None:
        slope, intercept, spacing = 1.0, -1024.0, None
    else:
        slope, intercept, spacing = meta
    decision = decide_hu_source(path, slope, intercept, check_values=check_values, declared=declared)
    if decision.warning:
        warnings.append(decision.warning)
    if decision.hu_source == "raw" and meta is None:
        warnings.append(f"{name}: raw values but no metadata row; assuming slope 1 / intercept -1024")
    sample_split = split or _split_of(path, root, key)
    # HU volumes keep slope 1 / intercept 0 so nothing downstream can apply the metadata twice.
    is_raw = decision.hu_source == "raw"
    return (
        Sample(
            id=volume_stem(name),
            volume=str(path.resolve()),
            findings=_text(row.Findings_EN),
            impression=_text(row.Impressions_EN),
            labels=labels.get(key),
            questions=tuple(questions.get(key, ())),
            split=sample_split,
            hu_source=decision.hu_source,
            rescale_slope=slope if is_raw else 1.0,
            rescale_intercept=intercept if is_raw else 0.0,
            spacing_mm_zyx=spacing,
            hu_check=decision.evidence,
        ),
        warnings,
    )


def _split_of(path: Path, root: Path, key: str) -> str:
    relative = path.resolve().relative_to(root.resolve()).parts
    if len(relative) > 1:
        return relative[0]
    match = _NAME.match(key)
    return match["split"] if match else "train"


def _labels_by_key(path) -> dict[str, dict[str, int]]:
    frame = read_csv(path, ("VolumeName", *CTRATE_LABELS), "labels")
    out = {}
    for record in frame.to_dict(orient="records"):
        where = f"{path}: {record['VolumeName']}"
        values = {n: _label_value(record[n], where, n) for n in CTRATE_LABELS}
        out[volume_key(record["VolumeName"])] = validate_labels(values, where)
    return out


def _label_value(value, where, name):
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if number not in (0.0, 1.0):
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{where}: label {name!r} must be 0 or 1, got {value!r}")
    return int(number)


def _metadata_by_key(path) -> dict[str, tuple[float, float, tuple[float, float, float] | None]]:
    frame = read_csv(path, METADATA_COLUMNS, "metadata")
    has_spacing = "XYSpacing" in frame.columns and "ZSpacing" in frame.columns
    out = {}
    for record in frame.to_dict(orient="records"):
        name = record["VolumeName"]
        try:
            slope, intercept = float(record["RescaleSlope"]), float(record["RescaleIntercept"])
        except (TypeError, ValueError):
            slope, intercept = math.nan, math.nan
        if not (math.isfinite(slope) and math.isfinite(intercept)) or slope == 0:
            raise CtscribeError(
                ErrorCode.INVALID_REQUEST,
                f"{path}: {name}: RescaleSlope/RescaleIntercept must be numbers "
                f"(got {record['RescaleSlope']!r}, {record['RescaleIntercept']!r})",
            )
        spacing = None
        if has_spacing and _text(record["XYSpacing"]) and _text(record["ZSpacing"]):
            y_mm, x_mm = parse_xy_spacing(record["XYSpacing"])
            spacing = (float(record["ZSpacing"]), y_mm, x_mm)
        out[volume_key(name)] = (slope, intercept, spacing)
    return out

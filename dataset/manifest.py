"""The training manifest: one JSONL line per CT volume with its report, labels and questions.

Every importer (CT-RATE, SAMF's MCQ CSV, `ctscribe synth` phantom sets) writes this one
format and every training stage reads it, so the stages never see a source's quirks. A line:

    {"id": "train_1_a_1", "volume": "train/train_1/train_1_a/train_1_a_1.nii.gz",
     "findings": "...", "impression": "...", "labels": {"Medical material": 0, ...} | null,
     "questions": [{"question": "...", "choices": ["..", ..] | null, "answer": "...",
                    "kind": "mcq" | "free"}],
     "split": "train", "hu_source": "hu" | "raw", "rescale_slope": 1.0,
     "rescale_intercept": -1024.0, "spacing_mm_zyx": [1.5, 0.75, 0.75] | null,
     "hu_check": {...} | null}

`volume` may be relative: it is resolved against the manifest file's folder. `hu_source`
"raw" means the stored values are scanner values and `value * slope + intercept` gives HU
(CT-RATE v1); "hu" means the values are HU already and slope/intercept are never applied
(CT-RATE v2 `*_fixed`, phantoms). `hu_check` records how that was decided.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ctscribe.errors import CtscribeError, ErrorCode
from ctscribe.labels import CTRATE_LABELS

HU_SOURCES = ("hu", "raw")
QUESTION_KINDS = ("mcq", "free")


def _bad(where: str, message: str) -> CtscribeError:
    return CtscribeError(ErrorCode.INVALID_REQUEST, f"{where}: {message}")


@dataclass(frozen=True)
class Question:
    """One visual question about a volume."""

    question: str
    answer: str
    """For `mcq`, always one of `choices` (the text, not the letter)."""
    kind: str = "free"
    """`mcq` (scored by choice likelihood) or `free` (free-text answer)."""
    choices: tuple[str, ...] | None = None

    def to_dict(self) -> dict:
        out: dict = {"question": self.question, "answer": self.answer, "kind": self.kind}
        if self.choices is not None:
            out["choices"] = list(self.choices)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping, where: str = "question") -> Question:
        if not isinstance(raw, Mapping):
            raise _bad(where, f"a question must be an object, got {type(raw).__name__}")
        question, answer = raw.get("question"), raw.get("answer")
        if not isinstance(question, str) or not question.strip():
            raise _bad(where, "'question' must be a non-empty string")
        if not isinstance(answer, str) or not answer.strip():
            raise _bad(where, "'answer' must be a non-empty string")
        choices = raw.get("choices")
        if choices is not None:
            if not isinstance(choices, list) or len(choices) < 2 or not all(
                isinstance(c, str) and c.strip() for c in choices
            ):
                raise _bad(where, "'choices' must be a list of at least 2 non-empty strings")
            choices = tuple(choices)
        kind = raw.get("kind") or ("mcq" if choices else "free")
        if kind not in QUESTION_KINDS:
            raise _bad(where, f"'kind' must be one of {QUESTION_KINDS}, got {kind!r}")
        if kind == "mcq":
            if not choices:
                raise _bad(where, "an 'mcq' question needs 'choices'")
            if answer not in choices:
                raise _bad(where, f"the answer {answer!r} is not one of the choices {list(choices)}")
        return cls(question=question, answer=answer, kind=kind, choices=choices)


@dataclass(frozen=True)
class Sample:
    """One CT volume and everything supervised about it."""

    id: str
    volume: str
    """Path of the volume file (absolute once read through `read_manifest`)."""
    findings: str = ""
    impression: str = ""
    labels: dict[str, int] | None = None
    """The 18 CT-RATE labels (0/1), or None when the volume has no labels."""
    questions: tuple[Question, ...] = ()
    split: str = "train"
    hu_source: str = "hu"
    """`hu`: stored values are HU. `raw`: HU = value * rescale_slope + rescale_intercept."""
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    spacing_mm_zyx: tuple[float, float, float] | None = None
    """Overrides the file header's spacing (CT-RATE v1 headers are unreliable); None keeps it."""
    hu_check: dict | None = field(default=None, compare=False)
    """Evidence behind `hu_source` (name rule, value statistics, any disagreement)."""

    @property
    def report(self) -> str:
        """Findings and impression as one report text (what generation is trained on)."""
        parts = [p.strip() for p in (self.findings, self.impression) if p and p.strip()]
        return "\n".join(parts)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "volume": self.volume,
            "findings": self.findings,
            "impression": self.impression,
            "labels": dict(self.labels) if self.labels is not None else None,
            "questions": [q.to_dict() for q in self.questions],
            "split": self.split,
            "hu_source": self.hu_source,
            "rescale_slope": self.rescale_slope,
            "rescale_intercept": self.rescale_intercept,
            "spacing_mm_zyx": list(self.spacing_mm_zyx) if self.spacing_mm_zyx else None,
            "hu_check": self.hu_check,
        }

    @classmethod
    def from_dict(cls, raw: Mapping, where: str = "sample") -> Sample:
        if not isinstance(raw, Mapping):
            raise _bad(where, f"a sample must be a JSON object, got {type(raw).__name__}")
        for key in ("id", "volume"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise _bad(where, f"'{key}' must be a non-empty string")
        for key in ("findings", "impression", "split"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raise _bad(where, f"'{key}' must be a string")
        hu_source = raw.get("hu_source", "hu")
        if hu_source not in HU_SOURCES:
            raise _bad(where, f"'hu_source' must be one of {HU_SOURCES}, got {hu_source!r}")
        slope = _finite(raw.get("rescale_slope", 1.0), f"{where}: 'rescale_slope'")
        intercept = _finite(raw.get("rescale_intercept", 0.0), f"{where}: 'rescale_intercept'")
        if slope == 0:
            raise _bad(where, "'rescale_slope' must not be 0")
        questions_raw = raw.get("questions") or []
        if not isinstance(questions_raw, list):
            raise _bad(where, "'questions' must be a list")
        questions = tuple(
            Question.from_dict(q, f"{where}: questions[{i}]") for i, q in enumerate(questions_raw)
        )
        return cls(
            id=raw["id"],
            volume=raw["volume"],
            findings=raw.get("findings") or "",
            impression=raw.get("impression") or "",
            labels=validate_labels(raw.get("labels"), where),
            questions=questions,
            split=raw.get("split") or "train",
            hu_source=hu_source,
            rescale_slope=slope,
            rescale_intercept=intercept,
            spacing_mm_zyx=_spacing(raw.get("spacing_mm_zyx"), where),
            hu_check=raw.get("hu_check"),
        )


def _finite(value, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{where} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{where} must be finite, got {value!r}")
    return out


def _spacing(value, where: str) -> tuple[float, float, float] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise _bad(where, "'spacing_mm_zyx' must be a list of 3 numbers or null")
    out = tuple(_finite(v, f"{where}: 'spacing_mm_zyx'") for v in value)
    if min(out) <= 0:
        raise _bad(where, f"'spacing_mm_zyx' must be positive, got {list(out)}")
    return out  # type: ignore[return-value]


def validate_labels(labels, where: str = "labels") -> dict[str, int] | None:
    """The 18 CT-RATE labels as {name: 0/1} in CT-RATE order; None passes through."""
    if labels is None:
        return None
    if not isinstance(labels, Mapping):
        raise _bad(where, "'labels' must be an object of the 18 CT-RATE labels or null")
    missing = [n for n in CTRATE_LABELS if n not in labels]
    unknown = [n for n in labels if n not in CTRATE_LABELS]
    if missing or unknown:
        raise _bad(where, f"'labels' must have exactly the 18 CT-RATE labels (missing {missing}, unknown {unknown})")
    out = {}
    for name in CTRATE_LABELS:
        value = labels[name]
        if value in (0, 1) and not isinstance(value, str):
            out[name] = int(value)
        else:
            raise _bad(where, f"label {name!r} must be 0 or 1, got {value!r}")
    return out


def read_manifest(path: str | Path, *, check_files: bool = False) -> list[Sample]:
    """Read and validate a manifest; relative volume paths become absolute.

    Errors name the file and line. `check_files` also requires every volume to exist.
    """
    path = Path(path)
    if not path.is_file():
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"manifest not found: {path}")
    base = path.resolve().parent
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _bad(where, f"not valid JSON ({exc.msg})") from None
            sample = Sample.from_dict(raw, where)
            if sample.id in seen:
                raise _bad(where, f"duplicate id {sample.id!r} (first on line {seen[sample.id]})")
            seen[sample.id] = line_no
            volume = Path(sample.volume)
            if not volume.is_absolute():
                volume = base / volume
            if check_files and not volume.exists():
                raise _bad(where, f"volume file not found: {volume}")
            samples.append(_replace_volume(sample, str(volume)))
    if not samples:
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"manifest {path} has no samples")
    return samples


def _replace_volume(sample: Sample, volume: str) -> Sample:
    from dataclasses import replace

    return replace(sample, volume=volume)


def write_manifest(path: str | Path, samples: Iterable[Sample], *, relative_to_manifest: bool = True) -> Path:
    """Write samples as JSONL atomically (temp file + rename); returns the path.

    With `relative_to_manifest`, volume paths under the manifest's folder are stored
    relative to it, so a dataset folder can be moved as a whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for sample in samples:
                row = sample.to_dict()
                if relative_to_manifest:
                    volume = Path(sample.volume).resolve()
                    if volume.is_relative_to(base):
                        row["volume"] = str(volume.relative_to(base))
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def filter_split(samples: Iterable[Sample], split: str | None) -> list[Sample]:
    """Samples of one split (all of them for None)."""
    out = [s for s in samples if split is None or s.split == split]
    if not out:
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"no samples in split {split!r}")
    return out

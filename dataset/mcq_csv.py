"""SAMF's multiple-choice CSV (`Question ID, Image, Question, Choice A..D, Answer Choice,
Answer`) -> manifest questions, keyed by volume.

The letter in `Answer Choice` decides the answer; the `Answer` text is a cross-check (SAMF
writes it as "b. text." or just the text) and a mismatch is reported, never silently used.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ctscribe.errors import CtscribeError, ErrorCode
from dataset.ctrate import _text, read_csv, volume_key
from dataset.manifest import Question, Sample

log = logging.getLogger(__name__)

LETTERS = ("A", "B", "C", "D")
MCQ_COLUMNS = ("Question ID", "Image", "Question", *(f"Choice {x}" for x in LETTERS), "Answer Choice")
_LETTER_PREFIX = re.compile(r"^\s*\(?([a-dA-D])[\.\)]\s*")


@dataclass
class McqImport:
    questions: dict[str, list[Question]]
    """Volume key (file stem without `_fixed`) -> its questions."""
    warnings: list[str] = field(default_factory=list)


def _normalise(text: str) -> str:
    text = _LETTER_PREFIX.sub("", text)
    return re.sub(r"[\s\.]+$", "", text).strip().lower()


def read_mcq_csv(path: str | Path) -> McqImport:
    frame = read_csv(path, MCQ_COLUMNS, "MCQ")
    out = McqImport(questions={})
    has_answer_text = "Answer" in frame.columns
    for record in frame.to_dict(orient="records"):
        qid = _text(record["Question ID"])
        where = f"{path}: question {qid!r}"
        image = _text(record["Image"])
        if not image:
            raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{where}: empty 'Image'")
        choices = [_text(record[f"Choice {x}"]) for x in LETTERS]
        # Some questions have fewer than four options; empty trailing cells are not choices.
        while choices and not choices[-1]:
            choices.pop()
        if len(choices) < 2 or not all(choices):
            raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{where}: needs at least 2 non-empty choices")
        letter = _text(record["Answer Choice"]).strip("(). ").upper()
        if letter not in LETTERS[: len(choices)]:
            raise CtscribeError(
                ErrorCode.INVALID_REQUEST,
                f"{where}: 'Answer Choice' must be one of {list(LETTERS[: len(choices)])}, got {record['Answer Choice']!r}",
            )
        answer = choices[LETTERS.index(letter)]
        if has_answer_text:
            stated = _text(record["Answer"])
            if stated and _normalise(stated) != _normalise(answer):
                out.warnings.append(
                    f"{where}: 'Answer' {stated!r} differs from choice {letter} {answer!r}; using choice {letter}"
                )
        question = Question(question=_text(record["Question"]), answer=answer, kind="mcq", choices=tuple(choices))
        if not question.question:
            raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{where}: empty 'Question'")
        out.questions.setdefault(volume_key(Path(image).name), []).append(question)
    for warning in out.warnings:
        log.warning(warning)
    return out


def attach_questions(samples: list[Sample], questions: dict[str, list[Question]]) -> tuple[list[Sample], list[str]]:
    """Add questions to the samples of their volume; returns (samples, keys with no sample)."""
    by_key = {volume_key(Path(s.volume).name): i for i, s in enumerate(samples)}
    out = list(samples)
    unmatched = []
    for key, extra in questions.items():
        i = by_key.get(key)
        if i is None:
            unmatched.append(key)
            continue
        out[i] = replace(out[i], questions=out[i].questions + tuple(extra))
    return out, unmatched

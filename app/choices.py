"""Multiple-choice options as `ctscribe vqa --choice` and `POST /vqa` take them (one rule for both).

2 to 4 options: SAMF's multiple-choice questions (and the SAMF MCQ CSV: `Choice A..D`) have
four, lettered a-d, and that is what the models are trained and evaluated on. Options are
non-empty, at most `MAX_CHOICE_CHARS`, and distinct (ignoring case and spacing): two equal
options would split one answer's probability between two letters.
"""

from __future__ import annotations

from collections.abc import Sequence

from ctscribe.errors import CtscribeError, ErrorCode

MIN_CHOICES = 2
MAX_CHOICES = 4
MAX_CHOICE_CHARS = 500


def _invalid(message: str) -> CtscribeError:
    return CtscribeError(ErrorCode.INVALID_REQUEST, f"choices: {message}")


def check_choices(choices: Sequence[object]) -> tuple[str, ...]:
    """The options stripped of surrounding spaces; `invalid_request` for any rule broken.
    Messages name options by position, never by their text."""
    if not all(isinstance(c, str) for c in choices):
        raise _invalid("expected a list of strings")
    cleaned = tuple(c.strip() for c in choices)  # type: ignore[union-attr]
    if not MIN_CHOICES <= len(cleaned) <= MAX_CHOICES:
        raise _invalid(f"give {MIN_CHOICES} to {MAX_CHOICES} options (a-d, as in SAMF's multiple-choice "
                       f"questions), got {len(cleaned)}")
    first_seen: dict[str, int] = {}
    for i, choice in enumerate(cleaned, start=1):
        if not choice:
            raise _invalid(f"option {i} is empty")
        if len(choice) > MAX_CHOICE_CHARS:
            raise _invalid(f"option {i} is longer than {MAX_CHOICE_CHARS} characters")
        key = " ".join(choice.casefold().split())
        if key in first_seen:
            raise _invalid(f"options {first_seen[key]} and {i} are the same")
        first_seen[key] = i
    return cleaned

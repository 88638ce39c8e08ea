"""A freely generated multiple-choice answer -> the option it names (mcq_mode "generate").

The SAMF release answers a multiple-choice question by generating text; it was trained on
targets written `"b. Mild recessions."` (the letter, a dot, the option text, a dot), and its
evaluation keeps the generated text. This reads that text back to an option, in order:
1. it starts with an option letter followed by `.`, `)` or `:` (`"b. ..."`, `"(b) ..."`,
   `"B: ..."`), or is the bare letter;
2. else, with punctuation, case and spacing ignored, it equals one option's text;
3. else exactly one option's text occurs in it.
Anything else (no letter, several options named, an empty answer) is unparsed: `None`, and
the caller keeps the raw text and says so.
"""

from __future__ import annotations

import re

from model.prompts import LETTERS

_LEADING_LETTER = re.compile(r"^\s*\(?([a-zA-Z])(?:[.):]|\s*$)")
_NON_WORD = re.compile(r"[^\w]+")


def _normal(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def parse_choice(text: str, choices: list[str]) -> int | None:
    """The index of the option `text` names, or None when it names none (or several)."""
    match = _LEADING_LETTER.match(text)
    if match:
        index = LETTERS.find(match.group(1).lower())
        if 0 <= index < len(choices):
            return index
    said = _normal(text)
    if not said:
        return None
    options = [_normal(c) for c in choices]
    exact = [i for i, o in enumerate(options) if o and o == said]
    if len(exact) == 1:
        return exact[0]
    contained = [i for i, o in enumerate(options) if o and re.search(rf"\b{re.escape(o)}\b", said)]
    # An option inside another ("nodule" in "no nodule") is ambiguous only if both match;
    # keep the longest match when it contains all the others.
    if len(contained) > 1:
        longest = max(contained, key=lambda i: len(options[i]))
        if all(options[i] in options[longest] for i in contained):
            contained = [longest]
    return contained[0] if len(contained) == 1 else None

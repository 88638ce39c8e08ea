"""Sentences, clauses, and whether a finding mention in them is negated or uncertain.

Report sentences are split on sentence punctuation and on the `"` that joins CT-RATE's
findings and impression parts. Inside a sentence, a negation cue applies to a mention in the
same clause: a pre-cue ("no", "without", "absence of") to mentions after it, a post-cue
("was not observed", "were not detected", "not seen") to mentions before it. Clauses end at
";", ":", "but", "however", "although", "whereas", "while" and at ", and"/"and" joining a new
clause that carries its own verb, so "no effusion, but atelectasis is seen" keeps the
atelectasis. Uncertainty cues ("?", "possible", "suspicious for", "cannot be excluded")
mark a mention uncertain; the labeler decides what an uncertain mention counts as.
"""

from __future__ import annotations

import re

_SENTENCE_SPLIT = re.compile(r'(?<=[.!?])\s+(?=[A-Za-z(\d])|"|\n+|•|(?<=[a-z)])\.(?=[A-Z])')
# Boundaries that end a negation's scope inside a sentence.
_CLAUSE_SPLIT = re.compile(
    r";|:|\bbut\b|\bhowever\b|\balthough\b|\bwhereas\b|\bwhile\b|\bexcept\b|\bapart from\b"
)
# "and" / "," start a new clause only when the text before them already has its own verb
# ("atelectasis is seen and effusion was not detected"), not inside a noun phrase list
# ("no pathologically sized and configured lymph nodes were detected").
_SOFT_SPLIT = re.compile(r",?\s*\band\b|,")
_VERB = re.compile(
    r"\b(?:is|are|was|were|has|have|had|observed|seen|detected|noted|found|identified|present|"
    r"monitored|appear\w*|show\w*|reveal\w*|evaluated)\b"
)
_NEW_CLAUSE_START = re.compile(
    r"\s*(?:there\s+(?:is|are|was|were)|an?\s|(?:[\w-]+\s+){0,6}(?:was|were|is|are)\b)"
)

PRE_NEGATION = re.compile(
    r"\b(?:no|without|absence of|absent|negative for|free of|neither|nor|rule out|ruled out|"
    r"not (?:a |an )?(?:significant |obvious )?(?:evidence|sign)s? of|no evidence of|"
    r"did not (?:show|reveal|detect)|not (?:observed|detected|seen))\b"
)
POST_NEGATION = re.compile(
    r"\b(?:(?:was|were|is|are|has|have|could|can|did)\s+not(?:\s+been)?\s+"
    r"(?:be\s+)?(?:observed|detected|seen|noted|found|identified|present|monitored|visualized|"
    r"evident|determined|encountered|considered|reported|distinguished|shown|show|described|"
    r"recognized|viewed|followed)"
    r"|not (?:observed|detected|seen|noted|found|identified|present|monitored|evident)"
    r"|(?:was|were|is|are) (?:absent|resolved|regressed)|disappeared|no longer|(?:is|are|was|were) normal"
    r"|within normal limits)\b"
)
UNCERTAIN = re.compile(
    r"\?|\b(?:possible|possibly|probable|probably|suspicious|suspected|suspicion|questionable|"
    r"cannot be (?:excluded|ruled out|distinguished)|could not be (?:excluded|ruled out)|"
    r"not excluded|differential diagnosis|may be|might be|likely|consistent with|compatible with|"
    r"in favor of|favor|doubtful|equivocal|indeterminate)\b"
)


def split_sentences(text: str) -> list[str]:
    """Lowercased sentences of a report (CT-RATE's `"` separators count as sentence ends)."""
    parts = _SENTENCE_SPLIT.split(text or "")
    return [p.strip().lower() for p in parts if p and p.strip()]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) in `text` of each sentence `split_sentences` returns, in the same order.

    For callers that must edit the original text (case and separators kept):
    `[text[a:b].lower() for a, b in sentence_spans(text)] == split_sentences(text)`.
    """
    spans, start = [], 0
    for sep in [*_SENTENCE_SPLIT.finditer(text or ""), None]:
        end = len(text or "") if sep is None else sep.start()
        part = text[start:end]
        if part.strip():
            lead = len(part) - len(part.lstrip())
            spans.append((start + lead, start + len(part.rstrip())))
        if sep is not None:
            start = sep.end()
    return spans


def clause_spans(sentence: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the clauses of one sentence."""
    hard, start = [], 0
    for match in _CLAUSE_SPLIT.finditer(sentence):
        hard.append((start, match.start()))
        start = match.end()
    hard.append((start, len(sentence)))
    spans = []
    for h_start, h_end in hard:
        start = h_start
        for match in _SOFT_SPLIT.finditer(sentence, h_start, h_end):
            rest = sentence[match.end():h_end]
            if _VERB.search(sentence, start, match.start()) and _NEW_CLAUSE_START.match(rest):
                spans.append((start, match.start()))
                start = match.end()
        spans.append((start, h_end))
    return [(a, b) for a, b in spans if b > a]


def mention_status(sentence: str, start: int, end: int) -> str:
    """'negated', 'uncertain' or 'positive' for the mention at sentence[start:end]."""
    # The clause holding the end of the mention: patterns such as "right ... effusion" may
    # start in an earlier clause, but their head word is last.
    for c_start, c_end in clause_spans(sentence):
        if c_start < end <= c_end:
            before = sentence[c_start:start] if start >= c_start else sentence[c_start:end]
            after = sentence[end:c_end]
            break
    else:
        c_start, before, after = 0, sentence[:start], sentence[end:]
    if PRE_NEGATION.search(before) or POST_NEGATION.search(sentence[max(start, c_start):end] + after):
        return "negated"
    if UNCERTAIN.search(before) or UNCERTAIN.search(after) or sentence.rstrip().endswith("?"):
        return "uncertain"
    return "positive"

"""Consistency guard: the report labeler reads the generated text and checks it against the label head.

DESIGN.md §7. After a report is generated, `model.labeler` (the 18-label rule labeler that
scores reports) says for each label whether the text asserts it, negates it or never
mentions it. A *confident disagreement* is a head probability >= `PRESENT_MIN` while the
text negates the finding or is silent about it, or a probability <= `ABSENT_MAX` while the
text asserts it. Each one becomes a structured warning on the `ReportOutput`:

    {"code": "report_contradicts_label_head", "finding", "head_probability",
     "text_says": "absent" | "not_mentioned" | "present", "sentences": [...], "message"}

Modes: `off` checks nothing; `warn` (default) only warns; `repair` also drops the offending
sentences (those holding the contradicting mention) and marks the warning
`"repaired": "dropped"`. A confidently present finding the text never mentions cannot be
repaired by dropping and no text is invented for it: it stays a warning. Pure text
processing, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from model.errors import invalid
from model.results import ReportOutput

MODES = ("off", "warn", "repair")
CODE = "report_contradicts_label_head"

PRESENT_MIN = 0.8
"""Head probability at or above which a finding counts as confidently present.

The head is trained as 18 independent sigmoids and read at 0.5. The guard must speak about
the *text*, not about a borderline head: between 0.2 and 0.8 the head itself is unsure and
a report saying either thing is defensible, so only probabilities 0.3 past the decision
point on either side count as a disagreement worth a warning (or a repair)."""
ABSENT_MAX = 0.2
"""Head probability at or below which a finding counts as confidently absent (see PRESENT_MIN)."""

# What a labeler mention status says about its finding (excluded mentions are about something else).
_SAYS = {"positive": "present", "uncertain": "present", "negated": "absent"}


def check_mode(mode: str) -> str:
    """`mode` if it is one of MODES, else an invalid_request error."""
    if mode not in MODES:
        raise invalid(f"consistency must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def _mentions(text: str) -> list[tuple[int, str, str]]:
    """(sentence index, label, present|absent) for every mention the labeler finds."""
    from model.labeler.labeler import find_mentions
    from model.labeler.negation import sentence_spans

    found = []
    for i, (start, end) in enumerate(sentence_spans(text)):
        for m in find_mentions(text[start:end]):
            if m["status"] in _SAYS:
                found.append((i, m["label"], _SAYS[m["status"]]))
    return found


def disagreements(text: str, probabilities: dict[str, float], labels: Iterable[str]) -> list[dict]:
    """The confident disagreements between `text` and the head's `probabilities`, over `labels`.

    `labels`: the findings the model's label head is trained on (others are not checked).
    Each warning's `sentence_indices` indexes `model.labeler.negation.sentence_spans(text)`.
    """
    from model.labeler.negation import sentence_spans

    spans = sentence_spans(text)
    mentions = _mentions(text)
    warnings = []
    for label in labels:
        p = probabilities.get(label)
        if p is None:
            continue
        said = {says for _, name, says in mentions if name == label}
        # The labeler's rule: one asserting (or uncertain) mention makes a finding present.
        text_says = "present" if "present" in said else ("absent" if said else "not_mentioned")
        if p >= PRESENT_MIN and text_says != "present":
            bad = "absent"
        elif p <= ABSENT_MAX and text_says == "present":
            bad = "present"
        else:
            continue
        indices = sorted({i for i, name, says in mentions if name == label and says == bad})
        state = "present" if p >= PRESENT_MIN else "absent"
        warnings.append({
            "code": CODE,
            "finding": label,
            "head_probability": round(float(p), 4),
            "text_says": text_says,
            "sentences": [text[spans[i][0]:spans[i][1]] for i in indices],
            "message": f"the label head says {label} is {state} (p={p:.2f}) but the report "
                       + ("never mentions it" if text_says == "not_mentioned" else f"says it is {text_says}"),
            "sentence_indices": indices,
        })
    return warnings


def drop_sentences(text: str, indices: Iterable[int]) -> str:
    """`text` without the sentences at `indices` (of `sentence_spans`).

    A dropped sentence takes the whitespace after it along; a structural separator (a newline
    run, CT-RATE's `"` between findings and impression) is kept for what follows.
    """
    from model.labeler.negation import sentence_spans

    spans = sentence_spans(text)
    drop = set(indices)
    out, pos = [], 0
    for i, (start, end) in enumerate(spans):
        if i not in drop:
            continue
        next_start = spans[i + 1][0] if i + 1 < len(spans) else len(text)
        gap = text[end:next_start]
        if gap.strip() in ("", "."):  # plain whitespace, or the period a glued "effusion.Heart" split on
            end = next_start
        else:
            end += len(gap) - len(gap.lstrip(" \t"))
        out.append(text[pos:start])
        pos = end
    out.append(text[pos:])
    return "".join(out).strip()


def guard(output: ReportOutput, labels: Iterable[str], mode: str = "warn") -> ReportOutput:
    """Check one generated report against its own label head; add warnings, repair if asked.

    Returns `output` (changed in place): `warnings` extended, `text` without the offending
    sentences in `repair` mode.
    """
    if check_mode(mode) == "off" or not output.labels:
        return output
    found = disagreements(output.text, output.labels, labels)
    if mode == "repair":
        drop = {i for w in found for i in w["sentence_indices"]}
        if drop:
            output.text = drop_sentences(output.text, drop)
        for w in found:
            if w["sentence_indices"]:
                w["repaired"] = "dropped"
    for w in found:
        del w["sentence_indices"]
    output.warnings.extend(found)
    return output

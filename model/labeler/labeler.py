"""Rule-based extraction of the 18 CT-RATE abnormality labels from chest CT report text.

A label is positive when at least one of its mentions (`rules.LABEL_RULES`) in the report
is neither negated nor excluded; an uncertain mention ("?", "possible", "compatible with")
counts as positive unless `LabelerConfig.uncertain_as_positive` is False.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ctscribe.labels import CTRATE_LABELS
from model.labeler.negation import mention_status, split_sentences
from model.labeler.rules import LABEL_RULES

# An exclude pattern voids a mention when it occurs within this many characters of it.
EXCLUDE_WINDOW_CHARS = 60


@dataclass(frozen=True)
class LabelerConfig:
    uncertain_as_positive: bool = True
    """Whether an uncertain mention ("nodule?", "possible consolidation") makes the label positive."""


@lru_cache(maxsize=1)
def _compiled() -> dict[str, tuple[list[re.Pattern], list[re.Pattern]]]:
    return {
        label: ([re.compile(p) for p in LABEL_RULES[label]["include"]],
                [re.compile(p) for p in LABEL_RULES[label].get("exclude", [])])
        for label in CTRATE_LABELS
    }


def find_mentions(text: str) -> list[dict]:
    """Every mention: {label, sentence, span, status in {positive, negated, uncertain, excluded}}."""
    mentions = []
    for sentence in split_sentences(text):
        for label, (includes, excludes) in _compiled().items():
            for pattern in includes:
                for match in pattern.finditer(sentence):
                    window = sentence[max(0, match.start() - EXCLUDE_WINDOW_CHARS):match.end() + EXCLUDE_WINDOW_CHARS]
                    excluded = any(ex.search(window) for ex in excludes)
                    status = "excluded" if excluded else mention_status(sentence, match.start(), match.end())
                    mentions.append({"label": label, "sentence": sentence, "span": match.span(),
                                     "text": match.group(0), "status": status})
    return mentions


def label_report(text: str, config: LabelerConfig | None = None) -> dict[str, int]:
    """0/1 for each of the 18 CT-RATE labels, in CT-RATE order."""
    config = config or LabelerConfig()
    counting = {"positive", "uncertain"} if config.uncertain_as_positive else {"positive"}
    positive = {m["label"] for m in find_mentions(text) if m["status"] in counting}
    return {label: int(label in positive) for label in CTRATE_LABELS}


def label_reports(texts: list[str], config: LabelerConfig | None = None) -> list[dict[str, int]]:
    return [label_report(t, config) for t in texts]

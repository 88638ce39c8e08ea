"""Where and how large: the attributes of a finding, read from report text.

For each finding the labeler marks present, the first sentence that mentions it positively
is read for its lobe ("the upper lobe of the right lung", "right upper lobe"), side
("bilateral", "on the left"), size ("8 mm", "1.2 cm"), device and lymph-node stations.
Vocabularies are `model.attributes.ATTRIBUTES`; what cannot be read stays unknown (the
attribute heads are then not trained on that volume for it).
"""

from __future__ import annotations

import re

from model.attributes import ATTRIBUTES, LOBES, size_bin
from model.labeler.labeler import find_mentions

_LOBE_PATTERNS = [
    re.compile(r"\b(upper|middle|lower) lobe of the (right|left) lung"),
    re.compile(r"\b(right|left) (?:lung )?(upper|middle|lower) lobe"),
    re.compile(r"\b(right|left) lung(?:'s)? (upper|middle|lower) lobe"),
]
_SIZE = re.compile(r"\b(\d+(?:[.,]\d+)?)\s*(mm|cm)\b")
_DEVICES = {
    "port catheter": re.compile(r"\bport\b|\bcatheter"),
    "sternotomy wires": re.compile(r"\bsternotomy\b|\bsternal wires?\b"),
    "pacemaker": re.compile(r"\bpacemaker\b"),
}
_STATIONS = {
    "right paratracheal": re.compile(r"\bright paratracheal\b"),
    "subcarinal": re.compile(r"\bsubcarinal\b"),
    "prevascular": re.compile(r"\bprevascular\b"),
    "right hilar": re.compile(r"\bright hilar\b"),
}


def _lobe(sentence: str) -> str | None:
    for pattern in _LOBE_PATTERNS:
        m = pattern.search(sentence)
        if m:
            a, b = m.groups()
            side, level = (b, a) if a in ("upper", "middle", "lower") else (a, b)
            lobe = f"{side} {level}"
            return lobe if lobe in LOBES else None
    return None


def _side(sentence: str) -> str | None:
    if re.search(r"\bbilateral\b|\bboth (?:hemithora|sides)", sentence):
        return "bilateral"
    right, left = bool(re.search(r"\bright\b", sentence)), bool(re.search(r"\bleft\b", sentence))
    if right and left:
        return "bilateral"
    return "right" if right else "left" if left else None


def _size_mm(sentence: str) -> float | None:
    m = _SIZE.search(sentence)
    if not m:
        return None
    value = float(m.group(1).replace(",", "."))
    return value * 10 if m.group(2) == "cm" else value


def _read(name: str, sentence: str) -> list[str]:
    attr = ATTRIBUTES[name]
    if attr.name == "lobe":
        lobe = _lobe(sentence)
        return [lobe] if lobe else []
    if attr.name == "side":
        side = _side(sentence)
        return [side] if side else []
    if attr.name == "size":
        size = _size_mm(sentence)
        return [size_bin(size)] if size is not None else []
    if attr.name == "device":
        return [d for d, p in _DEVICES.items() if p.search(sentence)][:1]
    if attr.name == "station":
        return [s for s, p in _STATIONS.items() if p.search(sentence)]
    raise KeyError(attr.name)


def extract_attributes(text: str, names=tuple(ATTRIBUTES)) -> dict[str, list[str]]:
    """{attribute: [class, ...]} for the findings the text reports as present (unknowns left out)."""
    first: dict[str, str] = {}
    for m in find_mentions(text or ""):
        if m["status"] in ("positive", "uncertain"):
            first.setdefault(m["label"], m["sentence"].lower())
    out: dict[str, list[str]] = {}
    for name in names:
        sentence = first.get(ATTRIBUTES[name].finding)
        if sentence is None:
            continue
        values = _read(name, sentence)
        if values:
            out[name] = values
    return out

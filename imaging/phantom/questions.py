"""Visual questions about a phantom case: multiple choice (4 options, one correct) and free text.

The correct option's position is drawn uniformly from the case's question stream;
distractors are the plausible alternatives of the same kind (other lobes, other sides,
absent findings), never a second correct answer.
"""

from __future__ import annotations

import numpy as np

from imaging.phantom.anatomy import LOBES
from imaging.phantom.config import FINDING_LABELS
from imaging.phantom.reports import lobe_phrase

LETTERS = "abcd"
NODULE_SIZE_BINS = ("Smaller than 6 mm", "6 to 10 mm", "11 to 20 mm", "Larger than 20 mm")
EFFUSION_OPTIONS = {
    "none": "No pleural effusion",
    "right": "Right pleural effusion",
    "left": "Left pleural effusion",
    "bilateral": "Bilateral pleural effusion",
}
NODULE_SIDE_OPTIONS = {
    "right": "Right lung",
    "left": "Left lung",
    "both": "Both lungs",
    "none": "Neither lung (no nodule)",
}
HEART_OPTIONS = {
    (False, False): "Normal heart size without pericardial effusion",
    (True, False): "Cardiomegaly without pericardial effusion",
    (False, True): "Pericardial effusion with normal heart size",
    (True, True): "Cardiomegaly with pericardial effusion",
}
DEVICE_OPTIONS = ("Port catheter", "Sternotomy wires", "Cardiac pacemaker", "Endotracheal tube")
# Stations the phantom never draws: always-wrong but plausible distractors.
EXTRA_STATIONS = ("left paratracheal", "aortopulmonary window", "left axillary")


def lobe_option(lobe: str) -> str:
    side, level = lobe.split()
    return f"{side.capitalize()} {level} lobe"


def nodule_size_bin(size_mm: float) -> str:
    return NODULE_SIZE_BINS[0 if size_mm < 6 else 1 if size_mm <= 10 else 2 if size_mm <= 20 else 3]


def _mcq(rng, topic: str, question: str, correct: str, distractors) -> dict:
    distractors = [d for d in dict.fromkeys(distractors) if d != correct]
    picked = [distractors[i] for i in rng.permutation(len(distractors))[:3]]
    assert len(picked) == 3, f"not enough distractors for {topic}"  # a template bug, not user input
    slot = int(rng.integers(4))  # uniform position of the correct answer
    choices = picked[:slot] + [correct] + picked[slot:]
    return {
        "kind": "mcq",
        "topic": topic,
        "question": question,
        "choices": choices,
        "answer": correct,
        "answer_choice": LETTERS[slot],
    }


def _free(topic: str, question: str, answer: str) -> dict:
    return {"kind": "free", "topic": topic, "question": question, "answer": answer}


def make_questions(spec, rng: np.random.Generator) -> list[dict]:
    present = {f.kind: f for f in spec.findings}
    qs: list[dict] = []
    nodule = present.get("lung_nodule")
    side = nodule.details["side"] if nodule else "none"
    qs.append(
        _mcq(
            rng,
            "nodule_side",
            "Which lung contains a nodule?",
            NODULE_SIDE_OPTIONS[side],
            NODULE_SIDE_OPTIONS.values(),
        )
    )
    if nodule:
        lobe = nodule.details["lobe"]
        qs.append(
            _mcq(
                rng,
                "nodule_lobe",
                "In which lobe is the lung nodule located?",
                lobe_option(lobe),
                [lobe_option(x) for x in LOBES],
            )
        )
        qs.append(
            _mcq(
                rng,
                "nodule_size",
                "What is the approximate size of the lung nodule?",
                nodule_size_bin(nodule.details["size_mm"]),
                NODULE_SIZE_BINS,
            )
        )
    effusion = present.get("pleural_effusion")
    qs.append(
        _mcq(
            rng,
            "pleural_effusion",
            "Is there a pleural effusion?",
            EFFUSION_OPTIONS[effusion.details["side"] if effusion else "none"],
            EFFUSION_OPTIONS.values(),
        )
    )
    heart_key = ("cardiomegaly" in present, "pericardial_effusion" in present)
    qs.append(
        _mcq(
            rng,
            "heart",
            "How do the heart and pericardium appear?",
            HEART_OPTIONS[heart_key],
            HEART_OPTIONS.values(),
        )
    )
    absent = [FINDING_LABELS[k] for k in FINDING_LABELS if k not in present]
    shown = [FINDING_LABELS[k] for k in present]
    if shown and len(absent) >= 3:
        correct = shown[int(rng.integers(len(shown)))]
        qs.append(
            _mcq(rng, "present_finding", "Which of the following findings is present?", correct, absent)
        )
    if len(shown) >= 3 and absent:
        correct = absent[int(rng.integers(len(absent)))]
        qs.append(_mcq(rng, "absent_finding", "Which of the following findings is NOT seen?", correct, shown))
    for kind, noun in (
        ("consolidation", "the consolidation"),
        ("lung_opacity", "the ground glass opacity"),
        ("atelectasis", "the atelectasis"),
    ):
        if kind in present:
            lobe = present[kind].details["lobe"]
            qs.append(
                _mcq(
                    rng,
                    f"{kind}_lobe",
                    f"Where is {noun} located?",
                    lobe_option(lobe),
                    [lobe_option(x) for x in LOBES],
                )
            )
    if "lymphadenopathy" in present:
        stations = present["lymphadenopathy"].details["stations"]
        correct = stations[int(rng.integers(len(stations)))]
        others = [
            s
            for s in ("right paratracheal", "subcarinal", "prevascular", "right hilar") + EXTRA_STATIONS
            if s not in stations
        ]
        qs.append(
            _mcq(
                rng,
                "lymph_station",
                "In which region is an enlarged lymph node seen?",
                correct.capitalize(),
                [s.capitalize() for s in others],
            )
        )
    if "medical_material" in present:
        device = present["medical_material"].details["device"].capitalize()
        qs.append(_mcq(rng, "device", "What medical material is seen?", device, DEVICE_OPTIONS))

    # Free-text questions with short answers.
    names = [FINDING_LABELS[k].lower() for k in present]
    listing = (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]) if names else ""
    qs.append(
        _free(
            "findings",
            "What abnormalities are seen in this chest CT?",
            f"{listing[0].upper() + listing[1:]}." if names else "No abnormality is seen.",
        )
    )
    if nodule:
        d = nodule.details
        qs.append(
            _free(
                "nodule",
                "Is there a lung nodule? If so, where and how large is it?",
                f"Yes, a {d['size_mm']} mm nodule in {lobe_phrase(d['lobe'])}.",
            )
        )
        qs.append(
            _free("nodule_size", "What is the diameter of the lung nodule in millimetres?", str(d["size_mm"]))
        )
    else:
        qs.append(_free("nodule", "Is there a lung nodule? If so, where and how large is it?", "No."))
    qs.append(
        _free(
            "pleural_effusion",
            "Is there a pleural effusion, and on which side?",
            f"Yes, {effusion.details['side']}." if effusion else "No.",
        )
    )
    qs.append(_free("cardiomegaly", "Is the heart enlarged?", "Yes." if "cardiomegaly" in present else "No."))
    return qs

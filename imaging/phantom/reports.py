"""CT-RATE style report text for a phantom case.

Sentence patterns are written here after the style of CT-RATE's (machine translated,
Turkish-origin) reports: a fixed order of sections (airways, mediastinum and heart,
vessels, esophagus, lymph nodes, lung parenchyma, pleura, upper abdomen, bones), a normal
statement for every structure, and for a finding its side, lobe and size. Each statement
has a few paraphrases; the case's report stream picks one, so the text is deterministic
per seed. Every absent finding is negated explicitly, so a labeler sees both classes.
"""

from __future__ import annotations

import numpy as np

from imaging.phantom.findings import Finding

LUNG_WINDOW = (
    "When examined in the lung parenchyma window; ",
    "In the evaluation of both lung parenchyma; ",
    "",
)

NORMAL = {
    "airway": (
        "Trachea and both main bronchi are in the midline and no obstructive pathology is detected in the lumen.",
        "Trachea, both main bronchi are open.",
        "No occlusive pathology was detected in the trachea and both main bronchi.",
    ),
    "vessels": (
        "Mediastinal main vascular structures are of normal width.",
        "The widths of the mediastinal main vascular structures are normal.",
        "Thoracic aorta diameter is normal.",
    ),
    "cardiomegaly": (
        "Heart contour and size are normal.",
        "Heart dimensions and compartments appear natural.",
        "Heart contour size is natural.",
    ),
    "pericardial_effusion": (
        "Pericardial effusion-thickening was not observed.",
        "Pericardial effusion was not detected.",
        "Pericardial thickening-effusion was not detected.",
    ),
    "calcification": (
        "No calcific atheroma plaque was observed in the aorta or the coronary arteries.",
        "No atherosclerotic wall calcification was detected in the thoracic aorta and coronary arteries.",
    ),
    "hiatal_hernia": (
        "Thoracic esophagus calibration was normal and no hiatal hernia was detected.",
        "Thoracic esophageal calibration was normal, no significant wall thickening or hiatal hernia was detected.",
    ),
    "lymphadenopathy": (
        "No enlarged lymph nodes in prevascular, pre-paratracheal, subcarinal or bilateral hilar-axillary pathological dimensions were detected.",
        "No pathologically enlarged lymph nodes were detected in the mediastinum and hilar regions.",
        "No lymph node was detected in mediastinal and bilateral hilar pathological size and appearance.",
    ),
    "lungs_all": (
        "Aeration of both lung parenchyma is normal and no nodular or infiltrative lesion is detected in the lung parenchyma.",
        "No mass, nodule, infiltration, emphysema or atelectasis was detected in both lungs.",
    ),
    "emphysema": (
        "No emphysematous changes were observed in both lungs.",
        "There is no emphysema in both lungs.",
    ),
    "lung_nodule": (
        "No nodule was detected in both lungs.",
        "No mass or nodular lesion was detected in both lungs.",
    ),
    "consolidation": (
        "No pneumonic infiltration or consolidation area was detected in the lung parenchyma.",
        "Pneumonic infiltration or consolidation area is not observed in the lung parenchyma.",
    ),
    "lung_opacity": (
        "No ground glass opacity was observed in both lungs.",
        "No ground glass density increase was detected.",
    ),
    "atelectasis": (
        "No atelectasis was observed in both lungs.",
        "There is no atelectasis in the lung parenchyma.",
    ),
    "pleural_effusion": (
        "Pleural effusion-thickening was not detected.",
        "No pleural effusion was detected.",
        "Pleural effusion-thickening was not detected in both hemithorax.",
    ),
    "abdomen": (
        "Upper abdominal organs included in the sections are normal.",
        "No space-occupying lesion was detected in the liver that entered the cross-sectional area.",
        "Upper abdominal sections entering the examination area are natural.",
    ),
    "bones": (
        "Bone structures in the study area are natural. Vertebral corpus heights are preserved.",
        "No lytic-destructive lesion was detected in bone structures. Vertebral corpus heights are preserved.",
    ),
    "medical_material": ("No medical device or foreign material is observed.",),
}
NORMAL_IMPRESSION = (
    "Thoracic CT examination within normal limits.",
    "Findings within normal limits.",
    "Examination within normal limits.",
)
CLINICAL = (
    "Not given.",
    "Cough.",
    "Shortness of breath.",
    "Chest pain.",
    "Control examination.",
    "Fever and cough.",
)


def lobe_phrase(lobe: str) -> str:
    """ "right upper" -> "the upper lobe of the right lung"."""
    side, level = lobe.split()
    return f"the {level} lobe of the {side} lung"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def finding_sentence(f: Finding, rng: np.random.Generator) -> str:
    """The findings-section sentence describing a present finding."""
    d = f.details
    k = f.kind
    if k == "lung_nodule":
        where, size = lobe_phrase(d["lobe"]), d["size_mm"]
        return _pick(
            rng,
            (
                f"A nodule measuring {size} mm was observed in {where}.",
                f"There is a {size} mm nodule in {where}.",
                f"A nonspecific nodule measuring {size} mm in size is observed in {where}.",
            ),
        )
    if k == "consolidation":
        where = lobe_phrase(d["lobe"])
        return _pick(
            rng,
            (
                f"A consolidation area containing air bronchograms was observed in {where}.",
                f"In {where}, an area of consolidation is observed.",
            ),
        )
    if k == "lung_opacity":
        where = lobe_phrase(d["lobe"])
        return _pick(
            rng,
            (
                f"Patchy ground glass density increases were observed in {where}.",
                f"There are ground glass opacities in {where}.",
            ),
        )
    if k == "atelectasis":
        where = lobe_phrase(d["lobe"])
        return _pick(
            rng,
            (
                f"Linear atelectasis was observed in {where}.",
                f"There is a subsegmental atelectasis area in {where}.",
            ),
        )
    if k == "emphysema":
        sev = d["severity"].capitalize()
        return _pick(
            rng,
            (
                f"{sev} emphysematous changes were observed in both lungs, more prominent in the upper lobes.",
                f"There are {d['severity']} centrilobular emphysematous changes in both lungs, predominantly in the upper lobes.",
            ),
        )
    if k == "pleural_effusion":
        t = d["thickness_mm"]
        if d["side"] == "bilateral":
            return (
                f"Bilateral pleural effusion was observed, reaching {t['right']} mm in thickness on the right "
                f"and {t['left']} mm on the left."
            )
        side = d["side"]
        return _pick(
            rng,
            (
                f"Pleural effusion reaching {t[side]} mm in its thickest part was observed on the {side}.",
                f"There is a {side} pleural effusion with a thickness of {t[side]} mm in the dependent part.",
            ),
        )
    if k == "pericardial_effusion":
        return _pick(
            rng,
            (
                f"Pericardial effusion reaching {d['thickness_mm']} mm in thickness was observed.",
                f"There is a pericardial effusion with a thickness of {d['thickness_mm']} mm.",
            ),
        )
    if k == "cardiomegaly":
        return _pick(
            rng, ("Heart size has increased (cardiomegaly).", "The heart size is increased (cardiomegaly).")
        )
    if k == "hiatal_hernia":
        return _pick(
            rng,
            (
                "Sliding type hiatal hernia was observed at the lower end of the esophagus.",
                "There is a sliding type hiatal hernia at the esophagogastric junction.",
            ),
        )
    if k == "lymphadenopathy":
        stations = _join([s for s in d["stations"]])
        return _pick(
            rng,
            (
                f"Lymphadenopathy with a short axis reaching {d['short_axis_mm']} mm was observed in the {stations} area.",
                f"Enlarged lymph nodes reaching {d['short_axis_mm']} mm in short diameter are observed in the {stations} region.",
            ),
        )
    if k == "medical_material":
        if d["device"] == "port catheter":
            return _pick(
                rng,
                (
                    "A port catheter extending from the right anterior chest wall to the superior vena cava is observed.",
                    "Port chamber on the right anterior chest wall and a catheter extending into the superior vena cava were observed.",
                ),
            )
        return _pick(
            rng,
            (
                "There are metallic suture materials belonging to sternotomy in the sternum.",
                "Sternotomy wires are observed in the sternum.",
            ),
        )
    raise KeyError(k)


def calcification_sentence(findings: dict[str, Finding], rng: np.random.Generator) -> str:
    aorta = "arterial_wall_calcification" in findings
    coronary = "coronary_calcification" in findings
    if aorta and coronary:
        return _pick(
            rng,
            (
                "Calcific atheroma plaques are observed in the aorta and coronary arteries.",
                "Atherosclerotic wall calcifications were observed in the thoracic aorta and coronary arteries.",
            ),
        )
    if aorta:
        segs = _join(findings["arterial_wall_calcification"].details["segments"])
        # The negation gets its own sentence: a sentence-level labeler must not read it as positive.
        return f"Calcific atheroma plaques are observed in the {segs}. No calcification was detected in the coronary arteries."
    if coronary:
        arteries = _join(findings["coronary_calcification"].details["arteries"])
        return f"Calcific plaques are observed in the coronary arteries ({arteries}). No calcific plaque was detected in the aortic wall."
    return _pick(rng, NORMAL["calcification"])


def impression_phrase(f: Finding) -> str:
    d = f.details
    return {
        "lung_nodule": lambda: f"Nodule measuring {d.get('size_mm')} mm in {lobe_phrase(d['lobe'])}.",
        "consolidation": lambda: f"Consolidation in {lobe_phrase(d['lobe'])}.",
        "lung_opacity": lambda: f"Ground glass opacity in {lobe_phrase(d['lobe'])}.",
        "atelectasis": lambda: f"Atelectasis in {lobe_phrase(d['lobe'])}.",
        "emphysema": lambda: f"{d['severity'].capitalize()} emphysematous changes in both lungs.",
        "pleural_effusion": lambda: (
            "Bilateral pleural effusion."
            if d["side"] == "bilateral"
            else f"{d['side'].capitalize()} pleural effusion."
        ),
        "pericardial_effusion": lambda: "Pericardial effusion.",
        "cardiomegaly": lambda: "Cardiomegaly.",
        "hiatal_hernia": lambda: "Hiatal hernia.",
        "lymphadenopathy": lambda: "Mediastinal lymphadenopathy.",
        "arterial_wall_calcification": lambda: "Aortic atherosclerosis.",
        "coronary_calcification": lambda: "Coronary artery calcification.",
        "medical_material": lambda: (
            "Port catheter in the superior vena cava."
            if d["device"] == "port catheter"
            else "Sternotomy changes."
        ),
    }[f.kind]()


def make_report(spec, rng: np.random.Generator) -> dict[str, str]:
    """CT-RATE report columns: ClinicalInformation_EN, Technique_EN, Findings_EN, Impressions_EN."""
    present = {f.kind: f for f in spec.findings}
    out: list[str] = [_pick(rng, NORMAL["airway"]), _pick(rng, NORMAL["vessels"])]

    def either(kind: str) -> str:
        return finding_sentence(present[kind], rng) if kind in present else _pick(rng, NORMAL[kind])

    out += [either("cardiomegaly"), either("pericardial_effusion"), calcification_sentence(present, rng)]
    out += [either("hiatal_hernia"), either("lymphadenopathy")]
    lung_kinds = ("emphysema", "lung_nodule", "consolidation", "lung_opacity", "atelectasis")
    intro = _pick(rng, LUNG_WINDOW)
    if not any(k in present for k in lung_kinds):
        out.append(intro + _pick(rng, NORMAL["lungs_all"]))
    else:
        lung = [either(k) for k in lung_kinds]
        lung[0] = intro + lung[0]
        out += lung
    out += [either("pleural_effusion"), _pick(rng, NORMAL["abdomen"]), _pick(rng, NORMAL["bones"])]
    out.append(either("medical_material"))
    impression = [impression_phrase(f) for f in spec.findings] or [_pick(rng, NORMAL_IMPRESSION)]
    sz, sy, sx = spec.config.spacing_mm_zyx
    contrast = "contrast-enhanced" if spec.config.contrast_enhanced else "non-contrast"
    technique = (
        f"Synthetic {contrast} chest CT phantom; axial images with {sz:g} mm slice thickness "
        f"and {sx:g} x {sy:g} mm pixels."
    )
    return {
        "ClinicalInformation_EN": _pick(rng, CLINICAL),
        "Technique_EN": technique,
        "Findings_EN": " ".join(out),
        "Impressions_EN": " ".join(impression),
    }

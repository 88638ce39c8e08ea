"""Mention patterns for the 18 CT-RATE abnormalities, written from the phrasing of CT-RATE reports.

Each label has `include` regular expressions (a mention of the finding, matched on the
lowercased sentence) and optional `exclude` expressions: a sentence where an exclude pattern
matches within 60 characters of a mention voids it (e.g. a lymph node "that did
not reach pathological size" is not lymphadenopathy). Negation and uncertainty are decided
separately (`model/labeler/negation.py`). Written by reading the development split only.
"""

from __future__ import annotations

_CALC = r"(?:calcif\w*|atherom\w*|atheroscleros\w*|atherosclerotic|plaques?)"

LABEL_RULES: dict[str, dict[str, list[str]]] = {
    "Medical material": {
        "include": [
            r"\bcatheters?\b", r"\bstents?\b", r"\bpacemaker\b", r"\bport\b", r"\b(?:nasogastric|endotracheal|tracheostomy|chest|drainage|feeding|thoracostomy)\s+(?:tube|cannula|catheter)s?\b",
            r"\btracheostomy\b", r"\bsternotomy\b", r"\bsuture\w*\b", r"\b(?:surgical|vascular|metallic)\s+clips?\b", r"\bclips?\b",
            r"\bprosthe\w+\b", r"\bgrafts?\b", r"\bcoils?\b", r"\bdrains?\b", r"\bcannula\b", r"\bwires?\b",
            r"\bmetallic\b", r"\b(?:icd|cied|cabg)\b", r"\bdefibrillator\b", r"\bvalve replacement\b",
            r"\bpacemaker\b", r"\bimplant\w*\b", r"\bembolization material\b", r"\belectrodes?\b", r"\bleads?\b",
        ],
        "exclude": [r"contrast material", r"\bport(?:al)? ven", r"\bwire-like\b"],
    },
    "Arterial wall calcification": {
        "include": [
            rf"\b(?:aort(?:a|ic(?! valve))\w*|(?<!coronary )arter\w*|vascular|carotid|subclavian|brachiocephalic|iliac|vessels?|truncus|celiac)\b[^.;]{{0,60}}{_CALC}",
            rf"{_CALC}[^.;]{{0,60}}\b(?:aort(?:a|ic(?! valve))\w*|(?<!coronary )(?<!coronary)arter\w*|vascular|carotid|subclavian|brachiocephalic|vessels?|iliac|truncus|celiac)\b",
            r"\batherosclero\w*\b", r"\bvascular calcification", r"\barterial wall calcification",
        ],
        "exclude": [],
    },
    "Cardiomegaly": {
        "include": [
            r"\bcardiomegaly\b",
            r"\bheart\b[^.;]{0,40}\b(?:enlarged|increased|large|enlargement)\b",
            r"\b(?:enlarged|increased)\b[^.;]{0,20}\bheart\b",
            r"\bcardiac (?:enlargement|dimensions? (?:are |is )?increased)",
            r"\bincrease\w* in (?:the )?cardiothoracic ratio",
            r"\b(?:ctr|cardiothoracic ratio)\b[^.;]{0,30}\b(?:increased|enlarged)\b",
        ],
        "exclude": [],
    },
    "Pericardial effusion": {
        "include": [r"\bpericardial\b[^.;]{0,40}\b(?:effusion|fluid)", r"\b(?:effusion|fluid)\b[^.;]{0,70}\bpericardi(?:al (?:space|area|cavity)|um)",
                    r"\bpericardial thickening-effusion", r"\bpericardial effusion-thickening"],
        "exclude": [],
    },
    "Coronary artery wall calcification": {
        "include": [rf"\bcoronar\w*\b[^.;]{{0,100}}{_CALC}", rf"{_CALC}[^.;]{{0,100}}\bcoronar\w*", r"\b(?:lad|lmca?|cx|rca)\b[^.;]{0,30}calcif"],
        "exclude": [],
    },
    "Hiatal hernia": {
        "include": [r"\bhiat(?:al|us)\b[^.;]{0,30}hernia", r"\bhernia\w*\b[^.;]{0,30}hiat", r"\bhiatal\b"],
        "exclude": [],
    },
    "Lymphadenopathy": {
        # CT-RATE's annotators mark any lymph node reported as present, even one "that did not
        # reach pathological size" or "millimetric", so a mention is enough.
        "include": [r"\blymphadenopath\w*", r"\blaps?\b", r"\badenopath\w*", r"\blymph ?nodes?\b(?! stations?)",
                    r"\bconglomerat\w*"],
        "exclude": [],
    },
    "Emphysema": {
        "include": [r"\bemphysem\w*", r"\bbullae?\b", r"\bbullous\b", r"\bblebs?\b"],
        "exclude": [r"subcutaneous emphysema", r"mediastinal emphysema"],
    },
    "Atelectasis": {
        "include": [r"\batelecta\w*", r"\bcollapse\b"],
        "exclude": [],
    },
    "Lung nodule": {
        # "nodular" as an adjective (nodular consolidation, nodular ground glass) is not a nodule.
        "include": [r"\bnodules?\b", r"\bmicronodul\w*", r"\bnodular (?:lesion|opacit|densit)\w*"],
        "exclude": [r"\bthyroid\b", r"\badrenal\b", r"\bliver\b", r"\bhepatic\b", r"\bkidney\b", r"\brenal\b", r"\bbreast\b"],
    },
    "Lung opacity": {
        "include": [r"\bground[- ]glass", r"\bopacit\w*", r"\binfiltrat\w*", r"\bdensity increase\w*",
                    r"\bincreased density", r"\bdensit(?:y|ies)\b[^.;]{0,20}\bincrease"],
        # Scars ("sequela fibrotic density increases") and soft-tissue densities are not opacities.
        "exclude": [r"sequela", r"fibrotic", r"pleuro-?parenchymal", r"metallic", r"\bband", r"perirenal",
                    r"fatty", r"mesenter", r"ground[- ]glass nodul"],
    },
    "Pulmonary fibrotic sequela": {
        "include": [r"\bfibro\w*", r"\bsequela\w*", r"\bscar\w*\b", r"\bparenchymal bands?\b", r"\bbands?\b"],
        "exclude": [r"\bfibroadenom", r"\bfibroid"],
    },
    "Pleural effusion": {
        "include": [r"\bpleural\b[^.;]{0,40}\b(?:effusion|fluid)", r"\b(?:effusion|fluid)\b[^.;]{0,40}\bpleura",
                    r"\bhydro(?:pneumo)?thorax\b", r"\bhydropnomothorax\b", r"\bpleural effusion-thickening",
                    r"\b(?:bilateral|right|left)\b[^.;]{0,30}\beffusion", r"\beffusion\b[^.;]{0,30}\bhemithora"],
        "exclude": [r"\bpericardial effusion\b(?![^.;]*pleural)"],
    },
    "Mosaic attenuation pattern": {
        "include": [r"\bmosaic\w*"],
        "exclude": [],
    },
    "Peribronchial thickening": {
        "include": [r"\bperibronchial\b[^.;]{0,40}\b(?:thickness|thickening)", r"\bthickness\b[^.;]{0,30}\bperibronchial",
                    r"\bperibronchovascular (?:sheath|interstit\w*)[^.;]{0,20}thicken", r"\bthickening of the peribronchovascular",
                    r"\bperibronchial\b[^.;]{0,40}\bthicken\w*", r"\bbronchial wall(?:s)?\b[^.;]{0,30}\bthicken\w*",
                    r"\bthicken\w*\b[^.;]{0,30}\b(?:peri)?bronchial wall", r"\bperibronchial (?:cuffing|thickening)"],
        "exclude": [],
    },
    "Consolidation": {
        "include": [r"\bconsolidat\w*"],
        "exclude": [],
    },
    "Bronchiectasis": {
        "include": [r"\bbronchiecta\w*"],
        "exclude": [],
    },
    "Interlobular septal thickening": {
        "include": [r"\b(?:interlobular )?sept(?:al|a)\b[^.;]{0,30}\b(?:thicken\w*|thickness|clarification|prominen\w*)",
                    r"\b(?:prominen\w*|thicken\w*)\b[^.;]{0,30}\binterlobular sept", r"\bthicken\w*\b[^.;]{0,30}\binterlobular sept"],
        "exclude": [r"\binteratrial\b", r"\binterventricular\b", r"\bnasal sept"],
    },
}

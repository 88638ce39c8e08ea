"""The fields each endpoint takes besides the CT file(s), declared once: as the OpenAPI body
/docs shows (multipart is parsed by app/uploads.py, streamed and size-capped, so FastAPI
cannot infer it) and as what the endpoint accepts (`Options.only`: any other field is a 400).
"""

from __future__ import annotations

from typing import Any

from app.choices import MAX_CHOICE_CHARS, MAX_CHOICES, MIN_CHOICES

MAX_QUESTION_CHARS = 2000
MAX_UID_CHARS = 128
INPUT_PROPERTIES = {
    "series_instance_uid": {"type": "string", "maxLength": MAX_UID_CHARS,
                            "description": "DICOM SeriesInstanceUID (or its uid_hash) to use"},
    "resample_geometry": {"type": "boolean", "default": False,
                          "description": "Resample non-uniform slice spacing, gantry tilt and oblique "
                                         "orientation onto a regular grid (with a warning) instead of "
                                         "refusing them, as training reads its volumes"},
    "options": {"type": "string", "description": "The other fields as one JSON object (a form field wins)"},
}
"""How to read the CT: what /inspect takes, and every model endpoint too."""
GENERATION_PROPERTIES = {
    "max_new_tokens": {"type": "integer", "minimum": 1, "description": "Capped by the server setting"},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2,
                    "description": "0 = greedy; otherwise at least 1e-4"},
    "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    "stream": {"type": "boolean", "description": "Server-Sent Events: `delta` events then `result`"},
}
OPTION_PROPERTIES = {**INPUT_PROPERTIES, **GENERATION_PROPERTIES}
"""What /report, /vqa and /jobs take besides their own fields."""
REPORT_FIELDS = {
    "consistency": {"type": "string", "enum": ["off", "warn", "repair"], "default": "warn",
                    "description": "Check the report against the label head: warn about confident "
                                   "disagreements, or also drop the contradicting sentences (repair)"},
}
VQA_FIELDS = {
    "question": {"type": "string", "minLength": 1, "maxLength": MAX_QUESTION_CHARS},
    "choices": {"type": "array", "items": {"type": "string", "maxLength": MAX_CHOICE_CHARS},
                "minItems": MIN_CHOICES, "maxItems": MAX_CHOICES,
                "description": "Multiple choice (repeat the field, or a JSON list): the answer is always one of "
                               "these; distinct, as SAMF's a-d"},
    "mode": {"type": "string", "enum": ["auto", "free", "choice"]},
    "mcq_mode": {"type": "string", "enum": ["likelihood", "generate"],
                 "description": "Multiple choice by option likelihood (always an option, with probabilities) or by "
                                "generating the answer and parsing it (the SAMF release's way; `generated` keeps "
                                "the text); default: the model's (samf-compat generates)"},
}
JOB_TASKS = ("report", "vqa")
JOB_FIELDS = {"task": {"type": "string", "enum": list(JOB_TASKS), "default": "report"}, **REPORT_FIELDS, **VQA_FIELDS}
"""/jobs takes either task's fields, and `task` to say which."""
LIST_FIELDS = ("choices",)
"""Fields that may be repeated in a form; every other field is given once."""


def multipart_body(extra: dict[str, Any] | None = None, required: tuple[str, ...] = (),
                   base: dict[str, Any] = OPTION_PROPERTIES) -> dict:
    """An endpoint's `openapi_extra`: the multipart body with the CT file(s), `base` and `extra` fields."""
    properties = {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                 "description": "One NIfTI, one zip, or several DICOM files (always this field name)"},
        **base,
        **(extra or {}),
    }
    schema = {"type": "object", "properties": properties, "required": ["file", *required]}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}

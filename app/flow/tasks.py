"""Step 2, options into a task: what the request asks for, validated before it is admitted.

`read_options` says how to read the CT (every endpoint); `report_task` / `vqa_task` say what
the model should do (ReportTask / VqaTask, which app/service.py batches by); `job_task` picks
one of them by the `task` field of /jobs. Each refuses fields its endpoint does not declare
(app/flow/fields.py) before reading any.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from app.choices import MAX_CHOICES, MIN_CHOICES
from app.flow.fields import (
    JOB_TASKS,
    MAX_QUESTION_CHARS,
    MAX_UID_CHARS,
    OPTION_PROPERTIES,
    REPORT_FIELDS,
    VQA_FIELDS,
)
from app.flow.options import Options, invalid
from app.service import ReportTask, VqaTask
from app.settings import Settings
from imaging.options import ReadOptions


def read_options(options: Options, settings: Settings) -> ReadOptions:
    """The reader options a request asks for: its series, and `resample_geometry` (default: refuse)."""
    read = ReadOptions(series_uid=options.str("series_instance_uid", MAX_UID_CHARS), max_voxels=settings.max_voxels)
    if options.flag("resample_geometry"):
        read = dataclasses.replace(read, on_non_uniform="resample", on_gantry_tilt="resample", on_oblique="resample")
    return read


def generation_params(options: Options, settings: Settings) -> Any:
    """model.GenerationParams; `max_new_tokens` above the server's cap is capped, with a warning."""
    import model

    requested = options.number("max_new_tokens", int, 1, 2**31 - 1)
    max_new_tokens = min(requested or settings.max_new_tokens, settings.max_new_tokens)
    if requested and requested > settings.max_new_tokens:
        options.warnings.append(f"max_new_tokens capped to {settings.max_new_tokens}")
    defaults = model.GenerationParams()
    temperature = options.number("temperature", float, 0.0, 2.0)
    top_p = options.number("top_p", float, 1e-6, 1.0)
    return model.GenerationParams(
        max_new_tokens=max_new_tokens,
        temperature=defaults.temperature if temperature is None else temperature,
        top_p=defaults.top_p if top_p is None else top_p,
        seed=options.number("seed", int, 0, 2**32 - 1),
    )


def report_task(options: Options, settings: Settings, extra_fields: Iterable[str] = ()) -> ReportTask:
    from model.consistency import MODES

    options.only([*OPTION_PROPERTIES, *REPORT_FIELDS, *extra_fields])
    consistency = options.str("consistency", 16) or "warn"
    if consistency not in MODES:
        raise invalid(f"consistency: one of {', '.join(MODES)}")
    return ReportTask(params=generation_params(options, settings), consistency=consistency)


def vqa_task(options: Options, settings: Settings, extra_fields: Iterable[str] = ()) -> VqaTask:
    options.only([*OPTION_PROPERTIES, *VQA_FIELDS, *extra_fields])
    question = options.str("question", MAX_QUESTION_CHARS)
    if not question or not question.strip():
        raise invalid("question: required")
    choices = options.choices()
    mode = options.str("mode", 16) or "auto"
    if mode not in ("auto", "free", "choice"):
        raise invalid("mode: one of auto, free, choice")
    if mode == "choice" and not choices:
        raise invalid(f"mode choice needs {MIN_CHOICES} to {MAX_CHOICES} choices")
    if mode == "free":
        choices = None
    mcq_mode = options.str("mcq_mode", 16)
    if mcq_mode is not None and mcq_mode not in ("likelihood", "generate"):
        raise invalid("mcq_mode: one of likelihood, generate")
    return VqaTask(question=question.strip(), choices=choices, params=generation_params(options, settings),
                   mcq_mode=mcq_mode)


TASK_MAKERS = {"report": report_task, "vqa": vqa_task}
"""By the names /jobs declares (`fields.JOB_TASKS`)."""


def job_task(options: Options, settings: Settings) -> tuple[str, ReportTask | VqaTask]:
    """The task a /jobs request names (`task`: report, the default, or vqa) and its fields."""
    name = options.str("task", 16) or "report"
    if name not in TASK_MAKERS:
        raise invalid(f"task: one of {', '.join(JOB_TASKS)}")
    return name, TASK_MAKERS[name](options, settings, extra_fields=("task",))

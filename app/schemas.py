"""Response models (they are the OpenAPI schema at /docs and what schemathesis checks).

Every model response echoes the request id, the model and weights hashes, the generation
parameters, a summary of the input, warnings, per-stage timings and the disclaimer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_serializer

from app.settings import DISCLAIMER


class HUStats(BaseModel):
    min: float
    max: float
    mean: float
    p1: float
    p99: float


class SeriesSummary(BaseModel):
    """A DICOM series by hash. Its SeriesDescription is never sent: free text that may name a
    person (unknown keys are dropped, so not even a reader that added it could leak it here)."""

    uid_hash: str
    modality: str
    n_slices: int
    image_type: str = ""


class InputSummary(BaseModel):
    """`ctscribe inspect --json` of the upload (identifiers hashed, never echoed)."""

    format: str
    shape_zyx: list[int]
    spacing_mm_zyx: list[float]
    origin_mm: list[float]
    orientation_in: str
    hu: HUStats
    series: SeriesSummary | None = None
    candidates: list[SeriesSummary] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class Envelope(BaseModel):
    request_id: str
    model_hash: str | None = Field(None, description="sha256[:16] of the model config")
    weights_hash: str | None = Field(None, description="sha256[:16] of the weights")
    warnings: list[str] = Field(default_factory=list)
    timings_s: dict[str, float] = Field(
        default_factory=dict, description="Per stage: upload, decode, prepare, queue, encode, generate, total"
    )
    disclaimer: str = DISCLAIMER


class KeySlice(BaseModel):
    plane: Literal["axial", "coronal", "sagittal"]
    index: int
    weight: float


class ResultWarning(BaseModel):
    """A structured warning about one result (the envelope's `warnings` are about the request and input)."""

    code: str = Field(description="report_contradicts_label_head | model_not_trained_on_real_ct")
    message: str
    finding: str | None = Field(None, description="The label the report and the label head disagree on")
    head_probability: float | None = Field(None, description="The label head's probability for `finding`")
    text_says: Literal["absent", "not_mentioned", "present"] | None = Field(
        None, description="What the report labeler reads in the text about `finding`")
    sentences: list[str] | None = Field(None, description="The report sentences holding the contradicting mention")
    repaired: Literal["dropped"] | None = Field(
        None, description="consistency=repair: the sentences were dropped from `text`")

    @model_serializer(mode="wrap")
    def _without_empty(self, handler):
        # Each code fills its own fields; the others are left out rather than sent as null.
        return {k: v for k, v in handler(self).items() if v is not None}


class ReportBody(BaseModel):
    text: str
    labels: dict[str, float] = Field(description="The 18 CT-RATE label probabilities")
    key_slices: list[KeySlice] = Field(default_factory=list)
    n_tokens: int
    attributes: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Attribute heads' class probabilities per attribute (nodule_lobe, effusion_side, ...)",
    )
    guidance: str = Field(
        default="", description="The findings the decoder was told before writing (diagnosis-driven decoding)"
    )
    warnings: list[ResultWarning] = Field(default_factory=list)


class ModelEnvelope(Envelope):
    generation: dict[str, Any] = Field(description="Generation parameters used")
    input: InputSummary
    batch_size: int = Field(1, description="Requests that shared this model call")


class ReportResponse(ModelEnvelope):
    report: ReportBody


class AnswerBody(BaseModel):
    text: str | None = Field(None, description="Free-text answer (mode free)")
    n_tokens: int | None = None
    answer: str | None = Field(None, description="The chosen option (mode choice): one of `choices`; null when a "
                                                 "generated answer names none (warning mcq_answer_unparsed)")
    index: int | None = None
    letter: str | None = None
    probabilities: list[float] | None = Field(None, description="Per option (mcq_mode likelihood)")
    choices: list[str] | None = None
    mcq_mode: Literal["likelihood", "generate"] | None = Field(None, description="How the option was chosen")
    generated: str | None = Field(None, description="The generated answer text (mcq_mode generate)")
    warnings: list[ResultWarning] = Field(default_factory=list)


class VqaResponse(ModelEnvelope):
    question: str
    mode: Literal["free", "choice"]
    answer: AnswerBody


class InspectResponse(Envelope):
    input: InputSummary


class Problem(BaseModel):
    """application/problem+json"""

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None = None


class JobResponse(BaseModel):
    request_id: str
    job_id: str
    task: Literal["report", "vqa"]
    status: Literal["queued", "running", "succeeded", "failed"]
    created_at: float = Field(description="Unix time, seconds")
    finished_at: float | None = None
    expires_at: float | None = Field(None, description="Unix time after which the result is dropped")
    result: dict[str, Any] | None = Field(None, description="ReportResponse or VqaResponse when succeeded")
    error: Problem | None = None
    disclaimer: str = DISCLAIMER


class HealthResponse(BaseModel):
    request_id: str
    status: str
    ready: bool
    detail: str | None = None


class VersionResponse(BaseModel):
    request_id: str
    version: str
    model_hash: str | None = None
    weights_hash: str | None = None
    checkpoint: str = Field(description="Checkpoint name (last path component)")
    device: str | None = None
    state: str
    disclaimer: str = DISCLAIMER

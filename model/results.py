"""Result types of the Pipeline API (what the service and the CLI serialise)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class ReportOutput:
    text: str
    """The generated findings/impression report."""
    labels: dict[str, float]
    """Probability of each CT-RATE label from the label head ({} when the model has none)."""
    key_slices: list[dict]
    """Most attended slices (fusion α), best first: {plane, index, weight}."""
    n_tokens: int
    """Generated tokens (stop token excluded)."""
    timings_s: dict[str, float] = field(default_factory=dict)
    """Seconds per stage for the batch this result came from: encode, generate."""
    attributes: dict[str, dict[str, float]] = field(default_factory=dict)
    """Attribute heads' class probabilities ({attribute: {class: p}}; {} without attribute heads)."""
    guidance: str = ""
    """What the decoder was told the CT shows (diagnosis-driven decoding; "" when off)."""
    warnings: list[dict] = field(default_factory=list)
    """Structured warnings about this result, each {code, message, ...}: the consistency guard's
    `report_contradicts_label_head` (model.consistency), `model_not_trained_on_real_ct` (model.provenance)."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AnswerOutput:
    text: str
    n_tokens: int
    timings_s: dict[str, float] = field(default_factory=dict)
    warnings: list[dict] = field(default_factory=list)
    """Structured warnings about this result, each {code, message, ...} (see ReportOutput.warnings)."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ChoiceOutput:
    answer: str | None
    """The chosen option's text (one of the choices); None when a generated answer names none."""
    index: int | None
    """Index of the chosen option (None: unparsed)."""
    letter: str | None
    """a, b, c, ... of the chosen option (None: unparsed)."""
    probabilities: list[float] | None
    """mode likelihood: one per option, summing to 1 (softmax of the length-normalised
    log-likelihoods); mode generate: None."""
    timings_s: dict[str, float] = field(default_factory=dict)
    warnings: list[dict] = field(default_factory=list)
    """Structured warnings about this result, each {code, message, ...} (see ReportOutput.warnings;
    plus `mcq_answer_unparsed`)."""
    mcq_mode: str = "likelihood"
    """How the option was chosen: likelihood | generate (model.config.MCQ_MODES)."""
    generated: str | None = None
    """mode generate: the answer text as generated (parsed by model.mcq_parse)."""

    def to_dict(self) -> dict:
        return asdict(self)

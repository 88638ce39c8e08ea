"""The model-side API (docs: the model API contract): prepare CTs, write reports, answer questions.

`build(preset)` makes a pipeline from a preset (random vision weights; base LMs and encoder
weights the preset names are loaded), `load(dir_or_hub_id)` from a checkpoint. A Pipeline
runs its model in eval mode under `torch.inference_mode`; it is not meant to be called from
two threads at once (the service serialises model calls).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from model.batching import pad_prompts, stack_cts, to_device
from model.config import MCQ_MODES, ModelConfig
from model.consistency import check_mode, guard
from model.ctscribe_model import CTScribeModel, VisualFeatures, assemble
from model.errors import invalid
from model.generation import GenerationParams, TextStream, fast_generate, generate, score_options_shared
from model.preprocess import PLANES, PreparedCT, preprocess
from model.prompts import (
    LETTERS,
    check_choices,
    encode,
    mcq_answer,
    mcq_prompt,
    question_prompt,
    report_prompt,
)
from model.results import AnswerOutput, ChoiceOutput, ReportOutput
from model.tokenizer import never_generate_ids, stop_token_ids

N_KEY_SLICES = 5


class Pipeline:
    def __init__(self, model: CTScribeModel, tokenizer, device: torch.device | str = "cpu", source: str = ""):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.source = source
        """Preset name or checkpoint path this pipeline came from."""
        self._weights_hash: str | None = None
        self._model_hash: str | None = None
        self._stop_ids = stop_token_ids(tokenizer, self.config.prompt, self.config.decoder.stop_token_ids)
        self._suppress_ids = never_generate_ids(tokenizer, self.config.prompt, self._stop_ids)
        self._fast = None
        """A `FastDecoder` once `enable_fast_decode` ran; None decodes with HF's dynamic cache."""

    # ---- identity ----------------------------------------------------------------------------

    @property
    def config(self) -> ModelConfig:
        return self.model.cfg

    @property
    def trained_on(self) -> str:
        """What the weights were trained on (the checkpoint's `trained_on`; `unknown` if it does not say)."""
        from model.checkpoint import trained_on_of

        return trained_on_of(self.model)

    @property
    def model_hash(self) -> str:
        """sha256[:16] of the config JSON (as loaded: `for_inference` keeps it)."""
        if self._model_hash is not None:
            return self._model_hash
        doc = json.dumps(self.config.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(doc.encode()).hexdigest()[:16]

    @property
    def weights_hash(self) -> str:
        """sha256[:16] over the weights (computed once; the same before saving and after loading)."""
        if self._weights_hash is None:
            self._weights_hash = weights_hash(self.model)
        return self._weights_hash

    # ---- inputs ------------------------------------------------------------------------------

    def prepare(self, hu_zyx: np.ndarray, spacing_mm_zyx, orientation_in: str = "LPS") -> PreparedCT:
        """Canonical HU volume -> slice tensors for this model (pure numpy/torch, CPU)."""
        return preprocess(hu_zyx, spacing_mm_zyx, self.config.preprocess, orientation_in)

    def _encode(self, cts: Sequence[PreparedCT]) -> tuple[VisualFeatures, dict]:
        for ct in cts:
            if not isinstance(ct, PreparedCT):
                raise invalid("expected PreparedCT inputs (from Pipeline.prepare)")
        batch = to_device(stack_cts(cts), self.device)
        visual = self.model.encode_volume(batch["slices"], batch["plane_ids"], batch["positions"], batch["slice_mask"])
        return visual, batch

    def _prompt_batch(self, prompts: list[str], answers: list[str] | None = None, close: bool = True) -> dict:
        cfg = self.config.prompt
        encoded = [
            encode(self.tokenizer, cfg, p, None if answers is None else answers[i], close=close)
            for i, p in enumerate(prompts)
        ]
        return to_device(pad_prompts(encoded, int(self.tokenizer.pad_token_id), side="left"), self.device)

    def _check_length(self, n_prompt: int, max_new_tokens: int) -> None:
        limit = int(getattr(self.model.decoder.base.config, "max_position_embeddings", 0) or 0)
        if limit and n_prompt + max_new_tokens > limit:
            raise invalid(
                f"prompt ({n_prompt} tokens) + max_new_tokens ({max_new_tokens}) exceed the decoder's {limit}"
            )

    # ---- generation --------------------------------------------------------------------------

    def _guidance(self, visual: VisualFeatures, findings: Sequence | None) -> tuple[list[str], list[dict], list[dict]]:
        """Per CT: the guidance text (model/guidance.py; "" when off), label probabilities and
        attribute probabilities. `findings[i]`, when given, replaces the heads' findings of CT i."""
        from model.guidance import (
            check_findings,
            findings_from_heads,
            guidance_labels,
            guidance_text,
            head_outputs,
        )

        cfg = self.config
        labels, attributes = head_outputs(cfg, visual.label_logits, visual.attribute_logits)
        n = int(visual.z3d.shape[0])
        if findings is not None and len(findings) != n:
            raise invalid(f"{n} CTs but {len(findings)} findings overrides")
        if cfg.prompt.guidance == "off":
            if findings is not None and any(f is not None for f in findings):
                raise invalid("this model does not take findings (its prompt guidance is off)")
            return [""] * n, labels, attributes
        names = guidance_labels(cfg)
        texts = []
        for i in range(n):
            forced = None if findings is None else findings[i]
            seen = (
                check_findings(forced, cfg)
                if forced is not None
                else findings_from_heads(labels[i], attributes[i], names, cfg.prompt.guidance_threshold)
            )
            texts.append(guidance_text(seen, names))
        return texts, labels, attributes

    @torch.inference_mode()
    def _generate(
        self,
        cts: Sequence[PreparedCT],
        prompts_for: Callable[[int, list[str]], list[str]],
        params: GenerationParams | None,
        on_text: Callable[[int, str], None] | None,
        findings: Sequence | None = None,
        cancelled: Sequence[Callable[[], bool]] | None = None,
    ) -> tuple[list[list[int]], VisualFeatures, torch.Tensor, dict, dict[str, float], tuple]:
        params = params or GenerationParams()
        t0 = time.perf_counter()
        visual, batch = self._encode(cts)
        guided = self._guidance(visual, findings)
        n_ph = self.model.n_placeholders(int(batch["slices"].shape[1]))
        text = self._prompt_batch(prompts_for(n_ph, guided[0]))
        self._check_length(int(text["input_ids"].shape[1]), params.max_new_tokens)
        embeds, fused = self.model.build_inputs_embeds(visual, text["input_ids"], text["attention_mask"], text["prompt_mask"])
        t1 = time.perf_counter()
        stream = TextStream(self.tokenizer, len(cts), on_text) if on_text is not None else None
        if self._fast is not None:
            rows = fast_generate(self._fast, embeds.to(self.model.decoder.dtype), text["attention_mask"], params,
                                 self._stop_ids, self._suppress_ids, on_tokens=stream, cancelled=cancelled)
        else:
            rows = generate(self.model.decoder, embeds, text["attention_mask"], params, self._stop_ids,
                            self._suppress_ids, on_tokens=stream, cancelled=cancelled)
        t2 = time.perf_counter()
        timings = {"encode": round(t1 - t0, 4), "generate": round(t2 - t1, 4)}
        return rows, visual, fused.slice_attention, batch, timings, guided

    def report(
        self,
        cts: list[PreparedCT],
        params: GenerationParams | None = None,
        on_text: Callable[[int, str], None] | None = None,
        consistency: str = "warn",
        findings: Sequence | None = None,
        cancelled: Sequence[Callable[[], bool]] | None = None,
    ) -> list[ReportOutput]:
        """One findings report per CT (batched). `consistency`: off | warn | repair (model.consistency).
        `findings[i]` (`{label: {attribute: [class]}}` or a list of labels) replaces what the
        heads tell the decoder about CT i (models with prompt guidance only). `cancelled[i]()`
        true (checked every token) stops CT i's generation: its result is no longer wanted."""
        check_mode(consistency)
        if not cts:
            return []
        cfg = self.config.prompt
        rows, visual, alpha, batch, timings, (guidance, labels, attributes) = self._generate(
            cts, lambda n, g: [report_prompt(cfg, n, g[i]) for i in range(len(cts))], params, on_text, findings,
            cancelled,
        )
        out = []
        for i, ids in enumerate(rows):
            out.append(
                ReportOutput(
                    text=self._decode(ids),
                    labels=labels[i] if labels else {},
                    key_slices=key_slices(alpha[i], batch["plane_ids"][i], batch["slice_index"][i], batch["slice_mask"][i]),
                    n_tokens=len(ids),
                    timings_s=dict(timings),
                    attributes=attributes[i] if attributes else {},
                    guidance=guidance[i],
                )
            )
        return [guard(o, self.guided_labels, consistency) for o in out]  # the consistency guard (model.consistency)

    @property
    def guided_labels(self) -> tuple[str, ...]:
        """The labels the heads were trained on and the guidance names (all head labels by default)."""
        from model.guidance import guidance_labels

        return guidance_labels(self.config) if self.config.labels.enabled else ()

    def answer(
        self,
        cts: list[PreparedCT],
        questions: list[str],
        params: GenerationParams | None = None,
        on_text: Callable[[int, str], None] | None = None,
        findings: Sequence | None = None,
        cancelled: Sequence[Callable[[], bool]] | None = None,
    ) -> list[AnswerOutput]:
        """Free-text answer to one question per CT (batched); `findings` and `cancelled` as in `report`."""
        if len(questions) != len(cts):
            raise invalid(f"{len(cts)} CTs but {len(questions)} questions")
        if not cts:
            return []
        cfg = self.config.prompt
        rows, _, _, _, timings, _ = self._generate(
            cts, lambda n, g: [question_prompt(cfg, n, q, g[i]) for i, q in enumerate(questions)], params, on_text,
            findings, cancelled,
        )
        return [AnswerOutput(text=self._decode(ids), n_tokens=len(ids), timings_s=dict(timings)) for ids in rows]

    def choose(
        self,
        cts: list[PreparedCT],
        questions: list[str],
        choices: list[list[str]],
        findings: Sequence | None = None,
        mode: str | None = None,
        params: GenerationParams | None = None,
        cancelled: Sequence[Callable[[], bool]] | None = None,
    ) -> list[ChoiceOutput]:
        """Multiple choice, one question per CT; `findings` as in `report`. `mode` (default: the
        config's `prompt.mcq_mode`): likelihood scores every option in one pass and always picks
        one; generate writes the answer freely (greedy unless `params` say otherwise) and parses
        it to an option (model/mcq_parse.py), keeping the text; `cancelled` as in `report`."""
        mode = mode or self.config.prompt.mcq_mode
        if mode not in MCQ_MODES:
            raise invalid(f"mcq mode must be one of {MCQ_MODES}, got {mode!r}")
        if not (len(cts) == len(questions) == len(choices)):
            raise invalid(f"{len(cts)} CTs, {len(questions)} questions and {len(choices)} choice lists must match")
        if not cts:
            return []
        options = [check_choices(c) for c in choices]
        if mode == "generate":
            return self._choose_by_generation(cts, questions, options, findings, params, cancelled)
        return self._choose_by_likelihood(cts, questions, options, findings)

    def _choose_by_generation(self, cts, questions, options, findings, params, cancelled) -> list[ChoiceOutput]:
        from model.mcq_parse import parse_choice

        cfg = self.config.prompt
        rows, _, _, _, timings, _ = self._generate(
            cts, lambda n, g: [mcq_prompt(cfg, n, q, opts, g[i]) for i, (q, opts) in enumerate(zip(questions, options))],
            params, None, findings, cancelled,
        )
        out = []
        for ids, opts in zip(rows, options):
            text = self._decode(ids)
            index = parse_choice(text, opts)
            result = ChoiceOutput(
                answer=None if index is None else opts[index],
                index=index,
                letter=None if index is None else LETTERS[index],
                probabilities=None,
                timings_s=dict(timings),
                mcq_mode="generate",
                generated=text,
            )
            if index is None:
                result.warnings.append({"code": "mcq_answer_unparsed",
                                        "message": "the generated answer names no single option; see `generated`"})
            out.append(result)
        return out

    @torch.inference_mode()
    def _choose_by_likelihood(self, cts, questions, options, findings) -> list[ChoiceOutput]:
        cfg = self.config.prompt
        t0 = time.perf_counter()
        visual, batch = self._encode(cts)
        guidance = self._guidance(visual, findings)[0]
        n_ph = self.model.n_placeholders(int(batch["slices"].shape[1]))
        prompts = [mcq_prompt(cfg, n_ph, q, opts, guidance[i]) for i, (q, opts) in enumerate(zip(questions, options))]
        answer_ids = [
            [self.tokenizer(mcq_answer(cfg, j, opt), add_special_tokens=False)["input_ids"] for j, opt in enumerate(opts)]
            for opts in options
        ]
        text = self._prompt_batch(prompts)
        longest = max(len(ids) for opts in answer_ids for ids in opts)
        self._check_length(int(text["input_ids"].shape[1]) + longest, 0)
        embeds, _ = self.model.build_inputs_embeds(visual, text["input_ids"], text["attention_mask"], text["prompt_mask"])
        t1 = time.perf_counter()
        per_question = score_options_shared(
            self.model.decoder, embeds, text["attention_mask"], answer_ids, int(self.tokenizer.pad_token_id)
        )
        scores = torch.cat(per_question).cpu()
        t2 = time.perf_counter()
        timings = {"encode": round(t1 - t0, 4), "score": round(t2 - t1, 4)}
        out, start = [], 0
        for opts in options:
            probs = torch.softmax(scores[start : start + len(opts)].double(), dim=0)
            start += len(opts)
            best = int(probs.argmax())
            out.append(
                ChoiceOutput(
                    answer=opts[best],
                    index=best,
                    letter=LETTERS[best],
                    probabilities=[float(p) for p in probs.tolist()],
                    timings_s=dict(timings),
                )
            )
        return out

    # ---- misc --------------------------------------------------------------------------------

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def merge(self) -> Pipeline:
        """Fold LoRA into the decoder weights (faster serving); returns self."""
        self.model.decoder.merge()
        self.model.cfg = self.model.cfg.replace(decoder=self.model.decoder.cfg)
        self._weights_hash = self._model_hash = None
        if self._fast is not None:  # it held the PEFT-wrapped LM
            self.enable_fast_decode()
        return self

    def for_inference(self, dtype: torch.dtype | str | None = None, fast_decode: bool = True) -> Pipeline:
        """The serving form, on any device; returns self. LoRA merged into the decoder (a CPU
        otherwise runs base + A·B in every linear layer), the decoder in `dtype` (None: as
        loaded; "int8": weight-only int8 with bf16 activations, model/quantize.py;
        `model.runtime.decode_dtype` picks one), static-cache decoding with `fast_decode`
        (+ CUDA graphs on a GPU). The pipeline keeps the checkpoint's identity (`model_hash`,
        `weights_hash`): this is how a model runs, not another model. Not for training."""
        identity = (self.model_hash, self.weights_hash)
        self.merge()
        if dtype == "int8":
            from model.quantize import int8_matmul_available, quantize_linear_layers

            if not int8_matmul_available():
                raise invalid("int8 decoding needs torch.ops.aten._weight_int8pack_mm (PyTorch >= 2.4)")
            quantize_linear_layers(self.model.decoder.lm)
        elif dtype is not None and dtype != self.model.decoder.dtype:
            self.model.decoder.to(dtype)
        if fast_decode:
            self.enable_fast_decode()
        self._model_hash, self._weights_hash = identity
        return self

    def enable_fast_decode(self, use_cuda_graphs: bool | None = None) -> Pipeline:
        """Decode through a static KV cache (+ one CUDA graph per shape bucket on a GPU); returns self.

        Merge LoRA first for speed (`merge()`); greedy text is unchanged either way.
        """
        from model.fast_decode import FastDecoder

        self._fast = FastDecoder(self.model.decoder.lm, use_cuda_graphs=use_cuda_graphs)
        return self

    def save(self, directory: str | os.PathLike, merged: bool = False, trained_on: str | None = None):
        from model import checkpoint

        return checkpoint.save(self, directory, merged=merged, trained_on=trained_on)


def key_slices(
    alpha: torch.Tensor, plane_ids: torch.Tensor, slice_index: torch.Tensor, mask: torch.Tensor, k: int = N_KEY_SLICES
) -> list[dict]:
    """Top-k slices by the fusion's α: [{plane, index, weight}], best first."""
    weights = alpha.float().cpu().masked_fill(~mask.cpu(), -1.0)
    k = min(k, int(mask.sum()))
    top = torch.topk(weights, k).indices.tolist() if k else []
    return [
        {"plane": PLANES[int(plane_ids[j])], "index": int(slice_index[j]), "weight": round(float(alpha[j]), 6)}
        for j in top
    ]


def weights_hash(model: CTScribeModel) -> str:
    """sha256[:16] over every weight that defines the model's behaviour.

    Vision parts always; for the decoder, the base LM's id plus the LoRA weights when the
    base is referenced by id, else every decoder weight (random-init or merged decoders).
    """
    h = hashlib.sha256()

    def add(name: str, t: torch.Tensor) -> None:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())

    for prefix, module in model.vision_modules().items():
        for key, t in sorted(module.state_dict().items()):
            add(f"{prefix}.{key}", t)
    dec = model.decoder
    by_id = dec.has_lora and bool(model.cfg.decoder.name_or_path)
    if by_id:
        h.update(f"base={model.cfg.decoder.name_or_path}\n".encode())
    for key, t in sorted(dec.lm.state_dict().items()):
        if not by_id or "lora_" in key:
            add(f"decoder.{key}", t)
    return h.hexdigest()[:16]


# ---- constructors ------------------------------------------------------------------------


def build(
    preset: str | ModelConfig, device: str | torch.device = "cpu", seed: int = 0, dtype: torch.dtype | None = None
) -> Pipeline:
    """A pipeline from a preset name or a ModelConfig: vision parts random (seeded), the base LM
    random (`tiny`) or loaded (others), encoder weights loaded when the config names them."""
    from model import base_lm
    from model.decoder import build_decoder, random_lm
    from model.encoder_weights import load_encoder_weights
    from model.tokenizer import build_tiny_tokenizer, prepare_tokenizer

    cfg = ModelConfig.from_preset(preset) if isinstance(preset, str) else preset
    if cfg.decoder.tokenizer == "tiny-bpe":
        tokenizer = build_tiny_tokenizer(cfg.prompt)
    else:
        tokenizer = prepare_tokenizer(base_lm.load_base_tokenizer(cfg.decoder), cfg.prompt)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if cfg.decoder.name_or_path:
            lm = base_lm.load_base_lm(cfg.decoder)
        else:
            lm = random_lm(
                cfg.decoder, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
            )
        decoder = build_decoder(cfg.decoder, lm, len(tokenizer))
        model = assemble(cfg, tokenizer, decoder)
    load_encoder_weights(model.encoder, cfg.encoder)
    model.to(device)
    if dtype is not None:
        model.decoder.to(dtype)
    return Pipeline(model, tokenizer, device, source=cfg.name if isinstance(preset, str) else "config")


def load(dir_or_hub_id: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> Pipeline:
    """A pipeline from a checkpoint directory or hub id (ModelError when missing or malformed).

    The released SAMF model (e.g. hub id `serag-ai/SAMF`) is recognised by its config and
    imported into the samf-compat preset; `pipe.save(dir)` then writes a ctscribe checkpoint."""
    from model import checkpoint, samf_release

    directory = checkpoint.resolve(dir_or_hub_id)
    if samf_release.is_samf_release(directory):
        model, tokenizer = samf_release.load_samf_release(directory, device=device, dtype=dtype)
    else:
        model, tokenizer = checkpoint.load_parts(directory, device=device, dtype=dtype)
    return Pipeline(model, tokenizer, device, source=str(dir_or_hub_id))

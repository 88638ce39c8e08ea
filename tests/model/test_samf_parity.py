"""SAMF release parity, end to end: the samf-compat pipeline against a reference written from
upstream's code (serag-ai/SAMF, src/vlm), not from DESIGN.md or the project's code:

- tokens: `tokenizer(question)` with the slow tokenizer loaded as eval_caption.py / eval_mcq.py
  load it (`use_fast=False`), question = `"<im_patch>" * 256 + template` (captions) or
  `"<im_patch>" * 256 + " " + question + " " + "Choices: a. A b. B c. C d. D"` (multi_dataset.py);
- inputs: `llava_arch.prepare_inputs_for_multimodal`: the visual features overwrite positions
  1..256 whatever the tokens there are;
- the LM: `from_pretrained(...)` without a dtype: config.json's `torch_dtype`, else float32
  (with a bf16 config the reference's vision side stays float32, as the project's does; upstream
  would run it in bf16 too, so that case is compared at bf16 tolerance);
- decoding: `LlavaPhi3ForCausalLM.generate` = HF `generate(inputs_embeds=..., do_sample=False)`
  under the checkpoint's generation_config.json, nothing suppressed, text decoded with
  `skip_special_tokens=True`.

The release is written with random weights in its layout: 4 safetensors shards + index,
`pretrained_vision_encoder.pth`, config.json with and without `torch_dtype`,
generation_config.json, and a slow SentencePiece tokenizer with add_bos_token true and false.
Its LM head is edited so that greedy decoding emits `<im_patch>` first, and the stop token in
generation_config.json is one the model produces a few steps later.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, GenerationConfig

import model
from model.generation import GenerationParams
from model.preprocess import PreparedCT
from model.prompts import encode, mcq_prompt, report_prompt
from tests.model.slow_tokenizer import write_slow_tokenizer
from tests.model.test_samf_import import (
    N_PLACEHOLDERS,
    VIT,
    reference_inputs_embeds,
    reference_lm,
    release_hf_config,
    release_state,
)

pytest.importorskip("sentencepiece")

TEMPLATE = "Can you provide a caption consists of findings for this medical image?"
QUESTION = "Which of the following findings are present in the right lung of this Chest CT image?"
CHOICES = ["Normal aeration", "A few millimetric nonspecific nodules", "Enlarged lymph nodes", "Infiltrative lesion"]
MAX_NEW = 16
GAINS = (1.5, 1.2, 1.05, 1.01, 1.001)


def upstream_tokenizer(directory):
    return AutoTokenizer.from_pretrained(directory, model_max_length=512, padding_side="right", use_fast=False,
                                         trust_remote_code=True)


def upstream_question(kind: str) -> str:
    image_tokens = "<im_patch>" * N_PLACEHOLDERS
    if kind == "caption":
        return image_tokens + TEMPLATE
    choices = "Choices: a. {} b. {} c. {} d. {}".format(*CHOICES)
    return image_tokens + " " + (QUESTION + " " + choices)


def upstream_generate(state, hf, slices, input_ids, ao2d, generation: dict | None) -> list[int]:
    """New token ids of upstream's greedy `generate` (eos included, as HF returns it)."""
    lm = reference_lm(state, hf)
    embeds = reference_inputs_embeds(state, slices, input_ids, ao2d).to(lm.dtype)
    config = GenerationConfig(**(generation or {"eos_token_id": hf["eos_token_id"]}))
    config.pad_token_id = hf["pad_token_id"]
    with torch.no_grad():
        out = lm.generate(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2]),
                                                generation_config=config, max_new_tokens=MAX_NEW, do_sample=False)
    return out[0].tolist()


def until_stop(ids: list[int], stops: list[int]) -> list[int]:
    return ids[: next((i for i, t in enumerate(ids) if t in stops), len(ids))]


def write_shards(state: dict, directory, n_shards: int = 4) -> None:
    keys = sorted(state)
    weight_map = {}
    for s in range(n_shards):
        name = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
        part = {k: state[k] for k in keys[s::n_shards]}
        save_file(part, str(directory / name))
        weight_map |= {k: name for k in part}
    total = sum(t.numel() * t.element_size() for t in state.values())
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))


@pytest.fixture(scope="module")
def slices():
    g = torch.Generator().manual_seed(11)
    return torch.rand(24, 3, VIT.image_size, VIT.image_size, generator=g)


def make_release(directory, ao2d: bool, add_bos: bool, torch_dtype: str | None, slices):
    """A release directory whose model emits <im_patch> first and stops on a generation_config
    eos id a few tokens later (both found with the reference). Returns (state, hf, generation)."""
    tok_dir = write_slow_tokenizer(directory, add_bos_token=add_bos)
    tokenizer = upstream_tokenizer(tok_dir)
    hf = release_hf_config(tokenizer, ao2d) | {"vision_tower": "dino_large"}
    if torch_dtype:
        hf["torch_dtype"] = torch_dtype
    state = release_state(hf, ao2d, seed=6)  # a seed whose greedy run is not one token repeated
    ids = torch.tensor(tokenizer(upstream_question("caption"))["input_ids"])
    no_stop = {"eos_token_id": [len(tokenizer) + 1]}  # an id that never comes: the full greedy run
    first = upstream_generate(state, hf, slices, ids, ao2d, no_stop)[0]
    im_patch = tokenizer.convert_tokens_to_ids("<im_patch>")
    head = state["lm_head.weight"].clone()
    state["lm_head.weight"] = head
    # <im_patch> wins wherever `first` would (its logit scaled up), by the least gain that keeps
    # it from winning every step.
    for gain in GAINS:
        head[im_patch] = gain * head[first]
        run = upstream_generate(state, hf, slices, ids, ao2d, no_stop)
        if run[0] == im_patch and set(run) != {im_patch}:
            break
    assert run[0] == im_patch and set(run) != {im_patch}
    # The stop token is a special one, as Phi-3's <|end|> / <|assistant|> are: <bx_end>, made to
    # win where the token that first appears latest in the run would.
    later = max((t for t in set(run) if t != im_patch), key=run.index)
    stop = tokenizer.convert_tokens_to_ids("<bx_end>")
    generation = {"bos_token_id": 1, "eos_token_id": [hf["eos_token_id"], stop], "pad_token_id": 0}
    for gain in GAINS:
        head[stop] = gain * head[later]
        if len(until_stop(upstream_generate(state, hf, slices, ids, ao2d, generation), [stop])) == run.index(later):
            break
    write_shards(state, directory)
    torch.save({k[len("model.vision_tower.vision_tower."):]: v for k, v in state.items() if ".vision_tower." in k},
               directory / "pretrained_vision_encoder.pth")
    (directory / "config.json").write_text(json.dumps(hf))
    (directory / "generation_config.json").write_text(json.dumps(generation))
    return state, hf, generation


def prepared(slices) -> PreparedCT:
    n = slices.shape[0]
    return PreparedCT(slices=slices, plane_ids=torch.zeros(n, dtype=torch.long),
                      positions=torch.linspace(0, 1, n), slice_index=torch.arange(n))


@pytest.mark.parametrize("torch_dtype", [None, "bfloat16"], ids=["no-dtype", "bf16-config"])
@pytest.mark.parametrize("add_bos", [True, False], ids=["bos", "no-bos"])
@pytest.mark.parametrize("ao2d", [False, True], ids=["samf", "ao2d"])
def test_samf_compat_reproduces_upstream(tmp_path, slices, ao2d, add_bos, torch_dtype):
    state, hf, generation = make_release(tmp_path / "release", ao2d, add_bos, torch_dtype, slices)
    tokenizer = upstream_tokenizer(tmp_path / "release")
    pipe = model.load(tmp_path / "release")
    cfg = pipe.config.prompt
    # upstream's from_pretrained(...) without a dtype: config.json's dtype, else float32
    dtype = getattr(torch, torch_dtype or "float32")
    assert pipe.model.decoder.dtype == dtype

    # Input ids: exactly `tokenizer(question)`, BOS as the tokenizer says.
    want_ids = tokenizer(upstream_question("caption"))["input_ids"]
    got_ids = encode(pipe.tokenizer, cfg, report_prompt(cfg, N_PLACEHOLDERS)).input_ids
    assert got_ids == want_ids
    assert (want_ids[0] == tokenizer.bos_token_id) == add_bos
    mcq_ids = encode(pipe.tokenizer, cfg, mcq_prompt(cfg, N_PLACEHOLDERS, QUESTION, CHOICES)).input_ids
    assert mcq_ids == tokenizer(upstream_question("mcq"))["input_ids"]

    # Logits at every position.
    ids = torch.tensor(want_ids)
    batch = {"slices": slices[None], "input_ids": ids[None], "attention_mask": torch.ones(1, len(ids))}
    with torch.no_grad():
        got = pipe.model(batch).logits[0]
        lm = reference_lm(state, hf)
        want = lm(inputs_embeds=reference_inputs_embeds(state, slices, ids, ao2d).to(lm.dtype)).logits[0]
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.float(), want.float(), atol=tolerance, rtol=tolerance)

    # Greedy report: <im_patch> is emitted (nothing suppressed) and it stops where upstream stops.
    stops = generation["eos_token_id"]
    want_run = upstream_generate(state, hf, slices, ids, ao2d, generation)
    assert want_run[0] == tokenizer.convert_tokens_to_ids("<im_patch>")
    assert want_run[-1] == stops[1] and len(until_stop(want_run, stops)) >= 1
    report = pipe.report([prepared(slices)], GenerationParams(max_new_tokens=MAX_NEW), consistency="off")[0]
    assert report.n_tokens == len(until_stop(want_run, stops))
    assert report.text == tokenizer.decode(want_run, skip_special_tokens=True).strip()

    # Multiple choice by free generation, the raw text kept.
    mcq_ids_t = torch.tensor(mcq_ids)
    want_mcq = upstream_generate(state, hf, slices, mcq_ids_t, ao2d, generation)
    choice = pipe.choose([prepared(slices)], [QUESTION], [CHOICES], params=GenerationParams(max_new_tokens=MAX_NEW))[0]
    assert choice.mcq_mode == "generate" and choice.probabilities is None
    assert choice.generated == tokenizer.decode(want_mcq, skip_special_tokens=True).strip()


def test_explicit_dtype_overrides_the_release_default(tmp_path, slices):
    make_release(tmp_path / "release", ao2d=False, add_bos=False, torch_dtype=None, slices=slices)
    pipe = model.load(tmp_path / "release", dtype=torch.bfloat16)
    assert pipe.model.decoder.dtype == torch.bfloat16


def test_the_ctscribe_preset_keeps_its_fixes(tmp_path):
    cfg = model.ModelConfig.from_preset("ctscribe").prompt
    assert (cfg.bos, cfg.visual_positions, cfg.suppress_placeholders, cfg.mcq_mode) == (
        "always", "placeholders", True, "likelihood")
    compat = model.ModelConfig.from_preset("samf-compat")
    assert (compat.prompt.bos, compat.prompt.visual_positions, compat.prompt.suppress_placeholders,
            compat.prompt.mcq_mode, compat.decoder.dtype) == ("tokenizer", "after-first-token", False, "generate", "float32")

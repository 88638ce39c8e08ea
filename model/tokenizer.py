"""Tokenizers: the base LM's own, or a small in-process one for the `tiny` preset.

`tiny-bpe` is a byte-level BPE trained in-process on a fixed corpus (chest-CT report
phrases, the label names, the prompt words), so tests need no download and always get the
same vocabulary. (The SmolLM2 GGUF tokenizer would also work offline but takes ~13 s to
load on the shared CI machine; training this one takes well under a second.)

Every tokenizer gets the prompt config's placeholder token (`<|vision|>` / `<im_patch>`)
and extra special tokens, a pad token, and `stop_token_ids` (EOS + end-of-turn) are
derived here so generation stops where the chat format ends an answer.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

from ctscribe.labels import CTRATE_LABELS
from model.config import PromptConfig

TINY_VOCAB_SIZE = 600
TINY_SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>")
END_OF_TURN = {"phi3": "<|end|>", "chatml": "<|im_end|>", "samf-raw": None}
"""Token that closes an assistant turn in each chat format (generation stops on it too)."""

_TINY_CORPUS = [
    "Write the findings and the impression of this chest CT report.",
    "You are a radiologist. You read chest CT scans and answer precisely.",
    "Findings: The trachea and both main bronchi are open. Mediastinal structures cannot be evaluated optimally.",
    "Heart contour and size are normal. No pericardial effusion or thickening was detected.",
    "Thoracic esophagus calibration was normal. No lymph node in pathological size was detected.",
    "When examined in the lung parenchyma window, no mass or infiltrative lesion was detected in both lungs.",
    "There are linear atelectasis in both lungs. Ground glass opacities in the lower lobes.",
    "Impression: No acute pathology. Mild emphysema. Calcified atherosclerotic plaques in the aorta.",
    "Question: Is there a pleural effusion? Answer: Yes, there is a small left pleural effusion.",
    "Which of the following is seen in the right upper lobe? Choices: a. nodule b. mass c. cyst d. none",
    "The answer is a. b. c. d. yes no left right upper lower middle lobe segment bilateral.",
    "Millimetric nodules, bronchiectasis, consolidation, septal thickening, mosaic attenuation pattern.",
    "Osteophytes in the thoracic vertebrae. Upper abdominal organs are within normal limits.",
] + [f"{name}. {name.lower()} is present. No {name.lower()}." for name in CTRATE_LABELS]


def build_tiny_tokenizer(prompt: PromptConfig) -> PreTrainedTokenizerFast:
    """The deterministic in-process byte-level BPE (with a ChatML-style template)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=list(TINY_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TINY_CORPUS * 2, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    return prepare_tokenizer(fast, prompt)


def _keep_existing_specials_argument() -> str:
    """The `add_special_tokens` flag that keeps a tokenizer's existing extra special tokens
    (transformers 5 renamed `replace_additional_special_tokens` to `replace_extra_special_tokens`)."""
    import inspect

    from transformers import PreTrainedTokenizerBase

    params = inspect.signature(PreTrainedTokenizerBase.add_special_tokens).parameters
    return "replace_extra_special_tokens" if "replace_extra_special_tokens" in params else "replace_additional_special_tokens"


_KEEP_EXISTING_SPECIALS = _keep_existing_specials_argument()


def prepare_tokenizer(tokenizer, prompt: PromptConfig):
    """Add the placeholder / extra special tokens and a pad token; returns the same tokenizer."""
    wanted = [prompt.vision_token, *prompt.extra_special_tokens]
    eot = END_OF_TURN.get(prompt.chat_format)
    if eot:
        wanted.append(eot)
    vocab = tokenizer.get_vocab()
    missing = [t for t in wanted if t not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, **{_KEEP_EXISTING_SPECIALS: False})
    if tokenizer.pad_token is None:
        # Padding positions are masked out everywhere; any existing token will do.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def vision_token_id(tokenizer, prompt: PromptConfig) -> int:
    return int(tokenizer.convert_tokens_to_ids(prompt.vision_token))


def stop_token_ids(tokenizer, prompt: PromptConfig, configured: tuple[int, ...] = ()) -> tuple[int, ...]:
    """Ids that end an answer: `configured` (the decoder config's `stop_token_ids`, e.g. a
    release's generation_config.json eos ids) when given, else EOS and the chat format's
    end-of-turn token."""
    if configured:
        return tuple(dict.fromkeys(int(i) for i in configured))
    ids = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    eot = END_OF_TURN.get(prompt.chat_format)
    if eot and eot in tokenizer.get_vocab():
        ids.append(int(tokenizer.convert_tokens_to_ids(eot)))
    return tuple(dict.fromkeys(ids))


def never_generate_ids(tokenizer, prompt: PromptConfig, stops: tuple[int, ...] = ()) -> tuple[int, ...]:
    """Ids generation must never emit: the placeholder(s) and the pad token (if not a stop token);
    none when `prompt.suppress_placeholders` is off (samf-compat: upstream suppresses nothing)."""
    if not prompt.suppress_placeholders:
        return ()
    ids = [vision_token_id(tokenizer, prompt)]
    ids += [int(tokenizer.convert_tokens_to_ids(t)) for t in prompt.extra_special_tokens]
    stops = set(stops or stop_token_ids(tokenizer, prompt))
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id not in stops:
        ids.append(int(tokenizer.pad_token_id))
    return tuple(dict.fromkeys(ids))

"""Prompts around the visual placeholder tokens, and training examples built from them.

A prompt holds `n_vision` copies of the placeholder token (`<|vision|>`; `<im_patch>` for
samf-compat); the model overwrites exactly those positions with the fusion's visual tokens
(found by mask, never by offset). Chat formats:
- `phi3` (ctscribe): `<s><|user|>\n{vision}\n{text}<|end|>\n<|assistant|>\n`, answer
  `{answer}<|end|>` (Phi-3-mini-4k-instruct's own template).
- `chatml` (demo, tiny; SmolLM2's template): `<|im_start|>system\n{system}<|im_end|>\n
  <|im_start|>user\n{vision}\n{text}<|im_end|>\n<|im_start|>assistant\n`, answer `{answer}<|im_end|>`.
- `samf-raw` (§4.6): `<im_patch>` * 256 + text, no template, no space; MCQ text
  `" " + question + " Choices: a. A b. B c. C d. D"`, answers `"b. text."`.
BOS: prepended by `encode` (bos="always"), or whatever `tokenizer(prompt)` adds (bos="tokenizer",
samf-compat: upstream tokenises that way, so the tokenizer's add_bos_token decides).
"""

from __future__ import annotations

from dataclasses import dataclass

from model.config import PromptConfig
from model.errors import invalid
from model.tokenizer import END_OF_TURN

LETTERS = "abcdefghijklmnopqrstuvwxyz"
MAX_CHOICES = 8


def _wrap(cfg: PromptConfig, vision: str, text: str) -> str:
    if cfg.chat_format == "phi3":
        return f"<|user|>\n{vision}\n{text}<|end|>\n<|assistant|>\n"
    if cfg.chat_format == "chatml":
        system = f"<|im_start|>system\n{cfg.system}<|im_end|>\n" if cfg.system else ""
        return f"{system}<|im_start|>user\n{vision}\n{text}<|im_end|>\n<|im_start|>assistant\n"
    if cfg.chat_format == "samf-raw":
        return vision + text
    raise invalid(f"unknown chat format {cfg.chat_format!r}")


def _guided(guidance: str, text: str) -> str:
    """The request preceded by the heads' findings (model/guidance.py), when there are any."""
    return f"{guidance}\n{text}" if guidance else text


def report_prompt(cfg: PromptConfig, n_vision: int, guidance: str = "") -> str:
    return _wrap(cfg, cfg.vision_token * n_vision, _guided(guidance, cfg.report_instruction))


def question_prompt(cfg: PromptConfig, n_vision: int, question: str, guidance: str = "") -> str:
    question = question.strip()
    if not question:
        raise invalid("the question is empty")
    text = " " + question if cfg.chat_format == "samf-raw" else question
    return _wrap(cfg, cfg.vision_token * n_vision, _guided(guidance, text))


def check_choices(choices: list[str]) -> list[str]:
    cleaned = [str(c).strip() for c in choices]
    if len(cleaned) < 2 or len(cleaned) > MAX_CHOICES:
        raise invalid(f"a multiple-choice question needs 2 to {MAX_CHOICES} choices, got {len(cleaned)}")
    if any(not c for c in cleaned):
        raise invalid("a choice is empty")
    return cleaned


def mcq_prompt(cfg: PromptConfig, n_vision: int, question: str, choices: list[str], guidance: str = "") -> str:
    choices = check_choices(choices)
    listed = " ".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
    if not question.strip():
        raise invalid("the question is empty")
    if cfg.chat_format == "samf-raw":
        return _wrap(cfg, cfg.vision_token * n_vision, f" {question.strip()} Choices: {listed}")
    return _wrap(cfg, cfg.vision_token * n_vision, _guided(guidance, f"{question.strip()}\nChoices: {listed}"))


def mcq_answer(cfg: PromptConfig, index: int, choice: str) -> str:
    """The answer text an MCQ is trained on and scored by: `"b. text"` (`"b. text."` compat)."""
    text = f"{LETTERS[index]}. {choice.strip()}"
    if cfg.chat_format == "samf-raw" and not text.endswith("."):
        text += "."
    return text


def answer_suffix(cfg: PromptConfig) -> str:
    """Text appended to every target answer so the model learns to end its turn."""
    return END_OF_TURN.get(cfg.chat_format) or ""


@dataclass
class EncodedPrompt:
    """Token ids of one prompt (+ answer), and which of them are loss targets."""

    input_ids: list[int]
    labels: list[int]
    """Same length; -100 on prompt tokens (no loss), the token id on answer tokens."""
    n_prompt: int
    """Number of prompt tokens (the answer starts at this index)."""


def encode(
    tokenizer, cfg: PromptConfig, prompt: str, answer: str | None = None, close: bool = True
) -> EncodedPrompt:
    """Tokenise `prompt` (+ `answer`, closed by end-of-turn + EOS when `close`, as in training;
    multiple-choice scoring passes close=False to score the option text alone).

    Prompt and answer are tokenised separately so the boundary is exact: the fusion may
    read only the prompt part, and the loss only covers the answer part.
    """
    if cfg.bos == "tokenizer":  # exactly upstream's `tokenizer(question)`
        ids = tokenizer(prompt)["input_ids"]
    else:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if cfg.add_bos and tokenizer.bos_token_id is not None:
            ids = [int(tokenizer.bos_token_id), *ids]
    labels = [-100] * len(ids)
    n_prompt = len(ids)
    if answer is not None:
        target = answer + answer_suffix(cfg) if close else answer
        ans = tokenizer(target, add_special_tokens=False)["input_ids"]
        if close and tokenizer.eos_token_id is not None and (not ans or ans[-1] != tokenizer.eos_token_id):
            ans = [*ans, int(tokenizer.eos_token_id)]
        ids = [*ids, *ans]
        labels = [*labels, *ans]
    return EncodedPrompt(input_ids=[int(i) for i in ids], labels=[int(i) for i in labels], n_prompt=n_prompt)

"""Optional LLM-judge score of generated reports: a local causal LM rates each against its reference, 0-10.

Off by default (`eval score --judge-model PATH`). The rubric follows the spirit of CT-CHAT's
0-10 judge: the rating is about clinical content (findings present or absent, their location,
size and severity, the impression), not wording. The model is loaded from a local path or
hub id with no download at run time beyond what transformers' cache already holds
(`local_files_only`), and answers greedily; the first number 0-10 in its reply is the score.
Replies without one are counted as unparsed and left out of the mean, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RUBRIC = (
    "You are an expert radiologist grading an automatically generated chest CT report against the "
    "reference report written by a radiologist. Judge clinical content only, not wording or style: "
    "which abnormalities are reported or denied, their location, size and severity, and the "
    "impression. Score 10 if the generated report is clinically equivalent to the reference; 7-9 if it "
    "has minor omissions or imprecisions; 4-6 if it misses or invents a clinically relevant finding; "
    "1-3 if most findings are wrong; 0 if it contradicts the reference throughout. "
    "Answer with the score only, a single integer from 0 to 10."
)

_SCORE = re.compile(r"(?<![\d.])(10|[0-9])(?:\s*/\s*10)?(?![\d.])")


@dataclass(frozen=True)
class JudgeConfig:
    model: str
    """Local directory or hub id (already cached) of an instruction-tuned causal LM."""
    device: str = "cpu"
    """torch device for the judge."""
    batch_size: int = 4
    """Reports judged per forward pass (left padding)."""
    max_new_tokens: int = 6
    """Room for the answer: a number, maybe '/10'."""
    max_report_chars: int = 3000
    """Each report is cut to this many characters so prompts stay inside the model's context."""


def parse_score(reply: str) -> float | None:
    """The first integer 0-10 in the reply (10/10 and 7 / 10 forms too); None when there is none."""
    match = _SCORE.search(reply)
    return float(match.group(1)) if match else None


def judge_messages(prediction: str, reference: str, max_chars: int = 3000) -> list[dict]:
    user = (f"Reference report:\n{reference.strip()[:max_chars]}\n\n"
            f"Generated report:\n{prediction.strip()[:max_chars]}\n\nScore (0-10):")
    return [{"role": "system", "content": RUBRIC}, {"role": "user", "content": user}]


class LLMJudge:
    def __init__(self, config: JudgeConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ctscribe.errors import CtscribeError, ErrorCode

        self.config = config
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(config.model, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(config.model, local_files_only=True,
                                                              dtype=torch.float32).to(config.device).eval()
        except OSError as err:
            raise CtscribeError(ErrorCode.MODEL_NOT_READY, f"cannot load the judge model {config.model!r}: {err}") from None
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def _prompt(self, prediction: str, reference: str) -> str:
        messages = judge_messages(prediction, reference, self.config.max_report_chars)
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + " "

    def replies(self, predictions: list[str], references: list[str]) -> list[str]:
        import torch

        out: list[str] = []
        for start in range(0, len(predictions), self.config.batch_size):
            prompts = [self._prompt(p, r) for p, r in zip(predictions[start:start + self.config.batch_size],
                                                          references[start:start + self.config.batch_size])]
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.config.device)
            with torch.inference_mode():
                ids = self.model.generate(**enc, max_new_tokens=self.config.max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id)
            out += self.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return out

    def score(self, predictions: list[str], references: list[str]) -> dict:
        """{"mean", "n_scored", "n_unparsed", "per_sample": [score or None]}."""
        scores = [parse_score(r) for r in self.replies(predictions, references)]
        valid = [s for s in scores if s is not None]
        return {"mean": sum(valid) / len(valid) if valid else None, "n_scored": len(valid),
                "n_unparsed": len(scores) - len(valid), "per_sample": scores, "model": self.config.model}

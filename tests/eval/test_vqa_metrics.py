"""VQA metrics on hand-made examples with hand-computed values."""

import pytest

from eval.vqa_metrics import exact_match, free_text_metrics, mcq_metrics, normalize_answer, token_f1


def test_mcq_accuracy_and_macro_prf():
    # gold a a b c ; predicted a b b b  -> accuracy 2/4
    # a: tp1 pred1 gold2 -> P1 R.5 F.667 ; b: tp1 pred3 gold1 -> P1/3 R1 F.5 ; c: P0 R0 F0
    out = mcq_metrics([0, 1, 1, 1], [0, 0, 1, 2])
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["precision"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert out["recall"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert out["f1"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)
    assert out["per_letter"]["b"]["support"] == 1
    perfect = mcq_metrics([3, 2, 1], [3, 2, 1])
    assert perfect["accuracy"] == perfect["f1"] == 1.0
    with pytest.raises(ValueError):
        mcq_metrics([0], [0, 1])


def test_squad_normalisation_exact_match_and_token_f1():
    assert normalize_answer("The  Right Lower-Lobe!") == "right lowerlobe"
    assert exact_match("A nodule.", "nodule") == 1.0
    assert exact_match("nodules", "nodule") == 0.0
    # pred tokens: right lower lobe (3) ; ref: right upper lobe (3) ; overlap 2 -> P=R=2/3
    assert token_f1("the right lower lobe", "right upper lobe") == pytest.approx(2 / 3)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0
    out = free_text_metrics(["yes", "left lung"], ["Yes.", "right lung"])
    assert out["exact_match"] == pytest.approx(0.5)
    assert out["token_f1"] == pytest.approx((1 + 0.5) / 2)


def test_an_unparsed_generated_answer_is_wrong_and_no_letter():
    m = mcq_metrics([0, None, 1, None], [0, 1, 1, 2])
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["unparsed"] == 2
    assert set(m["per_letter"]) == {"a", "b", "c"}
    assert m["per_letter"]["b"]["recall"] == pytest.approx(0.5)  # one of two b's answered
    assert m["per_letter"]["c"]["recall"] == 0.0

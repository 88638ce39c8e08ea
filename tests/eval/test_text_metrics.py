"""Text metrics through the shipped `evaluate` modules equal the underlying libraries' values."""

import math

import pytest

from tests.eval.conftest import wordnet_available

PREDS = [
    "No pleural effusion. Mild cardiomegaly is observed.",
    "There is a 5 mm nodule in the right upper lobe.",
    "Atelectasis in both lower lobes, bronchiectasis.",
]
REFS = [
    "Pleural effusion was not detected. Cardiomegaly is observed.",
    "A 5 mm nodule is seen in the right lung upper lobe.",
    "Subsegmental atelectasis in both lower lobes of the lungs.",
]

needs_wordnet = pytest.mark.skipif(not wordnet_available(), reason="WordNet (Debian wordnet-base) not installed")


def test_bleu_matches_sacrebleu():
    import sacrebleu

    from eval.metrics import load_metric

    out = load_metric("bleu").compute(predictions=PREDS, references=REFS)
    for n in range(1, 5):
        corpus = sacrebleu.BLEU(max_ngram_order=n).corpus_score(PREDS, [REFS]).score / 100
        assert out[f"bleu_{n}"] == pytest.approx(corpus)
        sentence = sacrebleu.BLEU(max_ngram_order=n, effective_order=True)
        expected = [sentence.sentence_score(p, [r]).score / 100 for p, r in zip(PREDS, REFS)]
        assert out[f"bleu_{n}_per_sample"] == pytest.approx(expected)


def test_bleu_textbook_cases():
    from eval.metrics import load_metric

    bleu = load_metric("bleu")
    same = bleu.compute(predictions=["the heart size is normal today"], references=["the heart size is normal today"])
    assert all(same[f"bleu_{n}"] == pytest.approx(1.0) for n in range(1, 5))
    disjoint = bleu.compute(predictions=["alpha beta gamma delta"], references=["one two three four"])
    assert all(disjoint[f"bleu_{n}"] == 0.0 for n in range(1, 5))
    # Hypothesis = the reference minus its last word: every n-gram precision is 1, so BLEU-n is
    # the brevity penalty exp(1 - r/c) with r = 7 reference and c = 6 hypothesis tokens.
    short = bleu.compute(predictions=["the cat sat on the mat"], references=["the cat sat on the mat today"])
    for n in range(1, 5):
        assert short[f"bleu_{n}"] == pytest.approx(math.exp(1 - 7 / 6))


@needs_wordnet
def test_meteor_matches_nltk_and_uses_wordnet_offline():
    from nltk.translate.meteor_score import meteor_score

    from eval.metrics import load_metric
    from eval.metrics.meteor.meteor import tokenize  # the module's own tokenizer, shared
    from eval.wordnet import load_wordnet

    wordnet = load_wordnet()
    out = load_metric("meteor").compute(predictions=PREDS, references=REFS)
    expected = [meteor_score([tokenize(r)], tokenize(p), wordnet=wordnet) for p, r in zip(PREDS, REFS)]
    assert out["meteor_per_sample"] == pytest.approx(expected)
    # A single pair: the corpus (summed statistics) score is the sentence score.
    one = load_metric("meteor").compute(predictions=PREDS[:1], references=REFS[:1])
    assert one["meteor"] == pytest.approx(expected[0])
    # WordNet synonyms ("ill"/"sick" share a synset) score above an unrelated word.
    assert "sick" in {lemma for s in wordnet.synsets("ill") for lemma in s.lemma_names()}
    metric = load_metric("meteor")
    synonym = metric.compute(predictions=["the patient is ill"], references=["the patient is sick"])["meteor"]
    unrelated = metric.compute(predictions=["the patient is blue"], references=["the patient is sick"])["meteor"]
    assert synonym > unrelated + 0.2


def test_rouge_l_matches_rouge_score():
    from rouge_score import rouge_scorer

    from eval.metrics import load_metric

    out = load_metric("rouge_l").compute(predictions=PREDS, references=REFS)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(PREDS, REFS)]
    assert out["rouge_l_per_sample"] == pytest.approx(expected)
    one = load_metric("rouge_l").compute(predictions=PREDS[:1], references=REFS[:1])
    assert one["rouge_l"] == pytest.approx(expected[0])


def test_bertscore_matches_bert_score_with_local_minilm():
    import bert_score

    from eval.metrics import load_metric
    from eval.metrics.bertscore.bertscore import default_model_dir

    model_dir = default_model_dir()
    out = load_metric("bertscore").compute(predictions=PREDS, references=REFS, device="cpu")
    _, _, f1 = bert_score.score(PREDS, REFS, model_type=model_dir, num_layers=6, device="cpu")
    assert out["num_layers"] == 6
    assert out["bertscore_f1"] == pytest.approx(f1.tolist(), abs=1e-5)
    same = load_metric("bertscore").compute(predictions=REFS[:1], references=REFS[:1], device="cpu")
    assert same["bertscore_f1"][0] == pytest.approx(1.0, abs=1e-4)


@needs_wordnet
def test_compute_text_metrics_names_corpus_and_mean():
    from eval.text_metrics import TextMetricsConfig, compute_text_metrics

    summary, per_sample = compute_text_metrics(PREDS, REFS, TextMetricsConfig(metrics=("bleu", "meteor", "rouge_l")))
    for name in ("bleu_1", "bleu_4", "meteor", "rouge_l"):
        assert f"{name}_corpus" in summary and f"{name}_mean" in summary
        assert summary[f"{name}_mean"] == pytest.approx(sum(per_sample[name]) / len(PREDS))
    with pytest.raises(ValueError):
        compute_text_metrics(PREDS, REFS[:2])

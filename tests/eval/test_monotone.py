"""On the 1,607 real CT-RATE validation reports, scores fall as the text drifts from the reference.

identical > lightly perturbed (one sentence dropped, two words swapped) > heavily perturbed
(half the sentences dropped, words shuffled within sentences), and lightly perturbed > an
unrelated report. Heavy and unrelated are not ordered against each other: CT-RATE reports are
so templated that another patient's report shares more n-grams than a word-shuffled copy.
BLEU and the labeler on all reports; ROUGE-L (pure-Python LCS) on a fixed subset of 300;
METEOR and BERTScore (MiniLM) on a fixed subset of 60.
"""

import json
import random
import re

import numpy as np
import pytest

from tests.eval.conftest import wordnet_available


def _sentences(text):
    return [s for s in re.split(r"(?<=\.)\s+", text.strip()) if s]


def _light(text, rng):
    sentences = _sentences(text)
    if len(sentences) > 2:
        sentences.pop(rng.randrange(len(sentences)))
    words = " ".join(sentences).split()
    i = rng.randrange(len(words) - 1)
    words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def _heavy(text, rng):
    sentences = _sentences(text)
    kept = rng.sample(sentences, max(1, len(sentences) // 2))
    out = []
    for sentence in kept:
        words = sentence.split()
        rng.shuffle(words)
        out.append(" ".join(words))
    return " ".join(out)


@pytest.fixture(scope="module")
def variants(reports_dir):
    raw = json.loads((reports_dir / "ctrate_validation_reports.json").read_text())
    refs = [f"{v['Findings_EN']} {v['Impressions_EN']}".strip() for _, v in sorted(raw.items())]
    refs = [r for r in refs if len(_sentences(r)) >= 3]
    rng = random.Random(0)
    light = [_light(r, rng) for r in refs]
    heavy = [_heavy(r, rng) for r in refs]
    shift = len(refs) // 2  # a report about another scan
    unrelated = refs[shift:] + refs[:shift]
    return refs, {"identical": refs, "light": light, "heavy": heavy, "unrelated": unrelated}


def _assert_monotone(scores, name):
    order = ["identical", "light", "heavy"]
    values = [scores[k] for k in order]
    assert all(a > b for a, b in zip(values, values[1:])), f"{name} not monotone: {scores}"
    assert scores["light"] > scores["unrelated"], f"{name}: unrelated report scores above a light edit: {scores}"


def _subset(sets, refs, size):
    idx = np.random.default_rng(0).choice(len(refs), size=size, replace=False)
    return [refs[i] for i in idx], {name: [preds[i] for i in idx] for name, preds in sets.items()}


def test_bleu_rouge_labeler_all_reports(variants):
    from eval.clinical import label_prf, labels_matrix
    from eval.text_metrics import TextMetricsConfig, compute_text_metrics
    from model.labeler import label_reports

    refs, sets = variants
    assert len(refs) > 1500
    truth = labels_matrix(label_reports(refs))
    bleu, bleu_corpus, clinical = {}, {}, {}
    for name, preds in sets.items():
        summary, _ = compute_text_metrics(preds, refs, TextMetricsConfig(metrics=("bleu",)))
        bleu[name], bleu_corpus[name] = summary["bleu_4_mean"], summary["bleu_4_corpus"]
        clinical[name] = label_prf(truth, labels_matrix(label_reports(preds)))["micro"]["f1"]
    sub_refs, sub_sets = _subset(sets, refs, 300)
    rouge, rouge_corpus = {}, {}
    for name, preds in sub_sets.items():
        summary, _ = compute_text_metrics(preds, sub_refs, TextMetricsConfig(metrics=("rouge_l",)))
        rouge[name], rouge_corpus[name] = summary["rouge_l_mean"], summary["rouge_l_corpus"]
    assert bleu["identical"] == pytest.approx(1.0) and rouge["identical"] == pytest.approx(1.0)
    _assert_monotone(bleu, "BLEU-4 mean")
    _assert_monotone(bleu_corpus, "BLEU-4 corpus")
    _assert_monotone(rouge, "ROUGE-L mean")
    _assert_monotone(rouge_corpus, "ROUGE-L corpus")
    # Word order does not change labels much, so only identical >= light > unrelated holds here.
    assert clinical["identical"] == 1.0 > clinical["light"] > clinical["unrelated"]


@pytest.mark.skipif(not wordnet_available(), reason="WordNet (Debian wordnet-base) not installed")
def test_meteor_bertscore_subset(variants):
    from eval.text_metrics import TextMetricsConfig, compute_text_metrics

    all_refs, all_sets = variants
    refs, sets = _subset(all_sets, all_refs, 60)
    meteor, bert = {}, {}
    for name, preds in sets.items():
        summary, _ = compute_text_metrics(
            preds, refs,
            TextMetricsConfig(metrics=("meteor", "bertscore"), bertscore_device="cpu", bertscore_batch_size=64),
        )
        meteor[name], bert[name] = summary["meteor_mean"], summary["bertscore_f1_mean"]
    _assert_monotone(meteor, "METEOR mean")
    _assert_monotone(bert, "BERTScore F1 mean")

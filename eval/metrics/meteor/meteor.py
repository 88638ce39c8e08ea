"""METEOR with nltk and a local WordNet (Debian's wordnet-base), as an offline `evaluate` metric.

Per sample: nltk's `meteor_score` (exact, Porter-stem and WordNet-synonym matching; alpha 0.9,
beta 3, gamma 0.5). Corpus: the same formula over statistics summed across the corpus
(matches, chunks, hypothesis and reference lengths), as METEOR's own system-level score
aggregates them, rather than a mean of sentence scores.
Texts are lowercased and split into word and punctuation tokens by a regular expression
(nltk's `word_tokenize` needs the punkt download, which is unavailable offline).
"""

import re

import datasets
import evaluate
from nltk.stem.porter import PorterStemmer
from nltk.translate.meteor_score import align_words, meteor_score

from eval.wordnet import load_wordnet

_DESCRIPTION = "METEOR (nltk, local WordNet 3.0): corpus-level (aggregated statistics) and per sample."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated texts.
    references: list of reference texts (one per prediction).
    wordnet_dir: WordNet dict directory (default: found by eval.wordnet).
    alpha, beta, gamma: METEOR parameters (nltk defaults 0.9, 3.0, 0.5).
Returns:
    meteor: corpus METEOR; meteor_per_sample: list of sentence METEOR.
"""

_TOKEN = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]")


def tokenize(text):
    return _TOKEN.findall(text.lower())


def count_chunks(alignment):
    """Fewest runs of matches adjacent on both sides; `alignment` is sorted by hypothesis index."""
    if not alignment:
        return 0
    chunks = 1
    for (hyp_prev, ref_prev), (hyp_next, ref_next) in zip(alignment, alignment[1:]):
        if not (hyp_next == hyp_prev + 1 and ref_next == ref_prev + 1):
            chunks += 1
    return chunks


def meteor_from_counts(matches, chunks, hyp_len, ref_len, alpha, beta, gamma):
    if matches == 0:
        return 0.0
    precision = matches / hyp_len
    recall = matches / ref_len
    fmean = precision * recall / (alpha * precision + (1 - alpha) * recall)
    penalty = gamma * (chunks / matches) ** beta
    return (1 - penalty) * fmean


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Meteor(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Banerjee & Lavie, METEOR, ACL Workshop 2005.",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, wordnet_dir=None, alpha=0.9, beta=3.0, gamma=0.5):
        wordnet = load_wordnet(wordnet_dir)
        stemmer = PorterStemmer()
        per_sample = []
        totals = [0, 0, 0, 0]  # matches, chunks, hypothesis tokens, reference tokens
        for prediction, reference in zip(predictions, references):
            hyp, ref = tokenize(prediction), tokenize(reference)
            per_sample.append(
                meteor_score([ref], hyp, stemmer=stemmer, wordnet=wordnet, alpha=alpha, beta=beta, gamma=gamma)
            )
            alignment, _, _ = align_words(hyp, ref, stemmer=stemmer, wordnet=wordnet)
            for i, value in enumerate((len(alignment), count_chunks(alignment), len(hyp), len(ref))):
                totals[i] += value
        corpus = meteor_from_counts(*totals, alpha=alpha, beta=beta, gamma=gamma)
        return {"meteor": corpus, "meteor_per_sample": per_sample}

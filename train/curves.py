"""Loss curves: a CSV appended during training and a PNG redrawn at every checkpoint."""

from __future__ import annotations

import csv
import math
from pathlib import Path


class LossLog:
    """`losses.csv` with one row per logged optimizer step (columns fixed by the first row)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.columns: list[str] | None = None
        if self.path.is_file():
            with open(self.path, newline="") as f:
                header = next(csv.reader(f), None)
            self.columns = header or None

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after `step` (they belong to work a resumed run redoes)."""
        if not self.path.is_file():
            return
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if int(r["step"]) <= step]
        if len(keep) != len(rows):
            self._rewrite(keep)

    def _rewrite(self, rows: list[dict]) -> None:
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns or ["step"])
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.path)

    def append(self, row: dict[str, float]) -> None:
        if self.columns is None:
            self.columns = list(row)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore").writerow(row)

    def rows(self) -> list[dict[str, float]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            return [{k: float(v) if v not in ("", None) else math.nan for k, v in r.items()} for r in csv.DictReader(f)]


def plot_losses(log: LossLog, png_path: str | Path, title: str = "") -> Path | None:
    """Draw every loss-like column against step (log-scale y when all positive); None if no rows."""
    rows = log.rows()
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    columns = [c for c in rows[0] if c not in ("step", "lr", "epoch")]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for column in columns:
        ax.plot(steps, [r[column] for r in rows], label=column, linewidth=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    values = [r[c] for r in rows for c in columns if math.isfinite(r[c])]
    if values and min(values) > 0:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png_path = Path(png_path)
    tmp = png_path.with_name(png_path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(png_path)
    return png_path

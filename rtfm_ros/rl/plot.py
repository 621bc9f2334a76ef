"""Learning curves from the runs' progress.csv: success rate and mean return against steps."""

from __future__ import annotations

import csv
from pathlib import Path


def read_progress(run: Path) -> dict[str, list[float]]:
    """Columns of run/progress.csv (rows without finished episodes are skipped)."""
    path = run / "progress.csv" if run.is_dir() else run
    cols: dict[str, list[float]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            if row.get("success_rate", "") == "":
                continue
            for k, v in row.items():
                cols.setdefault(k, []).append(float(v) if v not in ("", None) else float("nan"))
    return cols


def plot_curves(runs: list[Path], labels: list[str], out: Path, title: str = "") -> Path:
    """One PNG: success rate (left) and mean episode return (right) of every run, by env steps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_s, ax_r) = plt.subplots(1, 2, figsize=(10, 3.8))
    for run, label in zip(runs, labels):
        cols = read_progress(run)
        if not cols:
            continue
        ax_s.plot(cols["timesteps"], cols["success_rate"], label=label)
        ax_r.plot(cols["timesteps"], cols["return_mean"], label=label)
    ax_s.set(xlabel="environment steps", ylabel="success rate (last 50 training episodes)", ylim=(0, 1))
    ax_r.set(xlabel="environment steps", ylabel="mean episode return (last 50)")
    for ax in (ax_s, ax_r):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

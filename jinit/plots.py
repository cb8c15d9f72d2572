"""Figures of a sweep (matplotlib, Agg backend: works headless).

* :func:`accuracy_curves` -- test accuracy against epoch, one line per scheme (mean over seeds) with a band of
  one standard deviation over seeds;
* :func:`final_accuracy` -- the distribution of final test accuracies per scheme: a box plot with every seed as a
  point on top;
* :func:`save_all` -- both, written atomically as PNGs into the run folder.

Diverged models are left out of both plots (their count is shown in the scheme's label), as in the summary.

Example:
    >>> from jinit import plots, sweep  # doctest: +SKIP
    >>> result = sweep.load("runs/demo")  # doctest: +SKIP
    >>> plots.accuracy_curves(result).savefig("curves.png")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jinit import results as results_lib  # noqa: E402


def _order(result: Any) -> list[str]:
    """Schemes ordered best mean accuracy first (the summary's order)."""
    return list(result.summary()["scheme"])


def _diverged_counts(result: Any) -> dict[str, int]:
    return result.models.groupby("scheme", sort=False)["diverged"].sum().astype(int).to_dict()


def _label(scheme: str, diverged: dict[str, int]) -> str:
    n = diverged.get(scheme, 0)
    return f"{scheme} ({n} diverged)" if n else scheme


def _title(result: Any) -> str:
    cfg = result.config
    parts = [str(getattr(cfg, "dataset", ""))]
    if getattr(cfg, "model", None) == "mlp":
        parts.append("MLP " + "-".join(str(h) for h in cfg.hidden) + f" {cfg.activation}")
    elif getattr(cfg, "model", None):
        parts.append(f"{cfg.model} {cfg.activation}")
    if hasattr(cfg, "optimizer"):
        parts.append(f"{cfg.optimizer} lr={cfg.learning_rate:g} batch={cfg.batch_size}")
    return ", ".join(p for p in parts if p)


def accuracy_curves(result: Any) -> plt.Figure:
    """Test accuracy vs epoch per scheme: the mean over (non-diverged) seeds and a +-1 std band.

    Args:
      result: a :class:`~jinit.results.SweepResult`.

    Returns:
      A matplotlib Figure.
    """
    curves: pd.DataFrame = result.curves
    ok = result.models.loc[~result.models["diverged"].astype(bool), ["scheme", "seed"]]
    curves = curves.merge(ok, on=["scheme", "seed"], how="inner")
    diverged = _diverged_counts(result)
    fig, ax = plt.subplots(figsize=(8, 5))
    cmap = plt.get_cmap("tab10" if len(_order(result)) <= 10 else "tab20")
    for i, scheme in enumerate(_order(result)):
        sub = curves[curves["scheme"] == scheme]
        if sub.empty:
            continue
        g = sub.groupby("epoch")["test_accuracy"]
        mean, std = g.mean(), g.std(ddof=1).fillna(0.0)
        x = mean.index.to_numpy(float)
        color = cmap(i % cmap.N)
        ax.plot(x, mean.to_numpy(), marker="o", ms=3, color=color, label=_label(scheme, diverged))
        ax.fill_between(x, (mean - std).to_numpy(), (mean + std).to_numpy(), color=color, alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Test accuracy (mean ± 1 std over seeds)\n{_title(result)}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def final_accuracy(result: Any) -> plt.Figure:
    """Distribution of final test accuracies per scheme: a box plot with one point per (non-diverged) seed.

    Args:
      result: a :class:`~jinit.results.SweepResult`.

    Returns:
      A matplotlib Figure.
    """
    models = result.models
    diverged = _diverged_counts(result)
    order = _order(result)
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(order) + 2), 5))
    rng = np.random.default_rng(0)
    data = []
    for scheme in order:
        sub = models[(models["scheme"] == scheme) & ~models["diverged"].astype(bool)]
        data.append(sub["final_accuracy"].to_numpy(float))
    positions = np.arange(1, len(order) + 1)
    nonempty = [i for i, d in enumerate(data) if d.size]
    if nonempty:
        ax.boxplot(
            [data[i] for i in nonempty],
            positions=positions[nonempty],
            widths=0.5,
            showfliers=False,
        )
    for pos, d in zip(positions, data, strict=True):
        jitter = rng.uniform(-0.12, 0.12, size=d.size)
        ax.scatter(pos + jitter, d, s=14, alpha=0.7, zorder=3)
    ax.set_xticks(positions)
    ax.set_xticklabels([_label(s, diverged) for s in order], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("final test accuracy")
    ax.set_title(
        f"Final test accuracy per scheme (one point per seed)\n{_title(result)}", fontsize=10
    )
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def save_all(result: Any, folder: str | os.PathLike | None = None) -> list[Path]:
    """Writes ``accuracy_curves.png`` and ``final_accuracy.png`` (atomically) into ``folder`` (default: the
    result's run folder) and returns their paths."""
    folder = Path(folder if folder is not None else result.path)
    written = []
    for name, make in (
        ("accuracy_curves.png", accuracy_curves),
        ("final_accuracy.png", final_accuracy),
    ):
        fig = make(result)
        try:
            results_lib.save_figure(folder / name, fig)
        finally:
            plt.close(fig)
        written.append(folder / name)
    return written

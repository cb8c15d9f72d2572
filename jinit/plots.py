"""Figures of a sweep (matplotlib).

* :func:`curves` -- a learning curve per scheme (mean over seeds, a band of one standard deviation over seeds)
  of test or training accuracy or loss against epoch, from the model at initialization (epoch 0) on;
  :func:`accuracy_curves` is its test-accuracy view;
* :func:`final_accuracy` -- the distribution of final test accuracies per scheme: a box plot with every seed as a
  point on top;
* :func:`save_all` -- both, written atomically as PNGs into the run folder (what ``jinit report`` writes).

Every figure function takes ``schemes`` (a subset, in the order to show; default all, best first) and ``ax`` (draw
into an existing Axes, e.g. one panel of your own figure), and returns the Figure. Figures are made with
``matplotlib.pyplot``, so in Jupyter they show under the notebook's own backend (inline, widget, ...); nothing here
chooses a backend at import. End the call with ``;`` (or assign the figure) so that Jupyter does not show it a
second time as the cell's value. Programs that only write files (the ``jinit`` command, the experiment scripts)
call :func:`use_file_backend` first.

Diverged models are left out (their count is shown in the scheme's label), as in the summary. The accuracy axes
are fitted to the schemes that learned: a scheme that stays at chance (``zeros``: 11%) would squash the others into
a flat line at the top, so a scheme that ends below the range is named in its legend entry with its final value.

Example:
    >>> from jinit import plots, sweep  # doctest: +SKIP
    >>> result = sweep.load("runs/demo")  # doctest: +SKIP
    >>> plots.curves(result, ["he_normal", "glorot_uniform"], metric="loss");  # doctest: +SKIP
    >>> plots.accuracy_curves(result).savefig("curves.png")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from jinit import files as files_lib

#: What :func:`curves` can draw: one column of ``result.curves``, or ``accuracy`` / ``loss`` (test solid and
#: training dashed, in the scheme's colour).
METRICS = ("test_accuracy", "train_accuracy", "test_loss", "train_loss", "accuracy", "loss")


def use_file_backend() -> None:
    """Selects matplotlib's non-interactive ``Agg`` backend, for a program that only writes figures to files.

    Called by the ``jinit`` command and the experiment scripts (never at import, so that a notebook or an
    interactive session keeps its own backend). Leaves the backend alone when the user chose one with the
    ``MPLBACKEND`` environment variable.
    """
    if not os.environ.get("MPLBACKEND"):
        plt.switch_backend("Agg")


def _order(result: Any) -> list[str]:
    """Schemes ordered best mean accuracy first (the summary's order)."""
    return list(result.summary()["scheme"])


def _schemes(result: Any, schemes: str | Sequence[str] | None) -> list[str]:
    """The schemes to draw: all (best first) or the given subset, checked against the sweep's."""
    order = _order(result)
    if schemes is None:
        return order
    chosen = [schemes] if isinstance(schemes, str) else list(schemes)
    present = list(dict.fromkeys(result.models["scheme"]))
    bad = [s for s in chosen if s not in present]
    if bad or not chosen:
        raise ValueError(
            f"scheme(s) {bad or chosen} not in this sweep; its schemes: {', '.join(present)}"
        )
    return list(dict.fromkeys(chosen))


def _diverged_counts(result: Any) -> dict[str, int]:
    return result.models.groupby("scheme", sort=False)["diverged"].sum().astype(int).to_dict()


def _label(scheme: str, diverged: dict[str, int]) -> str:
    n = diverged.get(scheme, 0)
    return f"{scheme} ({n} diverged)" if n else scheme


def _title(result: Any) -> str:
    cfg = result.config
    parts = [str(getattr(cfg, "dataset", ""))]
    model = (getattr(result, "meta", None) or {}).get("model") or {}
    if str(getattr(cfg, "model", "")).startswith("custom:"):  # your own model: its class and size
        count = model.get("param_count")
        parts.append(cfg.model[len("custom:") :] + (f" ({count:,} params)" if count else ""))
    elif getattr(cfg, "model", None) == "mlp":
        parts.append("MLP " + "-".join(str(h) for h in cfg.hidden) + f" {cfg.activation}")
    elif getattr(cfg, "model", None):
        parts.append(f"{cfg.model} {cfg.activation}")
    if hasattr(cfg, "optimizer"):
        lr = cfg.learning_rate
        lr = ",".join(f"{v:g}" for v in lr) if isinstance(lr, tuple | list) else f"{lr:g}"
        parts.append(f"{cfg.optimizer} lr={lr} batch={cfg.batch_size}")
    return ", ".join(p for p in parts if p)


_AXIS_SHORT = {
    "learning_rate": "lr",
    "weight_decay": "wd",
    "init_scale": "scale",
    "compute_dtype": "compute",
    "state_dtype": "state",
}


def _by_group(result: Any) -> Any:
    """``result`` itself, or for a sweep with hyperparameter axes a copy whose ``scheme`` column names each
    (scheme, axis values) group (``he_normal lr=0.001``) and has no axis columns: the plots that draw one line or
    box per scheme then draw one per group, never pooling the values of an axis."""
    import dataclasses

    from jinit import metrics

    axes = metrics.axis_columns(result.models)
    if not axes:
        return result

    def relabel(df):
        if not len(df) or not all(a in df.columns for a in axes):
            return df
        df = df.copy()
        for a in axes:
            df["scheme"] = (
                df["scheme"].astype(str)
                + f" {_AXIS_SHORT[a]}="
                + df[a].map(metrics.axis_value_text)
            )
        return df.drop(columns=axes)

    return dataclasses.replace(result, models=relabel(result.models), curves=relabel(result.curves))


def axis_curve(
    result: Any,
    axis: str = "learning_rate",
    *,
    metric: str = "final_accuracy",
    ax: Any = None,
    logx: bool | None = None,
    level: float = 0.95,
) -> plt.Figure:
    """A final metric against the values of a hyperparameter axis, one line per scheme (and value of the other
    axes): the mean over non-diverged seeds with its ``level`` confidence interval (Student-t) as error bars.

    Args:
      result: a :class:`~jinit.results.SweepResult` whose models table has the ``axis`` column.
      axis: ``learning_rate``, ``weight_decay`` or ``init_scale``.
      metric: a column of ``result.models`` (default ``final_accuracy``, the test accuracy).
      ax: a matplotlib Axes to draw on (default: a new figure).
      logx: log-scale x axis (default: when every value is positive).
      level: confidence level of the error bars.

    Returns:
      The matplotlib Figure.

    Raises:
      ValueError: when ``axis`` was not swept or ``metric`` is not a column.
    """
    from jinit import metrics

    models = result.models
    if axis not in models.columns:
        raise ValueError(
            f"this sweep has no {axis} column: {axis} was not swept; its axis columns: {metrics.axis_columns(models)}"
        )
    if axis not in metrics.AXIS_COLUMNS:
        raise ValueError(
            f"{axis} is not a numeric axis; axis_curve draws one of {', '.join(metrics.AXIS_COLUMNS)}"
        )
    if metric not in models.columns:
        raise ValueError(f"unknown metric {metric!r}; the models table has {list(models.columns)}")
    keys = ["scheme"] + [a for a in metrics.axis_columns(models) if a != axis]
    own = ax is None
    fig, ax = _axes(ax, (7, 5))
    ok = ~models["diverged"].astype(bool) & np.isfinite(models[metric].to_numpy(float))
    groups = list(models.groupby(keys, sort=False))
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    for i, (group, sub) in enumerate(groups):
        group = group if isinstance(group, tuple) else (group,)
        label = str(group[0]) + "".join(
            f" {_AXIS_SHORT[k]}={metrics.axis_value_text(v)}"
            for k, v in zip(keys[1:], group[1:], strict=True)
        )
        xs, mean, low, high = [], [], [], []
        for v, rows in sub[ok.loc[sub.index]].groupby(axis, sort=True):
            ci = metrics.mean_ci(rows[metric].to_numpy(float), level=level)
            xs.append(float(v))
            mean.append(ci.mean)
            low.append(ci.low if np.isfinite(ci.low) else ci.mean)
            high.append(ci.high if np.isfinite(ci.high) else ci.mean)
        n_div = int((~ok.loc[sub.index]).sum())
        if n_div:
            label += f" ({n_div} diverged)"
        mean_a = np.asarray(mean)
        ax.errorbar(
            xs,
            mean_a,
            yerr=[mean_a - np.asarray(low), np.asarray(high) - mean_a],
            marker="o",
            ms=4,
            capsize=3,
            color=cmap(i % cmap.N),
            label=label,
        )
    values = models[axis].to_numpy(float)
    if np.all(values > 0) if logx is None else logx:
        ax.set_xscale("log")
    ax.set_xlabel(axis.replace("_", " "))
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(
        f"{metric.replace('_', ' ')} vs {axis.replace('_', ' ')}: mean and {100 * level:g}% CI over seeds\n"
        f"{_title(result)}",
        fontsize=10,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
    if own:
        fig.tight_layout()
    return fig


def lr_curve(result: Any, **kwargs: Any) -> plt.Figure:
    """The final test accuracy against the learning rate per scheme, with intervals: :func:`axis_curve` of
    ``learning_rate``."""
    return axis_curve(result, "learning_rate", **kwargs)


def _axes(ax: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _metric(result: Any) -> str:
    """The sweep's primary metric (``result.metric``: ``accuracy`` for classification, ``r2`` for regression, a
    custom task's metric name)."""
    return str(getattr(result, "metric", "accuracy") or "accuracy")


def _chance(result: Any) -> float:
    return 1.0 / max(int(getattr(result, "num_classes", 10) or 10), 1)


def robust_range(
    values: dict[str, np.ndarray], *, chance: float, pad: float = 0.05
) -> tuple[float, float] | None:
    """A y-range for accuracies that a collapsed scheme does not squash.

    Args:
      values: per scheme, the accuracies to show (NaN ignored); the last value is the scheme's final one.
      chance: chance accuracy (``1 / num_classes``).
      pad: margin added on both sides, as a fraction of the span.

    Returns:
      ``(low, high)`` within [0, 1] covering every value of the schemes whose final value is more than 1 point
      above chance (the summary's definition of a failure), or None when no scheme learned (then matplotlib's
      own range is right).
    """
    learned = [
        v[np.isfinite(v)]
        for v in values.values()
        if np.isfinite(v).any() and v[np.isfinite(v)][-1] > chance + 0.01
    ]
    learned = [v for v in learned if v.size]
    if not learned:
        return None
    both = np.concatenate(learned)
    lo, hi = float(both.min()), float(both.max())
    span = max(hi - lo, 0.01)
    return max(0.0, lo - pad * span), min(1.0, hi + pad * span)


def _set_ylim(ax: Any, ylim: Any, auto: tuple[float, float] | None) -> tuple[float, float] | None:
    if isinstance(ylim, str):
        if ylim != "auto":
            raise ValueError(f"ylim must be 'auto', None or (low, high), got {ylim!r}")
        if auto is not None:
            ax.set_ylim(*auto)
        return auto
    if ylim is not None:
        low, high = ylim
        ax.set_ylim(low, high)
        return float(low), float(high)
    return None


def curves(
    result: Any,
    schemes: str | Sequence[str] | None = None,
    *,
    metric: str | None = None,
    ax: Any = None,
    logy: bool | None = None,
    ylim: Any = "auto",
    from_init: bool = True,
) -> plt.Figure:
    """Learning curves per scheme: the mean over (non-diverged) seeds and a +-1 std band, against epoch.

    Args:
      result: a :class:`~jinit.results.SweepResult`.
      schemes: a scheme name or a list of them (in the legend's order); default all, best mean accuracy first.
      metric: a column of ``result.curves`` (``test_accuracy``, ``train_accuracy``, ``test_loss``,
        ``train_loss``; ``val_*`` with a validation split; for another task its metric's columns, e.g.
        ``test_r2``, ``test_rmse``), or ``accuracy`` / ``loss`` (or the task's metric, e.g. ``r2``) for test
        (solid) and training (dashed) together; default: ``test_<result.metric>`` (``test_accuracy``). Training
        values are the running means over the steps of each logging interval (as Keras reports them); test values
        are measured on the whole test set at each point.
      ax: a matplotlib Axes to draw on (default: a new figure).
      logy: log-scale y axis (default: True for losses, False for accuracies).
      ylim: ``"auto"`` (accuracies: fitted to the schemes that learned, see :func:`robust_range`; losses:
        matplotlib's), None (matplotlib's), or ``(low, high)``.
      from_init: include epoch 0, the models at initialization (when the sweep logged it).

    Returns:
      The matplotlib Figure.

    Raises:
      ValueError: for an unknown metric or scheme (naming the valid ones).
    """
    primary = _metric(result)
    metric = f"test_{primary}" if metric is None else metric
    valid = list(METRICS) if primary == "accuracy" else []
    valid += [
        c
        for c in result.curves.columns
        if c.startswith(("train_", "test_", "val_")) and c not in valid
    ]
    valid += [m for m in ("loss", primary) if m not in valid]
    if metric not in valid:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(valid)}")
    result = _by_group(result)  # one line per (scheme, axis values)
    bare = metric in ("accuracy", "loss", primary)
    columns = [f"test_{metric}", f"train_{metric}"] if bare else [metric]
    trained = result.curves[result.curves["step"] > 0] if len(result.curves) else result.curves
    missing = [c for c in columns if c not in trained.columns or trained[c].isna().all()]
    if missing:
        raise ValueError(
            f"this sweep's curves have no {', '.join(missing)} (written by an older jinit); "
            f"they have: {', '.join(c for c in result.curves.columns if c in METRICS)}"
        )
    is_loss = metric.endswith("loss")
    is_acc = metric.endswith(
        "accuracy"
    )  # a fraction with a chance level: the fitted range and percents
    logy = is_loss if logy is None else bool(logy)
    order = _schemes(result, schemes)
    data: pd.DataFrame = result.curves
    if not from_init:
        data = data[data["step"] > 0]
    ok = result.models.loc[~result.models["diverged"].astype(bool), ["scheme", "seed"]]
    data = data.merge(ok, on=["scheme", "seed"], how="inner")
    diverged = _diverged_counts(result)
    own = ax is None
    fig, ax = _axes(ax, (8, 5))
    cmap = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
    means: dict[str, dict[str, np.ndarray]] = {c: {} for c in columns}
    epochs: dict[str, dict[str, np.ndarray]] = {c: {} for c in columns}
    lines = {}
    for i, scheme in enumerate(order):
        sub = data[data["scheme"] == scheme]
        color = cmap(i % cmap.N)
        for column in columns:
            g = sub.groupby("epoch")[column]
            mean, std = g.mean(), g.std(ddof=1).fillna(0.0)
            if mean.isna().all():
                continue
            x = mean.index.to_numpy(float)
            style = "--" if column.startswith("train_") and len(columns) > 1 else "-"
            (line,) = ax.plot(x, mean.to_numpy(), style, marker="o", ms=3, color=color)
            if column == columns[0]:
                lines[scheme] = line
            ax.fill_between(
                x, (mean - std).to_numpy(), (mean + std).to_numpy(), color=color, alpha=0.15
            )
            means[column][scheme] = mean.to_numpy(float)
            epochs[column][scheme] = x
    shown = None
    if is_acc:
        # the range covers the training part of the curves; the point at init (chance) may sit below it
        trained = {
            f"{c}/{s}": v[epochs[c][s] > 0] if (epochs[c][s] > 0).any() else v
            for c, per in means.items()
            for s, v in per.items()
        }
        auto = robust_range(trained, chance=_chance(result))
        shown = _set_ylim(ax, ylim, auto)
    else:
        _set_ylim(ax, ylim, None)
    if logy:
        ax.set_yscale("log")
    for scheme, line in lines.items():
        label = _label(scheme, diverged)
        final = means[columns[0]].get(scheme)
        if shown is not None and final is not None and final[-1] < shown[0]:
            label += f" (below the range: {100 * final[-1]:.1f}%)"
        line.set_label(label)
    what = metric.replace("_", " ")
    if len(columns) > 1:
        what = f"{metric} (test solid, training dashed)"
    if data.empty or np.allclose(data["epoch"], np.round(data["epoch"])):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs: no 0.25 ticks
    ax.set_xlabel("epoch (0: at initialization)" if from_init else "epoch")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"{what}: mean ± 1 std over seeds\n{_title(result)}", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    if lines:
        ax.legend(fontsize=8, loc="best")
    if own:
        fig.tight_layout()
    return fig


def accuracy_curves(
    result: Any, schemes: str | Sequence[str] | None = None, **kwargs: Any
) -> plt.Figure:
    """Test accuracy vs epoch per scheme: :func:`curves` with ``metric="test_accuracy"`` (the default).

    Args:
      result: a :class:`~jinit.results.SweepResult`.
      schemes: a subset of the schemes (default all).
      **kwargs: the other arguments of :func:`curves` (``metric``, ``ax``, ``logy``, ``ylim``, ``from_init``).

    Returns:
      A matplotlib Figure.
    """
    return curves(result, schemes, **kwargs)


def final_accuracy(
    result: Any,
    schemes: str | Sequence[str] | None = None,
    *,
    ax: Any = None,
    ylim: Any = "auto",
) -> plt.Figure:
    """Distribution of final test accuracies per scheme: a box plot with one point per (non-diverged) seed.

    Args:
      result: a :class:`~jinit.results.SweepResult`.
      schemes: a scheme name or a list of them (in the order to show); default all, best mean accuracy first.
      ax: a matplotlib Axes to draw on (default: a new figure).
      ylim: ``"auto"`` (fitted to the schemes that learned; a scheme below the range is marked at the bottom with
        its median), None (matplotlib's), or ``(low, high)``.

    Returns:
      A matplotlib Figure.
    """
    result = _by_group(result)  # one box per (scheme, axis values)
    models = result.models
    metric = _metric(result)
    diverged = _diverged_counts(result)
    order = _schemes(result, schemes)
    own = ax is None
    fig, ax = _axes(ax, (max(6, 0.8 * len(order) + 2), 5))
    rng = np.random.default_rng(0)
    data = []
    for scheme in order:
        sub = models[(models["scheme"] == scheme) & ~models["diverged"].astype(bool)]
        data.append(sub[f"final_{metric}"].to_numpy(float))
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
    # a scheme's "final value" for the range is its median (robust_range reads the last entry)
    auto = None
    if metric == "accuracy":
        auto = robust_range(
            {s: np.append(d, np.median(d)) for s, d in zip(order, data, strict=True) if d.size},
            chance=_chance(result),
        )
    shown = _set_ylim(ax, ylim, auto)
    if shown is not None:
        for pos, d in zip(positions, data, strict=True):
            if d.size and np.median(d) < shown[0]:
                ax.annotate(
                    f"↓ {100 * np.median(d):.1f}%",
                    (pos, shown[0]),
                    xytext=(0, 4),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8,
                )
    ax.set_ylabel(f"final test {metric}")
    ax.set_title(
        f"Final test {metric} per scheme (one point per seed)\n{_title(result)}", fontsize=10
    )
    ax.grid(axis="y", alpha=0.3)
    if own:
        fig.tight_layout()
    return fig


def figure_names(result: Any) -> list[str]:
    """The files :func:`save_all` writes for ``result``: ``<metric>_curves.png``, ``final_<metric>.png`` (the
    task's primary metric: ``accuracy``, ``r2``, ...) and ``<axis>_curve.png`` for each hyperparameter axis."""

    metric = _metric(result)
    return [f"{metric}_curves.png", f"final_{metric}.png"] + [
        f"{a}_curve.png" for a in _numeric_axes(result.models)
    ]


def _numeric_axes(models: Any) -> list[str]:
    """The swept hyperparameter axes (numbers: an axis curve each), not the precision dimensions."""
    from jinit import metrics

    return [a for a in metrics.axis_columns(models) if a in metrics.AXIS_COLUMNS]


def save_all(result: Any, folder: str | os.PathLike | None = None) -> list[Path]:
    """Writes ``accuracy_curves.png`` and ``final_accuracy.png`` (atomically) into ``folder`` (default: the
    result's run folder), and ``<axis>_curve.png`` (:func:`axis_curve`) for each hyperparameter axis of the sweep,
    and returns their paths; for a task whose metric is not the accuracy they are named by its metric
    (``r2_curves.png``, ``final_r2.png``)."""

    folder = Path(folder if folder is not None else result.path)
    written = []
    makers = [accuracy_curves, final_accuracy]
    makers += [lambda r, a=a: axis_curve(r, a) for a in _numeric_axes(result.models)]
    for name, make in zip(figure_names(result), makers, strict=True):
        fig = make(result)
        try:
            files_lib.save_figure(folder / name, fig)
        finally:
            plt.close(fig)
        written.append(folder / name)
    return written


def coordinate_check(
    df: pd.DataFrame, *, layers: Sequence[str] | None = None, title: str | None = None
) -> Any:
    """Draws a coordinate check (:func:`jinit.propagation.coordinate_check`): one panel per step t, mean ``|x|``
    of each layer against width (log-log, mean over seeds, a band from the smallest to the largest seed).

    Flat lines: the parametrization is width-stable; lines that rise with width blow up at scale.

    Args:
      df: the DataFrame of :func:`jinit.propagation.coordinate_check`.
      layers: the layers to draw, in order (default all).
      title: the figure's title.

    Returns:
      The matplotlib Figure.
    """
    missing = {"width", "seed", "t", "layer", "l1"} - set(df.columns)
    if missing:
        raise ValueError(f"not a coordinate-check table: columns {sorted(missing)} are missing")
    names = list(dict.fromkeys(df["layer"]))
    layers = names if layers is None else list(layers)
    bad = [name for name in layers if name not in names]
    if bad:
        raise ValueError(f"unknown layer(s) {bad}; the table has: {', '.join(names)}")
    steps = sorted(df["t"].unique())
    fig, axes = plt.subplots(
        1, len(steps), figsize=(3.2 * len(steps), 3.4), sharey=True, squeeze=False
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for a, t in zip(axes[0], steps, strict=True):
        for i, name in enumerate(layers):
            g = df[(df["t"] == t) & (df["layer"] == name)].groupby("width")["l1"]
            mean, lo, hi = g.mean(), g.min(), g.max()
            c = colors[i % len(colors)]
            a.plot(mean.index, mean.to_numpy(), marker=".", color=c, label=name)
            a.fill_between(mean.index, lo.to_numpy(), hi.to_numpy(), color=c, alpha=0.2)
        a.set_xscale("log", base=2)
        a.set_yscale("log")
        a.set_xlabel("width")
        a.set_title(f"t = {t}")
        a.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("mean |activation|")
    axes[0][-1].legend(fontsize="x-small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig

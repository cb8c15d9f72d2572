"""The results of a sweep: :class:`SweepResult` (tidy curves, one row per model, test predictions, and the
statistics, comparisons, tuning and plots over them) and the columns of its tables.

The tables:

* ``curves`` (``results.csv``): tidy learning curves, one row per (scheme, seed, evaluation point): ``scheme, seed,
  epoch, step, train_loss, train_accuracy, test_loss, test_accuracy, diverged`` (``epoch`` is ``step /
  steps_per_epoch``, so it is a whole number at epoch ends; ``train_loss`` and ``train_accuracy`` are the means over
  the training batches since the previous evaluation, each measured by the step that trained on it). Every model's
  curve starts at epoch 0, step 0: the model at initialization (test loss and accuracy; the training columns are
  NaN there). Statistics (:meth:`SweepResult.summary`) are over the points after it;
* ``models`` (``models.csv``): one row per model: ``scheme, seed, final_accuracy, final_test_loss, diverged,
  diverged_step`` (``-1`` when it did not diverge) and ``param_sha256`` (:func:`jinit.metrics.param_sha256` of its
  final params);
* for a task other than classification (``meta["task"]``: name, metrics, primary metric, direction) the
  ``accuracy`` columns are named by its metrics instead (regression: ``train_r2, test_r2, test_rmse`` and
  ``final_r2, final_rmse``; a custom metric ``mae``: ``test_mae``, ``final_mae``), and ``predictions`` are its float
  outputs (``[n_models, n_test]`` or ``[n_models, n_test, d]``); with a validation set (``meta["n_val"]``) the
  curves also have ``val_loss, val_<metric>...`` and ``models`` ``final_val_<metric>..., final_val_loss``;
* a sweep with hyperparameter axes (``learning_rate``, ``weight_decay``, ``init_scale`` of several values) has one
  column per swept axis right after ``scheme`` in both tables and in the summary (one summary row per scheme and
  values); an axis of one value has none;
* ``predictions`` ``[n_models, n_test]`` (row ``i`` is model ``i`` of ``models``) and ``y_test``.

The run folder that holds these tables (and its chunks, checkpoints, lock) is :mod:`jinit.sweep.folder`'s.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CURVE_COLUMNS = (
    "scheme",
    "seed",
    "epoch",
    "step",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "diverged",
)
MODEL_COLUMNS = (
    "scheme",
    "seed",
    "final_accuracy",
    "final_test_loss",
    "diverged",
    "diverged_step",
    "param_sha256",
)

#: Column types of the tables (floats are float64 holding float32 values; CSV keeps them exactly).
CURVE_DTYPES = {
    "scheme": str,
    "seed": "int64",
    "epoch": "float64",
    "step": "int64",
    "train_loss": "float64",
    "train_accuracy": "float64",
    "test_loss": "float64",
    "test_accuracy": "float64",
    "diverged": bool,
}
MODEL_DTYPES = {
    "scheme": str,
    "seed": "int64",
    "final_accuracy": "float64",
    "final_test_loss": "float64",
    "diverged": bool,
    "diverged_step": "int64",
    "param_sha256": str,
}

#: The hyperparameter-axis columns that follow ``scheme`` in both tables when the axis was swept (several values;
#: :mod:`jinit.sweep.hyper`).
AXIS_COLUMNS = ("learning_rate", "weight_decay", "init_scale")
#: The precision columns that follow them when a precision dimension was swept (:mod:`jinit.sweep.precision`):
#: dtype names.
PRECISION_COLUMNS = ("compute_dtype", "state_dtype")
#: Every column of a swept dimension, in grid order.
GRID_COLUMNS = AXIS_COLUMNS + PRECISION_COLUMNS
AXIS_DTYPES = {**dict.fromkeys(AXIS_COLUMNS, "float64"), **dict.fromkeys(PRECISION_COLUMNS, str)}


class NoParams:
    """What :attr:`SweepResult.params` is when the sweep kept no parameters: falsy (``if result.params:`` tests
    for them), and any use of it -- ``result.params["params"]``, iterating, ``len``, an attribute -- raises one
    line saying how to get them (it was ``'NoneType' object is not subscriptable``)."""

    MESSAGE = (
        "this SweepResult holds no model parameters: run the sweep with keep_params=True to keep them in memory, "
        "or with save_params=True and out= to write them to the run folder (jinit sweep --save-params; on a "
        "folder written without them the same call trains it again) and read them with sweep.load(out).params"
    )

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NoParams()"

    def __reduce__(self) -> str:  # pickled and copied as the one NO_PARAMS
        return "NO_PARAMS"

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(self.MESSAGE)

    __getitem__ = __iter__ = __len__ = __contains__ = _refuse

    def __getattr__(self, name: str) -> Any:  # only for attributes it does not have
        if name.startswith(
            "__"
        ):  # protocols probed by copy, pickle, numpy: absent, as on any object
            raise AttributeError(name)
        raise AttributeError(f"{name!r}: {self.MESSAGE}")


#: The :class:`NoParams` of every result without parameters.
NO_PARAMS = NoParams()


@dataclasses.dataclass
class SweepResult:
    """The outcome of a sweep (what :func:`jinit.sweep.run` returns and :func:`jinit.sweep.load` reads back).

    Attributes:
      config: the :class:`~jinit.sweep.SweepConfig`.
      curves: tidy learning curves (columns :data:`CURVE_COLUMNS`).
      models: one row per model (columns :data:`MODEL_COLUMNS`), in grid order (scheme-major, seeds ascending).
      predictions: final test predictions, ``[n_models, n_test]`` integers; row ``i`` is ``models`` row ``i``.
      y_test: test labels ``[n_test]``.
      num_classes: number of classes.
      meta: versions, device, timings (see the module docstring).
      path: the run folder, if it was written or read.
      params: final variables of every model (stacked on a leading model axis, grid order: row ``i`` is
        ``models`` row ``i``) when ``run(..., keep_params=True)``, or read back by :func:`jinit.sweep.load` from a
        run folder written with ``save_params=True`` (``jinit sweep --save-params``); else :data:`NO_PARAMS`
        (given or set as None), which is falsy and whose use raises a ValueError saying how to get them.
    """

    config: Any
    curves: pd.DataFrame
    models: pd.DataFrame
    predictions: np.ndarray
    y_test: np.ndarray
    num_classes: int
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    path: Path | None = None
    params: Any = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "params" and value is None:
            value = NO_PARAMS
        object.__setattr__(self, name, value)

    def summary(self, *, ci_method: str = "t", detect_difference: float = 0.01) -> pd.DataFrame:
        """One row per scheme (:func:`jinit.metrics.summarize`), best mean accuracy first.

        Schemes are compared with the best unpaired (Welch) under ``vary="init"``, where seed ``s`` of two schemes
        shares nothing, and paired by seed under ``vary="data"`` / ``"both"`` (:func:`jinit.metrics.paired_seeds`);
        the ``test_vs_best`` column says which. What the seeds replicated decides what the comparisons are about
        (:attr:`replication`, the ``verdict_about`` column): schemes under ``vary="init"`` / ``"both"``; under
        ``vary="data"`` every seed of a scheme starts from the same weights, so the rows compare one init draw
        per scheme and are no verdict about the schemes.

        A sweep with hyperparameter axes (``learning_rate``, ``weight_decay``, ``init_scale`` of several values) or
        precision dimensions (``compute_dtype``, ``state_dtype``) has one row per (scheme, axis values), with those
        columns after ``scheme``; every group is compared with the best as above. (Groups of one scheme share init and batches and could be paired by seed; the summary does
        not, which is conservative: :func:`jinit.metrics.compare_axis_values` makes that paired comparison.)

        Args:
          ci_method: the 95% interval of the mean accuracy: ``"t"`` (Student-t, the default) or ``"bootstrap"``
            (percentile bootstrap, deterministic).
          detect_difference: the accuracy gap (fraction) of the ``seeds_to_detect`` column.
        """
        from jinit import metrics

        # the statistics are over the training run: the point at initialization (step 0) is not part of it
        curves = self.curves
        if len(curves) and "step" in curves.columns:
            curves = curves[curves["step"] > 0]
        task = {}
        if self.task_name not in (
            "classification",
            "binary",
        ):  # else: the accuracy summary, as before tasks
            task = {"metric": self.metric, "higher_is_better": self.higher_is_better}
        models = self.models
        grouped = _axis_labels(models, curves)
        if (
            grouped is not None
        ):  # one row per (scheme, axis values): the values of an axis are never pooled
            models, curves, groups, axes = grouped
        table = metrics.summarize(
            curves,
            models,
            self.predictions,
            self.y_test,
            num_classes=self.num_classes,
            target_accuracy=getattr(self.config, "target_accuracy", None) if not task else None,
            ci_method=ci_method,
            vary=getattr(self.config, "vary", "init"),
            detect_difference=detect_difference,
            **task,
        )
        if grouped is not None:
            labels = table["scheme"].tolist()
            table["scheme"] = [groups[lab][0] for lab in labels]
            for j, a in enumerate(axes):
                cast = str if a in PRECISION_COLUMNS else float
                table.insert(1 + j, a, [cast(groups[lab][1][j]) for lab in labels])
        return table

    def tune(
        self,
        axis: str,
        *,
        on: str | None = None,
        report: str | None = None,
        level: float = 0.95,
    ) -> Any:
        """For each scheme (and value of the other axes), the value of ``axis`` with the best mean ``on`` metric
        (default: the validation column of the task's metric, e.g. ``final_val_accuracy``) and the test metric
        ``report`` there (default: ``final_<metric>``), with its interval, ranked in the task's direction:
        :func:`jinit.metrics.tune` of this sweep's models.

        Example:
          >>> result.tune("learning_rate", on="final_accuracy")  # doctest: +SKIP
        """
        from jinit import metrics

        report = f"final_{self.metric}" if report is None else report
        return metrics.tune(
            self.models,
            axis,
            on=on,
            report=report,
            level=level,
            higher_is_better=self.higher_is_better if report.endswith(self.metric) else None,
        )

    @property
    def replication(self) -> Any:
        """What this sweep's seeds replicate and so what its comparisons are about: a
        :class:`jinit.metrics.Replication` of the config's ``vary`` (``verdicts_about`` is ``"scheme"``, or
        ``"init draw"`` under ``vary="data"``; ``note`` says why)."""
        from jinit import metrics

        return metrics.replication(getattr(self.config, "vary", "init"))

    @property
    def task_name(self) -> str:
        """The task the models were trained for (``meta["task"]["name"]``): ``classification`` (also for run
        folders written before tasks existed), ``binary``, ``regression`` or ``custom``."""
        task = self.meta.get("task") if isinstance(self.meta, dict) else None
        return (
            str(task.get("name", "classification")) if isinstance(task, dict) else "classification"
        )

    @property
    def metric(self) -> str:
        """The primary metric's column suffix: ``accuracy`` (classification, binary), ``r2`` (regression), a custom
        task's metric name; its columns are ``test_<metric>`` (curves) and ``final_<metric>`` (models)."""
        task = self.meta.get("task") if isinstance(self.meta, dict) else None
        name = task.get("primary") if isinstance(task, dict) else None
        if not name:
            return "accuracy"
        return f"metric_{name}" if name == "loss" else str(name)

    @property
    def higher_is_better(self) -> bool:
        """Whether a higher primary metric is better (``meta["task"]["higher_is_better"]``; True by default)."""
        task = self.meta.get("task") if isinstance(self.meta, dict) else None
        return bool(task.get("higher_is_better", True)) if isinstance(task, dict) else True

    def compare(self, a: Any, b: Any, **kwargs: Any) -> Any:
        """Scheme ``a`` against scheme ``b`` on final test accuracy: :func:`jinit.metrics.compare_schemes` of this
        sweep's models (difference of means A - B with its 95% CI, p-value, P(A > B)), paired by seed or not as
        the sweep's ``vary`` implies (:func:`jinit.metrics.paired_seeds`), as in :meth:`summary`.

        Args:
          a: a scheme of this sweep (its label, as in ``summary()["scheme"]``).
          b: another one.
          **kwargs: ``paired`` (overrides ``vary``), ``level`` (see :func:`jinit.metrics.compare_schemes`).

        Returns:
          A :class:`jinit.metrics.Comparison`. Under ``vary="data"`` it compares the two schemes' single init draws
          (:attr:`replication`), not the schemes.

        Raises:
          ValueError: for a scheme not in this sweep (naming the sweep's schemes).
        """
        from jinit import metrics

        present = list(dict.fromkeys(self.models["scheme"]))
        bad = [s for s in (a, b) if s not in present]
        if bad:
            raise ValueError(
                f"scheme(s) {', '.join(map(repr, bad))} not in this sweep; its schemes: {', '.join(present)}"
            )
        kwargs.setdefault("vary", getattr(self.config, "vary", "init"))
        if self.metric != "accuracy":
            kwargs.setdefault("column", f"final_{self.metric}")
        return metrics.compare_schemes(self.models, a, b, **kwargs)

    def plot(self, kind: str = "curves", schemes: Any = None, **kwargs: Any) -> Any:
        """A figure of this sweep (:mod:`jinit.plots`).

        Args:
          kind: ``"curves"`` (learning curves, :func:`jinit.plots.curves`) or ``"final"`` (final test accuracy
            per scheme, one point per seed, :func:`jinit.plots.final_accuracy`).
          schemes: a scheme or a list of them (default all, best first).
          **kwargs: for ``"curves"``: ``metric`` (``test_accuracy`` (default), ``train_accuracy``,
            ``test_loss``, ``train_loss``, ``accuracy`` or ``loss`` for test and training together), ``ax``,
            ``logy``, ``ylim``, ``from_init``; for ``"final"``: ``ax``, ``ylim``.

        Returns:
          The matplotlib Figure (in Jupyter end the line with ``;`` so that it is not shown twice).

        Example:
          >>> result.plot(metric="loss", schemes=["he_normal", "glorot_uniform"]);  # doctest: +SKIP
        """
        from jinit import plots

        kinds = {"curves": plots.curves, "final": plots.final_accuracy}
        if kind not in kinds:
            raise ValueError(f"unknown plot kind {kind!r}; valid: {', '.join(kinds)}")
        return kinds[kind](self, schemes, **kwargs)

    def _repr_html_(self) -> str:
        """Jupyter's rich display: what was swept, and the summary table (final test accuracy over seeds)."""
        import html

        m, cfg = self.meta, self.config
        n_schemes = self.models["scheme"].nunique()
        seeds = getattr(cfg, "seeds", "?")
        head = (
            f"<b>SweepResult</b>: {len(self.models)} models ({n_schemes} schemes x {seeds} seeds), "
            f"{getattr(cfg, 'epochs', '?')} epoch(s) on {html.escape(str(getattr(cfg, 'dataset', '?')))}"
        )
        if "wall_seconds" in m:
            head += f", {float(m['wall_seconds']):.1f} s"
        if self.path is not None:
            head += f"; run folder <code>{html.escape(str(self.path))}</code>"
        cols = [
            "scheme",
            "n",
            "acc_mean",
            "acc_std",
            "acc_ci95_low",
            "acc_ci95_high",
            "acc_min",
            "acc_max",
            "diverged_count",
            "failure_rate",
            "p_best_set",
            "in_best_set",
            "verdict_about",
        ]
        table = self.summary()
        metric = self.metric
        if (
            metric != "accuracy"
        ):  # the task's metric: r2_mean, ... (never "accuracy" for a regression)
            cols = [f"{metric}_{c[4:]}" if c.startswith("acc_") else c for c in cols]
        table = table[[c for c in cols if c in table.columns]]
        units = "accuracies are fractions" if metric == "accuracy" else f"final test {metric}"
        return (
            f"<div><p>{head}</p>{table.to_html(index=False, float_format=lambda v: f'{v:.4f}')}"
            f"<p>{units}; {html.escape(self.replication.note)}; <code>.summary()</code> has every column, <code>.compare(a, b)"
            "</code> tests two schemes, <code>.plot()</code> draws the curves</p></div>"
        )

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"SweepResult({len(self.models)} models, schemes={list(dict.fromkeys(self.models['scheme']))}, "
            f"dataset={getattr(cfg, 'dataset', None)!r}, epochs={getattr(cfg, 'epochs', None)}, path={self.path})"
        )


def _axis_labels(models: pd.DataFrame, curves: pd.DataFrame):
    """For tables with axis columns: the tables with ``scheme`` replaced by one label per (scheme, axis values)
    group, and ``{label: (scheme, values)}``; ``None`` when there are no axis columns."""
    axes = [c for c in GRID_COLUMNS if c in models.columns]
    if not axes:
        return None

    def text(v):
        return v if isinstance(v, str) else f"{float(v):.6g}"

    def label(df):
        parts = [df["scheme"].astype(str)]
        for a in axes:
            parts.append(" " + a + "=" + df[a].map(text))
        out = parts[0]
        for p in parts[1:]:
            out = out + p
        return out

    m = models.copy()
    m["scheme"] = label(models)
    groups = {
        lab: (row["scheme"], tuple(row[a] for a in axes))
        for lab, (_, row) in zip(m["scheme"], models.iterrows(), strict=True)
    }
    c = curves
    if len(curves) and all(a in curves.columns for a in axes):
        c = curves.copy()
        c["scheme"] = label(curves)
    return m, c, groups, axes

"""The run folder of a sweep: atomic writes, tidy tables, locking, resume, and :class:`SweepResult`.

A run folder holds

* ``config.json``: the full :class:`~jinit.sweep.SweepConfig` under ``"config"``, plus ``"meta"`` (jinit / jax /
  flax / optax versions, device kind and count, ``jax_threefry_partitionable``, wall and compile times, the chunk
  size, ``num_classes``, the sweep's ``fingerprint``, ...) and ``"status"`` (``"running"`` until the sweep
  finished, then ``"complete"``);
* ``results.csv``: tidy learning curves, one row per (scheme, seed, evaluation point): ``scheme, seed, epoch, step,
  train_loss, train_accuracy, test_loss, test_accuracy, diverged`` (``epoch`` is ``step / steps_per_epoch``, so it
  is a whole number at epoch ends; ``train_loss`` and ``train_accuracy`` are the means over the training batches
  since the previous evaluation, each measured by the step that trained on it). Every model's curve starts at
  epoch 0, step 0: the model at initialization (test loss and accuracy; the training columns are NaN there).
  Statistics (:meth:`SweepResult.summary`) are over the points after it;
* ``models.csv``: one row per model: ``scheme, seed, final_accuracy, final_test_loss, diverged, diverged_step``
  (``-1`` when it did not diverge) and ``param_sha256`` (:func:`jinit.metrics.param_sha256` of its final params);
* for a task other than classification (``meta["task"]``: name, metrics, primary metric, direction) the
  ``accuracy`` columns are named by its metrics instead (regression: ``train_r2, test_r2, test_rmse`` and
  ``final_r2, final_rmse``; a custom metric ``mae``: ``test_mae``, ``final_mae``), and ``predictions`` are its float
  outputs (``[n_models, n_test]`` or ``[n_models, n_test, d]``); with a validation set (``meta["n_val"]``) the
  curves also have ``val_loss, val_<metric>...`` and ``models.csv`` ``final_val_<metric>..., final_val_loss``;
* ``summary.csv``: :func:`jinit.metrics.summarize` of the above, one row per scheme;
* a sweep with hyperparameter axes (:mod:`jinit.sweep.axes`: ``learning_rate``, ``weight_decay``, ``init_scale`` of
  several values) has one column per swept axis right after ``scheme`` in ``results.csv``, ``models.csv`` and
  ``summary.csv`` (one summary row per scheme and values); an axis of one value has none (the tables of a sweep
  without axes are those of older versions);
* ``predictions.npz``: ``predictions`` ``[n_models, n_test]`` (row ``i`` is model ``i`` of ``models.csv``) and
  ``y_test``;
* ``params/00000.npz, ...``: with ``run(..., save_params=True)`` (``jinit sweep --save-params``), the final
  variables of each chunk's models (:func:`write_params`; :func:`jinit.sweep.load` reads them into ``.params``);
* ``chunks/00000.npz, ...``: the raw results of each completed chunk of the model axis, written as soon as the chunk
  finishes, with the sweep's fingerprint (the unit a resumed sweep skips);
* ``checkpoints/00003/epoch_0002/``: while a chunk trains, an orbax-checkpoint of its state (the stacked training
  state of its models and the logs of its epochs so far) at an epoch boundary; only the latest is kept, and the
  folder is deleted once the chunk's file is written;
* ``lock``: present while a sweep works in the folder (pid, host, start time).

Every file is written to a temporary name in the same folder and moved into place with ``os.replace`` (orbax does
the same for its checkpoint folders), so a reader (or a crash) never sees a half-written file; the leftovers of a
killed sweep (temporary files, unfinished checkpoints) are removed by the next sweep in the folder.

Resume: a sweep started on a folder that holds a ``"running"`` sweep of the same config and the same fingerprint
(config, grid, parameter shapes and data; see :func:`jinit.sweep.run`) continues it: chunk files whose fingerprint
and model indices match are kept, a chunk with a checkpoint restarts from its last saved epoch, everything else is
trained. A folder holding a different sweep is refused (:class:`RunFolderMismatch`, naming the differing fields)
unless ``overwrite``, which replaces that sweep's files (and only those); a folder that is not a run folder and not
empty is always refused. Two sweeps never share a folder: the second finds the ``lock`` (:class:`RunFolderInUse`);
a lock left by a sweep that is no longer running (killed) is taken over, with a warning.

Example:
    >>> import tempfile, pathlib
    >>> from jinit import results
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> results.write_json(d / "x.json", {"a": 1})
    >>> results.read_json(d / "x.json")
    {'a': 1}
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

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
#: :mod:`jinit.sweep.axes`).
AXIS_COLUMNS = ("learning_rate", "weight_decay", "init_scale")
AXIS_DTYPES = dict.fromkeys(AXIS_COLUMNS, "float64")


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> None:
    """Writes a file atomically: ``write(f)`` fills a temporary file in the same folder, then it is renamed.

    Args:
      path: destination (never a symbolic link: ValueError).
      write: called with a binary file object open for writing.
    """
    path = Path(path)
    if path.is_symlink():  # replacing it would delete a link jinit did not create
        raise ValueError(_link_message(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600; give it the mode open() would (0666 minus the umask), so run folders on a
        # shared filesystem stay readable by the group as the user's umask says.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    """The process's umask, read without changing it where the OS allows (``os.umask`` sets it to read it, which
    races with threads that create files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _jsonable(value: Any) -> Any:
    if callable(getattr(value, "to_dict", None)) and not isinstance(value, type):
        return value.to_dict()  # a SweepConfig: rules / custom schemes as their config()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as indented JSON atomically (tuples become lists, non-finite floats ``null``)."""
    write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Reads a JSON file.

    Raises:
      ValueError: for a file that is not JSON, or nested too deeply to be read (no jinit file is).
    """
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except RecursionError:
            raise ValueError(f"{path} is nested too deeply to be a jinit file") from None


def write_csv(path: str | os.PathLike, df: pd.DataFrame) -> None:
    """Writes a DataFrame as CSV atomically (no index; floats in shortest round-trip form, so reading it back
    gives the same float64 values bit for bit)."""
    write_text(path, df.to_csv(index=False))


def write_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """Writes arrays as an ``.npz`` atomically."""
    atomic_write(path, lambda f: np.savez(f, **arrays))


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads every array of an ``.npz`` into a dict."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def save_figure(path: str | os.PathLike, fig: Any, **kwargs: Any) -> None:
    """Saves a matplotlib figure as PNG atomically."""
    kwargs.setdefault("dpi", 120)
    kwargs.setdefault("bbox_inches", "tight")
    atomic_write(path, lambda f: fig.savefig(f, format="png", **kwargs))


def chunk_path(folder: str | os.PathLike, index: int) -> Path:
    """The file of chunk ``index`` in a run folder: ``chunks/00003.npz``."""
    return Path(folder) / "chunks" / f"{index:05d}.npz"


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
        run folder written with ``save_params=True`` (``jinit sweep --save-params``); else None.
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

    def summary(self, *, ci_method: str = "t", detect_difference: float = 0.01) -> pd.DataFrame:
        """One row per scheme (:func:`jinit.metrics.summarize`), best mean accuracy first.

        Schemes are compared with the best unpaired (Welch) under ``vary="init"``, where seed ``s`` of two schemes
        shares nothing, and paired by seed under ``vary="data"`` / ``"both"`` (:func:`jinit.metrics.paired_seeds`);
        the ``test_vs_best`` column says which.

        A sweep with hyperparameter axes (``learning_rate``, ``weight_decay``, ``init_scale`` of several values) has
        one row per (scheme, axis values), with those columns after ``scheme``; every group is compared with the
        best as above. (Groups of one scheme share init and batches and could be paired by seed; the summary does
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
            paired=metrics.paired_seeds(getattr(self.config, "vary", "init")),
            detect_difference=detect_difference,
            **task,
        )
        if grouped is not None:
            labels = table["scheme"].tolist()
            table["scheme"] = [groups[lab][0] for lab in labels]
            for j, a in enumerate(axes):
                table.insert(1 + j, a, [float(groups[lab][1][j]) for lab in labels])
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
          A :class:`jinit.metrics.Comparison`.

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
            "p_vs_best",
            "tied_with_best",
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
            f"<p>{units}; <code>.summary()</code> has every column, <code>.compare(a, b)"
            "</code> tests two schemes, <code>.plot()</code> draws the curves</p></div>"
        )

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"SweepResult({len(self.models)} models, schemes={list(dict.fromkeys(self.models['scheme']))}, "
            f"dataset={getattr(cfg, 'dataset', None)!r}, epochs={getattr(cfg, 'epochs', None)}, path={self.path})"
        )

    def save(self, path: str | os.PathLike, *, status: str = "complete") -> Path:
        """Writes the run folder's tables (every file atomically) and returns its path."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        write_csv(path / "results.csv", self.curves)
        write_csv(path / "models.csv", self.models)
        write_npz(path / "predictions.npz", predictions=self.predictions, y_test=self.y_test)
        write_csv(path / "summary.csv", self.summary())
        meta = {**self.meta, "num_classes": int(self.num_classes)}
        write_config(path, self.config, meta, status=status)
        self.path = path
        return path


#: Config fields that say where things are, not what the sweep is: never written to ``config.json`` (a run folder
#: carries no absolute path of the machine it was made on) and never compared (the same data in another folder is
#: the same sweep; the sweep's fingerprint hashes the data itself).
LOCATION_FIELDS = ("data_dir",)


def write_config(
    path: str | os.PathLike, config: Any, meta: dict[str, Any], *, status: str
) -> None:
    """Writes ``config.json`` (the :data:`RUN_FOLDER_FORMAT` marker, the config without :data:`LOCATION_FIELDS`,
    meta and status) atomically."""
    config = _jsonable(config)
    if isinstance(config, dict):
        config = {k: v for k, v in config.items() if k not in LOCATION_FIELDS}
    write_json(
        Path(path) / "config.json",
        {"format": RUN_FOLDER_FORMAT, "config": config, "meta": meta, "status": status},
    )


#: The marker jinit writes into every run folder's ``config.json`` (``"format"``): a folder is a run folder, whose
#: jinit files a sweep may replace, only when its ``config.json`` carries it (or has exactly the layout of a run
#: folder written before the marker existed, see :func:`is_run_config`).
RUN_FOLDER_FORMAT = "jinit-run-folder/1"


def is_run_config(doc: Any, fields: Any = None) -> bool:
    """Whether a parsed ``config.json`` was written by jinit: it carries :data:`RUN_FOLDER_FORMAT`, or (a folder
    written before the marker) it has exactly the keys ``config``, ``meta``, ``status``, a ``"running"`` /
    ``"complete"`` status and a config whose keys are all in ``fields`` (the :class:`~jinit.sweep.SweepConfig`
    field names, when given)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        return False
    if "format" in doc:
        return doc["format"] == RUN_FOLDER_FORMAT
    if set(doc) - {"config", "meta", "status"} or doc.get("status") not in ("running", "complete"):
        return False
    if not isinstance(doc.get("meta", {}), dict):
        return False
    return fields is None or set(doc["config"]) <= set(fields)


def read(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a complete run folder into plain values.

    Returns:
      A dict with ``config`` (a plain dict), ``meta``, ``status``, ``curves``, ``models``, ``predictions``,
      ``y_test``.

    Raises:
      FileNotFoundError: if the folder or one of its files is missing.
      ValueError: if the sweep of that folder did not complete.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a jinit run folder (no config.json)")
    doc = read_json(path / "config.json")
    if not is_run_config(doc):
        raise ValueError(
            f"{path} is not a jinit run folder (its config.json was not written by jinit)"
        )
    if doc.get("status") != "complete":
        raise ValueError(
            f"the sweep in {path} did not complete (status {doc.get('status')!r}); rerun it to finish"
        )
    rebuild = f"run the same `jinit sweep` with --out {path} again: it rebuilds the tables from the chunk files"
    name = "results.csv"
    try:
        curves = pd.read_csv(path / name, dtype={**CURVE_DTYPES, **AXIS_DTYPES})
        if "train_accuracy" not in curves.columns and "train_loss" in curves.columns:
            # written by an older jinit: no training accuracy, no epoch 0
            curves.insert(curves.columns.get_loc("train_loss") + 1, "train_accuracy", np.nan)
        name = "models.csv"
        models = pd.read_csv(path / name, dtype={**MODEL_DTYPES, **AXIS_DTYPES})
        name = "predictions.npz"
        arrays = read_npz(path / name)
        predictions, y_test = arrays["predictions"], arrays["y_test"]
        if (
            not _expected_columns(
                curves.drop(columns=[c for c in AXIS_COLUMNS if c in curves.columns]),
                models.drop(columns=[c for c in AXIS_COLUMNS if c in models.columns]),
                doc.get("meta"),
            )
            or _without_axes(curves, list(curves.columns))
            != [c for c in curves.columns if c not in AXIS_COLUMNS]
            or _without_axes(models, list(models.columns))
            != [c for c in models.columns if c not in AXIS_COLUMNS]
        ):
            name = "results.csv / models.csv"
            raise ValueError("unexpected columns")
        if predictions.ndim < 2 or predictions.shape[:2] != (len(models), y_test.shape[0]):
            raise ValueError(f"predictions {predictions.shape} do not match {len(models)} models")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path / name} is missing; {rebuild}") from None
    except Exception as e:  # a damaged csv / zip / npy raises many kinds of errors
        msg = " ".join(str(e).split())[:200]
        raise ValueError(
            f"{path / name} is damaged ({type(e).__name__}: {msg}); {rebuild}"
        ) from None
    return {
        "config": doc["config"],
        "meta": doc.get("meta") if isinstance(doc.get("meta"), dict) else {},
        "status": doc["status"],
        "curves": curves,
        "models": models,
        "predictions": predictions,
        "y_test": y_test,
    }


def _expected_columns(curves: pd.DataFrame, models: pd.DataFrame, meta: Any) -> bool:
    """Whether the tables have the columns of their sweep: exactly :data:`CURVE_COLUMNS` and
    :data:`MODEL_COLUMNS` for a classification sweep without validation; for another task (``meta["task"]``) or
    with a validation set, the columns named by its metrics (``test_r2``, ``final_val_loss``, ...) instead of or
    beside the accuracy ones."""
    if list(curves.columns) == list(CURVE_COLUMNS) and list(models.columns) == list(MODEL_COLUMNS):
        return True
    task = meta.get("task") if isinstance(meta, dict) else None
    names = task.get("metrics") if isinstance(task, dict) else None
    if not isinstance(names, list) or not names:
        names = ["accuracy"]
    names = [f"metric_{m}" if m == "loss" else str(m) for m in names]
    splits = ["test"] + (["val"] if isinstance(meta, dict) and "n_val" in meta else [])
    curve_cols = ["scheme", "seed", "epoch", "step", "train_loss", f"train_{names[0]}"]
    model_cols = ["scheme", "seed"]
    for split in splits:
        curve_cols += [f"{split}_loss"] + [f"{split}_{m}" for m in names]
        pre = "final_" if split == "test" else "final_val_"
        model_cols += [f"{pre}{m}" for m in names] + [f"final_{split}_loss"]
    curve_cols.append("diverged")
    model_cols += ["diverged", "diverged_step", "param_sha256"]
    return set(curve_cols) <= set(curves.columns) and set(model_cols) <= set(models.columns)


def _without_axes(table: pd.DataFrame, expected: Sequence[str]) -> list[str]:
    """The columns of ``table`` without the axis columns right after ``scheme`` (any other place is unexpected)."""
    cols = list(table.columns)
    i = 1
    while i < len(cols) and cols[i] in AXIS_COLUMNS and cols[0] == "scheme":
        i += 1
    return cols[:1] + cols[i:]


def _axis_labels(models: pd.DataFrame, curves: pd.DataFrame):
    """For tables with axis columns: the tables with ``scheme`` replaced by one label per (scheme, axis values)
    group, and ``{label: (scheme, values)}``; ``None`` when there are no axis columns."""
    axes = [c for c in AXIS_COLUMNS if c in models.columns]
    if not axes:
        return None

    def label(df):
        parts = [df["scheme"].astype(str)]
        for a in axes:
            parts.append(" " + a + "=" + df[a].map(lambda v: f"{float(v):.6g}"))
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


# ----------------------------------------------------------------------------------------------------------------
# Locking, resume and overwrite.

_log = logging.getLogger(__name__)

LOCK_FILE = "lock"
CHUNKS_DIR = "chunks"
CHECKPOINTS_DIR = "checkpoints"
PARAMS_DIR = "params"
#: The files a sweep writes into its run folder (``--overwrite`` removes these and the folders below, nothing else).
OWNED_FILES = (
    "config.json",
    "results.csv",
    "models.csv",
    "summary.csv",
    "predictions.npz",
    "accuracy_curves.png",
    "final_accuracy.png",
    "r2_curves.png",  # a regression's figures (jinit.plots.save_all names them by the task's metric)
    "final_r2.png",
)
OWNED_DIRS = (CHUNKS_DIR, CHECKPOINTS_DIR, PARAMS_DIR)
_EPOCH_DIR = re.compile(r"epoch_(\d+)")


class RunFolderInUse(OSError):
    """Another sweep that is still running holds the run folder's lock."""


class RunFolderMismatch(ValueError):
    """The run folder holds a different sweep (and ``overwrite`` was not asked for)."""


def check_writable(path: str | os.PathLike) -> None:
    """Checks, without creating anything, that a run folder can be created or written at ``path``.

    Raises:
      NotADirectoryError: when ``path``, or the nearest existing folder above it, is a file.
      PermissionError: when that folder is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"cannot use {path} as a run folder: it is a file, not a folder")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise NotADirectoryError(
            f"cannot create the run folder {path}: {probe} is a file, not a folder"
        )
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write the run folder {path}: {probe} is not writable")


def _proc_start(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of a process from /proc (Linux), or None where that is not readable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _is_own_lock(info: Any) -> bool:
    """Whether a lock's content is one jinit writes (pid, host, start time and token of a sweep)."""
    if not isinstance(info, dict):
        return False
    pid = info.get("pid")
    return (
        _is_pid(pid)
        and isinstance(info.get("host"), str)
        and isinstance(info.get("token"), str)
        and isinstance(info.get("started"), str)
    )


def _is_pid(pid: Any) -> bool:
    return isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**31


def _lock_alive(info: dict[str, Any]) -> bool:
    """Whether the process that wrote a lock may still be running (True when that cannot be told)."""
    if info.get("host") != socket.gethostname():
        return True  # another machine sharing the filesystem: its pids mean nothing here
    if os.name == "nt":
        return True  # os.kill(pid, 0) would terminate the process on Windows
    pid = info.get("pid")
    if not _is_pid(pid):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    proc = _proc_start(pid)
    if proc is not None:
        state, start = proc
        if state in ("Z", "X"):  # killed, not yet reaped by its parent
            return False
        if info.get("proc_start") is not None and info["proc_start"] != start:
            return False  # the pid was reused by another process
    return True


def _describe_lock(info: dict[str, Any]) -> str:
    return f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"


@dataclasses.dataclass
class RunLock:
    """The lock of a run folder held by this process (see :func:`acquire_lock`).

    Attributes:
      path: the lock file.
      token: a random id written into it (release removes the file only while it still holds this id).
      taken_over: the content of a stale lock this one replaced, else None.
    """

    path: Path
    token: str
    taken_over: dict[str, Any] | None = None

    def release(self) -> None:
        """Removes the lock file if it is still ours (idempotent)."""
        with _takeover_mutex(self.path.parent):
            info = _read_lock(self.path)
            if info is not None and info.get("token") == self.token:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_lock(path: Path) -> dict[str, Any] | None:
    """The lock's content; ``{}`` for one that is not a JSON object (or a link, or unreadable), None when there is
    no lock."""
    try:
        if path.is_symlink():
            return {}
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(
                1 << 16
            )  # a lock is ~200 bytes; never read a large file someone named lock
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        info = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return info if isinstance(info, dict) else {}


@contextlib.contextmanager
def _takeover_mutex(folder: Path):
    """Serializes the compare-and-remove of a lock between processes: an exclusive ``flock`` on the folder itself
    (released by the kernel when a process dies), or, where the filesystem has no ``flock``, an ``O_EXCL`` guard
    file ``.lock-takeover`` (held for microseconds; one older than 30 s is a crashed holder's and is removed)."""
    fd = None
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except (ImportError, OSError):
        if fd is not None:
            os.close(fd)
            fd = None
    if fd is not None:
        try:
            yield
        finally:
            os.close(fd)  # closing the last descriptor releases the flock
        return
    guard = folder / ".lock-takeover"
    deadline = time.monotonic() + 30
    while True:
        try:
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            break
        except FileExistsError:
            try:
                if time.time() - guard.stat().st_mtime > 30:
                    guard.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                raise RunFolderInUse(
                    f"could not take the lock of {folder}: {guard} stays"
                ) from None
            time.sleep(0.001)
    try:
        yield
    finally:
        guard.unlink(missing_ok=True)


def _create_lock(path: Path, info: dict[str, Any]) -> bool:
    """Creates the lock file with its whole content at once (written to a temporary file, then ``os.link``-ed to
    ``lock``, which fails when it exists), so no reader ever sees a half-written lock of a live sweep; where the
    filesystem has no hard links, ``O_CREAT | O_EXCL`` and a write. Returns False when the lock exists."""
    data = (json.dumps(info) + "\n").encode("utf-8")
    tmp = path.with_name(f".{path.name}.{info['token']}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some network / FAT filesystems)
            pass
    finally:
        tmp.unlink(missing_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return True


def acquire_lock(folder: str | os.PathLike) -> RunLock:
    """Creates ``folder`` (and its parents) and takes its lock: ``folder/lock`` is created atomically with its
    content (this process's pid, host, start time and a random token), and fails when it exists.

    A lock that jinit wrote (a JSON object with pid, host, start time and token) whose process is gone (same host,
    pid no longer running, or reused by another process) is stale: it is taken over, with a warning. Take-over is
    atomic: the check that the lock is still the stale one and its removal happen under a mutex between processes
    (:func:`_takeover_mutex`), so of many processes taking over one stale lock at once exactly one gets it. A file
    named ``lock`` that jinit did not write (not such a JSON object, or a link) is never removed or taken over.

    Raises:
      RunFolderInUse: when a sweep that is still running (or on another host) holds the lock, or ``lock`` is a
        file jinit did not write.
      OSError: when the folder or the lock file cannot be created.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    taken_over = None
    for _ in range(100):
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "proc_start": (_proc_start(os.getpid()) or (None, None))[1],
            "token": uuid.uuid4().hex,
        }
        if not path.is_symlink() and _create_lock(path, info):
            if taken_over is not None:
                _log.warning(
                    "took over the lock of %s: the sweep that held it (%s) is no longer running",
                    folder,
                    _describe_lock(taken_over),
                )
            return RunLock(path, info["token"], taken_over)
        old = _read_lock(path)
        if old is None:  # released in the meantime
            continue
        if not _is_own_lock(old):
            try:  # a jinit lock written without hard links can be caught half-written: give its writer time
                young = not path.is_symlink() and time.time() - path.stat().st_mtime < 2
            except FileNotFoundError:
                continue
            if young and path.stat().st_size < 4096:
                time.sleep(0.05)
                continue
            raise RunFolderInUse(
                f"{path} is not a lock written by jinit (not a jinit lock record{', a link' if path.is_symlink() else ''}); "
                "jinit never removes it: if no sweep is running there, move that file away, or choose another --out"
            )
        if _lock_alive(old):
            raise RunFolderInUse(
                f"the run folder {folder} is in use by another sweep ({_describe_lock(old)}); wait for it to "
                f"finish or choose another --out (if no sweep is running there, delete {path})"
            )
        with _takeover_mutex(folder):
            if (
                _read_lock(path) == old
            ):  # still the stale one: remove it (atomic with the check) and retry
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                taken_over = old
    raise RunFolderInUse(f"could not take the lock {path}: other processes keep changing it")


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The fields whose values differ between two config dicts, as ``"name: OLD in the folder, NEW now"``
    (:data:`LOCATION_FIELDS` are not compared)."""
    out = []
    for key in list(new) + [k for k in old if k not in new]:
        if key in LOCATION_FIELDS:
            continue
        if old.get(key, "<missing>") != new.get(key, "<missing>"):
            out.append(
                f"{key}: {old.get(key, '<missing>')!r} in the folder, {new.get(key, '<missing>')!r} now"
            )
    return out


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """What :func:`open_run_folder` found.

    Attributes:
      path: the run folder.
      state: ``"new"`` (nothing to keep), ``"resume"`` (an unfinished sweep of the same config) or
        ``"complete"`` (the same sweep, finished).
      meta: the ``meta`` of the folder's ``config.json`` for ``"resume"`` / ``"complete"`` (the chunk size to reuse).
      replaced: True when a different sweep was removed (``overwrite``).
    """

    path: Path
    state: str
    meta: dict[str, Any]
    replaced: bool = False


def _remove_tree(path: Path) -> None:
    """Removes a file or folder; a folder is first renamed to a hidden trash name, so that a crash half-way
    leaves nothing that looks like a result (the trash is removed by :func:`remove_leftovers`). A link is never
    followed: it is refused (jinit never deletes through a link it did not create)."""
    if path.is_symlink():
        raise ValueError(_link_message(path))
    if not path.exists():
        return
    if path.is_dir():
        trash = path.with_name(f".trash-{path.name}-{uuid.uuid4().hex[:8]}")
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _link_message(path: Path) -> str:
    return (
        f"{path} is a symbolic link; jinit never writes or deletes through a link it did not create: replace the "
        "link with a real folder or file, or choose another --out"
    )


_OWNED_TMP = re.compile(
    r"\.(?:" + "|".join(re.escape(n) for n in (*OWNED_FILES, LOCK_FILE)) + r")\..+\.tmp"
)
_CHUNK_TMP = re.compile(r"\.\d{5}\.npz\..+\.tmp")
_TRASH = re.compile(r"\.trash-.+-[0-9a-f]{8}")


def find_links(folder: str | os.PathLike) -> list[Path]:
    """The symbolic links among a run folder's own entries (its files, ``lock``, and anything in ``chunks/`` and
    ``checkpoints/``), which a sweep would write or delete through; links are never followed."""
    folder = Path(folder)
    found = []
    for name in (*OWNED_FILES, LOCK_FILE, *OWNED_DIRS):
        p = folder / name
        if p.is_symlink():
            found.append(p)
        elif name in OWNED_DIRS and p.is_dir():
            for root, dirs, files in os.walk(p, followlinks=False):
                for n in dirs + files:
                    if os.path.islink(os.path.join(root, n)):
                        found.append(Path(root) / n)
    return found


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Removes what a killed sweep can leave in a run folder: temporary files of its atomic writes, trash folders,
    unfinished orbax checkpoints. Only names jinit writes are removed (other files in the folder are the user's),
    and links are never followed. Call it holding the folder's lock. Returns what was removed."""
    folder = Path(folder)
    removed = []

    def real_dir(d: Path) -> bool:
        return d.is_dir() and not d.is_symlink()

    def scan(d: Path, leftover: Callable[[Path], bool]) -> None:
        if not real_dir(d):
            return
        for p in d.iterdir():
            if not p.is_symlink() and leftover(p):  # a link is the user's: never removed
                removed.append(p)

    scan(folder, lambda p: bool(_OWNED_TMP.fullmatch(p.name) or _TRASH.fullmatch(p.name)))
    for sub in (CHUNKS_DIR, PARAMS_DIR):  # their temporary files are named like the chunks'
        scan(
            folder / sub,
            lambda p: bool(_CHUNK_TMP.fullmatch(p.name) or _TRASH.fullmatch(p.name)),
        )
    ckpt = folder / CHECKPOINTS_DIR
    scan(ckpt, lambda p: not (real_dir(p) and p.name.isdigit()))
    if real_dir(ckpt):
        for d in ckpt.iterdir():
            if real_dir(d) and d.name.isdigit():
                scan(d, lambda p: not (real_dir(p) and _EPOCH_DIR.fullmatch(p.name)))
    for p in removed:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return removed


def open_run_folder(
    folder: str | os.PathLike,
    config: dict[str, Any],
    *,
    fingerprint: str,
    overwrite: bool = False,
) -> RunFolder:
    """Decides what a sweep does with its run folder; call it holding the folder's lock (:func:`acquire_lock`).

    A folder is a run folder only when its ``config.json`` was written by jinit (:func:`is_run_config`); a folder
    without one is used only when it is empty (but for the lock). jinit's own entries must not be links.

    Args:
      folder: the run folder (it exists: the lock is in it).
      config: the sweep's config as a plain dict (``SweepConfig.to_dict()``).
      fingerprint: the sweep's fingerprint (config, grid, parameter shapes, data).
      overwrite: replace a different sweep in the folder instead of refusing.

    Returns:
      A :class:`RunFolder`: ``"resume"`` / ``"complete"`` when the folder holds this sweep (same config and
      fingerprint), else ``"new"``.

    Raises:
      RunFolderMismatch: the folder holds a different sweep (the message names the differing fields) and
        ``overwrite`` is False.
      ValueError: the folder is not empty and not a run folder, its ``config.json`` was not written by jinit, or
        one of its jinit entries is a link (all also with ``overwrite``: only a sweep's own files are ever
        deleted or replaced).
    """
    folder = Path(folder)
    links = find_links(folder)
    if links:
        raise ValueError(_link_message(links[0]))
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        foreign = sorted(
            p.name
            for p in folder.iterdir()
            if p.name != LOCK_FILE and not _OWNED_TMP.fullmatch(p.name)
        )
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise ValueError(
                f"{folder} is not empty ({shown}) and is not a jinit run folder (no config.json); "
                "choose a new or empty --out"
            )
        remove_leftovers(folder)
        return RunFolder(folder, "new", {})
    try:
        doc = read_json(cfg_path)
        why = None if is_run_config(doc, config) else "it was not written by jinit"
    except (ValueError, OSError, UnicodeDecodeError) as e:
        why = f"unreadable: {' '.join(str(e).split())[:200]}"
    if why is not None:
        raise ValueError(
            f"{folder} is not a jinit run folder ({cfg_path} {why}); jinit never replaces files it did not "
            "write, also with --overwrite: choose a new or empty --out"
        )
    remove_leftovers(folder)
    meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
    diffs = config_differences(doc["config"], config)
    same_data = meta.get("fingerprint") in (None, fingerprint)
    if not diffs and same_data and not overwrite:
        return RunFolder(folder, "complete" if doc.get("status") == "complete" else "resume", meta)
    if not overwrite:
        if diffs:
            what = f"a different sweep ({'; '.join(diffs)})"
        else:
            what = (
                "a sweep with the same config but different data or model (fingerprint "
                f"{str(meta.get('fingerprint'))[:12]} in the folder, {fingerprint[:12]} now)"
            )
        raise RunFolderMismatch(
            f"the run folder {folder} holds {what}; pass --overwrite (overwrite=True) to replace it, or choose "
            "another --out"
        )
    # Replace: the new config first (a crash from here on leaves a "running" folder of the new sweep, whose
    # leftover chunks fail the fingerprint check), then the old sweep's files.
    write_config(folder, config, {"fingerprint": fingerprint}, status="running")
    for name in OWNED_FILES:
        if name != "config.json":
            (folder / name).unlink(missing_ok=True)
    for name in OWNED_DIRS:
        _remove_tree(folder / name)
    _log.warning("replaced the sweep that was in %s (--overwrite)", folder)
    return RunFolder(folder, "new", {}, replaced=True)


# ----------------------------------------------------------------------------------------------------------------
# Chunk files and epoch checkpoints.


def write_chunk(
    folder: str | os.PathLike, index: int, arrays: dict[str, np.ndarray], *, fingerprint: str
) -> Path:
    """Writes the results of chunk ``index`` (atomically), tagged with the sweep's fingerprint."""
    path = chunk_path(folder, index)
    write_npz(path, **arrays, fingerprint=np.asarray(fingerprint))
    return path


def read_chunk(
    folder: str | os.PathLike,
    index: int,
    *,
    fingerprint: str,
    model_index: Sequence[int],
    shapes: dict[str, tuple[tuple[int, ...], str]] | None = None,
) -> dict[str, np.ndarray] | None:
    """The arrays of chunk ``index`` when its file exists, is readable, carries ``fingerprint``, holds exactly
    the models ``model_index`` and, with ``shapes``, exactly the arrays named there, each of that shape and dtype
    kind (``{"step": ((6, 3), "i"), ...}``, kinds as ``numpy.dtype.kind``); else None (a file that exists but
    does not qualify is reported with a warning and left to be overwritten: its chunk is trained again)."""
    path = chunk_path(folder, index)
    if path.is_symlink():
        raise ValueError(_link_message(path))
    if not path.is_file():
        return None
    try:
        arrays = read_npz(path)
    except Exception as e:  # a damaged zip / npy raises many kinds of errors
        _log.warning("ignoring the unreadable chunk file %s (%s); it is trained again", path, e)
        return None
    fp = arrays.pop("fingerprint", None)
    if fp is None or str(fp) != fingerprint:
        _log.warning("ignoring %s: it belongs to another sweep; it is trained again", path)
        return None
    if not np.array_equal(arrays.get("model_index"), np.asarray(model_index)):
        _log.warning(
            "ignoring %s: it holds other models than this chunk; it is trained again", path
        )
        return None
    if shapes is not None:
        wrong = sorted(set(shapes) ^ set(arrays))
        for name, (shape, kinds) in shapes.items():
            a = arrays.get(name)
            if a is not None and (a.shape != tuple(shape) or a.dtype.kind not in kinds):
                wrong.append(f"{name} {a.dtype}{list(a.shape)}")
        if wrong:
            _log.warning(
                "ignoring %s: its arrays are missing, extra or mis-shaped (%s); it is trained again",
                path,
                ", ".join(wrong),
            )
            return None
    return arrays


def params_path(folder: str | os.PathLike, index: int) -> Path:
    """The file of chunk ``index``'s final parameters in a run folder: ``params/00003.npz``."""
    return Path(folder) / PARAMS_DIR / f"{index:05d}.npz"


_PARAM_PREFIX = "variables/"


def write_params(
    folder: str | os.PathLike,
    index: int,
    variables: Any,
    *,
    fingerprint: str,
    model_index: Sequence[int],
) -> Path:
    """Writes the final variables of chunk ``index``'s models (atomically, as ``.npz``): every leaf of the Flax
    variables dict stacked on a leading model axis, under its ``/``-joined path (``variables/params/Dense_0/kernel``),
    with the grid indices of the models (``model_index``) and the sweep's fingerprint."""
    from flax import traverse_util

    flat = traverse_util.flatten_dict(_plain_dict(variables), sep="/")
    arrays = {_PARAM_PREFIX + k: np.asarray(v) for k, v in flat.items()}
    path = params_path(folder, index)
    write_npz(
        path,
        **arrays,
        model_index=np.asarray(model_index, np.int64),
        fingerprint=np.asarray(fingerprint),
    )
    return path


def _plain_dict(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {str(k): _plain_dict(v) for k, v in tree.items()}
    return tree


def read_params(folder: str | os.PathLike, *, fingerprint: str | None, n_models: int) -> Any:
    """The final variables of every model of a run folder, stacked in grid order, from ``params/*.npz`` (written
    by ``run(..., save_params=True)``); None when the folder has none.

    Raises:
      ValueError: when the files do not belong to this sweep (fingerprint) or do not cover its models exactly once.
    """
    from flax import traverse_util

    files = sorted((Path(folder) / PARAMS_DIR).glob("[0-9]*.npz"))
    if not files:
        return None
    parts = []
    for f in files:
        arrays = read_npz(f)
        fp = str(arrays.pop("fingerprint", ""))
        if fingerprint is not None and fp != fingerprint:
            raise ValueError(f"{f} holds the parameters of another sweep (fingerprint {fp[:12]})")
        parts.append(arrays)
    index = np.concatenate([a["model_index"] for a in parts])
    order = np.argsort(index, kind="stable")
    if not np.array_equal(index[order], np.arange(n_models)):
        raise ValueError(
            f"{Path(folder) / PARAMS_DIR} does not hold the parameters of all {n_models} models exactly once "
            f"({len(index)} found); rerun the sweep with save_params=True (--save-params) to complete it"
        )
    keys = [k for k in parts[0] if k.startswith(_PARAM_PREFIX)]
    flat = {k[len(_PARAM_PREFIX) :]: np.concatenate([a[k] for a in parts])[order] for k in keys}
    return traverse_util.unflatten_dict(flat, sep="/")


def checkpoint_dir(folder: str | os.PathLike, index: int) -> Path:
    """The folder of chunk ``index``'s epoch checkpoints: ``checkpoints/00003``."""
    return Path(folder) / CHECKPOINTS_DIR / f"{index:05d}"


def remove_checkpoints(folder: str | os.PathLike, index: int) -> None:
    """Deletes the epoch checkpoints of chunk ``index`` (and ``checkpoints/`` once it is empty)."""
    _remove_tree(checkpoint_dir(folder, index))
    try:
        (Path(folder) / CHECKPOINTS_DIR).rmdir()
    except OSError:  # not empty, or absent
        pass


class Checkpoint(NamedTuple):
    """A restored epoch checkpoint of one chunk.

    Attributes:
      epoch: the number of epochs done.
      state: the leaves of the chunk's training state (as restored: device arrays laid out like the abstract
        leaves given to :meth:`Checkpointer.restore`).
      logs: the epoch logs so far, as numpy arrays (``{name: [epochs, ...]}`` plus the last ``predictions``).
    """

    epoch: int
    state: list[Any]
    logs: dict[str, np.ndarray]


class Checkpointer:
    """Saves and restores the epoch checkpoints of chunks with orbax-checkpoint (synchronously).

    One checkpoint is an orbax composite with three items: ``state`` (the training state's leaves, keyed by their
    index in the flattened tree), ``logs`` (numpy arrays) and ``meta`` (JSON: fingerprint, chunk, epoch, model
    indices, checked on restore). orbax writes it to a temporary folder and renames it when complete.
    """

    def __init__(self):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self._ckptr = ocp.Checkpointer(ocp.CompositeCheckpointHandler())

    def save(
        self,
        folder: str | os.PathLike,
        index: int,
        epoch: int,
        state_leaves: Sequence[Any],
        logs: dict[str, np.ndarray],
        *,
        fingerprint: str,
        model_index: Sequence[int],
    ) -> Path:
        """Saves chunk ``index`` after ``epoch`` epochs, then deletes its older checkpoints."""
        ocp = self._ocp
        d = checkpoint_dir(folder, index)
        for p in (d.parent, d):
            if p.is_symlink():
                raise ValueError(_link_message(p))
        d.mkdir(parents=True, exist_ok=True)
        target = (d / f"epoch_{epoch:04d}").absolute()
        _remove_tree(target)
        meta = {
            "fingerprint": fingerprint,
            "chunk": int(index),
            "epoch": int(epoch),
            "model_index": [int(i) for i in model_index],
        }
        try:
            with _quiet_background_errors():
                self._ckptr.save(
                    target,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardSave(
                            {f"{i:05d}": x for i, x in enumerate(state_leaves)}
                        ),
                        logs=ocp.args.StandardSave(dict(logs)),
                        meta=ocp.args.JsonSave(meta),
                    ),
                )
        except (
            Exception
        ) as e:  # disk full, file too large, read-only: orbax / tensorstore raise many kinds
            msg = " ".join(str(e).split())
            msg = msg if len(msg) <= 300 else f"{msg[:100]} ... {msg[-200:]}"
            raise OSError(
                f"could not write the epoch checkpoint {target} ({type(e).__name__}: {msg})"
            ) from None
        for old in d.iterdir():
            if old.name != target.name:
                _remove_tree(old)
        return target

    def restore(
        self,
        folder: str | os.PathLike,
        index: int,
        abstract_leaves: Sequence[Any],
        *,
        fingerprint: str,
        model_index: Sequence[int],
    ) -> Checkpoint | None:
        """The latest usable checkpoint of chunk ``index``, or None. ``abstract_leaves`` give the shapes, dtypes
        and shardings of the state's leaves (``jax.ShapeDtypeStruct`` or arrays); a checkpoint that cannot be
        read or belongs to another sweep is deleted, with a warning."""
        ocp = self._ocp
        d = checkpoint_dir(folder, index)
        if d.is_symlink():
            raise ValueError(_link_message(d))
        if not d.is_dir():
            return None
        found = sorted(
            (int(m.group(1)), p)
            for p in d.iterdir()
            if p.is_dir() and (m := _EPOCH_DIR.fullmatch(p.name))
        )
        abstract = {
            f"{i:05d}": ocp.utils.to_shape_dtype_struct(x) for i, x in enumerate(abstract_leaves)
        }
        for epoch, path in reversed(found):
            try:
                got = self._ckptr.restore(
                    path.absolute(),
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract),
                        logs=ocp.args.StandardRestore(),
                        meta=ocp.args.JsonRestore(),
                    ),
                )
                meta = got["meta"]
                ok = (
                    meta.get("fingerprint") == fingerprint
                    and meta.get("chunk") == index
                    and meta.get("epoch") == epoch
                    and meta.get("model_index") == [int(i) for i in model_index]
                )
                why = "it belongs to another sweep"
            # orbax / tensorstore raise many kinds of errors on damaged files
            except Exception as e:
                ok, why = False, f"unreadable: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
            if not ok:
                _log.warning("ignoring the checkpoint %s (%s)", path, why)
                _remove_tree(path)
                continue
            state = [got["state"][f"{i:05d}"] for i in range(len(abstract_leaves))]
            logs = {k: np.asarray(v) for k, v in got["logs"].items()}
            return Checkpoint(epoch, state, logs)
        return None

    def close(self) -> None:
        with _quiet_background_errors():
            self._ckptr.close()


@contextlib.contextmanager
def _quiet_background_errors():
    """While orbax works: a failed write (disk full, ...) is raised by ``save`` itself, but orbax's background
    threads also log it at ERROR through absl, with tracebacks, and tensorstore callbacks print "Event loop is
    closed" tracebacks (over 100 lines for one full disk). Those go to jinit's log at DEBUG instead, so the one
    error the caller reports is what the user sees."""
    import sys
    import threading

    loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
    levels, hook, thread_hook = [g.level for g in loggers], sys.excepthook, threading.excepthook
    for g in loggers:
        g.setLevel(logging.CRITICAL)

    def quiet(*args):
        _log.debug("orbax background error: %s", args[1] if len(args) > 1 else args)

    sys.excepthook, threading.excepthook = quiet, quiet
    try:
        yield
    finally:
        for g, level in zip(loggers, levels, strict=True):
            g.setLevel(level)
        sys.excepthook, threading.excepthook = hook, thread_hook

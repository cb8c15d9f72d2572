"""The run folder of a sweep: atomic writes, tidy tables, and :class:`SweepResult`.

A run folder holds

* ``config.json``: the full :class:`~jinit.sweep.SweepConfig` under ``"config"``, plus ``"meta"`` (jinit / jax /
  flax / optax versions, device kind and count, ``jax_threefry_partitionable``, wall and compile times, the chunk
  size, ``num_classes``, ...) and ``"status"`` (``"running"`` until the sweep finished, then ``"complete"``);
* ``results.csv``: tidy learning curves, one row per (scheme, seed, evaluation point): ``scheme, seed, epoch, step,
  train_loss, test_loss, test_accuracy, diverged`` (``epoch`` is ``step / steps_per_epoch``, so it is a whole
  number at epoch ends; ``train_loss`` is the mean over the steps since the previous evaluation);
* ``models.csv``: one row per model: ``scheme, seed, final_accuracy, final_test_loss, diverged, diverged_step``
  (``-1`` when it did not diverge) and ``param_sha256`` (:func:`jinit.metrics.param_sha256` of its final params);
* ``summary.csv``: :func:`jinit.metrics.summarize` of the above, one row per scheme;
* ``predictions.npz``: ``predictions`` ``[n_models, n_test]`` (row ``i`` is model ``i`` of ``models.csv``) and
  ``y_test``;
* ``chunks/00000.npz, ...``: the raw results of each completed chunk of the model axis, written as soon as the chunk
  finishes (the unit a resumed sweep can skip).

Every file is written to a temporary name in the same folder and moved into place with ``os.replace``, so a reader
(or a crash) never sees a half-written file.

Example:
    >>> import tempfile, pathlib
    >>> from jinit import results
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> results.write_json(d / "x.json", {"a": 1})
    >>> results.read_json(d / "x.json")
    {'a': 1}
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import tempfile
from collections.abc import Callable
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


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> None:
    """Writes a file atomically: ``write(f)`` fills a temporary file in the same folder, then it is renamed.

    Args:
      path: destination.
      write: called with a binary file object open for writing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
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


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _jsonable(value: Any) -> Any:
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
    """Reads a JSON file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


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
      params: final variables of every model (stacked, grid order) when ``run(..., keep_params=True)``.
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

    def summary(self) -> pd.DataFrame:
        """One row per scheme (:func:`jinit.metrics.summarize`), best mean accuracy first."""
        from jinit import metrics

        return metrics.summarize(
            self.curves,
            self.models,
            self.predictions,
            self.y_test,
            num_classes=self.num_classes,
            target_accuracy=getattr(self.config, "target_accuracy", None),
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


def write_config(
    path: str | os.PathLike, config: Any, meta: dict[str, Any], *, status: str
) -> None:
    """Writes ``config.json`` (config, meta and status) atomically."""
    write_json(Path(path) / "config.json", {"config": config, "meta": meta, "status": status})


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
    if doc.get("status") != "complete":
        raise ValueError(
            f"the sweep in {path} did not complete (status {doc.get('status')!r}); rerun it to finish"
        )
    curves = pd.read_csv(path / "results.csv", dtype=CURVE_DTYPES)
    models = pd.read_csv(path / "models.csv", dtype=MODEL_DTYPES)
    arrays = read_npz(path / "predictions.npz")
    return {
        "config": doc["config"],
        "meta": doc.get("meta", {}),
        "status": doc["status"],
        "curves": curves,
        "models": models,
        "predictions": arrays["predictions"],
        "y_test": arrays["y_test"],
    }

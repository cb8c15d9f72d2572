"""From chunk arrays to a :class:`jinit.results.SweepResult` (:func:`assemble`), and :func:`load` of a run folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from jinit import train as train_lib
from jinit.results import SweepResult
from jinit.sweep import folder as folder_lib
from jinit.sweep import hyper, precision
from jinit.sweep.config import SweepConfig

#: Column names a metric cannot take (its columns would clash with the loss columns): ``test_loss`` is the loss.
_RESERVED_METRIC_NAMES = ("loss",)


def metric_column(name: str) -> str:
    """The column suffix of a metric: its name (``accuracy``, ``r2``, ``rmse``, a custom metric's name), or
    ``metric_<name>`` for a name that would clash with the loss columns (a custom task whose metric is its loss,
    named ``loss``: ``test_metric_loss``, ``final_metric_loss``)."""
    return f"metric_{name}" if name in _RESERVED_METRIC_NAMES else name


def _task_of(inputs) -> tuple[str, tuple[str, ...]]:
    task = inputs.task or train_lib.classification()
    return task.name, tuple(metric_column(m) for m in task.metric_names)


def assemble(plan, chunk_arrays: dict[int, dict[str, np.ndarray]], meta: dict) -> SweepResult:
    """The :class:`SweepResult` of a plan (:class:`jinit.sweep.plan.Plan`) from the arrays of all its chunks
    (:func:`jinit.sweep.chunks.chunk_arrays`), with the run's ``meta``."""
    config, setup, grid = plan.config, plan.inputs, plan.grid
    steps_per_epoch = plan.steps_per_epoch
    n_test = setup.x_test.shape[0]
    parts = [chunk_arrays[c] for c in sorted(chunk_arrays)]
    cat = {k: np.concatenate([c[k] for c in parts]) for k in parts[0]}
    order = np.argsort(cat["model_index"], kind="stable")
    cat = {k: v[order] for k, v in cat.items()}
    if not np.array_equal(cat["model_index"], np.arange(len(grid))):
        raise RuntimeError("internal error: chunks do not cover the grid exactly once")
    schemes = np.asarray([m.label for m in grid], dtype=object)
    seeds = np.asarray([m.seed for m in grid], np.int64)
    n_models, n_evals = cat["step"].shape
    task_name, names = _task_of(setup)
    primary, secondary = names[0], names[1:]
    task_raw = setup.task.metric_names if setup.task is not None else ("accuracy",)
    # public column -> chunk array (the primary metric is held in the "*accuracy" arrays, as in train.EpochLogs)
    sources = {
        "train_loss": "train_loss",
        f"train_{primary}": "train_accuracy",
        "test_loss": "test_loss",
        f"test_{primary}": "test_accuracy",
        **{f"test_{c}": f"test_metric_{m}" for c, m in zip(secondary, task_raw[1:], strict=True)},
    }
    if "val_loss" in cat:
        sources.update(
            {
                "val_loss": "val_loss",
                f"val_{primary}": "val_accuracy",
                **{
                    f"val_{c}": f"val_metric_{m}"
                    for c, m in zip(secondary, task_raw[1:], strict=True)
                },
            }
        )
    f64 = {col: cat[src].astype(np.float64) for col, src in sources.items()}
    div = cat["diverged_step"]
    steps = cat["step"]
    # every model's curve starts with the point at initialization (epoch 0, step 0: test metrics measured before
    # the first step; the training columns are running means over steps, so there are none yet: NaN)
    nan = np.full((n_models, 1), np.nan)
    at_init = {
        col: nan if col.startswith("train_") else cat[f"init_{src}"].astype(np.float64)[:, None]
        for col, src in sources.items()
    }
    steps = np.concatenate([np.zeros((n_models, 1), steps.dtype), steps], axis=1)
    cols = {k: np.concatenate([at_init[k], f64[k]], axis=1) for k in f64}
    n_points = n_evals + 1
    # one column per swept axis (jinit.sweep.hyper) and precision dimension (jinit.sweep.precision), after the
    # scheme: none for a sweep of single values
    axis_cols = {
        **hyper.columns(config, [m.hyper for m in grid]),
        **precision.columns(config, [m.precision for m in grid]),
    }
    curves = pd.DataFrame(
        {
            "scheme": np.repeat(schemes, n_points),
            **{name: np.repeat(v, n_points) for name, v in axis_cols.items()},
            "seed": np.repeat(seeds, n_points),
            "epoch": (steps / steps_per_epoch).reshape(-1),
            "step": steps.reshape(-1),
            **{k: v.reshape(-1) for k, v in cols.items()},
            "diverged": ((div[:, None] >= 0) & (div[:, None] <= steps)).reshape(-1),
        }
    )
    final = {f"final_{c}": f64[f"test_{c}"][:, -1] for c in names}
    final["final_test_loss"] = f64["test_loss"][:, -1]
    if "val_loss" in cat:
        final.update({f"final_val_{c}": f64[f"val_{c}"][:, -1] for c in names})
        final["final_val_loss"] = f64["val_loss"][:, -1]
    models = pd.DataFrame(
        {
            "scheme": schemes,
            **axis_cols,
            "seed": seeds,
            **final,
            "diverged": div >= 0,
            "diverged_step": div,
            "param_sha256": cat["param_sha256"].astype(str),
        }
    )
    if task_name in ("classification", "binary"):
        preds = cat["predictions"].astype(_pred_dtype(setup.num_classes))
        want = (n_models, n_test)
    else:  # float outputs; [n_models, n_test] for one regression target per example
        preds = cat["predictions"].astype(np.float32)
        if task_name == "regression" and setup.y_test.ndim == 1 and preds.ndim == 3:
            preds = preds[..., 0]
        want = (n_models, n_test) + preds.shape[2:]
    if preds.shape != want:
        raise RuntimeError(f"internal error: predictions {preds.shape} != {want}")
    return SweepResult(
        config=config,
        curves=curves,
        models=models,
        predictions=preds,
        y_test=setup.y_test,
        num_classes=setup.num_classes,
        meta=meta,
    )


def _pred_dtype(num_classes: int):
    return np.uint8 if num_classes <= 256 else np.int32


def load(path: str | os.PathLike) -> SweepResult:
    """Reads a run folder written by :func:`run` (or ``jinit sweep``) back into a :class:`SweepResult`; its
    ``params`` are the models' final variables when the sweep saved them (``save_params=True``,
    ``--save-params``), else None.

    Example:
      >>> r = sweep.load("runs/x")  # doctest: +SKIP
      >>> model_3 = jax.tree.map(lambda a: a[3], r.params)  # the variables of models row 3  # doctest: +SKIP
    """
    d = folder_lib.read_tables(path)
    config = SweepConfig.from_dict(d["config"])
    params = folder_lib.read_params(
        path, fingerprint=d["meta"].get("fingerprint"), n_models=len(d["models"])
    )
    return SweepResult(
        config=config,
        curves=d["curves"],
        models=d["models"],
        predictions=d["predictions"],
        y_test=d["y_test"],
        num_classes=int(d["meta"].get("num_classes", int(d["y_test"].max()) + 1)),
        meta=d["meta"],
        path=Path(path),
        params=params,
    )

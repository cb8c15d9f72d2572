"""From chunk arrays to a :class:`jinit.results.SweepResult`, and :func:`load` of a run folder."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from jinit import results as results_lib
from jinit import train as train_lib
from jinit.results import SweepResult
from jinit.sweep.config import SweepConfig


def _chunk_arrays(
    idx: list[int], final, logs: list[train_lib.EpochLogs], n_test: int
) -> dict[str, np.ndarray]:
    from jinit import metrics

    params, diverged_step = final
    n = len(idx)
    cat = {
        f: np.concatenate([getattr(ep, f) for ep in logs], axis=1)[:n]
        for f in ("step", "train_loss", "test_loss", "test_accuracy", "train_accuracy")
    }
    preds = logs[-1].predictions[:n, :n_test]  # drop padded models and padded test rows
    shas = [metrics.param_sha256(jax.tree.map(lambda a, i=i: a[i], params)) for i in range(n)]
    return {
        "model_index": np.asarray(idx, np.int64),
        "step": cat["step"].astype(np.int64),
        "train_loss": cat["train_loss"].astype(np.float32),
        "test_loss": cat["test_loss"].astype(np.float32),
        "test_accuracy": cat["test_accuracy"].astype(np.float32),
        "train_accuracy": cat["train_accuracy"].astype(np.float32),
        # the models at initialization, measured in epoch 0's program (NaN in later epochs' logs)
        "init_test_loss": np.asarray(logs[0].init_test_loss[:n], np.float32),
        "init_test_accuracy": np.asarray(logs[0].init_test_accuracy[:n], np.float32),
        "diverged_step": np.asarray(diverged_step[:n], np.int64),
        "predictions": preds,
        "param_sha256": np.asarray(shas),
    }


def _assemble(config, setup, grid, chunks, steps_per_epoch, meta, hypers=None) -> SweepResult:
    n_test = setup.x_test.shape[0]
    chunks = [c for _, c in sorted(chunks, key=lambda t: t[0])]
    cat = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    order = np.argsort(cat["model_index"], kind="stable")
    cat = {k: v[order] for k, v in cat.items()}
    if not np.array_equal(cat["model_index"], np.arange(len(grid))):
        raise RuntimeError("internal error: chunks do not cover the grid exactly once")
    schemes = np.asarray([label for label, _, _ in grid], dtype=object)
    seeds = np.asarray([s for _, _, s in grid], np.int64)
    n_models, n_evals = cat["step"].shape
    f64 = {
        k: cat[k].astype(np.float64)
        for k in ("train_loss", "test_loss", "test_accuracy", "train_accuracy")
    }
    div = cat["diverged_step"]
    steps = cat["step"]
    # every model's curve starts with the point at initialization (epoch 0, step 0: test metrics measured before
    # the first step; the training columns are running means over steps, so there are none yet: NaN)
    nan = np.full((n_models, 1), np.nan)
    at_init = {
        "train_loss": nan,
        "test_loss": cat["init_test_loss"].astype(np.float64)[:, None],
        "test_accuracy": cat["init_test_accuracy"].astype(np.float64)[:, None],
        "train_accuracy": nan,
    }
    steps = np.concatenate([np.zeros((n_models, 1), steps.dtype), steps], axis=1)
    cols = {k: np.concatenate([at_init[k], f64[k]], axis=1) for k in f64}
    n_points = n_evals + 1
    # one column per swept axis (jinit.sweep.axes), after the scheme: none for a sweep of single values
    from jinit.sweep import axes

    axis_cols = axes.columns(config, hypers) if hypers is not None else {}
    curves = pd.DataFrame(
        {
            "scheme": np.repeat(schemes, n_points),
            **{name: np.repeat(v, n_points) for name, v in axis_cols.items()},
            "seed": np.repeat(seeds, n_points),
            "epoch": (steps / steps_per_epoch).reshape(-1),
            "step": steps.reshape(-1),
            "train_loss": cols["train_loss"].reshape(-1),
            "train_accuracy": cols["train_accuracy"].reshape(-1),
            "test_loss": cols["test_loss"].reshape(-1),
            "test_accuracy": cols["test_accuracy"].reshape(-1),
            "diverged": ((div[:, None] >= 0) & (div[:, None] <= steps)).reshape(-1),
        }
    )
    models = pd.DataFrame(
        {
            "scheme": schemes,
            **axis_cols,
            "seed": seeds,
            "final_accuracy": f64["test_accuracy"][:, -1],
            "final_test_loss": f64["test_loss"][:, -1],
            "diverged": div >= 0,
            "diverged_step": div,
            "param_sha256": cat["param_sha256"].astype(str),
        }
    )
    preds = cat["predictions"].astype(_pred_dtype(setup.num_classes))
    if preds.shape != (n_models, n_test):
        raise RuntimeError(f"internal error: predictions {preds.shape} != {(n_models, n_test)}")
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
    d = results_lib.read(path)
    config = SweepConfig.from_dict(d["config"])
    params = results_lib.read_params(
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

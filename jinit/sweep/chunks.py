"""A chunk's results as arrays: what its epochs log (flat per-epoch logs), the arrays of its chunk file
(:func:`chunk_arrays`) and their expected shapes (:func:`chunk_shapes`), the form in which the trainer hands a
chunk to the store and the store to :mod:`jinit.sweep.assemble`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jinit import train as train_lib

#: What every epoch logs per model (see :class:`jinit.train.EpochLogs`), as chunk files and checkpoints hold it.
LOG_FIELDS = (
    "step",
    "train_loss",
    "test_loss",
    "test_accuracy",
    "train_accuracy",
    "init_test_loss",
    "init_test_accuracy",
)


def extra_log_fields(task: Any, has_val: bool) -> list[str]:
    """The log fields of a sweep beyond :data:`LOG_FIELDS`: the task's secondary metrics on the test set
    (``test_metric_<name>``) and, with a validation set, ``val_loss``, ``val_accuracy`` (the primary metric, as in
    :class:`jinit.train.EpochLogs`) and ``val_metric_<name>``; each also at initialization (``init_...``)."""
    secondary = tuple(task.metric_names[1:]) if task is not None else ()
    names = [f"test_metric_{m}" for m in secondary]
    if has_val:
        names += ["val_loss", "val_accuracy"] + [f"val_metric_{m}" for m in secondary]
    return names + [f"init_{f}" for f in names]


def flat_logs(ep: train_lib.EpochLogs) -> dict[str, Any]:
    """One epoch's :class:`jinit.train.EpochLogs` as flat arrays: :data:`LOG_FIELDS`, ``predictions`` and the
    fields of :func:`extra_log_fields` that it has."""
    out = {f: getattr(ep, f) for f in LOG_FIELDS}
    out["predictions"] = ep.predictions
    for split in ("test", "val"):
        if split == "val" and ep.val_loss is None:
            continue
        if split == "val":
            out["val_loss"], out["val_accuracy"] = ep.val_loss, ep.val_accuracy
            out["init_val_loss"], out["init_val_accuracy"] = ep.init_val_loss, ep.init_val_accuracy
        for m, v in (getattr(ep, f"{split}_metrics") or {}).items():
            out[f"{split}_metric_{m}"] = v
        for m, v in (getattr(ep, f"init_{split}_metrics") or {}).items():
            out[f"init_{split}_metric_{m}"] = v
    return out


def logs_to_arrays(logs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The flat logs of a chunk's epochs so far as arrays (``[epochs, ...]``; the last epoch's predictions)."""
    out = {f: np.stack([np.asarray(ep[f]) for ep in logs]) for f in logs[0] if f != "predictions"}
    out["predictions"] = np.asarray(logs[-1]["predictions"])
    return out


def logs_from_arrays(arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Inverse of :func:`logs_to_arrays` (the predictions only in the last epoch's logs)."""
    n = arrays["step"].shape[0]
    return [
        {
            **{f: a[e] for f, a in arrays.items() if f != "predictions"},
            "predictions": arrays["predictions"] if e == n - 1 else None,
        }
        for e in range(n)
    ]


def chunk_arrays(
    idx: Sequence[int], params: Any, diverged_step: np.ndarray, logs: list[dict], n_test: int
) -> dict[str, np.ndarray]:
    """A chunk file's arrays from its epochs' flat logs: the curves concatenated over epochs, the values at
    initialization from epoch 0, the final predictions, each model's divergence step and the SHA-256 of its final
    parameters (padded models and test rows dropped)."""
    from jinit import metrics

    n = len(idx)
    inits = [f for f in logs[0] if f.startswith("init_")]
    curves = [f for f in logs[0] if f not in inits and f != "predictions"]
    cat = {f: np.concatenate([np.asarray(ep[f]) for ep in logs], axis=1)[:n] for f in curves}
    preds = np.asarray(logs[-1]["predictions"])[:n, :n_test]
    shas = metrics.param_sha256s(jax.tree.map(lambda a: a[:n], params))
    out = {"model_index": np.asarray(idx, np.int64), "step": cat.pop("step").astype(np.int64)}
    out.update({f: v.astype(np.float32) for f, v in cat.items()})
    # the models at initialization, measured in epoch 0's program (NaN in later epochs' logs)
    out.update({f: np.asarray(logs[0][f], np.float32)[:n] for f in inits})
    out["diverged_step"] = np.asarray(diverged_step[:n], np.int64)
    out["predictions"] = preds
    out["param_sha256"] = np.asarray(shas)
    return out


def chunk_shapes(plan: Any, c: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """The arrays of chunk ``c``'s file of ``plan`` (:func:`chunk_arrays`): shape and dtype kinds of each."""
    from jinit.sweep.inputs import is_class_task

    inputs, config = plan.inputs, plan.config
    n = len(plan.chunk(c))
    evals = config.epochs * (train_lib.intervals(plan.steps_per_epoch, config.eval_every)[0] + 1)
    curve = ((n, evals), "f")
    extra = extra_log_fields(inputs.task, inputs.x_val is not None)
    regression_like = inputs.task is not None and not is_class_task(inputs.task)
    pred_tail = tuple(inputs.outputs_tail or ()) if regression_like else ()
    return {
        **{f: ((n,), "f") if f.startswith("init_") else curve for f in extra},
        "model_index": ((n,), "i"),
        "step": ((n, evals), "i"),
        "train_loss": curve,
        "test_loss": curve,
        "test_accuracy": curve,
        "train_accuracy": curve,
        "init_test_loss": ((n,), "f"),
        "init_test_accuracy": ((n,), "f"),
        "diverged_step": ((n,), "i"),
        "predictions": (
            (n, inputs.x_test.shape[0], *pred_tail),
            "fiu" if regression_like else "iu",
        ),
        "param_sha256": ((n,), "U"),
    }

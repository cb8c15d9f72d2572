"""The run folder side of a sweep: fingerprints, chunk shapes, the resumed layout, the logs as arrays, versions."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jinit import train as train_lib
from jinit.sweep import folder as folder_lib
from jinit.sweep.config import SweepConfig, _is_int
from jinit.sweep.grid import _chunk_index
from jinit.sweep.setup import _abstract_model, _Setup

_log = logging.getLogger("jinit.sweep")


def _versions() -> dict[str, str]:
    import flax
    import optax

    import jinit

    return {
        "jinit": jinit.__version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


def _params_saved(path: Path, meta: dict[str, Any]) -> bool:
    """Whether a complete run folder holds the saved parameters of every chunk."""
    n = meta.get("n_chunks")
    return isinstance(n, int) and all(folder_lib.params_path(path, c).is_file() for c in range(n))


def _portable_source(source: str) -> str:
    """``data.load``'s source without the absolute path of this machine: ``"idx:/data/mnist"`` -> ``"idx:mnist"``
    (run folders are committed and shared; the fingerprint identifies the data)."""
    kind, sep, where = str(source).partition(":")
    if sep and os.path.isabs(where):
        return f"{kind}:{Path(where).name}"
    return str(source)


def _shared_config(out: Path, **info) -> dict[str, Any]:
    """What process 0 tells the others about the run folder: ``info`` and the SHA-256 of the config.json it wrote,
    by which each process checks that it sees the same folder (:func:`_check_shared_folder`)."""
    data = (out / "config.json").read_bytes()
    return {**info, "config_sha256": hashlib.sha256(data).hexdigest(), "host": _hostname()}


def _hostname() -> str:
    import socket

    return socket.gethostname()


def _check_shared_folder(out: Path, prepared: dict[str, Any], pid: int) -> None:
    """Raises OSError when this process does not see the config.json process 0 just wrote in ``out``."""
    try:
        sha = hashlib.sha256((out / "config.json").read_bytes()).hexdigest()
    except OSError:
        sha = None
    if sha != prepared.get("config_sha256"):
        seen = "does not see" if sha is None else "sees another"
        raise OSError(
            f"the run folder {out} is not shared: process {pid} on {_hostname()} {seen} config.json than the one "
            f"process 0 wrote there on {prepared.get('host')}; --out must be a folder on a filesystem that every "
            "process shares"
        )


def _chunk_shapes(
    config, steps_per_epoch, n_test, c, csize, n_models, *, extra=(), pred_tail=(), pred_kind="iu"
) -> dict[str, Any]:
    """The arrays of chunk ``c``'s file (:func:`_chunk_arrays`): shape and dtype kind of each. ``extra``: the log
    fields beyond a classification sweep's without validation (:func:`_extra_log_fields`); ``pred_tail`` /
    ``pred_kind``: the shape after ``[n, n_test]`` and the dtype kinds of the predictions (regression: floats)."""
    n = len(_chunk_index(c, csize, n_models))
    evals = config.epochs * (train_lib.intervals(steps_per_epoch, config.eval_every)[0] + 1)
    curve = ((n, evals), "f")
    more = {f: ((n,), "f") if f.startswith("init_") else curve for f in extra}
    return {
        **more,
        "model_index": ((n,), "i"),
        "step": ((n, evals), "i"),
        "train_loss": curve,
        "test_loss": curve,
        "test_accuracy": curve,
        "train_accuracy": curve,
        "init_test_loss": ((n,), "f"),
        "init_test_accuracy": ((n,), "f"),
        "diverged_step": ((n,), "i"),
        "predictions": ((n, n_test, *pred_tail), pred_kind),
        "param_sha256": ((n,), "U"),
    }


def _fingerprint(config: SweepConfig, setup: _Setup, grid, opt_key=None) -> str:
    """A SHA-256 of what decides a sweep's numbers: the config, the grid's labels, the parameter shapes of the
    model (and for your own model or optimizer, what they compute), and the training and test arrays. Chunk files
    and checkpoints carry it; resuming requires it."""
    shapes = _abstract_model(setup)[2]
    identity = {
        k: v for k, v in config.to_dict().items() if k not in folder_lib.LOCATION_FIELDS
    }  # where the data is is not what the sweep is: the data's bytes are hashed below
    desc = {
        "config": identity,
        **({"model": setup.model_key[1]} if setup.model_key[0] == "custom" else {}),
        **({"optimizer": opt_key[1]} if opt_key and opt_key[0] == "custom" else {}),
        **_task_identity(setup),
        "grid": [[label, int(s)] for label, _, s in grid],
        "params": [
            [jax.tree_util.keystr(path), list(x.shape), str(x.dtype)]
            for path, x in jax.tree_util.tree_flatten_with_path(shapes)[0]
        ],
        "num_classes": setup.num_classes,
        "data": [
            [list(a.shape), str(a.dtype)]
            for a in (setup.x_train, setup.y_train, setup.x_test, setup.y_test)
        ],
    }
    if (
        setup.x_val is not None
    ):  # only then: the fingerprints of sweeps without one stay as they were
        desc["val_data"] = [[list(a.shape), str(a.dtype)] for a in (setup.x_val, setup.y_val)]
    h = hashlib.sha256(json.dumps(desc, sort_keys=True).encode("utf-8"))
    arrays = [setup.x_train, setup.y_train, setup.x_test, setup.y_test]
    if setup.x_val is not None:
        arrays += [setup.x_val, setup.y_val]
    for a in arrays:
        h.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1))
    return h.hexdigest()


def _task_identity(setup: _Setup) -> dict[str, Any]:
    """The task in the fingerprint: nothing for classification (fingerprints stay as before tasks existed), the
    name of a built-in task, the SHA-256 of what a custom one computes."""
    key = getattr(setup, "task_key", ("classification",))
    if key == ("classification",):
        return {}
    if key[0] == "custom" and not isinstance(key[1], str):
        return {"task": ["custom", repr(key[1])[:200]]}
    return {"task": [str(k) for k in key]}


def _resumed_layout(
    stored: dict[str, Any], k: int, csize: int, path: Path, n_models: int
) -> tuple[int, int]:
    """The models per device and the chunk size a resumed sweep keeps: the first start's (its chunk files and
    checkpoints hold chunks of that size, and the models per device decide the models' numbers bit for bit). The
    device count may differ: a chunk's groups of ``k`` models are then spread over the devices there are. A stored
    layout that no start can have chosen (a chunk beyond the grid rounded up to whole groups) is ignored."""
    old_k, old_size = stored.get("models_per_device"), stored.get("chunk_size")
    if not _is_int(old_size) or old_size < 1:
        return k, csize
    if (
        _is_int(old_k)
        and old_k >= 1
        and (old_k > max(k, 1024) or old_size > max(math.ceil(n_models / old_k) * old_k, k))
    ):
        _log.warning("ignoring the impossible chunk_size %r in %s/config.json", old_size, path)
        return k, csize
    if not _is_int(old_k) or old_k < 1 or old_size % old_k:
        raise ValueError(
            f"the sweep in {path} was started by an older jinit (its chunks do not record the models per "
            "device): pass --overwrite (overwrite=True) to start it again"
        )
    return int(old_k), int(old_size)


def _warn_if_environment_changed(stored: dict[str, Any], path: Path) -> None:
    now = {"versions": _versions(), "device_kind": jax.local_devices()[0].device_kind}
    changed = []
    for key, value in now["versions"].items():
        before = (stored.get("versions") or {}).get(key)
        if before is not None and before != value:
            changed.append(f"{key} {before} -> {value}")
    if stored.get("device_kind") not in (None, now["device_kind"]):
        changed.append(f"device {stored['device_kind']} -> {now['device_kind']}")
    if changed:
        _log.warning(
            "resuming %s with other software or hardware (%s): the rest may not be bitwise identical to an "
            "uninterrupted run",
            path,
            ", ".join(changed),
        )


#: What every epoch logs per model (see :class:`jinit.train.EpochLogs`), as chunk files and checkpoints hold it.
_LOG_FIELDS = (
    "step",
    "train_loss",
    "test_loss",
    "test_accuracy",
    "train_accuracy",
    "init_test_loss",
    "init_test_accuracy",
)


def _extra_log_fields(task: Any, has_val: bool) -> list[str]:
    """The log fields of a sweep beyond :data:`_LOG_FIELDS`: the task's secondary metrics on the test set
    (``test_metric_<name>``) and, with a validation set, ``val_loss``, ``val_accuracy`` (the primary metric, as in
    :class:`jinit.train.EpochLogs`) and ``val_metric_<name>``; each also at initialization (``init_...``). None for
    a classification sweep without validation (its chunk files are as before)."""
    secondary = tuple(task.metric_names[1:]) if task is not None else ()
    names = [f"test_metric_{m}" for m in secondary]
    if has_val:
        names += ["val_loss", "val_accuracy"] + [f"val_metric_{m}" for m in secondary]
    return names + [f"init_{f}" for f in names]


def _flat_logs(ep: train_lib.EpochLogs) -> dict[str, Any]:
    """One epoch's :class:`jinit.train.EpochLogs` as flat arrays: :data:`_LOG_FIELDS`, ``predictions`` and the
    fields of :func:`_extra_log_fields` that it has."""
    out = {f: getattr(ep, f) for f in _LOG_FIELDS}
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


def _logs_to_arrays(logs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    out = {f: np.stack([np.asarray(ep[f]) for ep in logs]) for f in logs[0] if f != "predictions"}
    out["predictions"] = np.asarray(logs[-1]["predictions"])
    return out


def _logs_from_arrays(arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    n = arrays["step"].shape[0]
    return [
        {
            **{f: a[e] for f, a in arrays.items() if f != "predictions"},
            "predictions": arrays["predictions"] if e == n - 1 else None,
        }
        for e in range(n)
    ]


def _has_logs(arrays: dict[str, np.ndarray], what: str) -> bool:
    """Whether a chunk file's or checkpoint's arrays have every log field (an older jinit wrote fewer)."""
    missing = [f for f in ("train_accuracy", "init_test_accuracy") if f not in arrays]
    if missing:
        _log.warning(
            "ignoring %s: written by an older jinit (no %s); it is trained again", what, missing
        )
    return not missing

"""The run folder's files: the format marker and ``config.json``, the tables, chunk and parameter files, which
entries are jinit's own (and so the only ones it ever deletes), leftovers of a killed sweep, and what a sweep finds
in a folder (:func:`open_run_folder`).

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
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jinit.files import (
    jsonable,
    link_message,
    read_json,
    read_npz,
    write_csv,
    write_json,
    write_npz,
)
from jinit.results import (
    AXIS_COLUMNS,
    AXIS_DTYPES,
    CURVE_COLUMNS,
    CURVE_DTYPES,
    MODEL_COLUMNS,
    MODEL_DTYPES,
)
from jinit.sweep.lock import LOCK_FILE

_log = logging.getLogger("jinit.sweep")


def chunk_path(folder: str | os.PathLike, index: int) -> Path:
    """The file of chunk ``index`` in a run folder: ``chunks/00003.npz``."""
    return Path(folder) / "chunks" / f"{index:05d}.npz"


#: Config fields that say where things are, not what the sweep is: never written to ``config.json`` (a run folder
#: carries no absolute path of the machine it was made on) and never compared (the same data in another folder is
#: the same sweep; the sweep's fingerprint hashes the data itself).
LOCATION_FIELDS = ("data_dir",)


def write_config(
    path: str | os.PathLike, config: Any, meta: dict[str, Any], *, status: str
) -> None:
    """Writes ``config.json`` (the :data:`RUN_FOLDER_FORMAT` marker, the config without :data:`LOCATION_FIELDS`,
    meta and status) atomically."""
    config = jsonable(config)
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
EPOCH_DIR = re.compile(r"epoch_(\d+)")


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


def remove_tree(path: Path) -> None:
    """Removes a file or folder; a folder is first renamed to a hidden trash name, so that a crash half-way
    leaves nothing that looks like a result (the trash is removed by :func:`remove_leftovers`). A link is never
    followed: it is refused (jinit never deletes through a link it did not create)."""
    if path.is_symlink():
        raise ValueError(link_message(path))
    if not path.exists():
        return
    if path.is_dir():
        trash = path.with_name(f".trash-{path.name}-{uuid.uuid4().hex[:8]}")
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
                scan(d, lambda p: not (real_dir(p) and EPOCH_DIR.fullmatch(p.name)))
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
        raise ValueError(link_message(links[0]))
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
        remove_tree(folder / name)
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
        raise ValueError(link_message(path))
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
    remove_tree(checkpoint_dir(folder, index))
    try:
        (Path(folder) / CHECKPOINTS_DIR).rmdir()
    except OSError:  # not empty, or absent
        pass


def write_tables(path: str | os.PathLike, result: Any, *, status: str = "complete") -> Path:
    """Writes a :class:`jinit.results.SweepResult`'s tables into the run folder ``path`` (every file atomically:
    ``results.csv``, ``models.csv``, ``predictions.npz``, ``summary.csv``, then ``config.json`` with ``status``)
    and returns the path."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_csv(path / "results.csv", result.curves)
    write_csv(path / "models.csv", result.models)
    write_npz(path / "predictions.npz", predictions=result.predictions, y_test=result.y_test)
    write_csv(path / "summary.csv", result.summary())
    meta = {**result.meta, "num_classes": int(result.num_classes)}
    write_config(path, result.config, meta, status=status)
    result.path = path
    return path

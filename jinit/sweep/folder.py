"""The run folder's files: ``config.json`` (the format marker and the record of what jinit wrote), the tables, the
chunk and parameter files, which entries jinit may delete, the leftovers of a killed sweep, and what a sweep finds in
a folder (:func:`open_run_folder`).

A run folder holds

* ``config.json``: ``"format": "jinit-run-folder/2"``, the full :class:`~jinit.sweep.SweepConfig` under
  ``"config"`` (no absolute path: where the data was is not part of the sweep, its bytes are in the fingerprint),
  ``"meta"`` (versions, device kind and count, the layout, timings, the sweep's ``fingerprint``, ...),
  ``"status"`` (``"running"`` until the sweep finished, then ``"complete"``) and ``"files"`` (the SHA-256 of every
  table and figure jinit wrote there);
* the tables ``results.csv``, ``models.csv``, ``summary.csv``, ``predictions.npz`` (:mod:`jinit.results`);
* ``params/00000.npz, ...``: with ``run(..., save_params=True)``, the final variables of each chunk's models;
* ``chunks/00000.npz, ...``: the raw results of each completed chunk, written as soon as the chunk finishes, with
  the sweep's fingerprint (the unit a resumed sweep skips);
* ``checkpoints/00003/epoch_0002/``: while a chunk trains, an orbax-checkpoint of its state at an epoch boundary
  (with the fingerprint); only the latest is kept, and it is deleted once the chunk's file is written;
* ``lock``: present while a sweep works in the folder (:mod:`jinit.sweep.lock`).

Every file is written to a temporary name in the same folder and moved into place with ``os.replace`` (orbax does
the same for its checkpoint folders), so a reader (or a crash) never sees a half-written file.

What jinit deletes or replaces, and nothing else: its temporary files (their exact names), unfinished orbax
checkpoints and checkpoint trash inside its own ``checkpoints/NNNNN/`` folders; the tables and figures whose SHA-256
``config.json`` records; chunk, parameter and checkpoint files that carry the sweep's fingerprint. Any other file --
also one named like jinit's, also with ``--overwrite`` -- is left alone, and when it stands where jinit must write,
the sweep is refused with a line naming it. Links are never followed.

Resume: a sweep started on a folder that holds a ``"running"`` sweep of the same config and fingerprint continues
it; a folder holding a different sweep is refused (:class:`RunFolderMismatch`, naming the differing fields) unless
``overwrite``; a folder that is not a run folder and not empty is always refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
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
    AXIS_DTYPES,
    CURVE_COLUMNS,
    CURVE_DTYPES,
    MODEL_COLUMNS,
    MODEL_DTYPES,
)
from jinit.results import GRID_COLUMNS as AXIS_COLUMNS
from jinit.sweep.config import LOCATION_FIELDS
from jinit.sweep.lock import LOCK_FILE

_log = logging.getLogger("jinit.sweep")

#: The marker jinit writes into every run folder's ``config.json`` (``"format"``). A folder is a run folder only
#: when its ``config.json`` carries a marker jinit reads (:data:`READ_FORMATS`).
RUN_FOLDER_FORMAT = "jinit-run-folder/2"

#: The markers of run folders :func:`read_tables` reads (format 1 had no ``files`` record; jinit reads such a
#: folder but never deletes or replaces anything in it).
READ_FORMATS = ("jinit-run-folder/1", RUN_FOLDER_FORMAT)

CHUNKS_DIR = "chunks"
CHECKPOINTS_DIR = "checkpoints"
PARAMS_DIR = "params"

#: The tables of a complete run folder; ``config.json`` records the SHA-256 of each as jinit wrote it.
TABLES = ("results.csv", "models.csv", "summary.csv", "predictions.npz")

#: The figures ``jinit report`` writes into a run folder (recorded like the tables).
FIGURES = ("accuracy_curves.png", "final_accuracy.png", "r2_curves.png", "final_r2.png")

EPOCH_DIR = re.compile(r"epoch_(\d{4})")
_NUMBERED = re.compile(r"\d{5}\.npz")
# tempfile.mkstemp's names of jinit's atomic writes (prefix ".<name>.", 8 random characters, ".tmp")
_TMP = re.compile(
    r"\.(?:"
    + "|".join(re.escape(n) for n in ("config.json", *TABLES, *FIGURES))
    + r")\.[a-z0-9_]{8}\.tmp"
)
_LOCK_TMP = re.compile(r"\.lock\.[0-9a-f]{32}\.tmp")
_NUMBERED_TMP = re.compile(r"\.\d{5}\.npz\.[a-z0-9_]{8}\.tmp")
_ORBAX_TMP = re.compile(r"epoch_\d{4}\.orbax-checkpoint-tmp(?:-\d+)?")
_TRASH = re.compile(r"\.trash-epoch_\d{4}-[0-9a-f]{8}")


class RunFolderMismatch(ValueError):
    """The run folder holds a different sweep (and ``overwrite`` was not asked for)."""


def sha256_of(path: Path) -> str | None:
    """The SHA-256 of a file's bytes, or None when it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def write_config(
    path: str | os.PathLike,
    config: Any,
    meta: dict[str, Any],
    *,
    status: str,
    files: dict[str, str] | None = None,
) -> None:
    """Writes ``config.json`` atomically: the :data:`RUN_FOLDER_FORMAT` marker, the config without
    :data:`LOCATION_FIELDS`, meta, status and ``files`` (the SHA-256 of each table and figure jinit wrote)."""
    config = jsonable(config)
    if isinstance(config, dict):
        config = {k: v for k, v in config.items() if k not in LOCATION_FIELDS}
    doc = {"format": RUN_FOLDER_FORMAT, "config": config, "meta": meta, "status": status}
    doc["files"] = dict(files or {})
    write_json(Path(path) / "config.json", doc)


def is_run_config(doc: Any) -> bool:
    """Whether a parsed ``config.json`` was written by jinit: a JSON object with a config and one of the markers
    of :data:`READ_FORMATS`."""
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("config"), dict)
        and doc.get("format") in READ_FORMATS
        and isinstance(doc.get("meta", {}), dict)
    )


def read_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed ``config.json`` of a run folder, or None when the folder has none or it is not jinit's.

    Raises:
      ValueError: for a ``config.json`` that cannot be read or parsed.
    """
    p = Path(path) / "config.json"
    if p.is_symlink():
        raise ValueError(link_message(p))
    if not p.is_file():
        return None
    try:
        doc = read_json(p)
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{p} is unreadable: {' '.join(str(e).split())[:200]}") from None
    return doc if is_run_config(doc) else None


def recorded_files(doc: dict[str, Any] | None) -> dict[str, str]:
    """``{name: SHA-256}`` of the tables and figures a run folder's ``config.json`` (parsed: ``doc``) records as
    written by jinit ({} for none, or a folder of format 1)."""
    files = (doc or {}).get("files")
    return files if isinstance(files, dict) and doc.get("format") == RUN_FOLDER_FORMAT else {}


def unowned(folder: Path, names: Sequence[str], doc: dict[str, Any]) -> list[str]:
    """The entries among ``names`` that exist in ``folder`` and that jinit cannot show it wrote: a link, or a file
    whose SHA-256 is not the one ``config.json`` records for it."""
    recorded = recorded_files(doc)
    out = []
    for name in names:
        p = folder / name
        if p.is_symlink() or (
            p.exists() and (not p.is_file() or sha256_of(p) != recorded.get(name))
        ):
            out.append(name)
    return out


def write_tables(path: str | os.PathLike, result: Any, *, status: str = "complete") -> Path:
    """Writes a :class:`jinit.results.SweepResult`'s tables into the run folder ``path`` (every file atomically:
    ``results.csv``, ``models.csv``, ``predictions.npz``, ``summary.csv``, then ``config.json`` with ``status`` and
    the SHA-256 of each table) and returns the path."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_csv(path / "results.csv", result.curves)
    write_csv(path / "models.csv", result.models)
    write_npz(path / "predictions.npz", predictions=result.predictions, y_test=result.y_test)
    write_csv(path / "summary.csv", result.summary())
    meta = {**result.meta, "num_classes": int(result.num_classes)}
    files = {name: sha256_of(path / name) for name in TABLES}
    write_config(path, result.config, meta, status=status, files=files)
    result.path = path
    return path


def check_replaceable(folder: str | os.PathLike, names: Sequence[str]) -> None:
    """Raises ValueError when a file among ``names`` exists in the run folder and jinit cannot show it wrote it
    (:func:`unowned`): jinit never replaces such a file."""
    folder = Path(folder)
    doc = read_config(folder) or {}
    bad = unowned(folder, names, doc)
    if bad and (folder / bad[0]).is_symlink():
        raise ValueError(link_message(folder / bad[0]))
    if bad:
        raise ValueError(
            f"{folder / bad[0]} is not a file jinit wrote there (its content is not what {folder}/config.json "
            "records); jinit never replaces it: move it away, or choose another folder"
        )


def record_files(folder: str | os.PathLike, names: Sequence[str]) -> None:
    """Adds the SHA-256 of the files ``names`` (just written by jinit, e.g. ``jinit report``'s figures) to the run
    folder's ``config.json``, so that jinit may replace them later."""
    folder = Path(folder)
    doc = read_config(folder)
    if doc is None or doc.get("format") != RUN_FOLDER_FORMAT:
        return
    files = {**recorded_files(doc), **{n: sha256_of(folder / n) for n in names}}
    write_config(
        folder, doc["config"], doc.get("meta") or {}, status=doc.get("status"), files=files
    )


def read_tables(path: str | os.PathLike) -> dict[str, Any]:
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
    doc = read_config(path)
    if doc is None:
        raise ValueError(
            f"{path} is not a jinit run folder (its config.json was not written by jinit)"
        )
    if doc.get("status") != "complete":
        raise ValueError(
            f"the sweep in {path} did not complete (status {doc.get('status')!r}); rerun it to finish"
        )
    rebuild = (
        f"move it away and run the same `jinit sweep` with --out {path} again: it rebuilds the tables from the "
        "chunk files"
    )
    name = "results.csv"
    try:
        curves = pd.read_csv(path / name, dtype={**CURVE_DTYPES, **AXIS_DTYPES})
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


def find_links(folder: str | os.PathLike) -> list[Path]:
    """The symbolic links among a run folder's own entries (its files, ``lock``, and anything in ``chunks/``,
    ``params/`` and ``checkpoints/``), which a sweep would write or delete through; links are never followed."""
    folder = Path(folder)
    found = []
    for name in (
        "config.json",
        *TABLES,
        *FIGURES,
        LOCK_FILE,
        CHUNKS_DIR,
        CHECKPOINTS_DIR,
        PARAMS_DIR,
    ):
        p = folder / name
        if p.is_symlink():
            found.append(p)
        elif name in (CHUNKS_DIR, CHECKPOINTS_DIR, PARAMS_DIR) and p.is_dir():
            for root, dirs, files in os.walk(p, followlinks=False):
                for n in dirs + files:
                    if os.path.islink(os.path.join(root, n)):
                        found.append(Path(root) / n)
    return found


def _real_dir(d: Path) -> bool:
    return d.is_dir() and not d.is_symlink()


def _entries(d: Path, pattern: re.Pattern) -> list[Path]:
    """The entries of folder ``d`` (not links) whose names are exactly ``pattern``."""
    if not _real_dir(d):
        return []
    return [p for p in d.iterdir() if not p.is_symlink() and pattern.fullmatch(p.name)]


def _delete(p: Path) -> None:
    if _real_dir(p):
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Removes what a killed sweep can leave in a run folder: the temporary files of its atomic writes (jinit's
    exact names), unfinished orbax checkpoints and the trash of a checkpoint being deleted (in jinit's own
    ``checkpoints/NNNNN/`` folders). Nothing else: other files are the user's, and links are never followed. Call
    it holding the folder's lock. Returns what was removed."""
    folder = Path(folder)
    removed = _entries(folder, _TMP) + _entries(folder, _LOCK_TMP)
    for sub in (CHUNKS_DIR, PARAMS_DIR):
        removed += _entries(folder / sub, _NUMBERED_TMP)
    for d in _entries(folder / CHECKPOINTS_DIR, re.compile(r"\d{5}")):
        removed += _entries(d, _ORBAX_TMP) + _entries(d, _TRASH)
    for p in removed:
        _delete(p)
    return removed


def remove_epoch_dir(path: Path) -> None:
    """Deletes one epoch checkpoint folder: renamed to a trash name first, so that a crash half-way leaves nothing
    that looks like a checkpoint (:func:`remove_leftovers` removes the trash)."""
    if path.is_symlink():
        raise ValueError(link_message(path))
    if not path.exists():
        return
    trash = path.with_name(f".trash-{path.name[:10]}-{uuid.uuid4().hex[:8]}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def checkpoint_fingerprint(path: Path) -> str | None:
    """The fingerprint an epoch checkpoint folder records (its orbax ``meta`` item), or None."""
    try:
        meta = read_json(path / "meta" / "metadata")
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return meta.get("fingerprint") if isinstance(meta, dict) else None


def _numbered_fingerprint(path: Path) -> str | None:
    """The fingerprint a chunk or parameter file carries, or None when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return str(z["fingerprint"]) if "fingerprint" in z.files else None
    except Exception:  # noqa: BLE001 - a damaged zip / npy raises many kinds of errors
        return None


def _swept_files(folder: Path, fingerprint: str | None) -> tuple[list[Path], list[Path]]:
    """A sweep's numbered files and epoch checkpoints in ``folder`` (those that carry ``fingerprint``), and the
    entries at those places that do not (not jinit's to delete)."""
    mine, foreign = [], []
    for sub in (CHUNKS_DIR, PARAMS_DIR):
        for p in _entries(folder / sub, _NUMBERED):
            ours = fingerprint is not None and _numbered_fingerprint(p) == fingerprint
            (mine if ours else foreign).append(p)
    for d in _entries(folder / CHECKPOINTS_DIR, re.compile(r"\d{5}")):
        for p in _entries(d, EPOCH_DIR):
            ours = fingerprint is not None and checkpoint_fingerprint(p) == fingerprint
            (mine if ours else foreign).append(p)
    return mine, foreign


def _remove_empty_dirs(folder: Path) -> None:
    ckpt = folder / CHECKPOINTS_DIR
    for d in _entries(ckpt, re.compile(r"\d{5}")):
        try:
            d.rmdir()
        except OSError:  # not empty: the user's files stay
            pass
    for sub in (CHUNKS_DIR, PARAMS_DIR, CHECKPOINTS_DIR):
        try:
            (folder / sub).rmdir()
        except OSError:
            pass


def _replace_sweep(
    folder: Path, doc: dict[str, Any], config: dict[str, Any], fingerprint: str
) -> None:
    """Deletes the sweep in ``folder`` (``--overwrite``): only what jinit can show it wrote -- the tables and
    figures whose SHA-256 ``config.json`` records, the chunk, parameter and checkpoint files that carry the old
    sweep's fingerprint. A table that is not the one recorded, or a file at a chunk's, parameter file's or
    checkpoint's place without that fingerprint, is refused before anything is deleted; other files stay."""
    if doc.get("format") != RUN_FOLDER_FORMAT:
        raise RunFolderMismatch(
            f"the run folder {folder} holds a sweep written by an older jinit ({doc.get('format')}), which did not "
            "record what it wrote: jinit cannot tell its files from yours there, so it replaces nothing; delete "
            "that folder or choose another --out"
        )
    bad = unowned(folder, TABLES, doc)  # the new sweep writes its tables there
    mine, foreign = _swept_files(folder, (doc.get("meta") or {}).get("fingerprint"))
    if bad or foreign:
        what = folder / bad[0] if bad else foreign[0]
        raise ValueError(
            f"cannot replace the sweep in {folder}: {what} is not a file that sweep wrote (its content is not "
            "what its config.json records); jinit never deletes a file it cannot show it wrote: move it away, "
            "or choose another --out"
        )
    recorded = recorded_files(doc)
    figures = [n for n in recorded if n not in TABLES and not unowned(folder, [n], doc)]
    # the new config first: a crash from here on leaves a "running" folder of the new sweep
    write_config(folder, config, {"fingerprint": fingerprint}, status="running")
    for name in (*TABLES, *figures):
        (folder / name).unlink(missing_ok=True)
    for p in mine:
        remove_epoch_dir(p) if p.is_dir() else p.unlink(missing_ok=True)
    _remove_empty_dirs(folder)
    _log.warning("replaced the sweep that was in %s (--overwrite)", folder)


def _check_new_folder(folder: Path) -> RunFolder:
    """A folder without a jinit ``config.json``: used only when it is empty but for the lock and jinit's own
    temporary files."""
    foreign = sorted(
        p.name
        for p in folder.iterdir()
        if p.name != LOCK_FILE and not (_TMP.fullmatch(p.name) or _LOCK_TMP.fullmatch(p.name))
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ValueError(
            f"{folder} is not empty ({shown}) and is not a jinit run folder (no config.json written by jinit); "
            "choose a new or empty --out"
        )
    remove_leftovers(folder)
    return RunFolder(folder, "new", {})


def open_run_folder(
    folder: str | os.PathLike,
    config: dict[str, Any],
    *,
    fingerprint: str,
    overwrite: bool = False,
) -> RunFolder:
    """Decides what a sweep does with its run folder; call it holding the folder's lock (:func:`jinit.sweep.lock.
    acquire_lock`).

    A folder is a run folder only when its ``config.json`` was written by jinit (:func:`is_run_config`); a folder
    without one is used only when it is empty (but for the lock). jinit's own entries must not be links.

    Args:
      folder: the run folder (it exists: the lock is in it).
      config: the sweep's config as a plain dict (``SweepConfig.to_dict()``).
      fingerprint: the sweep's fingerprint (:func:`jinit.sweep.plan.fingerprint`).
      overwrite: replace a different sweep in the folder instead of refusing.

    Returns:
      A :class:`RunFolder`: ``"resume"`` / ``"complete"`` when the folder holds this sweep (same config and
      fingerprint), else ``"new"``.

    Raises:
      RunFolderMismatch: the folder holds a different sweep (the message names the differing fields) and
        ``overwrite`` is False, or a sweep of an older format.
      ValueError: the folder is not empty and not a run folder, one of jinit's entries is a link, or (with
        ``overwrite``) a file at one of jinit's places is not one jinit wrote.
    """
    folder = Path(folder)
    links = find_links(folder)
    if links:
        raise ValueError(link_message(links[0]))
    try:
        doc = read_config(folder)
    except ValueError as e:
        raise ValueError(
            f"{folder} is not a jinit run folder ({e}); jinit never replaces files it did not write, also with "
            "--overwrite: choose a new or empty --out"
        ) from None
    if doc is None:
        if (folder / "config.json").exists():
            raise ValueError(
                f"{folder} is not a jinit run folder ({folder / 'config.json'} was not written by jinit); jinit "
                "never replaces files it did not write, also with --overwrite: choose a new or empty --out"
            )
        return _check_new_folder(folder)
    remove_leftovers(folder)
    meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
    same_format = doc.get("format") == RUN_FOLDER_FORMAT
    diffs = config_differences(doc["config"], config)
    if same_format and not diffs and meta.get("fingerprint") == fingerprint and not overwrite:
        return RunFolder(folder, "complete" if doc.get("status") == "complete" else "resume", meta)
    if not overwrite:
        if not same_format:
            what = f"a sweep written by an older jinit ({doc.get('format')})"
        elif diffs:
            what = f"a different sweep ({'; '.join(diffs)})"
        else:
            what = (
                "a sweep with the same config but different data, schemes or model (fingerprint "
                f"{str(meta.get('fingerprint'))[:12]} in the folder, {fingerprint[:12]} now)"
            )
        raise RunFolderMismatch(
            f"the run folder {folder} holds {what}; pass --overwrite (overwrite=True) to replace it, or choose "
            "another --out"
        )
    _replace_sweep(folder, doc, config, fingerprint)
    return RunFolder(folder, "new", {}, replaced=True)


def chunk_path(folder: str | os.PathLike, index: int) -> Path:
    """The file of chunk ``index`` in a run folder: ``chunks/00003.npz``."""
    return Path(folder) / CHUNKS_DIR / f"{index:05d}.npz"


def write_chunk(
    folder: str | os.PathLike, index: int, arrays: dict[str, np.ndarray], *, fingerprint: str
) -> Path:
    """Writes the results of chunk ``index`` (atomically), tagged with the sweep's fingerprint."""
    path = chunk_path(folder, index)
    write_npz(path, **arrays, fingerprint=np.asarray(fingerprint))
    return path


def _not_ours(path: Path, why: str) -> ValueError:
    return ValueError(
        f"{path} is not a file of this sweep ({why}); jinit never replaces a file it cannot show it wrote: "
        "move it away and run again"
    )


def read_chunk(
    folder: str | os.PathLike,
    index: int,
    *,
    fingerprint: str,
    model_index: Sequence[int],
    shapes: dict[str, tuple[tuple[int, ...], str]] | None = None,
) -> dict[str, np.ndarray] | None:
    """The arrays of chunk ``index`` when its file exists and holds exactly the models ``model_index`` and, with
    ``shapes``, exactly the arrays named there, each of that shape and dtype kind (``{"step": ((6, 3), "i"),
    ...}``, kinds as ``numpy.dtype.kind``); None when there is no file, or when a file of this sweep (it carries
    ``fingerprint``) does not qualify: that chunk is trained again and its file replaced.

    Raises:
      ValueError: the file is a link, cannot be read, or does not carry ``fingerprint`` (not this sweep's file:
        jinit does not replace it).
    """
    path = chunk_path(folder, index)
    if path.is_symlink():
        raise ValueError(link_message(path))
    if not path.is_file():
        return None
    try:
        arrays = read_npz(path)
    except Exception as e:  # noqa: BLE001 - a damaged zip / npy raises many kinds of errors
        raise _not_ours(path, f"unreadable: {type(e).__name__}") from None
    fp = arrays.pop("fingerprint", None)
    if fp is None or str(fp) != fingerprint:
        raise _not_ours(path, "it does not carry this sweep's fingerprint")
    wrong = []
    if not np.array_equal(arrays.get("model_index"), np.asarray(model_index)):
        wrong.append("other models than this chunk")
    for name, (shape, kinds) in (shapes or {}).items():
        a = arrays.get(name)
        if a is None or a.shape != tuple(shape) or a.dtype.kind not in kinds:
            wrong.append(name if a is None else f"{name} {a.dtype}{list(a.shape)}")
    wrong += sorted(set(arrays) - set(shapes)) if shapes is not None else []
    if wrong:
        _log.warning("%s is trained again: %s", path, ", ".join(wrong))
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

    files = sorted(_entries(Path(folder) / PARAMS_DIR, _NUMBERED))
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


def remove_checkpoints(folder: str | os.PathLike, index: int, *, fingerprint: str) -> None:
    """Deletes the epoch checkpoints of chunk ``index`` that carry ``fingerprint`` (and their folders once empty:
    ``checkpoints/NNNNN``, ``checkpoints``)."""
    d = checkpoint_dir(folder, index)
    for p in _entries(d, EPOCH_DIR):
        if checkpoint_fingerprint(p) == fingerprint:
            remove_epoch_dir(p)
    for p in (d, d.parent):
        try:
            p.rmdir()
        except OSError:  # not empty (the user's files), or absent
            pass

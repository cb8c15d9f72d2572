"""Epoch checkpoints of the chunk in training, with orbax-checkpoint (:class:`Checkpointer`), and the trainer
callback that saves and restores them (:class:`CheckpointCallback`)."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jinit.files import link_message
from jinit.sweep import chunks
from jinit.sweep.folder import EPOCH_DIR, checkpoint_dir, checkpoint_fingerprint, remove_epoch_dir
from jinit.sweep.trainer import Callback, EpochEnd, Resume

_log = logging.getLogger("jinit.sweep")


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
                raise ValueError(link_message(p))
        d.mkdir(parents=True, exist_ok=True)
        target = (d / f"epoch_{epoch:04d}").absolute()
        if target.exists() and checkpoint_fingerprint(target) != fingerprint:
            raise ValueError(
                f"{target} is not a checkpoint of this sweep; jinit never replaces a file it cannot show it "
                "wrote: move it away and run again"
            )
        remove_epoch_dir(target)
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
        for (
            old
        ) in d.iterdir():  # the older checkpoints of this sweep (anything else is not jinit's)
            if old.name != target.name and EPOCH_DIR.fullmatch(old.name) and not old.is_symlink():
                if checkpoint_fingerprint(old) == fingerprint:
                    remove_epoch_dir(old)
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
            raise ValueError(link_message(d))
        if not d.is_dir():
            return None
        found = sorted(
            (int(m.group(1)), p)
            for p in d.iterdir()
            if p.is_dir() and (m := EPOCH_DIR.fullmatch(p.name))
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
                if checkpoint_fingerprint(path) == fingerprint:  # this sweep's, but damaged
                    remove_epoch_dir(path)
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


class CheckpointCallback(Callback):
    """Saves a chunk's training state at an epoch boundary at most every ``every`` seconds (``0``: every epoch)
    and restarts a chunk from its latest checkpoint (:class:`jinit.sweep.trainer.Callback`).

    Args:
      folder: the run folder.
      fingerprint: the sweep's fingerprint (a checkpoint must carry it to be restored).
      every: seconds between checkpoints of a chunk.
      guard: the sweep's :class:`jinit.sweep.signals.SignalGuard` (a save is not interrupted by a signal).
      status: the sweep's :class:`jinit.sweep.signals.Status` (what an interruption reports as saved).
    """

    def __init__(self, folder: Path, fingerprint: str, every: float, guard: Any, status: Any):
        self.folder, self.fingerprint, self.every = Path(folder), fingerprint, every
        self.guard, self.status = guard, status
        self._ckptr: Checkpointer | None = None
        self._last = time.perf_counter()

    def _checkpointer(self) -> Checkpointer:
        if self._ckptr is None:
            self._ckptr = Checkpointer()
        return self._ckptr

    def resume(self, chunk: int, models: list[int], template: list[Any]) -> Resume | None:
        self._last = time.perf_counter()
        got = self._checkpointer().restore(
            self.folder, chunk, template, fingerprint=self.fingerprint, model_index=models
        )
        if got is None:
            return None
        self.status.checkpoint = (chunk, got.epoch)
        _log.info(
            "resuming chunk %d of %s from its checkpoint after epoch %d",
            chunk,
            self.folder,
            got.epoch,
        )
        return Resume(got.epoch, got.state, chunks.logs_from_arrays(got.logs))

    def epoch_end(self, event: EpochEnd) -> None:
        if event.epoch >= event.epochs or time.perf_counter() - self._last < self.every:
            return
        with self.guard.critical():
            self._checkpointer().save(
                self.folder,
                event.chunk,
                event.epoch,
                event.state(),
                chunks.logs_to_arrays(event.logs),
                fingerprint=self.fingerprint,
                model_index=event.models,
            )
            self.status.checkpoint = (event.chunk, event.epoch)
        self._last = time.perf_counter()

    def close(self) -> None:
        if self._ckptr is not None:
            self._ckptr.close()
            self._ckptr = None

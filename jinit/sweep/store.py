"""Where a sweep's results go: :class:`RunStore` (a run folder: its lock, what the folder holds, resume, chunk and
parameter files, epoch checkpoints, the final tables; the files themselves are :mod:`jinit.sweep.folder`'s) or
:class:`MemoryStore` (no folder: nothing is kept). :func:`open_store` picks one and, in a sweep of several processes,
makes them agree on the folder and the layout (the leader decides, :mod:`jinit.sweep.group`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import socket
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jinit.sweep import chunks, folder
from jinit.sweep.assemble import load
from jinit.sweep.checkpoints import CheckpointCallback
from jinit.sweep.config import is_int
from jinit.sweep.layout import host_cores
from jinit.sweep.lock import acquire_lock
from jinit.sweep.plan import Plan, describe_plan
from jinit.sweep.trainer import Callback

_log = logging.getLogger("jinit.sweep")


def versions() -> dict[str, str]:
    """The versions of the software that decides a model's numbers."""
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


def cpu_threads() -> int:
    """The threads XLA's CPU client computes with: the cores this process may use, or the CPU devices when there
    are more of them. Large reductions (a weight gradient over a batch of 512 or more) are split over them, so a
    model's last bits on a CPU depend on this number (the reproducibility contract)."""
    cpus = sum(d.platform == "cpu" for d in jax.local_devices(backend="cpu"))
    return max(host_cores(), cpus)


def run_meta(plan: Plan, devices: list[Any], process_count: int) -> dict[str, Any]:
    """What ``config.json`` records of a sweep beside its config: the plan (:func:`jinit.sweep.plan.describe_plan`),
    the software, the devices and the fingerprint's companions."""
    d = devices[0]
    meta = {
        "versions": versions(),
        "device_kind": d.device_kind,
        "platform": d.platform,
        "device_count": min(len(devices), plan.layout.devices),
        "local_device_count": jax.local_device_count(),
        "process_count": process_count,
        "jax_threefry_partitionable": bool(jax.config.jax_threefry_partitionable),
        **describe_plan(plan),
    }
    if d.platform == "cpu":
        meta["cpu_threads"] = cpu_threads()
    meta["data_source"] = _portable_source(meta.get("data_source", ""))
    return meta


def _portable_source(source: str) -> str:
    """``data.load``'s source without the absolute path of this machine: ``"idx:/data/mnist"`` -> ``"idx:mnist"``
    (run folders are committed and shared; the fingerprint identifies the data)."""
    kind, sep, where = str(source).partition(":")
    if sep and os.path.isabs(where):
        return f"{kind}:{Path(where).name}"
    return str(source)


def resumed_layout(stored: dict[str, Any], plan: Plan, path: Path) -> Plan:
    """The plan with the layout of the sweep's first start (its chunk files and checkpoints hold chunks of that
    size, and the models per device decide the models' numbers bit for bit). The device count may differ: a chunk's
    groups are then spread over the devices there are.

    Raises:
      ValueError: the folder's layout is not one any start could have chosen for this grid (``config.json`` was
        edited).
    """
    k, size = stored.get("models_per_device"), stored.get("chunk_size")
    n = plan.n_models
    ok = is_int(k) and is_int(size) and k >= 1 and size >= k and size % k == 0
    if not ok or size > max(math.ceil(n / k) * k, k):
        raise ValueError(
            f"{path}/config.json records a layout no sweep of this grid chooses (models_per_device {k!r}, "
            f"chunk_size {size!r}, {n} models): it was edited; restore it, or pass --overwrite (overwrite=True) "
            "to train the sweep again"
        )
    return plan.with_layout(k, size)


def _warn_if_environment_changed(stored: dict[str, Any], path: Path) -> None:
    now = {"versions": versions(), "device_kind": jax.local_devices()[0].device_kind}
    changed = []
    for key, value in now["versions"].items():
        before = (stored.get("versions") or {}).get(key)
        if before is not None and before != value:
            changed.append(f"{key} {before} -> {value}")
    if stored.get("device_kind") not in (None, now["device_kind"]):
        changed.append(f"device {stored['device_kind']} -> {now['device_kind']}")
    if stored.get("cpu_threads") not in (None, now.get("cpu_threads", stored.get("cpu_threads"))):
        changed.append("CPU threads")
    if changed:
        _log.warning(
            "resuming %s with other software or hardware (%s): the rest may not be bitwise identical to an "
            "uninterrupted run",
            path,
            ", ".join(changed),
        )


def _config_sha(out: Path) -> str | None:
    try:
        return hashlib.sha256((out / "config.json").read_bytes()).hexdigest()
    except OSError:
        return None


class MemoryStore:
    """The store of a sweep without a run folder: nothing is read or kept."""

    complete = None

    def __init__(self, plan: Plan, meta: dict[str, Any]):
        self.plan, self.meta = plan, meta

    def done(self, mine: list[int]) -> dict[int, dict[str, np.ndarray]]:
        return {}

    def callbacks(self) -> list[Any]:
        return []

    def gather(self, trained: dict[int, dict[str, np.ndarray]]) -> dict[int, dict[str, np.ndarray]]:
        return trained

    def finish(self, result: Any) -> None:
        pass

    def close(self) -> None:
        pass


@dataclasses.dataclass
class RunStore(Callback):
    """The store of a sweep with a run folder (see :func:`open_store`)."""

    plan: Plan
    out: Path
    fingerprint: str
    group: Any
    guard: Any
    status: Any
    meta: dict[str, Any]
    save_params: bool = False
    keep_params: bool = False
    checkpoint_every: float | None = None
    lock: Any = None
    complete: Any = None
    _checkpoints: Any = None

    def done(self, mine: list[int]) -> dict[int, dict[str, np.ndarray]]:
        """The chunk files of ``mine`` already in the folder (and their parameter files, with ``save_params``)."""
        out = {}
        for c in mine:
            arrays = folder.read_chunk(
                self.out,
                c,
                fingerprint=self.fingerprint,
                model_index=self.plan.chunk(c),
                shapes=chunks.chunk_shapes(self.plan, c),
            )
            if arrays is None or (
                self.save_params and not folder.params_path(self.out, c).is_file()
            ):
                continue  # trained again (its parameters too)
            out[c] = arrays
        self.status.chunks_done = self.status.chunks_reused = len(out)
        if out and self.keep_params:
            raise ValueError(
                f"keep_params=True needs the models trained in this call, but {self.out} already holds "
                f"{len(out)} finished chunk(s) of this sweep; pass overwrite=True to train it all again, or another "
                "out"
            )
        if out:
            _log.info(
                "resuming the sweep in %s: %d of %d chunks are done%s",
                self.out,
                len(out),
                len(mine),
                self.group.describe(self.plan.layout.n_chunks),
            )
        return out

    def callbacks(self) -> list[Any]:
        """The trainer's callbacks of the folder: each trained chunk written (:meth:`chunk_end`) and, in a sweep of
        one process with ``checkpoint_every``, the epoch checkpoints."""
        if self.checkpoint_every is None or not self.group.checkpoints:
            return [self]
        self._checkpoints = CheckpointCallback(
            self.out, self.fingerprint, self.checkpoint_every, self.guard, self.status
        )
        return [self._checkpoints, self]

    def chunk_end(
        self, c: int, models: list[int], arrays: dict[str, np.ndarray], variables: Any
    ) -> None:
        """Writes a trained chunk (its parameters first: a chunk on disk has its parameters), then deletes its
        checkpoints; a signal waits until the files are complete."""
        with self.guard.critical():
            if self.save_params:
                folder.write_params(
                    self.out,
                    c,
                    variables,
                    fingerprint=self.fingerprint,
                    model_index=self.plan.chunk(c),
                )
            folder.write_chunk(self.out, c, arrays, fingerprint=self.fingerprint)
            self.status.chunks_done += 1
            self.status.checkpoint = None
            folder.remove_checkpoints(self.out, c, fingerprint=self.fingerprint)

    def gather(self, trained: dict[int, dict[str, np.ndarray]]) -> dict[int, dict[str, np.ndarray]]:
        """Every chunk of the sweep: this process's, and (several processes) the others' from the folder once all
        have written theirs."""
        if self.group.count == 1:
            return trained
        self.group.barrier("chunks", forever=True)
        out = {}
        for c in range(self.plan.layout.n_chunks):
            arrays = folder.read_chunk(
                self.out, c, fingerprint=self.fingerprint, model_index=self.plan.chunk(c)
            )
            if arrays is None:
                raise RuntimeError(f"chunk {c} of {self.out} is missing after the barrier")
            out[c] = arrays
        return out

    def finish(self, result: Any) -> None:
        """The leader writes the tables (a signal during the write leaves the sweep complete); every process waits
        for it, so the folder is complete when :func:`jinit.sweep.run` returns."""
        if self.group.leader:
            with self.guard.critical(complete=True):
                folder.write_tables(self.out, result)
        self.group.barrier("saved", forever=True)

    def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.close()
        if self.lock is not None:
            try:
                self.lock.release()
            except OSError as e:
                if sys.exc_info()[1] is None:
                    raise
                # the first error is the one to report (e.g. a folder that became read-only)
                _log.warning("could not remove the lock %s (%s)", self.lock.path, e)


def _params_saved(path: Path, n_chunks: Any) -> bool:
    return isinstance(n_chunks, int) and all(
        folder.params_path(path, c).is_file() for c in range(n_chunks)
    )


def _lead(store: RunStore, *, overwrite: bool, keep_params: bool) -> RunStore:
    """The leader (process 0) opens the folder: lock, what it holds, the layout, ``config.json``."""
    plan, out = store.plan, store.out
    store.lock = acquire_lock(out)
    found = folder.open_run_folder(
        out, plan.config.to_dict(), fingerprint=store.fingerprint, overwrite=overwrite
    )
    state = found.state
    if (
        state == "complete"
        and store.save_params
        and not _params_saved(out, found.meta.get("n_chunks"))
    ):
        _log.info(
            "%s holds this sweep, complete, without its parameters: training it again to save them",
            out,
        )
        state = "resume"
    if state == "complete":
        if keep_params:
            raise ValueError(
                f"keep_params=True needs the models trained in this call, but {out} already holds this sweep, "
                "complete; pass overwrite=True to train it again"
            )
        folder.check_replaceable(out, folder.TABLES)

        try:
            store.complete = load(out)
        except (OSError, ValueError) as e:  # a table missing: rebuilt from the chunk files
            _log.warning("%s; rebuilding the tables from the chunk files", e)
            state = "resume"
        else:
            _log.info(
                "%s already holds this sweep, complete: nothing was recomputed (--overwrite / overwrite=True "
                "trains it again)",
                out,
            )
            store.group.share(
                "prepared",
                {"complete": True, "config_sha256": _config_sha(out), "host": socket.gethostname()},
            )
            return store
    folder.check_replaceable(out, folder.TABLES)  # the tables it will write over at the end
    if state == "resume":
        store.plan = resumed_layout(found.meta, plan, out)
        _warn_if_environment_changed(found.meta, out)
    store.meta.update(
        models_per_device=store.plan.layout.models_per_device,
        chunk_size=store.plan.layout.chunk_size,
        n_chunks=store.plan.layout.n_chunks,
    )
    files = folder.recorded_files(folder.read_config(out))  # tables of a finished run stay jinit's
    with store.guard.critical():
        folder.write_config(
            out, store.plan.config.to_dict(), store.meta, status="running", files=files
        )
    store.group.share(
        "prepared",
        {
            "models_per_device": store.plan.layout.models_per_device,
            "chunk_size": store.plan.layout.chunk_size,
            "config_sha256": _config_sha(out),
            "host": socket.gethostname(),
        },
    )
    return store


def _follow(store: RunStore) -> RunStore:
    """A process other than the leader takes the leader's decisions, after checking it sees the same folder."""
    prepared = store.group.receive("prepared")
    if _config_sha(store.out) != prepared.get("config_sha256"):
        seen = "does not see" if _config_sha(store.out) is None else "sees another"
        raise OSError(
            f"the run folder {store.out} is not shared: process {store.group.index} on {socket.gethostname()} "
            f"{seen} config.json than the one process 0 wrote there on {prepared.get('host')}; --out must be a "
            "folder on a filesystem that every process shares"
        )
    if prepared.get("complete"):
        store.complete = load(store.out)
        return store
    store.plan = store.plan.with_layout(
        int(prepared["models_per_device"]), int(prepared["chunk_size"])
    )
    return store


def open_store(
    out: str | os.PathLike | None,
    plan: Plan,
    fingerprint: str,
    *,
    group: Any,
    guard: Any,
    status: Any,
    meta: dict[str, Any],
    overwrite: bool = False,
    save_params: bool = False,
    keep_params: bool = False,
    checkpoint_every: float | None = None,
) -> MemoryStore | RunStore:
    """The store of a sweep: a :class:`MemoryStore` without ``out``; else a :class:`RunStore` on the run folder
    ``out``, opened by the leader (lock, resume, layout, ``config.json`` with ``meta``) and checked by the other
    processes. ``store.plan`` is the plan with the layout the sweep keeps; ``store.complete`` the result when the
    folder already holds this sweep, complete."""
    if out is None:
        return MemoryStore(plan, dict(meta))
    store = RunStore(
        plan,
        Path(out),
        fingerprint,
        group,
        guard,
        status,
        {**meta, "fingerprint": fingerprint},
        save_params=save_params,
        keep_params=keep_params,
        checkpoint_every=checkpoint_every,
    )
    try:
        store = (
            _lead(store, overwrite=overwrite, keep_params=keep_params)
            if group.leader
            else _follow(store)
        )
        group.barrier("checked")
    except BaseException:
        store.close()
        raise
    return store

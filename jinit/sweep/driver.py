"""The sweep's driver, :func:`run`: plan -> program -> trainer -> store -> assemble, in that order.

Each stage is a module of its own (:mod:`jinit.sweep.plan`, :mod:`~jinit.sweep.program`,
:mod:`~jinit.sweep.trainer`, :mod:`~jinit.sweep.store`, :mod:`~jinit.sweep.assemble`); the processes of a
multi-process sweep are one object (:mod:`jinit.sweep.group`) whose single-process form does nothing.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jinit.results import SweepResult
from jinit.sweep import group as group_lib
from jinit.sweep import program as program_lib
from jinit.sweep.assemble import assemble
from jinit.sweep.config import SweepConfig
from jinit.sweep.folder import check_writable
from jinit.sweep.plan import fingerprint, make_plan
from jinit.sweep.signals import SignalGuard, Status, SweepInterrupted
from jinit.sweep.store import open_store, run_meta
from jinit.sweep.trainer import Callback, Collect, ProgressBar, Trainer


def _check_arguments(
    checkpoint_every: Any, save_params: bool, out: Any, model: Any, make_model: Any
) -> Any:
    """The model factory (``model`` or its older name ``make_model``), after checking the arguments of :func:`run`
    that the plan does not see."""
    if model is not None and make_model is not None:
        raise TypeError("pass the model factory once: model= (make_model= is its older name)")
    if checkpoint_every is not None and (
        isinstance(checkpoint_every, bool)
        or not isinstance(checkpoint_every, int | float)
        or not checkpoint_every >= 0
    ):
        raise ValueError(
            f"checkpoint_every must be a number of seconds >= 0 or None, got {checkpoint_every!r}"
        )
    if save_params and out is None:
        raise ValueError(
            "save_params=True writes into the run folder: pass out= (jinit sweep --out)"
        )
    if out is not None:
        check_writable(out)
    return model if model is not None else make_model


def _train(
    plan, store, group, trainer: Trainer, progress: bool, callbacks: Sequence[Callback], keep: bool
):
    """This process's chunks, read from the folder or trained (each written as it is handed over); returns every
    chunk's arrays (all processes') and the variables the trainer kept, in chunk order."""
    mine = group.chunks(plan.layout.n_chunks)
    done = store.done(mine)
    collect = Collect(done, keep=keep)
    bar = ProgressBar(plan, len(mine), len(done)) if progress else None
    trainer.callbacks += [*store.callbacks(), collect, *callbacks] + ([bar] if bar else [])
    todo = [c for c in mine if c not in done]
    for cb in trainer.callbacks:
        cb.sweep_start(plan)
    try:
        for i, c in enumerate(todo):
            trainer.train(c, then=todo[i + 1] if i + 1 < len(todo) else None)
        trainer.flush()
        for cb in trainer.callbacks:
            cb.sweep_end()
    finally:
        trainer.close()
        if bar is not None:
            bar.close()
    return store.gather(collect.arrays), collect.variables


def run(
    config: SweepConfig | None = None,
    *,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    model: Callable | None = None,
    make_model: Callable | None = None,
    keep_params: bool = False,
    overwrite: bool = False,
    checkpoint_every: float | None = 60.0,
    max_devices: int | None = None,
    optimizer: Any = None,
    save_params: bool = False,
    data: Any = None,
    task: Any = None,
    programs: program_lib.ProgramCache | None = None,
    callbacks: Sequence[Callback] = (),
) -> SweepResult:
    """Trains every model of the grid and returns the results (see :mod:`jinit.sweep` and the README).

    Args:
      config: the sweep (default: ``SweepConfig()``, a quick sweep on ``digits``).
      out: a run folder to write (resumable: rerun the same call after a crash to continue).
      progress: show a tqdm progress bar (on stderr).
      model: your own Flax model's factory (:func:`jinit.adapters.model_fns`); ``make_model`` is its older name.
      keep_params: also return every model's final variables as ``result.params`` (not written to the folder).
      overwrite: replace a different sweep found in ``out`` (only what jinit can show it wrote there), or train a
        complete one again.
      checkpoint_every: seconds between epoch checkpoints within a chunk (``0``: every epoch; ``None``: never).
      max_devices: use at most this many of the local devices.
      optimizer: your own optax optimizer, or a factory ``learning_rate -> GradientTransformation``.
      save_params: write every model's final variables into ``out`` (``params/``; :func:`load` reads them).
      data: your own :class:`jinit.data.Dataset` instead of ``config.dataset``.
      task: a :class:`jinit.train.Task` or a task name (default: the dataset's).
      programs: the :class:`jinit.sweep.program.ProgramCache` to take compiled programs from (default: the
        process's, :func:`jinit.sweep.program.default_cache`).
      callbacks: your own :class:`jinit.sweep.trainer.Callback` objects, called as the models train (chunks read
        back from a run folder are not trained again, so not seen).

    Returns:
      A :class:`SweepResult`; ``result.meta["timings"]`` says where the time went.

    Raises:
      ValueError, TypeError: a bad config or argument, before any data is loaded or anything compiled.
      OSError: when ``out`` cannot be written.
      jinit.sweep.lock.RunFolderInUse: another sweep is running in ``out``.
      jinit.sweep.folder.RunFolderMismatch: ``out`` holds a different sweep and ``overwrite`` is False.
      SweepInterrupted: on SIGINT (Ctrl-C) or SIGTERM; it says what was saved.
    """
    t0 = time.perf_counter()
    status = Status(None if out is None else Path(out))
    group = group_lib.SingleProcess()
    try:
        # from the very start: a signal while planning or reading the run folder is reported as well
        with SignalGuard() as guard:
            model = _check_arguments(checkpoint_every, save_params, out, model, make_model)
            group = group_lib.current(out)
            plan = make_plan(
                config,
                model=model,
                data=data,
                task=task,
                optimizer=optimizer,
                max_devices=max_devices,
            )
            program_lib.enable_persistent_cache()
            programs = programs if programs is not None else program_lib.default_cache()
            before = programs.compile_seconds
            inits = programs.inits(plan)
            store = open_store(
                out,
                plan,
                fingerprint(plan, {label: p.key for label, p in inits.items()}),
                group=group,
                guard=guard,
                status=status,
                meta=run_meta(plan, jax.local_devices(), group.count),
                overwrite=overwrite,
                save_params=save_params,
                keep_params=keep_params,
                checkpoint_every=checkpoint_every,
            )
            try:
                if store.complete is not None:
                    return store.complete
                status.n_chunks, status.epochs = (
                    store.plan.layout.n_chunks,
                    store.plan.config.epochs,
                )
                init_compile = programs.compile_seconds - before
                trainer = Trainer(
                    store.plan,
                    programs.epochs(store.plan, jax.local_devices()[0].platform),  # per precision
                    inits,
                    jax.local_devices(),
                    keep_variables=keep_params or save_params,
                )
                trainer.seconds["compile"] = init_compile
                trainer.seconds["setup"] = time.perf_counter() - t0 - init_compile
                arrays, kept = _train(
                    store.plan, store, group, trainer, progress, callbacks, keep_params
                )
                return _finish(store, trainer, arrays, kept, status, t0)
            finally:
                store.close()
    except KeyboardInterrupt as e:
        group.fail(e)
        raise SweepInterrupted(getattr(e, "signum", signal.SIGINT), status) from None
    except BaseException as e:
        group.fail(e)
        raise


def _finish(store, trainer: Trainer, arrays, kept, status, t0: float) -> SweepResult:
    """The result from every chunk's arrays, its ``meta`` (with where the time went), written by the store."""
    t = time.perf_counter()
    plan = store.plan
    meta = _meta(store.meta, plan, trainer, trainer.seconds["compile"], status)
    result = assemble(plan, arrays, meta)
    if kept:
        result.params = jax.tree.map(lambda *xs: np.concatenate(xs), *kept)
    timings = dict(trainer.seconds)
    timings["assemble"] = time.perf_counter() - t
    meta.update(timings=timings, wall_seconds=time.perf_counter() - t0)
    t = time.perf_counter()
    store.finish(result)
    timings["write"] = time.perf_counter() - t
    return result


def _meta(meta, plan, trainer, compile_seconds, status) -> dict[str, Any]:
    """The run folder's ``meta`` at the end of a run: the opening's, the final layout, compile and train time."""
    meta = dict(meta)
    meta.update(
        models_per_device=plan.layout.models_per_device,
        chunk_size=plan.layout.chunk_size,
        n_chunks=plan.layout.n_chunks,
        device_count=min(len(jax.local_devices()), plan.layout.devices),
        compile_seconds=compile_seconds,
        train_seconds=trainer.seconds["train"],
        chunks_reused=status.chunks_reused,
        epochs_reused=trainer.epochs_reused,
        inner_model_axis=trainer.program.inner_axis,
    )
    if (
        trainer.program.memory
    ):  # what XLA allocates for one chunk's epoch (per device; data included)
        meta["epoch_program_bytes"] = trainer.program.memory
    if len(trainer.programs) > 1:  # each precision's program (jinit.sweep.precision)
        meta["epoch_program_bytes_by_precision"] = {
            p.label: prog.memory for p, prog in trainer.programs.items() if prog.memory
        }
    return meta

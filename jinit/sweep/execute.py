"""The sweep's driver: :func:`run` (the run folder, resume, processes) and the chunk loop (:class:`_ChunkTrainer`:
init, restore, epochs on every device, checkpoints, progress).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jinit import distributed as distributed_lib
from jinit import train as train_lib
from jinit.keys import stream_keys, varies
from jinit.results import SweepResult
from jinit.sweep import axes
from jinit.sweep import checkpoints as checkpoints_lib
from jinit.sweep import folder as folder_lib
from jinit.sweep import lock as lock_lib
from jinit.sweep.assemble import _assemble, _chunk_arrays, load
from jinit.sweep.config import SweepConfig, _check_int, recorded
from jinit.sweep.grid import (
    _check_grid_fits,
    _chunk_index,
    _gb,
    bytes_per_model,
    chunk_plan,
    memory_budget,
    models_per_device,
    state_bytes_per_model,
)
from jinit.sweep.program import (
    _init_models,
    _inner_model_axis,
    _prepare_inits,
    _Program,
    _program,
    state_variables,
)
from jinit.sweep.setup import (
    _check_optimizer,
    _describe,
    _is_class_task,
    _make_optimizer,
    _Setup,
    _setup,
    model_fns,
)
from jinit.sweep.signals import SweepInterrupted, _SignalGuard, _Status
from jinit.sweep.store import (
    _check_shared_folder,
    _chunk_shapes,
    _extra_log_fields,
    _fingerprint,
    _flat_logs,
    _has_logs,
    _logs_from_arrays,
    _logs_to_arrays,
    _params_saved,
    _portable_source,
    _resumed_layout,
    _shared_config,
    _versions,
    _warn_if_environment_changed,
)

_log = logging.getLogger("jinit.sweep")


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
) -> SweepResult:
    """Trains every (scheme, seed) model of the grid and returns the results.

    With ``out``, the sweep is resumable: it takes the folder's lock, writes config.json, then each chunk's file
    as the chunk finishes and, within a chunk, an orbax checkpoint of its training state at an epoch boundary at
    most every ``checkpoint_every`` seconds. Calling it again with the same config and ``out`` after a crash,
    SIGKILL, SIGTERM or Ctrl-C continues where it stopped (chunks on disk are skipped, a chunk with a checkpoint
    restarts from its last saved epoch) and ends with the results of an uninterrupted run, bit for bit (on the
    same machine and software; the chunk size of the first start is kept). A folder holding the same sweep,
    complete, is read back and nothing is recomputed; a folder holding a different sweep is refused unless
    ``overwrite``. See :mod:`jinit.results` for the folder's rules.

    Args:
      config: the sweep (default: ``SweepConfig()``, a quick sweep on ``digits``).
      out: a run folder to write (config.json first, then chunks as they finish, then the tables).
      progress: show a tqdm progress bar (on stderr).
      model: your own Flax model instead of ``config.model``, as a factory (:func:`jinit.adapters.model_fns`):
        linen ``(kernel_init, bias_init) -> nn.Module``, NNX ``(kernel_init, bias_init, rngs) -> nnx.Module``, or
        one with no init arguments (then only :func:`jinit.rules` schemes can initialize it). BatchNorm
        statistics are updated by the forward pass, never by the optimizer, and evaluation uses the running
        averages; a ``train`` / ``deterministic`` argument of ``__call__`` is set for training and evaluation;
        Dropout gets the ``dropout`` RNG stream in training. The run records the model (``meta["model"]``: kind,
        class, parameter count, description; ``config.model`` is ``"custom:<class>"``). (Resuming checks its
        parameter shapes, not its code: pass the same model.)
      make_model: the older name of ``model``.
      keep_params: also return every model's final variables (numpy, stacked on a leading model axis in grid
        order) as ``result.params``; they are not written to the run folder, so this cannot be combined with
        resuming a folder that already holds finished chunks.
      save_params: write the final variables of every model into the run folder ``out`` (``params/``, one
        ``.npz`` per chunk, written with the chunk), so that :func:`load` gives them back as ``result.params``
        (stacked in grid order, as with ``keep_params``). Works with resuming; a complete folder without them
        trains its chunks again (bitwise the same models) to write them.
      overwrite: replace a different sweep found in ``out`` (only the files a sweep writes are removed), or
        recompute a complete one.
      checkpoint_every: seconds between epoch checkpoints within a chunk (``0``: at every epoch boundary;
        ``None``: never, only whole chunks are saved). Checkpoints are written only with ``out`` and one process;
        with several (see :mod:`jinit.distributed`), whole chunks only.
      max_devices: use at most this many of the local devices (default: as many as the grid needs). Like
        the chunk size, it changes the layout only, never a model's numbers.
      optimizer: your own optimizer instead of ``config.optimizer`` / ``config.learning_rate``: an
        ``optax.GradientTransformation`` (e.g. ``optax.chain(optax.clip_by_global_norm(1.0),
        optax.adamw(optax.cosine_decay_schedule(1e-3, 1000)))``; schedules count optimizer steps), or a factory
        ``learning_rate -> GradientTransformation`` that is called with ``config.learning_rate``. The run folder
        records it as ``custom`` with a SHA-256 of what it computes (its lowered ``init`` and ``update``), so
        resuming with another optimizer is refused.
      data: your own :class:`jinit.data.Dataset` (e.g. ``jinit.data.from_arrays(x_train, y_train, x_test,
        y_test)``) instead of ``config.dataset``; ``train_size`` / ``test_size`` / ``val_size`` apply to it as to
        a named dataset, and a Dataset with ``x_val`` brings its own validation set. The run folder records its
        name (as the config's ``dataset``), its source (``arrays:sha256:...``: a fingerprint of its content),
        its task and its sizes, and the sweep's fingerprint hashes the arrays, so resuming with other arrays is
        refused; :func:`load` reads the folder back without them.
      task: what the models are trained for: a :class:`jinit.train.Task` (``train.regression()``,
        ``train.custom_task(loss, metric, ...)``) or a name (``classification``, ``binary``, ``regression``);
        default: the dataset's task (classification for the named datasets). The tables name their columns by
        the task's metrics (classification and binary: ``test_accuracy``, ``final_accuracy``; regression:
        ``test_r2``, ``test_rmse``, ``final_r2``, ``final_rmse``; a custom task: ``test_<name>``), and
        ``result.metric`` names the primary one. A model whose output width does not fit the task (classes,
        one logit, the target dims) is refused before compiling.

    Returns:
      A :class:`SweepResult`.

    Raises:
      ValueError, TypeError: for a bad config, before any data is loaded or anything compiled.
      OSError: when ``out`` cannot be written (checked before the data is loaded).
      jinit.lock.RunFolderInUse: another sweep is running in ``out``.
      jinit.folder.RunFolderMismatch: ``out`` holds a different sweep and ``overwrite`` is False.
      SweepInterrupted: on SIGINT (Ctrl-C) or SIGTERM; it says what was saved. (The epoch that was running
        carries on in the background until it ends; its result is discarded.)
    """
    config = SweepConfig() if config is None else config
    make_model = _model_argument(model, make_model)
    if not isinstance(config, SweepConfig):
        raise TypeError(f"config must be a SweepConfig, got {type(config).__name__}")
    t_start = time.perf_counter()
    config.validate()
    if checkpoint_every is not None and (
        isinstance(checkpoint_every, bool)
        or not isinstance(checkpoint_every, int | float)
        or not checkpoint_every >= 0
    ):
        raise ValueError(
            f"checkpoint_every must be a number of seconds >= 0 or None, got {checkpoint_every!r}"
        )
    if max_devices is not None:
        _check_int("max_devices", max_devices, minimum=1)
    _check_optimizer(optimizer)
    out_path = Path(out) if out is not None else None
    if save_params and out_path is None:
        raise ValueError(
            "save_params=True writes into the run folder: pass out= (jinit sweep --out)"
        )
    # Several processes: they meet in JAX's coordination service (jinit.distributed); a failure is posted there so
    # that the others stop waiting for this process.
    group = distributed_lib.SweepGroup() if jax.process_count() > 1 else None
    if group is not None and out_path is None:
        raise ValueError(
            f"a sweep of {group.count} processes needs out= (--out): a run folder on a filesystem that every "
            "process shares"
        )
    try:
        if out_path is not None:
            folder_lib.check_writable(out_path)
        setup = _setup(config, make_model, data, task)
        if data is not None:  # the config records the data the sweep trained on
            config = dataclasses.replace(config, dataset=setup.data_name, data_dir=None)
    except BaseException as e:
        if group is not None:
            group.fail(e)
        raise
    if (
        make_model is not None
    ):  # the run records the real model, not the built-in models' unused fields
        config = recorded(config, setup.model_info)
    vary_init, vary_data = varies(config.vary)
    tx, opt_key = _make_optimizer(config, optimizer, setup)
    n_train, n_test = setup.x_train.shape[0], setup.x_test.shape[0]
    steps_per_epoch = n_train // config.batch_size
    eval_bs = min(config.eval_batch_size, n_test)

    try:  # before the grid is built and anything compiled (a failure is posted to the other processes)
        _check_grid_fits(
            config, len(setup.schemes) * len(axes.combos(config)), steps_per_epoch, n_test
        )
        # scheme x learning_rate x weight_decay x init_scale x seed; hypers[i]: model i's axis values
        grid, hypers = axes.model_grid(setup.schemes, config)
        n_models = len(grid)
        devices = jax.local_devices()[:max_devices]
        data_bytes = (
            setup.x_train.nbytes + setup.y_train.nbytes + setup.x_test.nbytes + setup.y_test.nbytes
        ) + sum(a.nbytes for a in (setup.x_val, setup.y_val) if a is not None)
        per_model = bytes_per_model(config, setup, tx)
        budget = memory_budget(config, devices[0])
        if per_model + data_bytes > budget:
            raise ValueError(
                f"one model needs about {_gb(per_model)} (parameters, optimizer state, activations of a "
                f"batch) and the data {_gb(data_bytes)}, more than the memory budget of {_gb(budget)} per "
                "device (--max-memory, the device's memory, or the memory this process may use); use a "
                "smaller model or batch size"
            )
    except BaseException as e:
        if group is not None:
            group.fail(e)
        raise
    k = models_per_device(
        config,
        devices[0].platform,
        state_bytes=state_bytes_per_model(setup, tx),
        per_model=per_model,
        budget=memory_budget(config, devices[0]) - data_bytes,
    )
    csize, _ = chunk_plan(n_models, k, len(devices), config.max_models_per_chunk)
    fingerprint = _fingerprint(config, setup, grid, opt_key) if out_path is not None else None
    pid, pcount = jax.process_index(), jax.process_count()
    status = _Status(out_path)

    with _SignalGuard() as guard:
        lock = None
        try:
            if out_path is not None and pid == 0:
                lock = lock_lib.acquire_lock(out_path)
                folder = folder_lib.open_run_folder(
                    out_path, config.to_dict(), fingerprint=fingerprint, overwrite=overwrite
                )
                if (
                    folder.state == "complete"
                    and save_params
                    and not _params_saved(out_path, folder.meta)
                ):
                    _log.info(
                        "%s holds this sweep, complete, without its parameters: training it again to save them",
                        out_path,
                    )
                    folder = dataclasses.replace(folder, state="resume")
                if folder.state == "complete":
                    if keep_params:
                        raise ValueError(
                            f"keep_params=True needs the models trained in this call, but {out_path} "
                            "already holds this sweep, complete; pass overwrite=True to train it again"
                        )
                    try:
                        loaded = load(out_path)
                    except (OSError, ValueError) as e:  # tables missing or damaged: rebuild them
                        _log.warning("%s; rebuilding the tables from the chunk files", e)
                        folder = dataclasses.replace(folder, state="resume")
                    else:
                        _log.info(
                            "%s already holds this sweep, complete: nothing was recomputed "
                            "(--overwrite / overwrite=True trains it again)",
                            out_path,
                        )
                        if group is not None:
                            group.share("prepared", _shared_config(out_path, complete=True))
                            group.barrier("checked")
                        return loaded
                if folder.state == "resume":
                    k, csize = _resumed_layout(folder.meta, k, csize, out_path, n_models)
                    _warn_if_environment_changed(folder.meta, out_path)
            if group is not None:
                if pid == 0:
                    folder_lib.write_config(
                        out_path,
                        config.to_dict(),
                        {"fingerprint": fingerprint, "chunk_size": csize, "models_per_device": k},
                        status="running",
                    )
                    group.share(
                        "prepared", _shared_config(out_path, chunk_size=csize, models_per_device=k)
                    )
                else:
                    prepared = group.receive("prepared")
                    _check_shared_folder(out_path, prepared, pid)
                    if prepared.get("complete"):
                        group.barrier("checked")
                        return load(out_path)
                    k, csize = int(prepared["models_per_device"]), int(prepared["chunk_size"])
                group.barrier("checked")
            # the devices this process uses: one per group of k models of a chunk, at most all local ones
            devices = devices[: min(len(devices), csize // k)]
            n_dev = len(devices)
            n_chunks = math.ceil(n_models / csize)
            status.n_chunks, status.epochs = n_chunks, config.epochs

            program = _program(
                (setup.model_key, opt_key, setup.task_key),
                model_fns(setup.make_model, setup.schemes[0][1], setup.bias_init),
                tx,
                batch_size=config.batch_size,
                steps_per_epoch=steps_per_epoch,
                eval_every=config.eval_every,
                eval_batch_size=eval_bs,
                shared=not vary_data,
                inner_axis=_inner_model_axis(devices[0].platform),
                task=setup.task,
            )
            compile_before = program.compile_seconds

            meta: dict[str, Any] = {
                "versions": _versions(),
                "device_kind": devices[0].device_kind,
                "platform": devices[0].platform,
                "device_count": n_dev,  # the devices this process trained on
                "local_device_count": jax.local_device_count(),
                "process_count": pcount,
                "jax_threefry_partitionable": bool(jax.config.jax_threefry_partitionable),
                "dataset": setup.data_name,
                "data_source": _portable_source(setup.data_source),
                "n_train": n_train,
                "n_test": n_test,
                "num_classes": setup.num_classes,
                "steps_per_epoch": steps_per_epoch,
                "n_models": n_models,
                "models_per_device": k,
                "chunk_size": csize,
                "n_chunks": n_chunks,
                "bytes_per_model_estimate": per_model,
                "custom_model": make_model is not None,
                "model": None if setup.model_info is None else setup.model_info._asdict(),
                "optimizer": (
                    {"name": config.optimizer, "learning_rate": config.learning_rate}
                    if optimizer is None
                    else {"custom": _describe(optimizer), "sha256": opt_key[1]}
                ),
                "schemes": [label for label, _ in setup.schemes],
                **_data_meta(setup),
            }
            if axes.swept(config):
                meta["axes"] = {
                    name: list(axes.values(config, name)) for name in axes.swept(config)
                }
            if fingerprint is not None:
                meta["fingerprint"] = fingerprint
            mine = [c for c in range(n_chunks) if c % pcount == pid]
            done: dict[int, dict[str, np.ndarray]] = {}
            if out_path is not None:
                for c in mine:
                    arrays = folder_lib.read_chunk(
                        out_path,
                        c,
                        fingerprint=fingerprint,
                        model_index=_chunk_index(c, csize, n_models),
                        shapes=_chunk_shapes(
                            config,
                            steps_per_epoch,
                            n_test,
                            c,
                            csize,
                            n_models,
                            **_chunk_extras(setup),
                        ),
                    )
                    if arrays is not None and _has_logs(arrays, f"chunk file {c}"):
                        if save_params and not folder_lib.params_path(out_path, c).is_file():
                            continue  # its models are trained again to save their parameters
                        done[c] = arrays
                status.chunks_done = status.chunks_reused = len(done)
                if keep_params and done:
                    raise ValueError(
                        f"keep_params=True needs the models trained in this call, but {out_path} already "
                        f"holds {len(done)} finished chunk(s) of this sweep; pass overwrite=True to train "
                        "it all again, or another out"
                    )
                if done:
                    _log.info(
                        "resuming the sweep in %s: %d of %d chunks are done%s",
                        out_path,
                        len(done),
                        len(mine),
                        ""
                        if pcount == 1
                        else f" (of the chunks of process {pid}; {n_chunks} in all)",
                    )
                if pid == 0:
                    with guard.critical():
                        folder_lib.write_config(out_path, config.to_dict(), meta, status="running")

            bar = None
            if progress:
                bar = _progress_bar(
                    total=len(mine) * config.epochs,
                    initial=len(done) * config.epochs,
                    desc=f"sweep {n_models} models",
                )

            xt, yt, mask = train_lib.pad_test(setup.x_test, setup.y_test, eval_bs)
            trainer = _ChunkTrainer(
                config=config,
                setup=setup,
                grid=grid,
                program=program,
                dev_data={  # put on each device once
                    d: jax.device_put(
                        (setup.x_train, setup.y_train, xt, yt, mask) + _val_data(setup, eval_bs), d
                    )
                    for d in devices
                },
                root=jax.random.PRNGKey(config.seed),
                csize=csize,
                per_device=k,
                n_chunks=n_chunks,
                devices=devices,
                vary_data=vary_data,
                out=out_path,
                fingerprint=fingerprint,
                checkpoint_every=checkpoint_every if pcount == 1 else None,
                guard=guard,
                status=status,
                bar=bar,
                hypers=[axes.effective(h, config) for h in hypers],
                hyper_names=axes.optimizer(config, optimizer)[1],
            )
            chunks, kept = [], []
            if len(done) < len(mine):
                _prepare_inits(config, setup)
            try:
                for c in mine:
                    if c in done:
                        chunks.append((c, done.pop(c)))
                        continue
                    idx = _chunk_index(c, csize, n_models)
                    chunk, final_params = trainer.train(c, idx)
                    chunks.append((c, chunk))
                    if keep_params:
                        kept.append(jax.tree.map(lambda a, n=len(idx): a[:n], final_params))
                    if out_path is not None:
                        with guard.critical():
                            if save_params:  # before the chunk file: a chunk on disk has its params
                                folder_lib.write_params(
                                    out_path,
                                    c,
                                    jax.tree.map(lambda a, n=len(idx): a[:n], final_params),
                                    fingerprint=fingerprint,
                                    model_index=idx,
                                )
                            folder_lib.write_chunk(out_path, c, chunk, fingerprint=fingerprint)
                            status.chunks_done += 1
                            status.checkpoint = None
                            folder_lib.remove_checkpoints(out_path, c)
            finally:
                try:
                    trainer.close()
                except Exception as e:
                    if sys.exc_info()[1] is None:
                        raise
                    _log.warning(
                        "could not close the checkpointer (%s)", e
                    )  # report the first error
                if bar is not None:
                    bar.close()

            if (
                group is not None
            ):  # every process trained its chunks: read the others' from the shared folder
                group.barrier("chunks", timeout=math.inf)
                chunks = []
                for c in range(n_chunks):
                    arrays = folder_lib.read_chunk(
                        out_path,
                        c,
                        fingerprint=fingerprint,
                        model_index=_chunk_index(c, csize, n_models),
                    )
                    if arrays is None:
                        raise RuntimeError(f"chunk {c} of {out_path} is missing after the barrier")
                    chunks.append((c, arrays))

            meta["compile_seconds"] = program.compile_seconds - compile_before
            # what XLA allocates for one chunk's epoch (per device; data included)
            if program.last_memory:
                meta["epoch_program_bytes"] = program.last_memory
            meta["train_seconds"] = trainer.train_seconds
            meta["chunks_reused"] = status.chunks_reused
            meta["epochs_reused"] = trainer.epochs_reused
            meta["wall_seconds"] = time.perf_counter() - t_start
            result = _assemble(config, setup, grid, chunks, steps_per_epoch, meta, hypers=hypers)
            if keep_params and kept:
                result.params = jax.tree.map(lambda *xs: np.concatenate(xs), *kept)
            if out_path is not None and pid == 0:
                # a signal during the final write is not acted on: when the write ends, the sweep is complete
                with guard.critical(complete=True):
                    folder_lib.write_tables(out_path, result)
            if group is not None:  # the folder is complete when run returns, on every process
                group.barrier("saved", timeout=math.inf)
            return result
        except KeyboardInterrupt as e:
            if group is not None:
                group.fail(e)
            raise SweepInterrupted(getattr(e, "signum", signal.SIGINT), status) from None
        except BaseException as e:
            if group is not None:
                group.fail(e)
            raise
        finally:
            if lock is not None:
                try:
                    lock.release()
                except OSError as e:
                    if sys.exc_info()[1] is None:
                        raise
                    # the first error is the one to report (e.g. a folder that became read-only)
                    _log.warning("could not remove the lock %s (%s)", lock.path, e)


def _model_argument(model: Callable | None, make_model: Callable | None) -> Callable | None:
    """``model=`` (its name since the open engine) or ``make_model=`` (the older name), not both."""
    if model is not None and make_model is not None:
        raise TypeError("pass the model factory once: model= (make_model= is its older name)")
    return model if model is not None else make_model


def _progress_bar(*, total: int, initial: int, desc: str):
    """The sweep's tqdm bar on stderr: redrawn live on a terminal or in Jupyter; when stderr is a log file or a
    pipe (a batch job, CI), at most once a minute, so that the log gets a few lines, not thousands of redraws."""
    from tqdm.auto import tqdm

    live = sys.stderr.isatty() or "ipykernel" in sys.modules
    quiet = {} if live else {"mininterval": 60.0, "maxinterval": 600.0, "ncols": 100}
    return tqdm(
        total=total,
        initial=initial,
        unit="epoch",
        desc=desc,
        file=sys.stderr,
        dynamic_ncols=live,
        **quiet,
    )


@dataclasses.dataclass
class _ChunkTrainer:
    """Trains the chunks of one sweep: initial params, restore from an epoch checkpoint, the epochs, checkpoints."""

    config: SweepConfig
    setup: _Setup
    grid: list
    program: _Program
    dev_data: tuple
    root: jax.Array
    csize: int
    per_device: int
    n_chunks: int
    devices: list
    vary_data: bool
    out: Path | None
    fingerprint: str | None
    checkpoint_every: float | None
    guard: _SignalGuard
    status: _Status
    bar: Any
    train_seconds: float = 0.0
    epochs_reused: int = 0
    hypers: list | None = None  # each grid model's axis values (jinit.sweep.axes.Hyper)
    hyper_names: dict | None = None  # {axis: key in opt_state.hyperparams}
    _ckptr: checkpoints_lib.Checkpointer | None = None

    def _checkpointer(self) -> checkpoints_lib.Checkpointer:
        if self._ckptr is None:
            self._ckptr = checkpoints_lib.Checkpointer()
        return self._ckptr

    def close(self) -> None:
        if self._ckptr is not None:
            self._ckptr.close()
            self._ckptr = None

    def train(self, c: int, idx: list[int]):
        """Trains chunk ``c`` (grid indices ``idx``); returns its arrays (:func:`_chunk_arrays`) and final params."""
        config, program, status = self.config, self.program, self.status
        padded = idx + [idx[-1]] * (self.csize - len(idx))
        entries = [self.grid[i] for i in padded]
        params = _init_models(config, self.setup, entries)
        hypers = [self.hypers[i] for i in padded] if self.hypers is not None else None
        if hypers is not None:  # the init scale: every kernel times its model's value, on the host
            params = axes.scale_kernels(params, [h.init_scale for h in hypers])
        seeds_data = np.asarray([s if self.vary_data else 0 for _, _, s in entries], np.uint32)
        data_keys, dropout_keys = stream_keys(self.root, seeds_data, shared=not self.vary_data)
        # The chunk's groups of k models, group g on device g % devices: each is trained by the same
        # single-device program of k models, whatever the number of devices (see the module doc).
        k = self.per_device
        groups = []
        for g in range(self.csize // k):
            dev = self.devices[g % len(self.devices)]
            part = slice(g * k, (g + 1) * k)
            keys = (
                (data_keys[part], dropout_keys[part])
                if self.vary_data
                else (data_keys, dropout_keys)
            )
            state = program.init_state(
                jax.device_put(jax.tree.map(lambda a, part=part: a[part], params), dev)
            )
            if hypers is not None:  # each model's learning rate / weight decay, in its opt_state
                state = axes.set_hyperparams(state, hypers[part], self.hyper_names or {})
            groups.append((dev, state, jax.device_put(keys, dev)))
        state_tree = jax.tree.structure(groups[0][1])
        logs: list[train_lib.EpochLogs] = []
        start = 0
        saving = self.out is not None and self.checkpoint_every is not None
        if saving:
            ckpt = self._checkpointer().restore(
                self.out,
                c,
                [  # shapes of the whole chunk's state
                    jax.ShapeDtypeStruct((self.csize,) + x.shape[1:], x.dtype)
                    for x in jax.tree.leaves(groups[0][1])
                ],
                fingerprint=self.fingerprint,
                model_index=idx,
            )
            if ckpt is not None and not _has_logs(ckpt.logs, f"the checkpoint of chunk {c}"):
                ckpt = None
            if ckpt is not None:
                groups = [
                    (
                        dev,
                        jax.device_put(
                            jax.tree.unflatten(
                                state_tree, [np.asarray(x)[i * k : (i + 1) * k] for x in ckpt.state]
                            ),
                            dev,
                        ),
                        keys,
                    )
                    for i, (dev, _, keys) in enumerate(groups)
                ]
                logs, start = _logs_from_arrays(ckpt.logs), ckpt.epoch
                self.epochs_reused += start
                status.checkpoint = (c, start)
                _log.info(
                    "resuming chunk %d of %s from its checkpoint after epoch %d of %d",
                    c,
                    self.out,
                    start,
                    config.epochs,
                )
                if self.bar is not None:
                    self.bar.update(start)
        last_save = time.perf_counter()
        steps_per_epoch = self.setup.x_train.shape[0] // config.batch_size
        for epoch in range(start, config.epochs):
            t = time.perf_counter()
            compile_t = program.compile_seconds
            if epoch == start:  # every device's program, compiled at once (the shapes stay)
                program.compile_for(
                    [(st, *keys, jnp.int32(epoch), *self.dev_data[dev]) for dev, st, keys in groups]
                )
            outs = [  # dispatched to every device before any result is read: the devices run at once
                program.run_epoch(state, *keys, jnp.int32(epoch), *self.dev_data[dev])
                for dev, state, keys in groups
            ]
            groups = [(dev, o[0], keys) for (dev, _, keys), o in zip(groups, outs, strict=True)]
            ep = _flat_logs(_concat_logs(jax.device_get([o[1] for o in outs])))
            dt = time.perf_counter() - t - (program.compile_seconds - compile_t)
            self.train_seconds += dt
            logs.append(ep)
            if self.bar is not None:
                self.bar.update(1)
                rate = len(idx) / max(dt, 1e-9)
                self.bar.set_postfix(
                    chunk=f"{c + 1}/{self.n_chunks}",
                    models_per_s=f"{rate:.3g}",
                    examples_per_s=f"{rate * steps_per_epoch * config.batch_size:.3g}",
                    refresh=False,
                )
            if (
                saving
                and epoch + 1 < config.epochs
                and time.perf_counter() - last_save >= self.checkpoint_every
            ):
                with self.guard.critical():
                    self._checkpointer().save(
                        self.out,
                        c,
                        epoch + 1,
                        _concat_leaves([g[1] for g in groups]),
                        _logs_to_arrays(logs),
                        fingerprint=self.fingerprint,
                        model_index=idx,
                    )
                    status.checkpoint = (c, epoch + 1)
                last_save = time.perf_counter()
        final = jax.device_get([(state_variables(st), st.diverged_step) for _, st, _ in groups])
        final = jax.tree.map(lambda *xs: np.concatenate(xs), *final)
        return _chunk_arrays(idx, final, logs, self.setup.x_test.shape[0]), final[0]


def _data_meta(setup: _Setup) -> dict[str, Any]:
    """What the run folder records of the task and the validation set (``meta["task"]``, ``meta["n_val"]``)."""
    task = setup.task or train_lib.classification()
    out: dict[str, Any] = {
        "task": {
            "name": task.name,
            "metrics": list(task.metric_names),
            "primary": task.primary,
            "higher_is_better": bool(task.higher_is_better),
        }
    }
    if setup.x_val is not None:
        out["n_val"] = int(setup.x_val.shape[0])
    return out


def _val_data(setup: _Setup, eval_bs: int) -> tuple:
    """The validation set padded like the test set (``train.pad_test``), or nothing without one."""
    if setup.x_val is None:
        return ()
    return train_lib.pad_test(setup.x_val, setup.y_val, eval_bs)


def _chunk_extras(setup: _Setup) -> dict[str, Any]:
    """The chunk arrays beyond those of a classification sweep without validation (:func:`_chunk_shapes`)."""
    regression_like = setup.task is not None and not _is_class_task(setup.task)
    return {
        "extra": _extra_log_fields(setup.task, setup.x_val is not None),
        "pred_tail": tuple(setup.outputs_tail or ()) if regression_like else (),
        "pred_kind": "fiu" if regression_like else "iu",
    }


def _concat_leaves(states) -> list[np.ndarray]:
    """The leaves of the states of a chunk's groups, concatenated along the model axis (on the host)."""
    return [
        np.concatenate(xs)
        for xs in zip(*(jax.tree.leaves(jax.device_get(s)) for s in states), strict=True)
    ]


def _concat_logs(logs: list[train_lib.EpochLogs]) -> train_lib.EpochLogs:
    """One epoch's logs of a chunk's groups, joined along the model axis."""
    return jax.tree.map(lambda *xs: np.concatenate(xs), *logs)

"""The chunk loop: trains one chunk of the grid at a time on every device at once, without any I/O.

A chunk is ``chunk_size`` models in groups of ``models_per_device``; group ``g`` trains on device ``g % devices``
with the same single-device program (:class:`jinit.sweep.program.EpochProgram`: the program of the chunk's
precision; a chunk holds one precision, :mod:`jinit.sweep.precision`). Each device's epoch is run from a
thread of its own, so the devices compute at the same time (dispatched from one thread, XLA:CPU ran them one after
another: 2 CPU devices trained no faster than one). What happens around the epochs -- restoring a checkpoint,
saving one, the progress bar, trackers -- are :class:`Callback` objects the driver passes in.
"""

from __future__ import annotations

import concurrent.futures
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jinit import keys
from jinit import train as train_lib
from jinit.sweep import chunks, hyper
from jinit.sweep.program import EpochProgram, InitProgram, initial_variables, state_variables


class Resume(NamedTuple):
    """Where a chunk restarts: after ``epoch`` epochs, from ``state`` (the leaves of the whole chunk's training
    state, model axis first) with the flat ``logs`` of those epochs."""

    epoch: int
    state: list[Any]
    logs: list[dict[str, Any]]


class EpochEnd(NamedTuple):
    """What a callback learns at the end of an epoch of a chunk.

    Attributes:
      chunk: the chunk's index.
      models: the grid indices of its models (the padding copies of a last chunk are not among them).
      epoch: the epochs the chunk has done (1 after its first).
      epochs: the epochs of the sweep.
      logs: the flat logs of the chunk's epochs so far (:func:`jinit.sweep.chunks.flat_logs`; numpy, a leading
        model axis that includes the padding copies: the first ``len(models)`` rows are the models).
      seconds: the training time of this epoch.
      state: returns the leaves of the chunk's training state on the host (fetched from the devices when called).
    """

    chunk: int
    models: list[int]
    epoch: int
    epochs: int
    logs: list[dict[str, Any]]
    seconds: float
    state: Callable[[], list[np.ndarray]]


class Callback:
    """What the trainer calls around a chunk's epochs; every method is optional (a no-op here).

    Pass your own to :func:`jinit.sweep.run` (``callbacks=[...]``) to watch a sweep as it trains: a model of the
    grid is ``plan.grid[i]`` (:class:`jinit.sweep.plan.GridModel`: scheme label, seed number, hyperparameter
    values) for ``i`` in an event's ``models``.
    """

    def sweep_start(self, plan: Any) -> None:
        """Called once before the first chunk trains, with the sweep's :class:`jinit.sweep.plan.Plan`."""

    def sweep_end(self) -> None:
        """Called once after the last chunk was handed over (not when the sweep stops with an error)."""

    def resume(
        self, chunk: int, models: list[int], template: list[jax.ShapeDtypeStruct]
    ) -> Resume | None:
        """A saved point to restart ``chunk`` from (``template``: the shapes of its state's leaves), or None."""
        return None

    def epoch_end(self, event: EpochEnd) -> None:
        """Called after every epoch of a chunk (a resumed chunk's restored epochs are not called again)."""

    def chunk_end(
        self, chunk: int, models: list[int], arrays: dict[str, np.ndarray], variables: Any
    ) -> None:
        """Called when a chunk is trained, with its arrays (:func:`jinit.sweep.chunks.chunk_arrays`) and, when the
        trainer keeps them, its models' final variables (numpy, model axis first; else None). A chunk is handed
        over while the next one's first epoch computes (or at :meth:`Trainer.flush`)."""


def _concat(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *xs: np.concatenate(xs), *trees)


class Trainer:
    """Trains the chunks of a plan (:class:`jinit.sweep.plan.Plan`) on ``devices``.

    Args:
      plan: the sweep's plan.
      program: its epoch programs, ``{precision: program}`` (:meth:`jinit.sweep.program.ProgramCache.epochs`), or
        the one program of a sweep of one precision.
      inits: its schemes' init programs.
      devices: the local devices it trains on (at most ``plan.layout.devices`` are used).
      callbacks: :class:`Callback` objects, called in order.
      keep_variables: return each chunk's final variables too.
    """

    def __init__(
        self,
        plan: Any,
        program: EpochProgram | dict[Any, EpochProgram],
        inits: dict[str, InitProgram],
        devices: Sequence[Any],
        *,
        callbacks: Sequence[Callback] = (),
        keep_variables: bool = False,
    ):
        if not isinstance(program, dict):
            program = {plan.precisions[0] if plan.trainings else None: program}
        self.plan, self.programs, self.inits = plan, program, inits
        #: the program of the grid's first precision (what a sweep of one precision trains with)
        self.program = next(iter(program.values()))
        self.devices = list(devices)[: plan.layout.devices]
        self.callbacks = list(callbacks)
        self.keep_variables = keep_variables
        #: seconds spent initializing models, compiling, training and turning chunks into arrays (the driver adds
        #: its own: setup)
        self.seconds = {"setup": 0.0, "compile": 0.0, "init": 0.0, "train": 0.0, "finalize": 0.0}
        self.epochs_reused = 0
        inputs = plan.inputs
        xt, yt, mask = train_lib.pad_test(inputs.x_test, inputs.y_test, plan.eval_batch_size)
        host = (inputs.x_train, inputs.y_train, xt, yt, mask)
        if inputs.x_val is not None:
            host += train_lib.pad_test(inputs.x_val, inputs.y_val, plan.eval_batch_size)
        self._data = {d: jax.device_put(host, d) for d in self.devices}  # once per device
        self._root = keys.root_key(plan.config.seed)
        self._executables: dict[Any, Any] = {}  # (precision, device) -> its compiled epoch
        self._pool = concurrent.futures.ThreadPoolExecutor(len(self.devices), "jinit-device")
        self._prepare = concurrent.futures.ThreadPoolExecutor(1, "jinit-init")
        self._next: tuple[int, concurrent.futures.Future] | None = None
        self._done: tuple | None = None  # the last trained chunk, not yet handed to the callbacks

    def close(self) -> None:
        """Lets the threads go (an epoch still running ends in the background; its result is dropped)."""
        interrupted = sys.exc_info()[1] is not None
        self._pool.shutdown(wait=not interrupted, cancel_futures=True)
        self._prepare.shutdown(wait=not interrupted, cancel_futures=True)

    def _precision(self, c: int) -> Any:
        """The precision of chunk ``c`` (the key of its program)."""
        return self.plan.chunk_precision(c) if len(self.programs) > 1 else next(iter(self.programs))

    def _groups(self, c: int, idx: list[int]) -> list[tuple[Any, Any, tuple]]:
        """The chunk's groups: ``(device, training state, (data keys, dropout keys))`` of each, on its device."""
        plan = self.plan
        program = self.programs[self._precision(c)]
        size, k = plan.layout.chunk_size, plan.layout.models_per_device
        padded = idx + [idx[-1]] * (size - len(idx))
        models = [plan.grid[i] for i in padded]
        variables = initial_variables(plan, self.inits, models)
        seeds = np.asarray([m.seed if plan.vary_data else 0 for m in models], np.uint32)
        data_keys, dropout_keys = keys.stream_keys(self._root, seeds, shared=not plan.vary_data)
        groups = []
        for g in range(size // k):
            dev, part = self.devices[g % len(self.devices)], slice(g * k, (g + 1) * k)
            stream = (
                (data_keys[part], dropout_keys[part])
                if plan.vary_data
                else (data_keys, dropout_keys)
            )
            state = program.init_state(
                jax.device_put(jax.tree.map(lambda a, p=part: a[p], variables), dev)
            )
            state = hyper.set_hyperparams(state, [m.hyper for m in models[part]], plan.hyper_names)
            groups.append((dev, state, jax.device_put(stream, dev)))
        return groups

    def _resume(self, c: int, idx: list[int], groups: list) -> tuple[list, list, int]:
        """The groups restored from a callback's saved point, its logs and its epoch (or as they were)."""
        size, k = self.plan.layout.chunk_size, self.plan.layout.models_per_device
        tree = jax.tree.structure(groups[0][1])
        template = [
            jax.ShapeDtypeStruct((size,) + x.shape[1:], x.dtype)
            for x in jax.tree.leaves(groups[0][1])
        ]
        for cb in self.callbacks:
            saved = cb.resume(c, idx, template)
            if saved is None:
                continue
            groups = [
                (
                    dev,
                    jax.device_put(
                        jax.tree.unflatten(
                            tree, [np.asarray(x)[i * k : (i + 1) * k] for x in saved.state]
                        ),
                        dev,
                    ),
                    stream,
                )
                for i, (dev, _, stream) in enumerate(groups)
            ]
            self.epochs_reused += saved.epoch
            return groups, list(saved.logs), saved.epoch
        return groups, [], 0

    def _epoch(
        self, p: Any, groups: list, epoch: int, flush: bool = False
    ) -> tuple[list, dict[str, Any]]:
        """One epoch of every group of precision ``p``, each on its device from its own thread (with ``flush``, the
        previous chunk is handed to the callbacks meanwhile); returns the new groups and the epoch's flat logs of
        the chunk."""

        def one(group):
            dev, state, stream = group
            run = self._executables[(p, dev)]
            state, logs = run(state, *stream, np.int32(epoch), *self._data[dev])
            return (dev, state, stream), jax.device_get(logs)

        futures = [self._pool.submit(one, g) for g in groups]
        if flush:
            self.flush()
        done = [f.result() for f in futures]
        logs = _concat([chunks.flat_logs(ep) for _, ep in done])
        return [g for g, _ in done], logs

    def _compile(self, p: Any, groups: list, epoch: int) -> None:
        """Every device's executable of precision ``p``'s epoch, compiled at once the first time (the shapes
        stay)."""
        todo = [g for g in groups if (p, g[0]) not in self._executables]
        if not todo:
            return
        program = self.programs[p]
        before = program.compile_seconds
        args = {dev: (st, *stream, np.int32(epoch), *self._data[dev]) for dev, st, stream in todo}
        program.compile(list(args.values()))
        self._executables.update({(p, dev): program.executable(a) for dev, a in args.items()})
        self.seconds["compile"] += program.compile_seconds - before

    def _start(self, c: int) -> list:
        """Chunk ``c``'s groups: prepared in the background while the previous chunk trained, or now."""
        t = time.perf_counter()
        if self._next is not None and self._next[0] == c:
            groups = self._next[1].result()
        else:
            groups = self._groups(c, self.plan.chunk(c))
        self._next = None
        self.seconds["init"] += time.perf_counter() - t
        return groups

    def flush(self) -> None:
        """Hands the last trained chunk to the callbacks (:meth:`Callback.chunk_end`), if it was not yet."""
        if self._done is None:
            return
        t = time.perf_counter()
        c, idx, groups, logs = self._done
        variables, diverged = _concat(
            jax.device_get([(state_variables(st), st.diverged_step) for _, st, _ in groups])
        )
        arrays = chunks.chunk_arrays(
            idx, variables, diverged, logs, self.plan.inputs.x_test.shape[0]
        )
        kept = jax.tree.map(lambda a: a[: len(idx)], variables) if self.keep_variables else None
        self._done = None  # handed over once: a callback that fails is not called again
        for cb in self.callbacks:
            cb.chunk_end(c, idx, arrays, kept)
        self.seconds["finalize"] += time.perf_counter() - t

    def train(self, c: int, then: int | None = None) -> None:
        """Trains chunk ``c`` (restarting from a callback's saved point when there is one); the chunk before it is
        handed to the callbacks while ``c``'s first epoch computes, and ``c`` itself at the next chunk or
        :meth:`flush`. With ``then``, the models of chunk ``then`` are initialized in the background meanwhile."""
        plan = self.plan
        idx = plan.chunk(c)
        p = self._precision(c)
        try:
            groups, logs, start = self._resume(c, idx, self._start(c))
            if then is not None:
                self._next = (then, self._prepare.submit(self._groups, then, plan.chunk(then)))
            for epoch in range(start, plan.config.epochs):
                self._compile(p, groups, epoch)
                t = time.perf_counter()
                groups, ep = self._epoch(p, groups, epoch, flush=epoch == start)
                seconds = time.perf_counter() - t
                self.seconds["train"] += seconds
                logs.append(ep)

                def state(groups=groups):
                    leaves = [jax.tree.leaves(jax.device_get(st)) for _, st, _ in groups]
                    return [np.concatenate(xs) for xs in zip(*leaves, strict=True)]

                event = EpochEnd(c, idx, epoch + 1, plan.config.epochs, logs, seconds, state)
                for cb in self.callbacks:
                    cb.epoch_end(event)
        except BaseException:
            self.flush()  # a chunk that was trained is handed over, also when this one was interrupted
            raise
        self.flush()
        self._done = (c, idx, groups, logs)


class Collect(Callback):
    """Keeps every chunk's arrays (``arrays[c]``) and, with ``keep``, in chunk order, the variables the trainer
    handed over."""

    def __init__(
        self, arrays: dict[int, dict[str, np.ndarray]] | None = None, *, keep: bool = False
    ):
        self.arrays = dict(arrays or {})
        self.keep = keep
        self.variables: list[Any] = []

    def chunk_end(self, chunk, models, arrays, variables) -> None:
        self.arrays[chunk] = arrays
        if self.keep and variables is not None:
            self.variables.append(variables)


class ProgressBar(Callback):
    """A tqdm bar on stderr over the epochs of the chunks a process trains: redrawn live on a terminal or in
    Jupyter; in a log file or a pipe (a batch job, CI), at most once a minute."""

    def __init__(self, plan: Any, n_chunks: int, done: int):
        from tqdm.auto import tqdm

        live = sys.stderr.isatty() or "ipykernel" in sys.modules
        quiet = {} if live else {"mininterval": 60.0, "maxinterval": 600.0, "ncols": 100}
        epochs = plan.config.epochs
        self.plan = plan
        self._counted: dict[int, int] = {}
        self.bar = tqdm(
            total=n_chunks * epochs,
            initial=done * epochs,
            unit="epoch",
            desc=f"sweep {plan.n_models} models",
            file=sys.stderr,
            dynamic_ncols=live,
            **quiet,
        )

    def epoch_end(self, event: EpochEnd) -> None:
        plan = self.plan
        # a chunk restored from a checkpoint counts its restored epochs at its first epoch's end
        self.bar.update(event.epoch - self._counted.get(event.chunk, 0))
        self._counted[event.chunk] = event.epoch
        rate = len(event.models) / max(event.seconds, 1e-9)
        self.bar.set_postfix(
            chunk=f"{event.chunk + 1}/{plan.layout.n_chunks}",
            models_per_s=f"{rate:.3g}",
            examples_per_s=f"{rate * plan.steps_per_epoch * plan.config.batch_size:.3g}",
            refresh=False,
        )

    def close(self) -> None:
        self.bar.close()

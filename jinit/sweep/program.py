"""The compiled programs of a sweep, and the cache that keeps them.

* :class:`EpochProgram`: one epoch of ``models_per_device`` models on one device (``jit`` of a ``lax.scan`` over steps
  of the ``vmap``-ped single-model step, :func:`jinit.train.make_train`), one executable per device (each device
  runs its own copy: the reproducibility contract), the devices' executables compiled at once in threads.
* :class:`InitProgram`: a scheme's initialization of :data:`INIT_BLOCK` models (``lax.map`` of the single-model
  init over their seed numbers), lowered for every sweep (its lowered text is what the scheme draws: the
  fingerprint's identity of the scheme) and compiled once per distinct text.
* :class:`ProgramCache`: both, bounded, keyed by what a program computes (the model's and optimizer's keys, the
  shapes; an init program by its lowered text), never by a function's identity, so a changed model, scheme or
  optimizer never gets a stale program. :func:`run` uses :func:`default_cache` unless given one.

JAX's persistent compilation cache (:func:`enable_persistent_cache`) keeps compiled programs across processes, in
the user's cache folder.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jinit import keys
from jinit import train as train_lib
from jinit.rules import Rules, sweep_init
from jinit.sweep import hyper
from jinit.sweep.inputs import Inputs, linen_module, model_fns, variables_init
from jinit.sweep.plan import GridModel, make_plan
from jinit.sweep.schemes import is_lsuv, resolve_schemes

_log = logging.getLogger("jinit.sweep")

#: Compiled programs a :class:`ProgramCache` keeps (least recently used first out).
MAX_CACHED_PROGRAMS = 16

# Models are initialized INIT_BLOCK at a time per scheme: one compiled call maps the single-model init over their
# seed numbers with ``lax.map`` (a loop: every model is computed by the same unbatched code, never a vmapped batch
# whose arithmetic, or QR, would depend on the batch), the last block padded with copies. A fixed block keeps the
# program, and so the values, the same in every grid.
INIT_BLOCK = 8

# The init programs are compiled with LLVM's first optimization level: XLA's default build of an unrolled threefry
# took 0.67 s per scheme (digits MLP, 2-core CPU) and ran 0.13-0.6 ms per model; level 0 took 0.22 s and ran
# 0.7-1.4 ms per model, which made initializing 2,052 models longer than training them for 2 epochs; level 1 takes
# 0.33 s and runs 0.2-0.45 ms (experiments/results/benchmark/NOTES.md). A model's initial values depend on the
# level in the last bit (floating-point contraction), never on the grid.
_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def split_variables(variables) -> tuple[dict, dict]:
    """A Flax variables dict as ``({"params": ...}, model state)``: what the optimizer trains, and the other
    collections (BatchNorm's ``batch_stats``), which the forward pass in training updates."""
    return {"params": variables["params"]}, {k: v for k, v in variables.items() if k != "params"}


def state_variables(state) -> dict:
    """The variables dict of a :class:`jinit.train.TrainState` (its params and model state, joined)."""
    return {**(state.model_state or {}), **state.params}


def inner_model_axis(platform: str) -> bool:
    """Whether the training loop keeps the model axis of kernels just before their last dimension
    (:func:`jinit.train.make_train`'s ``vmapped_epoch``): on accelerators, where it saves a transpose of every
    stacked kernel that sees a shared input, and its gradient, at every step (1.36x-1.45x on an H100, MNIST MLP);
    not on a CPU, where the leading model axis was measured faster."""
    return platform != "cpu"


def _memory_stats(compiled) -> dict[str, int]:
    """XLA's buffer sizes of a compiled program (per device), or {} where the backend does not report them."""
    try:
        m = compiled.memory_analysis()
        return {
            f: int(getattr(m, f"{f}_size_in_bytes"))
            for f in ("argument", "output", "alias", "temp", "generated_code")
        }
    except Exception:  # backends without memory analysis
        return {}


def _signature(args) -> tuple:
    leaves, tree = jax.tree_util.tree_flatten(args)
    return (tree, tuple((x.shape, x.dtype, getattr(x, "sharding", None)) for x in leaves))


def _compile_all(lowered: Sequence[Any], **kw) -> list[Any]:
    """Compiles lowered programs at once, in threads (XLA compiles without the GIL)."""
    if len(lowered) == 1:
        return [lowered[0].compile(**kw)]
    with concurrent.futures.ThreadPoolExecutor(min(len(lowered), os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda low: low.compile(**kw), lowered))


class EpochProgram:
    """The compiled epoch of ``models_per_device`` models of one (model, optimizer, task, shapes) on one device.

    ``program(state, data_keys, dropout_keys, epoch, *data)`` runs one epoch (the arguments on one device; the
    state is donated) and returns ``(state, jinit.train.EpochLogs)``; :meth:`init_state` builds the stacked
    training state from stacked variables.
    """

    def __init__(
        self,
        fns,
        tx,
        *,
        task,
        batch_size,
        steps_per_epoch,
        eval_every,
        eval_batch_size,
        shared,
        inner_axis,
    ):
        trainer = train_lib.make_train(
            fns,
            tx,
            task=task,
            batch_size=batch_size,
            steps_per_epoch=steps_per_epoch,
            eval_every=eval_every,
            eval_batch_size=eval_batch_size,
        )
        self.inner_axis = inner_axis
        self._epoch = jax.jit(
            trainer.vmapped_epoch(shared_keys=shared, inner_axis=inner_axis), donate_argnums=0
        )
        self.init_state = jax.jit(jax.vmap(lambda v: trainer.init(*split_variables(v))))
        self._compiled: dict[Any, Any] = {}
        self._lock = threading.Lock()
        self.compile_seconds = 0.0
        self.memory: dict[str, int] = {}

    @property
    def executables(self) -> int:
        """How many executables of this epoch it has compiled (one per device and argument shapes)."""
        return len(self._compiled)

    def compile(self, arg_sets: Sequence[tuple]) -> None:
        """Compiles the epoch for every argument set not compiled yet (one per device: each device runs its own
        single-device executable), at once."""
        todo = {}
        for args in arg_sets:
            sig = _signature(args)
            if sig not in self._compiled and sig not in todo:
                todo[sig] = args
        if not todo:
            return
        t = time.perf_counter()
        compiled = _compile_all([self._epoch.lower(*args) for args in todo.values()])
        self.compile_seconds += time.perf_counter() - t
        for sig, c in zip(todo, compiled, strict=True):
            self._compiled[sig] = c
            self.memory = self.memory or _memory_stats(c)

    def executable(self, args: tuple) -> Any:
        """The compiled executable for arguments like ``args`` (compiled now if it was not)."""
        sig = _signature(args)
        if sig not in self._compiled:
            with self._lock:
                self.compile([args])
        return self._compiled[sig]

    def __call__(self, *args):
        sig = _signature(args)
        if sig not in self._compiled:
            with self._lock:
                self.compile([args])
        return self._compiled[sig](*args)


class InitProgram(NamedTuple):
    """A scheme's compiled init of :data:`INIT_BLOCK` models: ``fn(root, hash, seeds, x, batch) -> variables``
    (``seeds``: their seed numbers; a leading model axis on every leaf; ``batch`` the LSUV batch or None)."""

    key: str  # SHA-256 of the lowered program: what the scheme draws on this model
    fn: Callable
    batch: np.ndarray | None  # the LSUV batch of the scheme "lsuv", else None


def _init_block(inputs: Inputs, scheme) -> Callable:
    """``(root, hash, seeds, x, batch) -> variables`` of INIT_BLOCK models of ``scheme`` (keys: jinit.keys)."""
    init = variables_init(model_fns(inputs.make_model, scheme, inputs.bias_init))
    lsuv = is_lsuv(scheme)
    module = linen_module(inputs.make_model, scheme, inputs.bias_init) if lsuv else None

    def init_one(root, h, s, x, batch):
        k = keys.init_key(root, h, s)
        if isinstance(scheme, Rules):  # per-parameter keys: see jinit.rules
            return sweep_init(scheme, init, root, s, k, x)
        return scheme.init(module, k, x, batch) if lsuv else init(k, x)

    def block(root, h, seeds, x, batch):
        return jax.lax.map(lambda s: init_one(root, h, s, x, batch), seeds)

    return block


def lsuv_batch(seed: int, x_train: np.ndarray, size: int) -> np.ndarray:
    """The fixed batch of training inputs on which the scheme ``"lsuv"`` rescales a sweep's models:
    ``min(size, n_train)`` examples drawn without replacement by ``permutation(fold_in(PRNGKey(seed), 3))``
    (:func:`jinit.keys.batch_key`), the same for every model of the sweep."""
    n = x_train.shape[0]
    perm = jax.random.permutation(keys.batch_key(keys.root_key(seed)), n)
    return np.asarray(x_train)[np.sort(np.asarray(perm[: min(size, n)]))]


class ProgramCache:
    """Compiled programs of sweeps, reused by later sweeps of the same shapes in this process.

    Args:
      max_programs: how many epoch programs and how many init programs it keeps (least recently used first out).
      inner_model_axis: where the training loop keeps the model axis of kernels: just before their last
        dimension (True) or in front (False); None (default): :func:`inner_model_axis` of the platform. Either
        trains the same models (to float round-off); it is part of a model's arithmetic, like the device kind.
    """

    def __init__(
        self, max_programs: int = MAX_CACHED_PROGRAMS, *, inner_model_axis: bool | None = None
    ):
        self.max_programs = max_programs
        self.inner_model_axis = inner_model_axis
        self._epochs: collections.OrderedDict[Any, EpochProgram] = collections.OrderedDict()
        self._inits: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.init_compile_seconds = 0.0
        self.epoch_programs = (
            0  # epoch programs built (each compiles one executable per device it runs on)
        )
        self.init_compiles = 0  # init programs compiled

    @property
    def held(self) -> tuple[int, int]:
        """``(epoch programs, init programs)`` the cache holds now."""
        return len(self._epochs), len(self._inits)

    @property
    def epoch_executables(self) -> int:
        """Executables of the epoch programs this cache holds (one per program and device)."""
        return sum(p.executables for p in self._epochs.values())

    def _get(self, cache: collections.OrderedDict, key: Any, make: Callable[[], Any]) -> Any:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        value = cache[key] = make()
        while len(cache) > self.max_programs:
            cache.popitem(last=False)
        return value

    @property
    def compile_seconds(self) -> float:
        """Seconds this cache's programs spent compiling (epoch programs it still holds, and init programs)."""
        return self.init_compile_seconds + sum(p.compile_seconds for p in self._epochs.values())

    def clear(self) -> None:
        """Forgets every program (the next sweep compiles again, or reads JAX's persistent cache)."""
        self._epochs.clear()
        self._inits.clear()

    def epoch(self, plan, platform: str, precision: Any = None) -> EpochProgram:
        """The epoch program of ``plan`` (a :class:`jinit.sweep.plan.Plan`) on devices of ``platform``, for the
        models of ``precision`` (:class:`jinit.sweep.precision.Precision`; default: the grid's first)."""
        inputs, config = plan.inputs, plan.config
        training = plan.training(precision) if precision is not None else plan.trainings[0]
        kw = dict(
            task=inputs.task,
            batch_size=config.batch_size,
            steps_per_epoch=plan.steps_per_epoch,
            eval_every=config.eval_every,
            eval_batch_size=plan.eval_batch_size,
            shared=not plan.vary_data,
            inner_axis=inner_model_axis(platform)
            if self.inner_model_axis is None
            else self.inner_model_axis,
        )
        key = (
            training.model_key,
            training.optimizer_key,
            inputs.task_key,
            tuple(sorted((k, v) for k, v in kw.items() if k != "task")),
        )
        fns = model_fns(training.make_model, plan.schemes[0][1], inputs.bias_init)

        def make():
            self.epoch_programs += 1
            return EpochProgram(fns, training.tx, **kw)

        return self._get(self._epochs, key, make)

    def epochs(self, plan, platform: str) -> dict[Any, EpochProgram]:
        """The epoch program of every precision of ``plan``: ``{precision: program}``, in grid order."""
        return {p: self.epoch(plan, platform, p) for p in plan.precisions}

    def inits(self, plan) -> dict[str, InitProgram]:
        """Every scheme's :class:`InitProgram` of ``plan``, compiled at once where new. Each is lowered for this
        sweep (so its key says what the scheme draws now, whatever its label) and compiled only when no program of
        that text is cached."""
        inputs, config = plan.inputs, plan.config
        x = jax.ShapeDtypeStruct((1,) + inputs.x_train.shape[1:], jnp.float32)
        out, todo = {}, {}
        for label, scheme in plan.schemes:
            batch = (
                lsuv_batch(config.seed, inputs.x_train, scheme.batch_size)
                if is_lsuv(scheme)
                else None
            )
            b = None if batch is None else jax.ShapeDtypeStruct(batch.shape, jnp.float32)
            seeds = jax.ShapeDtypeStruct((INIT_BLOCK,), jnp.uint32)
            lowered = jax.jit(_init_block(inputs, scheme)).lower(
                jax.ShapeDtypeStruct((2,), jnp.uint32),
                jax.ShapeDtypeStruct((), jnp.uint32),
                seeds,
                x,
                b,
            )
            key = hashlib.sha256(lowered.as_text().encode()).hexdigest()
            if key not in self._inits and key not in todo:
                todo[key] = lowered
            out[label] = (key, batch)
        ready = {
            key: self._get(self._inits, key, lambda: None)
            for key, _ in out.values()
            if key not in todo
        }
        if todo:
            t = time.perf_counter()
            try:  # compile it fast rather than make it fast (4x quicker to build)
                compiled = _compile_all(
                    list(todo.values()), compiler_options=_INIT_COMPILER_OPTIONS
                )
            except Exception:  # noqa: BLE001 - a backend without that option
                compiled = _compile_all(list(todo.values()))
            self.init_compile_seconds += time.perf_counter() - t
            self.init_compiles += len(compiled)
            for key, c in zip(todo, compiled, strict=True):
                ready[key] = self._get(self._inits, key, lambda c=c: c)
        return {label: InitProgram(key, ready[key], batch) for label, (key, batch) in out.items()}


_DEFAULT = ProgramCache()


def default_cache() -> ProgramCache:
    """The process-wide :class:`ProgramCache` that :func:`jinit.sweep.run` uses unless given ``programs=``."""
    return _DEFAULT


def _call_all(calls: Sequence[tuple[Callable, tuple]]) -> list[Any]:
    """``fn(*args)`` of every call, on the host, from a thread per core: on a CPU, calls from several threads
    compute at once (1.4x on 2 cores for 257 blocks of digits MLPs); each call's values are the same either way."""
    if len(calls) == 1:
        return [jax.device_get(calls[0][0](*calls[0][1]))]
    with concurrent.futures.ThreadPoolExecutor(min(len(calls), os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda call: jax.device_get(call[0](*call[1])), calls))


def initial_variables(plan, inits: dict[str, InitProgram], models: Sequence[Any]) -> Any:
    """The stacked initial variables (numpy, leading model axis, in the order of ``models``: grid rows of
    ``plan``), each kernel times its model's init scale."""
    root = keys.root_key(plan.config.seed)
    x = jnp.asarray(plan.inputs.x_train[:1])
    by_label: dict[str, list[int]] = {}
    for i, m in enumerate(models):
        by_label.setdefault(m.label, []).append(i)
    calls = []  # (positions in models, the call that initializes them)
    for label, idx in by_label.items():
        program = inits[label]
        seeds = [models[i].seed if plan.vary_init else 0 for i in idx]
        h = np.uint32(keys.stable_hash(label))
        for b in range(0, len(idx), INIT_BLOCK):
            part = seeds[b : b + INIT_BLOCK]
            padded = np.asarray(part + [part[-1]] * (INIT_BLOCK - len(part)), np.uint32)
            calls.append(
                (idx[b : b + INIT_BLOCK], (program.fn, (root, h, padded, x, program.batch)))
            )
    got = _call_all([call for _, call in calls])
    blocks = [(i, None) for i, _ in calls]
    order = np.argsort(np.concatenate([np.asarray(i) for i, _ in blocks]), kind="stable")
    stacked = jax.tree.map(
        lambda *xs: np.concatenate([a[: len(i)] for a, (i, _) in zip(xs, blocks, strict=True)])[
            order
        ],
        *got,
    )
    return hyper.scale_kernels(stacked, [m.hyper.init_scale for m in models])


def enable_persistent_cache(folder: str | os.PathLike | None = None) -> Path | None:
    """Turns on JAX's persistent compilation cache, so that a second process running the same sweep loads its
    compiled programs instead of compiling them again.

    The folder: ``folder``, else ``$JINIT_COMPILATION_CACHE`` (``0``, ``off`` or ``none`` turn the cache off), else
    ``<jinit's cache folder>/xla`` (:func:`jinit.data.cache_dir`). Nothing changes when the user configured JAX's
    cache already (``jax_compilation_cache_dir``), or when it is off.

    Returns:
      The folder in use, or None when the cache is off.
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    setting = os.environ.get("JINIT_COMPILATION_CACHE", "")
    if setting.strip().lower() in ("0", "off", "none", "false", "no"):
        return None
    if folder is None and setting:
        folder = setting
    if folder is None:
        from jinit import data

        folder = data.cache_dir() / "xla"
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _log.debug("no persistent compilation cache (%s)", e)
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # jinit's programs compile in 0.3-3 s: cache them all (JAX's default caches only those over 1 s)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    # a cache entry that cannot be written (a full disk) or read only costs a compilation: no warning for it
    warnings.filterwarnings(
        "ignore", message="Error (writing|reading) persistent compilation cache entry"
    )
    return folder


def initial_params(
    config: Any,
    grid: Sequence[tuple] | None = None,
    *,
    model: Callable | None = None,
    make_model: Callable | None = None,
    data: Any = None,
    task: Any = None,
    programs: ProgramCache | None = None,
):
    """The stacked initial variables of models of a sweep, as :func:`jinit.sweep.run` starts them.

    Args:
      config: the sweep config (its data decides the input shape and number of classes).
      grid: the models: pairs ``(scheme spec or label, seed number)`` or triples ``(scheme, seed number,
        init_scale)`` (a pair takes the config's ``init_scale``, which must then be one value); default: the
        config's full grid.
      model: your own model's factory, as for :func:`jinit.sweep.run` (``make_model`` is its older name).
      data, task: your own data and task, as for :func:`jinit.sweep.run`.
      programs: the :class:`ProgramCache` to use (default: :func:`default_cache`).

    Returns:
      A pytree of numpy arrays with a leading model axis, in ``grid`` order, every kernel multiplied by its
      model's init scale.
    """
    if model is not None and make_model is not None:
        raise TypeError("pass the model factory once: model= (make_model= is its older name)")
    model = model if model is not None else make_model
    if grid is None:
        plan = make_plan(config, model=model, data=data, task=task)
        models = list(plan.grid)
    else:
        grid = [tuple(item) for item in grid]
        labels = {spec: resolve_schemes([spec], model=None)[0][0] for spec, *_ in grid}
        first = {}  # each scheme once (by label), in grid order
        for spec, label in labels.items():
            first.setdefault(label, spec)
        plan = make_plan(
            dataclasses.replace(config, schemes=tuple(first.values())),
            model=model,
            data=data,
            task=task,
        )
        by_label, scales = dict(plan.schemes), hyper.values(plan.config, "init_scale")
        models = []
        for spec, s, *rest in grid:
            if not rest and len(scales) > 1:
                raise ValueError(
                    f"init_scale={plan.config.init_scale!r} has several values: give the models as (scheme, "
                    "seed, init_scale) triples"
                )
            h = plan.grid[0].hyper._replace(init_scale=float(rest[0]) if rest else float(scales[0]))
            models.append(GridModel(labels[spec], by_label[labels[spec]], int(s), h))
    inits = (programs if programs is not None else default_cache()).inits(plan)
    return initial_variables(plan, inits, models)

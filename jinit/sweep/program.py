"""The compiled programs of a sweep and their bounded caches: the vmapped epoch (:class:`_Program`) and the blocked
init programs (:func:`_init_fn`), and the initial parameters of the models (:func:`initial_params`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jinit import train as train_lib
from jinit.keys import stable_hash, varies
from jinit.sweep.config import SweepConfig, _is_lsuv, _scheme, resolve_schemes
from jinit.sweep.setup import _Setup, _setup, linen_module, model_fns, variables_init

_log = logging.getLogger("jinit.sweep")


class _Program:
    """The compiled pieces for one (model, optimizer, shapes) combination."""

    def __init__(
        self,
        model,
        tx,
        *,
        batch_size,
        steps_per_epoch,
        eval_every,
        eval_batch_size,
        shared,
        inner_axis=False,
        task=None,
    ):
        self.trainer = train_lib.make_train(
            model,
            tx,
            task=task,
            batch_size=batch_size,
            steps_per_epoch=steps_per_epoch,
            eval_every=eval_every,
            eval_batch_size=eval_batch_size,
        )
        epoch = self.trainer.vmapped_epoch(shared_keys=shared, inner_axis=inner_axis)
        self.epoch = jax.jit(epoch, donate_argnums=0)
        # stacked variables ({"params": ..., "batch_stats": ...}) -> TrainStates (the parameters the optimizer
        # updates, and the model's state, which only the forward pass changes)
        self.init_state = jax.jit(jax.vmap(lambda v: self.trainer.init(*split_variables(v))))
        self._compiled: dict[Any, Any] = {}
        self.compile_seconds = 0.0
        self.last_memory: dict[str, int] = {}

    @staticmethod
    def _signature(args):
        leaves, tree = jax.tree_util.tree_flatten(args)
        return (tree, tuple((x.shape, x.dtype, getattr(x, "sharding", None)) for x in leaves))

    def compile_for(self, arg_sets) -> None:
        """Compiles the epoch for every argument set not compiled yet (one per device: each device runs its own
        single-device executable), the compilations at once in threads (XLA compiles without the GIL)."""
        todo = {}
        for args in arg_sets:
            sig = self._signature(args)
            if sig not in self._compiled and sig not in todo:
                todo[sig] = args
        if not todo:
            return
        t = time.perf_counter()
        lowered = [self.epoch.lower(*args) for args in todo.values()]
        if len(lowered) == 1:
            compiled = [lowered[0].compile()]
        else:
            with concurrent.futures.ThreadPoolExecutor(len(lowered)) as pool:
                compiled = list(pool.map(lambda low: low.compile(), lowered))
        self.compile_seconds += time.perf_counter() - t
        for sig, c in zip(todo, compiled, strict=True):
            self._compiled[sig] = (c, _memory_stats(c))

    def run_epoch(self, *args):
        sig = self._signature(args)
        if sig not in self._compiled:
            self.compile_for([args])
        compiled, self.last_memory = self._compiled[sig]
        return compiled(*args)


def split_variables(variables) -> tuple[dict, dict]:
    """A Flax variables dict as ``({"params": ...}, model state)``: what the optimizer trains, and the other
    collections (BatchNorm's ``batch_stats``), which the forward pass in training updates."""
    return {"params": variables["params"]}, {k: v for k, v in variables.items() if k != "params"}


def state_variables(state) -> dict:
    """The variables dict of a :class:`jinit.train.TrainState` (its params and model state, joined)."""
    return {**(state.model_state or {}), **state.params}


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


# Compiled programs, reused by later sweeps of the same shape in this process; least recently used first out.
MAX_CACHED_PROGRAMS = 16


_PROGRAMS: collections.OrderedDict[Any, _Program] = collections.OrderedDict()


# The init programs are compiled without LLVM optimizations: XLA's default build of an unrolled threefry takes
# ~2 s per scheme on a laptop CPU, ~0.5 s this way. Their values can differ from a default-compiled
# ``module.init`` in the last bit (different floating-point contraction); they never differ between sweeps.
_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


_INITS: collections.OrderedDict[Any, Callable] = collections.OrderedDict()


def _cached(cache: collections.OrderedDict, key: Any, make: Callable[[], Any]) -> Any:
    """``cache[key]``, made by ``make()`` when missing; the cache keeps the ``MAX_CACHED_PROGRAMS`` most recently
    used entries."""
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = make()
    while len(cache) > MAX_CACHED_PROGRAMS:
        cache.popitem(last=False)
    return value


def _inner_model_axis(platform: str) -> bool:
    """Whether the training loop keeps the model axis of kernels just before their last dimension
    (:func:`jinit.train.make_train`'s ``vmapped_epoch``): on accelerators, where it saves a transpose of every
    stacked kernel that sees a shared input, and its gradient, at every step (1.36x-1.45x on an H100, MNIST MLP);
    not on a CPU, where the leading model axis was measured faster."""
    return platform != "cpu"


def _program(key, model, tx, **kw) -> _Program:
    return _cached(_PROGRAMS, (key, tuple(sorted(kw.items()))), lambda: _Program(model, tx, **kw))


def lsuv_batch(seed: int, x_train: np.ndarray, size: int) -> np.ndarray:
    """The fixed batch of training inputs on which the scheme ``"lsuv"`` rescales a sweep's models:
    ``min(size, n_train)`` examples drawn without replacement by ``permutation(fold_in(PRNGKey(seed), 3))``, the
    same for every model of the sweep."""
    n = x_train.shape[0]
    perm = jax.random.permutation(jax.random.fold_in(jax.random.PRNGKey(seed), 3), n)
    return np.asarray(x_train)[np.sort(np.asarray(perm[: min(size, n)]))]


# Models are initialized INIT_BLOCK at a time per scheme: one compiled call maps the single-model init over their
# seed numbers with ``lax.map`` (a loop: every model is computed by the same unbatched code, never a vmapped batch
# whose arithmetic, or QR, would depend on the batch), the last block padded with copies. A fixed block keeps the
# program, and so the values, the same in every grid; one call per block instead of per model cuts the time
# outside the training loop (1024 digits MLPs: 3.5 s of per-model calls on a loaded 2-core CPU).
INIT_BLOCK = 8


def _init_fn(model_key, make_model, scheme, bias_init) -> Callable:
    """A compiled ``(root, hash, seeds, x, batch) -> variables`` initializing ``INIT_BLOCK`` models of one scheme
    (``seeds``: their seed numbers; a leading model axis on every leaf), cached per scheme; ``batch`` is the LSUV
    batch for the scheme ``"lsuv"``, else None."""

    def make():
        lsuv = _is_lsuv(scheme)
        # the model's own init (a linen module's init(key, x) exactly; NNX through jinit.adapters) as variables
        init = variables_init(model_fns(make_model, scheme, bias_init))
        module = linen_module(make_model, scheme, bias_init) if lsuv else None
        from jinit.rules import Rules, sweep_init

        def init_one(root, h, s, x, batch):
            k = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, 0), h), s)
            if isinstance(scheme, Rules):  # per-parameter keys: see jinit.rules
                return sweep_init(scheme, init, root, s, k, x)
            return scheme.init(module, k, x, batch) if lsuv else init(k, x)

        def init_block(root, h, seeds, x, batch):
            return jax.lax.map(lambda s: init_one(root, h, s, x, batch), seeds)

        jitted = jax.jit(init_block)
        compiled: dict[Any, Any] = {}

        def prepare(x, batch=None):
            """Compiles the program for inputs like ``x`` (and the LSUV ``batch``), once."""
            sig = (x.shape, None if batch is None else batch.shape)
            c = compiled.get(sig)
            if c is None:
                seeds = np.zeros((INIT_BLOCK,), np.uint32)
                lowered = jitted.lower(jax.random.PRNGKey(0), np.uint32(0), seeds, x, batch)
                try:  # compile it fast rather than make it fast (4x quicker to build)
                    c = lowered.compile(compiler_options=_INIT_COMPILER_OPTIONS)
                except Exception:  # a backend without that option
                    c = lowered.compile()
                compiled[sig] = c
            return c

        def fn(root, h, seeds, x, batch=None):
            return prepare(x, batch)(root, h, seeds, x, batch)

        fn.prepare = prepare
        return fn

    return _cached(_INITS, (model_key, scheme, bias_init), make)


def initial_params(
    config: SweepConfig,
    grid: Sequence[tuple[str, int]] | None = None,
    *,
    make_model: Callable | None = None,
    model: Callable | None = None,
    _setup_cache: _Setup | None = None,
    data: Any = None,
    task: Any = None,
):
    """The stacked initial variables of ``grid``: pairs ``(scheme spec or label, seed number)``, or triples
    ``(scheme, seed number, init_scale)``; a pair takes the config's ``init_scale`` (which must then be one value).

    Args:
      config: the sweep config (its data decides the input shape and number of classes).
      grid: the models; default: the config's full grid (scheme-major, with its axes: :mod:`jinit.sweep.axes`).
      make_model: your own model's factory, as ``model`` for :func:`run`.
      model: the same (``make_model`` is its older name).
      data: your own :class:`jinit.data.Dataset`, as for :func:`run`.
      task: the task, as for :func:`run` (it sets the output width of the built-in models).

    Returns:
      A pytree of numpy arrays with a leading model axis, in ``grid`` order, every kernel multiplied by its
      model's init scale.
    """
    from jinit.sweep import axes

    if model is not None:
        if make_model is not None:
            raise TypeError("pass the model factory once: model= (make_model= is its older name)")
        make_model = model
    setup = _setup_cache or _setup(config, make_model, data, task)
    by_label = dict(setup.schemes)
    if grid is None:
        full, hypers = axes.model_grid(setup.schemes, config)
        grid = [(label, s, h.init_scale) for (label, _, s), h in zip(full, hypers, strict=True)]
    entries, scales = [], []
    for item in grid:
        spec, s, *rest = item
        if rest:
            scales.append(float(rest[0]))
        elif len(axes.values(config, "init_scale")) == 1:
            scales.append(float(axes.values(config, "init_scale")[0]))
        else:
            raise ValueError(
                f"init_scale={config.init_scale!r} has several values: give the models as (scheme, seed, "
                "init_scale) triples"
            )
        label = spec if spec in by_label else resolve_schemes([spec], model=None)[0][0]
        entries.append((label, by_label.get(label) or _scheme(spec), s))
    return axes.scale_kernels(_init_models(config, setup, entries), scales)


def _prepare_inits(config: SweepConfig, setup: _Setup) -> None:
    """Compiles the init program of every scheme of the sweep at once, in threads (XLA compiles without the
    GIL): nine schemes' programs took 4 s one after another on a 2-core CPU."""
    x = jnp.asarray(setup.x_train[:1])
    jobs = []
    for _, init in setup.schemes:
        fn = _init_fn(setup.model_key, setup.make_model, init, setup.bias_init)
        batch = lsuv_batch(config.seed, setup.x_train, init.batch_size) if _is_lsuv(init) else None
        jobs.append((fn.prepare, batch))
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers <= 1:
        for prepare, batch in jobs:
            prepare(x, batch)
        return
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(prepare, x, batch) for prepare, batch in jobs]:
            f.result()


def _init_models(config: SweepConfig, setup: _Setup, entries) -> Any:
    """The stacked initial variables of ``entries`` (``(label, scheme, seed number)``), in their order."""
    vary_init, _ = varies(config.vary)
    root = jax.random.PRNGKey(config.seed)
    x = jnp.asarray(setup.x_train[:1])
    # Not one vmapped call per scheme: jit(vmap(init)) of the orthogonal schemes (batched QR) hangs XLA:CPU at
    # random in jax 0.10 (seen on the MNIST MLP, 8 seeds, 1 or 2 CPU devices;
    # tests/test_sweep.py::test_orthogonal_init_of_an_mnist_chunk_completes); lax.map has no batched QR.
    by_label: dict[str, list[int]] = {}
    for i, (label, _, _) in enumerate(entries):
        by_label.setdefault(label, []).append(i)
    blocks = []  # (entry indices, variables of a block)
    for label, idx in by_label.items():
        init = entries[idx[0]][1]
        fn = _init_fn(setup.model_key, setup.make_model, init, setup.bias_init)
        batch = lsuv_batch(config.seed, setup.x_train, init.batch_size) if _is_lsuv(init) else None
        seeds = [entries[i][2] if vary_init else 0 for i in idx]
        for b in range(0, len(idx), INIT_BLOCK):
            part = seeds[b : b + INIT_BLOCK]
            padded = np.asarray(part + [part[-1]] * (INIT_BLOCK - len(part)), np.uint32)
            blocks.append(
                (idx[b : b + INIT_BLOCK], fn(root, np.uint32(stable_hash(label)), padded, x, batch))
            )
    got = jax.device_get([v for _, v in blocks])  # one transfer
    order = np.argsort(np.concatenate([np.asarray(i) for i, _ in blocks]), kind="stable")
    return jax.tree.map(
        lambda *xs: np.concatenate([a[: len(i)] for a, (i, _) in zip(xs, blocks, strict=True)])[
            order
        ],
        *got,
    )

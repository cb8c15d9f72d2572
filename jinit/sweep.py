"""The sweep engine: many seeds x many initialization schemes trained at once by one compiled, vmapped program.

A sweep is the grid ``schemes x seeds``. Every (scheme, seed) model gets its own keys, derived with ``fold_in``
only (see :func:`model_keys`), so a model is the same model whatever else is in the grid. The initial parameters of
the models are stacked on a leading *model axis*, and one ``jax.jit``-compiled function trains them all: an epoch
is one ``lax.scan`` over steps of the single-model step of :mod:`jinit.train`, ``jax.vmap``-ped over that axis, each
batch gathered from the training set, which was put on the device once (``make_train(...).vmapped_epoch``). On
GPUs/TPUs the kernels keep their model axis just before their last dimension while the loop runs, so a layer whose
input every model shares is one plain matmul (see :func:`_inner_model_axis`). With ``vary="init"`` (the default)
every model sees the same batches, so the permutation and the batch gather are computed once per step and shared
by all models (``in_axes=None``); with ``vary="data"``/``"both"`` each model gathers its own batch.

Chunks: the model axis is processed in chunks of a fixed size (the last one padded with copies that are dropped), so
every chunk reuses one compiled program. The size comes from an estimate of the memory one model needs (parameters,
optimizer state, gradients, activations of a training batch and of a test batch) and a budget: ``max_memory`` bytes,
else 40% of the device's ``memory_stats()["bytes_limit"]``, else 2 GiB per CPU device; ``max_models_per_chunk`` caps
it. The models are then spread evenly over the fewest chunks of at most that size. Each completed chunk is written to ``chunks/NNNNN.npz`` of the run folder.

Resume: with ``out``, :func:`run` takes the folder's lock, then writes each chunk as it finishes and, within a
chunk, an orbax-checkpoint of the chunk's stacked ``TrainState`` and its epoch logs at an epoch boundary (at most
every ``checkpoint_every`` seconds, default 60). Run again with the same config and ``out`` after a kill, it
skips the chunks on disk (their fingerprint -- a hash of config, grid, parameter shapes and data -- and model
indices must match), restarts a chunk from its checkpoint, keeps the chunk size of the first start, and ends
with results bit for bit those of an uninterrupted run. A folder holding this sweep, complete, is read back
without training; one holding another sweep is refused unless ``overwrite``. SIGINT (Ctrl-C) and SIGTERM stop
the sweep at once (also while the device computes; file writes finish first) with :class:`SweepInterrupted`,
which says what was saved. :func:`check_determinism` trains a few models of a grid twice and alone.

Devices: the model axis of a chunk is sharded over all local devices (or as many as there are models) with
``NamedSharding(Mesh(devices, ("models",)), P("models"))`` (the chunk size is a multiple of the device count); the
data is replicated. Models are independent, so results mean the same with 1 or N devices.

Multi-host: start every process with ``jax.distributed.initialize()`` (see the JAX multi-process docs; on TPU pods
and SLURM it needs no arguments), then call :func:`run` with the same config and the same ``out`` folder on a
filesystem all hosts share. Each process trains the chunks ``i`` with ``i % jax.process_count() ==
jax.process_index()`` on its local devices and writes them to ``out/chunks``; after a barrier
(``multihost_utils.sync_global_devices``) every process assembles the full result from the chunk files and process 0
writes the tables. (Multi-host runs were not tested on real hardware; the single-process path is the tested one.)

Keys (as in DESIGN.md), with ``root = PRNGKey(config.seed)`` and ``s`` the seed number:

* init: ``fold_in(fold_in(fold_in(root, 0), stable_hash(scheme)), s)`` (``s -> 0`` unless ``vary`` includes init);
* data order: ``fold_in(fold_in(root, 1), s)`` (``s -> 0`` unless ``vary`` includes data), per epoch
  ``fold_in(data_key, epoch)``;
* dropout: ``fold_in(fold_in(root, 2), s)`` (varies with the seed like the data order), per step
  ``fold_in(fold_in(dropout_key, epoch), step)``.

Divergence: a model whose training loss becomes non-finite is marked diverged at the first such step; vmap keeps
models independent, so it cannot disturb any other model.

Example:
    >>> from jinit import sweep
    >>> cfg = sweep.SweepConfig(schemes=("zeros", "he_normal"), seeds=2, epochs=1, hidden=(16,),
    ...                         train_size=256, test_size=128)
    >>> result = sweep.run(cfg, progress=False)
    >>> result.predictions.shape
    (4, 128)
    >>> list(result.summary()["scheme"])  # doctest: +SKIP
    ['he_normal', 'zeros']
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jinit import models as models_lib
from jinit import results as results_lib
from jinit import train as train_lib
from jinit.results import SweepResult

_log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SCHEMES",
    "DeterminismReport",
    "SweepConfig",
    "SweepInterrupted",
    "SweepResult",
    "applicable_schemes",
    "check_determinism",
    "initial_params",
    "load",
    "lsuv_batch",
    "model_keys",
    "parse_schemes",
    "resolve_schemes",
    "run",
    "stable_hash",
    "use_cpu_devices",
]

#: The schemes of the default sweep: the classic comparison of the Keras initializer tutorials.
DEFAULT_SCHEMES = (
    "zeros",
    "normal",
    "uniform",
    "glorot_uniform",
    "glorot_normal",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "orthogonal",
)
VARY = ("init", "data", "both")
MODEL_NAMES = models_lib.MODELS


def _closest(name: Any, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(name), list(choices), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} Valid choices: {', '.join(choices)}."


def parse_schemes(text: str) -> tuple[str, ...]:
    """Splits a comma-separated scheme list, keeping commas inside parentheses.

    ``"zeros,normal(stddev=0.1, mean=0.0),he_normal"`` -> ``("zeros", "normal(stddev=0.1, mean=0.0)",
    "he_normal")``. ``"all"`` stays ``("all",)`` (expanded by :func:`resolve_schemes`).

    Raises:
      ValueError: for an empty list, an empty item (``"a,,b"``, a trailing comma) or unbalanced parentheses.
    """
    if not isinstance(text, str):
        raise TypeError(f"schemes must be a string or a sequence of strings, got {text!r}")
    items, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced parentheses in scheme list {text!r}")
        if ch == "," and depth == 0:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise ValueError(f"unbalanced parentheses in scheme list {text!r}")
    items.append("".join(cur).strip())
    if any(not item for item in items):
        raise ValueError(
            f"empty scheme name in scheme list {text!r} (check for ',,' or a trailing comma)"
        )
    return tuple(items)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Everything that defines a sweep (frozen; written to ``config.json``).

    Attributes:
      dataset: ``digits`` (embedded, offline), ``mnist``, ``fashion_mnist``, ``cifar10``, ``mnist1d``.
      data_dir: where the dataset's files are (see :func:`jinit.data.load`).
      model: ``"mlp"`` or ``"cnn"`` (ignored when :func:`run` gets ``make_model``).
      hidden: hidden widths of the MLP (the classic Keras tutorial: ``(128, 64)``).
      channels: convolution channels of the CNN.
      activation: ``relu, tanh, sigmoid, gelu, selu, leaky_relu, linear``.
      schemes: initializer specs for the kernels (names in any spelling, calls such as ``"normal(stddev=0.1)"``,
        or ``"all"`` for every catalogue scheme that applies to the model); a comma-separated string is split.
        ``"lsuv"`` (or ``"lsuv(tol=0.1, batch_size=512)"``) is the data-dependent LSUV scheme
        (:class:`jinit.propagation.LSUVScheme`: orthogonal, then rescaled on :func:`lsuv_batch`); it is not part
        of ``"all"``.
      bias_init: the initializer of every bias (same for all models).
      seeds: number of seeds per scheme (seed numbers ``0 .. seeds - 1``).
      seed: the root seed.
      epochs: training epochs.
      batch_size: training batch size (``n_train // batch_size`` steps per epoch; the remainder is dropped).
      optimizer: ``adam, sgd, momentum, adamw, rmsprop`` (optax).
      learning_rate: the optimizer's step size.
      vary: which randomness changes with the seed: ``"init"`` (default: all models see the same batches),
        ``"data"`` (data order and dropout; the init depends on the scheme only) or ``"both"``.
      eval_every: also evaluate every that many steps within each epoch (``None``: at epoch ends only).
      target_accuracy: accuracy for the steps-to-target columns of the summary.
      train_size: use only the first ``train_size`` training examples (smoke tests).
      test_size: use only the first ``test_size`` test examples.
      max_models_per_chunk: cap on the number of models trained at once.
      max_memory: memory budget in bytes per device for one chunk (default: from the device, see module doc).
      eval_batch_size: test-set batch size of the evaluation.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    model: str = "mlp"
    hidden: tuple[int, ...] = (128, 64)
    channels: tuple[int, ...] = (32, 64)
    activation: str = "relu"
    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    bias_init: str = "zeros"
    seeds: int = 5
    seed: int = 0
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    vary: str = "init"
    eval_every: int | None = None
    target_accuracy: float | None = None
    train_size: int | None = None
    test_size: int | None = None
    max_models_per_chunk: int | None = None
    max_memory: int | None = None
    eval_batch_size: int = 1000

    def __post_init__(self):
        if isinstance(self.schemes, str):
            object.__setattr__(self, "schemes", parse_schemes(self.schemes))
        elif isinstance(self.schemes, Sequence):
            object.__setattr__(self, "schemes", tuple(self.schemes))
        for name in ("hidden", "channels"):
            value = getattr(self, name)
            if isinstance(value, Sequence) and not isinstance(value, str):
                object.__setattr__(self, name, tuple(value))
        if self.data_dir is not None and isinstance(self.data_dir, os.PathLike):
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able values."""
        return results_lib._jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepConfig:
        """Inverse of :meth:`to_dict` (unknown keys raise ValueError)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(
                f"unknown SweepConfig field(s) {sorted(unknown)}; valid: {sorted(fields)}"
            )
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})

    def validate(self) -> None:
        """Checks every field; raises ValueError/TypeError naming the bad value (and the valid choices).

        Runs before any data is loaded or anything compiled. (That ``batch_size`` fits the training set is
        checked by :func:`run` right after loading the data, still before compiling.)
        """
        from jinit import data as data_lib

        datasets = tuple(data_lib.names())
        if self.dataset not in datasets:
            raise ValueError(f"unknown dataset {self.dataset!r}.{_closest(self.dataset, datasets)}")
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}.{_closest(self.model, MODEL_NAMES)}")
        models_lib.activation(self.activation)
        for name in ("hidden", "channels"):
            value = getattr(self, name)
            if (
                not isinstance(value, tuple)
                or not value
                or not all(_is_int(v) and v >= 1 for v in value)
            ):
                raise ValueError(
                    f"{name} must be a non-empty sequence of positive ints, got {value!r}"
                )
        _check_int("seeds", self.seeds, minimum=1)
        _check_int("seed", self.seed, minimum=0)
        _check_int("epochs", self.epochs, minimum=1)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("eval_batch_size", self.eval_batch_size, minimum=1)
        for name in ("eval_every", "train_size", "test_size", "max_models_per_chunk", "max_memory"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        train_lib.make_optimizer(self.optimizer, self.learning_rate)
        if self.vary not in VARY:
            raise ValueError(f"unknown vary {self.vary!r}.{_closest(self.vary, VARY)}")
        if self.target_accuracy is not None:
            t = self.target_accuracy
            if isinstance(t, bool) or not isinstance(t, int | float) or not 0.0 <= t <= 1.0:
                raise ValueError(f"target_accuracy must be a fraction in [0, 1], got {t!r}")
        resolve_schemes(self.schemes, model=self.model)
        _initializer(self.bias_init, "bias_init")


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def _initializer(spec: Any, what: str):
    import jinit

    try:
        return jinit.get(spec)
    except (ValueError, TypeError) as e:
        raise type(e)(f"bad {what} {spec!r}: {e}") from None


def applicable_schemes(model: str | None = "mlp", *, distinct: bool = True) -> tuple[str, ...]:
    """Every catalogue scheme that applies to every kernel of ``model`` (what ``--schemes all`` trains): the
    ``"any"`` schemes, plus the ``"2d"`` ones (identity, ...) for an MLP, whose kernels are all 2-D. A CNN has
    Dense kernels besides its convolutions, so the conv-only schemes (dirac, delta_orthogonal) do not apply to it,
    nor do the 2-D-only ones; ``None`` (a custom model) gets the ``"any"`` ones. Schemes that need a
    hyperparameter without default (``constant``) are left out. With ``distinct`` (the default) each distribution
    is trained once: a scheme that draws the same arrays as another (``keras_default`` = ``glorot_uniform``,
    ``flax_default`` = ``variance_scaling`` = ``lecun_normal``, torch's ``xavier_uniform`` / ``kaiming_uniform``
    = ``glorot_uniform`` / ``he_uniform``) is left out (:func:`jinit.registry.distinct_schemes`)."""
    from jinit import registry

    out = _applicable(model)
    return tuple(registry.distinct_schemes(out)[0]) if distinct else out


def schemes_left_out_of_all(model: str | None = "mlp") -> dict[str, str]:
    """The schemes ``--schemes all`` leaves out because they draw the same distribution as one it keeps:
    ``{left out: kept}``, e.g. ``{"keras_default": "glorot_uniform", ...}``."""
    from jinit import registry

    return registry.distinct_schemes(list(_applicable(model)))[1]


def _applicable(model: str | None) -> tuple[str, ...]:
    from jinit import registry

    kinds = {"any"} | ({"2d"} if model == "mlp" else set())
    out = []
    for row in registry.catalog():
        if row.applies_to not in kinds:
            continue
        try:
            registry.get(row.name)
        except (
            ValueError,
            TypeError,
        ):  # needs a hyperparameter without default (e.g. constant's value)
            continue
        out.append(row.name)
    return tuple(out)


def resolve_schemes(schemes: Sequence[Any], *, model: str | None = "mlp") -> list[tuple[str, Any]]:
    """Turns scheme specs into ``(label, Initializer)`` pairs.

    The label is the canonical name (``jinit.get(spec).name``) when the initializer equals that name's default
    (so ``"he_normal"``, ``"HeNormal"`` and ``jinit.he_normal()`` are all the scheme ``"he_normal"``; torch's
    ``"kaiming_normal_"`` is the scheme ``"kaiming_normal"``), else the initializer's ``repr``
    (``"normal(stddev=0.1, mean=0.0)"``). ``"all"`` expands to :func:`applicable_schemes` (each distribution
    once; the aliases it leaves out are logged).

    Raises:
      ValueError: for an empty list, an unknown scheme (with the closest names) or two specs naming the same scheme.
    """

    if isinstance(schemes, str):
        schemes = parse_schemes(schemes)
    schemes = list(schemes)
    if any(isinstance(s, str) and s.strip().lower() == "all" for s in schemes):
        if len(schemes) != 1:
            raise ValueError(f"'all' cannot be combined with other schemes: {schemes!r}")
        schemes = list(applicable_schemes(model))
        same = ", ".join(f"{a} = {b}" for a, b in schemes_left_out_of_all(model).items())
        _log.info(
            f"schemes 'all': {len(schemes)} distinct distributions; left out as the same distribution as a "
            f"kept scheme: {same}"
        )
    if not schemes:
        raise ValueError("schemes is empty; give at least one initializer name")
    out, seen = [], {}
    for spec in schemes:
        init = _scheme(spec)
        try:
            default = _scheme(init.name)
        except (ValueError, TypeError):
            default = None
        label = init.name if init == default else repr(init)
        if label in seen:
            raise ValueError(f"schemes {seen[label]!r} and {spec!r} are the same scheme {label!r}")
        seen[label] = spec
        out.append((label, init))
    return out


def _scheme(spec: Any):
    """An Initializer, or a :class:`jinit.propagation.LSUVScheme` for ``"lsuv"`` specs."""
    from jinit import propagation

    if propagation.is_lsuv_spec(spec):
        try:
            return propagation.lsuv_scheme(spec)
        except (ValueError, TypeError) as e:
            raise type(e)(f"bad scheme {spec!r}: {e}") from None
    try:
        return _initializer(spec, "scheme")
    except ValueError as e:
        if isinstance(spec, str) and difflib.get_close_matches(
            spec.split("(")[0], ["lsuv"], cutoff=0.6
        ):
            raise ValueError(f"{e} (or the data-dependent scheme 'lsuv')") from None
        raise


def _kernel_init(scheme: Any):
    """The kernel initializer a model of ``scheme`` is built with (LSUV starts from its ``kernel_init``)."""
    return getattr(scheme, "kernel_init", scheme)


def stable_hash(name: str) -> int:
    """A fixed 32-bit hash of a scheme label (first 4 bytes of its SHA-256, little endian)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "little")


class ModelKeys(NamedTuple):
    """The three independent keys of one model."""

    init: jax.Array
    data: jax.Array
    dropout: jax.Array


def _varies(vary: str) -> tuple[bool, bool]:
    return vary in ("init", "both"), vary in ("data", "both")


def model_keys(seed: int, scheme: str, s: int, vary: str = "init") -> ModelKeys:
    """The keys of model (``scheme``, seed number ``s``) of a sweep with root seed ``seed`` (see module doc).

    Args:
      seed: the root seed (``SweepConfig.seed``).
      scheme: the scheme's label (see :func:`resolve_schemes`).
      s: the seed number.
      vary: ``"init"``, ``"data"`` or ``"both"``.

    Returns:
      :class:`ModelKeys` of raw ``uint32[2]`` keys.
    """
    vary_init, vary_data = _varies(vary)
    root = jax.random.PRNGKey(seed)
    h = np.uint32(stable_hash(scheme))
    init = jax.random.fold_in(
        jax.random.fold_in(jax.random.fold_in(root, 0), h), s if vary_init else 0
    )
    sd = s if vary_data else 0
    data = jax.random.fold_in(jax.random.fold_in(root, 1), sd)
    dropout = jax.random.fold_in(jax.random.fold_in(root, 2), sd)
    return ModelKeys(init, data, dropout)


# ----------------------------------------------------------------------------------------------------------------
# Programs (cached so a second sweep of the same shape in the same process does not recompile).


class _Program:
    """The compiled pieces for one (model, optimizer, shapes) combination."""

    def __init__(
        self,
        apply_fn,
        tx,
        *,
        batch_size,
        steps_per_epoch,
        eval_every,
        eval_batch_size,
        shared,
        inner_axis=False,
    ):
        self.trainer = train_lib.make_train(
            apply_fn,
            tx,
            batch_size=batch_size,
            steps_per_epoch=steps_per_epoch,
            eval_every=eval_every,
            eval_batch_size=eval_batch_size,
        )
        epoch = self.trainer.vmapped_epoch(shared_keys=shared, inner_axis=inner_axis)
        self.epoch = jax.jit(epoch, donate_argnums=0)
        self.init_state = jax.jit(jax.vmap(self.trainer.init))
        self._compiled: dict[Any, Any] = {}
        self.compile_seconds = 0.0
        self.last_memory: dict[str, int] = {}

    def run_epoch(self, *args):
        leaves, tree = jax.tree_util.tree_flatten(args)
        sig = (tree, tuple((x.shape, x.dtype, getattr(x, "sharding", None)) for x in leaves))
        compiled = self._compiled.get(sig)
        if compiled is None:
            t = time.perf_counter()
            compiled = self.epoch.lower(*args).compile()
            self.compile_seconds += time.perf_counter() - t
            self._compiled[sig] = (compiled, _memory_stats(compiled))
            compiled = self._compiled[sig]
        self.last_memory = compiled[1]
        return compiled[0](*args)


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


_PROGRAMS: dict[Any, _Program] = {}
# The init programs are compiled without LLVM optimizations: XLA's default build of an unrolled threefry takes
# ~2 s per scheme on a laptop CPU, ~0.5 s this way. Their values can differ from a default-compiled
# ``module.init`` in the last bit (different floating-point contraction); they never differ between sweeps.
_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
_INITS: dict[Any, Callable] = {}


def _inner_model_axis(platform: str) -> bool:
    """Whether the training loop keeps the model axis of kernels just before their last dimension
    (:func:`jinit.train.make_train`'s ``vmapped_epoch``): on accelerators, where it saves a transpose of every
    stacked kernel that sees a shared input, and its gradient, at every step (1.36x-1.45x on an H100, MNIST MLP);
    not on a CPU, where the leading model axis was measured faster."""
    return platform != "cpu"


def _program(key, apply_fn, tx, **kw) -> _Program:
    key = (key, tuple(sorted(kw.items())))
    if key not in _PROGRAMS:
        _PROGRAMS[key] = _Program(apply_fn, tx, **kw)
    return _PROGRAMS[key]


def _is_lsuv(scheme: Any) -> bool:
    from jinit import propagation

    return isinstance(scheme, propagation.LSUVScheme)


def lsuv_batch(seed: int, x_train: np.ndarray, size: int) -> np.ndarray:
    """The fixed batch of training inputs on which the scheme ``"lsuv"`` rescales a sweep's models:
    ``min(size, n_train)`` examples drawn without replacement by ``permutation(fold_in(PRNGKey(seed), 3))``, the
    same for every model of the sweep."""
    n = x_train.shape[0]
    perm = jax.random.permutation(jax.random.fold_in(jax.random.PRNGKey(seed), 3), n)
    return np.asarray(x_train)[np.sort(np.asarray(perm[: min(size, n)]))]


def _init_fn(model_key, make_model, scheme, bias_init) -> Callable:
    """A compiled ``(root, hash, s, x, batch) -> variables`` initializing one model (cached per scheme);
    ``batch`` is the LSUV batch for the scheme ``"lsuv"``, else None."""
    key = (model_key, scheme, bias_init)
    fn = _INITS.get(key)
    if fn is None:
        module = make_model(_kernel_init(scheme), bias_init)
        lsuv = _is_lsuv(scheme)

        def init_one(root, h, s, x, batch):
            k = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, 0), h), s)
            return scheme.init(module, k, x, batch) if lsuv else module.init(k, x)

        jitted = jax.jit(init_one)
        compiled: dict[Any, Any] = {}

        def fn(root, h, s, x, batch=None):
            sig = (x.shape, None if batch is None else batch.shape)
            c = compiled.get(sig)
            if c is None:
                lowered = jitted.lower(root, h, s, x, batch)
                try:  # runs once per model: compile it fast rather than make it fast (4x quicker to build)
                    c = lowered.compile(compiler_options=_INIT_COMPILER_OPTIONS)
                except Exception:  # a backend without that option
                    c = lowered.compile()
                compiled[sig] = c
            return c(root, h, s, x, batch)

        _INITS[key] = fn
    return fn


class _Setup(NamedTuple):
    make_model: Callable
    model_key: Any
    schemes: list
    bias_init: Any
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    data_name: str
    data_source: str


def _model_factory(config: SweepConfig, num_classes: int, make_model: Callable | None):
    if make_model is not None:
        if not callable(make_model):
            raise TypeError(
                f"make_model must be callable (kernel_init, bias_init) -> nn.Module, got {make_model!r}"
            )
        return make_model, ("custom", make_model)
    if config.model == "mlp":
        kw = {"hidden": config.hidden, "activation": config.activation, "num_classes": num_classes}
    else:
        kw = {
            "channels": config.channels,
            "activation": config.activation,
            "num_classes": num_classes,
        }
    return models_lib.factory(config.model, **kw), (
        "builtin",
        config.model,
        tuple(sorted(kw.items())),
    )


def _setup(config: SweepConfig, make_model: Callable | None) -> _Setup:
    from jinit import data as data_lib

    config.validate()
    schemes = resolve_schemes(
        config.schemes, model=None if make_model is not None else config.model
    )
    bias_init = _initializer(config.bias_init, "bias_init")
    ds = data_lib.load(config.dataset, data_dir=config.data_dir)
    x_train, y_train = ds.x_train[: config.train_size], ds.y_train[: config.train_size]
    x_test, y_test = ds.x_test[: config.test_size], ds.y_test[: config.test_size]
    if config.batch_size > x_train.shape[0]:
        raise ValueError(
            f"batch_size={config.batch_size} is larger than the training set ({x_train.shape[0]} examples)"
        )
    mm, model_key = _model_factory(config, ds.num_classes, make_model)
    _check_schemes_fit(mm, schemes, bias_init, x_train[:1])
    return _Setup(
        mm,
        model_key,
        schemes,
        bias_init,
        np.asarray(x_train, np.float32),
        np.asarray(y_train, np.int32),
        np.asarray(x_test, np.float32),
        np.asarray(y_test, np.int32),
        int(ds.num_classes),
        ds.name,
        str(getattr(ds, "source", "")),
    )


def _check_schemes_fit(make_model: Callable, schemes, bias_init, x1: np.ndarray) -> None:
    """Initializes every scheme's model abstractly (``jax.eval_shape``: nothing is computed or compiled), so a
    scheme that cannot serve one of the model's kernels (``dirac`` on a Dense kernel, ``identity`` on a conv)
    fails here with its name, before anything is compiled."""
    x1 = jax.ShapeDtypeStruct(x1.shape, jnp.float32)
    key = jax.random.PRNGKey(0)
    for label, scheme in schemes:
        module = make_model(_kernel_init(scheme), bias_init)
        try:
            jax.eval_shape(module.init, key, x1)
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"scheme {label!r} cannot initialize this model: {e}".rstrip()
                + " (`jinit schemes` says which kernels each scheme applies to)"
            ) from None


def initial_params(
    config: SweepConfig,
    grid: Sequence[tuple[str, int]] | None = None,
    *,
    make_model: Callable | None = None,
    _setup_cache: _Setup | None = None,
):
    """The stacked initial variables of ``grid`` (pairs ``(scheme spec or label, seed number)``).

    Args:
      config: the sweep config (its data decides the input shape and number of classes).
      grid: the models; default: the config's full grid (scheme-major).
      make_model: a custom model factory, as for :func:`run`.

    Returns:
      A pytree of numpy arrays with a leading model axis, in ``grid`` order.
    """
    setup = _setup_cache or _setup(config, make_model)
    by_label = dict(setup.schemes)
    if grid is None:
        grid = [(label, s) for label, _ in setup.schemes for s in range(config.seeds)]
    entries = []
    for spec, s in grid:
        label = spec if spec in by_label else resolve_schemes([spec], model=None)[0][0]
        entries.append((label, by_label.get(label) or _scheme(spec), s))
    return _init_models(config, setup, entries)


def _init_models(config: SweepConfig, setup: _Setup, entries) -> Any:
    vary_init, _ = _varies(config.vary)
    root = jax.random.PRNGKey(config.seed)
    x = jnp.asarray(setup.x_train[:1])
    out = []
    # One compiled call per model, not one vmapped call per scheme: jit(vmap(init)) of the orthogonal schemes
    # (batched QR) hangs XLA:CPU at random in jax 0.10 (seen on the MNIST MLP, 8 seeds, 1 or 2 CPU devices;
    # tests/test_sweep.py::test_orthogonal_init_of_an_mnist_chunk_completes). Initialization is not the hot path.
    for label, init, s in entries:
        fn = _init_fn(setup.model_key, setup.make_model, init, setup.bias_init)
        batch = lsuv_batch(config.seed, setup.x_train, init.batch_size) if _is_lsuv(init) else None
        out.append(
            fn(root, np.uint32(stable_hash(label)), np.uint32(s if vary_init else 0), x, batch)
        )
    out = jax.device_get(out)
    return jax.tree.map(lambda *xs: np.stack(xs), *out)


# ----------------------------------------------------------------------------------------------------------------
# Memory estimate and chunk size.


def _tree_bytes(tree) -> int:
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def _abstract_model(setup: _Setup):
    """The model of the sweep's first scheme, a one-example input and the shapes of its variables
    (``jax.eval_shape``: nothing is computed)."""
    module = setup.make_model(_kernel_init(setup.schemes[0][1]), setup.bias_init)
    x1 = jax.ShapeDtypeStruct((1,) + setup.x_train.shape[1:], jnp.float32)
    return module, x1, jax.eval_shape(module.init, jax.random.PRNGKey(0), x1)


def _param_and_opt_bytes(variables, tx) -> tuple[int, int]:
    return _tree_bytes(variables), _tree_bytes(jax.eval_shape(tx.init, variables))


def state_bytes_per_model(setup: _Setup, tx) -> int:
    """Bytes one model's training step streams through memory: its parameters, gradients and optimizer state."""
    p, opt = _param_and_opt_bytes(_abstract_model(setup)[2], tx)
    return 2 * p + opt


def cpu_cache_bytes() -> int | None:
    """The size of the host's last-level (L3) cache in bytes, from sysfs (Linux); None where it is unknown."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    best = None
    try:
        for index in base.glob("index*"):
            level = int((index / "level").read_text().strip())
            text = (index / "size").read_text().strip().upper()
            size = int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
            if best is None or level > best[0]:
                best = (level, size)
    except (OSError, ValueError):
        return None
    return best[1] if best else None


def bytes_per_model(config: SweepConfig, setup: _Setup, tx) -> int:
    """Estimated device memory one model of the chunk needs (params, optimizer state, gradients, updates, the
    activations of a training batch kept for the backward pass, and of a test batch)."""
    module, x1, variables = _abstract_model(setup)
    p, opt = _param_and_opt_bytes(variables, tx)

    def acts(v, x):
        return module.apply(v, x, capture_intermediates=True, mutable=["intermediates"])

    _, inter = jax.eval_shape(acts, variables, x1)
    per_example = _tree_bytes(inter)
    eval_bs = min(config.eval_batch_size, setup.x_test.shape[0])
    activations = per_example * (3 * config.batch_size + eval_bs)
    return int(3 * p + opt + activations + 4096)


def memory_budget(config: SweepConfig, device) -> int:
    """Bytes per device a chunk may use (``max_memory``, else 40% of the device limit, else 2 GiB)."""
    if config.max_memory:
        return int(config.max_memory)
    try:
        stats = device.memory_stats() or {}
    except Exception:  # some backends do not implement memory_stats
        stats = {}
    if stats.get("bytes_limit"):
        return int(0.4 * stats["bytes_limit"])
    return 2 << 30


def chunk_size(
    config: SweepConfig,
    n_models: int,
    per_model: int,
    data_bytes: int,
    n_devices: int,
    *,
    cache_bytes: int | None = None,
    state_bytes: int | None = None,
) -> int:
    """Models per chunk: a multiple of ``n_devices`` that fits the budget, capped by the grid size and
    ``max_models_per_chunk`` (at least ``n_devices``), and as even as it can be: the fewest chunks that size
    allows, with the models spread equally over them (the last chunk is padded up to the chunk size).

    On a CPU (``cache_bytes`` given: the last-level cache), when ``max_models_per_chunk`` is not set, a chunk is
    also kept small enough that the parameters, gradients and optimizer state of its models (``state_bytes``
    each) fit in half of that cache: every step streams through all of them, and a chunk that spills out of the
    cache trains slower per model (MNIST MLP on a 2-core CPU with 32 MiB L3: 64 models per chunk 3.4, 8 per chunk
    4.8 model-epochs per second; see experiments/results/benchmark/NOTES.md).
    """
    budget = memory_budget(config, jax.local_devices()[0]) - data_bytes
    per_device = max(1, budget // max(per_model, 1))
    size = per_device * n_devices
    size = min(size, math.ceil(n_models / n_devices) * n_devices)
    if config.max_models_per_chunk:
        size = min(size, config.max_models_per_chunk)
    elif cache_bytes and state_bytes:
        size = min(size, max(n_devices, (cache_bytes // 2) // max(state_bytes, 1)))
    size = max(n_devices, (size // n_devices) * n_devices)
    # As many chunks as that size needs, made equal: the last chunk is padded to the chunk size, so 8192 models
    # in chunks of at most 4400 train as 2 x 4096, not 2 x 4400 (7% of the work on padding; measured on an H100).
    n_chunks = math.ceil(n_models / size)
    return math.ceil(n_models / (n_chunks * n_devices)) * n_devices


# ----------------------------------------------------------------------------------------------------------------
# Running.


def use_cpu_devices(n: int | None = None) -> int | None:
    """Splits the host CPU into ``n`` JAX devices, so that a sweep on CPU trains on every core at once.

    The sweep shards each chunk's model axis over the local devices; with one CPU device the cores share each
    operation, and part of every step (the small per-model matmuls, the optimizer update) leaves cores idle. With
    one device per core, each core trains its own share of the models. Measured on a 2-core CPU (MNIST MLP,
    Adam, 64 models): 3.4 -> 4.8 model-epochs per second at batch 128, 1.7 -> 3.0 at batch 32.

    It must run before JAX starts its backends (before the first computation): the ``jinit`` command line calls
    it first thing; from Python, call it right after ``import jinit``. It does nothing and returns None when it is
    too late, or when the count was already chosen with ``JAX_NUM_CPU_DEVICES`` or ``XLA_FLAGS=
    --xla_force_host_platform_device_count=N``. It does not change which devices JAX uses by default: on a
    GPU/TPU machine the sweep still runs on the accelerators.

    Args:
      n: the number of CPU devices (default: the cores this process may run on, at most 8).

    Returns:
      The device count requested, or None when nothing was changed.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("JAX_NUM_CPU_DEVICES") or "xla_force_host_platform_device_count" in flags:
        return None
    if n is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        n = min(cores, 8)
    _check_int("n", n, minimum=1)
    try:
        jax.config.update("jax_num_cpu_devices", int(n))
    except RuntimeError:  # the backends are up already
        return None
    return int(n)


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


def run(
    config: SweepConfig | None = None,
    *,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    make_model: Callable | None = None,
    keep_params: bool = False,
    overwrite: bool = False,
    checkpoint_every: float | None = 60.0,
    save_params: bool = False,
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
      make_model: a custom model factory ``(kernel_init, bias_init) -> flax.linen.Module`` used instead of
        ``config.model``; its output must be the logits. (Resuming checks its parameter shapes, not its code:
        pass the same model.)
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
        ``None``: never, only whole chunks are saved). Checkpoints are written only with ``out`` and one process.

    Returns:
      A :class:`SweepResult`.

    Raises:
      ValueError, TypeError: for a bad config, before any data is loaded or anything compiled.
      OSError: when ``out`` cannot be written (checked before the data is loaded).
      jinit.results.RunFolderInUse: another sweep is running in ``out``.
      jinit.results.RunFolderMismatch: ``out`` holds a different sweep and ``overwrite`` is False.
      SweepInterrupted: on SIGINT (Ctrl-C) or SIGTERM; it says what was saved. (The epoch that was running
        carries on in the background until it ends; its result is discarded.)
    """
    config = SweepConfig() if config is None else config
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
    out_path = Path(out) if out is not None else None
    if save_params and out_path is None:
        raise ValueError(
            "save_params=True writes into the run folder: pass out= (jinit sweep --out)"
        )
    if out_path is not None:
        results_lib.check_writable(out_path)
    setup = _setup(config, make_model)
    vary_init, vary_data = _varies(config.vary)
    tx = train_lib.make_optimizer(config.optimizer, config.learning_rate)
    n_train, n_test = setup.x_train.shape[0], setup.x_test.shape[0]
    steps_per_epoch = n_train // config.batch_size
    eval_bs = min(config.eval_batch_size, n_test)

    grid = [(label, init, s) for label, init in setup.schemes for s in range(config.seeds)]
    n_models = len(grid)
    devices = jax.local_devices()
    if jax.process_count() == 1:  # fewer models than devices: do not pad chunks with copies
        devices = devices[: max(1, min(len(devices), n_models))]
    n_dev = len(devices)
    mesh = Mesh(np.asarray(devices), ("models",))
    model_sharding = NamedSharding(mesh, P("models"))
    replicated = NamedSharding(mesh, P())

    data_bytes = (
        setup.x_train.nbytes + setup.y_train.nbytes + setup.x_test.nbytes + setup.y_test.nbytes
    )
    per_model = bytes_per_model(config, setup, tx)
    on_cpu = devices[0].platform == "cpu"
    csize = chunk_size(
        config,
        n_models,
        per_model,
        data_bytes,
        n_dev,
        cache_bytes=cpu_cache_bytes() if on_cpu else None,
        state_bytes=state_bytes_per_model(setup, tx) if on_cpu else None,
    )
    fingerprint = _fingerprint(config, setup, grid) if out_path is not None else None
    pid, pcount = jax.process_index(), jax.process_count()
    status = _Status(out_path)

    with _SignalGuard() as guard:
        lock = None
        try:
            if out_path is not None and pid == 0:
                lock = results_lib.acquire_lock(out_path)
                folder = results_lib.open_run_folder(
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
                    _log.info(
                        "%s already holds this sweep, complete: nothing was recomputed "
                        "(--overwrite / overwrite=True trains it again)",
                        out_path,
                    )
                    return load(out_path)
                if folder.state == "resume":
                    csize = _resumed_chunk_size(folder.meta, csize, n_dev, out_path)
                    _warn_if_environment_changed(folder.meta, out_path, n_dev)
            if pcount > 1:  # pragma: no cover - needs several hosts
                from jax.experimental import multihost_utils

                if out_path is None:
                    raise ValueError(
                        "a multi-host sweep needs out= on a filesystem shared by all hosts"
                    )
                if pid == 0:
                    results_lib.write_config(
                        out_path,
                        config.to_dict(),
                        {"fingerprint": fingerprint, "chunk_size": csize},
                        status="running",
                    )
                multihost_utils.sync_global_devices("jinit.sweep.prepared")
                csize = int(results_lib.read_json(out_path / "config.json")["meta"]["chunk_size"])
            n_chunks = math.ceil(n_models / csize)
            status.n_chunks, status.epochs = n_chunks, config.epochs

            module = setup.make_model(_kernel_init(setup.schemes[0][1]), setup.bias_init)
            program = _program(
                (setup.model_key, config.optimizer, float(config.learning_rate)),
                module.apply,
                tx,
                batch_size=config.batch_size,
                steps_per_epoch=steps_per_epoch,
                eval_every=config.eval_every,
                eval_batch_size=eval_bs,
                shared=not vary_data,
                inner_axis=_inner_model_axis(devices[0].platform),
            )
            compile_before = program.compile_seconds

            meta: dict[str, Any] = {
                "versions": _versions(),
                "device_kind": devices[0].device_kind,
                "platform": devices[0].platform,
                "device_count": n_dev,
                "process_count": pcount,
                "jax_threefry_partitionable": bool(jax.config.jax_threefry_partitionable),
                "dataset": setup.data_name,
                "data_source": _portable_source(setup.data_source),
                "n_train": n_train,
                "n_test": n_test,
                "num_classes": setup.num_classes,
                "steps_per_epoch": steps_per_epoch,
                "n_models": n_models,
                "chunk_size": csize,
                "n_chunks": n_chunks,
                "bytes_per_model_estimate": per_model,
                "custom_model": make_model is not None,
                "schemes": [label for label, _ in setup.schemes],
            }
            if fingerprint is not None:
                meta["fingerprint"] = fingerprint
            mine = [c for c in range(n_chunks) if c % pcount == pid]
            done: dict[int, dict[str, np.ndarray]] = {}
            if out_path is not None:
                for c in mine:
                    arrays = results_lib.read_chunk(
                        out_path,
                        c,
                        fingerprint=fingerprint,
                        model_index=_chunk_index(c, csize, n_models),
                    )
                    if arrays is not None and _has_logs(arrays, f"chunk file {c}"):
                        if save_params and not results_lib.params_path(out_path, c).is_file():
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
                        "resuming the sweep in %s: %d of %d chunks are done",
                        out_path,
                        len(done),
                        n_chunks,
                    )
                if pid == 0:
                    with guard.critical():
                        results_lib.write_config(out_path, config.to_dict(), meta, status="running")

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
                dev_data=jax.device_put(
                    (setup.x_train, setup.y_train, xt, yt, mask), replicated
                ),  # put on the device(s) once
                root=jax.random.PRNGKey(config.seed),
                csize=csize,
                n_chunks=n_chunks,
                model_sharding=model_sharding,
                key_sharding=model_sharding if vary_data else replicated,
                vary_data=vary_data,
                out=out_path,
                fingerprint=fingerprint,
                checkpoint_every=checkpoint_every if pcount == 1 else None,
                guard=guard,
                status=status,
                bar=bar,
            )
            chunks, kept = [], []
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
                                results_lib.write_params(
                                    out_path,
                                    c,
                                    jax.tree.map(lambda a, n=len(idx): a[:n], final_params),
                                    fingerprint=fingerprint,
                                    model_index=idx,
                                )
                            results_lib.write_chunk(out_path, c, chunk, fingerprint=fingerprint)
                            status.chunks_done += 1
                            status.checkpoint = None
                            results_lib.remove_checkpoints(out_path, c)
            finally:
                trainer.close()
                if bar is not None:
                    bar.close()

            if pcount > 1:  # pragma: no cover - needs several hosts
                multihost_utils.sync_global_devices("jinit.sweep.chunks")
                chunks = []
                for c in range(n_chunks):
                    arrays = results_lib.read_chunk(
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
            result = _assemble(config, setup, grid, chunks, steps_per_epoch, meta)
            if keep_params and kept:
                result.params = jax.tree.map(lambda *xs: np.concatenate(xs), *kept)
            if out_path is not None and pid == 0:
                with guard.critical():
                    result.save(out_path)
            return result
        except KeyboardInterrupt as e:
            raise SweepInterrupted(getattr(e, "signum", signal.SIGINT), status) from None
        finally:
            if lock is not None:
                lock.release()


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


def _params_saved(path: Path, meta: dict[str, Any]) -> bool:
    """Whether a complete run folder holds the saved parameters of every chunk."""
    n = meta.get("n_chunks")
    return isinstance(n, int) and all(results_lib.params_path(path, c).is_file() for c in range(n))


def _portable_source(source: str) -> str:
    """``data.load``'s source without the absolute path of this machine: ``"idx:/data/mnist"`` -> ``"idx:mnist"``
    (run folders are committed and shared; the fingerprint identifies the data)."""
    kind, sep, where = str(source).partition(":")
    if sep and os.path.isabs(where):
        return f"{kind}:{Path(where).name}"
    return str(source)


def _chunk_index(c: int, csize: int, n_models: int) -> list[int]:
    """The grid indices of the models of chunk ``c``."""
    return list(range(c * csize, min((c + 1) * csize, n_models)))


def _fingerprint(config: SweepConfig, setup: _Setup, grid) -> str:
    """A SHA-256 of what decides a sweep's numbers: the config, the grid's labels, the parameter shapes of the
    model, and the training and test arrays. Chunk files and checkpoints carry it; resuming requires it."""
    shapes = _abstract_model(setup)[2]
    identity = {
        k: v for k, v in config.to_dict().items() if k not in results_lib.LOCATION_FIELDS
    }  # where the data is is not what the sweep is: the data's bytes are hashed below
    desc = {
        "config": identity,
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
    h = hashlib.sha256(json.dumps(desc, sort_keys=True).encode("utf-8"))
    for a in (setup.x_train, setup.y_train, setup.x_test, setup.y_test):
        h.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1))
    return h.hexdigest()


def _resumed_chunk_size(stored: dict[str, Any], csize: int, n_dev: int, path: Path) -> int:
    """The chunk size a resumed sweep keeps (the first start's: results depend on it bit for bit)."""
    old = stored.get("chunk_size")
    if not _is_int(old) or old < 1:
        return csize
    if old % n_dev:
        raise ValueError(
            f"the sweep in {path} was started with chunks of {old} models, which cannot be split over the "
            f"{n_dev} devices here; resume it with a device count that divides {old}, or pass --overwrite "
            "to start it again"
        )
    return int(old)


def _warn_if_environment_changed(stored: dict[str, Any], path: Path, n_dev: int) -> None:
    now = {"versions": _versions(), "device_kind": jax.local_devices()[0].device_kind}
    changed = []
    for key, value in now["versions"].items():
        before = (stored.get("versions") or {}).get(key)
        if before is not None and before != value:
            changed.append(f"{key} {before} -> {value}")
    if stored.get("device_kind") not in (None, now["device_kind"]):
        changed.append(f"device {stored['device_kind']} -> {now['device_kind']}")
    if stored.get("device_count") not in (None, n_dev):
        changed.append(f"{stored['device_count']} -> {n_dev} devices")
    if changed:
        _log.warning(
            "resuming %s with other software or hardware (%s): the rest may not be bitwise identical to an "
            "uninterrupted run",
            path,
            ", ".join(changed),
        )


@dataclasses.dataclass
class _Status:
    """What a running sweep has saved so far (for the message of :class:`SweepInterrupted`)."""

    path: Path | None
    n_chunks: int | None = None
    epochs: int | None = None
    chunks_done: int = 0
    chunks_reused: int = 0
    checkpoint: tuple[int, int] | None = None  # (chunk, epochs done) of the chunk in progress


class SweepInterrupted(KeyboardInterrupt):
    """Raised by :func:`run` when SIGINT (Ctrl-C) or SIGTERM stops it; ``str(e)`` says what was saved.

    A subclass of ``KeyboardInterrupt``, so code that handles Ctrl-C handles it. Rerunning the same sweep with the
    same ``out`` continues from what was saved.

    Attributes:
      signum: the signal (``signal.SIGINT`` or ``signal.SIGTERM``).
      exit_code: ``128 + signum`` (130 for SIGINT, 143 for SIGTERM), what the command line exits with.
      path: the run folder, or None when the sweep had none (then nothing was saved).
      chunks_done: chunks whose results are in the run folder.
      n_chunks: chunks of the sweep (None when it was stopped before they were planned).
      checkpoint: ``(chunk, epochs done)`` of the epoch checkpoint of the chunk that was training, or None.
    """

    def __init__(self, signum: int, status: _Status):
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        self.path = status.path
        self.chunks_done = status.chunks_done
        self.n_chunks = status.n_chunks
        self.checkpoint = status.checkpoint
        self.epochs = status.epochs
        super().__init__(self._message())

    def _message(self) -> str:
        try:
            name = signal.Signals(self.signum).name
        except ValueError:
            name = f"signal {self.signum}"
        if self.path is None:
            return f"interrupted by {name}: nothing was saved (the sweep had no run folder)"
        if self.n_chunks is None:
            return f"interrupted by {name} before training started: nothing new was saved in {self.path}"
        saved = f"{self.chunks_done} of {self.n_chunks} chunk(s) complete"
        if self.checkpoint is not None:
            c, e = self.checkpoint
            saved += f", chunk {c} checkpointed after epoch {e} of {self.epochs}"
        return f"interrupted by {name}; saved in {self.path}: {saved} (the epoch that was running is lost)"


class _Interrupt(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _SignalGuard:
    """While active in the main thread, SIGINT and SIGTERM raise :class:`_Interrupt` (a ``KeyboardInterrupt``) at
    once -- also while the main thread waits for the device -- except inside :meth:`critical` sections (file
    writes), which finish first; the signal is raised at their end. Signals that were ignored or had a handler of
    the caller's keep it."""

    def __init__(self):
        self._depth = 0
        self._pending: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for sig, default in (
                (signal.SIGINT, signal.default_int_handler),
                (signal.SIGTERM, signal.SIG_DFL),
            ):
                if signal.getsignal(sig) is default:
                    self._previous[sig] = default
                    signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self._depth:
            self._pending = signum
            return
        raise _Interrupt(signum)

    @contextlib.contextmanager
    def critical(self):
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending is not None:
                signum, self._pending = self._pending, None
                raise _Interrupt(signum)


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


def _logs_to_arrays(logs: list[train_lib.EpochLogs]) -> dict[str, np.ndarray]:
    out = {f: np.stack([np.asarray(getattr(ep, f)) for ep in logs]) for f in _LOG_FIELDS}
    out["predictions"] = np.asarray(logs[-1].predictions)
    return out


def _logs_from_arrays(arrays: dict[str, np.ndarray]) -> list[train_lib.EpochLogs]:
    n = arrays["step"].shape[0]
    return [
        train_lib.EpochLogs(
            **{f: arrays[f][e] for f in _LOG_FIELDS},
            predictions=arrays["predictions"] if e == n - 1 else None,
        )
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
    n_chunks: int
    model_sharding: NamedSharding
    key_sharding: NamedSharding
    vary_data: bool
    out: Path | None
    fingerprint: str | None
    checkpoint_every: float | None
    guard: _SignalGuard
    status: _Status
    bar: Any
    train_seconds: float = 0.0
    epochs_reused: int = 0
    _ckptr: results_lib.Checkpointer | None = None

    def _checkpointer(self) -> results_lib.Checkpointer:
        if self._ckptr is None:
            self._ckptr = results_lib.Checkpointer()
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
        seeds_data = np.asarray([s if self.vary_data else 0 for _, _, s in entries], np.uint32)
        data_keys, dropout_keys = _stream_keys(self.root, seeds_data, shared=not self.vary_data)
        state = program.init_state(jax.device_put(params, self.model_sharding))
        data_keys, dropout_keys = jax.device_put((data_keys, dropout_keys), self.key_sharding)
        logs: list[train_lib.EpochLogs] = []
        start = 0
        saving = self.out is not None and self.checkpoint_every is not None
        if saving:
            ckpt = self._checkpointer().restore(
                self.out,
                c,
                jax.tree.leaves(state),
                fingerprint=self.fingerprint,
                model_index=idx,
            )
            if ckpt is not None and not _has_logs(ckpt.logs, f"the checkpoint of chunk {c}"):
                ckpt = None
            if ckpt is not None:
                state = jax.tree.unflatten(jax.tree.structure(state), ckpt.state)
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
            state, ep = program.run_epoch(
                state, data_keys, dropout_keys, jnp.int32(epoch), *self.dev_data
            )
            ep = jax.device_get(ep)
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
                        jax.tree.leaves(state),
                        _logs_to_arrays(logs),
                        fingerprint=self.fingerprint,
                        model_index=idx,
                    )
                    status.checkpoint = (c, epoch + 1)
                last_save = time.perf_counter()
        final = jax.device_get((state.params, state.diverged_step))
        return _chunk_arrays(idx, final, logs, self.setup.x_test.shape[0]), final[0]


class DeterminismReport(NamedTuple):
    """What :func:`check_determinism` found.

    Attributes:
      models: the ``(scheme label, seed number)`` pairs checked, in grid order.
      bitwise_identical: whether the two sweeps gave every model the same final parameters, bit for bit.
      sha256_first: :func:`jinit.metrics.param_sha256` of each model's final parameters in the first sweep.
      sha256_second: the same for the second sweep.
      max_abs_diff_alone: the largest ``|a - b|`` over the final parameters of the models, ``a`` trained in the
        vmapped sweep and ``b`` trained alone by :func:`jinit.train.train_plain` (same keys and data order);
        ``inf`` where one is NaN and the other not.
      epochs: epochs trained.
    """

    models: tuple[tuple[str, int], ...]
    bitwise_identical: bool
    sha256_first: tuple[str, ...]
    sha256_second: tuple[str, ...]
    max_abs_diff_alone: float
    epochs: int


def _max_abs_diff(a, b) -> float:
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        nan_x, nan_y = np.isnan(x), np.isnan(y)
        if (nan_x != nan_y).any():
            return math.inf
        d = np.abs(np.where(nan_x, 0.0, x - y))
        if d.size:
            worst = max(worst, float(np.max(d)))
    return worst


def check_determinism(
    config: SweepConfig | None = None,
    *,
    n_models: int = 2,
    make_model: Callable | None = None,
) -> DeterminismReport:
    """Trains the first ``n_models`` models of a sweep's grid twice, and alone, and compares the final parameters.

    The models are those of a smaller sweep with the first scheme(s) and seed numbers of ``config`` (a model's
    keys do not depend on the rest of the grid, so they are the models of the full sweep as far as the keys go;
    the chunk holds only them). The second sweep is compiled afresh. Each model is also trained alone by
    :func:`jinit.train.train_plain`, a Python loop over steps with the same keys and data order.

    Args:
      config: the sweep (default ``SweepConfig()``); its epochs, data and optimizer are used as they are.
      n_models: how many models (at least; rounded up to whole schemes when ``seeds < n_models``).
      make_model: a custom model factory, as for :func:`run`.

    Returns:
      A :class:`DeterminismReport`.
    """
    config = SweepConfig() if config is None else config
    if not isinstance(config, SweepConfig):
        raise TypeError(f"config must be a SweepConfig, got {type(config).__name__}")
    config.validate()
    _check_int("n_models", n_models, minimum=1)
    model = None if make_model else config.model
    labels = [label for label, _ in resolve_schemes(config.schemes, model=model)]
    # the specs as given, or the labels when "all" expanded them
    specs = labels if len(labels) != len(config.schemes) else list(config.schemes)
    if config.seeds >= n_models:
        schemes, seeds = specs[:1], n_models
    else:
        schemes, seeds = specs[: math.ceil(n_models / config.seeds)], config.seeds
    sub = dataclasses.replace(config, schemes=tuple(schemes), seeds=seeds)

    first = run(sub, progress=False, keep_params=True, make_model=make_model)
    cached = dict(_PROGRAMS)
    _PROGRAMS.clear()  # the second sweep compiles its program again
    try:
        second = run(sub, progress=False, make_model=make_model)
    finally:
        _PROGRAMS.clear()
        _PROGRAMS.update(cached)
    sha1 = tuple(first.models["param_sha256"])
    sha2 = tuple(second.models["param_sha256"])

    setup = _setup(sub, make_model)
    tx = train_lib.make_optimizer(sub.optimizer, sub.learning_rate)
    models, worst = [], 0.0
    for i, (label, scheme) in enumerate(setup.schemes):
        for s in range(sub.seeds):
            k = i * sub.seeds + s
            params = initial_params(sub, [(label, s)], make_model=make_model, _setup_cache=setup)
            keys = model_keys(sub.seed, label, s, sub.vary)
            module = setup.make_model(_kernel_init(scheme), setup.bias_init)
            alone = train_lib.train_plain(
                module.apply,
                jax.tree.map(lambda a: a[0], params),
                tx,
                setup.x_train,
                setup.y_train,
                setup.x_test,
                setup.y_test,
                batch_size=sub.batch_size,
                epochs=sub.epochs,
                data_key=keys.data,
                dropout_key=keys.dropout,
                eval_batch_size=sub.eval_batch_size,
            )
            vmapped = jax.tree.map(lambda a, k=k: a[k], first.params)
            worst = max(worst, _max_abs_diff(vmapped, alone.state.params))
            models.append((label, s))
    return DeterminismReport(
        models=tuple(models),
        bitwise_identical=sha1 == sha2,
        sha256_first=sha1,
        sha256_second=sha2,
        max_abs_diff_alone=worst,
        epochs=sub.epochs,
    )


@jax.jit
def _keys_for(root, seeds):
    base_data = jax.random.fold_in(root, 1)
    base_drop = jax.random.fold_in(root, 2)
    data = jax.vmap(lambda s: jax.random.fold_in(base_data, s))(seeds)
    drop = jax.vmap(lambda s: jax.random.fold_in(base_drop, s))(seeds)
    return data, drop


def _stream_keys(root, seeds_data: np.ndarray, *, shared: bool):
    if shared:
        data, drop = _keys_for(root, np.zeros((1,), np.uint32))
        return data[0], drop[0]
    return _keys_for(root, seeds_data)


def _chunk_arrays(
    idx: list[int], final, logs: list[train_lib.EpochLogs], n_test: int
) -> dict[str, np.ndarray]:
    from jinit import metrics

    params, diverged_step = final
    n = len(idx)
    cat = {
        f: np.concatenate([getattr(ep, f) for ep in logs], axis=1)[:n]
        for f in ("step", "train_loss", "test_loss", "test_accuracy", "train_accuracy")
    }
    preds = logs[-1].predictions[:n, :n_test]  # drop padded models and padded test rows
    shas = [metrics.param_sha256(jax.tree.map(lambda a, i=i: a[i], params)) for i in range(n)]
    return {
        "model_index": np.asarray(idx, np.int64),
        "step": cat["step"].astype(np.int64),
        "train_loss": cat["train_loss"].astype(np.float32),
        "test_loss": cat["test_loss"].astype(np.float32),
        "test_accuracy": cat["test_accuracy"].astype(np.float32),
        "train_accuracy": cat["train_accuracy"].astype(np.float32),
        # the models at initialization, measured in epoch 0's program (NaN in later epochs' logs)
        "init_test_loss": np.asarray(logs[0].init_test_loss[:n], np.float32),
        "init_test_accuracy": np.asarray(logs[0].init_test_accuracy[:n], np.float32),
        "diverged_step": np.asarray(diverged_step[:n], np.int64),
        "predictions": preds,
        "param_sha256": np.asarray(shas),
    }


def _assemble(config, setup, grid, chunks, steps_per_epoch, meta) -> SweepResult:
    n_test = setup.x_test.shape[0]
    chunks = [c for _, c in sorted(chunks, key=lambda t: t[0])]
    cat = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    order = np.argsort(cat["model_index"], kind="stable")
    cat = {k: v[order] for k, v in cat.items()}
    if not np.array_equal(cat["model_index"], np.arange(len(grid))):
        raise RuntimeError("internal error: chunks do not cover the grid exactly once")
    schemes = np.asarray([label for label, _, _ in grid], dtype=object)
    seeds = np.asarray([s for _, _, s in grid], np.int64)
    n_models, n_evals = cat["step"].shape
    f64 = {
        k: cat[k].astype(np.float64)
        for k in ("train_loss", "test_loss", "test_accuracy", "train_accuracy")
    }
    div = cat["diverged_step"]
    steps = cat["step"]
    # every model's curve starts with the point at initialization (epoch 0, step 0: test metrics measured before
    # the first step; the training columns are running means over steps, so there are none yet: NaN)
    nan = np.full((n_models, 1), np.nan)
    at_init = {
        "train_loss": nan,
        "test_loss": cat["init_test_loss"].astype(np.float64)[:, None],
        "test_accuracy": cat["init_test_accuracy"].astype(np.float64)[:, None],
        "train_accuracy": nan,
    }
    steps = np.concatenate([np.zeros((n_models, 1), steps.dtype), steps], axis=1)
    cols = {k: np.concatenate([at_init[k], f64[k]], axis=1) for k in f64}
    n_points = n_evals + 1
    curves = pd.DataFrame(
        {
            "scheme": np.repeat(schemes, n_points),
            "seed": np.repeat(seeds, n_points),
            "epoch": (steps / steps_per_epoch).reshape(-1),
            "step": steps.reshape(-1),
            "train_loss": cols["train_loss"].reshape(-1),
            "train_accuracy": cols["train_accuracy"].reshape(-1),
            "test_loss": cols["test_loss"].reshape(-1),
            "test_accuracy": cols["test_accuracy"].reshape(-1),
            "diverged": ((div[:, None] >= 0) & (div[:, None] <= steps)).reshape(-1),
        }
    )
    models = pd.DataFrame(
        {
            "scheme": schemes,
            "seed": seeds,
            "final_accuracy": f64["test_accuracy"][:, -1],
            "final_test_loss": f64["test_loss"][:, -1],
            "diverged": div >= 0,
            "diverged_step": div,
            "param_sha256": cat["param_sha256"].astype(str),
        }
    )
    preds = cat["predictions"].astype(_pred_dtype(setup.num_classes))
    if preds.shape != (n_models, n_test):
        raise RuntimeError(f"internal error: predictions {preds.shape} != {(n_models, n_test)}")
    return SweepResult(
        config=config,
        curves=curves,
        models=models,
        predictions=preds,
        y_test=setup.y_test,
        num_classes=setup.num_classes,
        meta=meta,
    )


def _pred_dtype(num_classes: int):
    return np.uint8 if num_classes <= 256 else np.int32


def load(path: str | os.PathLike) -> SweepResult:
    """Reads a run folder written by :func:`run` (or ``jinit sweep``) back into a :class:`SweepResult`; its
    ``params`` are the models' final variables when the sweep saved them (``save_params=True``,
    ``--save-params``), else None.

    Example:
      >>> r = sweep.load("runs/x")  # doctest: +SKIP
      >>> model_3 = jax.tree.map(lambda a: a[3], r.params)  # the variables of models row 3  # doctest: +SKIP
    """
    d = results_lib.read(path)
    config = SweepConfig.from_dict(d["config"])
    params = results_lib.read_params(
        path, fingerprint=d["meta"].get("fingerprint"), n_models=len(d["models"])
    )
    return SweepResult(
        config=config,
        curves=d["curves"],
        models=d["models"],
        predictions=d["predictions"],
        y_test=d["y_test"],
        num_classes=int(d["meta"].get("num_classes", int(d["y_test"].max()) + 1)),
        meta=d["meta"],
        path=Path(path),
        params=params,
    )

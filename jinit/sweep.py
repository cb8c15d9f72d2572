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

Models per device and chunks: every compiled program trains the same number ``k`` of models on one device
(``models_per_device``; chosen from the model's size and the device kind alone, never from the grid, see
:func:`models_per_device`), because the arithmetic XLA generates for a model depends on how many models share
its program (and on whether the program spans several devices): so a model's final parameters do not depend on
the layout of the sweep. A chunk is ``k x (devices used)`` models (at most ``max_models_per_chunk``, at least
``k``), the last one padded with copies that are dropped; each device runs its own group of ``k`` models of the
chunk with the same single-device program. Each completed chunk is written to ``chunks/NNNNN.npz`` of the run
folder.

Resume: with ``out``, :func:`run` takes the folder's lock, then writes each chunk as it finishes and, within a
chunk, an orbax-checkpoint of the chunk's stacked ``TrainState`` and its epoch logs at an epoch boundary (at most
every ``checkpoint_every`` seconds, default 60). Run again with the same config and ``out`` after a kill, it
skips the chunks on disk (their fingerprint -- a hash of config, grid, parameter shapes and data -- and model
indices must match), restarts a chunk from its checkpoint, keeps the chunk size of the first start, and ends
with results bit for bit those of an uninterrupted run. A folder holding this sweep, complete, is read back
without training; one holding another sweep is refused unless ``overwrite``. SIGINT (Ctrl-C) and SIGTERM stop
the sweep at once (also while the device computes; file writes finish first) with :class:`SweepInterrupted`,
which says what was saved. :func:`check_determinism` trains a few models of a grid twice and alone.

Devices: the groups of ``k`` models of a chunk are spread over the local devices (as many as the grid needs),
each trained by a program compiled for one device with the data put on every device once. Models are
independent and every model is computed by the same single-device program of ``k`` models, so a model's final
parameters are bit for bit the same with 1 or N devices or processes, in any grid, chunk size or order (the
reproducibility contract in the README; tested in tests/test_layout.py).

Several processes and hosts: start every process with ``jax.distributed.initialize()`` (or
:func:`jinit.distributed.initialize`; ``jinit sweep`` does it from its flags or from srun / mpirun / a TPU pod
slice), then call :func:`run` with the same config and the same ``out`` folder on a filesystem all processes share.
Each process trains the chunks ``i`` with ``i % jax.process_count() == jax.process_index()`` on its local devices
and writes them to ``out/chunks``; process 0 holds the lock and chooses the layout (models per device, chunk
size). The processes meet in JAX's coordination service (:class:`jinit.distributed.SweepGroup`: a failure in one
is posted there and stops the others, a process that does not see process 0's config.json is told the folder is
not shared); after every chunk is written, every process assembles the full result from the chunk files and
process 0 writes the tables. Tested with 2 local CPU processes (``tests/test_multiprocess.py``).

Keys (as in DESIGN.md), with ``root = PRNGKey(config.seed)`` and ``s`` the seed number:

* init: ``fold_in(fold_in(fold_in(root, 0), stable_hash(scheme)), s)`` (``s -> 0`` unless ``vary`` includes init);
  a parameter a :func:`jinit.rules` pattern matches is drawn with ``fold_in(fold_in(fold_in(root, 0),
  stable_hash(path)), s)`` instead (its ``/``-joined path), so it does not change when rules for other layers do;
* data order: ``fold_in(fold_in(root, 1), s)`` (``s -> 0`` unless ``vary`` includes data), per epoch
  ``fold_in(data_key, epoch)``;
* dropout: ``fold_in(fold_in(root, 2), s)`` (varies with the seed like the data order), per step
  ``fold_in(fold_in(dropout_key, epoch), step)``.

Divergence: a model whose training loss becomes non-finite, or explodes (more than
:data:`jinit.train.DIVERGENCE_FACTOR` times its first step's loss), is marked diverged at the first such step; vmap
keeps models independent, so it cannot disturb any other model.

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

import collections
import concurrent.futures
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

from jinit import distributed as distributed_lib
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
        raise TypeError(f"schemes must be a string or a sequence of strings, got {_short(text)}")
    items, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced parentheses in scheme list {_short(text)}")
        if ch == "," and depth == 0:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise ValueError(f"unbalanced parentheses in scheme list {_short(text)}")
    items.append("".join(cur).strip())
    if any(not item for item in items):
        raise ValueError(
            f"empty scheme name in scheme list {_short(text)} (check for ',,' or a trailing comma)"
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
        of ``"all"``. Per-layer :func:`jinit.rules` values and labelled functions (:func:`jinit.scheme`) are schemes
        too, labelled by their ``label``.
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
      max_models_per_chunk: cap on the number of models trained at once (rounded down to a multiple of the
        models per device; at least one device's worth). It changes the layout only, never a model's numbers.
      models_per_device: how many models each compiled program trains at once on one device (``None``: chosen
        from the model's size and the device kind, :func:`models_per_device`). Part of a model's arithmetic, like
        the device kind: the same value gives the same models in any layout.
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
    models_per_device: int | None = None

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
        if isinstance(
            self.dataset, str
        ):  # the spellings jinit.data.load accepts: "MNIST", "fashion-mnist"
            from jinit import data as data_lib

            try:
                object.__setattr__(self, "dataset", data_lib._spec(self.dataset).name)
            except (ValueError, TypeError):
                pass  # validate() names the valid choices

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able values (a rules / custom scheme as its ``config()``)."""
        from jinit.rules import to_json

        schemes = tuple(to_json(s) for s in self.schemes)
        return results_lib._jsonable(dataclasses.asdict(dataclasses.replace(self, schemes=schemes)))

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
        _check_int("seeds", self.seeds, minimum=1, maximum=2**32)  # seed numbers are uint32
        _check_int("seed", self.seed, minimum=0, maximum=2**63 - 1)  # what jax.random.PRNGKey takes
        _check_int("epochs", self.epochs, minimum=1)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("eval_batch_size", self.eval_batch_size, minimum=1)
        for name in (
            "eval_every",
            "train_size",
            "test_size",
            "max_models_per_chunk",
            "max_memory",
            "models_per_device",
        ):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        train_lib.make_optimizer(self.optimizer, self.learning_rate)
        if self.vary not in VARY:
            raise ValueError(f"unknown vary {self.vary!r}.{_closest(self.vary, VARY)}")
        if self.target_accuracy is not None:
            t = self.target_accuracy
            if (
                isinstance(t, bool | np.bool_)
                or not isinstance(t, int | float | np.integer | np.floating)
                or not 0.0 <= t <= 1.0
            ):
                raise ValueError(f"target_accuracy must be a fraction in [0, 1], got {t!r}")
        resolve_schemes(self.schemes, model=self.model)
        _initializer(self.bias_init, "bias_init")


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _check_int(name: str, value: Any, *, minimum: int, maximum: int | None = None) -> None:
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")


def _initializer(spec: Any, what: str):
    import jinit

    try:
        return jinit.get(spec)
    except (ValueError, TypeError) as e:
        raise type(e)(f"bad {what} {_short(spec)}: {e}") from None


def _short(value: Any, n: int = 80) -> str:
    """``repr(value)``, cut to ``n`` characters (a 100,000-character spec is not repeated in a message)."""
    text = repr(value)
    return text if len(text) <= n else text[:n] + "..."


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
    once; the aliases it leaves out are logged). A :func:`jinit.rules` or :func:`jinit.scheme` value is labelled
    by its ``label``.

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
    from jinit.rules import as_scheme

    # jinit.rules(...) / jinit.scheme(...) values; a bare function is refused
    custom = as_scheme(spec)
    if custom is not None:
        return custom
    if propagation.is_lsuv_spec(spec):
        try:
            return propagation.lsuv_scheme(spec)
        except (ValueError, TypeError) as e:
            raise type(e)(f"bad scheme {_short(spec)}: {e}") from None
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


def _program(key, apply_fn, tx, **kw) -> _Program:
    return _cached(
        _PROGRAMS, (key, tuple(sorted(kw.items()))), lambda: _Program(apply_fn, tx, **kw)
    )


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
        module = make_model(_kernel_init(scheme), bias_init)
        lsuv = _is_lsuv(scheme)
        from jinit.rules import Rules, sweep_init

        def init_one(root, h, s, x, batch):
            k = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, 0), h), s)
            if isinstance(scheme, Rules):  # per-parameter keys: see jinit.rules
                return sweep_init(scheme, module, root, s, k, x)
            return scheme.init(module, k, x, batch) if lsuv else module.init(k, x)

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
        # a factory without init arguments is wrapped (only rules schemes can initialize it)
        from jinit.rules import model_factory

        return model_factory(make_model), None  # keyed by what it computes: _custom_model_key
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
    for name, size, n in (
        ("train_size", config.train_size, ds.x_train.shape[0]),
        ("test_size", config.test_size, ds.x_test.shape[0]),
    ):
        if size is not None and size > n:
            split = name.split("_")[0]
            raise ValueError(
                f"{name}={size} is larger than the {split} set of {ds.name} ({n} examples)"
            )
    x_train, y_train = ds.x_train[: config.train_size], ds.y_train[: config.train_size]
    x_test, y_test = ds.x_test[: config.test_size], ds.y_test[: config.test_size]
    if config.batch_size > x_train.shape[0]:
        raise ValueError(
            f"batch_size={config.batch_size} is larger than the training set ({x_train.shape[0]} examples)"
        )
    mm, model_key = _model_factory(config, ds.num_classes, make_model)
    _check_schemes_fit(mm, schemes, bias_init, x_train[:1])
    if model_key is None:
        model_key = _custom_model_key(mm, schemes, bias_init, x_train[:1])
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


def _check_optimizer(optimizer: Any) -> None:
    """``optimizer`` is None, an optax ``GradientTransformation`` or a factory of one (checked before compiling)."""
    import optax

    if optimizer is None or isinstance(optimizer, optax.GradientTransformation):
        return
    if not callable(optimizer) or isinstance(optimizer, str | type):
        raise TypeError(
            f"optimizer must be an optax.GradientTransformation or a factory learning_rate -> "
            f"GradientTransformation, got {_describe(optimizer)}; for a named optimizer use "
            f"SweepConfig(optimizer=...), one of {', '.join(train_lib.OPTIMIZERS)}"
        )


def _describe(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _make_optimizer(config: SweepConfig, optimizer: Any, setup: _Setup):
    """The optax transformation of a sweep and its key for the program cache: the config's name and learning
    rate, or for your own optimizer a SHA-256 of its lowered (not compiled) ``init`` and ``update``, so that a
    changed optimizer never gets a cached program."""
    import optax

    if optimizer is None:
        tx = train_lib.make_optimizer(config.optimizer, config.learning_rate)
        return tx, (config.optimizer, float(config.learning_rate))
    tx = optimizer
    if not isinstance(optimizer, optax.GradientTransformation):
        tx = optimizer(float(config.learning_rate))
        if not isinstance(tx, optax.GradientTransformation):
            raise TypeError(
                f"the optimizer factory returned {_describe(tx)}, not an optax.GradientTransformation"
            )
    params = _abstract_model(setup)[2]
    try:
        state = jax.eval_shape(tx.init, params)
        h = hashlib.sha256(jax.jit(tx.init).lower(params).as_text().encode())
        h.update(jax.jit(tx.update).lower(params, state, params).as_text().encode())
    except Exception as e:  # noqa: BLE001 - any failure of the user's optimizer on the model's parameters
        raise ValueError(
            f"the optimizer cannot update this model's parameters: {type(e).__name__}: {e}".splitlines()[
                0
            ]
        ) from None
    return tx, ("custom", h.hexdigest())


def _custom_model_key(make_model: Callable, schemes, bias_init, x1: np.ndarray) -> tuple:
    """What a user's model computes, as a key of the compiled-program caches: a SHA-256 of the lowered (not
    compiled) ``init`` of each scheme's module and of its ``apply``. A factory that builds another model on a
    later call (it reads a global that changed, or was redefined in a notebook cell) gets another key, so a
    cached program of the old model is never reused; the same model hits the cache."""
    from jinit.rules import Rules

    x = jax.ShapeDtypeStruct((1,) + x1.shape[1:], jnp.float32)
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    h = hashlib.sha256()
    for _, scheme in schemes:
        if isinstance(scheme, Rules) or _is_lsuv(scheme):
            continue  # built on the module's own init, lowered below with the first plain scheme
        module = make_model(_kernel_init(scheme), bias_init)
        h.update(jax.jit(module.init).lower(key, x).as_text().encode())
    module = make_model(_kernel_init(schemes[0][1]), bias_init)
    variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
    # as evaluation calls it, and as training does: with a dropout key (a dropout rate shows only there)
    h.update(jax.jit(module.apply).lower(variables, x).as_text().encode())
    train_apply = jax.jit(lambda v, x, r: module.apply(v, x, rngs={"dropout": r}))
    h.update(train_apply.lower(variables, x, key).as_text().encode())
    return ("custom", h.hexdigest())


def _check_schemes_fit(make_model: Callable, schemes, bias_init, x1: np.ndarray) -> None:
    """Initializes every scheme's model abstractly (``jax.eval_shape``: nothing is computed or compiled), so a
    scheme that cannot serve one of the model's kernels (``dirac`` on a Dense kernel, ``identity`` on a conv)
    fails here with its name, before anything is compiled."""
    x1 = jax.ShapeDtypeStruct(x1.shape, jnp.float32)
    key = jax.random.PRNGKey(0)
    from jinit.rules import check_fit

    for label, scheme in schemes:
        # rules schemes: their patterns and the shapes their initializers serve
        if check_fit(make_model, label, scheme, bias_init, x1):
            continue
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
    vary_init, _ = _varies(config.vary)
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
    """Bytes per device a chunk may use (``max_memory``, else 40% of the device limit, else 2 GiB). On a CPU,
    whose devices share the host's memory, it is also at most half the memory this process can still get
    (:func:`host_memory_available`: the address-space limit, the cgroup limit, physical memory) split over the
    CPU devices, whatever ``max_memory`` says: a chunk that cannot be allocated fails or hangs instead of
    training."""
    if config.max_memory:
        budget = int(config.max_memory)
    else:
        try:
            stats = device.memory_stats() or {}
        except Exception:  # some backends do not implement memory_stats
            stats = {}
        budget = int(0.4 * stats["bytes_limit"]) if stats.get("bytes_limit") else 2 << 30
    if getattr(device, "platform", None) == "cpu":
        host = host_memory_available()
        if host is not None:
            n_cpu = max(1, sum(d.platform == "cpu" for d in jax.local_devices()))
            budget = min(budget, host // (2 * n_cpu))
    return budget


def _gb(n: int) -> str:
    return f"{n / 1e9:.3g} GB"


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def host_memory_available() -> int | None:
    """Bytes of memory this process can still get, at most: the smallest of the address-space limit
    (``RLIMIT_AS``, ``ulimit -v``) less the address space mapped now, the cgroup's memory limit less its usage
    (cgroup v2 ``memory.max`` / v1 ``memory.limit_in_bytes``), and the host's available memory (``MemAvailable``;
    else all physical memory). None where none of them can be read."""
    found = []
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            mapped = 0
            with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmSize:"):
                        mapped = int(line.split()[1]) * 1024
            found.append(max(0, soft - mapped))
    except (ImportError, OSError, ValueError):
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        limit = _read_int(limit_file)
        if limit is not None and limit < 2**60:  # v1 writes ~2**63 for "no limit"
            found.append(max(0, limit - (_read_int(usage_file) or 0)))
    available = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    if available is None:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if available:
        found.append(available)
    return min(found) if found else None


def _check_grid_fits(
    config: SweepConfig, n_schemes: int, steps_per_epoch: int, n_test: int
) -> None:
    """Refuses, before the grid is built, a grid whose results alone (curves, predictions, one row per model)
    need more host memory than this process can get."""
    n_models = n_schemes * config.seeds
    evals = config.epochs * (train_lib.intervals(steps_per_epoch, config.eval_every)[0] + 1)
    need = n_models * (
        n_test + 120 * evals + 600
    )  # measured ~100 bytes per curve row, ~500 per model row
    host = host_memory_available()
    if host is not None and need > host:
        raise ValueError(
            f"the grid of {n_models} models ({n_schemes} schemes x {config.seeds} seeds) needs about "
            f"{_gb(need)} of host memory for its results alone, more than the {_gb(host)} this process can get; "
            "use fewer seeds or schemes"
        )


# On a CPU a device trains its models fastest when their parameters, gradients and optimizer state stay in its share
# of the last-level cache (MNIST MLP on a 2-core CPU with 32 MiB L3: 4 per device 4.8, 32 per device 3.4 model-epochs
# per second). The models per device come from a fixed share, not from the host's cache, so that they (and so the
# models' numbers) do not depend on the machine. More than 8 tiny models per device did not help (digits MLP, 256
# models, 2 devices, 10 epochs: 4, 8, 16, 32 per device gave 163, 206, 152, 152 model-epochs/s on a loaded host), and
# a small k pads small grids less. Accelerators keep many models per program busy.
CPU_STATE_BYTES_PER_DEVICE = 8 << 20
MAX_MODELS_PER_DEVICE = {"cpu": 8}
ACCELERATOR_MODELS_PER_DEVICE = 1024


def models_per_device(
    config: SweepConfig, platform: str, *, state_bytes: int, per_model: int, budget: int
) -> int:
    """How many models one compiled program trains at once on one device (the width of the vmapped step).

    A model's arithmetic depends on this number (XLA vectorizes a batch of 2 models differently from a batch of
    8), so it is chosen from the model and the device kind alone, never from the grid or the number of devices:
    ``config.models_per_device`` when set; else on a CPU the largest power of two (at most 8) whose models'
    parameters, gradients and optimizer state (``state_bytes`` each) fit in 8 MiB; else (GPU/TPU) 1024. Either way
    at most what the per-device memory ``budget`` holds (``per_model`` bytes each), and at least 1.

    Args:
      config: the sweep config.
      platform: the device platform (``"cpu"``, ``"gpu"``, ``"tpu"``).
      state_bytes: bytes of one model's parameters, gradients and optimizer state.
      per_model: estimated device memory of one model in training (:func:`bytes_per_model`).
      budget: bytes a chunk may use on one device (data excluded).

    Returns:
      The models per device, ``k >= 1``.
    """
    if config.models_per_device is not None:
        return int(config.models_per_device)
    if platform == "cpu":
        fit = max(1, CPU_STATE_BYTES_PER_DEVICE // max(state_bytes, 1))
        k = min(MAX_MODELS_PER_DEVICE["cpu"], 1 << (fit.bit_length() - 1))
    else:
        k = ACCELERATOR_MODELS_PER_DEVICE
    fits = max(1, budget // max(per_model, 1))
    if fits < k:
        _log.warning(
            "only %d models fit in one device's memory budget (%s each, %s): %d models per device instead of "
            "%d; a model's numbers now depend on that budget (pass --models-per-device / models_per_device to "
            "fix them)",
            fits,
            _gb(per_model),
            _gb(budget),
            fits,
            k,
        )
    return min(k, fits)


def chunk_plan(
    n_models: int, per_device: int, n_devices: int, max_models_per_chunk: int | None = None
) -> tuple[int, int]:
    """The chunk size and the number of devices a sweep uses.

    A chunk is ``per_device x devices`` models: as many devices as the grid needs (``ceil(n_models /
    per_device)``, at most ``n_devices``), fewer when ``max_models_per_chunk`` asks for smaller chunks (never
    fewer than one device's ``per_device`` models). Only the layout depends on this, never a model's numbers.

    Returns:
      ``(chunk_size, devices_used)``.
    """
    used = max(1, min(n_devices, math.ceil(n_models / per_device)))
    if max_models_per_chunk:
        used = max(1, min(used, max_models_per_chunk // per_device))
    return per_device * used, used


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
    max_devices: int | None = None,
    optimizer: Any = None,
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
            results_lib.check_writable(out_path)
        setup = _setup(config, make_model)
    except BaseException as e:
        if group is not None:
            group.fail(e)
        raise
    vary_init, vary_data = _varies(config.vary)
    tx, opt_key = _make_optimizer(config, optimizer, setup)
    n_train, n_test = setup.x_train.shape[0], setup.x_test.shape[0]
    steps_per_epoch = n_train // config.batch_size
    eval_bs = min(config.eval_batch_size, n_test)

    try:  # before the grid is built and anything compiled (a failure is posted to the other processes)
        _check_grid_fits(config, len(setup.schemes), steps_per_epoch, n_test)
        grid = [(label, init, s) for label, init in setup.schemes for s in range(config.seeds)]
        n_models = len(grid)
        devices = jax.local_devices()[:max_devices]
        data_bytes = (
            setup.x_train.nbytes + setup.y_train.nbytes + setup.x_test.nbytes + setup.y_test.nbytes
        )
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
                    results_lib.write_config(
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

            module = setup.make_model(_kernel_init(setup.schemes[0][1]), setup.bias_init)
            program = _program(
                (setup.model_key, opt_key),
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
                "optimizer": (
                    {"name": config.optimizer, "learning_rate": config.learning_rate}
                    if optimizer is None
                    else {"custom": _describe(optimizer), "sha256": opt_key[1]}
                ),
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
                        shapes=_chunk_shapes(config, steps_per_epoch, n_test, c, csize, n_models),
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
                dev_data={  # put on each device once
                    d: jax.device_put((setup.x_train, setup.y_train, xt, yt, mask), d)
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
                # a signal during the final write is not acted on: when the write ends, the sweep is complete
                with guard.critical(complete=True):
                    result.save(out_path)
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


def _shared_config(out: Path, **info) -> dict[str, Any]:
    """What process 0 tells the others about the run folder: ``info`` and the SHA-256 of the config.json it wrote,
    by which each process checks that it sees the same folder (:func:`_check_shared_folder`)."""
    data = (out / "config.json").read_bytes()
    return {**info, "config_sha256": hashlib.sha256(data).hexdigest(), "host": _hostname()}


def _hostname() -> str:
    import socket

    return socket.gethostname()


def _check_shared_folder(out: Path, prepared: dict[str, Any], pid: int) -> None:
    """Raises OSError when this process does not see the config.json process 0 just wrote in ``out``."""
    try:
        sha = hashlib.sha256((out / "config.json").read_bytes()).hexdigest()
    except OSError:
        sha = None
    if sha != prepared.get("config_sha256"):
        seen = "does not see" if sha is None else "sees another"
        raise OSError(
            f"the run folder {out} is not shared: process {pid} on {_hostname()} {seen} config.json than the one "
            f"process 0 wrote there on {prepared.get('host')}; --out must be a folder on a filesystem that every "
            "process shares"
        )


def _chunk_index(c: int, csize: int, n_models: int) -> list[int]:
    """The grid indices of the models of chunk ``c``."""
    return list(range(c * csize, min((c + 1) * csize, n_models)))


def _chunk_shapes(config, steps_per_epoch, n_test, c, csize, n_models) -> dict[str, Any]:
    """The arrays of chunk ``c``'s file (:func:`_chunk_arrays`): shape and dtype kind of each."""
    n = len(_chunk_index(c, csize, n_models))
    evals = config.epochs * (train_lib.intervals(steps_per_epoch, config.eval_every)[0] + 1)
    curve = ((n, evals), "f")
    return {
        "model_index": ((n,), "i"),
        "step": ((n, evals), "i"),
        "train_loss": curve,
        "test_loss": curve,
        "test_accuracy": curve,
        "train_accuracy": curve,
        "init_test_loss": ((n,), "f"),
        "init_test_accuracy": ((n,), "f"),
        "diverged_step": ((n,), "i"),
        "predictions": ((n, n_test), "iu"),
        "param_sha256": ((n,), "U"),
    }


def _fingerprint(config: SweepConfig, setup: _Setup, grid, opt_key=None) -> str:
    """A SHA-256 of what decides a sweep's numbers: the config, the grid's labels, the parameter shapes of the
    model (and for your own model or optimizer, what they compute), and the training and test arrays. Chunk files
    and checkpoints carry it; resuming requires it."""
    shapes = _abstract_model(setup)[2]
    identity = {
        k: v for k, v in config.to_dict().items() if k not in results_lib.LOCATION_FIELDS
    }  # where the data is is not what the sweep is: the data's bytes are hashed below
    desc = {
        "config": identity,
        **({"model": setup.model_key[1]} if setup.model_key[0] == "custom" else {}),
        **({"optimizer": opt_key[1]} if opt_key and opt_key[0] == "custom" else {}),
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


def _resumed_layout(
    stored: dict[str, Any], k: int, csize: int, path: Path, n_models: int
) -> tuple[int, int]:
    """The models per device and the chunk size a resumed sweep keeps: the first start's (its chunk files and
    checkpoints hold chunks of that size, and the models per device decide the models' numbers bit for bit). The
    device count may differ: a chunk's groups of ``k`` models are then spread over the devices there are. A stored
    layout that no start can have chosen (a chunk beyond the grid rounded up to whole groups) is ignored."""
    old_k, old_size = stored.get("models_per_device"), stored.get("chunk_size")
    if not _is_int(old_size) or old_size < 1:
        return k, csize
    if (
        _is_int(old_k)
        and old_k >= 1
        and (old_k > max(k, 1024) or old_size > max(math.ceil(n_models / old_k) * old_k, k))
    ):
        _log.warning("ignoring the impossible chunk_size %r in %s/config.json", old_size, path)
        return k, csize
    if not _is_int(old_k) or old_k < 1 or old_size % old_k:
        raise ValueError(
            f"the sweep in {path} was started by an older jinit (its chunks do not record the models per "
            "device): pass --overwrite (overwrite=True) to start it again"
        )
    return int(old_k), int(old_size)


def _warn_if_environment_changed(stored: dict[str, Any], path: Path) -> None:
    now = {"versions": _versions(), "device_kind": jax.local_devices()[0].device_kind}
    changed = []
    for key, value in now["versions"].items():
        before = (stored.get("versions") or {}).get(key)
        if before is not None and before != value:
            changed.append(f"{key} {before} -> {value}")
    if stored.get("device_kind") not in (None, now["device_kind"]):
        changed.append(f"device {stored['device_kind']} -> {now['device_kind']}")
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


#: How long the main thread has to act on SIGTERM / SIGINT before :class:`_SignalGuard`'s watchdog ends the process.
SIGNAL_GRACE_SECONDS = 10.0


class _SignalGuard:
    """While active in the main thread, SIGINT and SIGTERM raise :class:`_Interrupt` (a ``KeyboardInterrupt``) at
    once -- also while the main thread waits for the device -- except inside :meth:`critical` sections (file
    writes), which finish first; the signal is raised at their end. Signals that were ignored or had a handler of
    the caller's keep it.

    A watchdog thread sees the signals too (``signal.set_wakeup_fd``, where nothing else uses it): when the main
    thread has not acted on a SIGTERM (or SIGINT) within :data:`SIGNAL_GRACE_SECONDS` because it is stuck in native
    code that never returns (seen: every XLA thread waiting under an address-space limit), and no file write is in
    progress, it prints why and ends the process with 128 + the signal number, as the signal's default action
    would have. Every file on disk is then complete or a temporary file, which the next sweep removes."""

    def __init__(self):
        self._depth = 0
        self._pending: int | None = None
        self._previous: dict[int, Any] = {}
        self._handled = 0
        self._wakeup: tuple[int, int] | None = None

    def __enter__(self) -> _SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for sig, default in (
                (signal.SIGINT, signal.default_int_handler),
                (signal.SIGTERM, signal.SIG_DFL),
            ):
                if signal.getsignal(sig) is default:
                    self._previous[sig] = default
                    signal.signal(sig, self._handle)
            if signal.SIGTERM in self._previous:
                self._start_watchdog()
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self._wakeup is not None:
            signal.set_wakeup_fd(-1)
            os.close(self._wakeup[1])  # the watchdog reads the end of the pipe and stops
            self._wakeup = None

    def _start_watchdog(self) -> None:
        r, w = os.pipe()
        os.set_blocking(w, False)
        try:
            old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except (ValueError, OSError):
            old = None
        if old != -1:  # someone else (an event loop) uses the wakeup fd: leave it to them
            if old is not None:
                signal.set_wakeup_fd(old)
            os.close(r)
            os.close(w)
            return
        self._wakeup = (r, w)
        threading.Thread(
            target=self._watch, args=(r,), name="jinit-signal-watchdog", daemon=True
        ).start()

    def _watch(self, r: int) -> None:
        try:
            while True:
                handled = self._handled  # the main thread's handler calls so far
                data = os.read(r, 64)
                if not data:
                    return
                signums = [b for b in data if b in (signal.SIGINT, signal.SIGTERM)]
                if not signums:
                    continue
                deadline = time.monotonic() + SIGNAL_GRACE_SECONDS
                while self._handled == handled and self._wakeup is not None:
                    time.sleep(0.05)
                    if self._depth:  # a file write in progress: it finishes first
                        deadline = time.monotonic() + SIGNAL_GRACE_SECONDS
                    elif time.monotonic() > deadline:
                        name = signal.Signals(signums[-1]).name
                        os.write(
                            2,
                            f"jinit: {name}: the sweep was blocked in a computation that did not return within "
                            f"{SIGNAL_GRACE_SECONDS:g} s; exiting now (the files written are complete: rerun the "
                            "same command to resume)\n".encode(),
                        )
                        os._exit(128 + signums[-1])
        finally:
            os.close(r)

    def _handle(self, signum, frame) -> None:
        self._handled += 1
        if self._depth:
            self._pending = signum
            return
        raise _Interrupt(signum)

    @contextlib.contextmanager
    def critical(self, *, complete: bool = False):
        """A section that signals do not interrupt; with ``complete``, the work is done when it ends without an
        error, so a signal that arrived meanwhile is reported as a notice instead of interrupting."""
        self._depth += 1
        ok = False
        try:
            yield
            ok = True
        finally:
            self._depth -= 1
            if not self._depth and self._pending is not None:
                signum, self._pending = self._pending, None
                if not (complete and ok):
                    raise _Interrupt(signum)
                _log.warning(
                    "%s arrived while the finished sweep was being written; it is complete",
                    signal.Signals(signum).name,
                )


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
            groups.append(
                (
                    dev,
                    program.init_state(
                        jax.device_put(jax.tree.map(lambda a, part=part: a[part], params), dev)
                    ),
                    jax.device_put(keys, dev),
                )
            )
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
            ep = _concat_logs(jax.device_get([o[1] for o in outs]))
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
        final = jax.device_get([(st.params, st.diverged_step) for _, st, _ in groups])
        final = jax.tree.map(lambda *xs: np.concatenate(xs), *final)
        return _chunk_arrays(idx, final, logs, self.setup.x_test.shape[0]), final[0]


def _concat_leaves(states) -> list[np.ndarray]:
    """The leaves of the states of a chunk's groups, concatenated along the model axis (on the host)."""
    return [
        np.concatenate(xs)
        for xs in zip(*(jax.tree.leaves(jax.device_get(s)) for s in states), strict=True)
    ]


def _concat_logs(logs: list[train_lib.EpochLogs]) -> train_lib.EpochLogs:
    """One epoch's logs of a chunk's groups, joined along the model axis."""
    return jax.tree.map(lambda *xs: np.concatenate(xs), *logs)


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
      layout_identical: whether the same models trained in another layout (inside a larger grid, in another
        order, on another number of devices) have the same final parameters, bit for bit.
      sha256_layout: the hashes of the models in that other layout.
      layouts: the two layouts compared, in words.
    """

    models: tuple[tuple[str, int], ...]
    bitwise_identical: bool
    sha256_first: tuple[str, ...]
    sha256_second: tuple[str, ...]
    max_abs_diff_alone: float
    epochs: int
    layout_identical: bool = False
    sha256_layout: tuple[str, ...] = ()
    layouts: tuple[str, ...] = ()


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
    optimizer: Any = None,
) -> DeterminismReport:
    """Trains the first ``n_models`` models of a sweep's grid twice, in another layout, and alone, and compares the
    final parameters.

    The models are those of a smaller sweep with the first scheme(s) and seed numbers of ``config`` (a model's
    keys do not depend on the rest of the grid, so they are the models of the full sweep as far as the keys go;
    the chunk holds only them). The second sweep is compiled afresh. A third trains them inside a larger grid
    (another scheme first, one more seed) on another number of devices (one if the first used several), which
    must not change them (the reproducibility contract). Each model is also trained alone by
    :func:`jinit.train.train_plain`, a Python loop over steps with the same keys and data order; that one is
    another program, so it agrees to float round-off, not bitwise.

    Args:
      config: the sweep (default ``SweepConfig()``); its epochs, data and optimizer are used as they are.
      n_models: how many models (at least; rounded up to whole schemes when ``seeds < n_models``).
      make_model: a custom model factory, as for :func:`run`.
      optimizer: your own optimizer, as for :func:`run`.

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

    first = run(sub, progress=False, keep_params=True, make_model=make_model, optimizer=optimizer)
    cached = dict(_PROGRAMS)
    _PROGRAMS.clear()  # the second sweep compiles its program again
    try:
        second = run(sub, progress=False, make_model=make_model, optimizer=optimizer)
    finally:
        _PROGRAMS.clear()
        _PROGRAMS.update(cached)
    sha1 = tuple(first.models["param_sha256"])
    sha2 = tuple(second.models["param_sha256"])

    # Another layout: the models after another scheme's, one seed more each (so the chunks hold other
    # neighbours at other positions), on one device if the first used several, else on all.
    extra = "lecun_normal" if "lecun_normal" not in schemes else "glorot_uniform"
    wide = dataclasses.replace(sub, schemes=(extra, *schemes), seeds=sub.seeds + 1)
    n_first = int(first.meta["device_count"])
    other_devices = 1 if n_first > 1 else None
    third = run(
        wide, progress=False, make_model=make_model, max_devices=other_devices, optimizer=optimizer
    )
    by_model = {
        (scheme, int(s)): h
        for scheme, s, h in zip(
            third.models["scheme"], third.models["seed"], third.models["param_sha256"], strict=True
        )
    }
    sha3 = tuple(
        by_model[(scheme, int(s))]
        for scheme, s in zip(first.models["scheme"], first.models["seed"], strict=True)
    )
    layouts = (
        f"{len(first.models)} models, chunks of {first.meta['chunk_size']}, {n_first} device(s)",
        f"{len(third.models)} models (another scheme first, one more seed), chunks of "
        f"{third.meta['chunk_size']}, {third.meta['device_count']} device(s)",
    )

    setup = _setup(sub, make_model)
    tx, _ = _make_optimizer(sub, optimizer, setup)
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
        layout_identical=sha1 == sha3,
        sha256_layout=sha3,
        layouts=layouts,
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

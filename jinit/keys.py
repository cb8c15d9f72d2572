"""Every random key of jinit, in one place (DESIGN.md, "Keys").

``root = PRNGKey(seed)`` of a sweep (``SweepConfig.seed``); independent streams, each derived with ``fold_in`` only,
never ``split(key, n)``, so that a model's keys do not depend on what else is in its grid:

* init (stream 0): ``fold_in(fold_in(fold_in(root, 0), stable_hash(scheme label)), s)`` (:func:`init_key`); a
  parameter a :func:`jinit.rules` pattern matches is drawn with the same derivation with its ``/``-joined path in
  place of the label (:func:`path_key`);
* data order (stream 1): ``fold_in(fold_in(root, 1), s)`` (:func:`data_key`), per epoch ``fold_in(data_key,
  epoch)`` (:func:`epoch_key`);
* dropout (stream 2): ``fold_in(fold_in(root, 2), s)`` (:func:`dropout_key`), per step ``fold_in(fold_in(dropout_key,
  epoch), step)`` (:func:`epoch_key`, :func:`step_key`);
* data-dependent batches (stream 3): ``fold_in(root, 3)`` (:func:`batch_key`): the LSUV batch of a sweep and the
  input batch of :mod:`jinit.propagation`.

``s`` is the seed number, or 0 for a stream that ``vary`` does not vary (:func:`varies`). Hyperparameter values
never enter a key. :func:`stable_hash` is SHA-256 based, never Python's ``hash()``.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import jax
import numpy as np

INIT, DATA, DROPOUT, BATCH = 0, 1, 2, 3

#: Seed numbers are uint32 (``fold_in`` data).
MAX_SEED_NUMBER = 2**32 - 1

#: The largest root seed ``jax.random.PRNGKey`` takes.
MAX_ROOT_SEED = 2**63 - 1


def stable_hash(name: str) -> int:
    """A fixed 32-bit hash of a name (first 4 bytes of its SHA-256, little endian)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "little")


def root_key(seed: int) -> jax.Array:
    """The root key of a sweep: ``PRNGKey(seed)``."""
    return jax.random.PRNGKey(seed)


def init_key(root: jax.Array, name_hash: Any, s: Any) -> jax.Array:
    """``fold_in(fold_in(fold_in(root, 0), name_hash), s)``: the init key of seed number ``s`` of the scheme whose
    label hashes to ``name_hash`` (traceable: ``name_hash`` and ``s`` may be arrays)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, INIT), name_hash), s)


def path_key(root: jax.Array, path: str, s: Any) -> jax.Array:
    """The key of a parameter a :func:`jinit.rules` pattern matches: :func:`init_key` with the hash of its
    ``/``-joined path in place of the scheme's label, so it does not change when rules for other layers do."""
    return init_key(root, np.uint32(stable_hash(path)), s)


def named_key(key: jax.Array, name: str) -> jax.Array:
    """``fold_in(key, stable_hash(name))``: the key of a named part (a parameter's path) under ``key``, as
    :meth:`jinit.rules.Rules.init` draws a matched parameter outside a sweep."""
    return jax.random.fold_in(key, np.uint32(stable_hash(name)))


def data_key(root: jax.Array, s: Any) -> jax.Array:
    """``fold_in(fold_in(root, 1), s)``: the data-order key of seed number ``s``."""
    return jax.random.fold_in(jax.random.fold_in(root, DATA), s)


def dropout_key(root: jax.Array, s: Any) -> jax.Array:
    """``fold_in(fold_in(root, 2), s)``: the dropout key of seed number ``s``."""
    return jax.random.fold_in(jax.random.fold_in(root, DROPOUT), s)


def batch_key(root: jax.Array) -> jax.Array:
    """``fold_in(root, 3)``: the key of a sweep's data-dependent batch (the LSUV batch) and of
    :mod:`jinit.propagation`'s input batch."""
    return jax.random.fold_in(root, BATCH)


def epoch_key(key: jax.Array, epoch: Any) -> jax.Array:
    """``fold_in(key, epoch)``: a data-order key's permutation of ``epoch``, or a dropout key's key of ``epoch``."""
    return jax.random.fold_in(key, epoch)


def step_key(epoch_dropout_key: jax.Array, step: Any) -> jax.Array:
    """``fold_in(epoch_dropout_key, step)``: the dropout key of one training step (``step`` counts every step
    taken)."""
    return jax.random.fold_in(epoch_dropout_key, step)


class ModelKeys(NamedTuple):
    """The three independent keys of one model."""

    init: jax.Array
    data: jax.Array
    dropout: jax.Array


def varies(vary: str) -> tuple[bool, bool]:
    """``(init varies with the seed, data order and dropout vary with the seed)`` for ``vary`` in ``init, data,
    both``."""
    if vary not in ("init", "data", "both"):
        raise ValueError(f"unknown vary {vary!r}. Valid choices: init, data, both.")
    return vary in ("init", "both"), vary in ("data", "both")


def _check_number(name: str, value: Any, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} must be in [0, {maximum}], got {value!r}")
    return int(value)


def model_keys(seed: int, scheme: str, s: int, vary: str = "init") -> ModelKeys:
    """The keys of model (``scheme``, seed number ``s``) of a sweep with root seed ``seed`` (see the module doc).

    Args:
      seed: the root seed (``SweepConfig.seed``), ``0 <= seed < 2**63``.
      scheme: the scheme's label (:func:`jinit.sweep.resolve_schemes`).
      s: the seed number, ``0 <= s < 2**32``.
      vary: ``"init"``, ``"data"`` or ``"both"``.

    Returns:
      :class:`ModelKeys` of raw ``uint32[2]`` keys.

    Raises:
      ValueError, TypeError: a root seed, seed number or ``vary`` out of range.
    """
    seed = _check_number("seed", seed, MAX_ROOT_SEED)
    s = _check_number("the seed number s", s, MAX_SEED_NUMBER)
    if not isinstance(scheme, str):
        raise TypeError(f"scheme must be a scheme label (a str), got {scheme!r}")
    vary_init, vary_data = varies(vary)
    root = root_key(seed)
    sd = s if vary_data else 0
    init = init_key(root, np.uint32(stable_hash(scheme)), s if vary_init else 0)
    return ModelKeys(init, data_key(root, sd), dropout_key(root, sd))


@jax.jit
def _stream_keys(root, seeds):
    data = jax.vmap(lambda s: data_key(root, s))(seeds)
    drop = jax.vmap(lambda s: dropout_key(root, s))(seeds)
    return data, drop


def stream_keys(root: jax.Array, seeds: np.ndarray, *, shared: bool) -> tuple[jax.Array, jax.Array]:
    """The data-order and dropout keys of models with seed numbers ``seeds`` (``uint32[n]``): stacked
    ``[n, 2]`` keys, or, with ``shared`` (``vary`` does not vary the data), the one pair of seed number 0."""
    if shared:
        data, drop = _stream_keys(root, np.zeros((1,), np.uint32))
        return data[0], drop[0]
    return _stream_keys(root, np.asarray(seeds, np.uint32))

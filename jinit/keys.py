"""Key derivation, in one place: ``stable_hash`` of names and the ``fold_in`` streams of a sweep (init, data order,
dropout) that :mod:`jinit.sweep` and :mod:`jinit.propagation` share (DESIGN.md, "Keys").
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import jax
import numpy as np


def stable_hash(name: str) -> int:
    """A fixed 32-bit hash of a scheme label (first 4 bytes of its SHA-256, little endian)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "little")


class ModelKeys(NamedTuple):
    """The three independent keys of one model."""

    init: jax.Array
    data: jax.Array
    dropout: jax.Array


def varies(vary: str) -> tuple[bool, bool]:
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
    vary_init, vary_data = varies(vary)
    root = jax.random.PRNGKey(seed)
    h = np.uint32(stable_hash(scheme))
    init = jax.random.fold_in(
        jax.random.fold_in(jax.random.fold_in(root, 0), h), s if vary_init else 0
    )
    sd = s if vary_data else 0
    data = jax.random.fold_in(jax.random.fold_in(root, 1), sd)
    dropout = jax.random.fold_in(jax.random.fold_in(root, 2), sd)
    return ModelKeys(init, data, dropout)


@jax.jit
def keys_for(root, seeds):
    base_data = jax.random.fold_in(root, 1)
    base_drop = jax.random.fold_in(root, 2)
    data = jax.vmap(lambda s: jax.random.fold_in(base_data, s))(seeds)
    drop = jax.vmap(lambda s: jax.random.fold_in(base_drop, s))(seeds)
    return data, drop


def stream_keys(root, seeds_data: np.ndarray, *, shared: bool):
    if shared:
        data, drop = keys_for(root, np.zeros((1,), np.uint32))
        return data[0], drop[0]
    return keys_for(root, seeds_data)

"""Precision as grid dimensions: the compute dtype (activations and matmuls) and the optimizer-state dtype.

``SweepConfig.compute_dtype`` and ``SweepConfig.state_dtype`` each take ``"float32"`` or ``"bfloat16"``, or a tuple
of both. Unlike the hyperparameter axes (:mod:`jinit.sweep.hyper`), whose values are arrays of one compiled program,
a dtype changes the program: every combination of values (a :class:`Precision`) is trained by its own compiled
epoch program. The grid is ``compute_dtype x state_dtype x (scheme x learning_rate x weight_decay x init_scale x
seed)``: one block of models per precision (compute dtype slowest), each block laid out in chunks of its own, so
that a chunk, and so a program, never holds two precisions (:meth:`jinit.sweep.plan.Plan.chunk`).

What a precision changes:

* ``compute_dtype="bfloat16"``: the model's ``dtype`` (Flax's: the dtype of its activations and matmuls; its
  parameters stay float32 master weights, ``param_dtype``); the loss and metrics are computed in float32 from the
  model's outputs (:func:`jinit.train.make_train`). jinit's models take it; your own model gets it where its
  factory takes ``dtype`` (a linen field, an NNX ``__init__`` argument, a factory parameter:
  :func:`jinit.adapters.with_dtype`), and is refused otherwise, before anything compiles.
* ``state_dtype="bfloat16"``: the optimizer's moments are stored in bfloat16 (optax's own options where it has
  them: Adam's ``mu_dtype``, SGD's ``accumulator_dtype``; the rest by :func:`jinit.train.state_in`), computed in
  float32 within each step.

A precision never enters a model's keys (:mod:`jinit.keys`) and never changes its initial weights: every model is
initialized by the float32 model, so models that differ only in their precision start from the same weights and
see the same batches (comparisons across precisions are paired by seed). float32/float32 is the sweep of earlier
versions, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

#: The dtypes a precision dimension takes.
DTYPES = ("float32", "bfloat16")

#: The SweepConfig fields that are precision dimensions, in grid order (the compute dtype slowest).
DIMENSIONS = ("compute_dtype", "state_dtype")

#: Other spellings of the dtypes (``jnp.bfloat16``, ``np.float32`` and their names are accepted too).
ALIASES = {"bf16": "bfloat16", "f32": "float32", "fp32": "float32"}

#: What the tables and labels call each dimension, briefly.
SHORT = {"compute_dtype": "compute", "state_dtype": "state"}


class Precision(NamedTuple):
    """The precision of one block of the grid: the compute dtype and the optimizer-state dtype (names)."""

    compute_dtype: str = "float32"
    state_dtype: str = "float32"

    @property
    def label(self) -> str:
        """``"compute=bfloat16,state=float32"``: the key of per-precision records (``meta``)."""
        return f"compute={self.compute_dtype},state={self.state_dtype}"


FLOAT32 = Precision()


def canonical(value: Any) -> Any:
    """A dtype's name (``"bfloat16"``) for its spellings (``"bf16"``, ``jnp.bfloat16``, ``np.dtype("float32")``);
    anything else is returned as it is, for :func:`check` to name."""
    if isinstance(value, str):
        v = value.strip().lower()
        return ALIASES.get(v, v)
    if isinstance(value, type | np.dtype) or hasattr(value, "dtype"):
        try:
            import jax.numpy as jnp

            return jnp.dtype(value).name
        except TypeError:
            return value
    return value


def values(config: Any, name: str) -> tuple[str, ...]:
    """The values of dimension ``name`` of ``config`` as a tuple (one value: a 1-tuple)."""
    v = getattr(config, name)
    return tuple(v) if isinstance(v, tuple | list) else (v,)


def normalized(value: Any) -> Any:
    """A config field's value in its recorded form: a dtype name, or a tuple of names (a 1-tuple is its value)."""
    if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str):
        items = tuple(canonical(v) for v in value)
        return items[0] if len(items) == 1 else items
    return canonical(value)


def check(config: Any) -> None:
    """Validates the precision fields of ``config``: each a dtype of :data:`DTYPES` or a non-empty tuple of
    distinct ones.

    Raises:
      ValueError, TypeError: naming the field, the bad value and the valid choices.
    """
    for name in DIMENSIONS:
        vs = values(config, name)
        if not vs:
            raise ValueError(
                f"{name} is an empty tuple; give one of {', '.join(DTYPES)} or several"
            )
        for v in vs:
            if not isinstance(v, str):
                raise TypeError(
                    f"{name} values must be dtype names ({', '.join(DTYPES)}), got {v!r}"
                )
            if v not in DTYPES:
                raise ValueError(
                    f"{name}={v!r} is not a precision jinit sweeps; valid choices: {', '.join(DTYPES)}"
                )
        if len(set(vs)) != len(vs):
            raise ValueError(f"{name} has repeated values {vs!r}")


def combos(config: Any) -> list[Precision]:
    """Every precision of ``config`` in grid order, the compute dtype slowest."""
    return [
        Precision(c, s)
        for c in values(config, "compute_dtype")
        for s in values(config, "state_dtype")
    ]


def swept(config: Any) -> list[str]:
    """The precision dimensions of ``config`` with more than one value (the extra columns of the tables)."""
    return [name for name in DIMENSIONS if len(values(config, name)) > 1]


def columns(config: Any, precisions: Sequence[Precision]) -> dict[str, np.ndarray]:
    """The table columns of the swept dimensions (:func:`swept`): one dtype name per model, in grid order."""
    return {
        name: np.asarray([getattr(p, name) for p in precisions], dtype=object)
        for name in swept(config)
    }


def block(n_models: int, n_precisions: int, chunk_size: int) -> tuple[int, int]:
    """``(models per precision, chunks per precision)`` of a grid of ``n_models`` in ``n_precisions`` blocks."""
    per = n_models // max(n_precisions, 1)
    return per, max(1, -(-per // chunk_size))


def chunk_models(c: int, n_models: int, n_precisions: int, chunk_size: int) -> list[int]:
    """The grid indices of chunk ``c``: the chunks of each precision block follow each other, block by block, and
    no chunk spans two blocks (a block's last chunk may be short)."""
    per, chunks = block(n_models, n_precisions, chunk_size)
    b, local = divmod(c, chunks)
    start = b * per + local * chunk_size
    return list(range(start, min(start + chunk_size, (b + 1) * per)))


def n_chunks(n_models: int, n_precisions: int, chunk_size: int) -> int:
    """How many chunks a grid of ``n_models`` in ``n_precisions`` blocks has."""
    return max(n_precisions, 1) * block(n_models, n_precisions, chunk_size)[1]

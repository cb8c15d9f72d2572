"""Hyperparameters as grid axes: the learning rate, the weight decay and an init scale take several values, and one
compiled program trains every value.

The grid is ``scheme x learning_rate x weight_decay x init_scale x seed``: scheme-major, then the values of each axis
in the order given, the seed fastest (:func:`model_grid`). A value never enters a model's keys (see
:mod:`jinit.keys`), so models that differ only in a value start from the same weights (before the init scale) and
see the same batches: comparisons across the values of one scheme are paired by seed.

One program for all values: the optimizer is built with ``optax.inject_hyperparams`` (:func:`injected`), so the
learning rate and weight decay are arrays in each model's ``opt_state.hyperparams``, set per model when a chunk's
stacked state is created (:func:`set_hyperparams`). The injected form is used for one value too, so that a model's
numbers never depend on what else is in the grid. The init scale multiplies every kernel (each leaf named
``kernel``) after the scheme's initialization, on the host (:func:`scale_kernels`).

Weight decay: ``adamw`` takes it as optax's decoupled ``weight_decay`` (default 1e-4, optax's); ``adam``, ``sgd``,
``momentum`` and ``rmsprop`` add ``weight_decay * params`` to the gradient before the optimizer
(``optax.add_decayed_weights``: PyTorch's ``weight_decay``), none by default.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jinit import train as train_lib

#: The SweepConfig fields that may hold several values (grid axes), in grid order.
AXES = ("learning_rate", "weight_decay", "init_scale")

#: optax's default decoupled weight decay of ``adamw``.
ADAMW_WEIGHT_DECAY = train_lib.ADAMW_DEFAULT_WEIGHT_DECAY


class Hyper(NamedTuple):
    """The axis values of one model of the grid."""

    learning_rate: float
    weight_decay: float | None
    init_scale: float


def values(config: Any, name: str) -> tuple:
    """The values of axis ``name`` of ``config`` as a tuple (one value: a 1-tuple)."""
    v = getattr(config, name)
    return tuple(v) if isinstance(v, tuple | list) else (v,)


def swept(config: Any) -> list[str]:
    """The axes of ``config`` with more than one value, in grid order (the extra columns of the tables)."""
    return [name for name in AXES if len(values(config, name)) > 1]


def combos(config: Any) -> list[Hyper]:
    """Every combination of axis values, learning rate slowest, init scale fastest."""
    return [
        Hyper(float(lr), None if wd is None else float(wd), float(sc))
        for lr in values(config, "learning_rate")
        for wd in values(config, "weight_decay")
        for sc in values(config, "init_scale")
    ]


def model_grid(schemes: Sequence[tuple[str, Any]], config: Any) -> tuple[list, list[Hyper]]:
    """The sweep's models in grid order: ``scheme x learning_rate x weight_decay x init_scale x seed``.

    Returns:
      ``(grid, hypers)``: ``grid[i] = (label, scheme, seed number)`` and ``hypers[i]`` its :class:`Hyper`.
    """
    grid, hypers = [], []
    for label, init in schemes:
        for h in combos(config):
            for s in range(config.seeds):
                grid.append((label, init, s))
                hypers.append(h)
    return grid, hypers


def _number(name: str, v: Any, *, positive: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
        raise TypeError(f"{name} values must be numbers, got {v!r}")
    f = float(v)
    if not math.isfinite(f) or (f <= 0 if positive else f < 0):
        what = "positive and finite" if positive else "finite and >= 0"
        raise ValueError(f"{name} values must be {what}, got {v!r}")
    return f


def check(config: Any) -> None:
    """Validates the axis fields of ``config`` (each one value or a non-empty tuple of distinct values).

    Raises:
      ValueError, TypeError: naming the field and the bad value.
    """
    for name in AXES:
        vs = values(config, name)
        if not vs:
            raise ValueError(f"{name} is an empty tuple; give one value or several")
        for v in vs:
            if name == "weight_decay" and v is None:
                if len(vs) > 1:
                    raise ValueError(
                        f"weight_decay None (the optimizer's default) cannot be one of several values {vs!r}; "
                        "give numbers (0.0 for none)"
                    )
                continue
            if name == "learning_rate":
                from jinit import train as train_lib

                train_lib.check_learning_rate(v)
            else:
                _number(name, v, positive=name == "init_scale")
        if len({float(v) for v in vs if v is not None}) != len(vs) and vs != (None,):
            raise ValueError(f"{name} has repeated values {vs!r}")


def injected(
    name: str, weight_decay: float | None = None, state_dtype: str = "float32"
) -> Callable[..., optax.GradientTransformation]:
    """The named optimizer with injected hyperparameters: ``factory(learning_rate[, weight_decay]) -> tx``.

    Args:
      name: ``adam, sgd, momentum, adamw, rmsprop``.
      weight_decay: None for the optimizer's default (none; ``adamw``: 1e-4), else a number: ``adamw``'s decoupled
        decay, or L2 added to the gradient (``optax.add_decayed_weights`` before the optimizer) for the others.
      state_dtype: the dtype its moments are stored in (:func:`jinit.train.injectable`).

    Returns:
      ``optax.inject_hyperparams`` of the optimizer (:func:`jinit.train.make_optimizer`'s, with the learning rate
      and weight decay as its only arguments, so b1, eps and momentum stay constants): call it with
      ``learning_rate=`` (and ``weight_decay=`` when the optimizer has one) to get a transformation whose
      ``opt_state.hyperparams`` holds them.
    """
    return optax.inject_hyperparams(
        train_lib.injectable(name, weight_decay is not None, state_dtype)
    )


def lr_argument(factory: Callable) -> str:
    """The name of the first parameter of a user's factory ``learning_rate -> tx`` (its injected hyperparameter)."""
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        params = []
    if not params or params[0].kind not in (
        params[0].POSITIONAL_ONLY,
        params[0].POSITIONAL_OR_KEYWORD,
    ):
        raise TypeError(
            f"the optimizer factory {factory!r} must take the learning rate as its first argument "
            "(learning_rate -> optax.GradientTransformation)"
        )
    return params[0].name


def _stored_in(custom: Any, state_dtype: str) -> Any:
    """Your own optimizer (a factory or a transformation) with its state stored in ``state_dtype``
    (:func:`jinit.train.state_in`); as it is for float32."""
    if state_dtype == "float32":
        return custom
    dtype = jnp.dtype(state_dtype)
    if isinstance(custom, optax.GradientTransformation):
        return train_lib.state_in(custom, dtype)

    @functools.wraps(
        custom
    )  # keeps the factory's signature: inject_hyperparams reads its argument's name
    def stored(*args, **kwargs):
        return train_lib.state_in(custom(*args, **kwargs), dtype)

    return stored


def optimizer(
    config: Any, custom: Any = None, state_dtype: str = "float32"
) -> tuple[optax.GradientTransformation, dict[str, str]]:
    """The sweep's optimizer in injected form, built at the first value of each axis.

    Args:
      config: the SweepConfig.
      custom: None (``config.optimizer``), a factory ``learning_rate -> tx`` (wrapped with
        ``optax.inject_hyperparams``), or an ``optax.GradientTransformation`` (used as it is: one learning rate).
      state_dtype: the dtype the optimizer's state is stored in (a precision, :mod:`jinit.sweep.precision`):
        ``"float32"`` leaves it as optax keeps it; ``"bfloat16"`` stores its moments in bfloat16 (optax's options
        where it has them, :func:`jinit.train.state_in` for the rest and for your own optimizer).

    Returns:
      ``(tx, names)``: the transformation and ``{axis: key in opt_state.hyperparams}`` of the axes it holds.

    Raises:
      ValueError: several learning rates with a transformation instance, or a weight decay with your own optimizer.
    """
    lrs, wds = values(config, "learning_rate"), values(config, "weight_decay")
    if custom is not None and wds != (None,):
        raise ValueError(
            f"weight_decay={config.weight_decay!r} applies to the named optimizers; with your own optimizer "
            "put optax.add_decayed_weights (or adamw's weight_decay) in it"
        )
    if isinstance(custom, optax.GradientTransformation):
        if len(lrs) > 1:
            raise ValueError(
                f"learning_rate={config.learning_rate!r} has several values, but the optimizer is an "
                "optax.GradientTransformation with its own learning rate; pass a factory learning_rate -> "
                "GradientTransformation (e.g. optimizer=lambda lr: optax.adam(lr))"
            )
        return _stored_in(custom, state_dtype), {}
    if custom is not None:
        arg = lr_argument(custom)
        tx = optax.inject_hyperparams(_stored_in(custom, state_dtype))(float(lrs[0]))
        return tx, {"learning_rate": arg}
    if config.optimizer == "adamw":
        wd = ADAMW_WEIGHT_DECAY if wds[0] is None else float(wds[0])
        tx = injected("adamw", state_dtype=state_dtype)(
            learning_rate=float(lrs[0]), weight_decay=wd
        )
        return tx, {"learning_rate": "learning_rate", "weight_decay": "weight_decay"}
    if wds[0] is None:
        return injected(config.optimizer, state_dtype=state_dtype)(learning_rate=float(lrs[0])), {
            "learning_rate": "learning_rate"
        }
    tx = injected(config.optimizer, wds[0], state_dtype)(
        learning_rate=float(lrs[0]), weight_decay=float(wds[0])
    )
    return tx, {"learning_rate": "learning_rate", "weight_decay": "weight_decay"}


def effective(h: Hyper, config: Any) -> Hyper:
    """``h`` with the optimizer's default weight decay filled in (``adamw``: 1e-4)."""
    if h.weight_decay is None and config.optimizer == "adamw":
        return h._replace(weight_decay=ADAMW_WEIGHT_DECAY)
    return h


def set_hyperparams(state: Any, hypers: Sequence[Hyper], names: dict[str, str]) -> Any:
    """A stacked TrainState (leading model axis) with each model's learning rate / weight decay from ``hypers``.

    Args:
      state: the stacked state of ``len(hypers)`` models (``state.opt_state`` an ``optax.inject_hyperparams``
        state).
      hypers: each model's values (:func:`effective`).
      names: ``{axis: key in opt_state.hyperparams}`` (:func:`optimizer`); an empty dict leaves ``state`` as is.
    """
    if not names:
        return state
    hp = dict(state.opt_state.hyperparams)
    for axis, key in names.items():
        old = hp[key]
        new = np.asarray([getattr(h, axis) for h in hypers], dtype=old.dtype)
        hp[key] = jax.device_put(jnp.asarray(new), getattr(old, "sharding", None))
    return state._replace(opt_state=state.opt_state._replace(hyperparams=hp))


def scale_kernels(params: Any, scales: Sequence[float]) -> Any:
    """Stacked variables (numpy, leading model axis) with every leaf named ``kernel`` of model ``i`` multiplied by
    ``scales[i]``; leaves of models at scale 1.0 are left exactly as they are."""
    scales = np.asarray(scales, np.float64)
    if np.all(scales == 1.0):
        return params

    def scale(path, x):
        last = path[-1] if path else None
        name = getattr(last, "key", getattr(last, "name", None))
        if name != "kernel":
            return x
        x = np.asarray(x)
        s = scales.astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
        return np.where(s == 1, x, x * s)

    return jax.tree_util.tree_map_with_path(scale, params)


def columns(config: Any, hypers: Sequence[Hyper]) -> dict[str, np.ndarray]:
    """The table columns of the swept axes (:func:`swept`): one value per model, in grid order."""
    return {
        name: np.asarray([getattr(h, name) for h in hypers], np.float64) for name in swept(config)
    }

"""A labelled initializer function, :class:`Scheme`: ``(key, shape, dtype) -> array`` with the label a sweep keys
its results by (made by :func:`jinit.scheme`, or by :func:`jinit.register` and a name: :func:`registered`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True, repr=False)
class Scheme:
    """A function ``(key, shape, dtype) -> array`` with the label a sweep keys its results by.

    Build it with :func:`scheme` (or :func:`jinit.register` and a name). Calling it calls ``fn`` and checks that
    the array has the requested shape (cast to the requested dtype).

    Attributes:
      label: the name of the scheme in results, tables and plots (``repr`` is the label).
      fn: the initializer function.
      registered: the registry name it was built from, or None.
      hyperparameters: the registered factory's arguments, as ``(name, value)`` pairs.
    """

    label: str
    fn: Callable[..., Any]
    registered: str | None = None
    hyperparameters: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return self.label

    def __call__(self, key, shape, dtype=None, *args, **kwargs) -> jax.Array:
        shape = tuple(int(d) for d in shape)
        dtype = jnp.float32 if dtype is None else dtype
        out = self.fn(key, shape, dtype, *args, **kwargs)
        if tuple(jnp.shape(out)) != shape:
            raise ValueError(
                f"scheme {self.label!r} returned an array of shape {tuple(jnp.shape(out))} "
                f"for a parameter of shape {shape}"
            )
        return jnp.asarray(out, dtype)

    def config(self) -> dict[str, Any]:
        """``{"name": <registered name>, **hyperparameters}`` (``jinit.get`` inverts it while the name is registered),
        or ``{"name": "scheme", "label": ...}`` for a function given to :func:`scheme` (not rebuildable)."""
        if self.registered is not None:
            return {"name": self.registered, **dict(self.hyperparameters)}
        return {"name": "scheme", "label": self.label}

    def __repr__(self) -> str:
        return self.label


def registered(name: str, arguments: Mapping[str, Any], value: Any) -> Any:
    """The scheme a registered factory's ``value`` stands for, labelled by the registered name (and its
    hyperparameters, as a call: ``my_init(scale=3.0)``): a :func:`jinit.rules` value relabelled, or a
    :class:`Scheme` of the function."""
    args = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    label = f"{name}({args})" if args else name
    if callable(getattr(value, "relabelled", None)):  # jinit.rules(...)
        return value.relabelled(label)
    if isinstance(value, Scheme):
        value = value.fn
    if not callable(value):
        raise TypeError(
            f"the factory registered as {name!r} returned {value!r}; expected an initializer "
            "(key, shape, dtype) -> array or jinit.rules(...)"
        )
    return Scheme(label, value, registered=name, hyperparameters=tuple(arguments.items()))

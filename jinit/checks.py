"""Checks of user inputs that several modules share; each refuses a bad value in one line that names it and the fix.

:func:`check_optimizer` is what :func:`jinit.train.make_train` and :func:`jinit.train.train_plain` (and any other
function taking an optax optimizer) run first, so that ``make_train(model, 5)`` or ``make_train(model,
optax.adam)`` is a ``TypeError`` saying what to pass, not ``AttributeError: 'int' object has no attribute
'init'`` when the training state is built.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_optimizer", "describe", "is_transformation"]


def describe(value: Any, limit: int = 100) -> str:
    """A short description of ``value`` for an error message: ``5 (int)``, ``'adam' (str)``, ``the function adam``,
    ``an optax GradientTransformation``, ``(an optax GradientTransformation, 5) (tuple)``; at most about
    ``limit`` characters, never a memory address."""
    if is_transformation(value):
        return f"an optax {type(value).__name__}"
    if callable(value) and hasattr(value, "__qualname__"):
        kind = "class" if isinstance(value, type) else "function"
        return f"the {kind} {value.__qualname__}"
    if isinstance(value, tuple | list) and len(value) <= 4:
        inner = ", ".join(_bare(v, limit // 2) for v in value)
        text = (
            f"({inner}{',' if len(value) == 1 else ''})"
            if isinstance(value, tuple)
            else f"[{inner}]"
        )
    else:
        text = _bare(value, limit)
    return f"{text} ({type(value).__name__})"


def _bare(value: Any, limit: int) -> str:
    if is_transformation(value) or (callable(value) and hasattr(value, "__qualname__")):
        return describe(value)
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_transformation(value: Any) -> bool:
    """Whether ``value`` is an optax transformation: an object with callable ``init`` and ``update`` (an
    ``optax.GradientTransformation``, ``GradientTransformationExtraArgs``, or any object shaped like them)."""
    return callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))


def _hint(optimizer: Any) -> str:
    """What the caller probably meant, for the values that are often passed instead of a transformation."""
    if isinstance(optimizer, str):
        return (
            f"; for a named optimizer pass jinit.train.make_optimizer({optimizer!r}, learning_rate)"
        )
    if isinstance(optimizer, tuple | list):
        for i, item in enumerate(optimizer):
            if not is_transformation(item):
                return (
                    f"; its item {i} is {describe(item, 60)}, not a transformation: combine "
                    "transformations with optax.chain(a, b, ...), every part one"
                )
        return "; combine them into one with optax.chain(*transformations)"
    if callable(optimizer):
        name = getattr(optimizer, "__name__", type(optimizer).__name__)
        return f"; call {name}(...) to get the transformation, e.g. optax.adam(1e-3)"
    return ""


def check_optimizer(optimizer: Any, where: str) -> None:
    """Refuses an ``optimizer`` that is not an optax transformation (:func:`is_transformation`).

    Args:
      optimizer: the value given as the optimizer.
      where: the function that takes it, named in the message (``"make_train"``).

    Raises:
      TypeError: one line naming the value and the fix: a string names ``jinit.train.make_optimizer``, an
        optimizer factory such as ``optax.adam`` (not called) says to call it, a tuple or list names the item
        that is not a transformation and ``optax.chain``.
    """
    if is_transformation(optimizer):
        return
    raise TypeError(
        f"{where}: optimizer must be an optax.GradientTransformation such as optax.adam(1e-3), got "
        f"{describe(optimizer)}{_hint(optimizer)}"
    )

"""Equinox models: jinit's schemes for ``eqx.Module`` weights, and Equinox models in a sweep.

Equinox keeps no initializer catalogue of its own (its layers draw PyTorch's uniform and you replace leaves with
``eqx.tree_at``); :func:`apply_scheme` replaces them with any jinit scheme in one call::

    model = eqx.nn.MLP(64, 10, 128, depth=2, key=key)
    model = jinit.apply_scheme(model, "he_normal", key)               # every weight He, every bias 0
    model = jinit.apply_scheme(model, jinit.rules({"layers/2/weight": "zeros", "weight": "orthogonal"}), key)

Layout and fans: an Equinox weight is ``(out, in, *kernel)`` (``eqx.nn.Linear``: ``(out, in)``; ``eqx.nn.Conv2d``:
``(out, in, kh, kw)``); Flax's kernel is ``(*kernel, in, out)``. jinit draws each weight **in Flax's layout and
transposes it** (:func:`init_weight`), so the fans are right for every scheme (He on ``eqx.nn.Linear(64, 128)`` has
std ``sqrt(2/64)``), the structured ones (orthogonal, identity, dirac, delta_orthogonal) mean what they mean in
Flax, and the same key draws bitwise the same values as a linen ``nn.Dense`` / ``nn.Conv`` or an NNX ``Linear`` /
``Conv`` of the same shape, transposed.

Which leaves (a leaf's path is its ``/``-joined attribute names and indices, ``layers/0/weight``, the strings
:func:`jinit.rules` patterns match):

* a **weight**: an array leaf named ``weight`` or ``weight_*`` (``eqx.nn.GRUCell``'s ``weight_ih``) with two or
  more dimensions, read as ``(out, in, *kernel)`` (an ``eqx.nn.Embedding`` table ``(num, dim)`` too, as
  ``torch.nn.init`` reads it); drawn by the scheme. A Flax-style ``kernel`` leaf (a linen/NNX params dict) is
  drawn in its own layout;
* a **bias**: an array leaf named ``bias`` or ``bias_*`` beside a weight (or kernel) in the same layer; drawn by
  ``bias_init`` (as a vector of its size, then reshaped: a conv's ``(out, 1, 1)`` bias gets Flax's values);
* anything else (norm scales and offsets, your own arrays) is left as it is.

A :func:`jinit.rules` scheme draws only the leaves its patterns match (weights in Flax's layout, as above; other
leaves as they are) and leaves every other one as the model built it. Keys: the leaf at path ``p`` is drawn with
``fold_in(key, stable_hash(p))`` (:func:`jinit.keys.named_key`), as :meth:`jinit.Rules.init` draws a matched
parameter.

In a sweep, ``sweep.run(config, model=factory)`` takes a factory ``key -> eqx.Module`` (a function of one
argument named ``key``, or of one argument that returns an ``eqx.Module``, or an ``eqx.Module`` class built as
``Cls(key=key)``) whose ``__call__`` takes **one example**: jinit vmaps it over the batch (and over models) and
applies each model's scheme (:func:`functions`, behind :func:`jinit.adapters.model_fns`). Training and evaluation
are Equinox's ``eqx.nn.inference_mode``; a ``__call__`` with a ``key`` argument gets a key per example in training
(``eqx.nn.Dropout``); stateful layers (``eqx.nn.BatchNorm``) work through ``eqx.nn.State`` when ``__call__`` is
``(x, state, *, key=None) -> (y, state)`` and every BatchNorm is built with ``axis_name="batch"`` (the batch axis
jinit vmaps). The run's ``params`` hold each weight in Flax's layout (``(in, out)``), the form every jinit scheme,
``init_scale`` and :func:`jinit.mup_multipliers` read; :func:`to_module` puts a model's params back into the module.
"""

from __future__ import annotations

import inspect
import re
import sys
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jinit import keys
from jinit.rules import Rules, path_str

__all__ = [
    "BATCH_AXIS",
    "apply_scheme",
    "equinox_layout",
    "flax_layout",
    "functions",
    "init_weight",
    "is_factory",
    "to_module",
]

#: The axis name jinit vmaps an Equinox model's batch under (``eqx.nn.BatchNorm(..., axis_name=BATCH_AXIS)``).
BATCH_AXIS = "batch"

_DESCRIPTION_CHARS = 200


def _eqx():
    try:
        import equinox
    except ImportError:  # pragma: no cover - only without the extra
        raise ImportError(
            "Equinox models need the equinox package: pip install 'jinit[equinox]'"
        ) from None
    return equinox


# ------------------------------------------------------------------------------------------------- layouts


def flax_layout(weight: Any) -> Any:
    """An Equinox weight ``(out, in, *kernel)`` in Flax's layout ``(*kernel, in, out)``."""
    n = jnp.ndim(weight)
    return jnp.transpose(weight, (*range(2, n), 1, 0))


def equinox_layout(kernel: Any) -> Any:
    """A Flax kernel ``(*kernel, in, out)`` in Equinox's layout ``(out, in, *kernel)`` (inverse of
    :func:`flax_layout`)."""
    n = jnp.ndim(kernel)
    return jnp.transpose(kernel, (n - 1, n - 2, *range(n - 2)))


def _flax_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (*shape[2:], shape[1], shape[0])


def init_weight(init: Callable, key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32):
    """One Equinox weight of ``shape`` ``(out, in, *kernel)``: ``init`` drawn in Flax's layout
    ``(*kernel, in, out)`` with ``key``, transposed; bitwise ``equinox_layout(init(key, flax_shape))``, the values
    a linen or NNX layer of that shape draws with that key."""
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2:
        raise ValueError(f"an Equinox weight has 2 or more dimensions (out, in, ...), got {shape}")
    return equinox_layout(init(key, _flax_shape(shape), dtype))


# ------------------------------------------------------------------------------------------- leaves and roles


def _is_array(x: Any) -> bool:
    return isinstance(x, jax.Array | np.ndarray | jax.ShapeDtypeStruct)


def _is_float(x: Any) -> bool:
    return _is_array(x) and jnp.issubdtype(x.dtype, jnp.inexact)


def _name(path: tuple) -> str:
    return path_str(path[-1:]) if path else ""


class _Leaves(NamedTuple):
    """A pytree's leaves, with the ``/``-joined path of each and the roles of the float arrays."""

    treedef: Any
    leaves: list
    paths: list[str]
    kernels: dict[int, str]  # leaf index -> "equinox" (out, in, ...) or "flax" (..., in, out)
    biases: list[int]


def _leaves(tree: Any, paths: list[str] | None = None) -> _Leaves:
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [path_str(p) for p, _ in flat] if paths is None else paths
    leaves = [x for _, x in flat]
    kernels, parents = {}, set()
    for i, ((p, x), name) in enumerate(zip(flat, (_name(p) for p, _ in flat), strict=True)):
        if not _is_float(x):
            continue
        if (name == "weight" or name.startswith("weight_")) and x.ndim >= 2:
            kernels[i] = "equinox"
        elif name == "kernel" and x.ndim >= 2:
            kernels[i] = "flax"
        else:
            continue
        parents.add(path_str(p[:-1]))
    biases = [
        i
        for i, (p, x) in enumerate(flat)
        if _is_float(x)
        and (_name(p) == "bias" or _name(p).startswith("bias_"))
        and path_str(p[:-1]) in parents
    ]
    return _Leaves(treedef, leaves, paths, kernels, biases)


def _draw_kernel(init: Callable, key: jax.Array, leaf: Any, layout: str) -> jax.Array:
    shape = tuple(leaf.shape)
    if layout == "equinox":
        return init_weight(init, key, shape, leaf.dtype)
    return init(key, shape, leaf.dtype)


def _draw_bias(init: Callable, key: jax.Array, leaf: Any) -> jax.Array:
    size = int(np.prod(leaf.shape)) if leaf.shape else 1
    return jnp.reshape(init(key, (size,), leaf.dtype), leaf.shape)


def _resolve(spec: Any, what: str) -> Any:
    """A scheme spec as an initializer (or a Rules value); a function ``(key, shape, dtype)`` is used as it is."""
    from jinit import propagation, registry

    if isinstance(spec, str) and propagation.is_lsuv_spec(spec):
        raise ValueError(
            f"apply_scheme: {what} {spec!r} is data-dependent (LSUV rescales a linen model's layer outputs on "
            "a batch): use it in a sweep of a flax.linen model"
        )
    if isinstance(spec, Rules) or (callable(spec) and not isinstance(spec, str | type)):
        return spec  # jinit.rules(...), an Initializer, a jinit.scheme(...) value, a function
    try:
        return registry.get(spec)
    except (ValueError, TypeError) as e:
        raise type(e)(f"apply_scheme: bad {what} {spec!r}: {e}") from None


def _rules_leaves(rules: Rules, info: _Leaves, key: jax.Array) -> list:
    leaves = list(info.leaves)
    floats = [i for i, x in enumerate(leaves) if _is_float(x)]
    taken = rules.assign([info.paths[i] for i in floats])
    for i, r in zip(floats, taken, strict=True):
        if r is None:
            continue
        init, k = rules.rules[r][1], keys.named_key(key, info.paths[i])
        layout = info.kernels.get(i)
        leaves[i] = (
            init(k, tuple(leaves[i].shape), leaves[i].dtype)
            if layout is None
            else _draw_kernel(init, k, leaves[i], layout)
        )
    return leaves


def _check_rules(rules: Rules, info: _Leaves) -> None:
    paths = [info.paths[i] for i, x in enumerate(info.leaves) if _is_float(x)]
    taken = set(rules.assign(paths))
    for i, (pattern, _) in enumerate(rules.rules):
        if i not in taken:
            raise ValueError(
                f"apply_scheme: pattern {pattern!r} of {rules.label!r} matches no array of this model (or only "
                f"arrays an earlier pattern takes); its arrays: {', '.join(paths) or 'none'}"
            )


def apply_scheme(
    module_or_pytree: Any, scheme: Any, key: jax.Array, *, bias_init: Any = "zeros"
) -> Any:
    """The module (or any pytree of arrays) with every weight drawn by ``scheme`` and every bias by ``bias_init``
    (see the module doc for which leaves are weights and biases, and their layout).

    Args:
      module_or_pytree: an ``eqx.Module`` (or a list, dict, ... of them, or of arrays; a Flax params dict works
        too: its ``kernel`` leaves are drawn in their own layout).
      scheme: a scheme in any spelling jinit takes (``"he_normal"``, ``"HeNormal"``, ``"normal(stddev=0.1)"``, an
        Initializer, a :func:`jinit.scheme` value, a function ``(key, shape, dtype) -> array``), or a
        :func:`jinit.rules` value (then only the leaves its patterns match are drawn, by their rule).
      key: a PRNG key; the leaf at path ``p`` is drawn with ``fold_in(key, stable_hash(p))``.
      bias_init: the initializer of every bias (ignored by a rules scheme); default zeros.

    Returns:
      The same structure with the drawn leaves replaced (everything else is the same object).

    Raises:
      ValueError: an unknown scheme, the data-dependent ``"lsuv"``, a scheme that cannot draw one of the weights
        (``dirac`` on a Linear weight: naming the leaf), a rules pattern that matches nothing.
      TypeError: a spec of another type.

    Example:
      >>> import equinox as eqx, jax, jinit
      >>> layer = jinit.apply_scheme(eqx.nn.Linear(64, 128, key=jax.random.key(0)), "he_normal",
      ...                            jax.random.key(1))
      >>> layer.weight.shape, round(float(layer.weight.std()), 2), float(abs(layer.bias).max())
      ((128, 64), 0.17, 0.0)
    """
    init = _resolve(scheme, "scheme")
    info = _leaves(module_or_pytree)
    if isinstance(init, Rules):
        _check_rules(init, info)
        return jax.tree_util.tree_unflatten(info.treedef, _rules_leaves(init, info, key))
    bias = _resolve(bias_init, "bias_init")
    if isinstance(bias, Rules):
        raise TypeError("apply_scheme: bias_init must be an initializer, not jinit.rules(...)")
    leaves = list(info.leaves)
    for i, layout in info.kernels.items():
        try:
            leaves[i] = _draw_kernel(init, keys.named_key(key, info.paths[i]), leaves[i], layout)
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"apply_scheme: scheme {getattr(init, 'name', init)!r} cannot draw {info.paths[i]} of shape "
                f"{tuple(leaves[i].shape)}: {' '.join(str(e).split())}"
            ) from None
    for i in info.biases:
        leaves[i] = _draw_bias(bias, keys.named_key(key, info.paths[i]), leaves[i])
    return jax.tree_util.tree_unflatten(info.treedef, leaves)


# -------------------------------------------------------------------------------------------- pure dicts


def _set(tree: dict, path: str, value: Any) -> None:
    *head, last = path.split("/")
    for part in head:
        tree = tree.setdefault(part, {})
    tree[last] = value


def _get(tree: dict, path: str) -> Any:
    for part in path.split("/"):
        tree = tree[part]
    return tree


def _to_pure(info: _Leaves, leaves: list, select: Callable[[Any], bool] = _is_float) -> dict:
    """The arrays of ``leaves`` that ``select`` picks (the float arrays: a model's params) as a nested dict by
    path, weights in Flax's layout."""
    out: dict = {}
    for i, x in enumerate(leaves):
        if select(info.leaves[i]):
            _set(out, info.paths[i], flax_layout(x) if info.kernels.get(i) == "equinox" else x)
    return out


def _from_pure(info: _Leaves, pure: dict, select: Callable[[Any], bool] = _is_float) -> Any:
    """Inverse of :func:`_to_pure`: the template's tree with the selected leaves from ``pure``."""
    leaves = list(info.leaves)
    for i, x in enumerate(info.leaves):
        if select(x):
            v = _get(pure, info.paths[i])
            leaves[i] = equinox_layout(v) if info.kernels.get(i) == "equinox" else v
    return jax.tree_util.tree_unflatten(info.treedef, leaves)


def to_module(template: Any, params: dict) -> Any:
    """An Equinox module with the values of a sweep's ``params`` of one model (``result.params["params"]``
    indexed at that model; weights in Flax's layout, as the sweep keeps them): ``template`` is a module of the
    same structure (e.g. ``factory(key)``)."""
    if isinstance(params, dict) and set(params) == {"params"}:
        params = params["params"]
    return _from_pure(_leaves(template), params)


# ----------------------------------------------------------------------------------------------- factories


_FACTORIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _key_arguments(factory: Callable) -> Callable[[jax.Array], Any]:
    """How ``factory`` is called with a key: ``factory(key=key)`` when it names a ``key`` argument (Equinox's
    keyword-only ``key``), else ``factory(key)``."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    if "key" in params:
        return lambda key: factory(key=key)
    return lambda key: factory(key)


def is_factory(factory: Any) -> bool:
    """Whether ``factory`` builds an Equinox model from a key: an ``eqx.Module`` class, a function of one argument
    named ``key``, or a function of one argument that returns an ``eqx.Module`` when called with a key (tried
    abstractly, ``jax.eval_shape``, only when equinox is imported). Raises TypeError for a module instance."""
    eqx = sys.modules.get("equinox")
    if eqx is None:
        return False
    if isinstance(factory, eqx.Module):
        name = type(factory).__name__
        raise TypeError(
            f"model: got the Equinox module instance {name}(...); pass a factory key -> module, e.g. "
            f"lambda key: {name}(..., key=key)"
        )
    if isinstance(factory, type):
        return issubclass(factory, eqx.Module)
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return False
    required = [p for p in params if p.default is inspect.Parameter.empty]
    if len(required) != 1 or required[0].name == "rngs":
        return False
    if required[0].name == "key":
        return True
    try:
        if factory in _FACTORIES:
            return _FACTORIES[factory]
    except TypeError:  # not weak-referenceable
        pass
    try:
        out = jax.eval_shape(factory, jax.random.PRNGKey(0))
        found = isinstance(out, eqx.Module)
    except Exception:  # noqa: BLE001 - not a factory of a key (an NNX factory of rngs, ...)
        found = False
    try:
        _FACTORIES[factory] = found
    except TypeError:
        pass
    return found


# --------------------------------------------------------------------------------------- the sweep's functions


class _Call(NamedTuple):
    stateful: bool  # __call__(x, state, ...) -> (y, state)
    takes_key: bool


def _call_plan(model: Any, has_state: bool) -> _Call:
    cls = type(model).__name__
    try:
        params = inspect.signature(model.__call__).parameters
    except (TypeError, ValueError):
        params = {}
    stateful = "state" in params
    if has_state and not stateful:
        raise TypeError(
            f"model: {cls} has stateful layers (eqx.nn.State: BatchNorm, ...) but its __call__ takes no state; "
            "define __call__(self, x, state, *, key=None) -> (y, state)"
        )
    eqx = _eqx()
    for node in jax.tree_util.tree_leaves(model, is_leaf=lambda n: isinstance(n, eqx.nn.BatchNorm)):
        if isinstance(node, eqx.nn.BatchNorm) and node.axis_name != BATCH_AXIS:
            raise ValueError(
                f"model: a BatchNorm of {cls} has axis_name={node.axis_name!r}; jinit vmaps the batch under "
                f"the axis name {BATCH_AXIS!r}: build it as eqx.nn.BatchNorm(..., axis_name={BATCH_AXIS!r})"
            )
    return _Call(stateful, "key" in params)


def _build(factory: Callable, key: jax.Array) -> tuple[Any, Any]:
    eqx = _eqx()
    call = _key_arguments(factory)
    try:
        model, state = eqx.nn.make_with_state(call)(key)
    except Exception as e:  # noqa: BLE001 -- any failure of the user's factory becomes one line
        text = " ".join(str(e).split())[:300]
        raise ValueError(
            f"model: the factory {getattr(factory, '__qualname__', factory)!r} raised {type(e).__name__}: "
            f"{text}; it must build an eqx.Module from a key"
        ) from e
    if not isinstance(model, eqx.Module):
        raise TypeError(f"model: the factory returned {type(model).__name__}, not an eqx.Module")
    return model, state


def _state_paths(state: Any) -> list[str]:
    """Names of an ``eqx.nn.State``'s leaves: the path of the layer's ``StateIndex`` in the model (its marker,
    ``Net.bn.state_index`` -> ``bn/state_index``) and the leaf's place in its value (``bn/state_index/0``)."""
    values, markers = state.tree_flatten()
    out = []
    for marker, value in zip(markers, values, strict=True):
        parts = re.sub(r"\[(\w+)\]", r".\1", str(marker)).split(".")
        head = "/".join(p.strip("'\"") for p in parts[1:] if p) or str(marker)
        for p, _ in jax.tree_util.tree_flatten_with_path(value)[0]:
            out.append(f"{head}/{path_str(p)}" if p else head)
    return out


def _describe(model: Any, label: str | None) -> str:
    """The label, or the module's repr on one line with its arrays as ``f32[32,64]``."""
    if label is None:
        text = _eqx().tree_pformat(model, short_arrays=True, struct_as_array=True)
        text = " ".join(text.split()).replace("( ", "(").replace(" )", ")").replace(", )", ")")
    else:
        text = str(label)
    return text if len(text) <= _DESCRIPTION_CHARS else text[: _DESCRIPTION_CHARS - 3] + "..."


def functions(
    factory: Callable, kernel_init: Any, bias_init: Any, *, label: str | None = None
) -> tuple[Callable, Callable, tuple[str, str, int, str]]:
    """An Equinox factory as the sweep's pure functions (:class:`jinit.adapters.ModelFns` wraps them).

    Args:
      factory: ``key -> eqx.Module`` (see :func:`is_factory`).
      kernel_init: the scheme's initializer of every weight; None keeps the model's own values (a rules scheme,
        which the sweep applies afterwards to the params).
      bias_init: the initializer of every bias (with ``kernel_init``).
      label: the description recorded instead of the module's repr.

    Returns:
      ``(init, apply, (kind, name, param_count, description))``: ``init(key, x) -> (params, model_state)`` with
      ``params = {"params": {...}}`` (the float arrays by path, weights in Flax's layout) and ``model_state =
      {"state": {...}}`` for a model with ``eqx.nn.State`` (else ``{}``); ``apply(params, model_state, x, train,
      rng) -> (outputs, model_state)`` over a batch ``x``.
    """
    eqx = _eqx()
    model_t, state_t = eqx.filter_eval_shape(_build, factory, jax.random.PRNGKey(0))
    info, state_info = _leaves(model_t), _leaves(state_t, _state_paths(state_t))
    stray = [
        p for p, x in zip(info.paths, info.leaves, strict=True) if _is_array(x) and not _is_float(x)
    ]
    if stray:
        raise TypeError(
            f"model: {type(model_t).__name__} holds non-float arrays ({', '.join(stray[:4])}) that jinit cannot "
            "train; mark them eqx.field(static=True) or make them float"
        )
    has_state = bool(state_info.leaves)
    call = _call_plan(model_t, has_state)

    def init(key, x):
        del x  # Equinox modules are built from their sizes
        model, state = _build(factory, key)
        if kernel_init is not None:
            model = apply_scheme(model, kernel_init, key, bias_init=bias_init)
        params = {"params": _to_pure(info, jax.tree_util.tree_leaves(model))}
        if not has_state:
            return params, {}
        return params, {"state": _to_pure(state_info, jax.tree_util.tree_leaves(state), _is_array)}

    def apply(params, model_state, x, train, rng):
        model = eqx.nn.inference_mode(_from_pure(info, params["params"]), value=not train)
        state = (
            _from_pure(state_info, model_state["state"], _is_array)
            if has_state
            else eqx.nn.State(model)
        )
        batch_keys = (
            jax.random.split(rng, x.shape[0]) if call.takes_key and rng is not None else None
        )

        def one(xi, ki, state):
            kw = {} if ki is None else {"key": ki}
            return model(xi, state, **kw) if call.stateful else (model(xi, **kw), state)

        key_axis = None if batch_keys is None else 0
        out, new = jax.vmap(
            one, in_axes=(0, key_axis, None), out_axes=(0, None), axis_name=BATCH_AXIS
        )(x, batch_keys, state)
        if not train or not has_state:
            return out, model_state
        return out, {"state": _to_pure(state_info, jax.tree_util.tree_leaves(new), _is_array)}

    count = int(sum(int(np.prod(x.shape)) for x in info.leaves if _is_float(x)))
    name = type(model_t).__name__
    return init, apply, ("equinox", name, count, _describe(model_t, label))

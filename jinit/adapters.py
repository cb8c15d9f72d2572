"""Your Flax model (linen or NNX) as two pure functions a sweep can jit and vmap.

:func:`model_fns` turns a model factory into :class:`ModelFns`:

- ``init(key, x) -> (params, model_state)``: ``params`` is the plain nested dict ``{"params": {...}}`` (Flax
  variables style; for NNX the ``nnx.Param`` variables as ``nnx.to_pure_dict`` writes them), ``model_state`` a
  plain dict of the other collections that change in training (``{"batch_stats": {...}}`` for BatchNorm; ``{}``
  for a stateless model). Both are pytrees of arrays, so ``jax.vmap(init, in_axes=(0, None))(keys, x)`` builds
  many models at once.
- ``apply(params, model_state, x, train, rng) -> (outputs, model_state)``: ``train=True`` is training mode
  (BatchNorm normalizes with the batch statistics and the updated running statistics are returned, Dropout is
  active and keyed by ``rng``); ``train=False`` is evaluation (BatchNorm uses the running averages, Dropout is
  off, ``model_state`` comes back unchanged, ``rng`` may be None). ``train`` is a Python bool (static).

Factories (what :func:`model_fns` accepts):

- a **linen** factory ``(kernel_init, bias_init) -> nn.Module``;
- an **NNX** factory ``(kernel_init, bias_init, rngs) -> nnx.Module`` (a factory with a parameter named ``rngs``,
  or one that needs three arguments);
- a factory with **no init arguments**: ``lambda: Net()``, a linen Module class whose fields all have defaults,
  an NNX factory ``lambda rngs: Net(rngs=rngs)`` or an NNX Module class built as ``Net(rngs=rngs)``. Such a model
  keeps its own initializers (``kernel_init`` / ``bias_init`` are ignored, and :class:`ModelInfo` says so): only
  a per-layer ``jinit.rules`` scheme can initialize it (see :func:`jinit.rules.check_fit`).

The training flag: a parameter of ``__call__`` named ``train``, ``training`` or ``is_training`` is passed
``train``; one named ``deterministic`` is passed ``not train``. NNX models are also put in the matching mode with
``model.train()`` / ``model.eval()`` before every call (Flax's ``set_attributes`` of ``deterministic`` and
``use_running_average``), so an NNX model without a flag argument works as the NNX guides write it. An NNX
``__call__`` with an ``rngs`` parameter gets ``nnx.Rngs(dropout=rng)`` in training.

Keys (how ``init`` and ``apply`` derive every random stream from their one key):

- linen ``init``: exactly ``module.init(key, x)`` (plus the flag set to evaluation, ``train=False`` or
  ``deterministic=True``, when ``__call__`` has one), as jinit's sweep has always done, so results of models
  without a flag are bitwise those of earlier sweeps. ``apply`` in training: ``rngs={"dropout": rng}``.
- NNX ``init``: the factory gets ``nnx.Rngs(fold_in(key, 2), params=key, dropout=fold_in(key, 1))`` (``default``,
  ``params`` and ``dropout`` streams); ``x`` is not used (NNX modules are built from their sizes). The RNG
  streams a module keeps (``nnx.Dropout(..., rngs=rngs)``) are not model state: ``apply`` rebuilds them and, in
  training, reseeds them as ``nnx.reseed(model, dropout=rng)`` does (every other stream ``tag`` with
  ``fold_in(rng, sha256(tag))``); in evaluation without ``rng`` they hold a fixed key.

Errors are raised before anything is compiled (building the factory, or tracing under ``jax.eval_shape``), as one
line that names the fix: a module instance where a factory is wanted, a factory of the wrong arity or kind, a
factory that raises, a ``__call__`` jinit cannot drive (a required argument other than the input and the flag; a
linen model with state collections but no flag), and, through :func:`check_outputs`, a wrong output width.

Example:
    >>> import flax.linen as nn, jax, jax.numpy as jnp
    >>> from jinit import adapters
    >>> class Net(nn.Module):
    ...     kernel_init: object
    ...     bias_init: object
    ...     @nn.compact
    ...     def __call__(self, x, train: bool = False):
    ...         x = nn.Dense(8, kernel_init=self.kernel_init, bias_init=self.bias_init)(x)
    ...         x = nn.BatchNorm(use_running_average=not train)(x)
    ...         return nn.Dense(3)(nn.Dropout(0.5, deterministic=not train)(x))
    >>> x = jnp.ones((4, 5))
    >>> fns = adapters.model_fns(Net, jax.nn.initializers.lecun_normal(), jax.nn.initializers.zeros, x=x)
    >>> fns.info.name, fns.info.param_count
    ('Net', 91)
    >>> params, state = fns.init(jax.random.PRNGKey(0), x)
    >>> sorted(state)
    ['batch_stats']
    >>> out, state = fns.apply(params, state, x, True, jax.random.PRNGKey(1))
    >>> out.shape
    (4, 3)
"""

from __future__ import annotations

import hashlib
import inspect
import re
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

__all__ = ["ModelFns", "ModelInfo", "check_outputs", "model_fns", "takes_dtype", "with_dtype"]

TRAIN_FLAGS = ("train", "training", "is_training")
"""``__call__`` parameter names passed ``train``."""
DETERMINISTIC_FLAGS = ("deterministic",)
"""``__call__`` parameter names passed ``not train``."""

_DESCRIPTION_CHARS = 200
_NO_INIT_ARGS_NOTE = (
    "takes no kernel_init/bias_init (they are ignored; only jinit.rules schemes can initialize it)"
)


class ModelInfo(NamedTuple):
    """What a run records about the model.

    Attributes:
      kind: ``"linen"`` or ``"nnx"``.
      name: the module class name, e.g. ``"MyNet"``.
      param_count: the number of scalars in ``params``.
      description: the user's label, or a short repr (at most 200 characters); a model that takes no
        ``kernel_init`` / ``bias_init`` says so here.
    """

    kind: str
    name: str
    param_count: int
    description: str


class ModelFns(NamedTuple):
    """A model as pure functions (see the module doc).

    Attributes:
      init: ``init(key, x) -> (params, model_state)``.
      apply: ``apply(params, model_state, x, train, rng) -> (outputs, model_state)``.
      info: the :class:`ModelInfo`, or None when it is unknown (a linen model given without an example input).
    """

    init: Callable
    apply: Callable
    info: ModelInfo | None = None


# ----------------------------------------------------------------------------------------------- factories


def _linen():
    import flax.linen as nn

    return nn


def _nnx():
    from flax import nnx

    return nnx


def _nnx_if_imported():
    """``flax.nnx`` when something imported it, else None: an object can be an NNX module only when its class's
    module was imported, so a linen model never pays for importing NNX (half a second)."""
    return sys.modules.get("flax.nnx")


def _name(obj: Any) -> str:
    return (
        getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
    )


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__


def _binds(sig: inspect.Signature | None, *args: Any, **kwargs: Any) -> bool:
    if sig is None:
        return True
    try:
        sig.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


def _signature(fn: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


class FactoryKind(NamedTuple):
    """How a model factory is called (:func:`factory_kind`)."""

    kind: str  # "linen" | "nnx"
    build: Callable  # (kernel_init, bias_init, rngs) -> module
    no_init_args: bool


def factory_kind(factory: Any, call: Callable | None = None) -> FactoryKind:
    """How to call ``factory``: its kind (as far as the signature tells) and whether it takes the init arguments.
    With ``call``, the build function calls ``call`` (e.g. ``factory`` with more arguments bound) the way it would
    call ``factory``."""
    nn, nnx = _linen(), _nnx_if_imported()
    make = factory if call is None else call
    if isinstance(factory, nn.Module):
        raise TypeError(
            f"model: got the module instance {type(factory).__name__}(...); pass a factory, e.g. "
            f"lambda kernel_init, bias_init: {type(factory).__name__}(..., kernel_init=kernel_init)"
        )
    if nnx is not None and isinstance(factory, nnx.Module):
        raise TypeError(
            f"model: got the NNX module instance {type(factory).__name__}(...); pass a factory, e.g. "
            f"lambda kernel_init, bias_init, rngs: {type(factory).__name__}(..., rngs=rngs)"
        )
    if not callable(factory):
        raise TypeError(
            f"model: expected a factory (kernel_init, bias_init) -> nn.Module or "
            f"(kernel_init, bias_init, rngs) -> nnx.Module, got {factory!r}"
        )
    if nnx is not None and isinstance(factory, type) and issubclass(factory, nnx.Module):
        # A class is built with the init arguments only when its __init__ names them, as nnx.Linear does.
        init_sig = _signature(factory.__init__)
        named = init_sig is not None and {"kernel_init", "bias_init"} <= set(init_sig.parameters)
        if named and _binds(init_sig, None, kernel_init=None, bias_init=None, rngs=None):
            return FactoryKind(
                "nnx", lambda k, b, rngs: make(kernel_init=k, bias_init=b, rngs=rngs), False
            )
        if _binds(init_sig, None, rngs=None):  # __init__(self, *, rngs) with defaults
            return FactoryKind("nnx", lambda k, b, rngs: make(rngs=rngs), True)
        raise TypeError(
            f"model: the NNX class {factory.__name__} cannot be built as {factory.__name__}(rngs=rngs); pass a "
            f"factory, e.g. lambda kernel_init, bias_init, rngs: {factory.__name__}(..., rngs=rngs)"
        )
    if isinstance(factory, type) and issubclass(factory, nn.Module):
        from jinit.rules import takes_init_args

        if takes_init_args(factory):
            return FactoryKind("linen", lambda k, b, rngs: make(k, b), False)
        return FactoryKind("linen", lambda k, b, rngs: make(), True)
    sig = _signature(factory)
    names = [] if sig is None else list(sig.parameters)
    if "rngs" in names:
        if _binds(sig, None, None, rngs=None):
            return FactoryKind("nnx", lambda k, b, rngs: make(k, b, rngs=rngs), False)
        if _binds(sig, rngs=None):
            return FactoryKind("nnx", lambda k, b, rngs: make(rngs=rngs), True)
    elif _binds(sig, None, None):
        return FactoryKind("linen", lambda k, b, rngs: make(k, b), False)
    elif _binds(sig, None, None, None):
        return FactoryKind("nnx", lambda k, b, rngs: make(k, b, rngs), False)
    elif _binds(sig):
        return FactoryKind("linen", lambda k, b, rngs: make(), True)
    elif _binds(sig, None):
        return FactoryKind("nnx", lambda k, b, rngs: make(rngs), True)
    raise TypeError(
        f"model: the factory {_name(factory)}{sig} takes neither (kernel_init, bias_init) (linen), "
        "(kernel_init, bias_init, rngs) (NNX) nor no arguments; pass e.g. "
        "lambda kernel_init, bias_init: MyNet(kernel_init=kernel_init)"
    )


def _build(factory: Any, plan: FactoryKind, kernel_init: Any, bias_init: Any, rngs: Any) -> Any:
    try:
        return plan.build(kernel_init, bias_init, rngs)
    except Exception as e:  # noqa: BLE001 -- any failure of the user's factory becomes one line
        expect = (
            "(kernel_init, bias_init, rngs)" if plan.kind == "nnx" else "(kernel_init, bias_init)"
        )
        raise ValueError(
            f"model: the factory {_name(factory)} raised {_one_line(e)}; it must build a module from {expect}"
        ) from e


def takes_dtype(factory: Any) -> bool:
    """Whether a model factory takes the compute dtype: a linen Module class with a ``dtype`` field, an NNX Module
    class whose ``__init__`` has a ``dtype`` argument, or a factory function with a ``dtype`` parameter."""
    nn, nnx = _linen(), _nnx_if_imported()
    if isinstance(factory, type) and issubclass(factory, nn.Module):
        return "dtype" in getattr(factory, "__dataclass_fields__", {})
    if nnx is not None and isinstance(factory, type) and issubclass(factory, nnx.Module):
        sig = _signature(factory.__init__)
    else:
        sig = _signature(factory)
    if sig is None or "dtype" not in sig.parameters:
        return False
    return sig.parameters["dtype"].kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def with_dtype(factory: Any, dtype: Any) -> Callable:
    """The model factory ``factory`` building its modules with ``dtype=dtype`` (Flax's compute dtype: activations
    and matmuls; the parameters keep their own ``param_dtype``), called as ``factory`` is (same kind, same init
    arguments).

    Raises:
      TypeError: ``factory`` takes no ``dtype`` (:func:`takes_dtype`): one line naming it and the fix.
    """
    kind = factory_kind(factory)
    if not takes_dtype(factory):
        name = _name(factory)
        raise TypeError(
            f"model: {name} takes no dtype, so the compute dtype {jax.numpy.dtype(dtype).name} cannot reach its layers; "
            f"give it a dtype (a linen field `dtype: Any = None`, an NNX __init__ argument, or a factory "
            f"parameter `dtype=None`) and pass it to its layers (nn.Dense(..., dtype=dtype)), or sweep "
            "compute_dtype='float32' only"
        )

    def call(*args, **kwargs):
        return factory(*args, **kwargs, dtype=dtype)

    built = factory_kind(factory, call=call)
    if kind.kind == "linen" and kind.no_init_args:

        def model():
            return built.build(None, None, None)

    elif kind.kind == "linen":

        def model(kernel_init, bias_init):
            return built.build(kernel_init, bias_init, None)

    elif kind.no_init_args:

        def model(rngs):
            return built.build(None, None, rngs)

    else:

        def model(kernel_init, bias_init, rngs):
            return built.build(kernel_init, bias_init, rngs)

    model.__name__ = model.__qualname__ = _name(factory)
    return model


# ------------------------------------------------------------------------------------------------ __call__


class _Call(NamedTuple):
    flag: str | None  # the __call__ parameter that takes the training flag
    negate: bool  # True for ``deterministic``
    takes_rngs: bool  # an NNX __call__ with an ``rngs`` parameter

    def kwargs(self, train: bool) -> dict[str, bool]:
        return {} if self.flag is None else {self.flag: (not train) if self.negate else train}


def _call_plan(module: Any, kind: str) -> _Call:
    cls = type(module)
    sig = _signature(cls.__call__)
    if sig is None:
        return _Call(None, False, False)
    params = list(sig.parameters.values())[1:]  # without self
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not params or params[0].kind not in (*positional, inspect.Parameter.VAR_POSITIONAL):
        raise TypeError(
            f"model: {cls.__name__}.__call__{sig} takes no input argument; define __call__(self, x)"
        )
    rest = params[1:] if params[0].kind in positional else params
    flag, negate = None, False
    for p in rest:
        if (
            p.name in TRAIN_FLAGS + DETERMINISTIC_FLAGS
            and p.kind != inspect.Parameter.POSITIONAL_ONLY
        ):
            flag, negate = p.name, p.name in DETERMINISTIC_FLAGS
            break
    takes_rngs = kind == "nnx" and any(p.name == "rngs" for p in rest)
    for p in rest:
        if p.name in (flag, "rngs" if takes_rngs else None):
            continue
        if p.default is inspect.Parameter.empty and p.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            raise TypeError(
                f"model: {cls.__name__}.__call__{sig} has a required argument {p.name!r} jinit cannot set "
                f"(jinit passes the input and a training flag named {'/'.join(TRAIN_FLAGS)} or deterministic); "
                f"give {p.name!r} a default or rename the training flag"
            )
    return _Call(flag, negate, takes_rngs)


def _describe(module: Any, label: str | None, no_init_args: bool) -> str:
    if label is not None:
        text = str(label)
    else:
        text = _linen_repr(module) if _linen_module(module) else _nnx_repr(module)
    if no_init_args:
        text = f"{text}; {_NO_INIT_ARGS_NOTE}"
    if len(text) > _DESCRIPTION_CHARS:
        if no_init_args:
            head = _DESCRIPTION_CHARS - len(_NO_INIT_ARGS_NOTE) - 5
            text = f"{text[:head]}...; {_NO_INIT_ARGS_NOTE}"
        else:
            text = text[: _DESCRIPTION_CHARS - 3] + "..."
    return text[:_DESCRIPTION_CHARS]


def _linen_repr(module: Any) -> str:
    """``Net(width=3, ...)``: the module's fields on one line (Flax's repr without its comments)."""
    text = " ".join(repr(module).split()).replace("( # attributes ", "(")
    return re.sub(r" = ", "=", re.sub(r"(?<=\S) (?=\w+ = )", ", ", text)).replace(" )", ")")


_NNX_FIELDS = ("in_features", "out_features", "num_features", "kernel_size", "rate", "features")


def _nnx_repr(module: Any) -> str:
    """``Net(bn=BatchNorm(16), drop=Dropout(0.3), l1=Linear(6, 16))``: the direct submodules with their sizes,
    in attribute-name order (the order NNX keeps them in)."""
    nnx = _nnx()

    def short(m: Any) -> str:
        args = [
            repr(getattr(m, f))
            for f in _NNX_FIELDS
            if isinstance(getattr(m, f, None), int | float | tuple)
        ]
        return f"{type(m).__name__}({', '.join(args)})"

    parts = [f"{k}={short(v)}" for k, v in vars(module).items() if isinstance(v, nnx.Module)]
    return f"{type(module).__name__}({', '.join(parts)})"


def _linen_module(obj: Any) -> bool:
    return isinstance(obj, _linen().Module)


def _count(tree: Any) -> int:
    return int(sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree)))


def _tag_key(rng: jax.Array, tag: str) -> jax.Array:
    h = np.uint32(int.from_bytes(hashlib.sha256(tag.encode("utf-8")).digest()[:4], "little"))
    return jax.random.fold_in(rng, h)


# ------------------------------------------------------------------------------------------------- linen


_NOT_STATE = ("params", "intermediates")


def _linen_fns(factory, plan, kernel_init, bias_init, x, label) -> ModelFns:
    from flax import errors as flax_errors
    from flax.core import unfreeze

    module = _build(factory, plan, kernel_init, bias_init, None)
    if not _linen_module(module):
        hint = (
            "an NNX factory takes (kernel_init, bias_init, rngs)"
            if isinstance(module, _nnx().Module)
            else ""
        )
        raise TypeError(
            f"model: the factory {_name(factory)} returned {type(module).__name__}, not a flax.linen Module"
            + (f"; {hint}" if hint else "")
        )
    call = _call_plan(module, "linen")
    cls = type(module).__name__

    def init(key, x):
        variables = unfreeze(module.init(key, x, **call.kwargs(False)))
        state = {c: v for c, v in variables.items() if c not in _NOT_STATE}
        if state and call.flag is None:
            raise ValueError(
                f"model: {cls} has the state collection(s) {', '.join(sorted(state))} but its __call__ has no "
                "training flag; add `train: bool = False` to __call__ and set e.g. "
                "nn.BatchNorm(use_running_average=not train)"
            )
        return {"params": variables.get("params", {})}, state

    def apply(params, model_state, x, train, rng):
        variables = {**model_state, "params": params["params"]}
        rngs = {} if rng is None else {"dropout": rng}
        mode = "training" if train else "evaluation"
        try:
            if train and model_state:
                out, updated = module.apply(
                    variables, x, rngs=rngs, mutable=list(model_state), **call.kwargs(True)
                )
                updated = unfreeze(updated)
                return out, {c: updated.get(c, v) for c, v in model_state.items()}
            return module.apply(variables, x, rngs=rngs, **call.kwargs(bool(train))), model_state
        except flax_errors.InvalidRngError as e:
            fix = (
                "pass rng to apply in training"
                if train and rng is None
                else "add `train: bool = False` to __call__ and set nn.Dropout(deterministic=not train)"
            )
            raise ValueError(
                f"model: {cls} asks for an RNG in {mode} ({_one_line(e)}); {fix}"
            ) from e
        except flax_errors.ModifyScopeVariableError as e:
            raise ValueError(
                f"model: {cls} changes its state in evaluation ({_one_line(e)}); set e.g. "
                "nn.BatchNorm(use_running_average=not train) with the training flag of __call__"
            ) from e

    info = None
    if x is not None:
        params, _ = jax.eval_shape(init, jax.random.PRNGKey(0), x)
        info = ModelInfo("linen", cls, _count(params), _describe(module, label, plan.no_init_args))
    return ModelFns(init, apply, info)


# --------------------------------------------------------------------------------------------------- NNX


def _nnx_rngs(key: jax.Array):
    nnx = _nnx()
    return nnx.Rngs(jax.random.fold_in(key, 2), params=key, dropout=jax.random.fold_in(key, 1))


def _collection(var_type: type) -> str:
    nnx = _nnx()
    if issubclass(var_type, nnx.BatchStat):
        return "batch_stats"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", var_type.__name__).lower()


def _nnx_fns(factory, plan, kernel_init, bias_init, x, label) -> ModelFns:
    nnx = _nnx()

    def build(key):
        return _build(factory, plan, kernel_init, bias_init, _nnx_rngs(key))

    abstract = nnx.eval_shape(lambda: build(jax.random.PRNGKey(0)))
    if not isinstance(abstract, nnx.Module):
        hint = "; a linen factory takes (kernel_init, bias_init)" if _linen_module(abstract) else ""
        raise TypeError(
            f"model: the factory {_name(factory)} returned {type(abstract).__name__}, not a flax.nnx Module{hint}"
        )
    call = _call_plan(abstract, "nnx")
    cls = type(abstract).__name__

    # The variable types other than Param and the RNG streams: the model state, one collection per type.
    _, _, _, other = nnx.split(abstract, nnx.Param, nnx.RngState, ...)
    types = sorted(
        {type(v) for _, v in nnx.to_flat_state(other)},
        key=lambda t: (_collection(t), t.__qualname__),
    )
    names = [_collection(t) for t in types]
    if len(set(names)) != len(names):
        raise TypeError(f"model: {cls} has variable types that share a collection name: {types}")
    graphdef, t_params, t_rng, *t_state = nnx.split(abstract, nnx.Param, nnx.RngState, *types)
    tags = sorted({n.tag for _, n in nnx.iter_graph(abstract) if isinstance(n, nnx.RngStream)})

    def pure(state):
        return nnx.to_pure_dict(state)

    def filled(template, values):
        # fresh Variables, filled in place; the template stays abstract
        state = jax.tree_util.tree_map(lambda v: v, template)
        nnx.replace_by_pure_dict(state, values)
        return state

    def rng_state():
        def fill(var):
            shape = tuple(var.shape)
            if isinstance(var, nnx.RngKey):
                k = jax.random.key(0)
                return var.replace(k if shape == () else jax.random.split(k, shape))
            return var.replace(jax.numpy.zeros(shape, var.dtype))

        flat = [(path, fill(var)) for path, var in nnx.to_flat_state(t_rng)]
        return nnx.from_flat_state(flat)

    def init(key, x):
        del x  # NNX modules are built from their sizes
        model = build(key)
        _, params, _, *state = nnx.split(model, nnx.Param, nnx.RngState, *types)
        return {"params": pure(params)}, {n: pure(s) for n, s in zip(names, state, strict=True)}

    def apply(params, model_state, x, train, rng):
        states = [filled(t, model_state[n]) for n, t in zip(names, t_state, strict=True)]
        model = nnx.merge(graphdef, filled(t_params, params["params"]), rng_state(), *states)
        if train:
            model.train()
        else:
            model.eval()
        kwargs: dict[str, Any] = call.kwargs(bool(train))
        if rng is not None:
            nnx.reseed(
                model,
                policy="match_shape",
                **{tag: rng if tag == "dropout" else _tag_key(rng, tag) for tag in tags},
            )
            if call.takes_rngs and train:
                kwargs["rngs"] = nnx.Rngs(dropout=rng)
        before = [jax.tree_util.tree_leaves(nnx.state(model, t)) for t in types]
        try:
            out = model(x, **kwargs)
        except ValueError as e:
            if "no `rngs` argument was provided" not in str(e):
                raise
            raise ValueError(
                f"model: a Dropout of {cls} has no RNG stream in training ({_one_line(e)}); build it with the "
                "factory's rngs, nnx.Dropout(rate, rngs=rngs), or give __call__ an rngs argument"
            ) from e
        if not train:
            after = [jax.tree_util.tree_leaves(nnx.state(model, t)) for t in types]
            changed = [
                n
                for n, b, a in zip(names, before, after, strict=True)
                if len(b) != len(a) or any(u is not v for u, v in zip(b, a, strict=True))
            ]
            if changed:
                raise ValueError(
                    f"model: {cls} changes its {', '.join(changed)} in evaluation; let model.eval() or the training "
                    "flag set e.g. use_running_average (do not pass use_running_average=False to BatchNorm)"
                )
            return out, model_state
        new = nnx.split(model, nnx.Param, nnx.RngState, *types, ...)[3:]
        return out, {n: pure(s) for n, s in zip(names, new, strict=False)}

    info = ModelInfo("nnx", cls, _count(t_params), _describe(abstract, label, plan.no_init_args))
    return ModelFns(init, apply, info)


# ---------------------------------------------------------------------------------------------- public


def model_fns(
    factory: Callable,
    kernel_init: Any,
    bias_init: Any,
    *,
    x: Any = None,
    label: str | None = None,
) -> ModelFns:
    """Turns a linen or NNX model factory into pure ``init`` / ``apply`` functions (see the module doc).

    Args:
      factory: a linen factory ``(kernel_init, bias_init) -> nn.Module``, an NNX factory
        ``(kernel_init, bias_init, rngs) -> nnx.Module``, or a factory with no init arguments (a Module class
        with defaults, ``lambda: Net()``, ``lambda rngs: Net(rngs=rngs)``).
      kernel_init: the kernel initializer given to the factory (ignored by a factory without init arguments).
      bias_init: the bias initializer given to the factory (likewise).
      x: an example input batch (optional): when given, ``init`` is traced on it with ``jax.eval_shape``, so the
        errors that need the model's variables are raised here, and a linen model's :class:`ModelInfo` is filled.
      label: the description recorded in :class:`ModelInfo` instead of the module's repr.

    Returns:
      :class:`ModelFns` ``(init, apply, info)``; ``info`` is None for a linen model given without ``x``.

    Raises:
      TypeError: a module instance instead of a factory, a factory of the wrong arity or kind, a ``__call__``
        with a required argument jinit cannot set.
      ValueError: the factory raised; a linen model with state collections but no training flag.
    """
    plan = factory_kind(factory)
    if plan.kind == "nnx":
        fns = _nnx_fns(factory, plan, kernel_init, bias_init, x, label)
        if x is not None:
            jax.eval_shape(fns.init, jax.random.PRNGKey(0), x)
        return fns
    return _linen_fns(factory, plan, kernel_init, bias_init, x, label)


def check_outputs(fns: ModelFns, x1: Any, expected_shape_tail: tuple[int, ...]) -> tuple[int, ...]:
    """Checks, abstractly (``jax.eval_shape``: nothing runs or compiles), that the model's outputs for ``x1`` end
    in ``expected_shape_tail`` in training and in evaluation.

    Args:
      fns: the model's :class:`ModelFns`.
      x1: an input batch (a leading batch axis).
      expected_shape_tail: the shape each example's output must have, e.g. ``(10,)`` for ten classes, ``()`` or
        ``(1,)`` for one regression target.

    Returns:
      The shape of the model's output for ``x1``.

    Raises:
      ValueError: the output has another shape ("the model outputs 5 values per example but the data has 10
        classes"), or the model cannot run on ``x1``.
    """
    tail = tuple(int(d) for d in expected_shape_tail)
    key = jax.random.PRNGKey(0)
    params, state = jax.eval_shape(fns.init, key, x1)
    out_shapes = []
    for train in (True, False):
        # evaluation without an RNG, as the contract allows: a model that draws random numbers there fails here
        rng = key if train else None
        out, _ = jax.eval_shape(
            lambda p, s, x, t=train, r=rng: fns.apply(p, s, x, t, r), params, state, x1
        )
        if not hasattr(out, "shape"):
            raise ValueError(
                f"the model returns {type(out).__name__} (a pytree); jinit needs one array of outputs per example"
            )
        out_shapes.append(tuple(out.shape))
    shape = out_shapes[0]
    got = shape[1:]
    if got != tail:
        name = fns.info.name if fns.info is not None else "the model"
        n_got = int(np.prod(got)) if got else 1
        n_want = int(np.prod(tail)) if tail else 1
        if len(got) <= 1 and len(tail) <= 1:
            raise ValueError(
                f"{name} outputs {n_got} value{'s' if n_got != 1 else ''} per example but the data has "
                f"{n_want} {'classes' if n_want > 1 else 'target'} (output shape {shape}); set the last layer's "
                f"width to {n_want}"
            )
        raise ValueError(
            f"{name} outputs shape {got} per example but the data needs {tail} (output shape {shape})"
        )
    if out_shapes[1] != shape:
        raise ValueError(
            f"the model's output shape differs in training {shape} and evaluation {out_shapes[1]}"
        )
    return shape

"""What a sweep needs before anything compiles: the data, the model factory and its cache key, the schemes checked
against the model, the optimizer and its key.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jinit import models as models_lib
from jinit import train as train_lib
from jinit.sweep.config import (
    SweepConfig,
    _initializer,
    _is_lsuv,
    _kernel_init,
    is_custom_model,
    resolve_schemes,
)

_log = logging.getLogger("jinit.sweep")


class _Setup(NamedTuple):
    make_model: Callable  # the model factory: the user's (any kind jinit.adapters takes) or the built-in one
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
    model_info: Any = None  # jinit.adapters.ModelInfo of the model (of the first scheme)


def _model_factory(config: SweepConfig, num_classes: int, make_model: Callable | None):
    if make_model is not None:
        from jinit import adapters

        # a module instance, a bad signature: one-line errors (built with placeholder initializers)
        adapters.model_fns(
            make_model, jax.nn.initializers.lecun_normal(), jax.nn.initializers.zeros
        )
        return make_model, None  # keyed by what it computes: _custom_model_key
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
    if make_model is None and is_custom_model(config.model):
        raise ValueError(
            f"this config records your own model ({config.model}): pass the model factory again, "
            "sweep.run(config, model=...)"
        )
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
    model_info = _check_schemes_fit(mm, schemes, bias_init, x_train[:1])
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
        model_info,
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
    """The optax transformation of a sweep and its key for the program cache.

    The transformation is the injected form of :func:`jinit.sweep.axes.optimizer` (the learning rate and weight
    decay live in each model's ``opt_state.hyperparams``, so one program serves every value of those axes). Its
    key: the config's optimizer name and whether it adds a weight decay (not the values: they are arrays of the
    state), or for your own optimizer a SHA-256 of its lowered (not compiled) ``init`` and ``update``, so that a
    changed optimizer never gets a cached program."""
    import optax

    from jinit.sweep import axes

    if optimizer is None:
        tx, names = axes.optimizer(config)
        return tx, (config.optimizer, "injected", tuple(sorted(names)))
    if not isinstance(optimizer, optax.GradientTransformation):
        axes._lr_argument(optimizer)
        probe = optimizer(float(axes.values(config, "learning_rate")[0]))
        if not isinstance(probe, optax.GradientTransformation):
            raise TypeError(
                f"the optimizer factory returned {_describe(probe)}, not an optax.GradientTransformation"
            )
    tx, _ = axes.optimizer(config, optimizer)
    params = {"params": _abstract_model(setup)[2]["params"]}  # what the optimizer updates
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


def model_fns(make_model: Callable, scheme: Any, bias_init: Any, x: Any = None):
    """The :class:`jinit.adapters.ModelFns` of the model ``make_model`` builds with ``scheme``'s kernel init."""
    from jinit import adapters

    return adapters.model_fns(make_model, _kernel_init(scheme), bias_init, x=x)


def variables_init(fns) -> Callable:
    """``init(key, x) -> variables``: the model's parameters and state as one Flax variables dict (``{"params":
    ..., "batch_stats": ...}``), the form the sweep stacks, hashes and saves."""

    def init(key, x):
        params, state = fns.init(key, x)
        return {**state, **params}

    return init


def linen_module(make_model: Callable, scheme: Any, bias_init: Any):
    """The linen module of ``scheme`` (for what needs a linen module: LSUV, activation capture), or None for an
    NNX model."""
    from jinit import adapters
    from jinit.rules import model_factory

    if adapters._plan(make_model).kind != "linen":
        return None
    return model_factory(make_model)(_kernel_init(scheme), bias_init)


def _custom_model_key(make_model: Callable, schemes, bias_init, x1: np.ndarray) -> tuple:
    """What a user's model computes, as a key of the compiled-program caches: a SHA-256 of the lowered (not
    compiled) ``init`` of each scheme's model and of its ``apply`` in training and in evaluation. A factory that
    builds another model on a later call (it reads a global that changed, or was redefined in a notebook cell)
    gets another key, so a cached program of the old model is never reused; the same model hits the cache."""
    from jinit.rules import Rules

    x = jax.ShapeDtypeStruct((1,) + x1.shape[1:], jnp.float32)
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    h = hashlib.sha256()
    for _, scheme in schemes:
        if isinstance(scheme, Rules) or _is_lsuv(scheme):
            continue  # built on the model's own init, lowered below with the first plain scheme
        fns = model_fns(make_model, scheme, bias_init)
        h.update(jax.jit(fns.init).lower(key, x).as_text().encode())
    fns = model_fns(make_model, schemes[0][1], bias_init)
    params, state = jax.eval_shape(fns.init, jax.random.PRNGKey(0), x)
    # as evaluation calls it, and as training does: with a dropout key (a dropout rate shows only there)
    evaluate = jax.jit(lambda p, s, x: fns.apply(p, s, x, False, None))
    h.update(evaluate.lower(params, state, x).as_text().encode())
    train = jax.jit(lambda p, s, x, r: fns.apply(p, s, x, True, r))
    h.update(train.lower(params, state, x, key).as_text().encode())
    return ("custom", h.hexdigest())


def _check_schemes_fit(make_model: Callable, schemes, bias_init, x1: np.ndarray):
    """Initializes every scheme's model abstractly (``jax.eval_shape``: nothing is computed or compiled), so a
    scheme that cannot serve one of the model's kernels (``dirac`` on a Dense kernel, ``identity`` on a conv)
    fails here with its name, before anything is compiled. Returns the model's :class:`jinit.adapters.ModelInfo`
    (of the first scheme's model)."""
    from jinit import adapters
    from jinit.rules import check_fit

    x1 = jax.ShapeDtypeStruct(x1.shape, jnp.float32)
    key = jax.random.PRNGKey(0)
    plan = adapters._plan(make_model)

    def shapes(kernel_init, bias, k, x):
        fns = adapters.model_fns(make_model, kernel_init, bias)
        return variables_init(fns)(k, x)

    for label, scheme in schemes:
        if _is_lsuv(scheme) and plan.kind != "linen":
            raise ValueError(
                f"scheme {label!r} needs a flax.linen model (LSUV rescales the outputs of linen layers); "
                "this model is an NNX one"
            )
        # rules schemes: their patterns and the shapes their initializers serve
        if check_fit(shapes, label, scheme, bias_init, x1, no_init_args=plan.no_init_args):
            continue
        fns = model_fns(make_model, scheme, bias_init)
        try:
            jax.eval_shape(fns.init, key, x1)
        except (ValueError, TypeError) as e:
            if str(e).startswith(
                "model:"
            ):  # the model's own error (jinit.adapters), not the scheme's
                raise type(e)(str(e).splitlines()[0]) from None
            raise ValueError(
                f"scheme {label!r} cannot initialize this model: {e}".rstrip()
                + " (`jinit schemes` says which kernels each scheme applies to)"
            ) from None
    return model_fns(make_model, schemes[0][1], bias_init, x1).info


def _abstract_model(setup: _Setup):
    """The model of the sweep's first scheme (its :class:`jinit.adapters.ModelFns`), a one-example input and the
    shapes of its variables (``jax.eval_shape``: nothing is computed)."""
    fns = model_fns(setup.make_model, setup.schemes[0][1], setup.bias_init)
    x1 = jax.ShapeDtypeStruct((1,) + setup.x_train.shape[1:], jnp.float32)
    return fns, x1, jax.eval_shape(variables_init(fns), jax.random.PRNGKey(0), x1)

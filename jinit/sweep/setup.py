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
from jinit.sweep.config import SweepConfig, _initializer, _is_lsuv, _kernel_init, resolve_schemes

_log = logging.getLogger("jinit.sweep")


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


def _abstract_model(setup: _Setup):
    """The model of the sweep's first scheme, a one-example input and the shapes of its variables
    (``jax.eval_shape``: nothing is computed)."""
    module = setup.make_model(_kernel_init(setup.schemes[0][1]), setup.bias_init)
    x1 = jax.ShapeDtypeStruct((1,) + setup.x_train.shape[1:], jnp.float32)
    return module, x1, jax.eval_shape(module.init, jax.random.PRNGKey(0), x1)

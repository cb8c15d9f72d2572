"""What a sweep trains on and with, resolved and checked before anything compiles: the data and its splits, the task,
the model factory (and a key of what it computes) and its form for each compute dtype of the sweep, the schemes
checked against the model, the optimizer (and a key of what it computes). :func:`resolve` returns them as one :class:`Inputs` value; :mod:`jinit.sweep.plan` builds the
grid and the layout on it.
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
from jinit.sweep import hyper, precision
from jinit.sweep.config import SweepConfig, is_custom_model
from jinit.sweep.schemes import initializer, is_lsuv, kernel_init_of, resolve_schemes

_log = logging.getLogger("jinit.sweep")


class Inputs(NamedTuple):
    """The resolved inputs of a sweep (:func:`resolve`)."""

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
    # the task (a jinit.train.Task; None: classification), its key for the program cache and the fingerprint,
    # and the validation set (None without a validation split): see _task_and_data
    task: Any = None
    task_key: Any = ("classification",)
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    outputs_tail: tuple[int, ...] | None = (
        None  # one example's output shape (None: not known before training)
    )
    # {compute dtype: (model factory, its key)} of the sweep's compute dtypes (None: float32 only, make_model);
    # float32 is make_model itself, which also initializes every model (see compute_model)
    compute: dict[str, tuple[Callable, Any]] | None = None


def compute_model(inputs: Inputs, compute_dtype: str = "float32") -> tuple[Callable, Any]:
    """``(model factory, key)`` of the model that trains in ``compute_dtype`` (:mod:`jinit.sweep.precision`):
    ``make_model`` itself for float32, the model built with ``dtype=bfloat16`` for bfloat16."""
    if inputs.compute and compute_dtype in inputs.compute:
        return inputs.compute[compute_dtype]
    if compute_dtype != "float32":
        raise ValueError(f"the sweep has no compute dtype {compute_dtype!r}")
    return inputs.make_model, inputs.model_key


def with_compute(inputs: Inputs, compute_dtype: str) -> Inputs:
    """``inputs`` whose ``make_model`` and ``model_key`` are the model that trains in ``compute_dtype``."""
    mm, key = compute_model(inputs, compute_dtype)
    return inputs._replace(make_model=mm, model_key=key)


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


def resolve(
    config: SweepConfig, make_model: Callable | None, data: Any = None, task: Any = None
) -> Inputs:
    """Loads the data and resolves the task, the model and the schemes of ``config`` (with your own ``make_model``,
    ``data`` and ``task`` when given), checking each against the others abstractly (``jax.eval_shape``: nothing is
    compiled). Raises ValueError/TypeError naming the bad value."""
    if make_model is None and is_custom_model(config.model):
        raise ValueError(
            f"this config records your own model ({config.model}): pass the model factory again, "
            "sweep.run(config, model=...)"
        )
    schemes = resolve_schemes(
        config.schemes, model=None if make_model is not None else config.model
    )
    bias_init = initializer(config.bias_init, "bias_init")
    task = _resolve_task(task, data)
    ds = _dataset(config, data)
    task = train_lib.make_task(ds.task if task is None else task)
    for name, size, n in (
        ("train_size", config.train_size, ds.x_train.shape[0]),
        ("test_size", config.test_size, ds.x_test.shape[0]),
    ):
        if size is not None and size > n:
            split = name.split("_")[0]
            raise ValueError(
                f"{name}={size} is larger than the {split} set of {ds.name} ({n} examples)"
            )
    x_train, y_train, x_test, y_test, x_val, y_val = _split(config, ds)
    if config.batch_size > x_train.shape[0]:
        raise ValueError(
            f"batch_size={config.batch_size} is larger than the training set ({x_train.shape[0]} examples)"
        )
    y_dtype = _target_dtype(task, ds)
    y_train, y_test = _targets(task, ds, y_train, "y_train"), _targets(task, ds, y_test, "y_test")
    if y_val is not None:
        y_val = _targets(task, ds, y_val, "y_val")
    mm, model_key = _model_factory(config, _output_width(task, ds, y_train), make_model)
    model_info = check_schemes_fit(mm, schemes, bias_init, x_train[:1])
    if model_key is None:
        model_key = _custom_model_key(mm, schemes, bias_init, x_train[:1])
    task_key, outputs_tail = _check_task(task, ds, mm, schemes, bias_init, x_train[:1], y_train[:1])
    compute = _compute_models(config, make_model, mm, model_key, schemes, bias_init, x_train[:1])
    return Inputs(
        mm,
        model_key,
        schemes,
        bias_init,
        np.asarray(x_train, np.float32),
        np.asarray(y_train, y_dtype),
        np.asarray(x_test, np.float32),
        np.asarray(y_test, y_dtype),
        int(ds.num_classes),
        ds.name,
        str(getattr(ds, "source", "")),
        model_info=model_info,
        task=task,
        task_key=task_key,
        x_val=None if x_val is None else np.asarray(x_val, np.float32),
        y_val=None if y_val is None else np.asarray(y_val, y_dtype),
        outputs_tail=outputs_tail,
        compute=compute,
    )


def _compute_models(config, make_model, mm, model_key, schemes, bias_init, x1) -> dict | None:
    """``{compute dtype: (factory, key)}`` of the sweep's compute dtypes (None for float32 only). A bfloat16
    model is the factory called with ``dtype=jnp.bfloat16`` (:func:`jinit.adapters.with_dtype`: your own model is
    refused, in one line, when it takes no dtype); its key adds the dtype (jinit's models) or is a SHA-256 of its
    lowered apply (yours)."""
    from jinit import adapters

    names = precision.values(config, "compute_dtype")
    if names == ("float32",):
        return None
    out = {}
    for name in names:
        if name == "float32":
            out[name] = (mm, model_key)
            continue
        built = adapters.with_dtype(mm, jnp.dtype(name))
        if make_model is None:
            out[name] = (built, (*model_key, ("dtype", name)))
            continue
        try:
            out[name] = (built, ("custom", name, _apply_key(built, schemes[0][1], bias_init, x1)))
        except (ValueError, TypeError) as e:
            raise type(e)(f"with compute_dtype={name!r}: {str(e).splitlines()[0]}") from None
    return out


# ---------------------------------------------------------------------------------------------------------------
# Data and task (your own Dataset, the validation split, binary / regression / custom tasks).


def _resolve_task(task: Any, data: Any) -> Any:
    """``task`` checked before any data is loaded: None, a ``train.Task`` or a task name."""
    if task is None or isinstance(task, train_lib.Task):
        return task
    return train_lib.make_task(
        task
    )  # a name: ValueError with the choices; anything else: TypeError


def _dataset(config: SweepConfig, data: Any):
    """The sweep's :class:`jinit.data.Dataset`: ``data`` as given, else ``data.load(config.dataset)``."""
    from jinit import data as data_lib

    if data is None:
        return data_lib.load(config.dataset, data_dir=config.data_dir)
    if not isinstance(data, data_lib.Dataset):
        raise TypeError(
            f"data must be a jinit.data.Dataset (jinit.data.from_arrays(x_train, y_train, x_test, y_test) or "
            f"jinit.data.load(name)), got {type(data).__name__}"
        )
    return data


def _split(config: SweepConfig, ds):
    """The sweep's training, test and validation arrays: ``train_size`` / ``test_size`` first, then the validation
    split (``val_size`` / ``val_fraction``: :func:`jinit.data.split_validation` with the root ``seed``), or the
    dataset's own validation set."""
    import dataclasses

    from jinit import data as data_lib

    x_train, y_train = ds.x_train[: config.train_size], ds.y_train[: config.train_size]
    x_test, y_test = ds.x_test[: config.test_size], ds.y_test[: config.test_size]
    x_val, y_val = ds.x_val, ds.y_val
    if config.val_size is not None or config.val_fraction is not None:
        if x_val is not None:
            raise ValueError(
                f"the dataset {ds.name!r} already has a validation set ({ds.num_val} examples); drop "
                "val_size / val_fraction (--val-size / --val-fraction) or pass it without one"
            )
        part = data_lib.split_validation(
            dataclasses.replace(ds, x_train=x_train, y_train=y_train),
            val_size=config.val_size,
            val_fraction=config.val_fraction,
            seed=int(config.seed),
        )
        x_train, y_train, x_val, y_val = part.x_train, part.y_train, part.x_val, part.y_val
    return x_train, y_train, x_test, y_test, x_val, y_val


def is_class_task(task) -> bool:
    """Whether the task's predictions are class labels (classification, binary): churn, the noise floor and the
    majority-class test apply to it."""
    return task is None or task.name in ("classification", "binary")


def _target_dtype(task, ds):
    if task.name in ("classification", "binary"):
        return np.int32
    if task.name == "regression":
        return np.float32
    return np.float32 if np.asarray(ds.y_train).dtype.kind == "f" else np.int32


def _targets(task, ds, y: np.ndarray, what: str) -> np.ndarray:
    """The targets of ``task``, checked against the data (one line naming the problem, never the values)."""
    y = np.asarray(y)
    if task.name in ("classification", "binary") and ds.task == "regression":
        raise ValueError(
            f"the {task.name} task needs class labels, but {ds.name!r} holds regression targets "
            f"({what} is {y.dtype}{list(y.shape)}); use task='regression' or from_arrays(..., task='{task.name}')"
        )
    if task.name == "binary":
        bad = int(np.count_nonzero((y != 0) & (y != 1)))
        if bad:
            raise ValueError(
                f"the binary task needs labels 0 and 1, but {what} of {ds.name!r} has {bad} other label(s) "
                f"({ds.num_classes} classes); use task='classification'"
            )
    return y


def _output_width(task, ds, y_train: np.ndarray) -> int:
    """The output width a built-in model gets: the classes, 1 logit (binary) or the target dims (regression)."""
    if task.name == "binary":
        return 1
    if task.name == "regression" or (task.name == "custom" and ds.task == "regression"):
        return 1 if y_train.ndim == 1 else int(np.prod(y_train.shape[1:]))
    return int(ds.num_classes)


def _expected_outputs(task, ds, y1: np.ndarray) -> tuple[tuple[int, ...], ...] | None:
    """The per-example output shapes a model of ``task`` may have (None: any, a custom task)."""
    if task.name == "classification":
        return ((int(ds.num_classes),),)
    if task.name == "binary":
        return ((1,), ())
    if task.name == "regression":
        tail = tuple(y1.shape[1:])
        return (tail, tail + (1,)) if tail == () else (tail,)
    return None


def _check_outputs(make_model: Callable, scheme, bias_init, x1: np.ndarray, expected, what: str):
    """The shape of one example's outputs (``jax.eval_shape`` of the model's ``apply``: nothing is computed) and a
    one-line ValueError when it is not one of ``expected``. Returns None when the model cannot be called this way
    (then training reports it)."""
    from jinit import adapters

    x = jax.ShapeDtypeStruct((1,) + x1.shape[1:], jnp.float32)
    try:  # the model driven as jinit.adapters drives it (train flag, BatchNorm state), in evaluation
        fns = adapters.model_fns(make_model, kernel_init_of(scheme), bias_init)
        params, state = jax.eval_shape(fns.init, jax.random.PRNGKey(0), x)
        outputs, _ = jax.eval_shape(
            lambda p, s, x: fns.apply(p, s, x, False, None), params, state, x
        )
    except Exception as e:  # noqa: BLE001 - a model this call cannot drive: the model checks report it
        _log.debug("output shape check skipped: %s", e)
        return None
    if not hasattr(outputs, "shape"):
        return None
    tail = tuple(outputs.shape[1:])
    if expected is not None and tail not in expected:
        want = " or ".join(str(t) for t in expected)
        raise ValueError(
            f"the model outputs shape {tail} per example, but {what} needs {want}; make its last layer output "
            f"{int(np.prod(expected[0])) if expected[0] else 1} value(s) per example"
        )
    return outputs


def _check_task(task, ds, make_model, schemes, bias_init, x1, y1) -> Any:
    """Checks the model's output width against the task and the task's loss and metrics on the model's outputs
    (abstractly, before compiling); returns the task's key for the program cache and the fingerprint: the name for
    a built-in task, and for a custom one a SHA-256 of its lowered loss and metrics, so that a changed loss never
    gets a cached program; and the shape of one example's outputs (None when unknown)."""
    expected = _expected_outputs(task, ds, y1)
    what = {
        "classification": f"classification with {ds.num_classes} classes",
        "binary": "a binary task (one logit)",
        "regression": f"regression with targets of shape {tuple(y1.shape[1:])}",
    }.get(task.name, "")
    outputs = _check_outputs(make_model, schemes[0][1], bias_init, x1, expected, what)
    tail = None if outputs is None else tuple(outputs.shape[1:])
    if task.name in train_lib.TASKS and train_lib.TASKS[task.name]() == task:
        return (task.name,), tail
    if (
        outputs is None
    ):  # cannot lower the loss without the outputs' shape: the Task's functions are its key
        return ("custom", task), tail
    y = jax.ShapeDtypeStruct(y1.shape, y1.dtype)
    mask = jax.ShapeDtypeStruct(y1.shape[:1], jnp.bool_)

    def metrics(o, t, m):
        ref = None if task.reference is None else task.reference(t, m)
        return task.stats(o, t, ref)

    try:
        h = hashlib.sha256(repr((task.name, task.metric_names, task.higher_is_better)).encode())
        h.update(jax.jit(task.loss).lower(outputs, y).as_text().encode())
        h.update(jax.jit(metrics).lower(outputs, y, mask).as_text().encode())
        h.update(jax.jit(task.predict).lower(outputs).as_text().encode())
    except Exception as e:  # noqa: BLE001 - any failure of the user's loss or metric on the model's outputs
        raise ValueError(
            f"the {task.name} task's loss or metric fails on this model's outputs {tuple(outputs.shape)} and "
            f"targets {tuple(y1.shape)}: {type(e).__name__}: {e}".splitlines()[0]
        ) from None
    return ("custom", h.hexdigest()), tail


def check_optimizer(optimizer: Any) -> None:
    """``optimizer`` is None, an optax ``GradientTransformation`` or a factory of one (checked before compiling)."""
    import optax

    if optimizer is None or isinstance(optimizer, optax.GradientTransformation):
        return
    if not callable(optimizer) or isinstance(optimizer, str | type):
        raise TypeError(
            f"optimizer must be an optax.GradientTransformation or a factory learning_rate -> "
            f"GradientTransformation, got {describe(optimizer)}; for a named optimizer use "
            f"SweepConfig(optimizer=...), one of {', '.join(train_lib.OPTIMIZERS)}"
        )


def describe(value: Any, limit: int = 200, *, object_ids: bool = True) -> str:
    """``repr(value)``, cut to ``limit`` characters; without ``object_ids``, memory addresses (``at 0x7f...``) are
    left out, so that what the run folder records is the same in every process."""
    import re

    text = repr(value)
    if not object_ids:
        text = re.sub(r" at 0x[0-9a-fA-F]+", "", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def make_optimizer(
    config: SweepConfig, optimizer: Any, inputs: Inputs, state_dtype: str = "float32"
):
    """The optax transformation of a sweep and its key for the program cache.

    The transformation is the injected form of :func:`jinit.sweep.hyper.optimizer` (the learning rate and weight
    decay live in each model's ``opt_state.hyperparams``, so one program serves every value of those axes). Its
    key: the config's optimizer name and whether it adds a weight decay (not the values: they are arrays of the
    state), or for your own optimizer a SHA-256 of its lowered (not compiled) ``init`` and ``update``, so that a
    changed optimizer never gets a cached program. ``state_dtype``: the dtype its state is stored in (a precision of
    the sweep; the key says it for the named optimizers, and what your own computes shows it)."""
    import optax

    if optimizer is None:
        tx, names = hyper.optimizer(config, state_dtype=state_dtype)
        key = (config.optimizer, "injected", tuple(sorted(names)))
        return tx, key if state_dtype == "float32" else (*key, ("state_dtype", state_dtype))
    if not isinstance(optimizer, optax.GradientTransformation):
        hyper.lr_argument(optimizer)
        probe = optimizer(float(hyper.values(config, "learning_rate")[0]))
        if not isinstance(probe, optax.GradientTransformation):
            raise TypeError(
                f"the optimizer factory returned {describe(probe)}, not an optax.GradientTransformation"
            )
    tx, _ = hyper.optimizer(config, optimizer, state_dtype)
    params = {"params": abstract_model(inputs)[2]["params"]}  # what the optimizer updates
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

    return adapters.model_fns(make_model, kernel_init_of(scheme), bias_init, x=x)


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

    if adapters.factory_kind(make_model).kind != "linen":
        return None
    return model_factory(make_model)(kernel_init_of(scheme), bias_init)


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
        if isinstance(scheme, Rules) or is_lsuv(scheme):
            continue  # built on the model's own init, lowered below with the first plain scheme
        fns = model_fns(make_model, scheme, bias_init)
        h.update(jax.jit(fns.init).lower(key, x).as_text().encode())
    _hash_apply(h, make_model, schemes[0][1], bias_init, x1)
    return ("custom", h.hexdigest())


def _hash_apply(h, make_model: Callable, scheme, bias_init, x1: np.ndarray) -> None:
    """Updates ``h`` with the model's lowered ``apply`` in evaluation and in training (with a dropout key: a dropout
    rate shows only there)."""
    x = jax.ShapeDtypeStruct((1,) + x1.shape[1:], jnp.float32)
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    fns = model_fns(make_model, scheme, bias_init)
    params, state = jax.eval_shape(fns.init, jax.random.PRNGKey(0), x)
    evaluate = jax.jit(lambda p, s, x: fns.apply(p, s, x, False, None))
    h.update(evaluate.lower(params, state, x).as_text().encode())
    train = jax.jit(lambda p, s, x, r: fns.apply(p, s, x, True, r))
    h.update(train.lower(params, state, x, key).as_text().encode())


def _apply_key(make_model: Callable, scheme, bias_init, x1: np.ndarray) -> str:
    """A SHA-256 of the model's lowered ``apply`` (:func:`_hash_apply`)."""
    h = hashlib.sha256()
    _hash_apply(h, make_model, scheme, bias_init, x1)
    return h.hexdigest()


def check_schemes_fit(make_model: Callable, schemes, bias_init, x1: np.ndarray):
    """Initializes every scheme's model abstractly (``jax.eval_shape``: nothing is computed or compiled), so a
    scheme that cannot serve one of the model's kernels (``dirac`` on a Dense kernel, ``identity`` on a conv)
    fails here with its name, before anything is compiled. Returns the model's :class:`jinit.adapters.ModelInfo`
    (of the first scheme's model)."""
    from jinit import adapters
    from jinit.rules import check_fit

    x1 = jax.ShapeDtypeStruct(x1.shape, jnp.float32)
    key = jax.random.PRNGKey(0)
    plan = adapters.factory_kind(make_model)

    def shapes(kernel_init, bias, k, x):
        fns = adapters.model_fns(make_model, kernel_init, bias)
        return variables_init(fns)(k, x)

    for label, scheme in schemes:
        if is_lsuv(scheme) and plan.kind != "linen":
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


def abstract_model(inputs: Inputs):
    """The model of the sweep's first scheme (its :class:`jinit.adapters.ModelFns`), a one-example input and the
    shapes of its variables (``jax.eval_shape``: nothing is computed)."""
    fns = model_fns(inputs.make_model, inputs.schemes[0][1], inputs.bias_init)
    x1 = jax.ShapeDtypeStruct((1,) + inputs.x_train.shape[1:], jnp.float32)
    return fns, x1, jax.eval_shape(variables_init(fns), jax.random.PRNGKey(0), x1)

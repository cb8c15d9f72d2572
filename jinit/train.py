"""Pure single-model training pieces: tasks, optimizers, train step, scanned epoch, batched evaluation.

Everything here is written for ONE model and is pure (no Python side effects, no host syncs), so the sweep engine
(:mod:`jinit.sweep`) can ``jax.vmap`` it over a leading model axis and ``jax.jit`` the result. :func:`train_plain`
is the reference trainer: a plain Python loop over steps of a jitted single-model step, with the same data order,
used by the tests to check that a model trained inside the vmapped sweep is the model you would get alone.

Data order: every epoch draws a permutation of the training set from ``fold_in(data_key, epoch)`` and takes
``steps_per_epoch = n_train // batch_size`` full batches from it (the remainder is dropped; it changes every epoch).

The model: :func:`make_train` takes a ``ModelFns`` (:mod:`jinit.adapters`): ``init(key, x) -> (params,
model_state)`` and ``apply(params, model_state, x, train, rng) -> (outputs, model_state)``, or, as before, a
linen-style ``apply_fn(variables, x, rngs=...)`` (a stateless model: ``Module.apply``). The training step
differentiates the loss w.r.t. ``params`` only and keeps the ``model_state`` the model returns in training mode
(e.g. BatchNorm's running statistics, :attr:`TrainState.model_state`); evaluation runs ``train=False``.

The task (:class:`Task`): the per-example loss, the metrics measured in evaluation and how predictions are stored.
:func:`classification` (softmax cross-entropy with integer labels; accuracy; argmax predictions; the default, the
same program as before tasks existed), :func:`binary` (one logit, sigmoid cross-entropy; accuracy; ``logit > 0``),
:func:`regression` (per-example mean squared error over the target dims; metrics ``r2`` (primary) and ``rmse``;
the float outputs as predictions) and :func:`custom_task` (your loss and metric). Every task has a *primary*
metric (its first, :attr:`Task.primary`) and a direction (:attr:`Task.higher_is_better`). The log fields named
``*accuracy`` (:class:`EpochLogs`, :class:`PlainResult`) hold the task's primary metric, whatever its name (the
accuracy for classification, R^2 for regression); the other metrics are in ``test_metrics`` / ``val_metrics``.

Validation: ``epoch`` takes an optional validation set (``x_val, y_val, val_mask``), evaluated by the same
function as the test set at every logging interval and at initialization (``val_*`` log fields). Without one the
program is the one without validation (no extra work).

Per-model hyperparameters: :func:`make_optimizer` with ``inject=True`` returns an ``optax.inject_hyperparams``
optimizer whose learning rate (and weight decay) live in ``opt_state.hyperparams``; :func:`set_hyperparams`
writes one value per model into a stacked (vmapped) state, so one vmapped program trains every model with its own
value. Weight decay: ``adamw`` uses optax's decoupled weight decay (``optax.adamw(weight_decay=...)``, Loshchilov
& Hutter); ``adam, sgd, momentum, rmsprop`` add an L2 term ``weight_decay * params`` to the gradient before the
optimizer (``optax.add_decayed_weights``), which is what torch's ``weight_decay`` argument does.

Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from jinit import models, train
    >>> model = models.MLP(hidden=(16,), num_classes=3)
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)
    >>> trainer = train.make_train(model.apply, train.make_optimizer("adam", 1e-2), batch_size=16,
    ...                            steps_per_epoch=4)
    >>> state = trainer.init(model.init(jax.random.key(0), x[:1]))
    >>> state, logs = trainer.epoch(state, jax.random.key(1), jax.random.key(2), 0, x, y, x, y)
    >>> logs.test_accuracy.shape
    (1,)

References:
    The Keras initializer tutorial setup (784-128-64-10, Adam 1e-3, batch 32) this module reproduces;
    optax (https://github.com/google-deepmind/optax) for the optimizers and ``inject_hyperparams``;
    Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019 (adamw vs L2).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jinit import keys

# ----------------------------------------------------------------------------------------------------------------
# Tasks.


class Task(NamedTuple):
    """What a model is trained for: its loss, its evaluation metrics and its stored predictions.

    Made by :func:`classification`, :func:`binary`, :func:`regression` or :func:`custom_task` (build one by hand
    only to do what those cannot). All functions are pure and traced inside the training program.

    Attributes:
      name: ``"classification"``, ``"binary"``, ``"regression"`` or ``"custom"``.
      loss: ``loss(outputs, targets) -> [batch]``, one loss per example (the training loss is their mean).
      metric_names: the metrics evaluation measures, the primary one first.
      higher_is_better: whether a higher primary metric is better.
      stats: ``stats(outputs, targets, reference) -> tuple`` of per-example ``[batch]`` arrays; evaluation sums
        each over the evaluated (unmasked) examples.
      reduce: ``reduce(sums, count) -> tuple`` of the metrics (in ``metric_names`` order) from those sums and the
        number of evaluated examples.
      predict: ``predict(outputs) -> [batch, ...]``, the stored predictions.
      reference: ``reference(targets, mask) -> pytree`` computed once over the whole evaluated set before its
        batches (e.g. the mean target, for R^2), passed to ``stats``; None: ``stats`` gets None.
    """

    name: str
    loss: Callable[[jax.Array, jax.Array], jax.Array]
    metric_names: tuple[str, ...]
    higher_is_better: bool
    stats: Callable[..., tuple[jax.Array, ...]]
    reduce: Callable[..., tuple[jax.Array, ...]]
    predict: Callable[[jax.Array], jax.Array]
    reference: Callable[..., Any] | None = None

    @property
    def primary(self) -> str:
        """The primary metric's name (what the ``*accuracy`` log fields hold)."""
        return self.metric_names[0]


def _ratio(sums, count):
    return (sums[0] / count,)


def _ce_loss(outputs, targets):
    return optax.softmax_cross_entropy_with_integer_labels(outputs, targets)


def _argmax(outputs):
    return jnp.argmax(outputs, axis=-1).astype(jnp.int32)


def _ce_stats(outputs, targets, reference):
    return (_argmax(outputs) == targets,)


def classification() -> Task:
    """Multi-class classification: softmax cross-entropy with integer labels, accuracy, argmax predictions.

    The model outputs one logit per class (``[batch, classes]``); targets are integer labels ``[batch]``.
    """
    return Task("classification", _ce_loss, ("accuracy",), True, _ce_stats, _ratio, _argmax)


def _one_logit(outputs, targets):
    """The logit ``[batch]`` of a binary model's outputs ``[batch, 1]`` or ``[batch]``."""
    if outputs.ndim == targets.ndim + 1 and outputs.shape[-1] == 1:
        outputs = outputs[..., 0]
    if outputs.shape != targets.shape:
        raise ValueError(
            f"a binary task needs one logit per example: the model outputs shape {outputs.shape} for targets of "
            f"shape {targets.shape} (make the last layer output 1 value)"
        )
    return outputs


def _bce_loss(outputs, targets):
    logit = _one_logit(outputs, targets)
    return optax.sigmoid_binary_cross_entropy(logit, targets.astype(logit.dtype))


def _bce_stats(outputs, targets, reference):
    return ((_one_logit(outputs, targets) > 0) == (targets > 0.5),)


def _positive(outputs):
    logit = outputs[..., 0] if outputs.ndim >= 2 and outputs.shape[-1] == 1 else outputs
    return (logit > 0).astype(jnp.int32)


def binary() -> Task:
    """Binary classification: one logit per example (``[batch, 1]`` or ``[batch]``), sigmoid cross-entropy
    (``optax.sigmoid_binary_cross_entropy``) against 0/1 targets, accuracy, predictions ``logit > 0`` (int32)."""
    return Task("binary", _bce_loss, ("accuracy",), True, _bce_stats, _ratio, _positive)


def _as_targets(outputs, targets):
    """Regression outputs in the targets' shape (``[batch, 1]`` outputs for ``[batch]`` targets are squeezed)."""
    if outputs.shape != targets.shape and outputs.shape == targets.shape + (1,):
        outputs = outputs[..., 0]
    if outputs.shape != targets.shape:
        raise ValueError(
            f"a regression task needs one output per target: the model outputs shape {outputs.shape} for targets "
            f"of shape {targets.shape}"
        )
    return outputs.astype(jnp.float32), targets.astype(jnp.float32)


def _flat(a):
    return a.reshape((a.shape[0], -1))


def _mse_loss(outputs, targets):
    outputs, targets = _as_targets(outputs, targets)
    return jnp.mean(_flat(jnp.square(outputs - targets)), axis=1)


def _mean_target(targets, mask):
    t = _flat(targets.astype(jnp.float32))
    n = jnp.maximum(jnp.sum(mask), 1)
    return jnp.sum(jnp.where(mask[:, None], t, 0.0), axis=0) / n


def _mse_stats(outputs, targets, reference):
    outputs, targets = _as_targets(outputs, targets)
    se = _flat(jnp.square(outputs - targets))
    st = jnp.square(_flat(targets) - reference)
    return se.mean(axis=1), se.sum(axis=1), st.sum(axis=1)


def _mse_reduce(sums, count):
    mse, sse, sst = sums
    r2 = jnp.where(sst > 0, 1.0 - sse / jnp.where(sst > 0, sst, 1.0), jnp.nan)
    return r2, jnp.sqrt(mse / count)


def _identity(outputs):
    return outputs


def regression() -> Task:
    """Regression: per-example mean squared error over the target dims (the loss); metrics ``r2`` (primary,
    higher is better) and ``rmse``; the float outputs as predictions.

    Over the evaluated (unmasked) set of ``n`` examples with ``d`` targets each: ``rmse = sqrt(sum of squared
    errors / (n d))`` (the square root of the test loss) and ``r2 = 1 - SSE / SST`` with ``SST`` the squared
    deviations of the targets from their mean over that set, per target dim, summed over the dims (for ``d > 1``
    the variance-weighted R^2); NaN when the targets are constant. Outputs ``[batch, 1]`` for targets ``[batch]``
    are accepted.
    """
    return Task(
        "regression",
        _mse_loss,
        ("r2", "rmse"),
        True,
        _mse_stats,
        _mse_reduce,
        _identity,
        _mean_target,
    )


class _Metric(NamedTuple):
    """A custom metric as ``stats``: its per-example values (a NamedTuple so equal tasks compare equal)."""

    metric: Callable

    def __call__(self, outputs, targets, reference):
        return (self.metric(outputs, targets),)


def custom_task(
    loss: Callable[[jax.Array, jax.Array], jax.Array],
    metric: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    *,
    name: str | None = None,
    higher_is_better: bool | None = None,
) -> Task:
    """A task with your loss and metric.

    Args:
      loss: ``loss(outputs, targets) -> [batch]``, one loss per example (e.g. ``optax.huber_loss`` averaged over
        the output dims).
      metric: ``metric(outputs, targets) -> [batch]``, one value per example; the metric is their mean over the
        evaluated set. None: the loss itself is the metric (named ``"loss"``, lower is better).
      name: the metric's name (default: ``metric.__name__``, or ``"metric"`` for a lambda).
      higher_is_better: whether a higher metric is better (required with ``metric``).

    Returns:
      A :class:`Task` named ``"custom"`` with the one metric ``name``; its predictions are the model's outputs.

    Raises:
      TypeError: ``loss`` or ``metric`` not callable, ``higher_is_better`` not a bool.
      ValueError: ``metric`` given without ``higher_is_better``; an empty ``name``.
    """
    for what, f in (("loss", loss), ("metric", metric)):
        if f is not None and not callable(f):
            raise TypeError(
                f"custom_task: {what} must be a function (outputs, targets) -> one value per example, "
                f"got {f!r}"
            )
    if metric is None:
        metric = loss
        name = "loss" if name is None else name
        higher_is_better = False if higher_is_better is None else higher_is_better
    elif higher_is_better is None:
        raise ValueError(
            "custom_task: say whether a higher metric is better, e.g. "
            "custom_task(loss, metric, name='mae', higher_is_better=False)"
        )
    if name is None:
        name = getattr(metric, "__name__", "metric")
        name = "metric" if not name.isidentifier() else name  # "<lambda>"
    if not isinstance(name, str) or not name:
        raise ValueError(f"custom_task: name must be a non-empty string, got {name!r}")
    if not isinstance(higher_is_better, bool):
        raise TypeError(
            f"custom_task: higher_is_better must be True or False, got {higher_is_better!r}"
        )
    return Task("custom", loss, (name,), higher_is_better, _Metric(metric), _ratio, _identity)


TASKS: dict[str, Callable[[], Task]] = {
    "classification": classification,
    "binary": binary,
    "regression": regression,
}


def make_task(task: Task | str | None) -> Task:
    """The :class:`Task` for ``task``: a Task as is, a name (``classification, binary, regression``) made by its
    factory, None: classification.

    Raises:
      ValueError: an unknown name (listing the choices). TypeError: anything else.
    """
    if task is None:
        return classification()
    if isinstance(task, Task):
        return task
    if isinstance(task, str):
        if task not in TASKS:
            close = difflib.get_close_matches(task, list(TASKS), n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"unknown task {task!r}.{hint} Valid choices: {', '.join(TASKS)} "
                "(or train.custom_task(loss, metric, ...))."
            )
        return TASKS[task]()
    raise TypeError(
        f"task must be a jinit.train.Task (train.classification(), train.regression(), train.custom_task(...)) "
        f"or one of {', '.join(TASKS)}, got {task!r}"
    )


# ----------------------------------------------------------------------------------------------------------------
# Optimizers.

OPTIMIZERS: dict[str, Callable[[float], optax.GradientTransformation]] = {
    "adam": lambda lr: optax.adam(lr),
    "sgd": lambda lr: optax.sgd(lr),
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "adamw": lambda lr: optax.adamw(lr),
    "rmsprop": lambda lr: optax.rmsprop(lr),
}

#: The named optimizers with their state stored in a dtype: optax's own options where it has them (Adam's
#: ``mu_dtype``, the momentum's ``accumulator_dtype``); :func:`state_in` stores what optax has no option for.
_IN_DTYPE: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adam": lambda lr, dt: optax.adam(lr, mu_dtype=dt),
    "sgd": lambda lr, dt: optax.sgd(lr),
    "momentum": lambda lr, dt: optax.sgd(lr, momentum=0.9, accumulator_dtype=dt),
    "adamw": lambda lr, dt: optax.adamw(lr, mu_dtype=dt),
    "rmsprop": lambda lr, dt: optax.rmsprop(lr),
}

#: optax's default weight decay of ``adamw`` (what ``make_optimizer("adamw", lr)`` uses).
ADAMW_DEFAULT_WEIGHT_DECAY = 1e-4

#: The dtypes an optimizer's state may be stored in (``state_dtype``).
STATE_DTYPES = ("float32", "bfloat16")


def _stored(dtype: Any) -> Callable[[Any], Any]:
    """``state -> state`` with its float32 leaves in ``dtype``, except injected hyperparameters (a learning rate in
    ``opt_state.hyperparams`` stays float32)."""

    def leaf(x):
        return x.astype(dtype) if getattr(x, "dtype", None) == jnp.float32 else x

    def store(state):
        def node(n):
            if isinstance(n, _INJECTED):
                return n._replace(inner_state=store(n.inner_state))
            return leaf(n)

        return jax.tree.map(node, state, is_leaf=lambda n: isinstance(n, _INJECTED))

    return store


def state_in(tx: optax.GradientTransformation, dtype: Any) -> optax.GradientTransformationExtraArgs:
    """``tx`` with every float32 leaf of its state stored in ``dtype`` (e.g. ``jnp.bfloat16``).

    Each update casts the stored leaves back to the dtypes ``tx`` keeps them in, runs ``tx.update`` (its arithmetic
    unchanged, in float32), and stores the new state in ``dtype`` again (round to nearest even): the moments lose
    bits between steps, never within one. Leaves of other dtypes (step counts, leaves ``tx`` already keeps in a
    low precision, such as Adam's first moment under ``mu_dtype``) are left as they are, and so are the
    hyperparameters of an ``optax.inject_hyperparams`` state inside ``tx`` (its learning rate stays float32).

    Args:
      tx: an optax transformation.
      dtype: the dtype of the stored state.

    Returns:
      The transformation (its ``init`` and ``update`` take and return the stored state).

    Example:
      >>> import jax.numpy as jnp, optax
      >>> tx = state_in(optax.adam(1e-3), jnp.bfloat16)
      >>> state = tx.init({"w": jnp.ones(3)})
      >>> state[0].nu["w"].dtype, state[0].count.dtype
      (dtype(bfloat16), dtype('int32'))
    """
    inner = optax.with_extra_args_support(tx)
    store = _stored(jnp.dtype(dtype))

    def init(params):
        return store(inner.init(params))

    def update(updates, state, params=None, **extra_args):
        kept = jax.eval_shape(inner.init, updates)  # the dtypes tx keeps its state in
        state = jax.tree.map(
            lambda x, t: x if x.dtype == t.dtype else x.astype(t.dtype), state, kept
        )
        updates, state = inner.update(updates, state, params, **extra_args)
        return updates, store(state)

    return optax.GradientTransformationExtraArgs(init, update)


def _check_state_dtype(state_dtype: Any) -> Any:
    if state_dtype is None or state_dtype == "float32":
        return None
    if state_dtype not in STATE_DTYPES:
        raise ValueError(
            f"state_dtype={state_dtype!r} is not valid; valid choices: {', '.join(STATE_DTYPES)}"
        )
    return jnp.dtype(state_dtype)


def named_optimizer(
    name: str, learning_rate: Any, state_dtype: Any = None
) -> optax.GradientTransformation:
    """The optimizer ``name`` (:data:`OPTIMIZERS`) with its state stored in ``state_dtype`` (None or
    ``"float32"``: optax's optimizer as it is; ``"bfloat16"``: optax's dtype options, then :func:`state_in`)."""
    dt = _check_state_dtype(state_dtype)
    if dt is None:
        return OPTIMIZERS[name](learning_rate)
    return state_in(_IN_DTYPE[name](learning_rate, dt), dt)


def injectable(
    name: str, decayed: bool, state_dtype: Any = None
) -> Callable[..., optax.GradientTransformation]:
    """The optimizer ``name`` as a factory of its hyperparameters, for ``optax.inject_hyperparams`` (which reads
    their names from the signature); its state stored in ``state_dtype`` (:func:`named_optimizer`)."""
    dt = _check_state_dtype(state_dtype)
    if name == "adamw":

        def adamw(learning_rate, weight_decay):
            if dt is None:
                return optax.adamw(learning_rate, weight_decay=weight_decay)
            return state_in(optax.adamw(learning_rate, mu_dtype=dt, weight_decay=weight_decay), dt)

        return adamw
    if decayed:

        def with_l2(learning_rate, weight_decay):
            return optax.chain(
                optax.add_decayed_weights(weight_decay),
                named_optimizer(name, learning_rate, state_dtype),
            )

        return with_l2

    def plain(learning_rate):
        return named_optimizer(name, learning_rate, state_dtype)

    return plain


def make_optimizer(
    name: str,
    learning_rate: float,
    weight_decay: float | None = None,
    *,
    inject: bool = False,
    state_dtype: Any = None,
) -> optax.GradientTransformation:
    """Returns the optax optimizer called ``name``.

    Args:
      name: one of ``adam, sgd, momentum`` (SGD with momentum 0.9), ``adamw, rmsprop`` (optax defaults otherwise).
      learning_rate: a positive, finite step size.
      weight_decay: None (none; ``adamw``: optax's default 1e-4) or a non-negative number. ``adamw``: decoupled
        weight decay (``optax.adamw``'s ``weight_decay``, applied to the update, scaled by the learning rate);
        the others: an L2 term added to the gradient before the optimizer (``optax.add_decayed_weights``, as
        torch's ``weight_decay``).
      inject: return ``optax.inject_hyperparams(...)``: the same optimizer with ``learning_rate`` (and
        ``weight_decay``, when given or for ``adamw``) held in ``opt_state.hyperparams`` as arrays, which
        :func:`set_hyperparams` sets per model. It gives the same updates as ``inject=False`` (tested bit for bit).
      state_dtype: None or ``"float32"`` (optax's optimizer), or ``"bfloat16"``: its moments stored in bfloat16
        (:func:`named_optimizer`; the learning rate and weight decay stay float32).

    Returns:
      An ``optax.GradientTransformation``.

    Raises:
      ValueError: for an unknown name (listing the choices), a bad learning rate or weight decay.
      TypeError: a learning rate or weight decay that is not a number.
    """
    if name not in OPTIMIZERS:
        close = difflib.get_close_matches(str(name), list(OPTIMIZERS), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"unknown optimizer {name!r}.{hint} Valid choices: {', '.join(OPTIMIZERS)}."
        )
    lr = check_learning_rate(learning_rate)
    wd = None if weight_decay is None else check_weight_decay(weight_decay)
    _check_state_dtype(state_dtype)
    if not inject:
        if wd is None:
            return named_optimizer(name, lr, state_dtype)
        return injectable(name, True, state_dtype)(lr, wd)
    if name == "adamw" and wd is None:
        wd = ADAMW_DEFAULT_WEIGHT_DECAY
    factory = optax.inject_hyperparams(injectable(name, wd is not None, state_dtype))
    return factory(lr) if wd is None else factory(lr, wd)


def check_learning_rate(learning_rate: Any) -> float:
    """Returns ``learning_rate`` as a float; raises ValueError/TypeError unless it is a positive finite number."""
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float | np.floating):
        raise TypeError(f"learning rate must be a number, got {learning_rate!r}")
    try:
        lr = float(learning_rate)
    except OverflowError:  # an int beyond any float, e.g. 10**400
        lr = math.inf
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"learning rate must be positive and finite, got {learning_rate!r}")
    return lr


def check_weight_decay(weight_decay: Any) -> float:
    """Returns ``weight_decay`` as a float; raises ValueError/TypeError unless it is a finite number >= 0."""
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, int | float | np.floating):
        raise TypeError(f"weight decay must be a number, got {weight_decay!r}")
    try:
        wd = float(weight_decay)
    except OverflowError:
        wd = math.inf
    if not math.isfinite(wd) or wd < 0:
        raise ValueError(f"weight decay must be finite and >= 0, got {weight_decay!r}")
    return wd


_INJECTED = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)
_CHECKS = {"learning_rate": check_learning_rate, "weight_decay": check_weight_decay}


def set_hyperparams(opt_state: Any, **values: Any) -> Any:
    """Writes hyperparameter values into an injected optimizer state (:func:`make_optimizer` with ``inject=True``,
    or any ``optax.inject_hyperparams`` optimizer).

    Args:
      opt_state: the optimizer state of one model or of stacked models (``jax.vmap(optimizer.init)``: every
        hyperparameter has shape ``[n_models]``); injected states nested inside (``optax.chain``) are set too.
      **values: ``name=value``: a number (every model) or one value per model (shape ``[n_models]``).
        ``learning_rate`` must be positive and ``weight_decay`` >= 0 (checked when the values are concrete).

    Returns:
      The state with those hyperparameters replaced (in the dtype the state holds).

    Raises:
      ValueError: no injected hyperparameters in ``opt_state``, an unknown name (listing those held), a value of
        the wrong shape or a bad learning rate / weight decay.
    """
    for key, value in values.items():
        if key in _CHECKS and not isinstance(value, jax.core.Tracer):
            for v in np.ravel(np.asarray(value)):
                _CHECKS[key](v.item())
    found = []

    def is_injected(node):
        return isinstance(node, _INJECTED)

    def put(node):
        if not is_injected(node):
            return node
        found.append(sorted(node.hyperparams))
        hyper = dict(node.hyperparams)
        for key, value in values.items():
            if key not in hyper:
                raise ValueError(
                    f"the optimizer has no hyperparameter {key!r}; it holds {', '.join(sorted(hyper))} (pass "
                    "weight_decay to make_optimizer(..., inject=True) to make it one)"
                )
            old = jnp.asarray(hyper[key])
            new = jnp.asarray(value, old.dtype)
            if new.ndim == 0:
                new = jnp.broadcast_to(new, old.shape)
            if new.shape != old.shape:
                raise ValueError(
                    f"{key}: got values of shape {new.shape}, the optimizer state holds shape {old.shape} "
                    "(one value per model, or one number for all)"
                )
            hyper[key] = new
        return node._replace(hyperparams=hyper)

    out = jax.tree.map(put, opt_state, is_leaf=is_injected)
    if not found:
        raise ValueError(
            "the optimizer state has no injected hyperparameters: build the optimizer with "
            "train.make_optimizer(name, learning_rate, inject=True) (or optax.inject_hyperparams)"
        )
    return out


# ----------------------------------------------------------------------------------------------------------------
# Models.


class _ModelFns(NamedTuple):
    """The shape of ``jinit.adapters.ModelFns`` (duck-typed here: any tuple with ``init`` and ``apply``)."""

    init: Callable
    apply: Callable
    info: Any = None


def _is_model_fns(model: Any) -> bool:
    return isinstance(model, tuple) and callable(getattr(model, "apply", None))


def _as_model_fns(apply_fn: Callable[..., jax.Array]) -> _ModelFns:
    """A linen-style ``apply_fn(variables, x, rngs=...) -> outputs`` (no model state) as ModelFns: training calls
    ``apply_fn(params, x, rngs={"dropout": rng})`` (``rngs={}`` without a key), evaluation ``apply_fn(params,
    x)``, as the trainer did before ModelFns; the model state passes through unchanged."""

    def init(key, x):
        raise TypeError(
            "a bare apply_fn cannot initialize its model: pass the params to Trainer.init, or a ModelFns "
            "(jinit.adapters.model_fns)"
        )

    def apply(params, model_state, x, train, rng):
        if train:
            return apply_fn(params, x, rngs={} if rng is None else {"dropout": rng}), model_state
        return apply_fn(params, x), model_state

    return _ModelFns(init, apply)


def _model_fns(model: Any):
    if _is_model_fns(model):
        return model
    if isinstance(model, nn.Module):
        raise TypeError(
            f"make_train got the module {type(model).__name__} itself: pass its apply (module.apply) or a ModelFns "
            "(jinit.adapters.model_fns(factory, kernel_init, bias_init))"
        )
    if not callable(model):
        raise TypeError(
            f"make_train needs a ModelFns or an apply_fn(variables, x, rngs=...), got {model!r}"
        )
    return _as_model_fns(model)


class TrainState(NamedTuple):
    """The training state of one model.

    Attributes:
      params: the model's parameters (a Flax variables dict).
      opt_state: the optax state.
      step: number of steps taken (int32 scalar).
      diverged_step: the first step (1-based) at which the model diverged (:data:`DIVERGENCE_FACTOR`), or -1
        (int32 scalar).
      first_loss: the training loss of the first step (float32 scalar; NaN before it), the reference of an
        explosion.
      model_state: the model's non-trained state (e.g. ``{"batch_stats": ...}``), as its training-mode apply
        returns it; ``{}`` for a stateless model (None, the default of a state built positionally from the first
        five fields, is treated as ``{}``).
    """

    params: Any
    opt_state: Any
    step: jax.Array
    diverged_step: jax.Array
    first_loss: jax.Array
    model_state: Any = None


#: A model diverges at the first step whose training loss is not finite (NaN/inf), or has exploded: more than
#: ``DIVERGENCE_FACTOR`` times its first step's loss (or than ``DIVERGENCE_FACTOR`` when that was below 1). A
#: cross-entropy that grows 10,000-fold (2.3 -> 23,000) is never training; Adam at lr 1e10 reaches ~1e20 and stays
#: finite.
DIVERGENCE_FACTOR = 1e4


class EpochLogs(NamedTuple):
    """What one epoch reports, one entry per logging interval (``eval_every`` steps, and the epoch's end).

    The ``*accuracy`` fields hold the task's PRIMARY metric (:attr:`Task.primary`: the accuracy for
    classification and binary tasks, R^2 for regression, the metric of a custom task); the ``*_metrics`` fields
    hold its other metrics (``{name: values}``, None when the task has no other metric); the ``val_*`` fields are
    None when the epoch was given no validation set.

    Attributes:
      step: the global step count at the evaluation (int32, [n_intervals]).
      train_loss: mean training loss over the steps of the interval ([n_intervals]).
      test_loss: mean test loss ([n_intervals]).
      test_accuracy: the test primary metric ([n_intervals]).
      predictions: test-set predictions at the end of the epoch (classification: argmax, int32 [n_test]; binary:
        ``logit > 0``, int32 [n_test]; regression and custom: the outputs, float [n_test, ...]).
      train_accuracy: mean primary metric on the training batches of the interval, each measured by the step that
        trained on it, before its update (a running training accuracy, as Keras reports it) ([n_intervals]).
      init_test_loss: at epoch 0, the test loss of the model at initialization, before any step; NaN at later
        epochs (scalar).
      init_test_accuracy: the same for the test primary metric (scalar).
      test_metrics: the task's other metrics on the test set, ``{name: [n_intervals]}``.
      init_test_metrics: the same at initialization, ``{name: scalar}`` (NaN at later epochs).
      val_loss, val_accuracy, val_metrics: the same as the test fields on the validation set.
      init_val_loss, init_val_accuracy, init_val_metrics: the same as the ``init_test_*`` fields.
    """

    step: jax.Array
    train_loss: jax.Array
    test_loss: jax.Array
    test_accuracy: jax.Array
    predictions: jax.Array
    train_accuracy: Any = None
    init_test_loss: Any = None
    init_test_accuracy: Any = None
    test_metrics: Any = None
    init_test_metrics: Any = None
    val_loss: Any = None
    val_accuracy: Any = None
    val_metrics: Any = None
    init_val_loss: Any = None
    init_val_accuracy: Any = None
    init_val_metrics: Any = None


class Trainer(NamedTuple):
    """Pure functions training one model (see :func:`make_train`)."""

    init: Callable[..., TrainState]
    step: Callable[..., tuple[TrainState, jax.Array]]
    epoch: Callable[..., tuple[TrainState, EpochLogs]]
    evaluate: Callable[..., tuple[jax.Array, jax.Array, jax.Array]]
    order: Callable[..., jax.Array]
    vmapped_epoch: Callable[..., Callable[..., tuple[TrainState, EpochLogs]]]
    evaluate_all: Callable[..., tuple[jax.Array, dict[str, jax.Array], jax.Array]] | None = None
    task: Task | None = None


def loss_fn(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy with integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def intervals(steps_per_epoch: int, eval_every: int | None) -> tuple[int, int, int]:
    """Splits an epoch into logging intervals.

    Returns:
      ``(n_head, head_len, last_len)``: ``n_head`` intervals of ``head_len`` steps, then one of ``last_len`` steps
      ending at the epoch's end (``n_head * head_len + last_len == steps_per_epoch``).
    """
    if not eval_every or eval_every >= steps_per_epoch:
        return 0, 0, steps_per_epoch
    k, r = divmod(steps_per_epoch, eval_every)
    if r == 0:
        return k - 1, eval_every, eval_every
    return k, eval_every, r


def _per_example_loss(task: Task, outputs, targets):
    losses = task.loss(outputs, targets)
    if losses.shape != targets.shape[:1]:
        raise ValueError(
            f"the {task.name} task's loss returned shape {losses.shape} for a batch of {targets.shape[0]}: it "
            "must return one loss per example"
        )
    return losses


def _check_validation(x_val, y_val, val_mask):
    if (x_val is None) != (y_val is None) or (x_val is None and val_mask is not None):
        raise ValueError(
            "a validation set needs both x_val and y_val (and val_mask only with them)"
        )
    return x_val is not None


class _Setup(NamedTuple):
    """What the training functions of one model close over (see :func:`make_train`)."""

    fns: Any
    optimizer: optax.GradientTransformation
    task: Task
    batch_size: int
    steps_per_epoch: int
    eval_batch_size: int
    n_head: int
    head_len: int


def make_train(
    model: Any,
    optimizer: optax.GradientTransformation,
    *,
    task: Task | str | None = None,
    batch_size: int,
    steps_per_epoch: int,
    eval_every: int | None = None,
    eval_batch_size: int = 1000,
) -> Trainer:
    """Builds the pure single-model training functions.

    Args:
      model: a ``ModelFns`` (:mod:`jinit.adapters`; any tuple with ``apply(params, model_state, x, train, rng) ->
        (outputs, model_state)``) or a linen-style ``apply_fn(variables, x, rngs=...) -> outputs`` (a Flax
        ``Module.apply``; no model state).
      optimizer: an optax transformation (``optax.inject_hyperparams`` ones included: :func:`set_hyperparams`).
      task: a :class:`Task` or its name (default: :func:`classification`).
      batch_size: training batch size.
      steps_per_epoch: steps per epoch (``<= n_train // batch_size``).
      eval_every: if set, also evaluate every that many steps within each epoch.
      eval_batch_size: the test set is evaluated in batches of this size (the caller pads it to a multiple).

    Returns:
      A :class:`Trainer` with

      * ``init(params, model_state=None) -> TrainState`` (``model_state`` None: ``{}``);
      * ``step(state, x, y, rng=None) -> (state, loss)``: one optimizer step on a batch (gradients w.r.t.
        ``params`` only; the model's training-mode ``model_state`` is kept);
      * ``epoch(state, data_key, dropout_key, epoch, x_train, y_train, x_test, y_test, test_mask=None, x_val=None,
        y_val=None, val_mask=None) -> (state, EpochLogs)``: a ``lax.scan`` over the epoch's batches, gathered from
        the full training arrays, with evaluation (``train=False``) of the test set, and of the validation set
        when given, after every logging interval;
      * ``evaluate(params, x_test, y_test, test_mask=None, model_state=None) -> (loss, primary metric,
        predictions)``: evaluation in fixed batches of ``eval_batch_size`` with ``lax.map`` (``x_test`` must have
        a multiple of that many rows; padded rows have ``test_mask`` False);
      * ``evaluate_all(params, model_state, x, y, mask=None) -> (loss, {metric name: value}, predictions)``: the
        same with every metric of the task;
      * ``order(data_key, epoch, n_train) -> [steps_per_epoch, batch_size]`` indices of the epoch's batches;
      * ``vmapped_epoch(shared_keys=False, inner_axis=False)``: ``epoch`` for stacked models (a leading model
        axis on every state leaf, on the keys unless ``shared_keys``, on every log), as :mod:`jinit.sweep` runs it;
      * ``task``: the :class:`Task`.

    Raises:
      TypeError: ``model`` neither a ModelFns nor a function (a Flax module itself names the fix); a bad task;
        an ``optimizer`` that is not an optax transformation (:func:`jinit.checks.check_optimizer`).
    """
    from jinit.checks import check_optimizer

    check_optimizer(optimizer, "make_train")
    n_head, head_len, _ = intervals(steps_per_epoch, eval_every)
    s = _Setup(
        _model_fns(model),
        optimizer,
        make_task(task),
        batch_size,
        steps_per_epoch,
        eval_batch_size,
        n_head,
        head_len,
    )

    def init(params, model_state=None) -> TrainState:
        return _init_state(s, params, model_state)

    def step(state: TrainState, x, y, rng=None) -> tuple[TrainState, jax.Array]:
        state, (loss, _) = _step_metrics(s, state, x, y, rng)
        return state, loss

    def evaluate(params, x_test, y_test, test_mask=None, model_state=None):
        loss, metrics, preds = _evaluate_tuple(s, params, model_state, x_test, y_test, test_mask)
        return loss, metrics[0], preds

    def evaluate_all(params, model_state, x, y, mask=None):
        loss, metrics, preds = _evaluate_tuple(s, params, model_state, x, y, mask)
        return loss, dict(zip(s.task.metric_names, metrics, strict=True)), preds

    def epoch(
        state,
        data_key,
        dropout_key,
        epoch,
        x_train,
        y_train,
        x_test,
        y_test,
        test_mask=None,
        x_val=None,
        y_val=None,
        val_mask=None,
    ):
        sets = _eval_sets(x_test, y_test, test_mask, x_val, y_val, val_mask)
        return _epoch(s, state, data_key, dropout_key, epoch, x_train, y_train, sets)

    def vmapped_epoch(*, shared_keys: bool = False, inner_axis: bool = False):
        return _vmapped_epoch(s, shared_keys=shared_keys, inner_axis=inner_axis)

    return Trainer(
        init=init,
        step=step,
        epoch=epoch,
        evaluate=evaluate,
        order=lambda data_key, epoch, n_train: _order(s, data_key, epoch, n_train),
        vmapped_epoch=vmapped_epoch,
        evaluate_all=evaluate_all,
        task=s.task,
    )


def _init_state(s: _Setup, params, model_state=None) -> TrainState:
    return TrainState(
        params,
        s.optimizer.init(params),
        jnp.int32(0),
        jnp.int32(-1),
        jnp.float32(jnp.nan),
        {} if model_state is None else model_state,
    )


def _in_float32(outputs):
    """The model's outputs as the loss and metrics take them: low-precision floats (a model computing in
    bfloat16) in float32, so the loss, its gradient into the model and the metrics are float32 (mixed precision);
    float32 outputs are left as they are (the same program as before)."""

    def up(x):
        dtype = getattr(x, "dtype", None)
        if dtype is not None and jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
            return x.astype(jnp.float32)
        return x

    return jax.tree.map(up, outputs)


def _batch_metric(task: Task, outputs, y):
    """The primary metric on one training batch (every example counted)."""
    reference = None if task.reference is None else task.reference(y, jnp.ones(y.shape[:1], bool))
    sums = tuple(jnp.sum(v) for v in task.stats(outputs, y, reference))
    return jnp.asarray(task.reduce(sums, y.shape[0])[0]).astype(jnp.float32)


def _step_metrics(s: _Setup, state: TrainState, x, y, rng=None):
    """One optimizer step; returns ``(state, (loss, primary metric))`` on the batch, before the update."""
    model_state = state.model_state

    def objective(params):
        outputs, new_model_state = s.fns.apply(
            params, {} if model_state is None else model_state, x, True, rng
        )
        outputs = _in_float32(outputs)
        loss = _per_example_loss(s.task, outputs, y).mean()
        return loss, (_batch_metric(s.task, outputs, y), new_model_state)

    (loss, (metric, new_model_state)), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params
    )
    if model_state is None and not jax.tree.leaves(new_model_state):
        new_model_state = None  # keep the state's structure (a scan carry)
    updates, opt_state = s.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    count = state.step + 1
    first = jnp.where(state.step == 0, loss.astype(jnp.float32), state.first_loss)
    exploded = loss > DIVERGENCE_FACTOR * jnp.maximum(first, 1.0)
    bad = (state.diverged_step < 0) & (~jnp.isfinite(loss) | exploded)
    diverged_step = jnp.where(bad, count, state.diverged_step)
    new = TrainState(params, opt_state, count, diverged_step, first, new_model_state)
    return new, (loss, metric)


def _evaluate_tuple(s: _Setup, params, model_state, x_test, y_test, test_mask=None):
    """``(loss, metrics in task order, predictions)`` over an evaluation set."""
    task = s.task
    n = x_test.shape[0]
    bs = min(s.eval_batch_size, n)  # a test set smaller than one batch is one batch
    if n % bs:
        raise ValueError(
            f"x_test has {n} rows, not a multiple of eval_batch_size={s.eval_batch_size}"
        )
    if test_mask is None:
        test_mask = jnp.ones((n,), bool)
    if model_state is None:
        model_state = {}
    reference = None if task.reference is None else task.reference(y_test, test_mask)
    nb = n // bs
    xs = x_test.reshape((nb, bs) + x_test.shape[1:])
    ys = y_test.reshape((nb, bs) + y_test.shape[1:])
    ms = test_mask.reshape((nb, bs))

    def one(batch):
        xb, yb, mb = batch
        outputs, _ = s.fns.apply(params, model_state, xb, False, None)
        outputs = _in_float32(outputs)
        losses = _per_example_loss(task, outputs, yb)
        stats = tuple(jnp.sum(jnp.where(mb, v, 0)) for v in task.stats(outputs, yb, reference))
        return jnp.sum(jnp.where(mb, losses, 0.0)), stats, task.predict(outputs)

    losses, stats, preds = jax.lax.map(one, (xs, ys, ms))
    count = jnp.maximum(jnp.sum(test_mask), 1)
    metrics = task.reduce(tuple(v.sum() for v in stats), count)
    return losses.sum() / count, tuple(metrics), preds.reshape((n,) + preds.shape[2:])


def _order(s: _Setup, data_key, epoch, n_train):
    perm = jax.random.permutation(keys.epoch_key(data_key, epoch), n_train)
    return perm[: s.steps_per_epoch * s.batch_size].reshape((s.steps_per_epoch, s.batch_size))


def _step_at(s: _Setup, state, i, x_train, y_train, epoch_dropout):
    """One step on the batch ``x_train[i]``, dropout keyed by ``epoch_dropout`` and the step count; returns
    ``(state, (loss, accuracy))``."""
    rng = keys.step_key(epoch_dropout, state.step)
    return _step_metrics(s, state, x_train[i], y_train[i], rng)


def _evaluations(s: _Setup, params, model_state, sets):
    """The log columns of evaluating ``sets`` (``{"test": (x, y, mask), "val": ...}``), and the test
    predictions: ``{"test_loss", "test_accuracy", "test_metrics" (only with secondary metrics), "val_...":
    ...}``."""
    secondary = s.task.metric_names[1:]
    cols, preds = {}, None
    for name, (x, y, mask) in sets.items():
        loss, metrics, p = _evaluate_tuple(s, params, model_state, x, y, mask)
        cols[f"{name}_loss"] = loss
        cols[f"{name}_accuracy"] = metrics[0]
        if secondary:
            cols[f"{name}_metrics"] = dict(zip(secondary, metrics[1:], strict=True))
        if name == "test":
            preds = p
    return cols, preds


def _evaluate_init(s: _Setup, params, model_state, epoch, sets):
    """The evaluation columns of the model when ``epoch == 0`` (the model at initialization), NaN at later
    epochs: a ``lax.cond``, so the evaluation runs once per sweep, inside the epoch's program."""

    def measured(operand):
        cols, _ = _evaluations(s, *operand, sets)
        return jax.tree.map(lambda v: v.astype(jnp.float32), cols)

    shapes = jax.eval_shape(measured, (params, model_state))

    def skipped(operand):
        return jax.tree.map(lambda v: jnp.full(v.shape, jnp.nan, jnp.float32), shapes)

    return jax.lax.cond(epoch == 0, measured, skipped, (params, model_state))


def _loop(s: _Setup, state, idx, step_at, evaluate_at):
    """The epoch's scan over ``idx`` ([steps, ...] batch indices) with ``step_at(state, idx[t]) -> (state,
    (loss, accuracy))``, evaluating ``evaluate_at(params, model_state) -> (columns, predictions)`` after every
    logging interval; for one model or, vmapped inside ``step_at`` and ``evaluate_at``, for many (then every
    log entry has a trailing model axis). Returns the state, the columns ``(step, train_loss, train_accuracy,
    evaluation columns)`` and the final predictions."""

    def train_steps(state, batch_idx):
        state, (losses, accs) = jax.lax.scan(step_at, state, batch_idx)
        return state, losses.mean(axis=0), accs.mean(axis=0)

    def interval(state, batch_idx):
        state, train_loss, train_acc = train_steps(state, batch_idx)
        evals, _ = evaluate_at(state.params, state.model_state)
        return state, (state.step, train_loss, train_acc, evals)

    logs = []
    n_head, head_len = s.n_head, s.head_len
    if n_head:
        head = idx[: n_head * head_len].reshape((n_head, head_len) + idx.shape[1:])
        state, logs_head = jax.lax.scan(interval, state, head)
        logs.append(logs_head)
    state, train_loss, train_acc = train_steps(state, idx[n_head * head_len :])
    evals, preds = evaluate_at(state.params, state.model_state)
    logs.append(jax.tree.map(lambda v: v[None], (state.step, train_loss, train_acc, evals)))
    cols = jax.tree.map(lambda *c: jnp.concatenate(c), *logs)
    return state, cols, preds


def _eval_sets(x_test, y_test, test_mask=None, x_val=None, y_val=None, val_mask=None):
    sets = {"test": (x_test, y_test, test_mask)}
    if _check_validation(x_val, y_val, val_mask):
        sets["val"] = (x_val, y_val, val_mask)
    return sets


def _epoch(s: _Setup, state, data_key, dropout_key, epoch, x_train, y_train, sets):
    """One model's epoch (:func:`make_train`'s ``epoch``) with the evaluation ``sets`` (:func:`_eval_sets`)."""
    x_train, y_train = jnp.asarray(x_train), jnp.asarray(y_train)  # no-op for device arrays
    idx = _order(s, data_key, epoch, x_train.shape[0])
    epoch_dropout = keys.epoch_key(dropout_key, epoch)
    init = _evaluate_init(s, state.params, state.model_state, epoch, sets)
    state, cols, preds = _loop(
        s,
        state,
        idx,
        lambda st, i: _step_at(s, st, i, x_train, y_train, epoch_dropout),
        lambda p, ms: _evaluations(s, p, ms, sets),
    )
    return state, _epoch_logs(cols, preds, init)


def _vmapped_epoch(s: _Setup, *, shared_keys: bool = False, inner_axis: bool = False):
    """``epoch`` over stacked models (every state leaf with a leading model axis; keys too unless
    ``shared_keys``): one ``lax.scan`` over steps of a ``vmap``-ped step. The same numbers as
    ``jax.vmap(epoch)``; the difference is where the model axis sits while the loop runs. With
    ``inner_axis``, every state leaf of two or more dimensions (kernels) keeps it just before its last
    dimension (``[N, 784, 128] -> [784, N, 128]``), moved there once per epoch, so that a layer whose input all
    the models share is one plain matmul ``x @ W.reshape(784, N * 128)`` with no transpose of the stacked
    kernel (and of its gradient) at every step: 1.36x (batch 128) to 1.45x (batch 32) faster on an H100
    for the MNIST MLP, slower on a CPU (experiments/results/benchmark/NOTES.md)."""
    key_axis = None if shared_keys else 0

    def axis(x):  # where the model axis of a stacked leaf sits during the loop
        return x.ndim - 2 if inner_axis and x.ndim >= 3 else 0

    def run(
        state,
        data_keys,
        dropout_keys,
        epoch,
        x_train,
        y_train,
        x_test,
        y_test,
        test_mask=None,
        x_val=None,
        y_val=None,
        val_mask=None,
    ):
        sets = _eval_sets(x_test, y_test, test_mask, x_val, y_val, val_mask)
        x_train, y_train = jnp.asarray(x_train), jnp.asarray(y_train)
        axes = jax.tree.map(axis, state)
        state = jax.tree.map(lambda x, a: jnp.moveaxis(x, 0, a), state, axes)
        n = x_train.shape[0]
        if shared_keys:
            idx, idx_axis = _order(s, data_keys, epoch, n), None
            drop = keys.epoch_key(dropout_keys, epoch)
        else:  # idx: [N, steps, batch] -> [steps, N, batch]
            idx = jax.vmap(lambda k: _order(s, k, epoch, n))(data_keys).swapaxes(0, 1)
            idx_axis = 0
            drop = jax.vmap(keys.epoch_key, (0, None))(dropout_keys, epoch)

        many = jax.vmap(
            lambda st, i, xt, yt, d: _step_at(s, st, i, xt, yt, d),
            in_axes=(axes, idx_axis, None, None, key_axis),
            out_axes=(axes, 0),
        )
        model_axes = (axes.params, axes.model_state)
        evaluate_many = jax.vmap(lambda p, ms: _evaluations(s, p, ms, sets), in_axes=model_axes)
        init = jax.vmap(lambda p, ms: _evaluate_init(s, p, ms, epoch, sets), in_axes=model_axes)(
            state.params, state.model_state
        )
        state, cols, preds = _loop(
            s, state, idx, lambda st, i: many(st, i, x_train, y_train, drop), evaluate_many
        )
        state = jax.tree.map(lambda x, a: jnp.moveaxis(x, a, 0), state, axes)
        return state, _epoch_logs(jax.tree.map(lambda c: c.T, cols), preds, init)

    return run


def _epoch_logs(cols, predictions, init) -> EpochLogs:
    step, train_loss, train_accuracy, evals = cols
    return EpochLogs(
        step=step,
        train_loss=train_loss,
        test_loss=evals["test_loss"],
        test_accuracy=evals["test_accuracy"],
        predictions=predictions,
        train_accuracy=train_accuracy,
        init_test_loss=init["test_loss"],
        init_test_accuracy=init["test_accuracy"],
        test_metrics=evals.get("test_metrics"),
        init_test_metrics=init.get("test_metrics"),
        val_loss=evals.get("val_loss"),
        val_accuracy=evals.get("val_accuracy"),
        val_metrics=evals.get("val_metrics"),
        init_val_loss=init.get("val_loss"),
        init_val_accuracy=init.get("val_accuracy"),
        init_val_metrics=init.get("val_metrics"),
    )


def pad_test(x_test: np.ndarray, y_test: np.ndarray, eval_batch_size: int):
    """Pads the test set with zero rows to a multiple of ``eval_batch_size``.

    Returns:
      ``(x, y, mask)`` where ``mask`` is False on the padding rows.
    """
    n = x_test.shape[0]
    pad = (-n) % eval_batch_size
    mask = np.concatenate([np.ones(n, bool), np.zeros(pad, bool)])
    if pad:
        x_test = np.concatenate([x_test, np.zeros((pad,) + x_test.shape[1:], x_test.dtype)])
        y_test = np.concatenate([y_test, np.zeros((pad,) + y_test.shape[1:], y_test.dtype)])
    return x_test, y_test, mask


class PlainResult(NamedTuple):
    """What :func:`train_plain` returns: final state, per-epoch test loss and primary metric (``test_accuracy``),
    final test predictions, and per-epoch other metrics (``{name: [epochs]}``, None when the task has none)."""

    state: TrainState
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    predictions: np.ndarray
    test_metrics: dict[str, np.ndarray] | None = None


def train_plain(
    model: Any,
    params: Any,
    optimizer: optax.GradientTransformation,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    batch_size: int,
    epochs: int,
    data_key: jax.Array,
    dropout_key: jax.Array | None = None,
    eval_batch_size: int = 1000,
    task: Task | str | None = None,
    model_state: Any = None,
    opt_state: Any = None,
) -> PlainResult:
    """Trains one model with a plain Python loop over steps (the reference for the vmapped engine).

    Uses the same data order (:meth:`Trainer.order`) and dropout keys as the sweep, but a separately jitted
    single-model step called once per batch from Python, with the batch sliced on the host.

    Args:
      model: a ``ModelFns`` or the model's ``apply`` (see :func:`make_train`).
      params: initial parameters.
      optimizer: an optax transformation.
      x_train, y_train, x_test, y_test: numpy arrays.
      batch_size: batch size.
      epochs: number of epochs.
      data_key: the model's data-order key.
      dropout_key: the model's dropout key (default: ``PRNGKey(0)``).
      eval_batch_size: test batch size.
      task: the :class:`Task` or its name (default: classification).
      model_state: the model's initial state (e.g. ``{"batch_stats": ...}``; default ``{}``).
      opt_state: the initial optimizer state (default ``optimizer.init(params)``), e.g. an injected one with
        per-model hyperparameters (:func:`set_hyperparams`).

    Returns:
      A :class:`PlainResult`.
    """
    from jinit.checks import check_optimizer

    check_optimizer(optimizer, "train_plain")
    steps_per_epoch = x_train.shape[0] // batch_size
    eval_batch_size = min(eval_batch_size, x_test.shape[0])
    trainer = make_train(
        model,
        optimizer,
        task=task,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        eval_batch_size=eval_batch_size,
    )
    if dropout_key is None:
        dropout_key = jax.random.PRNGKey(0)
    xt, yt, mask = pad_test(x_test, y_test, eval_batch_size)
    step = jax.jit(trainer.step)
    evaluate = jax.jit(trainer.evaluate_all)
    state = trainer.init(params, model_state)
    if opt_state is not None:
        state = state._replace(opt_state=opt_state)
    losses, metrics = [], []
    preds = None
    for e in range(epochs):
        idx = np.asarray(trainer.order(data_key, e, x_train.shape[0]))
        epoch_dropout = keys.epoch_key(dropout_key, e)
        for i in idx:
            rng = keys.step_key(epoch_dropout, state.step)
            state, _ = step(state, x_train[i], y_train[i], rng)
        loss, values, preds = evaluate(state.params, state.model_state, xt, yt, mask)
        losses.append(float(loss))
        metrics.append({k: float(v) for k, v in values.items()})
    names = trainer.task.metric_names
    return PlainResult(
        state,
        np.asarray(losses),
        np.asarray([m[names[0]] for m in metrics]),
        np.asarray(preds)[: x_test.shape[0]],
        {k: np.asarray([m[k] for m in metrics]) for k in names[1:]} or None,
    )

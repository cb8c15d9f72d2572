"""Pure single-model training pieces: optimizer, train step, scanned epoch, batched evaluation.

Everything here is written for ONE model and is pure (no Python side effects, no host syncs), so the sweep engine
(:mod:`jinit.sweep`) can ``jax.vmap`` it over a leading model axis and ``jax.jit`` the result. :func:`train_plain`
is the reference trainer: a plain Python loop over steps of a jitted single-model step, with the same data order,
used by the tests to check that a model trained inside the vmapped sweep is the model you would get alone.

Data order: every epoch draws a permutation of the training set from ``fold_in(data_key, epoch)`` and takes
``steps_per_epoch = n_train // batch_size`` full batches from it (the remainder is dropped; it changes every epoch).

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
    optax (https://github.com/google-deepmind/optax) for the optimizers.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

OPTIMIZERS: dict[str, Callable[[float], optax.GradientTransformation]] = {
    "adam": lambda lr: optax.adam(lr),
    "sgd": lambda lr: optax.sgd(lr),
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "adamw": lambda lr: optax.adamw(lr),
    "rmsprop": lambda lr: optax.rmsprop(lr),
}


def make_optimizer(name: str, learning_rate: float) -> optax.GradientTransformation:
    """Returns the optax optimizer called ``name``.

    Args:
      name: one of ``adam, sgd, momentum`` (SGD with momentum 0.9), ``adamw, rmsprop`` (optax defaults otherwise).
      learning_rate: a positive, finite step size.

    Returns:
      An ``optax.GradientTransformation``.

    Raises:
      ValueError: for an unknown name (listing the choices) or a bad learning rate.
    """
    if name not in OPTIMIZERS:
        close = difflib.get_close_matches(str(name), list(OPTIMIZERS), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"unknown optimizer {name!r}.{hint} Valid choices: {', '.join(OPTIMIZERS)}."
        )
    check_learning_rate(learning_rate)
    return OPTIMIZERS[name](float(learning_rate))


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
    """

    params: Any
    opt_state: Any
    step: jax.Array
    diverged_step: jax.Array
    first_loss: jax.Array


#: A model diverges at the first step whose training loss is not finite (NaN/inf), or has exploded: more than
#: ``DIVERGENCE_FACTOR`` times its first step's loss (or than ``DIVERGENCE_FACTOR`` when that was below 1). A
#: cross-entropy that grows 10,000-fold (2.3 -> 23,000) is never training; Adam at lr 1e10 reaches ~1e20 and stays
#: finite.
DIVERGENCE_FACTOR = 1e4


class EpochLogs(NamedTuple):
    """What one epoch reports, one entry per logging interval (``eval_every`` steps, and the epoch's end).

    Attributes:
      step: the global step count at the evaluation (int32, [n_intervals]).
      train_loss: mean training loss over the steps of the interval ([n_intervals]).
      test_loss: mean test loss ([n_intervals]).
      test_accuracy: test accuracy ([n_intervals]).
      predictions: test-set predictions (argmax) at the end of the epoch ([n_test], int32).
      train_accuracy: mean accuracy on the training batches of the interval, each measured by the step that
        trained on it, before its update (a running training accuracy, as Keras reports it) ([n_intervals]).
      init_test_loss: at epoch 0, the test loss of the model at initialization, before any step; NaN at later
        epochs (scalar).
      init_test_accuracy: the same for the test accuracy (scalar).
    """

    step: jax.Array
    train_loss: jax.Array
    test_loss: jax.Array
    test_accuracy: jax.Array
    predictions: jax.Array
    train_accuracy: Any = None
    init_test_loss: Any = None
    init_test_accuracy: Any = None


class Trainer(NamedTuple):
    """Pure functions training one model (see :func:`make_train`)."""

    init: Callable[..., TrainState]
    step: Callable[..., tuple[TrainState, jax.Array]]
    epoch: Callable[..., tuple[TrainState, EpochLogs]]
    evaluate: Callable[..., tuple[jax.Array, jax.Array, jax.Array]]
    order: Callable[..., jax.Array]
    vmapped_epoch: Callable[..., Callable[..., tuple[TrainState, EpochLogs]]]


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


def make_train(
    apply_fn: Callable[..., jax.Array],
    optimizer: optax.GradientTransformation,
    *,
    batch_size: int,
    steps_per_epoch: int,
    eval_every: int | None = None,
    eval_batch_size: int = 1000,
) -> Trainer:
    """Builds the pure single-model training functions.

    Args:
      apply_fn: ``apply_fn(params, x, rngs=...) -> logits`` (a Flax ``Module.apply``).
      optimizer: an optax transformation.
      batch_size: training batch size.
      steps_per_epoch: steps per epoch (``<= n_train // batch_size``).
      eval_every: if set, also evaluate every that many steps within each epoch.
      eval_batch_size: the test set is evaluated in batches of this size (the caller pads it to a multiple).

    Returns:
      A :class:`Trainer` with

      * ``init(params) -> TrainState``;
      * ``step(state, x, y, rng=None) -> (state, loss)``: one optimizer step on a batch;
      * ``epoch(state, data_key, dropout_key, epoch, x_train, y_train, x_test, y_test, test_mask=None)
        -> (state, EpochLogs)``: a ``lax.scan`` over the epoch's batches, gathered from the full training arrays,
        with evaluation after every logging interval;
      * ``evaluate(params, x_test, y_test, test_mask=None) -> (loss, accuracy, predictions)``: evaluation in fixed
        batches of ``eval_batch_size`` with ``lax.map`` (``x_test`` must have a multiple of that many rows; padded
        rows have ``test_mask`` False);
      * ``order(data_key, epoch, n_train) -> [steps_per_epoch, batch_size]`` indices of the epoch's batches;
      * ``vmapped_epoch(shared_keys=False, inner_axis=False)``: ``epoch`` for stacked models (a leading model
        axis on every state leaf, on the keys unless ``shared_keys``, on every log), as :mod:`jinit.sweep` runs it.
    """
    n_head, head_len, last_len = intervals(steps_per_epoch, eval_every)

    def init(params) -> TrainState:
        return TrainState(
            params, optimizer.init(params), jnp.int32(0), jnp.int32(-1), jnp.float32(jnp.nan)
        )

    def step_metrics(state: TrainState, x, y, rng=None):
        """One optimizer step; returns ``(state, (loss, accuracy))`` on the batch, before the update."""
        rngs = {} if rng is None else {"dropout": rng}

        def objective(params):
            logits = apply_fn(params, x, rngs=rngs)
            accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == y).astype(jnp.float32)
            return loss_fn(logits, y), accuracy

        (loss, accuracy), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        count = state.step + 1
        first = jnp.where(state.step == 0, loss.astype(jnp.float32), state.first_loss)
        exploded = loss > DIVERGENCE_FACTOR * jnp.maximum(first, 1.0)
        bad = (state.diverged_step < 0) & (~jnp.isfinite(loss) | exploded)
        diverged_step = jnp.where(bad, count, state.diverged_step)
        return TrainState(params, opt_state, count, diverged_step, first), (loss, accuracy)

    def step(state: TrainState, x, y, rng=None) -> tuple[TrainState, jax.Array]:
        state, (loss, _) = step_metrics(state, x, y, rng)
        return state, loss

    def evaluate(params, x_test, y_test, test_mask=None):
        n = x_test.shape[0]
        bs = min(eval_batch_size, n)  # a test set smaller than one batch is one batch
        if n % bs:
            raise ValueError(
                f"x_test has {n} rows, not a multiple of eval_batch_size={eval_batch_size}"
            )
        if test_mask is None:
            test_mask = jnp.ones((n,), bool)
        nb = n // bs
        xs = x_test.reshape((nb, bs) + x_test.shape[1:])
        ys = y_test.reshape((nb, bs))
        ms = test_mask.reshape((nb, bs))

        def one(batch):
            xb, yb, mb = batch
            logits = apply_fn(params, xb)
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
            preds = jnp.argmax(logits, axis=-1).astype(jnp.int32)
            return jnp.sum(jnp.where(mb, losses, 0.0)), jnp.sum(mb & (preds == yb)), preds

        losses, correct, preds = jax.lax.map(one, (xs, ys, ms))
        count = jnp.maximum(jnp.sum(test_mask), 1)
        return losses.sum() / count, correct.sum() / count, preds.reshape((n,))

    def order(data_key, epoch, n_train):
        perm = jax.random.permutation(jax.random.fold_in(data_key, epoch), n_train)
        return perm[: steps_per_epoch * batch_size].reshape((steps_per_epoch, batch_size))

    def step_at(state, i, x_train, y_train, epoch_dropout):
        """One step on the batch ``x_train[i]``, dropout keyed by ``epoch_dropout`` and the step count; returns
        ``(state, (loss, accuracy))``."""
        rng = jax.random.fold_in(epoch_dropout, state.step)
        return step_metrics(state, x_train[i], y_train[i], rng)

    def evaluate_init(params, epoch, x_test, y_test, test_mask):
        """``(test loss, test accuracy)`` of ``params`` when ``epoch == 0`` (the model at initialization), NaN
        at later epochs: a ``lax.cond``, so the evaluation runs once per sweep, inside the epoch's program."""

        def measured(p):
            loss, acc, _ = evaluate(p, x_test, y_test, test_mask)
            return loss.astype(jnp.float32), acc.astype(jnp.float32)

        def skipped(p):
            return jnp.float32(jnp.nan), jnp.float32(jnp.nan)

        return jax.lax.cond(epoch == 0, measured, skipped, params)

    def loop(state, idx, step_at, evaluate_at):
        """The epoch's scan over ``idx`` ([steps, ...] batch indices) with ``step_at(state, idx[t]) -> (state,
        (loss, accuracy))``, evaluating ``evaluate_at(params)`` after every logging interval; for one model or,
        vmapped inside ``step_at`` and ``evaluate_at``, for many (then every log entry has a trailing model axis).
        Returns the state, the columns ``(step, train_loss, test_loss, test_accuracy, train_accuracy)`` and the
        final predictions."""

        def train_steps(state, batch_idx):
            state, (losses, accs) = jax.lax.scan(step_at, state, batch_idx)
            return state, losses.mean(axis=0), accs.mean(axis=0)

        def interval(state, batch_idx):
            state, train_loss, train_acc = train_steps(state, batch_idx)
            test_loss, test_acc, _ = evaluate_at(state.params)
            return state, (state.step, train_loss, test_loss, test_acc, train_acc)

        logs = []
        if n_head:
            head = idx[: n_head * head_len].reshape((n_head, head_len) + idx.shape[1:])
            state, logs_head = jax.lax.scan(interval, state, head)
            logs.append(logs_head)
        state, train_loss, train_acc = train_steps(state, idx[n_head * head_len :])
        test_loss, test_acc, preds = evaluate_at(state.params)
        logs.append(
            tuple(v[None] for v in (state.step, train_loss, test_loss, test_acc, train_acc))
        )
        cols = [jnp.concatenate(c) for c in zip(*logs, strict=True)]
        return state, cols, preds

    def epoch(
        state, data_key, dropout_key, epoch, x_train, y_train, x_test, y_test, test_mask=None
    ):
        x_train, y_train = jnp.asarray(x_train), jnp.asarray(y_train)  # no-op for device arrays
        idx = order(data_key, epoch, x_train.shape[0])
        epoch_dropout = jax.random.fold_in(dropout_key, epoch)
        init_loss, init_acc = evaluate_init(state.params, epoch, x_test, y_test, test_mask)
        state, cols, preds = loop(
            state,
            idx,
            lambda st, i: step_at(st, i, x_train, y_train, epoch_dropout),
            lambda p: evaluate(p, x_test, y_test, test_mask),
        )
        return state, _epoch_logs(cols, preds, init_loss, init_acc)

    def vmapped_epoch(*, shared_keys: bool = False, inner_axis: bool = False):
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
            state, data_keys, dropout_keys, epoch, x_train, y_train, x_test, y_test, test_mask=None
        ):
            x_train, y_train = jnp.asarray(x_train), jnp.asarray(y_train)
            axes = jax.tree.map(axis, state)
            state = jax.tree.map(lambda x, a: jnp.moveaxis(x, 0, a), state, axes)
            n = x_train.shape[0]
            if shared_keys:
                idx, idx_axis = order(data_keys, epoch, n), None
                drop = jax.random.fold_in(dropout_keys, epoch)
            else:  # idx: [N, steps, batch] -> [steps, N, batch]
                idx = jax.vmap(order, (0, None, None))(data_keys, epoch, n).swapaxes(0, 1)
                idx_axis = 0
                drop = jax.vmap(jax.random.fold_in, (0, None))(dropout_keys, epoch)

            many = jax.vmap(
                step_at, in_axes=(axes, idx_axis, None, None, key_axis), out_axes=(axes, 0)
            )
            evaluate_many = jax.vmap(
                lambda p: evaluate(p, x_test, y_test, test_mask), in_axes=(axes.params,)
            )
            init_loss, init_acc = jax.vmap(
                lambda p: evaluate_init(p, epoch, x_test, y_test, test_mask),
                in_axes=(axes.params,),
            )(state.params)
            state, cols, preds = loop(
                state, idx, lambda st, i: many(st, i, x_train, y_train, drop), evaluate_many
            )
            state = jax.tree.map(lambda x, a: jnp.moveaxis(x, a, 0), state, axes)
            return state, _epoch_logs([c.T for c in cols], preds, init_loss, init_acc)

        return run

    return Trainer(
        init=init,
        step=step,
        epoch=epoch,
        evaluate=evaluate,
        order=order,
        vmapped_epoch=vmapped_epoch,
    )


def _epoch_logs(cols, predictions, init_loss, init_acc) -> EpochLogs:
    step, train_loss, test_loss, test_accuracy, train_accuracy = cols
    return EpochLogs(
        step=step,
        train_loss=train_loss,
        test_loss=test_loss,
        test_accuracy=test_accuracy,
        predictions=predictions,
        train_accuracy=train_accuracy,
        init_test_loss=init_loss,
        init_test_accuracy=init_acc,
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
        y_test = np.concatenate([y_test, np.zeros((pad,), y_test.dtype)])
    return x_test, y_test, mask


class PlainResult(NamedTuple):
    """What :func:`train_plain` returns: final state, per-epoch (test_loss, test_accuracy), final predictions."""

    state: TrainState
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    predictions: np.ndarray


def train_plain(
    apply_fn: Callable[..., jax.Array],
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
) -> PlainResult:
    """Trains one model with a plain Python loop over steps (the reference for the vmapped engine).

    Uses the same data order (:meth:`Trainer.order`) and dropout keys as the sweep, but a separately jitted
    single-model step called once per batch from Python, with the batch sliced on the host.

    Args:
      apply_fn: the model's ``apply``.
      params: initial parameters.
      optimizer: an optax transformation.
      x_train, y_train, x_test, y_test: numpy arrays.
      batch_size: batch size.
      epochs: number of epochs.
      data_key: the model's data-order key.
      dropout_key: the model's dropout key (default: ``PRNGKey(0)``).
      eval_batch_size: test batch size.

    Returns:
      A :class:`PlainResult`.
    """
    steps_per_epoch = x_train.shape[0] // batch_size
    eval_batch_size = min(eval_batch_size, x_test.shape[0])
    trainer = make_train(
        apply_fn,
        optimizer,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        eval_batch_size=eval_batch_size,
    )
    if dropout_key is None:
        dropout_key = jax.random.PRNGKey(0)
    xt, yt, mask = pad_test(x_test, y_test, eval_batch_size)
    step = jax.jit(trainer.step)
    evaluate = jax.jit(trainer.evaluate)
    state = trainer.init(params)
    losses, accs = [], []
    preds = None
    for e in range(epochs):
        idx = np.asarray(trainer.order(data_key, e, x_train.shape[0]))
        epoch_dropout = jax.random.fold_in(dropout_key, e)
        for i in idx:
            rng = jax.random.fold_in(epoch_dropout, state.step)
            state, _ = step(state, x_train[i], y_train[i], rng)
        loss, acc, preds = evaluate(state.params, xt, yt, mask)
        losses.append(float(loss))
        accs.append(float(acc))
    return PlainResult(
        state, np.asarray(losses), np.asarray(accs), np.asarray(preds)[: x_test.shape[0]]
    )

"""Tests of the pure single-model training pieces (jinit.train)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jinit import models, train


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 1).astype(np.int32)
    return x[:64], y[:64], x[64:], y[64:]


@pytest.mark.parametrize("name", list(train.OPTIMIZERS))
def test_make_optimizer_known(name):
    tx = train.make_optimizer(name, 1e-3)
    assert isinstance(tx, optax.GradientTransformation)


def test_make_optimizer_unknown_lists_choices():
    with pytest.raises(ValueError, match=r"'adma'.*Did you mean 'adam'.*Valid choices: adam, sgd"):
        train.make_optimizer("adma", 1e-3)


@pytest.mark.parametrize("lr", [0.0, -1e-3, float("nan"), float("inf")])
def test_make_optimizer_bad_learning_rate(lr):
    with pytest.raises(ValueError, match="learning rate"):
        train.make_optimizer("adam", lr)


def test_make_optimizer_learning_rate_type():
    with pytest.raises(TypeError, match="learning rate"):
        train.make_optimizer("adam", "0.1")


@pytest.mark.parametrize(
    "spe, every, expected",
    [
        (10, None, (0, 0, 10)),
        (10, 3, (3, 3, 1)),
        (9, 3, (2, 3, 3)),
        (10, 10, (0, 0, 10)),
        (4, 7, (0, 0, 4)),
    ],
)
def test_intervals_cover_the_epoch(spe, every, expected):
    n_head, head_len, last_len = train.intervals(spe, every)
    assert (n_head, head_len, last_len) == expected
    assert n_head * head_len + last_len == spe


def test_evaluate_padded_matches_numpy(toy):
    _, _, x_test, y_test = toy  # 32 rows, evaluated in batches of 5 after padding to 35
    model = models.MLP(hidden=(8,), num_classes=3)
    params = model.init(jax.random.PRNGKey(1), x_test[:1])
    trainer = train.make_train(
        model.apply, optax.sgd(0.1), batch_size=8, steps_per_epoch=2, eval_batch_size=5
    )
    xp, yp, mask = train.pad_test(x_test, y_test, 5)
    assert xp.shape[0] == 35 and mask.sum() == 32
    loss, acc, preds = jax.jit(trainer.evaluate)(params, xp, yp, mask)
    logits = np.asarray(model.apply(params, x_test))
    ref_loss = np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y_test))
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-5)
    assert float(acc) == pytest.approx(np.mean(logits.argmax(-1) == y_test))
    np.testing.assert_array_equal(np.asarray(preds)[:32], logits.argmax(-1))


def test_scanned_epoch_matches_python_loop(toy):
    """The lax.scan epoch (with an eval_every interval) equals train_plain's per-step Python loop."""
    x, y, xt, yt = toy
    model = models.MLP(hidden=(8,), num_classes=3)
    params = model.init(jax.random.PRNGKey(2), x[:1])
    tx = optax.adam(1e-2)
    data_key = jax.random.PRNGKey(7)
    trainer = train.make_train(
        model.apply, tx, batch_size=16, steps_per_epoch=4, eval_every=3, eval_batch_size=32
    )
    epoch = jax.jit(trainer.epoch)
    state = trainer.init(params)
    for e in range(2):
        state, logs = epoch(state, data_key, jax.random.PRNGKey(0), e, x, y, xt, yt)
    assert logs.step.tolist() == [7, 8]  # one mid-epoch evaluation (step 3 of 4) and the epoch end
    ref = train.train_plain(
        model.apply, params, tx, x, y, xt, yt, batch_size=16, epochs=2, data_key=data_key
    )
    diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), state.params, ref.state.params)
    assert max(jax.tree.leaves(diff)) < 1e-5
    assert float(logs.test_loss[-1]) == pytest.approx(ref.test_loss[-1], rel=1e-5)
    np.testing.assert_array_equal(np.asarray(logs.predictions), ref.predictions)


def test_order_is_a_permutation_prefix():
    trainer = train.make_train(
        lambda p, x, rngs=None: x, optax.sgd(0.1), batch_size=4, steps_per_epoch=2
    )
    idx = np.asarray(trainer.order(jax.random.PRNGKey(0), 0, 10))
    assert idx.shape == (2, 4) and len(set(idx.ravel().tolist())) == 8
    other = np.asarray(trainer.order(jax.random.PRNGKey(0), 1, 10))
    assert not np.array_equal(idx, other)  # a new order every epoch


def test_divergence_marks_first_nonfinite_step(toy):
    x, y, _, _ = toy
    model = models.MLP(hidden=(8,), num_classes=3)
    params = model.init(jax.random.PRNGKey(3), x[:1])
    params = jax.tree.map(lambda a: a * 1e20, params)  # overflows float32 in the forward pass
    trainer = train.make_train(model.apply, optax.sgd(0.1), batch_size=16, steps_per_epoch=4)
    state = trainer.init(params)
    step = jax.jit(trainer.step)
    state, loss = step(state, x[:16], y[:16])
    assert not np.isfinite(float(loss))
    assert int(state.diverged_step) == 1
    state, _ = step(state, x[16:32], y[16:32])
    assert int(state.diverged_step) == 1 and int(state.step) == 2  # the first step is kept


# issue 24: an optimizer that is not an optax transformation is one TypeError naming it and the fix (it was
# AttributeError: 'int' object has no attribute 'init', when the training state was built)
ADAM_TYPE = type(optax.adam(1e-3)).__name__
BAD_OPTIMIZERS = [
    (5, "5 (int)"),
    (
        optax.adam,
        "the function adam; call adam(...) to get the transformation, e.g. optax.adam(1e-3)",
    ),
    (
        (optax.adam(1e-3), 5),
        f"(an optax {ADAM_TYPE}, 5) (tuple); its item 1 is 5 (int), not a transformation: combine "
        "transformations with optax.chain(a, b, ...), every part one",
    ),
    (
        [optax.clip(1.0), optax.adam(1e-3)],
        f"[an optax {type(optax.clip(1.0)).__name__}, an optax {ADAM_TYPE}] (list); combine them into one "
        "with optax.chain(*transformations)",
    ),
    (
        "adam",
        "'adam' (str); for a named optimizer pass jinit.train.make_optimizer('adam', learning_rate)",
    ),
    (None, "None (NoneType)"),
]


@pytest.mark.parametrize(
    "bad,got", BAD_OPTIMIZERS, ids=["int", "factory", "tuple", "list", "name", "none"]
)
def test_an_optimizer_that_is_not_a_transformation_is_one_type_error(toy, bad, got):
    x, y, xt, yt = toy
    model = models.MLP(hidden=(8,), num_classes=3)
    params = model.init(jax.random.PRNGKey(0), x[:1])
    for where, call in (
        (
            "make_train",
            lambda: train.make_train(model.apply, bad, batch_size=16, steps_per_epoch=4),
        ),
        (
            "train_plain",
            lambda: train.train_plain(
                model.apply,
                params,
                bad,
                x,
                y,
                xt,
                yt,
                batch_size=16,
                epochs=1,
                data_key=jax.random.PRNGKey(0),
            ),
        ),
    ):
        with pytest.raises(TypeError) as e:
            call()
        assert str(e.value) == (
            f"{where}: optimizer must be an optax.GradientTransformation such as optax.adam(1e-3), got {got}"
        )

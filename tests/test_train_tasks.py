"""Tests of jinit.train's open pieces: tasks, models with state (ModelFns), validation, per-model hyperparameters."""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jinit import models, train


class Fns(NamedTuple):
    """A hand-written ModelFns (the trainer duck-types jinit.adapters.ModelFns)."""

    init: Any
    apply: Any
    info: Any = None


class BNNet(nn.Module):
    """Dense -> BatchNorm -> relu -> Dropout -> Dense: running statistics and a dropout stream."""

    out: int = 3

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dense(8, use_bias=False)(
            x
        )  # a bias before BatchNorm has a zero gradient: Adam amplifies noise
        x = nn.BatchNorm(use_running_average=not train, momentum=0.8)(x)
        x = nn.Dropout(0.25, deterministic=not train)(nn.relu(x))
        return nn.Dense(self.out)(x)


def bn_fns(module: nn.Module) -> Fns:
    def init(key, x):
        v = module.init({"params": key}, x, train=False)
        return {"params": v["params"]}, {"batch_stats": v["batch_stats"]}

    def apply(params, model_state, x, train, rng):
        variables = {**params, **model_state}
        if train:
            rngs = {} if rng is None else {"dropout": rng}
            out, upd = module.apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])
            return out, {"batch_stats": upd["batch_stats"]}
        return module.apply(variables, x, train=False), model_state

    return Fns(init, apply)


def linear_fns(out: int) -> Fns:
    module = nn.Dense(out)

    def init(key, x):
        return module.init(key, x), {}

    def apply(params, model_state, x, train, rng):
        return module.apply(params, x), model_state

    return Fns(init, apply)


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 1).astype(np.int32)
    return x[:64], y[:64], x[64:], y[64:]


def _max_diff(a, b) -> float:
    return max(jax.tree.leaves(jax.tree.map(lambda u, v: float(jnp.max(jnp.abs(u - v))), a, b)))


# ---------------------------------------------------------------------------------------------------------------
# Tasks.


def test_task_factories_name_their_primary_metric():
    assert (train.classification().primary, train.classification().higher_is_better) == (
        "accuracy",
        True,
    )
    assert train.binary().primary == "accuracy"
    reg = train.regression()
    assert reg.metric_names == ("r2", "rmse") and reg.primary == "r2" and reg.higher_is_better
    c = train.custom_task(lambda o, y: jnp.abs(o[:, 0] - y))
    assert (
        c.metric_names == ("loss",) and not c.higher_is_better
    )  # no metric: the loss is the metric
    c = train.custom_task(lambda o, y: jnp.abs(o[:, 0] - y), name="mae", higher_is_better=False)
    assert c.metric_names == ("mae",) and c.name == "custom"
    assert train.make_task("regression") == reg and train.make_task(None) == train.classification()


def test_make_task_unknown_name_lists_choices():
    with pytest.raises(ValueError, match=r"'regresion'.*Did you mean 'regression'.*binary"):
        train.make_task("regresion")
    with pytest.raises(TypeError, match="task must be"):
        train.make_task(3)


def test_custom_task_errors():
    with pytest.raises(TypeError, match="loss must be a function"):
        train.custom_task("mse")
    with pytest.raises(ValueError, match="higher_is_better"):
        train.custom_task(lambda o, y: o[:, 0], lambda o, y: o[:, 0])
    with pytest.raises(TypeError, match="higher_is_better must be True or False"):
        train.custom_task(lambda o, y: o[:, 0], lambda o, y: o[:, 0], higher_is_better="yes")


def test_binary_matches_numpy_for_both_output_shapes(toy):
    _, _, x_test, _ = toy  # 32 rows, padded to 35 and evaluated in batches of 5
    y = (x_test[:, 0] > 0).astype(np.int32)
    xp, yp, mask = train.pad_test(x_test, y, 5)
    module = nn.Dense(1)
    params = module.init(jax.random.PRNGKey(0), x_test[:1])
    logits = np.asarray(module.apply(params, x_test))[:, 0]
    ref_loss = np.mean(np.logaddexp(0, logits) - y * logits)
    for squeeze in (False, True):  # outputs [batch, 1] and [batch]

        def apply(p, s, x, t, r, squeeze=squeeze):
            out = module.apply(p, x)
            return (out[:, 0] if squeeze else out), s

        trainer = train.make_train(
            Fns(None, apply),
            optax.sgd(0.1),
            task=train.binary(),
            batch_size=8,
            steps_per_epoch=2,
            eval_batch_size=5,
        )
        loss, metrics, preds = jax.jit(trainer.evaluate_all)(params, {}, xp, yp, mask)
        np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-5)
        assert float(metrics["accuracy"]) == pytest.approx(np.mean((logits > 0) == y))
        np.testing.assert_array_equal(np.asarray(preds)[:32], (logits > 0).astype(np.int32))


def test_binary_rejects_a_wide_output(toy):
    x, _, _, _ = toy
    fns = linear_fns(2)
    params, state = fns.init(jax.random.PRNGKey(0), x[:1])
    trainer = train.make_train(fns, optax.sgd(0.1), task="binary", batch_size=8, steps_per_epoch=2)
    with pytest.raises(ValueError, match=r"one logit per example.*\(8, 2\)"):
        trainer.step(trainer.init(params, state), x[:8], np.zeros(8, np.int32))


@pytest.mark.parametrize("targets", [1, 2])
def test_regression_metrics_match_numpy_over_the_masked_set(targets):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(23, 4)).astype(np.float32)
    w = rng.normal(size=(4, targets)).astype(np.float32)
    y = (x @ w + 3.0 + 0.5 * rng.normal(size=(23, targets))).astype(np.float32)
    if targets == 1:
        y = y[:, 0]  # targets [n] with outputs [n, 1]
    fns = linear_fns(targets)
    params, state = fns.init(jax.random.PRNGKey(0), x[:1])
    trainer = train.make_train(
        fns, optax.sgd(0.1), task="regression", batch_size=8, steps_per_epoch=2, eval_batch_size=5
    )
    xp, yp, mask = train.pad_test(x, y, 5)
    loss, metrics, preds = jax.jit(trainer.evaluate_all)(params, state, xp, yp, mask)
    out = np.asarray(fns.apply(params, state, x, False, None)[0]).reshape(y.shape)
    se = (out - y) ** 2
    yy = y.reshape(23, -1)
    sst = ((yy - yy.mean(axis=0)) ** 2).sum()
    np.testing.assert_allclose(float(loss), se.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["rmse"]), np.sqrt(se.mean()), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["r2"]), 1 - se.sum() / sst, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(preds)[:23].reshape(y.shape), out, rtol=1e-6)
    # the same through the legacy evaluate: the primary metric
    _, r2, _ = trainer.evaluate(params, xp, yp, mask, model_state=state)
    assert float(r2) == pytest.approx(float(metrics["r2"]))


def test_regression_r2_is_nan_for_constant_targets():
    x = np.ones((8, 2), np.float32)
    fns = linear_fns(1)
    params, state = fns.init(jax.random.PRNGKey(0), x[:1])
    trainer = train.make_train(
        fns, optax.sgd(0.1), task="regression", batch_size=4, steps_per_epoch=2
    )
    _, metrics, _ = trainer.evaluate_all(params, state, x, np.full(8, 2.0, np.float32))
    assert np.isnan(float(metrics["r2"])) and np.isfinite(float(metrics["rmse"]))


def test_custom_task_metric_is_the_mean_and_bad_loss_shape_is_named(toy):
    x, y, _, _ = toy
    fns = linear_fns(3)
    params, state = fns.init(jax.random.PRNGKey(0), x[:1])

    def top_logit(o, t):
        return jnp.max(o, axis=-1)

    task = train.custom_task(
        lambda o, t: optax.softmax_cross_entropy_with_integer_labels(o, t),
        top_logit,
        higher_is_better=True,
    )
    assert task.metric_names == ("top_logit",)
    trainer = train.make_train(fns, optax.sgd(0.1), task=task, batch_size=8, steps_per_epoch=2)
    loss, metrics, preds = trainer.evaluate_all(params, state, x, y)
    out = np.asarray(fns.apply(params, state, x, False, None)[0])
    assert float(metrics["top_logit"]) == pytest.approx(out.max(-1).mean(), rel=1e-5)
    np.testing.assert_allclose(np.asarray(preds), out, rtol=1e-6)  # the outputs
    bad = train.custom_task(lambda o, t: jnp.mean(o), name="m", higher_is_better=False)
    trainer = train.make_train(fns, optax.sgd(0.1), task=bad, batch_size=8, steps_per_epoch=2)
    with pytest.raises(ValueError, match="one loss per example"):
        trainer.step(trainer.init(params, state), x[:8], y[:8])


def test_make_train_rejects_a_module_instance():
    with pytest.raises(TypeError, match=r"module MLP itself.*module\.apply"):
        train.make_train(models.MLP(hidden=(4,)), optax.sgd(0.1), batch_size=4, steps_per_epoch=1)


@pytest.mark.parametrize("task", ["regression", "binary"])
def test_scanned_epoch_matches_python_loop_for_other_tasks(task):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(80, 5)).astype(np.float32)
    if task == "regression":
        y = (x @ rng.normal(size=(5, 2))).astype(np.float32)
        fns = linear_fns(2)
    else:
        y = (x[:, 0] - x[:, 1] > 0).astype(np.int32)
        fns = linear_fns(1)
    params, state = fns.init(jax.random.PRNGKey(3), x[:1])
    tx = optax.adam(1e-2)
    trainer = train.make_train(
        fns, tx, task=task, batch_size=16, steps_per_epoch=4, eval_batch_size=16
    )
    epoch = jax.jit(trainer.epoch)
    st = trainer.init(params, state)
    first = None
    for e in range(2):
        st, logs = epoch(
            st, jax.random.PRNGKey(7), jax.random.PRNGKey(0), e, x[:64], y[:64], x[64:], y[64:]
        )
        first = logs if first is None else first
    ref = train.train_plain(
        fns,
        params,
        tx,
        x[:64],
        y[:64],
        x[64:],
        y[64:],
        batch_size=16,
        epochs=2,
        data_key=jax.random.PRNGKey(7),
        task=task,
        eval_batch_size=16,
    )
    assert _max_diff(st.params, ref.state.params) < 1e-5
    assert float(logs.test_accuracy[-1]) == pytest.approx(ref.test_accuracy[-1], rel=1e-5)
    if task == "regression":
        assert set(logs.test_metrics) == {"rmse"} and set(ref.test_metrics) == {"rmse"}
        assert float(logs.test_metrics["rmse"][-1]) == pytest.approx(
            ref.test_metrics["rmse"][-1], rel=1e-5
        )
        assert float(logs.test_metrics["rmse"][-1]) == pytest.approx(
            np.sqrt(float(logs.test_loss[-1])), rel=1e-5
        )
        assert float(logs.test_accuracy[-1]) > float(first.init_test_accuracy) + 0.1  # r2 improved
    else:
        assert logs.test_metrics is None and ref.test_metrics is None
        np.testing.assert_array_equal(np.asarray(logs.predictions), ref.predictions)


# ---------------------------------------------------------------------------------------------------------------
# Models with state.


def test_step_trains_params_only_and_keeps_batch_stats(toy):
    x, y, _, _ = toy
    fns = bn_fns(BNNet())
    params, state = fns.init(jax.random.PRNGKey(0), x[:1])
    trainer = train.make_train(fns, optax.adam(1e-2), batch_size=16, steps_per_epoch=4)
    st = trainer.init(params, state)
    assert jax.tree.structure(st.opt_state[0].mu) == jax.tree.structure(params)  # no batch_stats
    new, loss = jax.jit(trainer.step)(st, x[:16], y[:16], jax.random.PRNGKey(1))
    assert np.isfinite(float(loss)) and int(new.step) == 1
    # the running mean moved towards the batch mean of the first Dense's outputs (momentum 0.8)
    h = np.asarray(
        nn.Dense(8, use_bias=False).apply({"params": params["params"]["Dense_0"]}, x[:16])
    )
    np.testing.assert_allclose(
        np.asarray(new.model_state["batch_stats"]["BatchNorm_0"]["mean"]),
        0.2 * h.mean(0),
        rtol=1e-4,
        atol=1e-6,
    )
    assert _max_diff(new.params, params) > 0


def test_evaluation_uses_running_statistics_without_dropout(toy):
    x, y, xt, yt = toy
    module = BNNet()
    fns = bn_fns(module)
    params, state = fns.init(jax.random.PRNGKey(0), x[:1])
    state = jax.tree.map(lambda a: a + 0.5, state)  # running stats unlike any batch's
    trainer = train.make_train(
        fns, optax.sgd(0.1), batch_size=16, steps_per_epoch=4, eval_batch_size=8
    )
    loss, metrics, preds = jax.jit(trainer.evaluate_all)(params, state, xt, yt)
    logits = module.apply({**params, **state}, xt, train=False)
    ref = optax.softmax_cross_entropy_with_integer_labels(logits, yt).mean()
    assert float(loss) == pytest.approx(float(ref), rel=1e-5)
    np.testing.assert_array_equal(np.asarray(preds), np.asarray(logits).argmax(-1))


def test_batchnorm_dropout_epoch_matches_python_loop_and_vmapped(toy):
    """A BatchNorm + Dropout model: the scanned epoch equals train_plain, and the vmapped epoch of two models
    equals each trained alone (model_state included)."""
    x, y, xt, yt = toy
    fns = bn_fns(BNNet())
    tx = optax.adam(1e-2)
    trainer = train.make_train(
        fns, tx, batch_size=16, steps_per_epoch=4, eval_every=2, eval_batch_size=32
    )
    inits = [fns.init(jax.random.PRNGKey(s), x[:1]) for s in (0, 1)]
    dkeys = [jax.random.PRNGKey(10), jax.random.PRNGKey(11)]
    rkeys = [jax.random.PRNGKey(20), jax.random.PRNGKey(21)]
    epoch = jax.jit(trainer.epoch)
    alone = []
    for (params, state), dk, rk in zip(inits, dkeys, rkeys, strict=True):
        st = trainer.init(params, state)
        for e in range(2):
            st, logs = epoch(st, dk, rk, e, x, y, xt, yt)
        alone.append((st, logs))
    params, state = inits[0]
    ref = train.train_plain(
        fns,
        params,
        tx,
        x,
        y,
        xt,
        yt,
        batch_size=16,
        epochs=2,
        data_key=dkeys[0],
        dropout_key=rkeys[0],
        model_state=state,
    )
    assert _max_diff(alone[0][0].params, ref.state.params) < 1e-5
    assert _max_diff(alone[0][0].model_state, ref.state.model_state) < 1e-5
    assert _max_diff(alone[0][0].model_state, state) > 1e-3  # the running statistics were updated
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *[trainer.init(p, s) for p, s in inits])
    run = jax.jit(trainer.vmapped_epoch())
    for e in range(2):
        stacked, vlogs = run(stacked, jnp.stack(dkeys), jnp.stack(rkeys), e, x, y, xt, yt)
    for k, (st, logs) in enumerate(alone):
        assert (
            _max_diff(jax.tree.map(lambda a, k=k: a[k], stacked.model_state), st.model_state) < 1e-5
        )
        assert _max_diff(jax.tree.map(lambda a, k=k: a[k], stacked.params), st.params) < 1e-5
        np.testing.assert_allclose(
            np.asarray(vlogs.test_loss[k]), np.asarray(logs.test_loss), rtol=1e-5
        )


# ---------------------------------------------------------------------------------------------------------------
# Validation.


def test_validation_is_evaluated_beside_test(toy):
    x, y, xt, yt = toy
    model = models.MLP(hidden=(8,), num_classes=3)
    params = model.init(jax.random.PRNGKey(2), x[:1])
    xv, yv = x[:20], y[:20]
    xvp, yvp, vmask = train.pad_test(xv, yv, 8)
    trainer = train.make_train(
        model.apply,
        optax.adam(1e-2),
        batch_size=16,
        steps_per_epoch=4,
        eval_every=2,
        eval_batch_size=8,
    )
    epoch = jax.jit(trainer.epoch)
    st0 = trainer.init(params)
    st, logs = epoch(
        st0, jax.random.PRNGKey(7), jax.random.PRNGKey(0), 0, x, y, xt, yt, None, xvp, yvp, vmask
    )
    plain, plain_logs = epoch(st0, jax.random.PRNGKey(7), jax.random.PRNGKey(0), 0, x, y, xt, yt)
    assert _max_diff(st.params, plain.params) == 0  # validation changes no training
    np.testing.assert_array_equal(np.asarray(logs.test_loss), np.asarray(plain_logs.test_loss))
    assert plain_logs.val_loss is None and plain_logs.init_val_loss is None
    assert logs.val_loss.shape == logs.val_accuracy.shape == (2,)
    loss, acc, _ = trainer.evaluate(st.params, xvp, yvp, vmask)
    assert float(logs.val_loss[-1]) == pytest.approx(float(loss), rel=1e-6)
    assert float(logs.val_accuracy[-1]) == pytest.approx(float(acc))
    loss0, acc0, _ = trainer.evaluate(params, xvp, yvp, vmask)
    assert float(logs.init_val_loss) == pytest.approx(float(loss0), rel=1e-6)
    assert float(logs.init_val_accuracy) == pytest.approx(float(acc0))
    _, later = epoch(
        st, jax.random.PRNGKey(7), jax.random.PRNGKey(0), 1, x, y, xt, yt, None, xvp, yvp, vmask
    )
    assert np.isnan(float(later.init_val_loss))  # at initialization only
    with pytest.raises(ValueError, match="both x_val and y_val"):
        trainer.epoch(st0, jax.random.PRNGKey(7), jax.random.PRNGKey(0), 0, x, y, xt, yt, None, xvp)


def test_validation_in_the_vmapped_epoch_with_secondary_metrics():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(48, 4)).astype(np.float32)
    y = (x @ rng.normal(size=(4,))).astype(np.float32)
    fns = linear_fns(1)
    inits = [fns.init(jax.random.PRNGKey(s), x[:1]) for s in range(2)]
    trainer = train.make_train(
        fns, optax.adam(1e-2), task="regression", batch_size=8, steps_per_epoch=4
    )
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *[trainer.init(p, s) for p, s in inits])
    key = jax.random.PRNGKey(0)
    _, logs = jax.jit(trainer.vmapped_epoch(shared_keys=True))(
        stacked, key, key, 0, x[:32], y[:32], x[32:40], y[32:40], None, x[40:], y[40:]
    )
    assert logs.val_loss.shape == (2, 1) and logs.val_metrics["rmse"].shape == (2, 1)
    assert logs.init_val_metrics["rmse"].shape == (2,) and logs.init_test_metrics["rmse"].shape == (
        2,
    )
    for k, (p, s) in enumerate(inits):
        loss0, m0, _ = trainer.evaluate_all(p, s, x[40:], y[40:])
        assert float(logs.init_val_loss[k]) == pytest.approx(float(loss0), rel=1e-5)
        assert float(logs.init_val_metrics["rmse"][k]) == pytest.approx(float(m0["rmse"]), rel=1e-5)
        assert float(logs.init_val_accuracy[k]) == pytest.approx(float(m0["r2"]), rel=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Per-model hyperparameters.


def _run_steps(tx, params, grads_fn, n=5):
    state = tx.init(params)
    for _ in range(n):
        updates, state = tx.update(grads_fn(params), state, params)
        params = optax.apply_updates(params, updates)
    return params


def _grads(params):
    return jax.tree.map(lambda p: jnp.sin(3.0 * p) + 0.1, params)


@pytest.mark.parametrize("name", list(train.OPTIMIZERS))
@pytest.mark.parametrize("wd", [None, 0.05])
def test_injected_optimizer_equals_the_plain_one_bitwise(name, wd):
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.arange(4.0)}
    plain = _run_steps(train.make_optimizer(name, 3e-2, wd), params, _grads)
    injected_tx = train.make_optimizer(name, 3e-2, wd, inject=True)
    assert "learning_rate" in injected_tx.init(params).hyperparams
    injected = jax.jit(lambda p: _run_steps(injected_tx, p, _grads))(params)
    plain_jit = jax.jit(lambda p: _run_steps(train.make_optimizer(name, 3e-2, wd), p, _grads))(
        params
    )
    assert _max_diff(injected, plain_jit) == 0.0
    assert _max_diff(plain, plain_jit) < 1e-6


def test_weight_decay_semantics():
    params = {"w": jnp.array([1.0, -2.0, 0.5])}
    g = {"w": jnp.array([0.1, 0.2, -0.3])}
    lr, wd = 0.1, 0.01
    sgd = train.make_optimizer("sgd", lr, wd)
    up, _ = sgd.update(g, sgd.init(params), params)
    np.testing.assert_allclose(
        up["w"], -lr * (g["w"] + wd * params["w"]), rtol=1e-6
    )  # L2 in the gradient
    adamw = train.make_optimizer("adamw", lr, wd)
    ref = optax.adamw(lr, weight_decay=wd)
    np.testing.assert_array_equal(
        adamw.update(g, adamw.init(params), params)[0]["w"],
        ref.update(g, ref.init(params), params)[0]["w"],
    )
    adam = train.make_optimizer("adam", lr, wd)  # adam + L2: decay scaled by Adam's normalization
    ref = optax.adam(lr)
    g2 = {"w": g["w"] + wd * params["w"]}
    np.testing.assert_allclose(
        adam.update(g, adam.init(params), params)[0]["w"],
        ref.update(g2, ref.init(params), params)[0]["w"],
        rtol=1e-6,
    )
    assert train.make_optimizer("adamw", lr, inject=True).init(params).hyperparams[
        "weight_decay"
    ] == pytest.approx(1e-4)


@pytest.mark.parametrize("wd", [-0.1, float("nan")])
def test_make_optimizer_bad_weight_decay(wd):
    with pytest.raises(ValueError, match="weight decay"):
        train.make_optimizer("adam", 1e-3, wd)
    with pytest.raises(TypeError, match="weight decay"):
        train.make_optimizer("adam", 1e-3, "0.1")


def test_vmapped_models_with_their_own_learning_rates_equal_separate_runs(toy):
    """Three models, one program, three learning rates and weight decays: each equals its own single-model run."""
    x, y, xt, yt = toy
    model = models.MLP(hidden=(8,), num_classes=3)
    params = model.init(jax.random.PRNGKey(2), x[:1])
    lrs, wds = [1e-3, 1e-2, 5e-2], [0.0, 1e-3, 1e-2]
    tx = train.make_optimizer("adam", 1e-3, 0.0, inject=True)
    trainer = train.make_train(
        model.apply, tx, batch_size=16, steps_per_epoch=4, eval_batch_size=32
    )
    stacked = jax.vmap(trainer.init)(jax.tree.map(lambda a: jnp.stack([a] * 3), params))
    stacked = stacked._replace(
        opt_state=train.set_hyperparams(stacked.opt_state, learning_rate=lrs, weight_decay=wds)
    )
    np.testing.assert_allclose(stacked.opt_state.hyperparams["learning_rate"], lrs)
    key = jax.random.PRNGKey(5)
    run = jax.jit(trainer.vmapped_epoch(shared_keys=True))
    for e in range(2):
        stacked, logs = run(stacked, key, key, e, x, y, xt, yt)
    finals = [jax.tree.map(lambda a, k=k: a[k], stacked.params) for k in range(3)]
    for k, (lr, wd) in enumerate(zip(lrs, wds, strict=True)):
        alone = train.train_plain(
            model.apply,
            params,
            train.make_optimizer("adam", lr, wd),
            x,
            y,
            xt,
            yt,
            batch_size=16,
            epochs=2,
            data_key=key,
            dropout_key=key,
        )
        rel = _max_diff(finals[k], alone.state.params) / max(
            float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(alone.state.params)
        )
        assert rel < 1e-6, (k, rel)
        assert float(logs.test_loss[k, -1]) == pytest.approx(alone.test_loss[-1], rel=1e-5)
    assert _max_diff(finals[0], finals[2]) > 1e-2  # the learning rates made a difference


def test_set_hyperparams_errors():
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="no injected hyperparameters"):
        train.set_hyperparams(optax.adam(1e-3).init(params), learning_rate=0.1)
    state = jax.vmap(train.make_optimizer("sgd", 0.1, inject=True).init)({"w": jnp.ones((2, 3))})
    with pytest.raises(ValueError, match=r"no hyperparameter 'weight_decay'.*learning_rate"):
        train.set_hyperparams(state, weight_decay=0.1)
    with pytest.raises(ValueError, match=r"shape \(3,\).*\(2,\)"):
        train.set_hyperparams(state, learning_rate=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="learning rate must be positive"):
        train.set_hyperparams(state, learning_rate=[0.1, -0.2])
    same = train.set_hyperparams(state, learning_rate=0.5)  # one number for every model
    np.testing.assert_array_equal(same.hyperparams["learning_rate"], [0.5, 0.5])


def test_a_positionally_built_state_without_model_state_still_trains(toy):
    """TrainState's five original fields, positionally (model_state None): the legacy apply_fn path keeps None."""
    x, y, xt, yt = toy
    model = models.MLP(hidden=(8,), num_classes=3)
    params = model.init(jax.random.PRNGKey(2), x[:1])
    tx = optax.sgd(0.1)
    trainer = train.make_train(model.apply, tx, batch_size=16, steps_per_epoch=4)
    old = train.TrainState(
        params, tx.init(params), jnp.int32(0), jnp.int32(-1), jnp.float32(jnp.nan)
    )
    assert old.model_state is None and trainer.init(params).model_state == {}
    st, logs = jax.jit(trainer.epoch)(
        old, jax.random.PRNGKey(7), jax.random.PRNGKey(0), 0, x, y, xt, yt
    )
    new, _ = jax.jit(trainer.epoch)(
        trainer.init(params), jax.random.PRNGKey(7), jax.random.PRNGKey(0), 0, x, y, xt, yt
    )
    assert st.model_state is None and _max_diff(st.params, new.params) == 0

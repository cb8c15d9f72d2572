"""Equinox models (jinit.equinox): apply_scheme's fans, layout, keys and rules over Equinox paths, the same draws as
linen and NNX for the same key and shape, and Equinox models (stateless, with dropout, with BatchNorm) in a sweep."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit
from jinit import equinox as jeqx
from jinit import keys, sweep

eqx = pytest.importorskip("equinox")

K0, K1 = jax.random.PRNGKey(0), jax.random.PRNGKey(1)


def _sample_std_tolerance(std: float, n: int) -> float:
    """Four standard errors of a sample std of ``n`` normal draws (SE = std / sqrt(2 n))."""
    return 4 * std / math.sqrt(2 * n)


def test_he_on_linear_uses_fan_in_of_the_equinox_layout():
    layer = jinit.apply_scheme(eqx.nn.Linear(64, 128, key=K0), "he_normal", K1)
    want = math.sqrt(2 / 64)
    assert layer.weight.shape == (128, 64)
    assert abs(float(layer.weight.std()) - want) < _sample_std_tolerance(want, 128 * 64)
    # fan_out (128) would give 0.125, well outside the tolerance (0.0063)
    assert abs(0.125 - want) > 5 * _sample_std_tolerance(want, 128 * 64)
    assert np.array_equal(layer.bias, np.zeros(128, np.float32))


def test_conv_fans_include_the_receptive_field_and_bias_keeps_its_shape():
    conv = jinit.apply_scheme(eqx.nn.Conv2d(16, 32, 3, key=K0), "he_normal", K1, bias_init="ones")
    want = math.sqrt(2 / (16 * 9))
    assert abs(float(conv.weight.std()) - want) < _sample_std_tolerance(want, 32 * 16 * 9)
    assert conv.bias.shape == (32, 1, 1) and np.array_equal(conv.bias, np.ones((32, 1, 1)))
    conv = jinit.apply_scheme(eqx.nn.Conv2d(16, 32, 3, key=K0), "glorot_uniform", K1)
    limit = math.sqrt(6 / (16 * 9 + 32 * 9))
    assert limit * 0.97 < float(jnp.abs(conv.weight).max()) <= limit


def _recorded(init):
    """``init`` and the keys it was called with."""
    seen = []

    def fn(key, shape, dtype=jnp.float32):
        seen.append(key)
        return init(key, shape, dtype)

    return fn, seen


@pytest.mark.parametrize(
    "spec", ["he_normal", "glorot_uniform", "lecun_normal", "orthogonal", "normal(stddev=0.1)"]
)
def test_same_key_same_draws_as_linen_and_nnx(spec):
    from flax import nnx

    init = jinit.get(spec)
    fn, seen = _recorded(init)
    linen = nn.Dense(128, kernel_init=fn).init(K0, jnp.ones((1, 64)))["params"]["kernel"]
    ours = jeqx.init_weight(init, seen[-1], (128, 64))
    assert np.array_equal(ours, np.asarray(linen).T)
    layer = nnx.Linear(64, 128, kernel_init=fn, rngs=nnx.Rngs(params=K1))
    assert np.array_equal(jeqx.init_weight(init, seen[-1], (128, 64)), np.asarray(layer.kernel).T)
    # a conv: Flax's (kh, kw, in, out) is Equinox's (out, in, kh, kw)
    conv = nn.Conv(32, (3, 3), kernel_init=fn).init(K0, jnp.ones((1, 8, 8, 16)))["params"]["kernel"]
    ours = jeqx.init_weight(init, seen[-1], (32, 16, 3, 3))
    assert np.array_equal(ours, np.transpose(np.asarray(conv), (3, 2, 0, 1)))


def test_apply_scheme_draws_each_leaf_with_its_named_key():
    init = jinit.get("he_normal")
    layer = jinit.apply_scheme(eqx.nn.Linear(64, 128, key=K0), init, K1)
    want = jeqx.init_weight(init, keys.named_key(K1, "weight"), (128, 64))
    assert np.array_equal(layer.weight, want)
    # inside a model the path names the leaf: another key, other values
    mlp = jinit.apply_scheme(eqx.nn.MLP(64, 128, 32, depth=1, key=K0), init, K1)
    first = jeqx.init_weight(init, keys.named_key(K1, "layers/0/weight"), (32, 64))
    assert np.array_equal(mlp.layers[0].weight, first)


def test_a_flax_params_dict_is_drawn_in_its_own_layout():
    params = nn.Dense(128).init(K0, jnp.ones((1, 64)))["params"]
    out = jinit.apply_scheme(params, "he_normal", K1, bias_init="ones")
    want = jinit.he_normal()(keys.named_key(K1, "kernel"), (64, 128))
    assert np.array_equal(out["kernel"], want) and np.array_equal(out["bias"], np.ones(128))


def test_rules_over_equinox_paths():
    mlp = eqx.nn.MLP(8, 3, 16, depth=2, key=K0)
    r = jinit.rules({"layers/2/weight": "zeros", "weight": "orthogonal"})
    out = jinit.apply_scheme(mlp, r, K1)
    assert np.array_equal(out.layers[2].weight, np.zeros((3, 16)))
    w0, w1 = out.layers[0].weight, out.layers[1].weight  # (16, 8): orthonormal columns
    assert np.allclose(w0.T @ w0, np.eye(8), atol=1e-5) and np.allclose(
        w1 @ w1.T, np.eye(16), atol=1e-5
    )
    # what no rule matches is left as the model built it
    for a, b in zip(out.layers, mlp.layers, strict=True):
        assert a.bias is b.bias
    # norm scales are not weights: 1-D "weight" leaves are matched only by a rule naming them
    ln = jinit.apply_scheme(eqx.nn.LayerNorm(8), "zeros", K1)
    assert np.array_equal(ln.weight, np.ones(8))
    assert np.array_equal(
        jinit.apply_scheme(eqx.nn.LayerNorm(8), jinit.rules({"weight": "zeros"}), K1).weight,
        np.zeros(8),
    )


@pytest.mark.parametrize(
    ("scheme", "error", "match"),
    [
        ("lsuv", ValueError, "data-dependent"),
        ("he_nromal", ValueError, "he_normal"),
        ("dirac", ValueError, "cannot draw layers/0/weight of shape \\(16, 8\\)"),
        (
            jinit.rules({"conv/weight": "zeros"}),
            ValueError,
            "pattern 'conv/weight' .* matches no array",
        ),
        (3, TypeError, "bad scheme 3"),
    ],
)
def test_apply_scheme_errors_name_the_problem(scheme, error, match):
    with pytest.raises(error, match=match):
        jinit.apply_scheme(eqx.nn.MLP(8, 3, 16, depth=2, key=K0), scheme, K1)


# --------------------------------------------------------------------------------------------------- sweeps


class Net(eqx.Module):
    """A digits MLP over one example, with dropout."""

    mlp: eqx.nn.MLP
    drop: eqx.nn.Dropout

    def __init__(self, key):
        self.mlp = eqx.nn.MLP(64, 10, 32, depth=1, key=key)
        self.drop = eqx.nn.Dropout(0.1)

    def __call__(self, x, *, key=None):
        return self.drop(self.mlp(x.reshape(-1)), key=key)


class BNNet(eqx.Module):
    l1: eqx.nn.Linear
    bn: eqx.nn.BatchNorm
    l2: eqx.nn.Linear

    def __init__(self, key, axis_name="batch"):
        k1, k2 = jax.random.split(key)
        self.l1 = eqx.nn.Linear(64, 32, key=k1)
        self.bn = eqx.nn.BatchNorm(32, axis_name=axis_name, mode="batch")
        self.l2 = eqx.nn.Linear(32, 10, key=k2)

    def __call__(self, x, state, *, key=None):
        h, state = self.bn(jax.nn.relu(self.l1(x.reshape(-1))), state)
        return self.l2(h), state


CFG = sweep.SweepConfig(
    schemes=("he_normal", "zeros"),
    seeds=2,
    epochs=3,
    train_size=256,
    test_size=128,
    learning_rate=1e-2,
)


@pytest.fixture(scope="module")
def net_result():
    return sweep.run(CFG, model=Net, progress=False, keep_params=True)


def test_equinox_sweep_trains_and_records_the_model(net_result):
    r = net_result
    info = r.meta["model"]
    assert (info["kind"], info["name"], info["param_count"]) == (
        "equinox",
        "Net",
        64 * 32 + 32 + 32 * 10 + 10,
    )
    assert info["description"].startswith("Net(mlp=MLP(layers=(Linear(weight=f32[32,64]")
    assert r.config.model == "custom:Net"
    # weights are kept in Flax's layout (in, out), biases as they are
    layers = r.params["params"]["mlp"]["layers"]
    assert layers["0"]["weight"].shape == (4, 64, 32) and layers["1"]["bias"].shape == (4, 10)
    acc = r.models.groupby("scheme")["final_accuracy"].mean()
    assert acc["he_normal"] > 0.5 > acc["zeros"]


def test_equinox_sweep_starts_from_apply_scheme(net_result):
    got = sweep.initial_params(CFG, [("he_normal", 1)], model=Net)
    key = keys.init_key(keys.root_key(0), np.uint32(keys.stable_hash("he_normal")), 1)
    want = jinit.apply_scheme(Net(key), "he_normal", key)
    w = got["params"]["mlp"]["layers"]["0"]["weight"][0]
    # the init program is compiled at LLVM level 1: equal up to floating-point contraction
    np.testing.assert_allclose(w, np.asarray(want.mlp.layers[0].weight).T, rtol=1e-5, atol=1e-7)


def test_equinox_apply_is_the_module_vmapped(net_result):
    from jinit import adapters

    fns = adapters.model_fns(Net, jinit.he_normal(), jinit.zeros())
    params, state = fns.init(K0, None)
    x = jax.random.normal(K1, (200, 8, 8, 1))
    out, _ = fns.apply(params, state, x, False, None)
    module = jeqx.to_module(Net(K0), params)
    assert np.allclose(out, jax.vmap(eqx.nn.inference_mode(module))(x), atol=1e-6)
    # in training, dropout (rate 0.1) with a key per example: 2000 outputs, 10% +- 0.7% dropped
    a, _ = fns.apply(params, state, x, True, K0)
    b, _ = fns.apply(params, state, x, True, K1)
    kept = np.asarray(a) != 0
    assert abs(1 - kept.mean() - 0.1) < 0.03 and (kept != (np.asarray(b) != 0)).any()
    assert np.allclose(np.asarray(a)[kept], np.asarray(out)[kept] / 0.9, atol=1e-5)
    # examples of one batch get different masks (not one key for the whole batch)
    assert len({tuple(row) for row in kept[:20]}) > 1


def test_equinox_batchnorm_through_state():
    r = sweep.run(CFG, model=lambda key: BNNet(key), progress=False, keep_params=True)
    state = r.params["state"]["bn"]  # named by the StateIndex's place in the model
    assert set(state) == {"batch_counter", "batch_state_index"}
    assert r.models.groupby("scheme")["final_accuracy"].mean()["he_normal"] > 0.5
    # the running statistics moved away from their initial values (0 and 1) in training: 3 epochs of 8 steps
    assert np.array_equal(state["batch_counter"], np.full(4, 24))
    he = (r.models["scheme"] == "he_normal").to_numpy()  # (the zeros models' activations are all 0)
    mean, var = state["batch_state_index"]["0"][he], state["batch_state_index"]["1"][he]
    assert float(np.abs(mean).max()) > 0.01 and float(np.abs(var - 1).max()) > 0.01


@pytest.mark.parametrize(
    ("factory", "error", "match"),
    [
        (
            lambda key: BNNet(key, axis_name="b"),
            ValueError,
            "axis_name='b'; jinit vmaps the batch under",
        ),
        (Net(K0), TypeError, "got the Equinox module instance Net"),
    ],
)
def test_equinox_model_errors_before_compiling(factory, error, match):
    with pytest.raises(error, match=match):
        sweep.make_plan(CFG, model=factory)


class NoState(eqx.Module):
    bn: eqx.nn.BatchNorm

    def __init__(self, key):
        self.bn = eqx.nn.BatchNorm(64, axis_name="batch", mode="batch")

    def __call__(self, x):
        return x.reshape(-1)[:10]


def test_stateful_layers_need_a_state_argument():
    with pytest.raises(TypeError, match="has stateful layers .* but its __call__ takes no state"):
        sweep.make_plan(CFG, model=NoState)


def test_init_scale_multiplies_equinox_weights_not_biases_or_norms():
    import dataclasses

    class Normed(eqx.Module):
        lin: eqx.nn.Linear
        ln: eqx.nn.LayerNorm

        def __init__(self, key):
            self.lin = eqx.nn.Linear(64, 10, key=key)
            self.ln = eqx.nn.LayerNorm(10)

        def __call__(self, x):
            return self.ln(self.lin(x.reshape(-1)))

    grid = [("he_normal", 0, 1.0), ("he_normal", 0, 2.0)]
    cfg = dataclasses.replace(CFG, init_scale=(1.0, 2.0))
    v = sweep.initial_params(cfg, grid, model=Normed)["params"]
    assert np.array_equal(v["lin"]["weight"][1], 2 * v["lin"]["weight"][0])
    assert np.array_equal(
        v["ln"]["weight"][1], v["ln"]["weight"][0]
    )  # a norm's 1-D weight: not a kernel
    assert np.array_equal(v["ln"]["weight"][0], np.ones(10))

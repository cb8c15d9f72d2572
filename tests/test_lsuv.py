"""LSUV (Mishkin & Matas 2015): every Dense/Conv output std within tol of the target, jittable and vmappable."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit
from jinit import models, propagation

DEPTH, WIDTH = (
    12,
    64,
)  # > 10 layers: Dense_10 sorts before Dense_2, so a wrong layer order would fail


def _is_layer(mdl, name):
    return name == "__call__" and isinstance(mdl, nn.Dense | nn.Conv)


def layer_stds(model, variables, x):
    _, state = model.apply(variables, x, capture_intermediates=_is_layer, mutable=["intermediates"])
    leaves = jax.tree_util.tree_flatten_with_path(state["intermediates"])[0]
    stds = {jax.tree_util.keystr(p): float(v.std()) for p, v in leaves}
    return {k: v for k, v in stds.items() if "__call__" in k}  # not the models' sown pre_i / act_i


@pytest.fixture(scope="module")
def batch():
    return jax.random.normal(jax.random.key(1), (256, WIDTH))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_lsuv_rescues_a_vanishing_small_gaussian_init(activation, batch):
    model = models.deep_mlp(
        DEPTH, WIDTH, activation=activation, kernel_init=jinit.normal(stddev=0.01)
    )
    keys = jax.random.split(jax.random.key(0), 3)
    variables = jax.vmap(lambda k: model.init(k, batch[:1]))(keys)
    before = layer_stds(model, jax.tree.map(lambda a: a[0], variables), batch)
    assert before["['Dense_11']['__call__'][0]"] < 1e-6  # the signal has vanished

    out = jax.jit(jax.vmap(lambda v: propagation.lsuv(model, v, batch, tol=0.05)))(variables)
    for s in range(3):
        after = layer_stds(model, jax.tree.map(lambda a, s=s: a[s], out), batch)
        assert len(after) == DEPTH + 1
        assert all(abs(v - 1.0) <= 0.05 for v in after.values()), after
        # Only a positive rescaling of each kernel: directions and biases unchanged.
        for name, layer in out["params"].items():
            k0, k1 = variables["params"][name]["kernel"][s], layer["kernel"][s]
            c = float(jnp.vdot(k1, k0) / jnp.vdot(k0, k0))
            assert c > 0
            np.testing.assert_allclose(k1, c * k0, rtol=1e-4, atol=1e-7)
            np.testing.assert_array_equal(layer["bias"][s], variables["params"][name]["bias"][s])


@pytest.mark.slow
def test_lsuv_init_orthogonal_start_target_and_params_only(batch):
    make = models.factory("mlp", hidden=(WIDTH,) * DEPTH, activation="tanh")
    v = jax.jit(lambda k: propagation.lsuv_init(make, k, batch, target_std=0.5, tol=0.01))(
        jax.random.key(3)
    )
    model = make(jinit.orthogonal(), jinit.zeros())
    stds = layer_stds(model, v, batch)
    assert all(abs(s - 0.5) <= 0.01 for s in stds.values()), stds
    k = v["params"]["Dense_3"]["kernel"]
    gram = k.T @ k / (k[:, 0] @ k[:, 0])
    np.testing.assert_allclose(gram, np.eye(WIDTH), atol=1e-4)  # still a scaled orthogonal matrix
    # A bare params tree in, a bare params tree out; max_iters=0 changes nothing.
    p = model.init(jax.random.key(4), batch[:1])["params"]
    assert set(propagation.lsuv(model, p, batch)) == set(p)
    same = propagation.lsuv(model, p, batch, max_iters=0)
    jax.tree.map(np.testing.assert_array_equal, same, p)


def test_lsuv_on_a_cnn_with_nonzero_biases():
    x = jax.random.normal(jax.random.key(2), (32, 8, 8, 1))
    model = models.CNN(
        channels=(4, 8),
        dense=16,
        kernel_init=jinit.normal(stddev=0.01),
        bias_init=jinit.constant(0.01),
    )
    v = propagation.lsuv(model, model.init(jax.random.key(0), x[:1]), x, tol=0.02)
    stds = layer_stds(model, v, x)
    assert set(stds) == {
        f"['{n}']['__call__'][0]" for n in ("Conv_0", "Conv_1", "Dense_0", "Dense_1")
    }
    assert all(abs(s - 1.0) <= 0.02 for s in stds.values()), stds


def test_lsuv_validates_arguments(batch):
    model = models.deep_mlp(2, 8)
    v = model.init(jax.random.key(0), batch[:1, :8])
    with pytest.raises(ValueError, match="target_std"):
        propagation.lsuv(model, v, batch[:, :8], target_std=0.0)
    with pytest.raises(ValueError, match="max_iters"):
        propagation.lsuv(model, v, batch[:, :8], max_iters=-1)

    class NoLayers(nn.Module):
        @nn.compact
        def __call__(self, x):
            return x * self.param("w", nn.initializers.ones, ())

    m = NoLayers()
    with pytest.raises(ValueError, match="no nn.Dense"):
        propagation.lsuv(m, m.init(jax.random.key(0), batch), batch)
    with pytest.raises(TypeError, match="make_model"):
        propagation.lsuv_init(42, jax.random.key(0), batch)
    assert jinit.lsuv is propagation.lsuv


def test_lsuv_on_an_nnx_module_is_one_type_error_naming_the_fix(batch):
    """issue 24: it was AttributeError: 'M' object has no attribute 'apply'."""
    from flax import nnx

    class M(nnx.Module):
        def __init__(self, rngs):
            self.fc = nnx.Linear(8, 8, rngs=rngs)

        def __call__(self, x):
            return self.fc(x)

    m = M(nnx.Rngs(0))
    message = (
        "{}: M is a flax.nnx module; LSUV rescales the outputs of flax.linen nn.Dense / nn.Conv layers (found "
        "with linen's capture_intermediates, which NNX modules have not): write the model with flax.linen, or "
        "use another scheme for NNX models"
    )
    with pytest.raises(TypeError) as e:
        jinit.lsuv(m, nnx.state(m, nnx.Param), batch[:, :8])
    assert str(e.value) == message.format("lsuv")
    with pytest.raises(TypeError) as e:
        propagation.lsuv_init(m, jax.random.key(0), batch[:, :8])
    assert str(e.value) == message.format("lsuv_init")
    with pytest.raises(TypeError) as e:
        jinit.lsuv(models.deep_mlp(2, 8).apply, {}, batch[:, :8])
    assert str(e.value).startswith("lsuv: model must be a flax.linen Module, got the function ")


# ------------------------------------------------------------------------------------------ LSUV as a sweep scheme


def test_lsuv_scheme_value_semantics():
    s = propagation.lsuv_scheme("lsuv(tol=0.1, batch_size=64)")
    assert s == propagation.LSUVScheme(tol=0.1, batch_size=64) and hash(s) == hash(
        propagation.LSUVScheme(tol=0.1, batch_size=64)
    )
    assert propagation.lsuv_scheme(repr(s)) == s
    assert propagation.lsuv_scheme(s.config()) == s
    assert s.kernel_init == jinit.orthogonal()
    assert propagation.lsuv_scheme(kernel_init="he_normal").kernel_init == jinit.he_normal()
    assert propagation.is_lsuv_spec("LSUV") and not propagation.is_lsuv_spec("lecun_normal")
    for bad, err in [
        ("lsuv(tol=-1)", ValueError),
        ("lsuv(target_std=0)", ValueError),
        ("lsuv(batch_size=1)", ValueError),
        ("lsuv(max_iters=2.5)", TypeError),
        ("lsuv(gain=2)", TypeError),
        ("lsuv(kernel_init='nope')", ValueError),
    ]:
        with pytest.raises(err):
            propagation.lsuv_scheme(bad)


@pytest.mark.slow
def test_lsuv_is_a_sweep_scheme_and_rescues_a_deep_tanh_mlp():
    from jinit import data, sweep

    hidden = (32,) * 8
    cfg = sweep.SweepConfig(
        schemes=("normal(stddev=0.01)", "lsuv"),
        seeds=2,
        epochs=1,
        hidden=hidden,
        activation="tanh",
        train_size=512,
        test_size=128,
    )
    assert [label for label, _ in sweep.resolve_schemes(cfg.schemes)] == [
        "normal(stddev=0.01, mean=0.0)",
        "lsuv",
    ]
    params = sweep.initial_params(cfg)
    x = sweep.lsuv_batch(cfg.seed, data.load("digits").x_train[: cfg.train_size], 256)
    assert x.shape[0] == 256
    model = models.MLP(hidden=hidden, num_classes=10, activation="tanh")
    for i in range(4):  # models: 2 x normal(0.01), then 2 x lsuv
        stds = layer_stds(model, jax.tree.map(lambda a, i=i: a[i], params), x)
        last = stds[f"['Dense_{len(hidden)}']['__call__'][0]"]
        if i < 2:
            assert last < 1e-6  # vanished
        else:
            assert all(abs(v - 1.0) <= 0.05 for v in stds.values()), stds
    # The two LSUV seeds differ (independent init keys) and are stable under grid changes.
    k = "Dense_0"
    assert not np.array_equal(params["params"][k]["kernel"][2], params["params"][k]["kernel"][3])
    alone = sweep.initial_params(cfg, [("lsuv", 1)])
    np.testing.assert_array_equal(alone["params"][k]["kernel"][0], params["params"][k]["kernel"][3])
    result = sweep.run(cfg, progress=False)
    assert list(result.models["scheme"]) == ["normal(stddev=0.01, mean=0.0)"] * 2 + ["lsuv"] * 2
    assert np.isfinite(result.models["final_accuracy"]).all()


def test_bad_lsuv_scheme_fails_before_compiling():
    from jinit import sweep

    with pytest.raises(ValueError, match="tol"):
        sweep.SweepConfig(schemes=("lsuv(tol=-0.5)",)).validate()
    with pytest.raises(ValueError, match="lsuv"):
        sweep.SweepConfig(schemes=("lsvu",)).validate()

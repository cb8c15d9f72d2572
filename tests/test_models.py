import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jinit import models


def test_mlp_default_is_keras_tutorial_model():
    params = models.MLP().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    shapes = {k: v["kernel"].shape for k, v in params.items()}
    assert shapes == {"Dense_0": (784, 128), "Dense_1": (128, 64), "Dense_2": (64, 10)}


def test_every_layer_uses_the_given_initializers():
    make = models.factory("mlp", hidden=(5, 4), num_classes=3)
    params = make(nn.initializers.ones, nn.initializers.constant(0.5)).init(
        jax.random.key(0), jnp.zeros((1, 6))
    )["params"]
    for layer in params.values():
        np.testing.assert_array_equal(layer["kernel"], 1.0)
        np.testing.assert_array_equal(layer["bias"], 0.5)


def test_intermediates_are_sown_per_layer():
    model = models.deep_mlp(3, 8, activation="tanh")
    params = model.init(jax.random.key(1), jnp.zeros((1, 4)))
    x = jax.random.normal(jax.random.key(2), (5, 4))
    _, state = model.apply(params, x, mutable=["intermediates"])
    inter = state["intermediates"]
    assert sorted(inter) == sorted([f"{k}_{i}" for i in range(3) for k in ("pre", "act")])
    np.testing.assert_allclose(inter["act_1"][0], jnp.tanh(inter["pre_1"][0]), rtol=1e-6)


def test_cnn_shapes_and_hwio_kernels():
    model = models.factory("cnn", channels=(4, 8), dense=16)(
        nn.initializers.lecun_normal(), nn.initializers.zeros
    )
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
    assert params["Conv_0"]["kernel"].shape == (3, 3, 1, 4)
    assert model.apply({"params": params}, jnp.ones((2, 8, 8, 1))).shape == (2, 10)


@pytest.mark.parametrize("name", sorted(models.ACTIVATIONS))
def test_activations_by_name(name):
    x = jnp.linspace(-2, 2, 9)
    y = models.activation(name)(x)
    assert y.shape == x.shape and bool(jnp.all(jnp.isfinite(y)))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: models.activation("rleu"), "relu"),
        (lambda: models.factory("vgg"), "mlp, cnn, resmlp, transformer"),
        (lambda: models.factory("mlp", hidden=(0,)), "hidden"),
        (lambda: models.factory("mlp", depth=3), "depth"),
        (lambda: models.deep_mlp(0, 4), "depth"),
    ],
)
def test_bad_model_options_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()

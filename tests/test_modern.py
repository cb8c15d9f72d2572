"""Residual / transformer models and the schemes of jinit.modern: structure, exact constants, drawn statistics,
muP's optimizer and the coordinate check (smoke-sized)."""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jinit
from jinit import models, plots, propagation
from jinit.rules import param_paths

X = jnp.zeros((2, 12))
TOKENS = jnp.zeros((2, 8), int)


def _resmlp(**kw):
    return models.ResidualMLP(**{"width": 32, "depth": 3, "num_classes": 5, **kw})


def _transformer(**kw):
    return models.Transformer(
        **{"vocab": 16, "d_model": 64, "n_layers": 2, "n_heads": 2, "max_len": 8, **kw}
    )


def _params(rules, model, x, seed=0):
    return jax.jit(functools.partial(rules.init, model))(jax.random.PRNGKey(seed), x)["params"]


def _assert_std(a, std):
    """The sample std of n iid N(0, std^2) draws is within 5 standard errors (se = std / sqrt(2 n))."""
    a = np.asarray(a).ravel()
    assert abs(a.std() - std) < 5 * std / math.sqrt(2 * a.size), (a.std(), std, a.size)
    assert abs(a.mean()) < 5 * std / math.sqrt(a.size)


# ------------------------------------------------------------------------------------------------- models


def test_residual_mlp_parameter_paths():
    m = _resmlp(depth=2, norm="layer", gate="scalar", scalar_bias=True)
    paths = set(param_paths(m.init(jax.random.PRNGKey(0), X)["params"]))
    for i in range(2):
        for p in ("dense_0/kernel", "dense_1/bias", "norm_0/scale", "norm_1/scale", "gate"):
            assert f"block_{i}/{p}" in paths
        for p in ("bias_0a", "bias_0b", "bias_1a", "bias_out"):
            assert f"block_{i}/{p}" in paths
    assert {"stem/kernel", "stem/bias", "head/kernel", "head/bias"} <= paths
    plain = set(param_paths(_resmlp(depth=2).init(jax.random.PRNGKey(0), X)["params"]))
    assert not any("norm" in p or "gate" in p or "bias_0a" in p for p in plain)
    assert m.apply(m.init(jax.random.PRNGKey(0), X), X).shape == (2, 5)


def test_residual_mlp_gate_and_scalar_biases_are_built_neutral():
    """gate=1 and scalar biases 0 as built: the same function as the plain block with the same Dense weights."""
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 12))
    full = _resmlp(gate="scalar", scalar_bias=True)
    v = full.init(jax.random.PRNGKey(0), x)
    plain_params = jax.tree.map(lambda a: a, v["params"])
    for i in range(3):
        plain_params[f"block_{i}"] = {
            k: val for k, val in plain_params[f"block_{i}"].items() if k.startswith("dense")
        }
    np.testing.assert_allclose(
        full.apply(v, x), _resmlp().apply({"params": plain_params}, x), rtol=1e-6
    )


def test_residual_mlp_batch_norm_and_bad_options():
    m = _resmlp(norm="batch")
    v = m.init(jax.random.PRNGKey(0), X)
    assert "batch_stats" in v
    out, _ = m.apply(v, jnp.ones((2, 12)), mutable=["batch_stats"])
    assert out.shape == (2, 5)
    with pytest.raises(ValueError, match=r"norm='group'.*None, 'layer', 'batch'"):
        _resmlp(norm="group")
    with pytest.raises(ValueError, match="depth must be >= 1"):
        _resmlp(depth=0)
    with pytest.raises(ValueError, match="Did you mean 'resmlp'"):
        models.factory("resmpl")


def test_factory_builds_the_new_models_with_the_given_initializers():
    m = models.factory("resmlp", width=8, depth=2)(nn.initializers.ones, nn.initializers.zeros)
    p = m.init(jax.random.PRNGKey(0), X)["params"]
    np.testing.assert_array_equal(p["block_1"]["dense_1"]["kernel"], 1.0)
    t = models.factory("transformer", d_model=16, n_layers=1)(
        nn.initializers.zeros, nn.initializers.ones
    )
    p = t.init(jax.random.PRNGKey(0), TOKENS)["params"]
    np.testing.assert_array_equal(p["block_0"]["mlp"]["proj"]["kernel"], 0.0)
    np.testing.assert_array_equal(p["head"]["bias"], 1.0)


def test_transformer_paths_shape_and_causality():
    m = _transformer(d_model=32)
    v = m.init(jax.random.PRNGKey(0), TOKENS)
    paths = set(param_paths(v["params"]))
    for p in (
        "attn/qkv/kernel",
        "attn/out/kernel",
        "mlp/fc/kernel",
        "mlp/proj/kernel",
        "ln_1/scale",
    ):
        assert f"block_1/{p}" in paths
    assert {"embed/embedding", "pos_embed/embedding", "ln_f/scale", "head/kernel"} <= paths
    assert v["params"]["block_0"]["attn"]["qkv"]["kernel"].shape == (32, 96)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 8), 0, 16)
    apply = jax.jit(m.apply)
    logits = apply(v, tokens)
    assert logits.shape == (2, 8, 16)
    later = tokens.at[:, 5:].set((tokens[:, 5:] + 1) % 16)  # the future does not change the past
    np.testing.assert_allclose(apply(v, later)[:, :5], logits[:, :5], rtol=1e-5, atol=1e-6)
    assert not np.allclose(apply(v, later)[:, 5:], logits[:, 5:])
    with pytest.raises(ValueError, match="n_heads=3 must divide d_model=64"):
        _transformer(n_heads=3)
    with pytest.raises(ValueError, match="exceeds max_len=8"):
        m.apply(v, jnp.zeros((1, 9), int))


# ------------------------------------------------------------------------------------------------- GPT-2


def test_gpt2_constants_and_drawn_stds():
    r = jinit.gpt2(12)
    assert isinstance(r, jinit.Rules) and r.label == "gpt2(n_layers=12, std=0.02)"
    proj = dict(r.rules)["attn/out/kernel"]
    assert round(proj.config()["stddev"], 6) == 0.004082
    assert proj.config()["stddev"] == pytest.approx(0.02 / math.sqrt(24), rel=1e-12)
    p = _params(r, _transformer(n_layers=12), TOKENS)
    for i in (0, 11):
        b = p[f"block_{i}"]
        _assert_std(b["attn"]["out"]["kernel"], 0.02 / math.sqrt(24))
        _assert_std(b["mlp"]["proj"]["kernel"], 0.02 / math.sqrt(24))
        _assert_std(b["attn"]["qkv"]["kernel"], 0.02)
        _assert_std(b["mlp"]["fc"]["kernel"], 0.02)
        np.testing.assert_array_equal(b["mlp"]["fc"]["bias"], 0.0)
        np.testing.assert_array_equal(b["ln_1"]["scale"], 1.0)
    _assert_std(p["embed"]["embedding"], 0.02)
    _assert_std(p["pos_embed"]["embedding"], 0.02)
    with pytest.raises(ValueError, match="n_layers must be an integer >= 1, got 0"):
        jinit.gpt2(0)


def test_std_check_can_fail():
    """_assert_std rejects a 20% wrong std on the sizes used above (64 x 64)."""
    a = 0.02 * 1.2 * jax.random.normal(jax.random.PRNGKey(0), (64, 64))
    with pytest.raises(AssertionError):
        _assert_std(a, 0.02)


# ------------------------------------------------------------------------------------------------- DeepNet


@pytest.mark.parametrize(
    "n, alpha, beta",
    [(6, 1.861210, 0.379918), (12, 2.213364, 0.319472), (100, 3.760603, 0.188030)],
)
def test_deepnet_table(n, alpha, beta):
    for decoder in (False, True):
        a, b = jinit.deepnet_constants(n, decoder=decoder)
        assert a == pytest.approx((2 * n) ** 0.25) and b == pytest.approx((8 * n) ** -0.25)
        assert round(a, 6) == alpha and round(b, 6) == beta


def test_deepnet_gains_per_projection():
    n, d = 12, 64
    _, beta = jinit.deepnet_constants(n, decoder=True)
    r = jinit.deepnet(n, decoder=True)
    assert r.label == "deepnet(n_layers=12, decoder=True)"
    p = _params(r, _transformer(n_layers=2), TOKENS)["block_1"]
    qkv = np.asarray(p["attn"]["qkv"]["kernel"])
    _assert_std(qkv[:, :d], 1 / math.sqrt(d))  # query: Xavier, gain 1
    _assert_std(qkv[:, d : 2 * d], 1 / math.sqrt(d))  # key
    _assert_std(qkv[:, 2 * d :], beta / math.sqrt(d))  # value: gain beta
    _assert_std(p["attn"]["out"]["kernel"], beta / math.sqrt(d))
    _assert_std(p["mlp"]["fc"]["kernel"], beta * math.sqrt(2 / (d + 4 * d)))
    _assert_std(p["mlp"]["proj"]["kernel"], beta * math.sqrt(2 / (d + 4 * d)))
    m = _transformer(deepnorm_alpha=jinit.deepnet_constants(n)[0])
    assert np.isfinite(m.apply(r.init(m, jax.random.PRNGKey(0), TOKENS), TOKENS)).all()


# ------------------------------------------------------------------------------------------------- residual schemes


def _block_outputs(rules, model, x):
    v = rules.init(model, jax.random.PRNGKey(0), x)
    _, state = model.apply(v, x, mutable=["intermediates", "batch_stats"])
    return v["params"], state["intermediates"]


@pytest.mark.parametrize(
    "scheme, model_kw",
    [
        (jinit.zero_gamma(), dict(norm="layer")),
        (jinit.zero_gamma(), dict(norm="batch")),
        (jinit.skipinit(), dict(norm="batch", gate="scalar")),
        (jinit.rezero(), dict(gate="scalar")),
        (jinit.fixup(3), dict(gate="scalar", scalar_bias=True)),
    ],
    ids=["zero_gamma_ln", "zero_gamma_bn", "skipinit", "rezero", "fixup"],
)
def test_zero_branch_schemes_start_every_block_as_the_identity(scheme, model_kw):
    """The branch is zero at init: every block passes the (non-negative) stem output through unchanged, which the
    model with He init and the same options does not."""
    x = jax.random.normal(jax.random.PRNGKey(3), (8, 12))
    model = _resmlp(**model_kw)
    _, inter = _block_outputs(scheme, model, x)
    for i in range(3):
        np.testing.assert_allclose(inter[f"block_{i}_out"][0], inter["stem_out"][0], atol=1e-6)
    _, he = _block_outputs(jinit.rules({"kernel": "he_normal"}), model, x)
    assert not np.allclose(he["block_2_out"][0], he["stem_out"][0], atol=1e-3)


def test_zero_gamma_skipinit_rezero_structure():
    p = _params(jinit.zero_gamma(), _resmlp(norm="layer"), X)
    for i in range(3):
        np.testing.assert_array_equal(p[f"block_{i}"]["norm_1"]["scale"], 0.0)
        np.testing.assert_array_equal(p[f"block_{i}"]["norm_0"]["scale"], 1.0)
        _assert_std(p[f"block_{i}"]["dense_0"]["kernel"], math.sqrt(2 / 32))  # He: Var 2/fan_in
    p3 = _params(jinit.zero_gamma(branch_layers=3), _resmlp(norm="layer", branch_layers=3), X)
    np.testing.assert_array_equal(p3["block_0"]["norm_2"]["scale"], 0.0)
    np.testing.assert_array_equal(p3["block_0"]["norm_1"]["scale"], 1.0)
    for r in (jinit.skipinit(), jinit.rezero()):
        p = _params(r, _resmlp(gate="scalar"), X)
        assert all(float(p[f"block_{i}"]["gate"]) == 0.0 for i in range(3))
    assert (jinit.skipinit().label, jinit.rezero().label) == ("skipinit", "rezero")
    with pytest.raises(ValueError, match="norm_1/scale' matches no parameter"):
        _sweep_fit(models.factory("resmlp", width=8, depth=2), jinit.zero_gamma(), X)


@pytest.mark.parametrize("n_blocks, m, factor", [(16, 2, 0.25), (16, 3, 0.5), (64, 4, 0.5)])
def test_fixup_scaling_and_zeros(n_blocks, m, factor):
    assert n_blocks ** (-1 / (2 * m - 2)) == pytest.approx(factor)
    model = models.ResidualMLP(
        width=64, depth=2, num_classes=5, branch_layers=m, gate="scalar", scalar_bias=True
    )
    p = _params(jinit.fixup(n_blocks, m=m), model, X)
    for i in range(2):
        b = p[f"block_{i}"]
        np.testing.assert_array_equal(b[f"dense_{m - 1}"]["kernel"], 0.0)
        for j in range(m - 1):
            _assert_std(b[f"dense_{j}"]["kernel"], math.sqrt(2 / 64) * factor)
        assert float(b["gate"]) == 1.0 and float(b["bias_0a"]) == 0.0
    np.testing.assert_array_equal(p["head"]["kernel"], 0.0)
    np.testing.assert_array_equal(p["head"]["bias"], 0.0)
    _assert_std(p["stem"]["kernel"], math.sqrt(2 / 12))
    assert jinit.fixup(n_blocks, m=m).label == f"fixup(n_blocks={n_blocks}, m={m})"


def _sweep_fit(make, r, x):
    """The sweep's check (jinit.rules.check_fit through the model's adapter), before anything compiles."""
    from jinit.sweep.inputs import check_schemes_fit

    return check_schemes_fit(make, [(r.label, r)], nn.initializers.zeros, np.asarray(x[:1]))


def test_schemes_fit_their_models_as_the_sweep_checks_them():
    cases = [
        (models.factory("resmlp", width=8, depth=2, norm="layer"), jinit.zero_gamma(), X),
        (models.factory("resmlp", width=8, depth=2, gate="scalar"), jinit.skipinit(), X),
        (models.factory("resmlp", width=8, depth=2, scalar_bias=True), jinit.fixup(2), X),
        (models.factory("resmlp", width=8, depth=2), jinit.mup(8), X),
        (models.factory("transformer", d_model=16, n_layers=2), jinit.gpt2(2), TOKENS),
        (models.factory("transformer", d_model=16, n_layers=2), jinit.deepnet(2), TOKENS),
        (
            models.factory("transformer", d_model=16, n_layers=2),
            jinit.mup(16, inputs=("embedding",), std=0.02),
            TOKENS,
        ),
    ]
    for make, r, x in cases:
        _sweep_fit(make, r, x)


# ------------------------------------------------------------------------------------------------- muP


def test_mup_init_variances():
    base = 32
    r = jinit.mup(base)
    assert r.label == "mup(base_width=32, scale=2)"
    for width in (32, 256):
        p = _params(r, _resmlp(width=width), jnp.zeros((2, 64)))
        _assert_std(p["stem"]["kernel"], math.sqrt(2 / 64))  # input: fan-in fixed
        _assert_std(p["block_1"]["dense_0"]["kernel"], math.sqrt(2 / width))  # hidden: 1/fan_in
        _assert_std(p["head"]["kernel"], math.sqrt(2 * base) / width)  # readout: ~ 1/fan_in^2
    assert jinit.mup(8, readout="Dense_2/kernel", inputs=("Dense_0/kernel",)).label == (
        "mup(base_width=8, scale=2, readout=Dense_2/kernel, inputs=Dense_0/kernel)"
    )
    zero = _params(jinit.mup(base, readout_zero=True), _resmlp(width=64), X)
    np.testing.assert_array_equal(zero["head"]["kernel"], 0.0)
    gpt = jinit.mup(base, inputs=("embedding",), std=0.02)
    p = _params(gpt, _transformer(d_model=128, n_layers=1), TOKENS)
    _assert_std(p["embed"]["embedding"], 0.02)
    _assert_std(p["block_0"]["attn"]["qkv"]["kernel"], 0.02 * math.sqrt(base / 128))
    _assert_std(p["block_0"]["mlp"]["proj"]["kernel"], 0.02 * math.sqrt(base / 512))
    # readout: std x base / fan_in (mup.init.normal_)
    _assert_std(p["head"]["kernel"], 0.02 * base / 128)
    with pytest.raises(ValueError, match="base_width must be an integer >= 1, got 0"):
        jinit.mup(0)


#: What microsoft/mup 1.0.0 (torch 2.14.1, CPU) draws for an MLP 64 -> w -> w -> MuReadout(w, 512) with base width 64
#: (delta 128) after ``set_base_shapes``, every weight re-drawn by ``mup.init.normal_(p, std=0.02)``, torch seed 0:
#: {width: (input std, hidden std, readout weight std * output_mult / width_mult)}. The readout's effective std is
#: what its function sees: ``MuReadout.forward`` divides its input by ``width_mult`` (4 at 256, 16 at 1024), so it
#: falls as base / fan_in, while the hidden one falls as sqrt(base / fan_in). The script:
#:   net = Net(w); set_base_shapes(net, Net(64), delta=Net(128))
#:   for name, p in net.named_parameters(): mup.init.normal_(p, std=0.02) if name.endswith("weight") else None
#:   r = net.readout; r.weight.std().item() * r.output_mult / r.width_mult()
MUP_1_0_0_STD_0_02 = {
    64: (0.019895, 0.019845, 0.020032),
    256: (0.020147, 0.010011, 0.004990),
    1024: (0.020034, 0.004994, 0.001250),
}


def test_mup_constant_std_matches_the_mup_package():
    """jinit.mup(base, std=0.02) draws what ``mup.init.normal_`` + ``MuReadout`` give the function, per layer."""
    rules = jinit.mup(64, std=0.02, readout="Dense_2/kernel", inputs=("Dense_0/kernel",))
    for width, expected in MUP_1_0_0_STD_0_02.items():
        p = _params(rules, models.MLP(hidden=(width, width), num_classes=512), jnp.zeros((2, 64)))
        for layer, mup_std in zip(("Dense_0", "Dense_1", "Dense_2"), expected, strict=True):
            k = np.asarray(p[layer]["kernel"])
            n_mup = k.size  # the same shapes in torch: the package's sample has as many draws
            se = math.sqrt(
                (k.std() / math.sqrt(2 * k.size)) ** 2 + (mup_std / math.sqrt(2 * n_mup)) ** 2
            )
            assert abs(k.std() - mup_std) < 5 * se, (width, layer, k.std(), mup_std)
    # the ratios to the base width that the audit measured on the package: x0.25 at 4x, x0.0625 at 16x
    assert MUP_1_0_0_STD_0_02[256][2] / MUP_1_0_0_STD_0_02[64][2] == pytest.approx(0.25, rel=0.02)
    assert MUP_1_0_0_STD_0_02[1024][2] / MUP_1_0_0_STD_0_02[64][2] == pytest.approx(
        0.0625, rel=0.02
    )


def test_skipinit_docstring_cites_the_setting_of_de_and_smith():
    """De & Smith (2020) propose SkipInit for residual networks WITHOUT normalization (as a replacement for it)."""
    doc = " ".join(jinit.skipinit.__doc__.split())
    assert "without** normalization" in doc
    assert "with batch normalization" not in doc


def _shapes(model, x):
    return jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]


def test_mup_multipliers_follow_mup_adam():
    base = _shapes(_resmlp(width=32), X)
    mults = jinit.mup_multipliers(_shapes(_resmlp(width=128), X), base)
    assert mults["block_0/dense_0/kernel"] == 0.25  # hidden: MuAdam lr / width_mult
    assert mults["head/kernel"] == 0.25  # readout: MuReadout's 1/width_mult folded in
    assert mults["stem/kernel"] == 1.0 and mults["block_0/dense_0/bias"] == 1.0
    assert mults["head/bias"] == 1.0
    assert set(jinit.mup_multipliers(base, base).values()) == {1.0}
    t = jinit.mup_multipliers(
        _shapes(_transformer(d_model=128), TOKENS), _shapes(_transformer(d_model=32), TOKENS)
    )
    assert t["block_0/attn/qkv/kernel"] == t["block_0/mlp/proj/kernel"] == t["head/kernel"] == 0.25
    assert t["embed/embedding"] == t["block_0/ln_1/scale"] == 1.0
    with pytest.raises(ValueError, match="differ in parameters"):
        jinit.mup_multipliers(_shapes(_resmlp(depth=2), X), base)


def test_mup_optimizer_scales_adam_updates_per_layer():
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 12))
    y = jnp.arange(16) % 5
    model = _resmlp(width=128, depth=1)
    params = model.init(jax.random.PRNGKey(1), x)["params"]
    grads = jax.grad(
        lambda p: optax.softmax_cross_entropy_with_integer_labels(
            model.apply({"params": p}, x), y
        ).mean()
    )(params)
    ref, _ = optax.adam(1e-2).update(grads, optax.adam(1e-2).init(params), params)
    base = _shapes(_resmlp(width=32, depth=1), x)
    tx = jinit.mup_optimizer(1e-2, params, base)
    upd, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(
        upd["block_0"]["dense_0"]["kernel"], ref["block_0"]["dense_0"]["kernel"] / 4, rtol=1e-6
    )
    np.testing.assert_allclose(upd["head"]["kernel"], ref["head"]["kernel"] / 4, rtol=1e-6)
    np.testing.assert_allclose(upd["stem"]["kernel"], ref["stem"]["kernel"], rtol=1e-6)
    same = jinit.mup_optimizer(1e-2, params, params)  # at the base width: Adam
    upd, _ = same.update(grads, same.init(params), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), upd, ref)
    # the learning rate as an injected hyperparameter (a sweep's learning-rate axis): the same updates
    injected = optax.inject_hyperparams(
        lambda learning_rate: jinit.mup_optimizer(learning_rate, params, base)
    )(learning_rate=1e-2)
    upd_i, _ = jax.jit(injected.update)(grads, injected.init(params), params)
    upd, _ = tx.update(grads, tx.init(params), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), upd_i, upd)


@pytest.mark.parametrize(
    "lr,error,message",
    [
        (
            optax.adam,
            TypeError,
            "mup_optimizer: learning_rate: adam is an optimizer factory (adam(0) is an optax transformation), "
            "not a schedule; mup_optimizer is itself the optimizer (Adam): pass a number or a schedule such as "
            "optax.cosine_decay_schedule(1e-3, 1000)",
        ),
        (
            optax.adam(1e-3),
            TypeError,
            f"mup_optimizer: learning_rate must be a number > 0 or an optax schedule, got an optax "
            f"{type(optax.adam(1e-3)).__name__}; mup_optimizer is itself the optimizer (Adam with muP's "
            "per-layer learning rates): pass its learning rate, and chain other transformations with it, "
            "optax.chain(optax.clip_by_global_norm(1.0), mup_optimizer(...))",
        ),
        (
            lambda step: jnp.ones(3) * 1e-3,
            TypeError,
            "mup_optimizer: learning_rate: the schedule <lambda> returned Array([0.001, 0.001, 0.001], "
            "dtype=float32) (ArrayImpl) at step 0; a schedule returns one number per step",
        ),
        (
            lambda: 1e-3,
            TypeError,
            "mup_optimizer: learning_rate: <lambda> is not a schedule step -> learning rate: <lambda>(0) "
            "raised TypeError: <lambda>() takes 0 positional arguments but 1 was given",
        ),
        (
            10**400,
            ValueError,
            "mup_optimizer: learning_rate must be a finite number > 0, got "
            "1000000000000000000000000000000000000... (int)",
        ),
        (
            float("inf"),
            ValueError,
            "mup_optimizer: learning_rate must be a finite number > 0, got inf (float)",
        ),
        (0, ValueError, "mup_optimizer: learning_rate must be a finite number > 0, got 0 (int)"),
        (
            "1e-3",
            TypeError,
            "mup_optimizer: learning_rate must be a number > 0 or an optax schedule, got '1e-3' (str)",
        ),
    ],
    ids=[
        "factory",
        "transformation",
        "vector_schedule",
        "not_a_schedule",
        "10**400",
        "inf",
        "0",
        "str",
    ],
)
def test_mup_optimizer_refuses_what_is_not_a_learning_rate_in_one_line(lr, error, message):
    params = {"dense": {"kernel": jnp.ones((4, 8))}}
    with pytest.raises(error) as e:
        jinit.mup_optimizer(lr, params, params)
    assert str(e.value) == message


def test_mup_optimizer_takes_a_schedule_and_numpy_numbers():
    params = {"dense": {"kernel": jnp.ones((4, 8))}}
    grads = {"dense": {"kernel": jnp.full((4, 8), 0.5)}}
    ref = optax.adam(1e-3)
    expected, _ = ref.update(grads, ref.init(params), params)
    for lr in (optax.constant_schedule(1e-3), np.float32(1e-3), 1e-3):
        tx = jinit.mup_optimizer(lr, params, params)  # at the base width: Adam
        upd, _ = tx.update(grads, tx.init(params), params)
        np.testing.assert_allclose(upd["dense"]["kernel"], expected["dense"]["kernel"], rtol=1e-6)


# ------------------------------------------------------------------------------------------------- coordinate check

WIDTHS = (32, 64, 128, 256)


def _ratio(df, layer, stat, t=3):
    g = df[(df["t"] == t) & (df["layer"] == layer)].groupby("width")[stat].mean()
    return g[WIDTHS[-1]] / g[WIDTHS[0]], g


@pytest.mark.slow
def test_coordinate_check_mup_is_width_stable_and_sp_is_not():
    """After 3 Adam steps at lr 1e-2 (fixed data and seeds), the last hidden pre-activation of an MLP grows with
    width under SP (measured from width 32 to 256: mean |x| x1.66, its change from init x4.1) and stays flat under
    muP (x1.03 and x0.84); the logits grow x4.3 under SP and do not grow under muP (x0.61)."""
    x = jax.random.normal(jax.random.PRNGKey(42), (32, 16))
    y = jax.random.randint(jax.random.PRNGKey(43), (32,), 0, 10)

    def make(w):
        return models.MLP(hidden=(w, w), num_classes=10, kernel_init=jinit.he_normal())

    lr = 1e-2
    base = _shapes(make(WIDTHS[0]), x)
    sp = propagation.coordinate_check(make, WIDTHS, (x, y), optimizer=optax.adam(lr), seeds=2)
    mup = propagation.coordinate_check(
        make,
        WIDTHS,
        (x, y),
        scheme=jinit.mup(WIDTHS[0], readout="Dense_2/kernel", inputs=("Dense_0/kernel",)),
        optimizer=lambda w, p: jinit.mup_optimizer(lr, p, base),
        seeds=2,
    )
    assert list(sp.columns) == ["width", "seed", "t", "layer", "l1", "delta"]
    assert (
        len(sp) == len(WIDTHS) * 2 * 4 * 5
    )  # widths x seeds x t=0..3 x (pre/act of 2 layers + output)
    np.testing.assert_array_equal(sp[sp["t"] == 0]["delta"], 0.0)
    assert (sp[sp["t"] == 3]["delta"] > 0).all()
    sp_l1, g = _ratio(sp, "pre_1", "l1")
    mup_l1, h = _ratio(mup, "pre_1", "l1")
    assert sp_l1 > 1.3, g
    assert 0.85 < mup_l1 < 1.18, h
    sp_delta, g = _ratio(sp, "pre_1", "delta")
    mup_delta, h = _ratio(mup, "pre_1", "delta")
    assert sp_delta > 2.5, g
    assert 0.6 < mup_delta < 1.5, h
    assert np.diff(g.to_numpy()).min() > 0  # SP's change grows at every doubling of width
    sp_out, g = _ratio(sp, "output", "l1")
    mup_out, h = _ratio(mup, "output", "l1")
    assert sp_out > 2.0, g
    assert mup_out < 1.2, h


def test_coordinate_check_plot_and_errors():
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 4))
    y = jnp.arange(8) % 3
    df = propagation.coordinate_check(
        lambda w: models.MLP(hidden=(w,), num_classes=3),
        [4, 8],
        (x, y),
        optimizer=optax.sgd(0.1),
        steps=1,
        seeds=[5],
    )
    assert sorted(df["layer"].unique()) == ["act_0", "output", "pre_0"]
    assert set(df["seed"]) == {5} and set(df["t"]) == {0, 1}
    fig = plots.coordinate_check(df, layers=["pre_0", "output"], title="SP")
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2
    with pytest.raises(ValueError, match="unknown layer"):
        plots.coordinate_check(df, layers=["nope"])
    with pytest.raises(ValueError, match="widths must be"):
        propagation.coordinate_check(lambda w: None, [], (X, X), optimizer=optax.adam(1e-3))
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        propagation.coordinate_check(
            lambda w: None, [8], (X, X), optimizer=optax.adam(1e-3), steps=-1
        )


# ------------------------------------------------------------------------------------------------- issue 25


def test_per_layer_adam_is_mup_optimizer_with_its_table_and_scales_per_path():
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 12))
    y = jnp.arange(16) % 5
    model = _resmlp(width=64, depth=2)
    params = model.init(jax.random.PRNGKey(1), x)["params"]
    grads = jax.grad(
        lambda p: optax.softmax_cross_entropy_with_integer_labels(
            model.apply({"params": p}, x), y
        ).mean()
    )(params)
    base = _shapes(_resmlp(width=32, depth=2), x)
    mup_tx = jinit.mup_optimizer(3e-3, params, base, weight_decay=1e-4)
    tx = jinit.per_layer_adam(3e-3, jinit.mup_multipliers(params, base), weight_decay=1e-4)
    a, _ = mup_tx.update(grads, mup_tx.init(params), params)
    b, _ = tx.update(grads, tx.init(params), params)
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(np.asarray(u), np.asarray(v)), a, b)
    # one multiplier of 0.3 on one path: that path's update is 0.3 x Adam's, the others Adam's
    ones = dict.fromkeys(param_paths(params), 1.0)
    ones["head/kernel"] = 0.3
    ref, _ = optax.adam(3e-3).update(grads, optax.adam(3e-3).init(params), params)
    one = jinit.per_layer_adam(3e-3, ones)
    upd, _ = one.update(grads, one.init(params), params)
    np.testing.assert_allclose(upd["head"]["kernel"], 0.3 * ref["head"]["kernel"], rtol=1e-6)
    np.testing.assert_allclose(upd["stem"]["kernel"], ref["stem"]["kernel"], rtol=1e-6)
    with pytest.raises(
        ValueError, match=r"per_layer_adam: no multiplier for parameter\(s\) block_0/dense_0/bias"
    ):
        short = jinit.per_layer_adam(1e-3, {"stem/kernel": 1.0})
        short.update(grads, short.init(params), params)
    with pytest.raises(ValueError, match="multiplier of a must be a finite number >= 0"):
        jinit.per_layer_adam(1e-3, {"a": -1.0})
    with pytest.raises(ValueError, match="learning_rate"):
        jinit.per_layer_adam(0.0, ones)


def test_residual_mlp_branch_multiplier_and_preact_blocks_by_hand():
    x = jax.random.normal(jax.random.PRNGKey(3), (4, 12))
    net = _resmlp(depth=2, branch_layers=1, branch_multiplier=0.25, preact=True)
    v = net.init(jax.random.PRNGKey(0), x)
    p = v["params"]
    dense = lambda h, q: h @ q["kernel"] + q["bias"]  # noqa: E731
    h = dense(x, p["stem"])  # pre-activation: no activation after the stem ...
    for i in range(2):  # ... x + m W relu(x) per block ...
        h = h + 0.25 * dense(jax.nn.relu(h), p[f"block_{i}"]["dense_0"])
    want = dense(jax.nn.relu(h), p["head"])  # ... and the head reads relu(x)
    np.testing.assert_allclose(net.apply(v, x), want, rtol=1e-5, atol=1e-6)
    # the post-activation block with a multiplier: relu(x + m branch(x)); the same paths as without one
    post = _resmlp(depth=1, branch_layers=2, branch_multiplier=0.5)
    v = post.init(jax.random.PRNGKey(0), x)
    q = v["params"]
    h = jax.nn.relu(dense(x, q["stem"]))
    b = dense(jax.nn.relu(dense(h, q["block_0"]["dense_0"])), q["block_0"]["dense_1"])
    want = dense(jax.nn.relu(h + 0.5 * b), q["head"])
    np.testing.assert_allclose(post.apply(v, x), want, rtol=1e-5, atol=1e-6)
    assert param_paths(q) == param_paths(_resmlp(depth=1).init(jax.random.PRNGKey(0), x)["params"])
    with pytest.raises(ValueError, match="branch_multiplier must be a number > 0"):
        _resmlp(branch_multiplier=0.0)
    with pytest.raises(ValueError, match="scalar_bias .* post-activation"):
        _resmlp(preact=True, scalar_bias=True)


def test_transformer_qk_norm_normalizes_queries_and_keys():
    net = _transformer(qk_norm=True)
    p = net.init(jax.random.PRNGKey(0), TOKENS)["params"]
    attn = p["block_0"]["attn"]
    assert attn["q_norm"]["scale"].shape == (32,) and attn["k_norm"]["bias"].shape == (
        32,
    )  # d_head = 64 / 2
    assert (
        "q_norm"
        not in _transformer().init(jax.random.PRNGKey(0), TOKENS)["params"]["block_0"]["attn"]
    )
    # with a huge qkv kernel, the attention logits of qk-layernorm stay bounded; without it they explode
    big = jax.tree.map(lambda a: a, p)
    big["block_0"]["attn"]["qkv"]["kernel"] = 100.0 * p["block_0"]["attn"]["qkv"]["kernel"]
    toks = jax.random.randint(jax.random.PRNGKey(1), (2, 8), 0, 16)
    assert np.isfinite(np.asarray(net.apply({"params": big}, toks))).all()


def test_z_loss_adds_its_gradient_and_leaves_the_forward_pass():
    toks = jax.random.randint(jax.random.PRNGKey(1), (4, 8), 0, 16)
    plain, zl = _transformer(), _transformer(z_loss=1e-2)
    p = plain.init(jax.random.PRNGKey(0), toks)["params"]
    np.testing.assert_array_equal(plain.apply({"params": p}, toks), zl.apply({"params": p}, toks))

    def ce(model, q):
        logits = model.apply({"params": q}, toks)
        return optax.softmax_cross_entropy_with_integer_labels(logits, toks).mean()

    def ce_plus_z(q):  # what the z-loss option trains on: CE + c * mean over the rows of log(Z)^2
        logits = plain.apply({"params": q}, toks)
        z = jax.nn.logsumexp(logits, axis=-1)
        return (
            optax.softmax_cross_entropy_with_integer_labels(logits, toks).mean()
            + 1e-2 * (z**2).mean()
        )

    got = jax.grad(lambda q: ce(zl, q))(p)
    want = jax.grad(ce_plus_z)(p)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7), got, want)
    plain_g = jax.grad(lambda q: ce(plain, q))(p)
    assert not np.allclose(
        plain_g["head"]["bias"], got["head"]["bias"]
    )  # the term reaches the parameters
    with pytest.raises(ValueError, match="z_loss must be a number >= 0"):
        _transformer(z_loss=-1.0)

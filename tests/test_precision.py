"""Precision (issue 26): optimizer state stored in bfloat16 (jinit.train.state_in and the named optimizers), models
computing in bfloat16 (jinit.models, jinit.adapters.with_dtype), and precision as grid dimensions of a sweep
(SweepConfig.compute_dtype / state_dtype, jinit.sweep.precision): one compiled program per precision, the float32
models unchanged, the layout contract per precision, the tables, the fingerprint, the memory estimates, failures."""

from __future__ import annotations

import dataclasses
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jinit import adapters, cli, metrics, models, report, sweep, train

BF16 = jnp.bfloat16


def _dtypes(tree):
    return [str(x.dtype) for x in jax.tree.leaves(tree)]


# ---------------------------------------------------------------------------------------------------------------
# Optimizer state in bfloat16.


def _grads(step: int) -> dict:
    g = np.random.default_rng(step).normal(size=(3, 5)).astype(np.float32)
    return {"w": jnp.asarray(g * (10.0 ** -(step % 4))), "b": jnp.asarray(g[0] * 1e-3)}


def test_state_in_stores_the_moments_in_bfloat16_and_leaves_the_count():
    tx = train.state_in(optax.adam(1e-3), BF16)
    params = {"w": jnp.ones((3, 5)), "b": jnp.zeros(5)}
    adam, _ = tx.init(params)
    assert _dtypes(adam.mu) == _dtypes(adam.nu) == ["bfloat16", "bfloat16"]
    assert adam.count.dtype == jnp.int32
    _, (adam, _) = tx.update(_grads(0), tx.init(params), params)
    assert _dtypes(adam.nu) == ["bfloat16", "bfloat16"] and adam.count == 1


def test_state_in_is_the_float32_update_with_the_state_rounded_between_steps():
    """Each step: the stored moments cast up, optax's own float32 update, the new moments rounded to bfloat16
    (nearest even). Reference: optax.adam in float32, its state rounded by hand after every step; bit for bit."""
    params = {"w": jnp.ones((3, 5)), "b": jnp.zeros(5)}
    tx, ref = train.state_in(optax.adam(1e-2), BF16), optax.adam(1e-2)
    state, ref_state = tx.init(params), ref.init(params)
    for step in range(6):
        g = _grads(step)
        u, state = tx.update(g, state, params)
        ru, ref_state = ref.update(g, ref_state, params)
        ref_state = jax.tree.map(
            lambda x: x.astype(BF16).astype(jnp.float32) if x.dtype == jnp.float32 else x,
            ref_state,
        )
        for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(ru), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state), strict=True):
            np.testing.assert_array_equal(np.asarray(a).astype(np.float32), np.asarray(b))
    # the rounding is real: the float32 optimizer's own moments differ from the stored ones
    exact = optax.adam(1e-2)
    s = exact.init(params)
    for step in range(6):
        _, s = exact.update(_grads(step), s, params)
    assert not np.array_equal(np.asarray(s[0].nu["w"]), np.asarray(state[0].nu["w"], np.float32))


def test_state_in_keeps_injected_hyperparameters_float32():
    tx = train.state_in(optax.inject_hyperparams(optax.adam)(learning_rate=1e-3), BF16)
    state = tx.init({"w": jnp.ones(4)})
    assert {k: str(v.dtype) for k, v in state.hyperparams.items()} == dict.fromkeys(
        ("b1", "b2", "eps", "eps_root", "learning_rate"), "float32"
    )
    assert _dtypes(state.inner_state[0].nu) == ["bfloat16"]
    # 1e-3 is not a bfloat16 number: the learning rate would have moved
    assert float(jnp.float32(1e-3).astype(BF16)) != float(jnp.float32(1e-3))


@pytest.mark.parametrize(
    "name, moments",
    [
        ("adam", ["bfloat16", "bfloat16"]),  # mu by optax's mu_dtype, nu by state_in
        ("adamw", ["bfloat16", "bfloat16"]),
        ("momentum", ["bfloat16"]),  # optax's accumulator_dtype
        ("rmsprop", ["bfloat16"]),  # state_in
        ("sgd", []),  # no state
    ],
)
def test_named_optimizers_store_their_state_in_bfloat16(name, moments):
    params = {"w": jnp.ones((2, 3))}
    tx = train.make_optimizer(name, 1e-3, inject=True, state_dtype="bfloat16")
    state = tx.init(params)
    inner = [str(x.dtype) for x in jax.tree.leaves(state.inner_state) if x.dtype != jnp.int32]
    assert inner == moments
    assert {str(v.dtype) for v in state.hyperparams.values()} == {"float32"}
    # float32 (and None) is optax's optimizer itself: the same state as before
    plain = train.make_optimizer(name, 1e-3, inject=True, state_dtype="float32").init(params)
    assert all(str(x.dtype) in ("float32", "int32") for x in jax.tree.leaves(plain.inner_state))


def test_adam_in_bfloat16_uses_optax_mu_dtype_for_the_first_moment():
    params = {"w": jnp.ones((2, 3))}
    g = {"w": jnp.full((2, 3), 0.3)}
    ours = train.named_optimizer("adam", 1e-3, "bfloat16")
    theirs = optax.adam(1e-3, mu_dtype=BF16)
    u1, s1 = ours.update(g, ours.init(params), params)
    u2, s2 = theirs.update(g, theirs.init(params), params)
    np.testing.assert_array_equal(np.asarray(u1["w"]), np.asarray(u2["w"]))
    np.testing.assert_array_equal(np.asarray(s1[0].mu["w"]), np.asarray(s2[0].mu["w"]))
    assert s2[0].nu["w"].dtype == jnp.float32 and s1[0].nu["w"].dtype == BF16


def test_a_bad_state_dtype_is_one_value_error():
    with pytest.raises(
        ValueError, match=r"state_dtype='float16' is not valid; valid choices: float32, bfloat16"
    ):
        train.make_optimizer("adam", 1e-3, state_dtype="float16")


# ---------------------------------------------------------------------------------------------------------------
# Models computing in bfloat16.


def test_a_bfloat16_mlp_keeps_float32_parameters_and_computes_in_bfloat16():
    m = models.MLP(hidden=(8,), num_classes=3, dtype=BF16)
    x = jnp.ones((2, 5))
    v = jax.jit(m.init)(jax.random.key(0), x)
    assert set(_dtypes(v)) == {"float32"}
    assert jax.eval_shape(m.apply, v, x).dtype == BF16
    dots = [
        e for e in jax.make_jaxpr(m.apply)(v, x).jaxpr.eqns if e.primitive.name == "dot_general"
    ]
    assert len(dots) == 2 and all(e.outvars[0].aval.dtype == BF16 for e in dots)
    # the same parameters as the float32 model draws
    f32 = jax.jit(models.MLP(hidden=(8,), num_classes=3).init)(jax.random.key(0), x)
    for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(f32), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
    "make",
    [
        lambda: models.ResidualMLP(
            width=8, depth=2, num_classes=3, gate="scalar", scalar_bias=True, dtype=BF16
        ),
        lambda: models.ResidualMLP(width=8, depth=2, num_classes=3, norm="layer", dtype=BF16),
        lambda: models.CNN(channels=(4,), dense=8, num_classes=3, dtype=BF16),
        lambda: models.Transformer(
            vocab=7, d_model=8, n_layers=1, n_heads=2, max_len=4, dtype=BF16
        ),
    ],
)
def test_every_builtin_model_stays_in_bfloat16(make):
    """Fixup's scalar biases and the gate are float32 parameters: added to bfloat16 activations they would promote
    them back to float32; the model casts them, so every matmul and the output are bfloat16."""
    m = make()
    x = jnp.ones((2, 4), jnp.int32) if isinstance(m, models.Transformer) else jnp.ones((2, 6, 6, 1))
    v = jax.eval_shape(m.init, jax.random.key(0), x)  # abstract: nothing is computed
    assert set(_dtypes(v["params"])) == {"float32"}
    assert jax.eval_shape(m.apply, v, x).dtype == BF16
    jaxpr = jax.make_jaxpr(m.apply)(v, x).jaxpr

    def eqns(j):
        for e in j.eqns:
            yield e
            for v in e.params.values():
                for sub in v if isinstance(v, tuple | list) else (v,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        yield from eqns(inner)

    dots = [e for e in eqns(jaxpr) if e.primitive.name in ("dot_general", "conv_general_dilated")]
    assert dots and all(e.outvars[0].aval.dtype == BF16 for e in dots)


def test_the_factory_passes_the_dtype_and_none_is_the_float32_model():
    make = models.factory("mlp", hidden=(8,), num_classes=3)
    k, b = jax.nn.initializers.lecun_normal(), jax.nn.initializers.zeros
    assert make(k, b).dtype is None and make(k, b, dtype=BF16).dtype == BF16
    assert adapters.takes_dtype(make)


def test_a_bfloat16_model_trains_with_a_float32_loss_and_float32_gradients():
    m = models.MLP(hidden=(8,), num_classes=3, dtype=BF16)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 5)), jnp.float32)
    y = jnp.asarray(np.arange(16) % 3, jnp.int32)
    t = train.make_train(m.apply, optax.adam(1e-2), batch_size=8, steps_per_epoch=2)
    state = jax.jit(t.init)(jax.jit(m.init)(jax.random.key(0), x))
    state, loss = jax.jit(t.step)(state, x[:8], y[:8])
    assert loss.dtype == jnp.float32
    assert set(_dtypes(state.params)) == {"float32"}
    assert set(_dtypes(state.opt_state)) <= {"float32", "int32"}


# ---------------------------------------------------------------------------------------------------------------
# Your own model: the compute dtype where it takes one, else a one-line refusal.


class WithDtype(nn.Module):
    kernel_init: object
    bias_init: object
    dtype: object = None

    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(10, kernel_init=self.kernel_init, dtype=self.dtype)(x)


class WithoutDtype(nn.Module):
    kernel_init: object
    bias_init: object

    @nn.compact
    def __call__(self, x):
        return nn.Dense(10, kernel_init=self.kernel_init)(x.reshape((x.shape[0], -1)))


def _output_dtype(factory):
    fns = adapters.model_fns(factory, jax.nn.initializers.lecun_normal(), jax.nn.initializers.zeros)
    x = jnp.ones((2, 4))
    params, state = jax.eval_shape(fns.init, jax.random.key(0), x)
    assert set(_dtypes(params)) == {"float32"}
    return jax.eval_shape(lambda p, s: fns.apply(p, s, x, False, None)[0], params, state).dtype


def test_with_dtype_reaches_a_linen_class_a_factory_function_and_an_nnx_class():
    from flax import nnx

    class NnxNet(nnx.Module):
        def __init__(self, kernel_init, bias_init, rngs, dtype=None):
            self.fc = nnx.Linear(4, 10, kernel_init=kernel_init, dtype=dtype, rngs=rngs)

        def __call__(self, x):
            return self.fc(x)

    def function(kernel_init, bias_init, dtype=None):
        return WithDtype(kernel_init, bias_init, dtype=dtype)

    for factory in (WithDtype, function, NnxNet):
        assert _output_dtype(factory) == jnp.float32
        assert _output_dtype(adapters.with_dtype(factory, BF16)) == BF16
        assert adapters.with_dtype(factory, BF16).__name__ == factory.__qualname__


def test_with_dtype_refuses_a_model_without_dtype_in_one_line():
    for factory in (
        WithoutDtype,
        lambda kernel_init, bias_init: WithoutDtype(kernel_init, bias_init),
    ):
        assert not adapters.takes_dtype(factory)
        with pytest.raises(
            TypeError, match=r"^model: .*takes no dtype, so the compute dtype bfloat16"
        ) as e:
            adapters.with_dtype(factory, BF16)
        assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------------------------
# Precision as grid dimensions of a sweep.

P = sweep.SweepConfig(
    schemes=("he_normal", "zeros"),
    seeds=2,
    epochs=2,
    hidden=(16,),
    train_size=256,
    test_size=128,
    batch_size=32,
    max_models_per_chunk=2,
    models_per_device=2,
)
BOTH = ("float32", "bfloat16")
#: digits MLP 64-16-10: the parameters (and so the elements of each Adam moment) of one model
N_PARAMS = 64 * 16 + 16 + 16 * 10 + 10


@pytest.fixture(scope="module")
def pair():
    """One scheme at two state dtypes (2 blocks of 2 models), one epoch, on one device, with a cache of its own."""
    programs = sweep.ProgramCache()
    cfg = dataclasses.replace(P, schemes=("he_normal",), epochs=1, state_dtype=BOTH)
    return sweep.run(cfg, progress=False, programs=programs, max_devices=1), programs


@pytest.fixture(scope="module")
def mixed():
    """P at every precision (2 x 2 = 4 blocks of 4 models), on one device, with a cache of its own."""
    programs = sweep.ProgramCache()
    cfg = dataclasses.replace(P, compute_dtype=BOTH, state_dtype=BOTH)
    return sweep.run(cfg, progress=False, programs=programs, max_devices=1), programs


def test_config_spellings_and_bad_values():
    c = dataclasses.replace(P, compute_dtype=["bf16"], state_dtype=(jnp.float32, "BFloat16"))
    assert (c.compute_dtype, c.state_dtype) == ("bfloat16", ("float32", "bfloat16"))
    assert sweep.SweepConfig.from_dict(c.to_dict()) == c
    assert c.to_dict()["state_dtype"] == ["float32", "bfloat16"]
    with pytest.raises(
        ValueError,
        match=r"compute_dtype='float16' is not a precision jinit sweeps; valid choices: float32, bfloat16",
    ):
        dataclasses.replace(P, compute_dtype="float16")
    with pytest.raises(ValueError, match="state_dtype has repeated values"):
        dataclasses.replace(P, state_dtype=("bfloat16", "bf16"))
    with pytest.raises(ValueError, match="compute_dtype is an empty tuple"):
        dataclasses.replace(P, compute_dtype=())
    with pytest.raises(TypeError, match="state_dtype values must be dtype names"):
        dataclasses.replace(P, state_dtype=16)


def test_one_compiled_program_per_precision_value(pair):
    r, programs = pair
    # two state dtypes: two programs, one executable each (one device); a chunk per block
    assert (programs.epoch_programs, programs.epoch_executables) == (2, 2)
    assert (r.meta["n_chunks"], r.meta["chunk_size"]) == (2, 2)
    again = sweep.run(r.config, progress=False, programs=programs, max_devices=1)
    assert (programs.epoch_programs, programs.epoch_executables) == (2, 2)  # nothing compiled again
    assert list(again.models["param_sha256"]) == list(r.models["param_sha256"])
    assert list(r.models.columns[:3]) == ["scheme", "state_dtype", "seed"]
    assert r.models["param_sha256"].nunique() == 4


def test_a_model_of_a_precision_is_the_same_in_another_grid(pair):
    """The layout contract per precision: the bfloat16-state models of the two-precision grid, in a sweep of their
    precision alone, beside another scheme, with another number of seeds (so in other chunks, beside other
    models), are the same bit for bit."""
    r, _ = pair
    other = dataclasses.replace(
        P, schemes=("lecun_normal", "he_normal"), seeds=3, epochs=1, state_dtype="bfloat16"
    )
    o = sweep.run(other, progress=False)
    pick = o.models[(o.models["scheme"] == "he_normal")].set_index("seed")["param_sha256"]
    mine = r.models[r.models["state_dtype"] == "bfloat16"].set_index("seed")["param_sha256"]
    assert pick.loc[[0, 1]].tolist() == mine.loc[[0, 1]].tolist()


def test_bfloat16_state_lowers_the_estimate_and_xla_memory_by_the_state_share(pair):
    r, _ = pair
    est = r.meta["bytes_per_model_by_precision"]
    f32, bf = est["compute=float32,state=float32"], est["compute=float32,state=bfloat16"]
    # Adam's two moments, N_PARAMS elements each, 4 -> 2 bytes
    assert f32 - bf == 2 * N_PARAMS * 2
    assert r.meta["bytes_per_model_estimate"] == max(est.values()) == f32
    one = sweep.make_plan(dataclasses.replace(P, state_dtype="bfloat16"))
    assert one.layout.bytes_per_model == bf
    # XLA's own figure: the program's arguments (the k models' state, donated, and the data) fall by the same
    xla = r.meta["epoch_program_bytes_by_precision"]
    k = r.meta["models_per_device"]
    arg = {p: v["argument"] for p, v in xla.items()}
    assert (
        arg["compute=float32,state=float32"] - arg["compute=float32,state=bfloat16"]
        == k * 4 * N_PARAMS
    )
    # bfloat16 activations lower the estimate's activation share
    act = sweep.make_plan(dataclasses.replace(P, compute_dtype="bfloat16"))
    assert act.layout.bytes_per_model < f32


@pytest.mark.slow  # four programs compiled
def test_every_precision_of_a_two_by_two_grid_is_one_program(mixed):
    r, programs = mixed
    # four precisions: four programs, one executable each (one device); eight chunks of 2, none spans two blocks
    assert (programs.epoch_programs, programs.epoch_executables) == (4, 4)
    assert (r.meta["n_chunks"], r.meta["chunk_size"]) == (8, 2)
    assert r.meta["precision_dimensions"] == {
        "compute_dtype": list(BOTH),
        "state_dtype": list(BOTH),
    }
    arg = {p: v["argument"] for p, v in r.meta["epoch_program_bytes_by_precision"].items()}
    assert arg["compute=bfloat16,state=float32"] == arg["compute=float32,state=float32"]
    # a learning-rate axis adds no program; a compute dtype does
    fresh = sweep.ProgramCache()
    cfg = dataclasses.replace(
        P, schemes=("he_normal",), epochs=1, learning_rate=(1e-3, 1e-2), compute_dtype=BOTH
    )
    sweep.run(cfg, progress=False, programs=fresh, max_devices=1)
    assert (fresh.epoch_programs, fresh.epoch_executables) == (2, 2)


@pytest.mark.slow  # the four-precision grid
def test_the_tables_have_a_column_per_precision_dimension(mixed):
    r, _ = mixed
    m = r.models
    assert list(m.columns[:4]) == ["scheme", "compute_dtype", "state_dtype", "seed"]
    # the grid: compute dtype slowest, then the state dtype, then scheme x seed
    blocks = list(zip(m["compute_dtype"], m["state_dtype"], strict=True))
    assert blocks == [(c, s) for c in BOTH for s in BOTH for _ in range(4)]
    assert list(m["scheme"][:4]) == ["he_normal", "he_normal", "zeros", "zeros"]
    assert set(r.curves["compute_dtype"]) == set(BOTH) and len(r.curves) == 16 * 3
    s = r.summary()
    assert list(s.columns[:3]) == ["scheme", "compute_dtype", "state_dtype"] and len(s) == 8
    assert {type(v) for v in s["compute_dtype"]} == {str}
    text = report.summary(r)
    assert "he_normal compute=bfloat16 state=bfloat16" in text
    assert r.meta["precision_dimensions"] == {
        "compute_dtype": list(BOTH),
        "state_dtype": list(BOTH),
    }


@pytest.mark.slow  # the four-precision grid
def test_the_float32_block_is_the_float32_sweep_and_precisions_share_the_initial_weights(mixed):
    r, _ = mixed
    alone = sweep.run(P, progress=False)
    f32 = r.models[
        (r.models["compute_dtype"] == "float32") & (r.models["state_dtype"] == "float32")
    ]
    assert list(f32["param_sha256"]) == list(alone.models["param_sha256"])
    # every precision trains its own models ...
    he0 = r.models[(r.models["scheme"] == "he_normal") & (r.models["seed"] == 0)]
    assert he0["param_sha256"].nunique() == 4
    # ... from the same initial weights (a precision enters no key)
    init = sweep.initial_params(r.config)
    shas = metrics.param_sha256s(init)
    assert shas[:4] * 4 == shas and len(set(shas[:4])) == 3  # the two zeros models are one draw
    # so the precisions of a scheme are compared paired by seed (one state dtype selected first)
    f32_state = r.models[r.models["state_dtype"] == "float32"]
    c = metrics.compare_axis_values(f32_state, "he_normal", "compute_dtype", "bfloat16", "float32")
    assert c.paired and c.n_a == c.n_b == 2
    with pytest.raises(ValueError, match="several values of state_dtype; select one first"):
        metrics.compare_axis_values(r.models, "he_normal", "compute_dtype", "bfloat16", "float32")


def test_the_models_per_device_are_chosen_for_a_float32_state():
    """On a CPU a device trains as many models as fit 8 MiB of float32 state: a 301k-parameter model 1 (4.8 MB),
    whose bfloat16 state (3.6 MB) would fit 2. The state dtype does not change the models' arithmetic otherwise."""
    big = dataclasses.replace(
        P, hidden=(512, 512), models_per_device=None, max_models_per_chunk=None
    )
    f32 = sweep.make_plan(big)
    bf = sweep.make_plan(dataclasses.replace(big, state_dtype="bfloat16"))
    assert f32.layout.models_per_device == bf.layout.models_per_device == 1
    assert bf.layout.bytes_per_model < f32.layout.bytes_per_model


def test_the_fingerprint_and_config_json_record_the_precision(tmp_path):
    one = dataclasses.replace(P, schemes=("he_normal",), seeds=1, epochs=1)
    out = tmp_path / "run"
    sweep.run(one, out=out, progress=False)
    doc = json.loads((out / "config.json").read_text())
    assert (doc["config"]["compute_dtype"], doc["config"]["state_dtype"]) == ("float32", "float32")
    for field in ("compute_dtype", "state_dtype"):
        other = dataclasses.replace(one, **{field: "bfloat16"})
        with pytest.raises(
            sweep.folder.RunFolderMismatch,
            match=rf"{field}: 'float32' in the folder, 'bfloat16' now",
        ):
            sweep.run(other, out=out, progress=False)
    keys = {}
    for c in BOTH:
        for s in BOTH:
            plan = sweep.make_plan(dataclasses.replace(one, compute_dtype=c, state_dtype=s))
            keys[(c, s)] = sweep.plan.fingerprint(plan, {"he_normal": "same draw"})
    assert len(set(keys.values())) == 4


def test_your_model_gets_the_compute_dtype_or_is_refused_before_anything_compiles():
    cfg = dataclasses.replace(P, schemes=("he_normal",), seeds=1, epochs=1, compute_dtype=BOTH)
    programs = sweep.ProgramCache()
    with pytest.raises(TypeError, match=r"^model: WithoutDtype takes no dtype") as e:
        sweep.run(cfg, model=WithoutDtype, progress=False, programs=programs)
    assert "\n" not in str(e.value)
    assert programs.epoch_programs == programs.init_compiles == 0
    # float32 only: your model as you wrote it
    sweep.run(dataclasses.replace(cfg, compute_dtype="float32"), model=WithoutDtype, progress=False)
    r = sweep.run(cfg, model=WithDtype, progress=False, programs=programs)
    assert programs.epoch_programs == 2 and r.models["param_sha256"].nunique() == 2
    plan = sweep.make_plan(cfg, model=WithDtype)
    keys = [t.model_key for t in plan.trainings]
    assert keys[0] != keys[1] and plan.inputs.model_key == keys[0]


def test_a_bfloat16_model_that_fails_is_counted_as_a_failure():
    """Divergence and failure detection do not depend on the precision: a model whose weights blow up diverges at
    step 1 in bfloat16 as in float32, and a zeros-initialized model, which stays at one class, fails."""
    cfg = dataclasses.replace(
        P,
        schemes=("zeros", "normal(stddev=1e20)"),
        epochs=1,
        compute_dtype="bfloat16",
        state_dtype="bfloat16",
    )
    r = sweep.run(cfg, progress=False)
    m = r.models.set_index("scheme")
    assert (m.loc["normal(stddev=1e+20, mean=0.0)", "diverged_step"] == 1).all()
    s = r.summary().set_index("scheme")
    assert s.loc["zeros", "failure_rate"] == 1.0 and s.loc["zeros", "diverged_count"] == 0
    fail = metrics.failures(r.predictions, r.y_test, r.models["diverged"])
    assert fail["failed"].all() and fail["collapsed"][m.index == "zeros"].all()


def test_cli_precision_flags(capsys, tmp_path):
    assert cli.main(["sweep", "--compute-dtype", "float16", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "jinit sweep: error: compute_dtype='float16' is not a precision jinit sweeps; valid choices: "
        "float32, bfloat16"
    ]
    args = [
        "sweep", "--schemes", "he_normal", "--seeds", "2", "--epochs", "1", "--hidden", "16",
        "--train-size", "256", "--test-size", "128", "--models-per-device", "2", "--no-progress",
        "--state-dtype", "float32,bfloat16", "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "he_normal state=float32" in out and "he_normal state=bfloat16" in out
    assert sweep.load(tmp_path / "run").config.state_dtype == BOTH


def test_a_bfloat16_state_resumes_from_an_epoch_checkpoint(tmp_path, monkeypatch):
    """orbax writes and restores the bfloat16 moments: interrupted after epoch 1 of chunk 1 and resumed, the sweep
    equals the uninterrupted one bit for bit."""
    import signal

    from jinit.sweep import checkpoints as checkpoints_lib

    cfg = dataclasses.replace(
        P, schemes=("he_normal",), compute_dtype="bfloat16", state_dtype="bfloat16"
    )
    reference = sweep.run(cfg, progress=False, checkpoint_every=None)
    real = checkpoints_lib.Checkpointer.save

    def save(self, folder, index, ep, *args, **kwargs):
        if (index, ep) == (0, 1):
            signal.raise_signal(signal.SIGINT)
        return real(self, folder, index, ep, *args, **kwargs)

    monkeypatch.setattr(checkpoints_lib.Checkpointer, "save", save)
    out = tmp_path / "run"
    with pytest.raises(sweep.SweepInterrupted):
        sweep.run(cfg, out=out, progress=False, checkpoint_every=0)
    monkeypatch.undo()
    r = sweep.run(cfg, out=out, progress=False, checkpoint_every=0)
    assert r.meta["epochs_reused"] == 1
    assert list(r.models["param_sha256"]) == list(reference.models["param_sha256"])


@pytest.mark.slow  # 2 x 3 sweeps of 12 models on all of digits
def test_bfloat16_accuracy_is_within_the_seed_spread_of_float32():
    """On digits, the standard schemes trained in bfloat16 (compute and state) end where float32 ends: each
    scheme's mean test accuracy over 6 seeds moves by less than the standard deviation over seeds in float32,
    and the paired 95% interval of the difference (the same initial weights and batches) contains 0 or lies
    within one point."""
    cfg = sweep.SweepConfig(
        schemes=("glorot_uniform", "he_normal", "lecun_normal"),
        hidden=(64,),
        seeds=6,
        epochs=4,
    )
    r32 = sweep.run(cfg, progress=False)
    r16 = sweep.run(
        dataclasses.replace(cfg, compute_dtype="bfloat16", state_dtype="bfloat16"), progress=False
    )
    for scheme in cfg.schemes:
        a32 = r32.models[r32.models["scheme"] == scheme]["final_accuracy"].to_numpy()
        a16 = r16.models[r16.models["scheme"] == scheme]["final_accuracy"].to_numpy()
        assert abs(a16.mean() - a32.mean()) < a32.std(ddof=1), (scheme, a32, a16)
        c = metrics.compare(a16, a32, paired=True)
        assert c.ci_low <= 0.0 <= c.ci_high or max(abs(c.ci_low), abs(c.ci_high)) < 0.01, (
            scheme,
            c,
        )
    assert not r16.models["diverged"].any()


@pytest.mark.slow  # trains the models four times
def test_check_determinism_of_a_bfloat16_sweep():
    cfg = dataclasses.replace(
        P, schemes=("he_normal",), epochs=1, compute_dtype="bfloat16", state_dtype="bfloat16"
    )
    rep = sweep.check_determinism(cfg)
    assert rep.bitwise_identical and rep.layout_identical
    # against the same models trained alone, in a plain loop (bfloat16 compute and state there too)
    assert rep.max_abs_diff_alone < 1e-2

"""Tests of the sweep engine (jinit.sweep): keys, parity with a plain loop, determinism, isolation, chunking.

All runs use digits subsets and a tiny MLP; most share one config shape (chunks of 2 models) so they reuse one
compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest

from jinit import models, report, sweep, train
from jinit.sweep import folder as folder_lib

BASE = sweep.SweepConfig(
    schemes=("zeros", "he_normal", "orthogonal"),
    seeds=2,
    epochs=2,
    hidden=(16,),
    train_size=256,
    test_size=128,
    batch_size=32,
    max_models_per_chunk=2,
    models_per_device=2,
)


@pytest.fixture(scope="module")
def base():
    return sweep.run(BASE, progress=False, keep_params=True)


def _model(result, scheme, seed):
    i = np.flatnonzero((result.models["scheme"] == scheme) & (result.models["seed"] == seed))
    assert len(i) == 1
    return int(i[0])


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_result_shapes_and_grid_order(base):
    m = base.models
    assert list(m["scheme"]) == [
        "zeros",
        "zeros",
        "he_normal",
        "he_normal",
        "orthogonal",
        "orthogonal",
    ]
    assert list(m["seed"]) == [0, 1] * 3
    assert base.predictions.shape == (6, 128)
    assert (
        len(base.curves) == 6 * 3
    )  # one row per (model, point): the model at init, then each epoch's end
    at_init = base.curves[base.curves["epoch"] == 0]
    assert len(at_init) == 6 and (at_init["step"] == 0).all()
    assert at_init["train_loss"].isna().all() and at_init["train_accuracy"].isna().all()
    assert at_init["test_loss"].notna().all() and (at_init["test_accuracy"] < 0.5).all()
    trained = base.curves[base.curves["step"] > 0]
    assert trained["train_accuracy"].between(0, 1).all() and trained["train_loss"].notna().all()
    # zeros cannot learn (every unit the same): its training and test accuracy stay near chance (digits: 10%)
    zeros = trained[trained["scheme"] == "zeros"]
    assert (zeros["train_accuracy"] < 0.3).all()
    assert base.curves["step"].max() == 2 * (256 // 32)
    assert base.meta["chunk_size"] == 2 and base.meta["n_chunks"] == 3
    # final_accuracy is the accuracy of the final predictions
    acc = (base.predictions == base.y_test[None]).mean(axis=1)
    np.testing.assert_allclose(m["final_accuracy"].to_numpy(), acc, rtol=1e-6)
    assert not m["diverged"].any()
    # zeros init: every hidden unit is dead (zero weights), all seeds identical
    assert m.loc[0, "param_sha256"] == m.loc[1, "param_sha256"]
    assert m.loc[2, "param_sha256"] != m.loc[3, "param_sha256"]
    s = base.summary()
    assert set(s["scheme"]) == {"zeros", "he_normal", "orthogonal"} and (s["n"] == 2).all()


def test_summary_ci_method(base):
    t, boot = base.summary(), base.summary(ci_method="bootstrap")
    pd.testing.assert_series_equal(t["acc_mean"], boot["acc_mean"])
    he = (t["scheme"] == "he_normal").to_numpy()
    # 2 seeds: the t interval (t_0.975 with 1 dof = 12.7) is far wider than the bootstrap's (the seeds' range)
    assert (t["acc_ci95_high"] - t["acc_ci95_low"])[he].item() > (
        boot["acc_ci95_high"] - boot["acc_ci95_low"]
    )[he].item()
    with pytest.raises(ValueError, match="bootstrap"):
        base.summary(ci_method="bca")


def test_initial_params_are_stable_under_grid_changes():
    """A model's initial params do not depend on which other models are in the grid, nor their order."""
    spec = "normal(stddev=0.3)"
    a = [("he_normal", 0), ("he_normal", 1), ("orthogonal", 3), (spec, 1)]
    b = [(spec, 1), ("orthogonal", 3), ("glorot_uniform", 0), ("he_normal", 1), ("HeNormal", 0)]
    cfg_a = dataclasses.replace(BASE, schemes=("he_normal", "orthogonal", spec), seeds=4)
    cfg_b = dataclasses.replace(BASE, schemes=(spec, "glorot_uniform", "orthogonal", "HeNormal"))
    pa = sweep.initial_params(cfg_a, a)
    pb = sweep.initial_params(cfg_b, b)
    pairs = {0: 4, 1: 3, 2: 1, 3: 0}  # a index -> b index
    for ia, ib in pairs.items():
        for x, y in zip(
            _leaves(jax.tree.map(lambda t, ia=ia: t[ia], pa)),
            _leaves(jax.tree.map(lambda t, ib=ib: t[ib], pb)),
            strict=True,
        ):
            np.testing.assert_array_equal(x, y)  # bitwise
    # and they are the documented keys: fold_in(fold_in(fold_in(root, 0), stable_hash(label)), s)
    module = models.MLP(
        hidden=(16,), num_classes=10, kernel_init=sweep.resolve_schemes(["orthogonal"])[0][1]
    )
    key = sweep.model_keys(BASE.seed, "orthogonal", 3).init
    ref = jax.jit(module.init)(key, np.zeros((1, 8, 8, 1), np.float32))
    for x, y in zip(_leaves(jax.tree.map(lambda t: t[2], pa)), _leaves(ref), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    # different seeds and different schemes give different params
    assert not np.array_equal(
        pa["params"]["Dense_0"]["kernel"][0], pa["params"]["Dense_0"]["kernel"][1]
    )


def test_keys_follow_vary():
    k = {v: [sweep.model_keys(0, "he_normal", s, v) for s in (0, 1)] for v in sweep.VARY}
    same = lambda a, b: np.array_equal(np.asarray(a), np.asarray(b))  # noqa: E731
    assert not same(k["init"][0].init, k["init"][1].init) and same(
        k["init"][0].data, k["init"][1].data
    )
    assert same(k["data"][0].init, k["data"][1].init) and not same(
        k["data"][0].data, k["data"][1].data
    )
    assert not same(k["both"][0].init, k["both"][1].init)
    assert not same(k["both"][0].data, k["both"][1].data)
    assert not same(k["both"][0].dropout, k["both"][1].dropout)
    # the data order does not depend on the scheme; the init does
    assert same(sweep.model_keys(0, "a", 1, "both").data, sweep.model_keys(0, "b", 1, "both").data)
    assert not same(sweep.model_keys(0, "a", 1).init, sweep.model_keys(0, "b", 1).init)
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"he_normal").digest()[:4], "little")
    assert sweep.stable_hash("he_normal") == expected
    assert sweep.stable_hash("he_normal") == sweep.stable_hash("he_normal") < 2**32


def test_vmapped_sweep_matches_plain_loop(base):
    """The model trained inside the vmapped sweep equals the same model trained alone by a Python loop."""
    from jinit import data

    ds = data.load("digits")
    x, y = ds.x_train[:256], ds.y_train[:256]
    xt, yt = ds.x_test[:128], ds.y_test[:128]
    worst = 0.0
    for scheme, s in [("he_normal", 1), ("orthogonal", 0)]:
        i = _model(base, scheme, s)
        params = sweep.initial_params(BASE, [(scheme, s)])
        params = jax.tree.map(lambda a: a[0], params)
        keys = sweep.model_keys(BASE.seed, scheme, s, BASE.vary)
        module = models.MLP(hidden=(16,), num_classes=10)
        ref = train.train_plain(
            module.apply,
            params,
            train.make_optimizer("adam", 1e-3),
            x,
            y,
            xt,
            yt,
            batch_size=32,
            epochs=2,
            data_key=keys.data,
            dropout_key=keys.dropout,
        )
        mine = jax.tree.map(lambda a, i=i: a[i], base.params)
        diff = max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(_leaves(mine), _leaves(ref.state.params), strict=True)
        )
        worst = max(worst, diff)
        curve = base.curves[(base.curves["scheme"] == scheme) & (base.curves["seed"] == s)]
        curve = curve[
            curve["step"] > 0
        ]  # the plain loop logs each epoch's end, not the model at init
        np.testing.assert_allclose(curve["test_loss"].to_numpy(), ref.test_loss, rtol=1e-4)
        np.testing.assert_allclose(
            curve["test_accuracy"].to_numpy(), ref.test_accuracy, atol=1 / 128 + 1e-9
        )
    assert worst < 1e-4, worst
    print(f"max |vmapped - plain| over final params: {worst:.3g}")


@pytest.mark.parametrize("vary", ["init", "both"])
def test_inner_model_axis_trains_the_same_models(base, vary):
    """The accelerator layout (model axis just before the last dimension of every kernel during the loop) trains
    the same models as the CPU layout, for shared and per-model data order, with logs inside the epoch."""
    cfg = dataclasses.replace(BASE, vary=vary, eval_every=3)
    outer = sweep.run(cfg, progress=False, keep_params=True)
    programs = sweep.ProgramCache(inner_model_axis=True)
    inner = sweep.run(cfg, progress=False, keep_params=True, programs=programs)
    assert (
        inner.meta["inner_model_axis"] and not outer.meta["inner_model_axis"]
    )  # that layout did run
    assert (
        len(outer.curves) == len(inner.curves) == 6 * (1 + 2 * 3)
    )  # the model at init, then 8 steps per epoch, logs at 3, 6 and 8
    for a, b in zip(_leaves(inner.params), _leaves(outer.params), strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)
    for col in ("step", "train_loss", "test_loss", "train_accuracy", "test_accuracy"):
        np.testing.assert_allclose(inner.curves[col], outer.curves[col], rtol=1e-5, atol=1e-6)
    assert (inner.predictions != outer.predictions).mean() < 0.01
    if vary == "init":  # the default: the same data order as the module-level sweep
        np.testing.assert_allclose(
            inner.models["final_test_loss"], base.models["final_test_loss"], rtol=1e-5
        )


class _ConvDropout(nn.Module):
    """A conv layer (4-d kernel) and dropout, active when a dropout rng is given (training)."""

    kernel_init: Any
    bias_init: Any
    rate: float = 0.5

    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], 8, 8, 1))
        x = nn.relu(nn.Conv(4, (3, 3), kernel_init=self.kernel_init, bias_init=self.bias_init)(x))
        x = nn.Dropout(self.rate, deterministic=not self.has_rng("dropout"))(
            x.reshape((x.shape[0], -1))
        )
        return nn.Dense(10, kernel_init=self.kernel_init, bias_init=self.bias_init)(x)


def test_inner_model_axis_with_conv_kernels_and_dropout():
    cfg = dataclasses.replace(BASE, schemes=("he_normal", "orthogonal"), vary="both", epochs=1)
    runs = {}
    for inner in (False, True):
        programs = sweep.ProgramCache(inner_model_axis=inner)
        runs[inner] = sweep.run(
            cfg, progress=False, model=_ConvDropout, keep_params=True, programs=programs
        )
    kernel = runs[True].params["params"]["Conv_0"]["kernel"]
    assert kernel.shape == (4, 3, 3, 1, 4)  # the leading model axis again outside the loop
    for a, b in zip(_leaves(runs[True].params), _leaves(runs[False].params), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(
        runs[True].curves["train_loss"], runs[False].curves["train_loss"], rtol=1e-5
    )
    # dropout was on: without it the same models train to other losses
    no_dropout = functools.partial(_ConvDropout, rate=0.0)
    plain = sweep.run(cfg, progress=False, model=no_dropout)
    trained = plain.curves["step"] > 0  # (the point at init has no training loss: NaN)
    assert not np.allclose(
        plain.curves.loc[trained, "train_loss"],
        runs[True].curves.loc[trained, "train_loss"],
        rtol=1e-3,
    )


def test_two_identical_sweeps_are_bitwise_identical(base, no_persistent_cache):
    # compiled again (a cache of its own, not JAX's persistent cache): determinism must not depend on reusing one
    # executable
    again = sweep.run(BASE, progress=False, programs=sweep.ProgramCache())
    pd.testing.assert_frame_equal(again.curves, base.curves, check_exact=True)
    pd.testing.assert_frame_equal(again.models, base.models, check_exact=True)
    np.testing.assert_array_equal(again.predictions, base.predictions)


def test_divergent_models_are_isolated(base):
    """Adding models that blow up (NaN at step 1) or start from all-ones weights changes nothing, bit for bit,
    about the others."""
    cfg = dataclasses.replace(
        BASE, schemes=("zeros", "normal(stddev=1e20)", "ones", "he_normal", "orthogonal")
    )
    r = sweep.run(cfg, progress=False)
    bad = r.models[r.models["scheme"] == "normal(stddev=1e+20, mean=0.0)"]
    assert bad["diverged"].all() and (bad["diverged_step"] == 1).all()
    assert r.models["final_test_loss"][r.models["scheme"] == "ones"].notna().all()
    added = r.models["scheme"].str.startswith("normal") | (r.models["scheme"] == "ones")
    good = r.models[~added].reset_index(drop=True)
    pd.testing.assert_frame_equal(good, base.models, check_exact=True)
    keep = ~(r.curves["scheme"].str.startswith("normal") | (r.curves["scheme"] == "ones"))
    pd.testing.assert_frame_equal(
        r.curves[keep].reset_index(drop=True), base.curves, check_exact=True
    )
    blown = r.curves[r.curves["scheme"].str.startswith("normal")]
    assert blown.loc[
        blown["step"] > 0, "diverged"
    ].all()  # from step 1 on; at init (step 0) not yet
    assert not blown.loc[blown["step"] == 0, "diverged"].any()
    s = r.summary().set_index("scheme")
    assert s.loc["normal(stddev=1e+20, mean=0.0)", "diverged_count"] == 2
    assert np.isfinite(s.loc[["he_normal", "ones", "zeros"], "acc_mean"]).all()


def test_too_large_learning_rate_finishes_and_marks_diverged_models(capsys):
    """SGD at lr 1e10: both he_normal seeds diverge although their losses stay finite: seed 0's training loss is
    more than 1e4 times its first step's at step 2 (it overflows at step 3), seed 1's test loss ends near 2e14
    (divergence by explosion, train.DIVERGENCE_FACTOR). The sweep finishes, the summary counts them, and a NaN
    mean where every seed diverged is printed as '-'."""

    cfg = dataclasses.replace(
        BASE, schemes=("he_normal", "normal(stddev=1e20)"), optimizer="sgd", learning_rate=1e10
    )
    r = sweep.run(cfg, progress=False)
    m = r.models.set_index(["scheme", "seed"])
    assert m.loc[("he_normal", 0), "diverged_step"] == 2 and m.loc[("he_normal", 0), "diverged"]
    assert m.loc[("he_normal", 1), "diverged"] and np.isfinite(
        m.loc[("he_normal", 1), "final_test_loss"]
    )
    curve = r.curves[(r.curves["scheme"] == "he_normal") & (r.curves["seed"] == 0)]
    # diverged at step 2, after the point at init and before the first evaluation (step 8)
    assert curve.loc[curve["step"] > 0, "diverged"].all()
    assert not curve.loc[curve["step"] == 0, "diverged"].any()
    s = r.summary().set_index("scheme")
    assert s.loc["he_normal", "diverged_count"] == 2 and s.loc["he_normal", "n"] == 2
    assert s.loc["normal(stddev=1e+20, mean=0.0)", "diverged_count"] == 2
    printed = report.summary(r)
    assert "nan" not in printed.lower() and " - " in printed


def test_chunking_does_not_change_results(base, monkeypatch):
    """Chunks of 2 (3 chunks) vs one chunk of 6 trained as three groups of 2 on one device (as a sweep resumed
    on fewer devices does): the same models, bit for bit (every model is computed by the same program of
    ``models_per_device`` models)."""
    monkeypatch.setattr(
        sweep.layout, "chunk_plan", lambda n, k, devices, cap=None, streams=1: (3 * k, 1)
    )
    r = sweep.run(
        dataclasses.replace(BASE, max_models_per_chunk=None), progress=False, keep_params=True
    )
    assert r.meta["models_per_device"] == 2 and r.meta["chunk_size"] == 6
    assert list(r.models["param_sha256"]) == list(base.models["param_sha256"])
    pd.testing.assert_frame_equal(r.curves, base.curves)
    for a, b in zip(_leaves(r.params), _leaves(base.params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_vary_data_custom_model_and_eval_every():
    def make_model(kernel_init, bias_init):
        return models.MLP(
            hidden=(8,),
            num_classes=10,
            activation="tanh",
            kernel_init=kernel_init,
            bias_init=bias_init,
        )

    # (eval_batch_size=50 pads the 128 test examples to 150: padding must not leak into any number)
    cfg = dataclasses.replace(
        BASE, schemes=("glorot_uniform",), vary="data", eval_every=3, eval_batch_size=50
    )
    r = sweep.run(cfg, progress=False, model=make_model, keep_params=True)
    assert r.meta["custom_model"] and r.predictions.shape == (2, 128)
    acc = (r.predictions == r.y_test[None]).mean(axis=1)
    np.testing.assert_allclose(r.models["final_accuracy"], acc, rtol=1e-6)
    # the model at init, then 8 steps per epoch, evaluated at steps 3, 6, 8 of each epoch
    assert sorted(set(r.curves["step"])) == [0, 3, 6, 8, 11, 14, 16]
    np.testing.assert_allclose(
        sorted(set(r.curves["epoch"])), np.array([0, 3, 6, 8, 11, 14, 16]) / 8
    )
    # vary="data": both seeds start from the same weights but see different batches
    p0 = sweep.initial_params(cfg, [("glorot_uniform", 0), ("glorot_uniform", 1)], model=make_model)
    np.testing.assert_array_equal(
        p0["params"]["Dense_0"]["kernel"][0], p0["params"]["Dense_0"]["kernel"][1]
    )
    assert r.models.loc[0, "param_sha256"] != r.models.loc[1, "param_sha256"]


@pytest.mark.parametrize(
    "changes, error, match",
    [
        ({"schemes": ("he_normall",)}, ValueError, "he_normal"),
        ({"schemes": ("zeros", "HeNormal", "he_normal")}, ValueError, "same scheme"),
        ({"activation": "rellu"}, ValueError, "relu"),
        ({"optimizer": "adamm"}, ValueError, "adam"),
        ({"vary": "seed"}, ValueError, "init, data, both"),
        ({"model": "resnet"}, ValueError, "mlp, cnn"),
        ({"seeds": 0}, ValueError, "seeds must be >= 1"),
        ({"seeds": 2.5}, TypeError, "seeds must be an int"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"batch_size": -1}, ValueError, "batch_size"),
        ({"learning_rate": 0.0}, ValueError, "learning rate"),
        ({"learning_rate": float("nan")}, ValueError, "learning rate"),
        ({"hidden": (16, 0)}, ValueError, "hidden"),
        ({"target_accuracy": 97.0}, ValueError, "target_accuracy"),
        ({"schemes": "zeros,,he_normal"}, ValueError, "empty scheme"),
        ({"schemes": "normal(stddev=0.1"}, ValueError, "unbalanced"),
        ({"bias_init": "zerros"}, ValueError, "bias_init"),
    ],
)
def test_bad_config_fails_before_loading_data(monkeypatch, changes, error, match):
    from jinit import data

    def no_load(*a, **k):
        raise AssertionError("data was loaded before the config was validated")

    monkeypatch.setattr(data, "load", no_load)
    with pytest.raises(error, match=match):
        sweep.run(dataclasses.replace(BASE, **changes), progress=False)


def test_unknown_dataset_is_named_by_the_loader_before_compiling(compile_counter):
    """Any name data.load may know (a tensorflow-datasets one) passes validate(); the loader names a bad one,
    with the closest built-in name, before anything compiles."""
    with pytest.raises(ValueError, match="unknown dataset 'mnsit'; did you mean 'mnist'"):
        sweep.run(dataclasses.replace(BASE, dataset="mnsit"), progress=False)
    assert compile_counter.count == 0


def test_batch_larger_than_train_set_fails_before_compiling():
    programs = sweep.ProgramCache()
    with pytest.raises(ValueError, match="batch_size=300 is larger than the training set"):
        sweep.run(dataclasses.replace(BASE, batch_size=300), progress=False, programs=programs)
    assert programs.epoch_programs == programs.init_compiles == 0


def test_scheme_labels():
    labels = [
        label
        for label, _ in sweep.resolve_schemes(["HeNormal", "xavier_uniform", "normal(stddev=0.1)"])
    ]
    assert labels == ["he_normal", "xavier_uniform", "normal(stddev=0.1, mean=0.0)"]
    mlp, cnn = sweep.applicable_schemes("mlp"), sweep.applicable_schemes("cnn")
    assert "identity" in mlp and "dirac" not in mlp and "identity" not in cnn
    # The CNN has Dense kernels too: conv-only schemes would fail on them, so "all" leaves them out.
    assert "dirac" not in cnn and "delta_orthogonal" not in cnn and "he_normal" in cnn
    assert [label for label, _ in sweep.resolve_schemes(("all",), model="mlp")] == list(mlp)
    assert sweep.parse_schemes("zeros, normal(stddev=0.1, mean=0.0),he_normal") == (
        "zeros",
        "normal(stddev=0.1, mean=0.0)",
        "he_normal",
    )


def test_chunk_plan_uses_as_many_devices_as_the_grid_needs():
    # (chunk size, devices used) for k models per device
    assert sweep.chunk_plan(1000, 4, 2) == (8, 2)
    assert sweep.chunk_plan(1000, 4, 4) == (16, 4)
    assert sweep.chunk_plan(5, 4, 4) == (8, 2)  # 5 models need 2 devices' worth, not 4
    assert sweep.chunk_plan(3, 4, 4) == (4, 1)
    # max_models_per_chunk makes chunks smaller by using fewer devices, never fewer than k models
    assert sweep.chunk_plan(1000, 4, 4, 8) == (8, 2)
    assert sweep.chunk_plan(1000, 4, 4, 2) == (4, 1)
    for n in range(1, 40):
        for devices in (1, 2, 3, 4):
            size, used = sweep.chunk_plan(n, 3, devices)
            assert size == 3 * used and 1 <= used <= devices and used * 3 < n + 3
    # streams: groups a device trains at once (CPU cores per CPU device); devices are filled first
    assert sweep.chunk_plan(1000, 4, 1, streams=2) == (8, 1)
    assert sweep.chunk_plan(1000, 4, 2, streams=2) == (16, 2)
    assert sweep.chunk_plan(5, 4, 1, streams=2) == (8, 1)
    assert sweep.chunk_plan(3, 4, 1, streams=2) == (4, 1)
    assert sweep.chunk_plan(1000, 4, 1, 4, streams=2) == (4, 1)


def test_streams_per_device_only_on_cpu_and_within_the_budget():
    class Accelerator:
        platform = "gpu"

    cpu = jax.devices("cpu")[0]
    assert sweep.layout.streams_per_device(Accelerator(), 1, 1 << 30) == 1
    assert sweep.layout.streams_per_device(cpu, 1 << 30, 1 << 30) == 1  # one group fills the budget
    cores = len(os.sched_getaffinity(0))
    n_cpu = len(jax.devices("cpu"))
    assert sweep.layout.streams_per_device(cpu, 1, 1 << 30) == max(1, cores // n_cpu)


def test_streams_do_not_change_results(monkeypatch):
    """Two groups trained at once on one device, or one after the other: the same models, bit for bit."""
    cfg = dataclasses.replace(BASE, max_models_per_chunk=None, models_per_device=2)
    got = {}
    for streams in (1, 3):
        monkeypatch.setattr(sweep.layout, "streams_per_device", lambda *a, s=streams: s)
        r = sweep.run(cfg, progress=False, keep_params=True, max_devices=1)
        assert r.meta["streams_per_device"] == streams
        assert r.meta["chunk_size"] == 2 * min(streams, -(-r.meta["n_models"] // 2))
        got[streams] = r
    for a, b in zip(jax.tree.leaves(got[1].params), jax.tree.leaves(got[3].params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_models_per_device_depends_on_the_model_and_device_kind_only():
    cfg = dataclasses.replace(BASE, models_per_device=None)
    mlp = 4 * 436_776  # params + grads + Adam's two moments of the 784-128-64-10 MLP, in bytes
    kw = dict(per_model=10**6, budget=10**12)
    # 8 MiB holds 4 such models: the largest power of two that fits
    assert sweep.models_per_device(cfg, "cpu", state_bytes=mlp, **kw) == 4
    assert sweep.models_per_device(cfg, "cpu", state_bytes=10**9, **kw) == 1
    assert sweep.models_per_device(cfg, "cpu", state_bytes=1000, **kw) == 8  # tiny models: capped
    assert sweep.models_per_device(cfg, "gpu", state_bytes=mlp, **kw) == 1024
    # what one device's memory budget holds
    assert (
        sweep.models_per_device(cfg, "gpu", state_bytes=mlp, per_model=10**6, budget=10**8) == 100
    )
    assert sweep.models_per_device(cfg, "cpu", state_bytes=mlp, per_model=10**6, budget=1) == 1
    # the user's value wins
    mine = dataclasses.replace(cfg, models_per_device=3)
    assert sweep.models_per_device(mine, "cpu", state_bytes=mlp, **kw) == 3
    with pytest.raises(ValueError, match="models_per_device"):
        dataclasses.replace(cfg, models_per_device=0).validate()


def test_zeros_init_on_mnist_predicts_the_majority_class(mnist_dir):
    """Keras-tutorial MLP with zero kernels and biases: only the output bias learns, so every seed predicts the
    most frequent training class ("1") and scores 1135 / 10000 on the MNIST test set."""
    cfg = sweep.SweepConfig(
        dataset="mnist",
        data_dir=str(mnist_dir),
        schemes=("zeros",),
        seeds=3,
        epochs=1,
        train_size=12000,
        vary="both",
    )
    r = sweep.run(cfg, progress=False)
    assert (r.models["final_accuracy"] == np.float32(0.1135)).all()
    assert (r.predictions == 1).all()


def test_run_folder_round_trips(base, tmp_path):
    r = sweep.run(BASE, out=tmp_path, progress=False)
    assert sorted(p.name for p in (tmp_path / "chunks").iterdir()) == [
        "00000.npz",
        "00001.npz",
        "00002.npz",
    ]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    back = sweep.load(tmp_path)
    assert back.config == BASE and back.meta["num_classes"] == 10
    pd.testing.assert_frame_equal(back.curves, base.curves, check_exact=True)
    pd.testing.assert_frame_equal(back.models, r.models, check_exact=True)
    np.testing.assert_array_equal(back.predictions, base.predictions)
    np.testing.assert_array_equal(back.y_test, base.y_test)
    pd.testing.assert_frame_equal(back.summary(), base.summary())


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"model": "cnn", "schemes": ("he_normal", "dirac")}, "scheme 'dirac' cannot initialize"),
        ({"model": "cnn", "schemes": ("identity",)}, "scheme 'identity' cannot initialize"),
        ({"schemes": ("delta_orthogonal",)}, "scheme 'delta_orthogonal' cannot initialize"),
    ],
)
def test_scheme_that_cannot_serve_a_kernel_fails_before_compiling(changes, match):
    programs = sweep.ProgramCache()
    with pytest.raises(ValueError, match=match):
        sweep.run(dataclasses.replace(BASE, **changes), progress=False, programs=programs)
    assert programs.epoch_programs == programs.init_compiles == 0


@pytest.mark.slow  # ~7 s on 2 CPU cores, most of it initializing 10,000 models one by one
def test_ten_thousand_tiny_models_complete_on_cpu(tmp_path):
    """Resource limits: 10,000 models (2 schemes x 5000 seeds of a 64-4-10 MLP) in one sweep, run folder included."""
    cfg = sweep.SweepConfig(
        schemes=("zeros", "he_normal"),
        seeds=5000,
        epochs=1,
        hidden=(4,),
        train_size=32,
        test_size=32,
        batch_size=32,
    )
    r = sweep.run(cfg, out=tmp_path / "run", progress=False)
    assert len(r.models) == 10_000 and r.predictions.shape == (10_000, 32)
    assert r.meta["n_chunks"] * r.meta["chunk_size"] >= 10_000
    shas = r.models.groupby("scheme")["param_sha256"].nunique()
    assert shas["zeros"] == 1 and shas["he_normal"] == 5000  # zeros: every seed the same model
    s = pd.read_csv(tmp_path / "run" / "summary.csv").set_index("scheme")
    assert (s["n"] == 5000).all() and (s["diverged_count"] == 0).all()


def test_check_determinism(base, monkeypatch):
    cfg = dataclasses.replace(BASE, schemes=("he_normal", "orthogonal"))
    rep = sweep.check_determinism(cfg)
    assert rep.models == (("he_normal", 0), ("he_normal", 1)) and rep.epochs == 2
    assert rep.bitwise_identical and rep.sha256_first == rep.sha256_second
    assert rep.layout_identical and rep.sha256_layout == rep.sha256_first
    assert "another scheme first" in rep.layouts[1]
    # they are the models of the full sweep (base trains them in a chunk of the same size), bit for bit
    he = base.models[base.models["scheme"] == "he_normal"]
    assert rep.sha256_first == tuple(he["param_sha256"])
    assert rep.max_abs_diff_alone < 1e-4

    # faults: a second run that differs, models trained alone that differ (and with seeds < n_models, whole
    # schemes are taken)
    real_init, calls = sweep.trainer.initial_variables, []

    def noisy_init(plan, inits, models):
        calls.append(len(models))
        p = real_init(plan, inits, models)
        # the second run (call 2), and the chunk of the third run (another layout) that holds he_normal
        return jax.tree.map(lambda a: a + 1e-7 if len(calls) in (2, 4) else a, p)

    monkeypatch.setattr(sweep.trainer, "initial_variables", noisy_init)
    real_plain = train.train_plain

    def shifted_plain(*args, **kwargs):
        r = real_plain(*args, **kwargs)
        shifted = jax.tree.map(lambda a: a + 0.5, r.state.params)
        return r._replace(state=r.state._replace(params=shifted))

    monkeypatch.setattr(train, "train_plain", shifted_plain)
    rep = sweep.check_determinism(dataclasses.replace(cfg, seeds=1), n_models=2)
    assert rep.models == (("he_normal", 0), ("orthogonal", 0))
    assert not rep.bitwise_identical and rep.sha256_first != rep.sha256_second
    assert not rep.layout_identical and rep.sha256_layout[0] != rep.sha256_first[0]
    assert rep.sha256_layout[1] == rep.sha256_first[1]  # orthogonal's chunk was not touched
    assert 0.4 < rep.max_abs_diff_alone < 0.6


def test_orthogonal_init_of_an_mnist_chunk_completes(mnist_dir):
    """Regression: initializing 8 orthogonal MNIST MLPs with one jit(vmap(init)) call hung XLA:CPU; the sweep
    initializes model by model. Run in a subprocess with a timeout, so a hang fails instead of stalling the suite."""
    import subprocess
    import sys

    script = (
        "from jinit import sweep; "
        f"cfg = sweep.SweepConfig(dataset='mnist', data_dir={str(mnist_dir)!r}, "
        "schemes=('orthogonal', 'he_normal'), seeds=8, train_size=256, test_size=64); "
        "p = sweep.initial_params(cfg); print(p['params']['Dense_0']['kernel'].shape)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(16, 784, 128)" in proc.stdout


# A user's model whose behaviour follows a global (as a notebook cell that redefines it, or a config read at call
# time): the compiled-program caches must not serve the program of the model as it was on an earlier call.
_ACTIVATION = {"fn": nn.relu, "scale": 1.0}


class _GlobalNet(nn.Module):
    kernel_init: Any
    bias_init: Any

    @nn.compact
    def __call__(self, x):
        scale = _ACTIVATION["scale"]

        def scaled(key, shape, dtype=jnp.float32):
            return self.kernel_init(key, shape, dtype) * scale

        x = x.reshape((x.shape[0], -1))
        x = _ACTIVATION["fn"](nn.Dense(16, kernel_init=scaled, bias_init=self.bias_init)(x))
        return nn.Dense(10, kernel_init=self.kernel_init, bias_init=self.bias_init)(x)


def test_a_changed_model_never_gets_a_cached_program(monkeypatch):
    cfg = dataclasses.replace(BASE, schemes=("he_normal",), epochs=1)
    programs = sweep.ProgramCache()
    monkeypatch.setitem(_ACTIVATION, "fn", nn.relu)
    relu = sweep.run(cfg, progress=False, model=_GlobalNet, programs=programs)
    monkeypatch.setitem(_ACTIVATION, "fn", nn.tanh)  # same shapes, another forward pass
    tanh = sweep.run(cfg, progress=False, model=_GlobalNet, programs=programs)
    monkeypatch.setitem(_ACTIVATION, "scale", 2.0)  # same forward pass, another init
    scaled = sweep.run(cfg, progress=False, model=_GlobalNet, programs=programs)
    # what a fresh process computes: no cached program at all
    fresh = sweep.run(cfg, progress=False, model=_GlobalNet, programs=sweep.ProgramCache())
    monkeypatch.setitem(_ACTIVATION, "fn", nn.tanh)
    monkeypatch.setitem(_ACTIVATION, "scale", 1.0)
    fresh_tanh = sweep.run(cfg, progress=False, model=_GlobalNet, programs=sweep.ProgramCache())
    shas = [tuple(r.models["param_sha256"]) for r in (relu, tanh, scaled, fresh, fresh_tanh)]
    assert len({shas[0], shas[1], shas[2]}) == 3
    assert shas[2] == shas[3] and shas[1] == shas[4]
    # the same model again: served from the cache, nothing compiled
    n = (programs.epoch_programs, programs.init_compiles)
    again = sweep.run(cfg, progress=False, model=_GlobalNet, programs=programs)
    assert (
        again.meta["compile_seconds"] == 0
        and (programs.epoch_programs, programs.init_compiles) == n
    )
    assert tuple(again.models["param_sha256"]) == shas[4]


def test_the_program_caches_are_bounded():
    programs = sweep.ProgramCache(max_programs=2)
    widths = (4, 5, 6)
    for w in widths:
        sweep.run(
            dataclasses.replace(BASE, hidden=(w,), epochs=1, seeds=1),
            progress=False,
            programs=programs,
        )
    assert programs.held == (2, 2)  # the last two of three shapes
    built = programs.epoch_programs
    sweep.run(
        dataclasses.replace(BASE, hidden=(6,), epochs=1, seeds=1), progress=False, programs=programs
    )
    assert programs.epoch_programs == built  # the newest is kept: nothing built
    sweep.run(
        dataclasses.replace(BASE, hidden=(4,), epochs=1, seeds=1), progress=False, programs=programs
    )
    assert programs.epoch_programs == built + 1  # least recently used out: built again
    assert programs.held == (2, 2)


def _adamw_cosine():
    return optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(optax.cosine_decay_schedule(3e-3, decay_steps=16), weight_decay=1e-2),
    )


def test_your_own_optax_optimizer_and_schedule():
    cfg = dataclasses.replace(BASE, schemes=("he_normal",), epochs=2)
    r = sweep.run(cfg, progress=False, keep_params=True, optimizer=_adamw_cosine())
    assert r.meta["optimizer"]["custom"].startswith("GradientTransformation")
    assert len(r.meta["optimizer"]["sha256"]) == 64
    # each model is the model trained alone by a plain optax loop with that optimizer
    plan = sweep.make_plan(cfg)
    setup = plan.inputs
    for k, s in enumerate(range(cfg.seeds)):
        keys = sweep.model_keys(cfg.seed, "he_normal", s, cfg.vary)
        init = sweep.initial_params(cfg, [("he_normal", s)])
        module = setup.make_model(sweep.schemes.kernel_init_of(plan.schemes[0][1]), setup.bias_init)
        alone = train.train_plain(
            module.apply, jax.tree.map(lambda a: a[0], init), _adamw_cosine(),
            setup.x_train, setup.y_train, setup.x_test, setup.y_test, batch_size=cfg.batch_size,
            epochs=cfg.epochs, data_key=keys.data, dropout_key=keys.dropout,
            eval_batch_size=cfg.eval_batch_size,
        )  # fmt: skip
        for a, b in zip(
            _leaves(jax.tree.map(lambda x, k=k: x[k], r.params)),
            _leaves(alone.state.params),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, atol=2e-5)
    # and not the config's named optimizer
    named = sweep.run(cfg, progress=False)
    assert list(named.models["param_sha256"]) != list(r.models["param_sha256"])


def test_an_optimizer_factory_gets_the_configs_learning_rate():
    cfg = dataclasses.replace(BASE, schemes=("he_normal",), epochs=1, optimizer="sgd")
    named = sweep.run(dataclasses.replace(cfg, learning_rate=0.05), progress=False)
    made = sweep.run(
        dataclasses.replace(cfg, learning_rate=0.05), progress=False, optimizer=optax.sgd
    )
    assert list(made.models["param_sha256"]) == list(named.models["param_sha256"])
    other = sweep.run(
        dataclasses.replace(cfg, learning_rate=0.01), progress=False, optimizer=optax.sgd
    )
    assert list(other.models["param_sha256"]) != list(made.models["param_sha256"])


@pytest.mark.parametrize(
    "bad, match",
    [
        ("adam", "optimizer must be an optax.GradientTransformation"),
        (3, "optimizer must be an optax.GradientTransformation"),
        (lambda lr: "adam", "returned 'adam', not an optax.GradientTransformation"),
    ],
)
def test_a_bad_optimizer_fails_before_compiling(bad, match):
    programs = sweep.ProgramCache()
    with pytest.raises(TypeError, match=match):
        sweep.run(
            dataclasses.replace(BASE, epochs=1), progress=False, optimizer=bad, programs=programs
        )
    assert programs.epoch_programs == programs.init_compiles == 0


def test_resuming_with_another_optimizer_is_refused(tmp_path):
    cfg = dataclasses.replace(BASE, schemes=("he_normal",), epochs=1)
    first = sweep.run(cfg, out=tmp_path / "run", progress=False, optimizer=optax.sgd(0.1))
    stamp = (tmp_path / "run" / "models.csv").stat().st_mtime_ns
    # the same optimizer again (another object): the complete folder is read back, nothing retrained
    again = sweep.run(cfg, out=tmp_path / "run", progress=False, optimizer=optax.sgd(0.1))
    assert list(again.models["param_sha256"]) == list(first.models["param_sha256"])
    assert (tmp_path / "run" / "models.csv").stat().st_mtime_ns == stamp
    with pytest.raises(folder_lib.RunFolderMismatch, match="fingerprint"):
        sweep.run(cfg, out=tmp_path / "run", progress=False, optimizer=optax.sgd(0.2))


_CACHED = r"""
import json, sys, jax
hits = []
jax.monitoring.register_event_listener(lambda event, **kw: hits.append(event))
from jinit import sweep
cfg = sweep.SweepConfig(schemes=("he_normal", "zeros"), seeds=2, epochs=1, hidden=(8,), train_size=128, test_size=64)
r = sweep.run(cfg, progress=False)
print(json.dumps({"hits": hits.count("/jax/compilation_cache/cache_hits"),
                  "sha": list(r.models["param_sha256"])}))
"""


@pytest.mark.slow
def test_a_second_process_loads_the_compiled_programs_from_the_persistent_cache(tmp_path):
    import json
    import os
    import subprocess
    import sys

    def run(**env):
        proc = subprocess.run(
            [sys.executable, "-c", _CACHED], capture_output=True, text=True, timeout=300,
            env={**os.environ, "JINIT_CACHE_DIR": str(tmp_path / "cache"), "JAX_NUM_CPU_DEVICES": "1", **env},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    first, second = run(), run()
    cached = list((tmp_path / "cache" / "xla").iterdir())
    assert len(cached) >= 3  # the epoch and both schemes' init programs, at least
    assert first["hits"] == 0 and second["hits"] >= 3  # loaded, not compiled
    assert second["sha"] == first["sha"]  # the same executables: the same models, bit for bit
    off = run(JINIT_COMPILATION_CACHE="off", JINIT_CACHE_DIR=str(tmp_path / "other"))
    assert (
        off["hits"] == 0
        and not (tmp_path / "other" / "xla").exists()
        and off["sha"] == first["sha"]
    )

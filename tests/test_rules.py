"""Per-layer rules, labelled custom schemes and registered names, inside real (smoke-sized) sweeps."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pytest
from scipy import stats

import jinit
from jinit import cli, registry, sweep

SMALL = dict(dataset="digits", hidden=(32, 16), seeds=2, epochs=1, train_size=256, test_size=128)
HE_STD = 0.87962566103423978  # std of a standard normal truncated to +-2 sd


def _cfg(schemes, **kw):
    return sweep.SweepConfig(schemes=schemes, **{**SMALL, **kw})


def _he_ks_pvalue(kernel: np.ndarray) -> float:
    """KS p-value of a kernel's entries against jinit's He normal (truncated normal, Var = 2 / fan_in)."""
    fan_in = kernel.shape[0]
    z = kernel.ravel() / (np.sqrt(2.0 / fan_in) / HE_STD)
    return stats.kstest(z, stats.truncnorm(-2.0, 2.0).cdf).pvalue


@pytest.fixture
def clean_registry(monkeypatch):
    """register() in a test must not leak into the others."""
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
    monkeypatch.setattr(registry, "_LOOKUP", dict(registry._LOOKUP))


LAST_ZERO = {"Dense_2/kernel": "zeros", "kernel": "he_normal"}


def test_rules_zero_last_layer_and_he_hidden_in_initial_params():
    r = jinit.rules(LAST_ZERO)
    cfg = _cfg((r, "he_normal"))
    p = sweep.initial_params(cfg)["params"]  # grid: rules x 2 seeds, then he_normal x 2 seeds
    assert p["Dense_2"]["kernel"].shape == (4, 16, 10)
    np.testing.assert_array_equal(p["Dense_2"]["kernel"][:2], 0.0)
    assert np.all(np.abs(p["Dense_2"]["kernel"][2:]).max(axis=(1, 2)) > 0.1)
    for layer in ("Dense_0", "Dense_1"):
        for m in range(2):
            kernel = p[layer]["kernel"][m]
            assert _he_ks_pvalue(kernel) > 1e-3, (layer, m)
            # He variance 2/fan_in, not Flax's default 1/fan_in the model is built with: the sample
            # variance of n entries is within 5 standard errors (sd of s^2 ~ var * sqrt(2/n))
            n, var = kernel.size, 2.0 / kernel.shape[0]
            assert abs(kernel.var() - var) < 5 * var * np.sqrt(2.0 / n), (layer, m)
        assert not np.array_equal(p[layer]["kernel"][0], p[layer]["kernel"][1])  # seeds differ
    np.testing.assert_array_equal(p["Dense_0"]["bias"], 0.0)  # unmatched: the sweep's bias_init


def test_he_check_rejects_flax_default():
    """The He test above can fail: Flax's default (LeCun, Var = 1/fan_in) does not pass it."""
    kernel = np.asarray(jinit.flax_default()(jax.random.PRNGKey(1), (64, 32)))
    assert _he_ks_pvalue(kernel) < 1e-3


def test_rules_in_run_train_from_the_initial_params():
    cfg = _cfg((jinit.rules(LAST_ZERO), "he_normal"), optimizer="sgd", learning_rate=1e-9)
    init = sweep.initial_params(cfg)
    result = sweep.run(cfg, progress=False, keep_params=True)
    assert list(result.models["scheme"].unique()) == [
        "rules(Dense_2/kernel=zeros, kernel=he_normal)",
        "he_normal",
    ]
    final = result.params["params"]
    # sgd with lr 1e-9 barely moves: the trained models started from initial_params' values
    for layer in ("Dense_0", "Dense_1", "Dense_2"):
        np.testing.assert_allclose(
            final[layer]["kernel"], init["params"][layer]["kernel"], atol=1e-6
        )
    assert np.abs(final["Dense_2"]["kernel"][:2]).max() < 1e-6
    assert np.abs(final["Dense_2"]["kernel"][2:]).max() > 0.1


def test_first_match_wins():
    cfg = _cfg((jinit.rules({"Dense_0/kernel": "ones", "*/kernel": "zeros", "*bias": "ones"}),))
    p = sweep.initial_params(cfg)["params"]
    np.testing.assert_array_equal(p["Dense_0"]["kernel"], 1.0)
    np.testing.assert_array_equal(p["Dense_1"]["kernel"], 0.0)
    np.testing.assert_array_equal(p["Dense_2"]["kernel"], 0.0)
    for layer in ("Dense_0", "Dense_1", "Dense_2"):
        np.testing.assert_array_equal(p[layer]["bias"], 1.0)


def test_a_shadowed_pattern_is_an_error_naming_both_patterns():
    cfg = _cfg((jinit.rules({"kernel": "he_normal", "Dense_2/kernel": "zeros"}),))
    with pytest.raises(
        ValueError, match=r"'Dense_2/kernel' serves no parameter.*earlier pattern.*'kernel'"
    ):
        sweep.initial_params(cfg)


def test_adding_a_rule_for_one_layer_leaves_the_other_layers_bitwise_equal():
    a = jinit.rules({"kernel": "he_normal"})
    b = jinit.rules({"Dense_2/kernel": "zeros", "kernel": "he_normal"})
    c = jinit.rules({"Dense_0/kernel": "he_normal", "Dense_1/kernel": "he_normal"})
    cfg = _cfg((a, b, c))
    p = sweep.initial_params(cfg)["params"]  # a0 a1 b0 b1 c0 c1
    for layer in ("Dense_0", "Dense_1"):
        k = p[layer]["kernel"]
        np.testing.assert_array_equal(k[0:2], k[2:4])
        np.testing.assert_array_equal(k[0:2], k[4:6])
    assert not np.array_equal(p["Dense_2"]["kernel"][0], p["Dense_2"]["kernel"][2])
    # the documented key: fold_in(fold_in(fold_in(root, 0), stable_hash(path)), s)
    root = jax.random.PRNGKey(cfg.seed)
    key = jax.random.fold_in(
        jax.random.fold_in(
            jax.random.fold_in(root, 0), np.uint32(sweep.stable_hash("Dense_1/kernel"))
        ),
        1,
    )
    # (the sweep's init is compiled with other optimizations than this eager call: equal to float rounding)
    np.testing.assert_allclose(
        p["Dense_1"]["kernel"][1], jinit.he_normal()(key, (32, 16)), rtol=1e-6
    )


class NoInitArgs(nn.Module):
    """A research model with no initializer arguments (Flax's defaults everywhere)."""

    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(24, name="hidden")(x))
        return nn.Dense(10, name="head")(x)


def test_a_model_without_init_arguments_takes_rules():
    cfg = _cfg((jinit.rules({"head/kernel": "zeros", "kernel": "he_normal"}),))
    for make in (NoInitArgs, lambda: NoInitArgs(), lambda kernel_init, bias_init: NoInitArgs()):
        p = sweep.initial_params(cfg, model=make)["params"]
        np.testing.assert_array_equal(p["head"]["kernel"], 0.0)
        assert _he_ks_pvalue(p["hidden"]["kernel"][0]) > 1e-3
    fast = dataclasses.replace(cfg, optimizer="sgd", learning_rate=1e-9)
    result = sweep.run(fast, model=NoInitArgs, progress=False, keep_params=True)
    assert len(result.models) == 2 and not result.models["diverged"].any()
    assert np.abs(result.params["params"]["head"]["kernel"]).max() < 1e-6
    np.testing.assert_allclose(
        result.params["params"]["hidden"]["kernel"], p["hidden"]["kernel"], atol=1e-6
    )


def test_a_plain_scheme_for_a_model_without_init_arguments_is_an_error():
    with pytest.raises(ValueError, match=r"'he_normal'.*no kernel_init.*jinit.rules"):
        sweep.initial_params(_cfg(("he_normal",)), model=NoInitArgs)


def test_custom_callable_scheme_with_a_label():
    fn = jax.nn.initializers.he_uniform()
    s = jinit.scheme(fn, label="jax_he_uniform")
    cfg = _cfg((s, "he_uniform"), seeds=1)
    p = sweep.initial_params(cfg)["params"]
    # jax's he_uniform and jinit's draw the same arrays from the same key, but the keys differ by label
    assert not np.array_equal(p["Dense_0"]["kernel"][0], p["Dense_0"]["kernel"][1])
    limit = np.sqrt(6.0 / 64)
    assert np.abs(p["Dense_0"]["kernel"][0]).max() <= limit
    assert (
        stats.kstest(p["Dense_0"]["kernel"][0].ravel() / limit, stats.uniform(-1, 2).cdf).pvalue
        > 1e-3
    )
    result = sweep.run(cfg, progress=False)
    assert list(result.models["scheme"]) == ["jax_he_uniform", "he_uniform"]
    json.dumps(cfg.to_dict())  # config.json can record it
    assert cfg.to_dict()["schemes"][0] == {"name": "scheme", "label": "jax_he_uniform"}


def test_unlabelled_functions_are_refused():
    with pytest.raises(TypeError, match=r"needs a label.*jinit.scheme\(fn, label="):
        sweep.resolve_schemes([lambda key, shape, dtype: jax.numpy.zeros(shape, dtype)])
    with pytest.raises(TypeError, match=r"rule 'kernel'.*needs a label"):
        jinit.rules({"kernel": jax.nn.initializers.he_normal()})
    with pytest.raises(ValueError, match="catalogue"):
        jinit.scheme(jax.nn.initializers.he_normal(), label="he_normal")


def test_a_custom_scheme_returning_a_wrong_shape_fails_before_compiling():
    s = jinit.scheme(lambda key, shape, dtype: jax.numpy.zeros((3,), dtype), label="bad_shape")
    with pytest.raises(ValueError, match=r"'bad_shape'.*shape"):
        sweep.initial_params(_cfg((s,)))


def test_rules_value_is_frozen_hashable_and_round_trips():
    a = jinit.rules({"Dense_2/kernel": "zeros", "kernel": "HeNormal"})
    b = jinit.rules([("Dense_2/kernel", jinit.zeros()), ("kernel", "he-normal")])
    assert (
        a == b and hash(a) == hash(b) and repr(a) == "rules(Dense_2/kernel=zeros, kernel=he_normal)"
    )
    assert jinit.rules(LAST_ZERO, label="last_zero").label == "last_zero"
    assert sweep.resolve_schemes([a])[0][0] == repr(a)
    assert jinit.Rules.from_config(json.loads(json.dumps(a.config()))) == a
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.label = "x"
    cfg = _cfg((a,))
    assert (
        sweep.SweepConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).schemes[0]["name"]
        == "rules"
    )


def test_bad_rules_errors():
    with pytest.raises(
        ValueError,
        match=r"rule 'Dense_2/kernel': unknown initializer 'zeroes'.*'zeros'.*valid names",
    ):
        jinit.rules({"Dense_2/kernel": "zeroes"})
    with pytest.raises(ValueError, match=r"'Dense_9/kernel' matches no parameter.*Dense_0/kernel"):
        sweep.initial_params(_cfg((jinit.rules({"Dense_9/kernel": "zeros"}),)))
    with pytest.raises(
        ValueError,
        match=r"rule 'bias' -> orthogonal cannot initialize parameter Dense_0/bias.*serve this shape: zeros",
    ):
        sweep.initial_params(_cfg((jinit.rules({"bias": "orthogonal"}),)))


def test_register_get_catalog_and_overwrite(clean_registry):
    jinit.register("jax_he", lambda: jax.nn.initializers.he_normal())
    s = jinit.get("jax_he")
    assert isinstance(s, jinit.Scheme) and repr(s) == "jax_he" and "jax_he" in jinit.names()
    assert s(jax.random.PRNGKey(0), (4, 3)).shape == (4, 3)
    assert "jax_he" in registry.format_catalog()
    assert "jax_he" not in sweep.applicable_schemes("mlp")  # applies_to="custom": not part of "all"
    with pytest.raises(ValueError, match="exists already; pass overwrite=True"):
        jinit.register("jax_he", lambda: jax.nn.initializers.lecun_normal())
    with pytest.raises(ValueError, match="exists already"):
        jinit.register("he_normal", lambda: jax.nn.initializers.lecun_normal())
    with pytest.raises(ValueError, match="alias of the scheme 'normal'"):
        jinit.register("random_normal", lambda: jax.nn.initializers.lecun_normal(), overwrite=True)
    jinit.register("scaled", lambda scale=1.0: jinit.variance_scaling(scale=scale))
    assert repr(jinit.get("scaled(scale=3.0)")) == "scaled(scale=3.0)"
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        jinit.get("scaled(gain=3.0)")
    jinit.register("jax_he", lambda: jax.nn.initializers.lecun_normal(), overwrite=True)
    assert jinit.get("jax_he").fn is not s.fn


def test_a_registered_factory_that_raises_is_one_value_error_naming_the_call(clean_registry):
    """issue 24: a ZeroDivisionError of the user's factory used to escape jinit.get."""

    def broken(scale=1.0):
        return jinit.variance_scaling(scale=scale / 0)

    jinit.register("broken", broken)
    for spec, call in (("broken", "broken()"), ("broken(scale=2.0)", "broken(scale=2.0)")):
        with pytest.raises(ValueError) as e:
            jinit.get(spec)
        assert str(e.value) == (
            "the factory registered as 'broken' raised ZeroDivisionError: float division by zero when called "
            f"as {call}; fix the factory or its hyperparameters (jinit.register('broken', ..., overwrite=True) "
            "replaces it)"
        )
        assert isinstance(e.value.__cause__, ZeroDivisionError)  # the factory's traceback is kept
    # a factory raising a multi-line error: still one line
    jinit.register("loud", lambda: (_ for _ in ()).throw(RuntimeError("first\nsecond")))
    with pytest.raises(
        ValueError, match=r"raised RuntimeError: first second when called as loud\(\);"
    ):
        jinit.get("loud")


def test_registered_rules_scheme_through_the_cli(clean_registry, tmp_path, capsys):
    jinit.register("last_zero", lambda: jinit.rules(LAST_ZERO))
    out = tmp_path / "run"
    argv = [
        "sweep",
        "--schemes",
        "last_zero,he_normal",
        "--hidden",
        "32,16",
        "--seeds",
        "2",
        "--epochs",
        "1",
    ]
    argv += ["--train-size", "256", "--test-size", "128", "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0
    models = sweep.load(out).models
    assert list(models["scheme"].unique()) == ["last_zero", "he_normal"]
    assert json.loads((out / "config.json").read_text())["config"]["schemes"] == [
        "last_zero",
        "he_normal",
    ]
    assert cli.main(["schemes"]) == 0
    assert "last_zero" in capsys.readouterr().out


def test_bad_registered_rules_is_one_line_exit_2(clean_registry, tmp_path, capsys):
    jinit.register("bad_rules", lambda: jinit.rules({"Dense_7/kernel": "zeros"}))
    argv = ["sweep", "--schemes", "bad_rules", "--hidden", "32,16", "--epochs", "1", "--seeds", "1"]
    argv += [
        "--train-size",
        "256",
        "--test-size",
        "128",
        "--no-progress",
        "--out",
        str(tmp_path / "r"),
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'Dense_7/kernel' matches no parameter" in err and "Dense_0/kernel" in err
    assert not (tmp_path / "r").exists()
    assert cli.main([*argv[:2], "no_such_scheme", *argv[3:]]) == 2
    assert "unknown initializer 'no_such_scheme'" in capsys.readouterr().err


def _docs_section_blocks(title: str) -> list[str]:
    path = Path(__file__).resolve().parents[1] / "docs" / "initializers.md"
    text = path.read_text(encoding="utf-8")
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_docs_rules_and_custom_scheme_examples_run(clean_registry, capsys):
    blocks = _docs_section_blocks("Per-layer rules and your own schemes")
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "docs/initializers.md", "exec"), {})
    out = capsys.readouterr().out
    assert "rules(Dense_2/kernel=zeros, kernel=he_normal)" in out
    assert "['jax_he', 'small_normal(stddev=0.02)']" in out


def test_run_folder_records_rules_and_custom_schemes(tmp_path):
    r = jinit.rules({"Dense_1/kernel": "zeros", "kernel": "he_normal"}, label="last_zero")
    s = jinit.scheme(jax.nn.initializers.he_normal(), label="jax_he")
    cfg = _cfg((r, s), hidden=(16,))
    first = sweep.run(cfg, progress=False, out=tmp_path / "run")
    stored = json.loads((tmp_path / "run" / "config.json").read_text())["config"]["schemes"]
    assert stored[0] == r.config() and stored[0]["label"] == "last_zero"
    assert stored[1] == {"name": "scheme", "label": "jax_he"}
    again = sweep.run(
        cfg, progress=False, out=tmp_path / "run"
    )  # the same sweep: read back, not refused
    assert list(again.models["param_sha256"]) == list(first.models["param_sha256"])
    assert list(sweep.load(tmp_path / "run").models["scheme"].unique()) == ["last_zero", "jax_he"]

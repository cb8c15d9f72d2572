"""Initializers as values (repr / eq / hash / config), the name registry, and `jinit schemes`."""

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest

import jinit
from jinit import cli, registry
from jinit.initializers import Initializer

REQUIRED = {"constant": {"value": 0.25}, "sparse": {"sparsity": 0.3}}


def default(name):
    return jinit.get(name, **REQUIRED.get(name, {}))


# Non-default configurations of every scheme (hyperparameters of every type).
VARIANTS = [
    jinit.constant(-1.5),
    jinit.normal(stddev=0.01, mean=0.5),
    jinit.uniform(minval=-1, maxval=2),
    jinit.truncated_normal(stddev=0.2, mean=-0.1),
    jinit.variance_scaling(2.0, "fan_geo_avg", "uniform", in_axis=(0, 1), out_axis=-1),
    jinit.variance_scaling(0.5, "fan_out", "untruncated_normal", batch_axis=0),
    jinit.he_normal(distribution="normal"),
    jinit.glorot_uniform(in_axis=0, out_axis=1),
    jinit.orthogonal(gain=2.0, column_axis=0),
    jinit.delta_orthogonal(gain=1.5),
    jinit.identity(gain=0.5),
    jinit.dirac(groups=4),
    jinit.sparse(0.9, stddev=0.1),
    jinit.torch_default(mode="fan_out"),
    jinit.torch_default_bias(784),
]


@pytest.mark.parametrize("name", registry.names())
def test_every_scheme_is_a_value_with_round_trips(name):
    init = default(name)
    assert isinstance(init, Initializer)
    assert isinstance(init, jax.nn.initializers.Initializer)  # the runtime-checkable protocol
    assert init.name == name and repr(init).startswith(f"{name}(")
    twin = default(name)
    assert twin == init and hash(twin) == hash(init) and twin is not init
    assert {init: 1}[twin] == 1
    config = json.loads(json.dumps(init.config()))
    assert config["name"] == name
    assert jinit.get(config) == init
    assert jinit.get(repr(init)) == init
    assert jinit.get(init) is init
    with pytest.raises(dataclasses.FrozenInstanceError):
        init.name = "other"


@pytest.mark.parametrize("init", VARIANTS, ids=repr)
def test_non_default_configs_round_trip(init):
    assert jinit.get(json.loads(json.dumps(init.config()))) == init
    assert jinit.get(repr(init)) == init
    if init.name != "torch_default_bias":  # (it has no default to differ from)
        assert init != jinit.get(init.name, **REQUIRED.get(init.name, {}))


def test_repr_and_config_contents():
    assert repr(jinit.he_normal()) == (
        "he_normal(scale=2.0, mode='fan_in', distribution='truncated_normal')"
    )
    assert repr(jinit.zeros()) == "zeros()"
    assert repr(jinit.normal()) == "normal(stddev=0.05, mean=0.0)"
    # Non-default fan axes appear in repr; default ones are left out.
    assert "in_axis=(0, 1)" in repr(jinit.he_normal(in_axis=[0, 1]))
    assert "batch_axis" not in repr(jinit.he_normal())
    assert jinit.he_normal(in_axis=[0, 1]).config()["in_axis"] == [0, 1]
    assert jinit.variance_scaling(scale=2, mode="fan_in").config() == {
        "name": "variance_scaling",
        "scale": 2.0,
        "mode": "fan_in",
        "distribution": "truncated_normal",
        "in_axis": -2,
        "out_axis": -1,
        "batch_axis": [],
    }


def test_equality_is_by_configuration():
    assert jinit.normal(0.1) != jinit.normal(0.2)
    assert jinit.constant(1) == jinit.constant(1.0)
    assert jinit.he_normal() != jinit.variance_scaling(2.0, "fan_in", "truncated_normal")
    assert jinit.keras_default() != jinit.glorot_uniform()  # same arrays, own name
    assert len({jinit.he_normal(), jinit.get("he_normal"), jinit.get("HeNormal")}) == 1
    assert jinit.kaiming_normal() != jinit.he_normal()  # torch's name: torch's (untruncated) normal


ALIASES = [
    ("he_normal", "he_normal"),
    ("HeNormal", "he_normal"),
    ("kaiming_normal", "kaiming_normal"),  # torch's names are torch's schemes
    ("kaiming_normal_", "kaiming_normal"),  # torch.nn.init spelling
    ("KaimingNormal", "kaiming_normal"),
    ("he_uniform", "he_uniform"),
    ("kaiming_uniform", "kaiming_uniform"),
    ("xavier_uniform", "xavier_uniform"),
    ("xavier_uniform_", "xavier_uniform"),
    ("GlorotUniform", "glorot_uniform"),
    ("glorot_normal", "glorot_normal"),
    ("XavierNormal", "xavier_normal"),
    ("LecunNormal", "lecun_normal"),
    ("lecun_uniform", "lecun_uniform"),
    ("random_normal", "normal"),
    ("RandomNormal", "normal"),
    ("random_uniform", "uniform"),
    ("RandomUniform", "uniform"),
    ("TruncatedNormal", "truncated_normal"),
    ("VarianceScaling", "variance_scaling"),
    ("eye", "identity"),
    ("eye_", "identity"),
    ("Identity", "identity"),
    ("IdentityInitializer", "identity"),
    ("Orthogonal", "orthogonal"),
    ("OrthogonalInitializer", "orthogonal"),
    ("orthogonal_", "orthogonal"),
    ("DeltaOrthogonal", "delta_orthogonal"),
    ("dirac_", "dirac"),
    ("Zeros", "zeros"),
    ("ones_", "ones"),
    ("  he-normal ", "he_normal"),
    ("TorchDefault", "torch_default"),
]


@pytest.mark.parametrize("spelling,canonical", ALIASES)
def test_aliases(spelling, canonical):
    assert registry.canonical_name(spelling) == canonical
    assert jinit.get(spelling, **REQUIRED.get(canonical, {})) == default(canonical)


def test_importable_aliases_are_the_same_factories():
    assert jinit.random_normal is jinit.normal
    assert jinit.random_uniform is jinit.uniform
    assert jinit.eye is jinit.identity


def test_get_with_overrides_and_call_strings():
    assert jinit.get("he_normal", distribution="normal") == jinit.he_normal(distribution="normal")
    assert jinit.get({"name": "normal", "stddev": 0.1}, mean=1.0) == jinit.normal(0.1, 1.0)
    assert jinit.get(jinit.normal(0.1), stddev=0.2) == jinit.normal(0.2)
    assert jinit.get("normal(stddev=0.01)") == jinit.normal(stddev=0.01)
    assert jinit.get("normal(0.01, 0.5)") == jinit.normal(0.01, 0.5)
    assert jinit.get(
        "variance_scaling(scale=2.0, mode='fan_in', distribution='normal')"
    ) == jinit.variance_scaling(2.0, "fan_in", "normal")
    assert jinit.get("RandomNormal(stddev=0.1)") == jinit.normal(0.1)
    assert jinit.get("jinit.he_normal()") == jinit.he_normal()
    assert jinit.get("he_normal(in_axis=[0, 1])") == jinit.he_normal(in_axis=(0, 1))
    assert jinit.get("sparse(0.5)", stddev=0.1) == jinit.sparse(0.5, 0.1)
    assert jinit.get("torch_default_bias(fan_in=10)") == jinit.torch_default_bias(10)


def test_names_and_catalog():
    names = jinit.names()
    assert names[:3] == ["zeros", "ones", "constant"]
    expected = {
        "zeros", "ones", "constant", "normal", "uniform", "truncated_normal", "variance_scaling",
        "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "lecun_normal",
        "lecun_uniform", "orthogonal", "delta_orthogonal", "identity", "dirac", "sparse",
        "torch_default", "keras_default", "flax_default", "kaiming_normal", "kaiming_uniform",
        "xavier_normal", "xavier_uniform",
    }  # fmt: skip
    assert set(names) == expected and len(names) == len(expected)
    rows = {r.name: r for r in registry.catalog()}
    assert list(rows) == names
    assert rows["dirac"].applies_to == "conv"
    assert rows["delta_orthogonal"].applies_to == "conv"
    assert rows["identity"].applies_to == "2d"
    assert rows["he_normal"].applies_to == "any"
    assert {r.applies_to for r in rows.values()} == {"any", "2d", "conv"}
    assert rows["he_normal"].aliases == ()  # kaiming_normal is torch's own scheme
    assert rows["he_normal"].variance == "2/fan_in"
    assert "scale=2.0" in rows["he_normal"].defaults
    assert rows["normal"].defaults == "stddev=0.05, mean=0.0"
    assert rows["sparse"].defaults == "sparsity (required), stddev=0.01"
    for r in rows.values():
        assert r.distribution and r.variance and r.defaults
        assert registry.canonical_name(r.name) == r.name
        for alias in r.aliases:
            assert registry.canonical_name(alias) == r.name


@pytest.mark.parametrize(
    "spec,exc,match",
    [
        ("he_norml", ValueError, "did you mean 'he_normal'"),
        ("xavier_unifrom", ValueError, "'xavier_uniform'"),
        ("lsuv", ValueError, "valid names: zeros"),
        ("normal(stddev=x)", ValueError, "literals"),
        ("normal(stddev=__import__('os').getcwd())", ValueError, "literals"),
        ("normal(**kw)", ValueError, r"\*\*"),
        ("normal(stddev=0.1", ValueError, "cannot parse"),
        ("(lambda: 1)()", ValueError, "scheme name"),
        ("normal(std=0.1)", TypeError, "unknown hyperparameter.*stddev"),
        ("constant(1, 2)", TypeError, "too many"),
        ("sparse", TypeError, "sparsity"),
        ({"stddev": 0.1}, ValueError, "no 'name'"),
        ({"name": "normal", "stdev": 0.1}, TypeError, "stdev"),
        ({"name": "he_normal", "mode": "fan_sideways"}, ValueError, "fan_in"),
        (42, TypeError, "int"),
        (jax.nn.initializers.he_normal(), TypeError, "jinit Initializer"),
    ],
)
def test_bad_specs(spec, exc, match):
    with pytest.raises(exc, match=match):
        jinit.get(spec)


def test_cli_schemes_prints_the_catalog(capsys):
    assert cli.main(["schemes"]) == 0
    out = capsys.readouterr().out
    table, modern, lsuv = out.strip().split("\n\n")
    lines = table.splitlines()
    # the residual/transformer schemes, with what each needs, after the catalogue
    for name in ("gpt2", "deepnet", "fixup", "rezero", "skipinit", "zero_gamma", "mup"):
        assert any(line.startswith(name + " ") for line in modern.splitlines()), name
    assert lines[0].split()[:5] == ["name", "aliases", "distribution", "variance", "defaults"]
    assert len(lines) == 2 + len(jinit.names())
    assert (
        "lsuv(kernel_init='orthogonal'" in lsuv
    )  # the data-dependent sweep scheme, after the table
    for name in jinit.names():
        assert any(line.startswith(name + " ") for line in lines), name
    he = next(line for line in lines if line.startswith("he_normal "))
    assert "2/fan_in" in he and "truncated" in he
    kaiming = next(line for line in lines if line.startswith("kaiming_normal "))
    assert "normal (torch)" in kaiming and "nonlinearity='leaky_relu'" in kaiming
    assert cli.main(["schemes", "--applies-to", "conv"]) == 0
    conv = capsys.readouterr().out.strip().splitlines()[2:]
    assert sorted(line.split()[0] for line in conv) == ["delta_orthogonal", "dirac"]


# ------------------------------------------------------------------------------------------ torch spellings

INITIALIZERS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "initializers.md"


def _torch_table() -> list[list[str]]:
    """The rows of the table of torch.nn.init spellings in docs/initializers.md (cells without backticks)."""
    text = INITIALIZERS_PAGE.read_text(encoding="utf-8")
    start = text.index("| torch.nn.init |")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip().replace("`", "") for c in line.strip("|").split("|")])
    return rows


def test_docs_torch_table_is_what_get_does():
    """Every row of the docs' table: the torch spelling is the jinit scheme it names and draws the same arrays as
    the equivalent it names, or is refused with what to write instead."""
    rows = _torch_table()
    assert len(rows) >= 10
    key = jax.random.key(11)
    for torch_name, scheme, _draws, same_as in rows:
        if scheme.startswith("refused"):
            with pytest.raises(ValueError, match="ambiguous"):
                jinit.get(torch_name)
            alternative = same_as.split(" or ")[0]
            jinit.get(alternative)  # the advice is a valid spec
            continue
        spec = torch_name.replace("(...)", "").split(" (")[0]
        init = jinit.get(spec, **REQUIRED.get(scheme, {}))
        assert init.name == scheme, (torch_name, init)
        if same_as and same_as != "-":
            other = jinit.get(same_as, **REQUIRED.get(scheme, {}))
            np.testing.assert_array_equal(
                init(key, (96, 40)), other(key, (96, 40)), err_msg=torch_name
            )


@pytest.mark.parametrize(
    "name,variance,truncated",
    [
        ("kaiming_normal_", 2 / 512, False),
        ("kaiming_normal(mode='fan_out', nonlinearity='relu')", 2 / 256, False),
        ("kaiming_uniform_", 2 / 512, False),
        ("xavier_normal_", 2 / (512 + 256), False),
        ("xavier_normal(gain=2.0)", 4 * 2 / (512 + 256), False),
        ("xavier_uniform_", 2 / (512 + 256), False),
        ("he_normal", 2 / 512, True),
        ("glorot_normal", 2 / (512 + 256), True),
    ],
)
def test_torch_names_draw_torch_distributions(name, variance, truncated):
    """torch's normals are untruncated (entries beyond 2 sd occur: ~4.6% of them), Keras/JAX ones are cut at 2 sd;
    the variance is torch's formula with torch's defaults."""
    init = jinit.get(name)
    w = np.asarray(init(jax.random.key(0), (512, 256)), np.float64)
    assert w.var() == pytest.approx(variance, rel=0.02)
    beyond = np.mean(np.abs(w) > 2.05 * np.sqrt(variance / (0.8796**2 if truncated else 1)))
    if truncated:
        assert beyond == 0.0
    elif "uniform" in name:
        assert np.abs(w).max() <= np.sqrt(3 * variance) * (1 + 1e-6)
    else:
        assert 0.035 < beyond < 0.055


def test_torch_names_keep_torch_hyperparameters_and_round_trip():
    k = jinit.get("kaiming_normal_(a=0.1, mode='fan_out')")
    assert k == jinit.kaiming_normal(0.1, "fan_out") and jinit.get(k.config()) == k
    assert jinit.get(repr(k)) == k
    # torch's default nn.Linear init is kaiming_uniform_(a=sqrt(5)): the same arrays as torch_default
    key = jax.random.key(2)
    np.testing.assert_array_equal(
        jinit.kaiming_uniform(a=5**0.5)(key, (64, 32)), jinit.torch_default()(key, (64, 32))
    )
    with pytest.raises(ValueError, match="mode.*fan_in"):
        jinit.kaiming_normal(mode="fan_avg")  # torch has fan_in and fan_out only
    with pytest.raises(ValueError, match="nonlinearity 'swish'"):
        jinit.get("kaiming_uniform(nonlinearity='swish')")
    with pytest.raises(ValueError, match=r"normal\(stddev=1.0\)"):
        jinit.get("normal_")


def test_schemes_all_trains_each_distribution_once():
    from jinit import sweep

    for model in ("mlp", "cnn", None):
        kept = sweep.applicable_schemes(model)
        keys = [registry.distribution_key(jinit.get(n)) for n in kept]
        assert len(set(keys)) == len(keys), kept
        left_out = sweep.schemes_left_out_of_all(model)
        assert set(left_out) | set(kept) == set(sweep.applicable_schemes(model, distinct=False))
        # each left-out scheme draws the very arrays of the one it is an alias of
        key = jax.random.key(5)
        for alias, same in left_out.items():
            np.testing.assert_array_equal(
                jinit.get(alias)(key, (24, 16)), jinit.get(same)(key, (24, 16)), err_msg=alias
            )
    assert sweep.schemes_left_out_of_all("mlp") == {
        "variance_scaling": "lecun_normal",
        "keras_default": "glorot_uniform",
        "flax_default": "lecun_normal",
        "kaiming_uniform": "he_uniform",
        "xavier_uniform": "glorot_uniform",
    }
    kept = sweep.applicable_schemes("mlp")
    assert {"kaiming_normal", "xavier_normal", "he_normal", "glorot_normal"} <= set(kept)

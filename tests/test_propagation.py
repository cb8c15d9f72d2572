"""Signal propagation at init: the textbook factors (Glorot & Bengio 2010, He et al. 2015), gradients, Jacobian."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jinit
from jinit import cli, models, propagation, sweep

WIDTH, DEPTH, BATCH = 500, 10, 1000

# Gauss-Hermite nodes for E_z[f(z)], z ~ N(0, 1).
_Z, _W = np.polynomial.hermite_e.hermegauss(101)
_W = _W / _W.sum()


def mean_field_tanh_act_std(sigma_w2: float, depth: int) -> np.ndarray:
    """Infinite-width prediction of the activation std per layer of a tanh MLP fed unit-Gaussian inputs:
    q_0 = sigma_w^2, q_{l+1} = sigma_w^2 E[tanh(sqrt(q_l) z)^2], act_std_l = sqrt(E[tanh(sqrt(q_l) z)^2])."""
    q, out = sigma_w2, []
    for _ in range(depth):
        a2 = float(np.sum(_W * np.tanh(np.sqrt(q) * _Z) ** 2))
        out.append(np.sqrt(a2))
        q = sigma_w2 * a2
    return np.array(out)


@pytest.fixture(scope="module")
def tanh_df():
    return propagation.measure(
        ["normal(stddev=0.01)", "lecun_normal"],
        depth=DEPTH,
        width=WIDTH,
        activation="tanh",
        seeds=2,
        batch=BATCH,
    )


@pytest.fixture(scope="module")
def relu_df():
    return propagation.measure(
        ["he_normal", "glorot_normal"],
        depth=DEPTH,
        width=WIDTH,
        activation="relu",
        seeds=4,
        batch=500,
    )


def _per_layer(df, scheme, stat):
    d = df[(df["scheme"] == scheme) & (df["layer"] < DEPTH)]
    return d.pivot(index="seed", columns="layer", values=stat).to_numpy()  # [seeds, layers]


# Worst-case (rank-one batch covariance) one-sigma relative error of a per-layer std at width n: sqrt(1/(2n)).
STD_RTOL = np.sqrt(1 / (2 * WIDTH))  # 0.032; the measured errors are < 0.01


def test_tanh_small_gaussian_shrinks_by_sqrt_width_times_stddev(tanh_df):
    act = _per_layer(tanh_df, "normal(stddev=0.01)", "act_std")
    # The textbook numbers: 0.21, 0.047, 0.011, ...
    np.testing.assert_allclose(act[:, :3].mean(0), [0.21, 0.047, 0.0106], rtol=STD_RTOL + 0.02)
    ratios = act[:, 1:] / act[:, :-1]
    np.testing.assert_allclose(ratios, 0.01 * np.sqrt(WIDTH), rtol=STD_RTOL)  # ~0.224 per layer
    np.testing.assert_allclose(
        act.mean(0), mean_field_tanh_act_std(0.01**2 * WIDTH, DEPTH), rtol=STD_RTOL
    )


def test_tanh_lecun_stays_near_constant(tanh_df):
    act = _per_layer(tanh_df, "lecun_normal", "act_std")
    # sigma_w^2 = 1 is tanh's critical point: no exponential decay, only the slow mean-field power law.
    np.testing.assert_allclose(act.mean(0), mean_field_tanh_act_std(1.0, DEPTH), rtol=STD_RTOL)
    assert np.all(act[:, 5:] / act[:, 4:-1] > 0.9)
    assert act[:, -1].min() > 0.2


def test_relu_he_keeps_second_moment_where_glorot_halves_it(relu_df):
    # log(q_{L-1} / q_0) / (L-1): the mean per-layer log-factor of E[pre^2]. Its per-seed std at width n is
    # sqrt(5 / n / (L-1)) (Hanin & Rolnick 2018: Var log ||z_L||^2 ~ 5 sum_l 1/n_l for ReLU); 4 sigma over seeds.
    for scheme, factor in [("he_normal", 1.0), ("glorot_normal", 0.5)]:
        q = (
            _per_layer(relu_df, scheme, "pre_std") ** 2
            + _per_layer(relu_df, scheme, "pre_mean") ** 2
        )
        np.testing.assert_allclose(
            q[:, 0], 2.0 * factor, rtol=0.02
        )  # unit Gaussian inputs, fan_in = width
        slope = np.log(q[:, -1] / q[:, 0]) / (DEPTH - 1)
        sigma = np.sqrt(5 / WIDTH / (DEPTH - 1)) / np.sqrt(len(slope))
        assert abs(slope.mean() - np.log(factor)) < 4 * sigma, (scheme, slope)
    dead = _per_layer(relu_df, "he_normal", "dead_fraction")
    assert dead[:, 0].max() == 0.0  # a unit negative on all 500 Gaussian inputs: probability 2^-500


def test_output_layer_row_and_columns(tanh_df):
    assert list(tanh_df.columns) == ["scheme", "seed", "layer", *propagation.STATS]
    assert len(tanh_df) == 2 * 2 * (DEPTH + 1)
    out = tanh_df[tanh_df["layer"] == DEPTH]
    assert out["act_std"].isna().all() and out["grad_norm"].notna().all()


def test_grad_norms_and_keys_match_a_direct_computation():
    x = jax.random.normal(jax.random.key(5), (16, 12))
    y = jnp.arange(16) % 10
    df = propagation.measure(
        ["he_normal"],
        depth=3,
        width=12,
        activation="relu",
        seeds=2,
        x=x,
        y=y,
        seed=7,
    )
    model = models.deep_mlp(3, 12, activation="relu", num_classes=10, kernel_init=jinit.he_normal())
    for s in range(2):
        key = sweep.model_keys(7, "he_normal", s).init  # the sweep's init key of this model
        params = model.init(key, x[:1])["params"]

        def loss(p):
            return optax.softmax_cross_entropy_with_integer_labels(
                model.apply({"params": p}, x), y
            ).mean()

        g = jax.grad(loss)(params)
        expected = [float(jnp.linalg.norm(g[f"Dense_{i}"]["kernel"])) for i in range(4)]
        got = df[df["seed"] == s].sort_values("layer")["grad_norm"].to_numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        h = x @ params["Dense_0"]["kernel"]
        row = df[(df["seed"] == s) & (df["layer"] == 0)].iloc[0]
        np.testing.assert_allclose(
            [row["pre_std"], row["act_mean"]], [h.std(), jax.nn.relu(h).mean()], rtol=1e-5
        )


def test_init_keys_are_the_sweeps_for_every_scheme_name():
    # measure() and the sweep must draw the same model for (scheme, seed). More than a third of the canonical
    # names hash to >= 2**31 (e.g. "normal", "glorot_normal"), so a hash truncated to 31 bits would differ.
    names = jinit.names()
    assert any(sweep.stable_hash(n) >= 2**31 for n in names)
    for name in names:
        if name in ("constant", "sparse"):  # need a value: their label is their repr (as below)
            continue
        for s in (0, 3):
            ours = propagation._init_key(jax.random.PRNGKey(7), jinit.get(name), s)
            np.testing.assert_array_equal(ours, sweep.model_keys(7, name, s).init, err_msg=name)
    # Any spelling of a scheme is the sweep's scheme: same label, same key.
    for spelled in ("HeNormal", "kaiming_normal", "normal(stddev=0.05)", "normal(stddev=0.1)"):
        ((label, init),) = sweep.resolve_schemes([spelled])
        ours = propagation._init_key(jax.random.PRNGKey(7), jinit.get(spelled), 2)
        np.testing.assert_array_equal(ours, sweep.model_keys(7, label, 2).init, err_msg=spelled)


def test_dead_fraction_counts_units_zero_on_every_example():
    x = jax.random.normal(jax.random.key(5), (16, 12))
    df = propagation.measure(
        ["he_normal"],
        depth=3,
        width=12,
        activation="relu",
        seeds=2,
        x=x,
        bias_init="constant(-100.0)",
    )  # the same shapes as above: the compiled measurement is reused
    np.testing.assert_array_equal(df[df["layer"] < 3]["dead_fraction"], 1.0)


def test_jacobian_singular_values():
    sv = propagation.jacobian_singular_values(
        ["orthogonal", "he_normal"], depth=4, width=16, activation="linear", seeds=2, examples=2
    )
    assert len(sv) == 2 * 2 * 2 * 16
    orth = sv[sv["scheme"] == "orthogonal"]["singular_value"]
    np.testing.assert_allclose(
        orth, 1.0, rtol=1e-4
    )  # a product of orthogonal matrices is orthogonal
    spread = propagation.jacobian_summary(sv)["log10_spread"]
    assert spread["orthogonal"] < 1e-4 and spread["he_normal"] > 0.1  # Gaussian products spread out


def test_jacobian_isometry_orthogonal_tanh_but_not_gaussian_relu():
    # Dynamical isometry (Pennington et al. 2017): orthogonal weights on tanh near criticality (small
    # pre-activations: inputs of std 0.1) keep every singular value of d act_last / d x near 1; Gaussian
    # weights spread them over orders of magnitude, and on ReLU the dead units zero whole rows of the Jacobian.
    x = 0.1 * jax.random.normal(jax.random.key(3), (2, 32))
    tanh = propagation.jacobian_singular_values(
        ["orthogonal", "glorot_normal"], depth=8, width=32, activation="tanh", seeds=2, x=x
    )
    relu = propagation.jacobian_singular_values(
        ["he_normal"], depth=8, width=32, activation="relu", seeds=2, examples=2
    )
    orth = tanh[tanh["scheme"] == "orthogonal"]["singular_value"]
    assert orth.min() > 0.5 and orth.max() < 1.05
    summary = propagation.jacobian_summary(tanh)["log10_spread"]
    assert summary["orthogonal"] < 0.1 < 1.0 < summary["glorot_normal"]
    sv = relu["singular_value"]
    assert (sv < 1e-3).mean() > 0.25 and sv.max() > 2.0


def test_table_plot_and_validation(tanh_df):
    t = propagation.table(tanh_df, every=4)
    assert list(t.index) == [0, 4, 8, DEPTH]
    assert ("act_std", "lecun_normal") in t.columns and "dead_fraction" not in t.columns
    np.testing.assert_allclose(
        t[("act_std", "lecun_normal")].iloc[1],
        _per_layer(tanh_df, "lecun_normal", "act_std")[:, 4].mean(),
    )
    fig = propagation.plot(tanh_df, stat=("act_std", "grad_norm"))
    assert [a.get_yscale() for a in fig.axes] == ["log", "log"]
    assert len(fig.axes[0].get_lines()) == 2
    with pytest.raises(ValueError, match="unknown statistic"):
        propagation.plot(tanh_df, stat="std")
    with pytest.raises(ValueError, match="unknown activation"):
        propagation.measure(["he_normal"], depth=2, width=4, activation="tanhh")
    with pytest.raises(ValueError, match="depth"):
        propagation.measure(["he_normal"], depth=0, width=4)
    with pytest.raises(ValueError):
        propagation.measure(["not_a_scheme"], depth=2, width=4)


def test_cli_propagate(tmp_path, capsys):
    rc = cli.main(
        [
            "propagate",
            *("--depth", "3", "--width", "12", "--activation", "relu", "--schemes"),
            *("he_normal,glorot_normal", "--seeds", "1", "--batch", "16", "--out", str(tmp_path)),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "he_normal" in out and "glorot_normal" in out
    assert (tmp_path / "propagation.png").stat().st_size > 1000 and (
        tmp_path / "propagation.csv"
    ).exists()
    rc = cli.main(
        [
            "propagate",
            "--depth",
            "2",
            "--width",
            "4",
            "--schemes",
            "he_nromal",
            "--out",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "he_nromal" in err

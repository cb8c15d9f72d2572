"""Hyperparameter axes (jinit.sweep.axes): learning rate, weight decay and init scale of several values in one
compiled program; each model equals the model trained alone at its value; tables, summary, tuning, CLI, plots."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import optax
import pandas as pd
import pytest

from jinit import cli, metrics, plots, sweep, train
from jinit.sweep import folder as folder_lib

AX = sweep.SweepConfig(
    schemes=("he_normal",),
    seeds=2,
    epochs=1,
    hidden=(16,),
    train_size=256,
    test_size=128,
    batch_size=32,
    max_models_per_chunk=2,
    models_per_device=2,
)
LRS = (1e-3, 3e-3, 1e-2)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_a_learning_rate_axis_is_one_program_and_each_model_is_the_model_alone():
    programs = sweep.ProgramCache()  # a fresh cache: nothing is reused
    r = sweep.run(dataclasses.replace(AX, learning_rate=LRS), progress=False, programs=programs)
    # 6 models in 3 chunks of 2: one compiled epoch program for all of them
    assert (programs.epoch_programs, programs.epoch_executables) == (1, 1)
    m = r.models
    assert list(m.columns[:3]) == ["scheme", "learning_rate", "seed"]
    assert m["learning_rate"].tolist() == [1e-3, 1e-3, 3e-3, 3e-3, 1e-2, 1e-2]
    assert m["seed"].tolist() == [0, 1] * 3
    assert len(set(m["param_sha256"])) == 6  # the learning rate reached every model
    assert set(r.curves["learning_rate"]) == set(LRS)
    for lr in LRS:
        alone = sweep.run(
            dataclasses.replace(AX, learning_rate=lr), progress=False, programs=programs
        )
        assert (
            "learning_rate" not in alone.models.columns
        )  # a one-value sweep's tables are unchanged
        mine = m[m["learning_rate"] == lr]
        # bitwise: the same program, values in the state (the reproducibility contract)
        assert list(mine["param_sha256"]) == list(alone.models["param_sha256"])
    # and the one-value sweeps compiled nothing: the value is state, not code
    assert (programs.epoch_programs, programs.epoch_executables) == (1, 1)


def test_values_share_init_and_batches_vary_both():
    """Models that differ only in the learning rate start from the same weights and see the same batches (and
    dropout): under vary="both" each equals the model trained alone, whose keys do not know the value."""
    cfg = dataclasses.replace(AX, learning_rate=(1e-3, 1e-2), vary="both")
    init = sweep.initial_params(cfg)  # grid order: lr 1e-3 seeds 0, 1; lr 1e-2 seeds 0, 1
    h = [metrics.param_sha256(jax.tree.map(lambda a, i=i: a[i], init)) for i in range(4)]
    assert h[0] == h[2] and h[1] == h[3] and h[0] != h[1]
    r = sweep.run(cfg, progress=False, keep_params=True)
    at_init = r.curves[r.curves["step"] == 0].sort_values(["learning_rate", "seed"])
    np.testing.assert_array_equal(
        at_init["test_loss"].to_numpy()[:2], at_init["test_loss"].to_numpy()[2:]
    )
    plan = sweep.make_plan(cfg)
    setup = plan.inputs
    module = setup.make_model(sweep.schemes.kernel_init_of(plan.schemes[0][1]), setup.bias_init)
    for i, (lr, s) in enumerate(zip(r.models["learning_rate"], r.models["seed"], strict=True)):
        keys = sweep.model_keys(cfg.seed, "he_normal", int(s), cfg.vary)
        alone = train.train_plain(
            module.apply, jax.tree.map(lambda a, s=s: a[int(s)], init), optax.adam(lr),
            setup.x_train, setup.y_train, setup.x_test, setup.y_test, batch_size=cfg.batch_size,
            epochs=cfg.epochs, data_key=keys.data, dropout_key=keys.dropout,
        )  # fmt: skip
        for a, b in zip(
            _leaves(jax.tree.map(lambda x, i=i: x[i], r.params)),
            _leaves(alone.state.params),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, atol=2e-5)


def _plain(cfg, r, make_tx):
    """Each model of ``r`` against a plain optax loop from the same init and keys with ``make_tx(row)``."""
    plan = sweep.make_plan(cfg)
    setup = plan.inputs
    module = setup.make_model(sweep.schemes.kernel_init_of(plan.schemes[0][1]), setup.bias_init)
    for i, row in r.models.iterrows():
        s = int(row["seed"])
        keys = sweep.model_keys(cfg.seed, "he_normal", s, cfg.vary)
        init = sweep.initial_params(cfg, [("he_normal", s, row.get("init_scale", 1.0))])
        alone = train.train_plain(
            module.apply, jax.tree.map(lambda a: a[0], init), make_tx(row),
            setup.x_train, setup.y_train, setup.x_test, setup.y_test, batch_size=cfg.batch_size,
            epochs=cfg.epochs, data_key=keys.data, dropout_key=keys.dropout,
        )  # fmt: skip
        for a, b in zip(
            _leaves(jax.tree.map(lambda x, i=i: x[i], r.params)),
            _leaves(alone.state.params),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, atol=2e-5)


def test_weight_decay_is_l2_for_adam_and_decoupled_for_adamw():
    cfg = dataclasses.replace(AX, weight_decay=(0.0, 0.5))
    r = sweep.run(cfg, progress=False, keep_params=True)
    assert r.models["weight_decay"].tolist() == [0.0, 0.0, 0.5, 0.5]
    assert len(set(r.models["param_sha256"])) == 4
    # adam: weight_decay * params added to the gradient before Adam (torch's Adam(weight_decay=...))
    _plain(
        cfg,
        r,
        lambda row: optax.chain(optax.add_decayed_weights(row["weight_decay"]), optax.adam(1e-3)),
    )
    cfg_w = dataclasses.replace(cfg, optimizer="adamw")
    rw = sweep.run(cfg_w, progress=False, keep_params=True)
    _plain(cfg_w, rw, lambda row: optax.adamw(1e-3, weight_decay=row["weight_decay"]))
    # adamw's default (None) is optax's 1e-4
    default = sweep.run(dataclasses.replace(AX, optimizer="adamw"), progress=False)
    explicit = sweep.run(
        dataclasses.replace(AX, optimizer="adamw", weight_decay=1e-4), progress=False
    )
    assert list(default.models["param_sha256"]) == list(explicit.models["param_sha256"])


def test_init_scale_multiplies_every_kernel_rules_and_lsuv_included():
    import jinit

    rules = jinit.rules({"Dense_1/kernel": "zeros", "kernel": "he_normal"}, label="he_zero_last")
    cfg = dataclasses.replace(AX, schemes=("he_normal", "lsuv", rules), init_scale=(1.0, 0.5))
    init = sweep.initial_params(cfg)  # per scheme: scale 1.0 seeds 0, 1; scale 0.5 seeds 0, 1
    flat = jax.tree_util.tree_flatten_with_path(init)[0]
    kernels = 0
    for path, x in flat:
        for block in range(3):
            full, half = x[4 * block : 4 * block + 2], x[4 * block + 2 : 4 * block + 4]
            if jax.tree_util.keystr(path).endswith("['kernel']"):
                np.testing.assert_array_equal(half, full * np.float32(0.5))  # exactly half
                kernels += 1
            else:
                np.testing.assert_array_equal(half, full)  # biases untouched
    assert kernels == 2 * 3
    r = sweep.run(cfg, progress=False)
    assert list(r.models.columns[:3]) == ["scheme", "init_scale", "seed"]
    # the model at 0.5 is the model of a one-value sweep at 0.5; at 1.0, that of the default config
    for scale, other in (
        (0.5, dataclasses.replace(cfg, init_scale=0.5)),
        (1.0, dataclasses.replace(cfg, init_scale=1.0)),
    ):
        alone = sweep.run(other, progress=False)
        mine = r.models[r.models["init_scale"] == scale]
        assert list(mine["param_sha256"]) == list(alone.models["param_sha256"])


@pytest.mark.parametrize(
    "changes, error, match",
    [
        ({"learning_rate": ()}, ValueError, "learning_rate is an empty tuple"),
        ({"learning_rate": (1e-3, -1.0)}, ValueError, "learning rate must be positive"),
        ({"learning_rate": (1e-3, "fast")}, TypeError, "learning rate must be a number"),
        ({"learning_rate": (1e-3, 1e-3)}, ValueError, "repeated values"),
        ({"weight_decay": (None, 0.1)}, ValueError, "weight_decay None"),
        ({"weight_decay": -0.1}, ValueError, "weight_decay values must be finite and >= 0"),
        ({"init_scale": 0.0}, ValueError, "init_scale values must be positive"),
        ({"init_scale": (1.0, float("inf"))}, ValueError, "init_scale values must be positive"),
    ],
)
def test_bad_axis_values_fail_before_loading_data(monkeypatch, changes, error, match):
    from jinit import data

    def no_load(*a, **k):
        raise AssertionError("data was loaded before the config was validated")

    monkeypatch.setattr(data, "load", no_load)
    with pytest.raises(error, match=match):
        sweep.run(dataclasses.replace(AX, **changes), progress=False)


@pytest.mark.parametrize(
    "changes, optimizer, match",
    [
        ({"learning_rate": (1e-3, 1e-2)}, optax.adam(1e-3), "several values"),
        ({"weight_decay": 0.1}, lambda lr: optax.adam(lr), "weight_decay=0.1 applies to the named"),
    ],
)
def test_axes_your_optimizer_cannot_take_fail_before_compiling(changes, optimizer, match):
    programs = sweep.ProgramCache()
    with pytest.raises(ValueError, match=match):
        sweep.run(
            dataclasses.replace(AX, **changes),
            progress=False,
            optimizer=optimizer,
            programs=programs,
        )
    assert programs.init_compiles == programs.epoch_programs == 0


def test_a_learning_rate_axis_with_your_optimizer_factory():
    def make(learning_rate):
        return optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(learning_rate, momentum=0.9))

    r = sweep.run(
        dataclasses.replace(AX, learning_rate=(0.01, 0.1)), progress=False, optimizer=make
    )
    for lr in (0.01, 0.1):
        alone = sweep.run(dataclasses.replace(AX, learning_rate=lr), progress=False, optimizer=make)
        mine = r.models[r.models["learning_rate"] == lr]
        assert list(mine["param_sha256"]) == list(alone.models["param_sha256"])


def test_config_json_keeps_one_value_a_scalar_and_round_trips_axes():
    d = sweep.SweepConfig().to_dict()
    # every field, one value as a scalar
    assert d["weight_decay"] is None and d["init_scale"] == 1.0 and d["learning_rate"] == 1e-3
    assert sweep.SweepConfig(learning_rate=[1e-3]) == sweep.SweepConfig(learning_rate=1e-3)
    cfg = sweep.SweepConfig(learning_rate=[1e-3, 1e-2], weight_decay=(0.0, 0.1), init_scale=0.5)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["learning_rate"] == [1e-3, 1e-2] and d["init_scale"] == 0.5
    assert sweep.SweepConfig.from_dict(d) == cfg


def test_tune_picks_on_validation_and_reports_test():
    # scheme a: validation prefers 0.01, the test set 0.1 (tuning on test would pick 0.1); b: 0.1 diverged
    m = pd.DataFrame(
        {
            "scheme": ["a"] * 6 + ["b"] * 6,
            "learning_rate": [0.1] * 3 + [0.01] * 3 + [0.1] * 3 + [0.01] * 3,
            "seed": [0, 1, 2] * 4,
            "final_val_accuracy": [
                0.80,
                0.82,
                0.81,
                0.90,
                0.91,
                0.92,
                0.99,
                0.99,
                0.99,
                0.5,
                0.6,
                0.7,
            ],
            "final_accuracy": [
                0.95,
                0.96,
                0.97,
                0.90,
                0.92,
                0.94,
                0.99,
                0.99,
                0.99,
                0.55,
                0.6,
                0.65,
            ],
            "final_test_loss": [0.1] * 12,
            "diverged": [False] * 6 + [True] * 3 + [False] * 3,
        }
    )
    t = metrics.tune(m, "learning_rate")
    a = t[t["scheme"] == "a"].iloc[0]
    assert a["learning_rate"] == 0.01 and a["chosen_on"] == "final_val_accuracy"
    ci = metrics.mean_ci([0.90, 0.92, 0.94])
    assert a["report_mean"] == pytest.approx(0.92)
    assert (a["report_ci_low"], a["report_ci_high"]) == pytest.approx((ci.low, ci.high))
    b = t[t["scheme"] == "b"].iloc[0]
    assert b["learning_rate"] == 0.01 and b["n"] == 3  # the diverged value is never chosen
    assert list(t["scheme"]) == ["a", "b"]  # best reported first
    # on the test column only when asked; then it picks 0.1 for a
    assert metrics.tune(m, "learning_rate", on="final_accuracy").iloc[0]["learning_rate"] == 0.1
    with pytest.raises(ValueError, match="--val-size"):
        metrics.tune(m.drop(columns="final_val_accuracy"), "learning_rate")
    with pytest.raises(ValueError, match="init_scale was not swept"):
        metrics.tune(m, "init_scale")
    # a loss is minimized
    m2 = m.assign(final_val_loss=-m["final_val_accuracy"])
    assert metrics.tune(m2, "learning_rate", on="final_val_loss").iloc[0]["learning_rate"] == 0.01
    # pooling the values of a scheme as if they were seeds is refused
    with pytest.raises(ValueError, match="several values of learning_rate"):
        metrics.scheme_accuracies(m, "a")
    # values of one scheme share init and data: the comparison is paired by seed
    c = metrics.compare_axis_values(m, "a", "learning_rate", 0.1, 0.01)
    assert c.paired and c.diff == pytest.approx(0.04)


def test_a_real_sweep_tuned_from_its_run_folder_and_the_cli(tmp_path, capsys):
    cfg = dataclasses.replace(
        AX, schemes=("he_normal", "zeros"), seeds=3, learning_rate=(1e-3, 3e-2), models_per_device=2
    )
    r = sweep.run(cfg, progress=False, out=tmp_path / "run")
    loaded = sweep.load(tmp_path / "run")
    # another set of values is another sweep: the folder is refused, not mixed
    with pytest.raises(folder_lib.RunFolderMismatch, match="learning_rate"):
        sweep.run(
            dataclasses.replace(cfg, learning_rate=(1e-3, 1e-2)),
            progress=False,
            out=tmp_path / "run",
        )
    pd.testing.assert_frame_equal(loaded.models, r.models)
    summary = loaded.summary()
    assert list(summary.columns[:2]) == ["scheme", "learning_rate"] and len(summary) == 4
    t = loaded.tune("learning_rate", on="final_accuracy")
    assert list(t["scheme"].sort_values()) == ["he_normal", "zeros"]
    for _, row in t.iterrows():
        sub = r.models[(r.models["scheme"] == row["scheme"]) & ~r.models["diverged"]]
        means = sub.groupby("learning_rate")["final_accuracy"].mean()
        assert row["learning_rate"] == means.idxmax()
        assert row["report_mean"] == pytest.approx(means.max())
    # the CLI: no validation column -> one line naming --val-size, exit 2
    assert cli.main(["report", str(tmp_path / "run"), "--tune", "learning_rate"]) == 2
    assert "--val-size" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "report",
                str(tmp_path / "run"),
                "--tune",
                "learning_rate",
                "--tune-on",
                "final_accuracy",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "learning_rate tuned per scheme: chosen on final_accuracy" in out
    assert "he_normal lr=0.03" in out  # the summary names each (scheme, value) group
    assert (tmp_path / "run" / "learning_rate_curve.png").is_file()


def test_cli_sweep_takes_comma_separated_axes():
    args = cli.build_parser().parse_args(
        ["sweep", "--lr", "1e-4,3e-4,1e-3", "--weight-decay", "0,0.01", "--init-scale", "0.5"]
    )
    cfg = cli._sweep_config(args)
    assert cfg.learning_rate == (1e-4, 3e-4, 1e-3)
    assert cfg.weight_decay == (0.0, 0.01) and cfg.init_scale == 0.5


def test_plots_never_pool_the_values_of_an_axis():
    import matplotlib

    matplotlib.use("Agg")
    r = sweep.run(
        dataclasses.replace(AX, schemes=("he_normal", "zeros"), learning_rate=(1e-3, 3e-2)),
        progress=False,
    )
    fig = plots.lr_curve(r)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["he_normal", "zeros"] and ax.get_xscale() == "log"
    for container, scheme in zip(ax.containers, labels, strict=True):
        x, y = container.lines[0].get_data()
        sub = (
            r.models[r.models["scheme"] == scheme].groupby("learning_rate")["final_accuracy"].mean()
        )
        np.testing.assert_allclose(np.asarray(x, float), sub.index.to_numpy())
        np.testing.assert_allclose(np.asarray(y, float), sub.to_numpy())
    box = plots.final_accuracy(r)
    ticks = [t.get_text() for t in box.axes[0].get_xticklabels()]
    assert sorted(ticks) == sorted(
        ["he_normal lr=0.001", "he_normal lr=0.03", "zeros lr=0.001", "zeros lr=0.03"]
    )
    curves = plots.curves(r)
    assert len(curves.axes[0].get_legend().get_texts()) == 4
    with pytest.raises(ValueError, match="init_scale was not swept"):
        plots.axis_curve(r, "init_scale")


def test_check_determinism_of_a_sweep_with_an_axis():
    cfg = dataclasses.replace(AX, learning_rate=(1e-2, 1e-3))
    report = sweep.check_determinism(cfg, n_models=2)
    assert report.bitwise_identical and report.layout_identical
    assert (
        report.max_abs_diff_alone < 1e-5
    )  # at the first value, 1e-2, trained alone by a plain loop

"""The results object a notebook user explores: compare, plot (subsets, axes, metrics, scales, a y-range that a
collapsed scheme does not squash), the curve at initialization and the training columns, saved parameters read
back, and the rich display."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")  # this test process only draws into files and Axes objects

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jinit import cli, metrics, plots, results, sweep  # noqa: E402
from jinit.sweep import folder as folder_lib

REPO = Path(__file__).resolve().parents[1]
CFG = sweep.SweepConfig(
    dataset="digits",
    schemes=("zeros", "he_normal", "glorot_uniform"),
    hidden=(16,),
    seeds=3,
    epochs=2,
    learning_rate=1e-2,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    result = sweep.run(CFG, out=out, progress=False, save_params=True, keep_params=True)
    return out, result


def test_save_params_round_trip(saved):
    out, result = saved
    files = sorted(p.name for p in (out / "params").iterdir())
    assert files and all(f.endswith(".npz") for f in files)
    back = sweep.load(out)
    assert back.params and back.params is not results.NO_PARAMS
    # the very arrays the sweep trained (keep_params), in models.csv order...
    for a, b in zip(jax.tree.leaves(back.params), jax.tree.leaves(result.params), strict=True):
        np.testing.assert_array_equal(a, b)
    # ... and each model's hash in models.csv is the hash of its saved parameters
    for i, sha in enumerate(back.models["param_sha256"]):
        one = jax.tree.map(lambda a, i=i: a[i], back.params)
        assert metrics.param_sha256(one) == sha, i
    # a saved model is usable: its logits give its recorded test predictions
    from jinit import data, models

    ds = data.load("digits", flatten=True)
    model = models.MLP(hidden=(16,), num_classes=10)
    i = 4
    logits = model.apply(jax.tree.map(lambda a: a[i], back.params), ds.x_test)
    np.testing.assert_array_equal(np.argmax(logits, -1), back.predictions[i])


def test_params_of_a_result_without_them_say_how_to_get_them():
    """issue 24: ``result.params["params"]`` without keep_params was ``'NoneType' object is not subscriptable``."""
    import pandas as pd

    r = results.SweepResult(CFG, pd.DataFrame(), pd.DataFrame(), np.zeros((0, 0)), np.zeros(0), 10)
    assert r.params is results.NO_PARAMS and not r.params and repr(r.params) == "NoParams()"
    message = (
        "this SweepResult holds no model parameters: run the sweep with keep_params=True to keep them in "
        "memory, or with save_params=True and out= to write them to the run folder (jinit sweep "
        "--save-params; on a folder written without them the same call trains it again) and read them with "
        "sweep.load(out).params"
    )
    for use in (
        lambda p: p["params"],
        lambda p: jax.tree.map(lambda a: a[3], p),  # one model's variables, as the README shows
        lambda p: list(p),
        lambda p: len(p),
        lambda p: "params" in p,
    ):
        with pytest.raises(ValueError) as e:
            use(r.params)
        assert str(e.value) == message
    with pytest.raises(AttributeError) as e:
        r.params.keys()
    assert str(e.value) == f"'keys': {message}"
    # a value like None: kept by dataclasses.replace and copies, set by assigning None
    assert dataclasses.replace(r, num_classes=3).params is results.NO_PARAMS
    r.params = {"params": {"w": np.ones((2, 3))}}
    assert r.params["params"]["w"].shape == (2, 3)
    r.params = None
    assert r.params is results.NO_PARAMS


def test_without_save_params_load_has_no_params(tmp_path):
    cfg = sweep.SweepConfig(
        schemes=("he_normal",), seeds=2, epochs=1, hidden=(8,), train_size=128, test_size=64
    )
    sweep.run(cfg, out=tmp_path / "r", progress=False)
    missing = sweep.load(tmp_path / "r").params
    assert missing is results.NO_PARAMS and not missing
    with pytest.raises(
        ValueError, match=r"^this SweepResult holds no model parameters: run the sweep with "
    ):
        missing["params"]
    with pytest.raises(ValueError, match="out="):
        sweep.run(cfg, progress=False, save_params=True)
    # asking for them on the complete folder trains it again (bitwise the same models) to save them
    again = sweep.run(cfg, out=tmp_path / "r", progress=False, save_params=True)
    back = sweep.load(tmp_path / "r")
    assert back.params and list(back.models["param_sha256"]) == list(again.models["param_sha256"])


def test_cli_save_params(tmp_path, capsys):
    argv = ["sweep", "--schemes", "he_normal", "--seeds", "2", "--epochs", "1", "--hidden", "8"]
    argv += ["--train-size", "128", "--test-size", "64", "--no-progress", "--save-params"]
    assert cli.main([*argv, "--out", str(tmp_path / "c")]) == 0
    r = sweep.load(tmp_path / "c")
    assert r.params["params"]["Dense_0"]["kernel"].shape == (2, 64, 8)


def test_curves_start_at_init_and_have_training_columns(saved):
    _, r = saved
    c = r.curves
    assert list(c.columns) == list(results.CURVE_COLUMNS)
    init = c[c["epoch"] == 0]
    assert len(init) == len(r.models)
    # zeros at init: every logit 0, loss ln(10), the argmax class 0 everywhere
    z = init[init["scheme"] == "zeros"]
    np.testing.assert_allclose(z["test_loss"], np.log(10), rtol=1e-5)
    assert (init["train_loss"].isna() & init["train_accuracy"].isna()).all()
    # the statistics are over the training run, not the point at init
    assert r.summary()["train_loss_auc"].notna().all()


def test_compare(saved):
    _, r = saved
    c = r.compare("he_normal", "zeros")
    ref = metrics.compare_schemes(r.models, "he_normal", "zeros", vary="init")
    # vary="init": seed s of two schemes shares nothing, so the comparison is unpaired (as in summary())
    assert c == ref and not c.paired and c.diff > 0.3
    assert r.compare("he_normal", "zeros", paired=True).paired
    with pytest.raises(ValueError, match="not in this sweep.*zeros, he_normal, glorot_uniform"):
        r.compare("he_normal", "lecun_normal")


def test_plots_subset_ax_metric_scale(saved):
    _, r = saved
    fig = r.plot(schemes=["glorot_uniform", "he_normal"])
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["glorot_uniform", "he_normal"]
    assert min(min(line.get_xdata()) for line in ax.get_lines()) == 0  # the point at init
    plt.close(fig)
    fig, axes = plt.subplots(1, 3)
    assert r.plot(metric="loss", ax=axes[0]) is fig
    assert axes[0].get_yscale() == "log"  # losses: log scale by default
    # test (solid) and training (dashed) per scheme
    styles = {line.get_linestyle() for line in axes[0].get_lines()}
    assert styles == {"-", "--"}
    plots.curves(r, "he_normal", metric="train_accuracy", ax=axes[1], logy=True)
    assert axes[1].get_yscale() == "log" and len(axes[1].get_lines()) == 1
    assert r.plot("final", ["zeros", "he_normal"], ax=axes[2]) is fig
    assert [t.get_text() for t in axes[2].get_xticklabels()] == ["zeros", "he_normal"]
    plt.close(fig)
    for bad, match in (({"metric": "acc"}, "metric.*test_accuracy"), ({"schemes": ["x"]}, "x")):
        with pytest.raises(ValueError, match=match):
            r.plot(**bad)
    with pytest.raises(ValueError, match="kind"):
        r.plot("histogram")


def test_the_y_range_is_not_squashed_by_a_collapsed_scheme(saved):
    _, r = saved
    fig = r.plot()  # zeros stays at chance (~10%) while the others learn
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    learned = r.summary().set_index("scheme").loc[["he_normal", "glorot_uniform"], "acc_mean"]
    zeros_final = r.summary().set_index("scheme").loc["zeros", "acc_mean"]
    assert low > zeros_final and low <= learned.min() and high >= learned.max()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("zeros (below the range") for t in labels), labels
    plt.close(fig)
    fig = r.plot(ylim=None)  # matplotlib's own range shows everything
    assert fig.axes[0].get_ylim()[0] <= zeros_final
    plt.close(fig)
    assert plots.robust_range({"a": np.array([0.1, 0.1])}, chance=0.1) is None  # nothing learned


def test_final_accuracy_leaves_a_scheme_near_chance_out_of_the_range_and_names_it(saved):
    """zeros on MNIST ends at 11.35% (its most frequent class), above chance + 1 point: it used to count as
    learned and squash the others into a line at the top of final_accuracy.png."""
    _, r = saved
    models = r.models.copy()
    zeros = models["scheme"] == "zeros"
    models.loc[zeros, "final_accuracy"] = [0.1135, 0.1135, 0.1140]
    models.loc[~zeros, "final_accuracy"] = np.linspace(0.95, 0.97, int((~zeros).sum()))
    fig = plots.final_accuracy(dataclasses.replace(r, models=models))
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert 0.94 < low < 0.95 and 0.97 < high < 0.98  # the learned schemes fill the axis
    note = [t.get_text() for t in ax.get_legend().get_texts()]
    assert note == ["zeros (below the range: 11.3%)"]
    plt.close(fig)
    # the rule: closer to chance than to the best scheme's final value, or within 1 point of chance
    assert plots.robust_range(
        {"a": np.array([0.6]), "b": np.array([0.9])}, chance=0.1
    ) == pytest.approx((0.585, 0.915))
    assert plots.robust_range(
        {"a": np.array([0.4]), "b": np.array([0.9])}, chance=0.1
    ) == pytest.approx((0.8995, 0.9005))


def test_one_colour_per_scheme_across_figures_and_subsets(saved):
    _, r = saved
    colors = plots.scheme_colors(r)
    assert list(colors) == [
        "zeros",
        "he_normal",
        "glorot_uniform",
    ]  # grid order, whatever a figure shows
    fig, axes = plt.subplots(1, 3)
    plots.curves(r, ["glorot_uniform", "he_normal"], ax=axes[0])
    plots.curves(r, ["he_normal", "zeros"], metric="loss", ax=axes[1])
    plots.final_accuracy(r, ["he_normal", "glorot_uniform"], ax=axes[2])
    for ax in axes[:2]:
        for line in ax.get_lines():
            scheme = line.get_label() if not line.get_label().startswith("_") else None
            if scheme in colors:
                assert line.get_color() == colors[scheme]
    first = {line.get_label(): line.get_color() for line in axes[0].get_lines()}
    second = {line.get_label(): line.get_color() for line in axes[1].get_lines()}
    assert first["he_normal"] == second["he_normal"] == colors["he_normal"]
    points = [c.get_facecolor()[0][:3] for c in axes[2].collections]
    assert np.allclose(points[0], colors["he_normal"][:3]) and np.allclose(
        points[1], colors["glorot_uniform"][:3]
    )
    plt.close(fig)


def test_scheme_colors_shade_the_groups_of_an_axis():
    import pandas as pd

    models = pd.DataFrame(
        {"scheme": ["a", "a", "b", "b"], "learning_rate": [0.1, 0.01, 0.1, 0.01], "seed": 0}
    )
    colors = plots.scheme_colors(type("Result", (), {"models": models})())
    assert colors["a lr=0.1"] == pytest.approx(colors["a"][:3])
    assert colors["a lr=0.01"] == pytest.approx(tuple(c + (1 - c) * 0.3 for c in colors["a"][:3]))
    assert colors["b lr=0.1"] == pytest.approx(colors["b"][:3]) and colors["a"] != colors["b"]


def test_rich_display(saved):
    out, r = saved
    html = sweep.load(out)._repr_html_()
    assert html.count("<tr") == 1 + 3  # header + one row per scheme
    assert "9 models (3 schemes x 3 seeds)" in html and "he_normal" in html and str(out) in html
    assert "SweepResult(9 models" in repr(r)


def test_a_run_folder_of_format_1_loads_and_is_never_replaced(tmp_path):
    """A run folder of the first format (before config.json recorded what jinit wrote: the committed studies) is
    read, and plots; a sweep refuses to replace it, also with overwrite, since jinit cannot show which of its files
    it wrote."""
    import pandas as pd

    out = tmp_path / "old"
    cfg = sweep.SweepConfig(schemes=("he_normal",), seeds=2, epochs=2, hidden=(8,), train_size=128,
                            test_size=64, models_per_device=2)  # fmt: skip
    sweep.run(cfg, out=out, progress=False)
    doc = json.loads((out / "config.json").read_text())
    doc["format"] = "jinit-run-folder/1"
    del doc["files"]
    (out / "config.json").write_text(json.dumps(doc))
    curves = pd.read_csv(out / "results.csv")
    curves["train_accuracy"] = float("nan")  # a sweep that did not log it
    curves.to_csv(out / "results.csv", index=False)
    r = sweep.load(out)
    assert r.curves["train_accuracy"].isna().all() and len(r.models) == 2
    fig = r.plot()
    plt.close(fig)
    with pytest.raises(ValueError, match="no train_accuracy"):
        # asking for a column the sweep did not log says so, instead of drawing an empty figure
        plots.curves(r, metric="train_accuracy")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.rglob("*"))
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="older jinit"):
            sweep.run(cfg, out=out, progress=False, overwrite=overwrite)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.rglob("*")) == before


def test_committed_run_folders_carry_no_absolute_path():
    configs = sorted((REPO / "experiments" / "results").glob("*/*/config.json"))
    assert configs
    for path in configs:
        doc = json.loads(path.read_text())
        assert "data_dir" not in doc["config"], path
        text = json.dumps(doc)
        assert "/work/" not in text and "/home/" not in text and '":/' not in text, path


def test_fingerprint_ignores_data_dir(tmp_path):
    cfg = sweep.SweepConfig(
        schemes=("he_normal",), seeds=1, epochs=1, hidden=(8,), train_size=128, test_size=64
    )
    # digits ignores data_dir: the same data, two "locations"
    here = dataclasses.replace(cfg, data_dir=str(tmp_path / "x"))
    there = dataclasses.replace(cfg, data_dir=str(tmp_path / "y"))
    p1, p2 = sweep.make_plan(here), sweep.make_plan(there)
    keys = {label: p.key for label, p in sweep.ProgramCache().inits(p1).items()}
    assert sweep.plan.fingerprint(p1, keys) == sweep.plan.fingerprint(p2, keys)
    sweep.run(here, out=tmp_path / "r", progress=False)
    doc = json.loads((tmp_path / "r" / "config.json").read_text())
    assert "data_dir" not in doc["config"]
    # the same sweep with the data elsewhere is the same sweep: read back, not refused
    again = sweep.run(there, out=tmp_path / "r", progress=False)
    assert again.path == tmp_path / "r"
    assert (
        folder_lib.config_differences(
            {"data_dir": "/a", "seeds": 1}, {"data_dir": "/b", "seeds": 1}
        )
        == []
    )


def test_progress_bar_does_not_flood_a_log(monkeypatch):
    """stderr redirected to a file or a pipe: the bar is redrawn at most once a minute; on a terminal, live."""
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    plan = sweep.make_plan(sweep.SweepConfig(schemes=("zeros",), seeds=1, epochs=1, train_size=64))
    for stream, live in ((io.StringIO(), False), (Tty(), True)):
        monkeypatch.setattr(sys, "stderr", stream)
        progress = sweep.trainer.ProgressBar(plan, n_chunks=1000, done=0)
        bar = progress.bar
        for _ in range(1000):
            bar.update(1)
        progress.close()
        redraws = stream.getvalue().count("\r")
        if live:
            assert bar.mininterval < 1
        else:
            assert bar.mininterval >= 60 and redraws <= 3, redraws


def test_help_texts_print_single_percent_signs(capsys):
    for sub in ("sweep", "report"):
        assert cli.main([sub, "--help"]) == 0  # help is printed, exit code 0
        out = " ".join(capsys.readouterr().out.split())
        assert "95% CI" in out and "%%" not in out, sub
    assert cli.main(["sweep", "--help"]) == 0
    assert "--save-params" in capsys.readouterr().out


def test_schemes_all_names_what_it_leaves_out(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="jinit"):
        labels = [label for label, _ in sweep.resolve_schemes("all")]
    assert "keras_default" not in labels and "glorot_uniform" in labels
    assert "keras_default = glorot_uniform" in caplog.text
    assert "flax_default = lecun_normal" in caplog.text


def test_a_killed_params_write_leaves_nothing_behind(tmp_path):
    (tmp_path / "params").mkdir(parents=True)
    half = tmp_path / "params" / ".00000.npz.k2x9_q0a.tmp"  # mkstemp's name: 8 random characters
    half.write_bytes(b"PK")
    mine = tmp_path / "params" / ".00000.npz.abc.tmp"  # not a name jinit writes: the user's
    mine.write_bytes(b"PK")
    assert folder_lib.remove_leftovers(tmp_path) == [half] and not half.exists() and mine.exists()


def test_schemes_all_keeps_a_registered_scheme(monkeypatch):
    """A custom scheme registered for every kernel (applies_to="any") is part of "all", never an alias."""
    import jax as jax_

    import jinit
    from jinit import registry

    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
    monkeypatch.setattr(registry, "_LOOKUP", dict(registry._LOOKUP))
    jinit.register("jax_he", lambda: jax_.nn.initializers.he_normal(), applies_to="any")
    assert "jax_he" in sweep.applicable_schemes("mlp")
    assert "jax_he" not in sweep.schemes_left_out_of_all("mlp")

"""The sweep on your own data and tasks (issue 13, items 2 and 3): ``run(data=..., task=...)``, a validation split
evaluated beside the test set, columns named by the task's metric, resume and refusals. Smoke-sized."""

from __future__ import annotations

import dataclasses
import json
import signal

import flax.linen as nn
import jax
import numpy as np
import optax
import pandas as pd
import pytest

from jinit import cli, data, metrics, models, results, sweep, train
from jinit.sweep import checkpoints, folder

TINY = dict(schemes=("he_normal", "zeros"), seeds=2, epochs=2, hidden=(16,), batch_size=32)


@pytest.fixture(scope="module")
def diabetes():
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    y = (y - y.mean()) / y.std()  # standardized targets: R^2 and RMSE on the same scale
    return data.from_arrays(x[:342], y[:342], x[342:], y[342:], name="diabetes")


def _all_text(r) -> str:
    return " ".join(
        [*r.curves.columns, *r.models.columns, *r.summary().columns, json.dumps(r.meta["task"])]
    )


def test_regression_on_diabetes_reports_r2_and_rmse(tmp_path, diabetes, capsys):
    out = tmp_path / "run"
    r = sweep.run(sweep.SweepConfig(**TINY), data=diabetes, out=out, progress=False)
    assert r.metric == "r2" and r.higher_is_better
    assert r.meta["task"] == {
        "name": "regression",
        "metrics": ["r2", "rmse"],
        "primary": "r2",
        "higher_is_better": True,
    }
    assert {"train_r2", "test_loss", "test_r2", "test_rmse"} <= set(r.curves.columns)
    assert {"final_r2", "final_rmse", "final_test_loss"} <= set(r.models.columns)
    assert "accuracy" not in _all_text(r)
    assert r.config.dataset == "diabetes" and r.meta["data_source"] == diabetes.source
    # predictions are the float outputs, one per test example; the metrics are those of the predictions
    assert r.predictions.shape == (4, 100) and r.predictions.dtype == np.float32
    y = diabetes.y_test.astype(np.float64)
    err = r.predictions.astype(np.float64) - y
    rmse = np.sqrt((err**2).mean(axis=1))
    r2 = 1 - (err**2).sum(axis=1) / ((y - y.mean()) ** 2).sum()
    np.testing.assert_allclose(r.models["final_rmse"], rmse, rtol=1e-4)
    np.testing.assert_allclose(r.models["final_r2"], r2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.models["final_test_loss"], rmse**2, rtol=1e-4)
    table = r.summary()
    assert {"r2_mean", "r2_ci95_low", "r2_ci95_high"} <= set(table.columns)
    assert table["scheme"].iloc[0] == r.models.groupby("scheme")["final_r2"].mean().idxmax()
    assert table["churn"].isna().all() and table["noise_floor"].isna().all()

    # the folder reads back without the arrays, and jinit report names the metric, never "accuracy"
    back = sweep.load(out)
    assert back.metric == "r2"
    pd.testing.assert_frame_equal(back.models, r.models)
    np.testing.assert_array_equal(back.predictions, r.predictions)
    capsys.readouterr()
    assert cli.main(["report", str(out), "--compare", "he_normal", "zeros"]) == 0
    printed = capsys.readouterr().out
    assert "r2" in printed and "rmse" in printed and "accuracy" not in printed.lower()
    assert (out / "r2_curves.png").is_file() and (out / "final_r2.png").is_file()


def test_other_arrays_are_refused_on_resume(tmp_path, diabetes):
    out = tmp_path / "run"
    cfg = sweep.SweepConfig(**{**TINY, "seeds": 1, "epochs": 1})
    sweep.run(cfg, data=diabetes, out=out, progress=False)
    y = np.array(diabetes.y_train)
    y[0] += 1.0  # one target differs: another dataset with the same name and shapes
    other = data.from_arrays(diabetes.x_train, y, diabetes.x_test, diabetes.y_test, name="diabetes")
    with pytest.raises(folder.RunFolderMismatch, match="different data, schemes or model"):
        sweep.run(cfg, data=other, out=out, progress=False)
    # the same arrays again: the complete folder is read back
    again = sweep.run(cfg, data=diabetes, out=out, progress=False)
    assert again.path == out


def test_binary_task_trains_one_logit(compile_counter):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int32)
    ds = data.from_arrays(x[:300], y[:300], x[300:], y[300:], task="binary", name="halfplane")
    cfg = sweep.SweepConfig(**{**TINY, "schemes": ("he_normal",), "epochs": 3})
    cfg = dataclasses.replace(cfg, learning_rate=1e-2)
    r = sweep.run(cfg, data=ds, progress=False)
    assert r.meta["task"]["name"] == "binary" and r.metric == "accuracy"
    assert r.predictions.shape == (2, 100) and set(np.unique(r.predictions)) <= {0, 1}
    np.testing.assert_allclose(
        r.models["final_accuracy"], (r.predictions == ds.y_test).mean(axis=1), atol=1e-6
    )
    assert r.models["final_accuracy"].min() > 0.8  # a half-plane is learned
    # a model with two outputs for the binary task: refused before anything compiles
    before = compile_counter.count

    def two_outputs(kernel_init, bias_init):
        return models.MLP(hidden=(8,), num_classes=2, kernel_init=kernel_init)

    with pytest.raises(ValueError, match=r"outputs shape \(2,\) per example.*binary"):
        sweep.run(cfg, data=ds, model=two_outputs, progress=False)
    assert compile_counter.count == before


def test_wrong_output_width_for_the_classes_is_one_line_before_compiling(compile_counter):
    def five(kernel_init, bias_init):
        return models.MLP(hidden=(8,), num_classes=5, kernel_init=kernel_init)

    cfg = sweep.SweepConfig(**{**TINY, "seeds": 1}, train_size=128, test_size=64)
    with pytest.raises(ValueError) as info:
        sweep.run(cfg, model=five, progress=False)
    msg = str(info.value)
    assert "outputs shape (5,)" in msg and "10 classes" in msg and "\n" not in msg
    assert compile_counter.count == 0


def _mae(outputs, targets):
    return jnp_abs(outputs[..., 0] - targets)


def jnp_abs(x):
    import jax.numpy as jnp

    return jnp.abs(x)


def _mse(outputs, targets):
    return (outputs[..., 0] - targets) ** 2


def test_custom_task_with_a_lower_is_better_metric_ranks_lowest_first(diabetes):
    task = train.custom_task(_mse, _mae, name="mae", higher_is_better=False)
    cfg = sweep.SweepConfig(**{**TINY, "schemes": ("he_normal", "zeros", "normal(stddev=3.0)")})
    r = sweep.run(cfg, data=diabetes, task=task, progress=False)
    assert r.metric == "mae" and not r.higher_is_better
    assert {"test_mae", "final_mae"} <= set(r.models.columns) | set(r.curves.columns)
    mae = np.abs(r.predictions[..., 0] - diabetes.y_test).mean(axis=1)
    np.testing.assert_allclose(r.models["final_mae"], mae, rtol=1e-4)
    table = r.summary()
    means = r.models.groupby("scheme")["final_mae"].mean().sort_values()
    assert list(table["scheme"]) == list(means.index)  # lowest mean absolute error first
    np.testing.assert_allclose(table["mae_mean"], means.to_numpy(), rtol=1e-6)
    ok = table["mae_ci95_low"].notna()
    assert (table.loc[ok, "mae_ci95_low"] <= table.loc[ok, "mae_mean"]).all()
    assert (table.loc[ok, "mae_mean"] <= table.loc[ok, "mae_ci95_high"]).all()
    assert "accuracy" not in _all_text(r)


def test_summarize_of_a_lower_is_better_metric():
    """The best set and the order of a lower-is-better metric: the scheme with the lowest values is best."""
    rng = np.random.default_rng(0)
    low, high = 1.0 + 0.01 * rng.normal(size=6), 2.0 + 0.01 * rng.normal(size=6)
    m = pd.DataFrame(
        {
            "scheme": ["worse"] * 6 + ["better"] * 6,
            "seed": list(range(6)) * 2,
            "final_mae": np.concatenate([high, low]),
            "diverged": False,
        }
    )
    preds = np.zeros((12, 3), np.float32)
    args = (pd.DataFrame(), m, preds, np.zeros(3, np.float32))
    t = metrics.summarize(*args, num_classes=1, metric="mae", higher_is_better=False)
    assert list(t["scheme"]) == ["better", "worse"]
    assert list(t["in_best_set"]) == [True, False]
    assert t["mae_min"].iloc[0] == pytest.approx(low.min())
    assert t["mae_max"].iloc[0] == pytest.approx(low.max())
    assert t["mae_ci95_low"].iloc[0] < low.mean() < t["mae_ci95_high"].iloc[0]
    # the same numbers read as higher-is-better put the other scheme first
    t2 = metrics.summarize(*args, num_classes=1, metric="mae", higher_is_better=True)
    assert list(t2["scheme"]) == ["worse", "better"]


DIGITS_VAL = dict(TINY, train_size=400, test_size=200, val_size=100)


def test_validation_split_is_held_out_and_evaluated_beside_the_test_set():
    cfg = sweep.SweepConfig(**DIGITS_VAL)
    r = sweep.run(cfg, progress=False, keep_params=True)
    assert r.meta["n_train"] == 300 and r.meta["n_val"] == 100 and r.meta["n_test"] == 200
    assert {"val_loss", "val_accuracy"} <= set(r.curves.columns)
    assert {"final_val_accuracy", "final_val_loss"} <= set(r.models.columns)
    at_init = r.curves[r.curves["step"] == 0]
    assert np.isfinite(at_init["val_loss"]).all()  # measured at initialization too
    # the validation metrics are those of the final parameters on the held-out examples
    ds = data.load("digits")
    part = data.split_validation(
        dataclasses.replace(ds, x_train=ds.x_train[:400], y_train=ds.y_train[:400]),
        val_size=100,
        seed=cfg.seed,
    )
    module = models.MLP(hidden=(16,), num_classes=10)
    for i in range(len(r.models)):
        params = jax.tree.map(lambda a, i=i: a[i], r.params)
        logits = module.apply(params, part.x_val)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, part.y_val).mean()
        acc = (np.argmax(logits, -1) == part.y_val).mean()
        assert r.models["final_val_loss"].iloc[i] == pytest.approx(float(loss), rel=1e-4)
        assert r.models["final_val_accuracy"].iloc[i] == pytest.approx(float(acc), abs=1e-6)
    # the same config twice: the same split, the same models
    again = sweep.run(cfg, progress=False)
    pd.testing.assert_frame_equal(again.models, r.models)


def test_without_a_validation_split_the_tables_are_as_before():
    r = sweep.run(
        sweep.SweepConfig(**{**TINY, "seeds": 1}, train_size=128, test_size=64), progress=False
    )
    assert list(r.curves.columns) == list(results.CURVE_COLUMNS)
    assert list(r.models.columns) == list(results.MODEL_COLUMNS)
    assert "n_val" not in r.meta and r.meta["task"]["name"] == "classification"


def test_a_dataset_with_its_own_validation_set(diabetes):
    rng = np.random.default_rng(1)
    xv, yv = rng.normal(size=(40, 10)), rng.normal(size=40)
    ds = data.from_arrays(
        diabetes.x_train, diabetes.y_train, diabetes.x_test, diabetes.y_test, x_val=xv, y_val=yv
    )
    cfg = sweep.SweepConfig(**{**TINY, "seeds": 1, "epochs": 1})
    r = sweep.run(cfg, data=ds, progress=False)
    assert r.meta["n_val"] == 40 and {"final_val_r2", "final_val_rmse"} <= set(r.models.columns)
    with pytest.raises(ValueError, match="already has a validation set"):
        sweep.run(dataclasses.replace(cfg, val_size=10), data=ds, progress=False)


def _interrupt_after(monkeypatch, chunk: int, epoch: int):
    real = checkpoints.Checkpointer.save

    def save(self, folder, index, ep, *args, **kwargs):
        if (index, ep) == (chunk, epoch):
            signal.raise_signal(signal.SIGINT)
        return real(self, folder, index, ep, *args, **kwargs)

    monkeypatch.setattr(checkpoints.Checkpointer, "save", save)


def test_resume_with_a_validation_split(tmp_path, monkeypatch):
    cfg = sweep.SweepConfig(
        **{**DIGITS_VAL, "epochs": 3}, max_models_per_chunk=2, models_per_device=2
    )
    reference = sweep.run(cfg, progress=False)
    out = tmp_path / "run"
    _interrupt_after(monkeypatch, chunk=1, epoch=2)
    with pytest.raises(sweep.SweepInterrupted):
        sweep.run(cfg, out=out, progress=False, checkpoint_every=0)
    monkeypatch.undo()
    r = sweep.run(cfg, out=out, progress=False, checkpoint_every=0)
    # chunk 0's file (with its validation arrays) and chunk 1's checkpoint were both used
    assert r.meta["chunks_reused"] == 1 and r.meta["epochs_reused"] == 2
    pd.testing.assert_frame_equal(r.models, reference.models)
    pd.testing.assert_frame_equal(r.curves, reference.curves)
    pd.testing.assert_frame_equal(sweep.load(out).models, reference.models)


def test_bad_data_and_task_are_errors_before_compiling(compile_counter, diabetes):
    cfg = sweep.SweepConfig(**TINY)
    with pytest.raises(ValueError, match="unknown task 'regresion'. Did you mean 'regression'"):
        sweep.run(cfg, task="regresion", progress=False)
    with pytest.raises(TypeError, match="data must be a jinit.data.Dataset"):
        sweep.run(cfg, data=np.zeros((3, 2)), progress=False)
    with pytest.raises(ValueError, match="binary task needs labels 0 and 1"):
        sweep.run(cfg, task="binary", progress=False)  # digits has 10 classes
    with pytest.raises(ValueError, match="needs class labels.*regression targets"):
        sweep.run(cfg, data=diabetes, task="classification", progress=False)
    with pytest.raises(ValueError, match="give at most one of val_size"):
        sweep.run(dataclasses.replace(cfg, val_size=5, val_fraction=0.1), progress=False)
    with pytest.raises(ValueError, match="val_size=5000 is out of range"):
        sweep.run(dataclasses.replace(cfg, val_size=5000), progress=False)
    with pytest.raises(ValueError, match="unknown dataset 'mnsit'"):
        sweep.run(dataclasses.replace(cfg, dataset="mnsit"), progress=False)
    assert compile_counter.count == 0


def test_cli_validation_split_and_task(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["sweep", "--schemes", "he_normal", "--seeds", "1", "--epochs", "1", "--hidden", "8"]
    argv += ["--train-size", "200", "--test-size", "100", "--val-fraction", "0.25", "--no-progress"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "150 train / 50 validation / 100 test" in printed
    assert "final_val_accuracy" in (out / "models.csv").read_text().splitlines()[0]
    assert cli.main([*argv, "--task", "regresion", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jinit sweep: error: unknown task 'regresion'") and err.count("\n") == 1


class _TwoHeads(nn.Module):
    """A regression model for two targets."""

    kernel_init: object = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x):
        return nn.Dense(2, kernel_init=self.kernel_init)(nn.relu(nn.Dense(8)(x)))


def test_regression_with_two_targets(diabetes):
    y2 = np.stack([diabetes.y_train, -diabetes.y_train], 1)
    t2 = np.stack([diabetes.y_test, -diabetes.y_test], 1)
    ds = data.from_arrays(diabetes.x_train, y2, diabetes.x_test, t2)
    cfg = sweep.SweepConfig(**{**TINY, "seeds": 1, "epochs": 1})
    r = sweep.run(cfg, data=ds, model=lambda k, b: _TwoHeads(kernel_init=k), progress=False)
    assert r.predictions.shape == (2, 100, 2)
    err = r.predictions.astype(np.float64) - t2
    np.testing.assert_allclose(
        r.models["final_rmse"], np.sqrt((err**2).mean(axis=(1, 2))), rtol=1e-4
    )

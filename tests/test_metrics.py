import hashlib
import itertools

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from jinit import metrics

# ---------------------------------------------------------------- mean_ci


def test_mean_ci_t_matches_hand_value_and_scipy():
    ci = metrics.mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729749462 / np.sqrt(3)  # t_{0.975, df=2} * s / sqrt(n), s = 1
    assert ci.mean == 2.0
    np.testing.assert_allclose([ci.low, ci.high], [2 - half, 2 + half], rtol=1e-12)
    x = np.random.default_rng(0).normal(size=17)
    lo, hi = stats.t.interval(0.9, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    np.testing.assert_allclose(metrics.mean_ci(x, level=0.9)[1:], [lo, hi], rtol=1e-12)


def test_mean_ci_degenerate_inputs():
    one = metrics.mean_ci([0.5])
    assert one.mean == 0.5 and np.isnan(one.low) and np.isnan(one.high)
    assert np.isnan(metrics.mean_ci([]).mean)
    assert metrics.mean_ci([1.0, np.nan, 3.0]).mean == 2.0  # NaNs dropped


def test_mean_ci_t_interval_has_nominal_coverage():
    rng = np.random.default_rng(1)
    trials = 2000
    x = rng.normal(0.3, 2.0, size=(trials, 5))
    covered = np.mean([(c.low <= 0.3 <= c.high) for c in map(metrics.mean_ci, x)])
    assert abs(covered - 0.95) < 4 * np.sqrt(0.95 * 0.05 / trials)


def test_mean_ci_bootstrap_is_deterministic_and_near_t_for_large_n():
    x = np.random.default_rng(2).normal(size=400)
    a = metrics.mean_ci(x, method="bootstrap", seed=3)
    assert a == metrics.mean_ci(x, method="bootstrap", seed=3)
    assert a != metrics.mean_ci(x, method="bootstrap", seed=4)
    t = metrics.mean_ci(x)
    # Both approximate mean +- 1.96 s / sqrt(n); the bootstrap's Monte-Carlo error is a few percent.
    np.testing.assert_allclose(a.high - a.low, t.high - t.low, rtol=0.08)
    assert a.low < a.mean < a.high


def test_mean_ci_rejects_bad_arguments():
    with pytest.raises(ValueError, match="bootstrap"):
        metrics.mean_ci([1.0, 2.0], method="percentile")
    with pytest.raises(ValueError, match="level"):
        metrics.mean_ci([1.0, 2.0], level=95)
    with pytest.raises(ValueError, match="one-dimensional"):
        metrics.mean_ci(np.zeros((2, 2)))


# ---------------------------------------------------------------- churn / noise floor


def test_churn_hand_example():
    p = np.array([[0, 1, 2], [0, 1, 1], [0, 0, 1]])
    # pairs (0,1): 1/3, (0,2): 2/3, (1,2): 1/3
    assert metrics.churn(p) == pytest.approx(4 / 9)
    assert metrics.churn(np.array([[3, 1, 4], [3, 1, 4]])) == 0.0
    assert np.isnan(metrics.churn(np.array([[1, 2, 3]])))


def test_churn_equals_brute_force_over_pairs():
    p = np.random.default_rng(0).integers(0, 4, size=(7, 300))
    brute = np.mean([np.mean(a != b) for a, b in itertools.combinations(p, 2)])
    assert metrics.churn(p) == pytest.approx(brute, rel=1e-12)


def test_noise_floor_hand_example_and_simulation():
    c = np.array([[1, 1, 0, 0], [1, 0, 1, 0]])  # p = 1, .5, .5, 0
    assert metrics.noise_floor(c) == pytest.approx(np.sqrt(0.5) / 4)
    # Models that err independently per example with probability 1 - p_i: the std of their accuracy over
    # seeds is the noise floor (std of a std estimate from m samples: relative error ~ 1/sqrt(2m)).
    rng = np.random.default_rng(5)
    p = rng.beta(5, 1, size=1000)
    correct = rng.random((2000, 1000)) < p
    observed = correct.mean(axis=1).std(ddof=1)
    assert metrics.noise_floor(correct) == pytest.approx(observed, rel=4 / np.sqrt(2 * 2000))
    assert metrics.noise_floor(correct) == pytest.approx(
        np.sqrt(np.sum(p * (1 - p))) / 1000, rel=0.02
    )


# ---------------------------------------------------------------- steps_to_target / auc


def test_steps_to_target():
    steps = np.array([0, 100, 200, 300])
    assert metrics.steps_to_target(np.array([0.2, 0.8, 0.95, 0.9]), steps, 0.9) == 200.0
    assert (
        metrics.steps_to_target(np.array([0.2, 0.9, 0.95, 0.9]), steps, 0.9) == 100.0
    )  # >= target
    assert metrics.steps_to_target(np.array([0.2, np.nan, 0.5, 0.6]), steps, 0.9) == np.inf
    two = metrics.steps_to_target(np.array([[0.95, 0, 0, 0], [0, 0, np.nan, 0.91]]), steps, 0.9)
    np.testing.assert_array_equal(two, [0.0, 300.0])
    with pytest.raises(ValueError, match="matching steps"):
        metrics.steps_to_target(np.zeros(3), steps, 0.5)


def test_auc():
    assert metrics.auc(np.array([2.0, 1.0, 0.0]), np.array([0, 10, 20])) == 1.0
    assert metrics.auc(np.array([2.0, 1.0, 0.0]), np.array([0, 10, 20]), normalize=False) == 20.0
    assert metrics.auc(np.array([1.0, 3.0])) == 2.0  # x defaults to 0, 1
    assert metrics.auc(np.array([0.7])) == 0.7
    # Uneven spacing: trapezoids (0..10: 1.5 avg, 10..40: 0.5 avg) -> (15 + 15) / 40
    assert metrics.auc(np.array([2.0, 1.0, 0.0]), np.array([0, 10, 40])) == pytest.approx(0.75)
    assert np.isnan(metrics.auc(np.array([1.0, np.nan])))
    with pytest.raises(ValueError, match="same shape"):
        metrics.auc(np.zeros(3), np.zeros(2))


# ---------------------------------------------------------------- compare


def test_compare_unpaired_matches_scipy_welch():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.9, 0.01, 8), rng.normal(0.89, 0.03, 5)
    r = metrics.compare(a, b)
    welch = stats.ttest_ind(a, b, equal_var=False)
    assert not r.paired and (r.n_a, r.n_b) == (8, 5)
    assert r.diff == pytest.approx(a.mean() - b.mean())
    assert r.p_value == pytest.approx(welch.pvalue, rel=1e-10)
    # The CI is the t-interval dual to the test: half-width = t_{df} * se, where diff / se is scipy's statistic.
    se = r.diff / welch.statistic
    half = (r.ci_high - r.ci_low) / 2
    assert half == pytest.approx(stats.t.ppf(0.975, welch.df) * se, rel=1e-10)
    assert (r.p_value < 0.05) == (r.ci_low > 0 or r.ci_high < 0)


def test_compare_paired_matches_scipy_and_is_automatic_for_shared_seeds():
    a = pd.Series([0.91, 0.92, 0.90, 0.93], index=[0, 1, 2, 3])
    b = pd.Series([0.90, 0.905, 0.89, 0.925], index=[0, 1, 2, 3])
    r = metrics.compare(a, b)
    assert r.paired
    assert r.p_value == pytest.approx(stats.ttest_rel(a.to_numpy(), b.to_numpy()).pvalue)
    assert r.diff == pytest.approx(np.mean(a.to_numpy() - b.to_numpy()))
    assert r.p_a_gt_b == 1.0  # A beats B on every seed
    # Pairing follows seeds, not positions.
    shuffled = metrics.compare(a, b.iloc[::-1])
    assert shuffled.p_value == pytest.approx(r.p_value) and shuffled.paired
    assert not metrics.compare(a, b, paired=False).paired
    assert not metrics.compare(a.to_numpy(), b.to_numpy()).paired  # arrays: no seed information


def test_compare_probability_of_outperforming_hand_values():
    # Unpaired: pairs (3>1, 3>2, 3=3, 1<..): a=[3,1], b=[1,2,3] -> (1+1+.5 + .5+0+0) / 6
    assert metrics.compare([3.0, 1.0], [1.0, 2.0, 3.0]).p_a_gt_b == pytest.approx(3 / 6)
    # Paired by position: 3>1, 1<2, 2=2 -> (1 + 0 + .5) / 3
    r = metrics.compare([3.0, 1.0, 2.0], [1.0, 2.0, 2.0], paired=True)
    assert r.paired and r.p_a_gt_b == pytest.approx(0.5)


def test_compare_zero_variance_and_errors():
    same = metrics.compare([0.5, 0.5], [0.5, 0.5])
    assert same.p_value == 1.0 and same.diff == 0.0
    assert metrics.compare([0.6, 0.6], [0.5, 0.5]).p_value == 0.0
    assert np.isnan(metrics.compare([0.6], [0.5, 0.4]).p_value)
    with pytest.raises(ValueError, match="same seeds"):
        metrics.compare(
            pd.Series([1.0, 2.0], index=[0, 1]), pd.Series([1.0, 2.0], index=[0, 2]), paired=True
        )
    with pytest.raises(ValueError, match="equal lengths"):
        metrics.compare([1.0, 2.0], [1.0], paired=True)


def test_compare_detects_a_real_difference_and_not_a_fake_one():
    rng = np.random.default_rng(7)
    real = [
        metrics.compare(rng.normal(0.02, 0.01, 10), rng.normal(0, 0.01, 10)).p_value
        for _ in range(200)
    ]
    null = [
        metrics.compare(rng.normal(0, 0.01, 10), rng.normal(0, 0.01, 10)).p_value
        for _ in range(400)
    ]
    assert np.mean(np.array(real) < 0.05) > 0.9  # power at effect size 2 sd with n=10 is ~0.99
    assert abs(np.mean(np.array(null) < 0.05) - 0.05) < 4 * np.sqrt(0.05 * 0.95 / 400)


# ---------------------------------------------------------------- param_sha256


def test_param_sha256_is_bit_exact_and_layout_aware():
    tree = {
        "Dense_0": {
            "kernel": np.arange(6, dtype=np.float32).reshape(2, 3),
            "bias": np.zeros(3, np.float32),
        }
    }
    h = metrics.param_sha256(tree)
    assert len(h) == 64 and h == metrics.param_sha256({k: dict(v) for k, v in tree.items()})
    assert h == metrics.param_sha256(
        {"Dense_0": {k: jnp.asarray(v) for k, v in tree["Dense_0"].items()}}
    )
    flipped = tree["Dense_0"]["kernel"].copy()
    flipped.view(np.uint32)[0, 0] ^= 1  # one bit
    assert h != metrics.param_sha256(
        {"Dense_0": {"kernel": flipped, "bias": tree["Dense_0"]["bias"]}}
    )
    reshaped = {
        "Dense_0": {
            "kernel": tree["Dense_0"]["kernel"].reshape(3, 2),
            "bias": tree["Dense_0"]["bias"],
        }
    }
    assert h != metrics.param_sha256(reshaped)
    as64 = {"Dense_0": {k: v.astype(np.float64) for k, v in tree["Dense_0"].items()}}
    assert h != metrics.param_sha256(as64)
    assert metrics.param_sha256({"a": np.zeros(2)}) != metrics.param_sha256({"b": np.zeros(2)})


def test_param_sha256_fixed_format():
    # The format is: for each leaf in tree order, key path, dtype, shape, raw bytes.
    arr = np.array([1.0, 2.0], np.float32)
    expected = hashlib.sha256(b"['w']" + b"float32" + b"(2,)" + arr.tobytes()).hexdigest()
    assert metrics.param_sha256({"w": arr}) == expected


# ---------------------------------------------------------------- summarize


def _toy_run():
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    good = [y.copy(), y.copy(), y.copy()]
    good[1][0] = 1  # 0.9
    good[2][:2] = 3  # 0.8
    weak = [y.copy(), y.copy(), np.zeros_like(y)]
    weak[0][:3] = 3  # 0.7
    weak[1][:4] = 0  # 0.7 (index 0 already right -> 3 wrong)
    preds = np.array(good + weak)
    acc = (preds == y).mean(axis=1)
    models = pd.DataFrame(
        {
            "scheme": ["he"] * 3 + ["bad"] * 3,
            "seed": [0, 1, 2] * 2,
            "final_accuracy": acc,
            "diverged": [False] * 5 + [True],
            "diverged_step": [-1] * 5 + [30],
            "param_sha256": ["x"] * 6,
        }
    )
    rows = []
    for (scheme, seed), hit_epoch in {
        ("he", 0): 1,
        ("he", 1): 2,
        ("he", 2): 3,
        ("bad", 0): 9,
        ("bad", 1): 3,
    }.items():
        for epoch in (1, 2, 3):
            rows.append(
                dict(
                    scheme=scheme,
                    seed=seed,
                    epoch=epoch,
                    step=10 * epoch,
                    train_loss=1.0 / epoch,
                    test_loss=1.0,
                    test_accuracy=0.6 if epoch >= hit_epoch else 0.3,
                    diverged=False,
                )
            )
    for epoch in (1, 2, 3):
        rows.append(
            dict(
                scheme="bad",
                seed=2,
                epoch=epoch,
                step=10 * epoch,
                train_loss=np.nan,
                test_loss=np.nan,
                test_accuracy=np.nan,
                diverged=True,
            )
        )
    return pd.DataFrame(rows), models, preds, y


def test_summarize_exact_small_run():
    curves, models, preds, y = _toy_run()
    s = metrics.summarize(curves, models, preds, y, num_classes=4, target_accuracy=0.5)
    assert list(s.columns) == list(metrics.SUMMARY_COLUMNS)
    assert list(s["scheme"]) == ["he", "bad"]  # ordered by acc_mean
    he, bad = s.iloc[0], s.iloc[1]
    assert he["n"] == 3 and bad["n"] == 3
    assert he["acc_mean"] == pytest.approx(0.9) and bad["acc_mean"] == pytest.approx(0.7)
    assert he["acc_std"] == pytest.approx(0.1)
    assert bad["acc_std"] == pytest.approx(0.0)
    assert (he["acc_min"], he["acc_max"], he["acc_median"]) == pytest.approx((0.8, 1.0, 0.9))
    half = 4.302652729749462 * 0.1 / np.sqrt(3)
    assert (he["acc_ci95_low"], he["acc_ci95_high"]) == pytest.approx((0.9 - half, 0.9 + half))
    assert bad["diverged_count"] == 1 and he["diverged_count"] == 0
    assert bad["failure_rate"] == pytest.approx(1 / 3) and he["failure_rate"] == 0.0
    # he reaches 0.6 >= 0.5 at steps 10, 20, 30; bad at 30 (seed 1), never (seed 0, seed 2 diverged).
    assert he["steps_to_target_median"] == 20.0 and he["steps_to_target_iqr"] == 10.0
    assert he["epochs_to_target_median"] == 2.0 and he["target_never_fraction"] == 0.0
    assert bad["steps_to_target_median"] == 30.0 and bad["target_never_fraction"] == pytest.approx(
        2 / 3
    )
    # train loss 1, 1/2, 1/3 at steps 10, 20, 30: trapezoid area (0.75 + 5/12) * 10 / span 20
    assert he["train_loss_auc"] == pytest.approx((0.75 + 5 / 12) / 2)
    assert bad["train_loss_auc"] == pytest.approx((0.75 + 5 / 12) / 2)  # diverged seed excluded
    assert he["churn"] == pytest.approx(metrics.churn(preds[:3]))
    assert bad["churn"] == pytest.approx(metrics.churn(preds[3:5]))
    assert he["churn_error_ratio"] == pytest.approx(he["churn"] / 0.1)
    assert he["noise_floor"] == pytest.approx(metrics.noise_floor(preds[:3] == y))
    assert he["noise_floor_ratio"] == pytest.approx(0.1 / he["noise_floor"])
    # Shared non-diverged seeds differ (0,1,2 vs 0,1) -> Welch test against the best.
    assert bad["p_vs_best"] == pytest.approx(
        metrics.compare(np.array([1.0, 0.9, 0.8]), [0.7, 0.7]).p_value
    )
    assert he["tied_with_best"] and bool(bad["tied_with_best"]) == (bad["p_vs_best"] >= 0.05)
    assert np.isnan(he["p_vs_best"])


def test_summarize_marks_clear_winners_and_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 2000)
    rows, preds = [], []
    for scheme, acc in [("a", 0.95), ("b", 0.949), ("c", 0.80)]:
        for seed in range(10):
            p = np.where(rng.random(y.size) < acc, y, (y + 1) % 10)
            preds.append(p)
            rows.append(
                dict(scheme=scheme, seed=seed, final_accuracy=(p == y).mean(), diverged=False)
            )
    s = metrics.summarize(pd.DataFrame(), pd.DataFrame(rows), np.array(preds), y, num_classes=10)
    by = s.set_index("scheme")
    assert by.loc["c", "tied_with_best"] == False  # noqa: E712  (numpy bool)
    assert by.loc["c", "p_vs_best"] < 1e-6
    assert by.loc[["a", "b"], "tied_with_best"].all()
    # Independent per-example errors: two models disagree when exactly one errs (one wrong class), so churn / error = 2 acc, and the observed
    # seed std matches the noise floor.
    assert by.loc["a", "churn_error_ratio"] == pytest.approx(2 * 0.95, rel=0.05)
    assert by.loc["c", "noise_floor_ratio"] == pytest.approx(1.0, abs=0.6)
    assert np.isnan(by.loc["a", "steps_to_target_median"]) and np.isnan(
        by.loc["a", "train_loss_auc"]
    )


def test_summarize_bootstrap_ci_option():
    curves, models, preds, y = _toy_run()
    t = metrics.summarize(curves, models, preds, y, num_classes=4)
    b = metrics.summarize(curves, models, preds, y, num_classes=4, ci_method="bootstrap")
    he_t, he_b = t.iloc[0], b.iloc[0]
    assert he_b["scheme"] == "he" and he_b["acc_mean"] == he_t["acc_mean"]
    # he's accuracies are 1.0, 0.9, 0.8: the bootstrap interval of the mean lies within the data's range,
    # the t interval (df = 2) is much wider.
    boot = metrics.mean_ci([1.0, 0.9, 0.8], method="bootstrap")
    assert (he_b["acc_ci95_low"], he_b["acc_ci95_high"]) == pytest.approx((boot.low, boot.high))
    assert 0.8 <= he_b["acc_ci95_low"] < he_b["acc_ci95_high"] <= 1.0
    assert he_t["acc_ci95_low"] < 0.8 and he_t["acc_ci95_high"] > 1.0
    others = [c for c in metrics.SUMMARY_COLUMNS if not c.startswith("acc_ci95")]
    pd.testing.assert_frame_equal(b[others], t[others])
    with pytest.raises(ValueError, match="unknown ci_method 'percentile'; valid: t, bootstrap"):
        metrics.summarize(curves, models, preds, y, num_classes=4, ci_method="percentile")


def test_summarize_validates_inputs():
    curves, models, preds, y = _toy_run()
    with pytest.raises(ValueError, match="diverged"):
        metrics.summarize(curves, models.drop(columns="diverged"), preds, y, num_classes=4)
    with pytest.raises(ValueError, match="predictions"):
        metrics.summarize(curves, models, preds[:-1], y, num_classes=4)
    with pytest.raises(ValueError, match="target_accuracy"):
        metrics.summarize(curves, models, preds, y, num_classes=4, target_accuracy=97)
    with pytest.raises(ValueError, match="curves table"):
        metrics.summarize(curves.drop(columns="step"), models, preds, y, num_classes=4)


def test_compare_schemes_pairs_by_seed_and_drops_diverged():
    m = pd.DataFrame(
        {
            "scheme": ["a"] * 3 + ["b"] * 3,
            "seed": [0, 1, 2, 2, 1, 0],
            "final_accuracy": [0.9, 0.8, 0.7, 0.7, 0.7, 0.8],
            "diverged": [False] * 6,
        }
    )
    r = metrics.compare_schemes(m, "a", "b")
    assert r.paired and r.diff == pytest.approx(
        (0.1 + 0.1 + 0.0) / 3
    )  # seed 0: .9-.8, 1: .8-.7, 2: .7-.7
    assert r.p_a_gt_b == pytest.approx((1 + 1 + 0.5) / 3)
    m.loc[5, "diverged"] = True  # b loses seed 0 -> seeds differ -> Welch
    r = metrics.compare_schemes(m, "a", "b")
    assert not r.paired and (r.n_a, r.n_b) == (3, 2)
    with pytest.raises(ValueError, match="unknown scheme 'c'; this run has: a, b"):
        metrics.compare_schemes(m, "a", "c")

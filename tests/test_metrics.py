import dataclasses
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
    c = np.array(
        [[1, 1, 0, 0], [1, 0, 1, 0]]
    )  # q = 1, .5, .5, 0; sum q(1-q) = .5, times m/(m-1) = 2
    assert metrics.noise_floor(c) == pytest.approx(1.0 / 4)
    assert np.isnan(metrics.noise_floor(c[:1]))  # one model: no estimate
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
    assert r.test == "Welch's t-test" and r.rank_test == "Mann-Whitney U"
    assert r.p_rank == pytest.approx(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def test_compare_paired_matches_scipy_only_when_asked():
    a = pd.Series([0.91, 0.92, 0.90, 0.93], index=[0, 1, 2, 3])
    b = pd.Series([0.90, 0.905, 0.89, 0.925], index=[0, 1, 2, 3])
    r = metrics.compare(a, b, paired=True)
    assert r.paired and r.test == "paired t-test" and r.rank_test == "Wilcoxon signed-rank"
    assert r.p_value == pytest.approx(stats.ttest_rel(a.to_numpy(), b.to_numpy()).pvalue)
    assert r.p_rank == pytest.approx(stats.wilcoxon(a.to_numpy() - b.to_numpy()).pvalue)
    assert r.diff == pytest.approx(np.mean(a.to_numpy() - b.to_numpy()))
    assert r.matched_win_rate == 1.0  # A beats B on every seed
    # P(A > B) is rliable's, over all 16 pairs of runs: the Mann-Whitney U statistic / (4 x 4)
    u = stats.mannwhitneyu(a.to_numpy(), b.to_numpy()).statistic
    assert r.p_a_gt_b == pytest.approx(u / 16) and r.p_a_gt_b == pytest.approx(0.71875)
    # Pairing follows seeds, not positions.
    shuffled = metrics.compare(a, b.iloc[::-1], paired=True)
    assert shuffled.p_value == pytest.approx(r.p_value) and shuffled.paired
    # Equal seed labels alone do not pair: seed 3 of two schemes shares nothing under vary="init".
    welch = metrics.compare(a, b)
    assert not welch.paired and welch.test == "Welch's t-test"
    assert welch.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert not metrics.compare(a.to_numpy(), b.to_numpy()).paired


def test_compare_probability_of_outperforming_hand_values():
    # Unpaired: pairs (3>1, 3>2, 3=3, 1<..): a=[3,1], b=[1,2,3] -> (1+1+.5 + .5+0+0) / 6
    assert metrics.compare([3.0, 1.0], [1.0, 2.0, 3.0]).p_a_gt_b == pytest.approx(3 / 6)
    # Paired by position: matched seeds 3>1, 1<2, 2=2 -> (1 + 0 + .5) / 3 is the matched-seed win rate; P(A > B)
    # stays over all 9 pairs: 3 beats all three, 1 ties one, 2 beats one and ties two -> (3 + .5 + 2) / 9
    r = metrics.compare([3.0, 1.0, 2.0], [1.0, 2.0, 2.0], paired=True)
    assert r.paired and r.matched_win_rate == pytest.approx(0.5)
    assert r.p_a_gt_b == pytest.approx(5.5 / 9)
    assert np.isnan(metrics.compare([3.0, 1.0], [1.0, 2.0, 3.0]).matched_win_rate)


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
            "param_sha256": [f"h{i}" for i in range(6)],
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
    # Majority class: 30% of the 10 labels. 7/10 right is not significantly above that (P(X >= 7) = 0.0106 >=
    # 0.01), 8/10 is (0.0016): bad's two surviving models fail, he's do not.
    assert bad["not_above_majority_count"] == 2 and bad["collapsed_count"] == 0
    assert bad["failure_rate"] == 1.0 and he["failure_rate"] == 0.0
    assert not he["deterministic"] and not bad["deterministic"]
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
    assert he["acc_iqm"] == pytest.approx(0.9)  # 3 values: trim_mean cuts none (floor(3/4) = 0)
    # vary="init" (paired=False): Welch's test against the best.
    assert bad["test_vs_best"] == "Welch's t-test" and he["test_vs_best"] == ""
    assert bad["p_vs_best"] == pytest.approx(
        stats.ttest_ind([1.0, 0.9, 0.8], [0.7, 0.7], equal_var=False).pvalue
    )
    assert bad["poi_vs_best"] == 0.0  # 0.7 loses to every he seed
    # Two schemes: the set for the best drops bad when the one-sided p (half the two-sided) is < 0.05 / 1.
    assert he["in_best_set"]
    assert bool(bad["in_best_set"]) == (bad["p_vs_best"] / 2 >= 0.05)
    assert bad["p_best_set"] == pytest.approx(bad["p_vs_best"] / 2)
    assert np.isnan(he["p_vs_best"])
    # paired=True (vary="data"/"both"): the paired t-test on the seeds both have (0 and 1).
    sp = metrics.summarize(curves, models, preds, y, num_classes=4, paired=True).iloc[1]
    assert sp["test_vs_best"] == "paired t-test"
    assert sp["p_vs_best"] == pytest.approx(stats.ttest_rel([1.0, 0.9], [0.7, 0.7]).pvalue)


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
    assert by.loc["c", "in_best_set"] == False  # noqa: E712  (numpy bool)
    assert by.loc["c", "p_vs_best"] < 1e-6
    assert by.loc[["a", "b"], "in_best_set"].all()
    # b is 0.1 points below a: far below what 10 seeds resolve. The summary says how far that is.
    se = np.sqrt((by.loc["a", "acc_std"] ** 2 + by.loc["b", "acc_std"] ** 2) / 10)
    # one-sided at 0.05 / 2 with 80% power: between the normal value (1.96 + 0.84) se and the t value (df ~ 18)
    assert 2.80 * se < by.loc["b", "mdd_vs_best"] < 3.1 * se
    acc = pd.DataFrame(rows).groupby("scheme")["final_accuracy"]
    kw = dict(alpha=0.025, power=0.8, two_sided=False)
    need = metrics.seeds_needed(acc.get_group("a"), acc.get_group("b"), 0.01, **kw)
    assert by.loc["b", "seeds_to_detect"] == need and 2 < need < 10  # 1 point: a few seeds suffice
    assert metrics.seeds_needed(acc.get_group("a"), acc.get_group("b"), 0.001, **kw) > 100
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
    r = metrics.compare_schemes(m, "a", "b")  # vary="init": nothing paired
    assert not r.paired and r.test == "Welch's t-test"
    r = metrics.compare_schemes(m, "a", "b", vary="data")
    assert r.paired and r.diff == pytest.approx(
        (0.1 + 0.1 + 0.0) / 3
    )  # seed 0: .9-.8, 1: .8-.7, 2: .7-.7
    assert r.matched_win_rate == pytest.approx((1 + 1 + 0.5) / 3)
    # all pairs: .9 beats 3, .8 beats 2 ties 1, .7 ties 2
    assert r.p_a_gt_b == pytest.approx(6.5 / 9)
    m.loc[5, "diverged"] = True  # b loses seed 0 -> paired on seeds 1 and 2
    r = metrics.compare_schemes(m, "a", "b", vary="both")
    assert r.paired and (r.n_a, r.n_b) == (2, 2) and r.diff == pytest.approx(0.05)
    with pytest.raises(ValueError, match="unknown scheme 'c'; this run has: a, b"):
        metrics.compare_schemes(m, "a", "c")


# ---------------------------------------------------------------- pairing (issue 14)


def _two_scheme_models(a, b, seeds_a=None, seeds_b=None):
    seeds_a = list(range(len(a))) if seeds_a is None else seeds_a
    seeds_b = list(range(len(b))) if seeds_b is None else seeds_b
    return pd.DataFrame(
        {
            "scheme": ["A"] * len(a) + ["B"] * len(b),
            "seed": seeds_a + seeds_b,
            "final_accuracy": list(a) + list(b),
            "diverged": [False] * (len(a) + len(b)),
        }
    )


def test_vary_init_compares_unpaired_where_a_paired_test_would_mislead():
    # Constructed case: B = A shifted, with the seed labels lined up so that a paired test sees an almost constant
    # difference. Under vary="init" the labels mean nothing: the comparison must be Welch's, as scipy computes it.
    a = np.array([0.970, 0.975, 0.972, 0.978, 0.969, 0.974])
    b = a - 0.002 + np.array([0.0002, -0.0001, 0.0001, -0.0002, 0.0001, 0.0])
    m = _two_scheme_models(a, b)
    r = metrics.compare_schemes(m, "A", "B")
    welch = stats.ttest_ind(a, b, equal_var=False)
    assert not r.paired and r.test == "Welch's t-test"
    assert r.p_value == pytest.approx(welch.pvalue, rel=1e-10)
    assert r.p_value > 0.3  # the spread over seeds (0.3 points) hides a 0.2-point shift ...
    paired = metrics.compare_schemes(m, "A", "B", vary="data")
    assert paired.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-10)
    assert paired.p_value < 1e-4  # ... that pairing by seed label would call highly significant
    assert paired.test == "paired t-test"
    assert metrics.paired_seeds("init") is False
    assert metrics.paired_seeds("data") and metrics.paired_seeds("both")
    with pytest.raises(ValueError, match="unknown vary 'seed'; valid: init, data, both"):
        metrics.paired_seeds("seed")


def test_sweep_result_summary_pairs_only_when_vary_pairs():
    from types import SimpleNamespace

    from jinit.results import SweepResult

    a = np.array([0.970, 0.975, 0.972, 0.978, 0.969, 0.974])
    b = a - 0.002 + np.array([0.0002, -0.0001, 0.0001, -0.0002, 0.0001, 0.0])
    m = _two_scheme_models(a, b)
    y = np.zeros(4, int)
    preds = np.zeros((12, 4), int)
    preds[:, 1:] = 1  # accuracy on these 4 labels does not matter: final_accuracy is given
    preds[np.arange(12), 2] = np.arange(12) % 3
    out = {}
    for vary in ("init", "data", "both"):
        res = SweepResult(
            SimpleNamespace(vary=vary, target_accuracy=None), pd.DataFrame(), m, preds, y, 3
        )
        out[vary] = res.summary().set_index("scheme").loc["B"]
    assert out["init"]["test_vs_best"] == "Welch's t-test"
    assert out["init"]["p_vs_best"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    for vary in ("data", "both"):
        assert out[vary]["test_vs_best"] == "paired t-test"
        assert out[vary]["p_vs_best"] == pytest.approx(stats.ttest_rel(a, b).pvalue)


# ---------------------------------------------------------------- best set, power


def test_best_set_keeps_the_true_best_despite_picking_the_winner():
    # 6 schemes with equal true means, 3 seeds each: every scheme is "a best". The old rule (each scheme tested,
    # uncorrected, against the observed winner) drops some scheme in most repetitions; the confidence set keeps
    # a given scheme with probability >= 95%.
    rng = np.random.default_rng(0)
    reps, k = 300, 6
    dropped_new, dropped_old = 0, 0
    for _ in range(reps):
        groups = {i: rng.normal(0.97, 0.003, 3) for i in range(k)}
        bs = metrics.best_set(groups)
        dropped_new += not bs.loc[0, "in_best_set"]
        winner = max(groups, key=lambda i: groups[i].mean())
        dropped_old += 0 != winner and metrics.compare(groups[winner], groups[0]).p_value < 0.05
    assert dropped_new / reps <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / reps)
    assert dropped_old / reps > dropped_new / reps + 0.03
    # A clearly worse scheme is excluded; the observed best is always in.
    g = {"a": [0.97, 0.972, 0.971], "b": [0.90, 0.91, 0.905], "c": [0.969, 0.971, 0.970]}
    bs = metrics.best_set(g)
    assert list(bs["in_best_set"]) == [True, False, True]
    p_one = stats.ttest_ind(g["a"], g["b"], equal_var=False, alternative="greater").pvalue
    p_one_c = stats.ttest_ind(g["c"], g["b"], equal_var=False, alternative="greater").pvalue
    assert bs.loc["b", "p_best_set"] == pytest.approx(2 * min(p_one, p_one_c))


def test_best_set_does_not_test_two_deterministic_schemes():
    bs = metrics.best_set({"ones": [0.32] * 5, "zeros": [0.11] * 5})
    assert bs["in_best_set"].all() and bs["p_best_set"].isna().all()
    bs = metrics.best_set({"he": [0.97, 0.96, 0.975], "zeros": [0.11] * 3})
    assert not bs.loc["zeros", "in_best_set"]  # one-sample t-test against a fixed value


def test_min_detectable_difference_has_the_promised_power():
    rng = np.random.default_rng(1)
    n, sd = 8, 0.01
    z = rng.normal(size=n)
    a = (z - z.mean()) / z.std(ddof=1) * sd  # sample std exactly sd
    mdd = metrics.min_detectable_difference(a, a)
    # the t-test with these spreads: Welch's p < 0.05 for a true difference mdd in ~80% of repetitions
    hits = [
        stats.ttest_ind(rng.normal(mdd, sd, n), rng.normal(0, sd, n), equal_var=False).pvalue < 0.05
        for _ in range(2000)
    ]
    assert np.mean(hits) == pytest.approx(0.8, abs=0.03)
    # normal approximation (1.96 + 0.84) * se is a lower bound; the t version is a bit larger at df = 14
    se = sd * np.sqrt(2 / n)
    assert 2.80 * se < mdd < 3.2 * se
    assert metrics.min_detectable_difference(a, a, two_sided=False) < mdd
    assert np.isnan(metrics.min_detectable_difference([0.5], a))
    # 2 seeds against a deterministic scheme (df = 1), where scipy's noncentral t returns NaN: still finite,
    # and the integral behind it agrees with scipy where scipy has a value.
    assert np.isfinite(metrics.min_detectable_difference([0.1641, 0.1953], [0.1094, 0.1094]))
    assert metrics._nct_sf(2.0, 3.0, 1.5) == pytest.approx(stats.nct.sf(2.0, 3.0, 1.5))


def test_seeds_needed_matches_the_textbook_value():
    # Cohen's tables: effect size d = 0.5, two-sided 5%, power 80% -> 64 per group (t-test); d = 1 -> 17.
    a = np.array([-1.0, 0.0, 1.0])  # sample sd 1
    assert metrics.seeds_needed(a, a, 0.5) == 64
    assert metrics.seeds_needed(a, a, 1.0) == 17
    assert metrics.seeds_needed(a, a, 1.0, power=0.9) > 17
    assert np.isnan(
        metrics.seeds_needed([1.0, 1.0], [2.0, 2.0], 0.5)
    )  # no spread: seeds do not help
    with pytest.raises(ValueError, match="power must be in"):
        metrics.seeds_needed(a, a, 1.0, power=0.01)


# ---------------------------------------------------------------- failures


def test_failures_catch_constant_predictors_including_an_imbalanced_binary_task():
    rng = np.random.default_rng(0)
    # MNIST-like 10 classes, class 1 the most frequent (11.35%): predicting 1 everywhere is right 11.35% of the
    # time, more than "chance + 1 point" allowed; it is a collapsed model.
    y10 = rng.permutation(np.r_[np.ones(1135, int), rng.integers(2, 10, 8865)])
    f = metrics.failures(np.ones((1, y10.size), int), y10)
    assert f.loc[0, "collapsed"] and f.loc[0, "not_above_majority"] and f.loc[0, "failed"]
    # Imbalanced binary task, 62.7% of the labels are 0: the constant predictor has 62.7% accuracy.
    yb = rng.permutation(np.r_[np.zeros(627, int), np.ones(373, int)])
    const = np.zeros((1, 1000), int)
    assert (const == yb).mean() == pytest.approx(0.627)
    assert metrics.failures(const, yb)["failed"].all()
    # A model right on 70% of the binary task is above the majority rate; one at 63% is not.
    good = np.where(rng.random(1000) < 0.7, yb, 1 - yb)
    weak = np.zeros(1000, int)
    weak[np.flatnonzero(yb == 1)[:5]] = 1  # 62.7% + 0.5%
    f = metrics.failures(np.stack([good, weak]), yb)
    assert (good == yb).mean() > 0.67 and 0.627 < (weak == yb).mean() < 0.64
    assert f["failed"].tolist() == [False, True] and not f["collapsed"].any()
    # Diverged models fail whatever they predict.
    assert metrics.failures(np.stack([good]), yb, [True])["failed"].all()
    # Collapsed onto a minority class also fails (below the majority rate).
    assert metrics.failures(np.ones((1, 1000), int), yb).loc[0, "collapsed"]


def test_summarize_counts_collapsed_models_as_failures():
    y = np.r_[np.zeros(60, int), np.ones(40, int)]
    preds = np.stack([y, y, np.zeros(100, int), y.copy()])
    preds[3, :5] = 1  # 95%
    models = pd.DataFrame(
        {
            "scheme": ["good", "good", "mixed", "mixed"],
            "seed": [0, 1, 0, 1],
            "diverged": [False] * 4,
            "param_sha256": ["a", "b", "c", "d"],
        }
    )
    s = metrics.summarize(pd.DataFrame(), models, preds, y, num_classes=2).set_index("scheme")
    assert s.loc["mixed", "failure_rate"] == 0.5 and s.loc["mixed", "collapsed_count"] == 1
    assert s.loc["good", "failure_rate"] == 0.0


# ---------------------------------------------------------------- noise floor bias


def test_noise_floor_is_unbiased_with_few_models():
    # Known per-example probabilities; 5 models per repetition (the default seed count). The plug-in estimate
    # sqrt(sum q(1-q)) / n is low by sqrt(4/5) (-10.6%); the estimate is not.
    rng = np.random.default_rng(3)
    p = rng.beta(4, 1, size=2000)
    truth = np.sqrt(np.sum(p * (1 - p))) / p.size
    m = 5
    est, plug = [], []
    for _ in range(200):
        correct = rng.random((m, p.size)) < p
        est.append(metrics.noise_floor(correct))
        q = correct.mean(axis=0)
        plug.append(np.sqrt(np.sum(q * (1 - q))) / p.size)
    assert np.mean(est) == pytest.approx(truth, rel=0.01)
    assert np.mean(plug) == pytest.approx(truth * np.sqrt((m - 1) / m), rel=0.01)


# ---------------------------------------------------------------- deterministic schemes


def test_summarize_marks_deterministic_schemes_instead_of_zero_width_intervals():
    y = np.arange(10) % 2
    preds = np.stack([y] * 3 + [1 - y] * 2 + [y, y])
    preds[5, 0] = 1 - y[0]
    models = pd.DataFrame(
        {
            "scheme": ["ones"] * 3 + ["zeros"] * 2 + ["he"] * 2,
            "seed": [0, 1, 2, 0, 1, 0, 1],
            "diverged": [False] * 7,
            "param_sha256": ["x", "x", "x", "z", "z", "h0", "h1"],
        }
    )
    s = metrics.summarize(pd.DataFrame(), models, preds, y, num_classes=2).set_index("scheme")
    assert s.loc["ones", "deterministic"] and s.loc["zeros", "deterministic"]
    assert not s.loc["he", "deterministic"]
    for col in ("acc_ci95_low", "acc_ci95_high", "acc_iqm_ci95_low", "acc_iqm_ci95_high"):
        assert np.isnan(s.loc["ones", col]) and np.isfinite(s.loc["he", col])
    assert s.loc["ones", "acc_mean"] == 1.0


# ---------------------------------------------------------------- rliable: IQM, probability of improvement


def test_iqm_hand_values():
    assert metrics.iqm([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0]) == 4.5  # mean of 3..6
    assert metrics.iqm([5.0, 1.0, 9.0, 2.0, 100.0]) == pytest.approx(
        (2 + 5 + 9) / 3
    )  # cuts 1 each end
    assert metrics.iqm([[1.0, 10.0], [2.0, 20.0]]) == pytest.approx(
        (2 + 10) / 2
    )  # pooled: 1 2 10 20
    assert metrics.iqm([0.5, np.nan, 0.7]) == pytest.approx(0.6)


def test_iqm_ci_is_a_stratified_bootstrap():
    # Two tasks whose runs are constant within the task: every stratified resample keeps 3 runs of each task,
    # so the IQM never changes (an unstratified bootstrap over all 6 values would).
    ci = metrics.iqm_ci([[0.0, 10.0], [0.0, 10.0], [0.0, 10.0]])
    assert (ci.mean, ci.low, ci.high) == (5.0, 5.0, 5.0)
    # One task: the ordinary percentile bootstrap of the IQM, as scipy computes it (Monte Carlo tolerance).
    x = np.random.default_rng(2).normal(0.97, 0.01, 12)
    ci = metrics.iqm_ci(x, n_boot=20_000)
    ref = stats.bootstrap(
        (x,),
        lambda v, axis: stats.trim_mean(v, 0.25, axis=axis),
        n_resamples=20_000,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    assert ci.low == pytest.approx(ref.low, abs=5e-4) and ci.high == pytest.approx(
        ref.high, abs=5e-4
    )
    assert ci == metrics.iqm_ci(x, n_boot=20_000)  # deterministic
    assert np.isnan(metrics.iqm_ci([0.5]).low)


def test_probability_of_improvement_hand_values_and_interval():
    # Pairs of (x, y): 3>1, 3>2, 3=3 (half), 1=1 (half), 1<2, 1<3 -> (1 + 1 + .5 + .5) / 6
    assert metrics.probability_of_improvement([3.0, 1.0], [1.0, 2.0, 3.0]).mean == 0.5
    # Paired: still all pairs (rliable's definition); pairing only resamples matched runs together
    r = metrics.probability_of_improvement([3.0, 1.0, 2.0], [1.0, 2.0, 2.0], paired=True)
    assert r.mean == pytest.approx(5.5 / 9)
    assert metrics.matched_win_rate([3.0, 1.0, 2.0], [1.0, 2.0, 2.0]) == pytest.approx(0.5)
    # Tasks are averaged: task 1 X always wins (1), task 2 never (0).
    two = metrics.probability_of_improvement([[2.0, 0.0], [3.0, 0.0]], [[1.0, 5.0], [0.0, 6.0]])
    assert two.mean == 0.5 and (two.low, two.high) == (0.5, 0.5)  # no resample changes who wins
    # Equals the Mann-Whitney U statistic / (n m).
    rng = np.random.default_rng(4)
    x, y = rng.normal(0.3, 1, 9), rng.normal(0, 1, 7)
    ci = metrics.probability_of_improvement(x, y)
    u = stats.mannwhitneyu(x, y).statistic
    assert ci.mean == pytest.approx(u / 63)
    assert ci.low < ci.mean < ci.high
    # The interval covers the true P(X > Y) = Phi(0.3 / sqrt(2)) in about 95% of repetitions.
    truth = stats.norm.cdf(0.3 / np.sqrt(2))
    cover = [
        (c.low <= truth <= c.high)
        for c in (
            metrics.probability_of_improvement(
                rng.normal(0.3, 1, 20), rng.normal(0, 1, 20), n_boot=1000, seed=i
            )
            for i in range(200)
        )
    ]
    assert np.mean(cover) > 0.88


# ---------------------------------------------------------------- pairing across sweeps (hyperparameter values)


def test_runs_that_differ_only_in_a_hyperparameter_are_paired_by_seed():
    from types import SimpleNamespace

    from jinit import sweep

    base = sweep.SweepConfig(schemes=("he_normal",), seeds=3, hidden=(8,), epochs=1)
    lr = dataclasses.replace(base, learning_rate=3e-3, activation="tanh", epochs=2)
    assert metrics.runs_share_seeds(base, lr) and metrics.runs_share_seeds(base, lr.to_dict())
    for other in (
        dataclasses.replace(base, seed=1),
        dataclasses.replace(base, batch_size=16),
        dataclasses.replace(base, vary="both"),
        dataclasses.replace(base, hidden=(16,)),
    ):
        assert not metrics.runs_share_seeds(base, other)
    # The premise: another learning rate and activation leave each seed's initial parameters unchanged.
    p0, p1 = sweep.initial_params(base), sweep.initial_params(lr)
    assert metrics.param_sha256(p0) == metrics.param_sha256(p1)
    assert metrics.param_sha256(p0) != metrics.param_sha256(
        sweep.initial_params(dataclasses.replace(base, seed=1))
    )

    a = np.array([0.90, 0.93, 0.91])
    b = a - 0.01 + np.array([0.001, -0.001, 0.0])
    run_a = SimpleNamespace(config=base, models=_two_scheme_models(a, a))
    run_b = SimpleNamespace(config=lr, models=_two_scheme_models(b, b))
    r = metrics.compare_runs(run_a, run_b, "A")
    assert r.test == "paired t-test" and r.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    # A different scheme under vary="init" has another init key: nothing is shared, so Welch.
    r = metrics.compare_runs(run_a, run_b, "A", "B")
    assert r.test == "Welch's t-test"
    # Another root seed: nothing shared either.
    run_c = SimpleNamespace(config=dataclasses.replace(base, seed=7), models=run_b.models)
    assert metrics.compare_runs(run_a, run_c, "A").test == "Welch's t-test"


# --------------------------------------------------------------------------------------------- lr sensitivity


def test_lr_sensitivity_matches_hand_computed_values():
    # row 1: capped at 2.5 -> [2.5, 1, 2, 2.5 (NaN: diverged)], best 1 -> mean of [1.5, 0, 1, 1.5] = 1.0
    # row 2: capped at 2.0 -> [0.5, 2.0 (inf), 0.7, 0.6], best 0.5 -> mean of [0, 1.5, 0.2, 0.1] = 0.45
    losses = [[3.0, 1.0, 2.0, np.nan], [0.5, np.inf, 0.7, 0.6]]
    np.testing.assert_allclose(metrics.lr_sensitivity(losses, [2.5, 2.0]), [1.0, 0.45], rtol=1e-12)
    assert metrics.lr_sensitivity([3.0, 1.0, 2.0, np.nan], 2.5) == pytest.approx(1.0, abs=1e-12)
    # one initial loss per entry (as a sweep's curves give it), all equal: the same numbers
    np.testing.assert_allclose(
        metrics.lr_sensitivity(losses, [[2.5] * 4, [2.0] * 4]), [1.0, 0.45], rtol=1e-12
    )
    assert metrics.lr_sensitivity([1.0, 1.0, 1.0], 3.0) == 0.0  # flat: not sensitive at all
    assert np.isnan(metrics.lr_sensitivity([np.nan, np.inf], 2.0))  # every learning rate diverged
    assert metrics.lr_sensitivity([3.0, 4.0], 2.5) == pytest.approx(
        -0.5
    )  # nothing learned: negative
    with pytest.raises(ValueError, match="at least 2 learning rates"):
        metrics.lr_sensitivity([1.0], 2.0)
    with pytest.raises(ValueError, match="initial_loss must be finite"):
        metrics.lr_sensitivity([1.0, 2.0], np.nan)
    with pytest.raises(ValueError, match="does not fit final_losses"):
        metrics.lr_sensitivity([[1.0, 2.0], [1.0, 2.0]], [1.0, 2.0, 3.0])


def _lr_curves():
    """A sweep's curves: 2 schemes x 3 learning rates x 2 seeds, the point at init (step 0) and the last one."""
    rows = []
    final = {  # (scheme, seed) -> final test loss at lr 1e-3, 1e-2, 1e-1
        ("a", 0): [1.0, 0.5, np.nan],
        ("a", 1): [1.2, 0.4, 3.0],
        ("b", 0): [0.9, 0.8, 0.7],
        ("b", 1): [1.1, 0.9, 0.6],
    }
    for (scheme, seed), vals in final.items():
        for lr, v in zip((1e-3, 1e-2, 1e-1), vals, strict=True):
            diverged = not np.isfinite(v)
            rows.append((scheme, lr, seed, 0, 2.0, False))
            rows.append((scheme, lr, seed, 10, v, diverged))
    return pd.DataFrame(
        rows, columns=["scheme", "learning_rate", "seed", "step", "test_loss", "diverged"]
    )


def test_lr_sensitivity_summary_per_group_with_an_interval_over_seeds():
    out = metrics.lr_sensitivity_summary(_lr_curves()).set_index("scheme")
    # a, seed 0: capped [1.0, 0.5, 2.0], best 0.5 -> mean [0.5, 0, 1.5] = 2/3; seed 1: [1.2, 0.4, 2.0] -> 0.8
    # b, seed 0: [0.9, 0.8, 0.7] -> mean [0.2, 0.1, 0] = 0.1; seed 1: [1.1, 0.9, 0.6] -> (0.5 + 0.3) / 3
    a, b = (2 / 3 + 0.8) / 2, (0.1 + 0.8 / 3) / 2
    assert out.loc["a", "lr_sensitivity"] == pytest.approx(a)
    assert out.loc["b", "lr_sensitivity"] == pytest.approx(b)
    half = stats.t.ppf(0.975, 1) * np.std([2 / 3, 0.8], ddof=1) / np.sqrt(2)
    assert out.loc["a", "ci_low"] == pytest.approx(a - half)
    assert out.loc["a", ["n", "n_lrs"]].tolist() == [2, 3]
    assert out.loc["a", "initial_loss"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="learning-rate axis"):
        metrics.lr_sensitivity_summary(_lr_curves().drop(columns="learning_rate"))
    with pytest.raises(ValueError, match="loss must be an evaluated loss column"):
        metrics.lr_sensitivity_summary(_lr_curves(), loss="train_loss")

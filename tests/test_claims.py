"""Claims that match the evidence (issue 23): verdicts about schemes only from replicated init draws, rliable's
probability of improvement in every design, intervals that cannot have zero width for a random scheme, and a
verdict printed beside the p-value that decides it."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from jinit import metrics, report, results


def _run(accs: dict[str, list[float]], n_test: int = 360, shas: dict[str, list[str]] | None = None):
    """Models, predictions and labels of a run whose models have exactly the given test accuracies."""
    y = np.arange(n_test) % 10
    rows, preds = [], []
    for scheme, values in accs.items():
        for seed, acc in enumerate(values):
            right = int(round(acc * n_test))
            p = y.copy()
            p[right:] = (y[right:] + 1) % 10  # wrong on the last n_test - right examples
            p[:right] = y[:right]
            preds.append(p)
            sha = shas[scheme][seed] if shas else f"{scheme}-{seed}"
            rows.append(
                dict(
                    scheme=scheme,
                    seed=seed,
                    final_accuracy=right / n_test,
                    diverged=False,
                    param_sha256=sha,
                )
            )
    return pd.DataFrame(rows), np.array(preds), y


def _result(accs, vary, **kw) -> results.SweepResult:
    models, preds, y = _run(accs, **kw)
    config = SimpleNamespace(vary=vary, target_accuracy=None, seeds=len(next(iter(accs.values()))))
    return results.SweepResult(config, pd.DataFrame(), models, preds, y, num_classes=10)


# ------------------------------------------------------------------ 1. the replication rule


def test_vary_data_compares_init_draws_not_schemes():
    """Under vary="data" every seed of a scheme starts from the same weights: one init draw per scheme. The
    summary, the result and the printed report say the comparison is one of init draws, and why."""
    accs = {"a": [0.95, 0.96, 0.955, 0.96, 0.95], "b": [0.90, 0.91, 0.905, 0.9, 0.91]}
    data = _result(accs, "data")
    assert data.replication.verdicts_about == "init draw"
    table = data.summary()
    assert set(table["verdict_about"]) == {"init draw"}
    assert not table["in_best_set"].iloc[1]  # the draw of b is below the draw of a ...
    text = report.summary(data)
    assert "best init draw" in text and "best scheme" not in text  # ... which is no verdict about b
    assert "each scheme is ONE init draw" in text and "not schemes" in text
    cmp = report.comparison(data, "a", "b")
    assert "not schemes" in cmp
    # vary="init" and "both" replicate the init draw: verdicts about schemes
    for vary in ("init", "both"):
        r = _result(accs, vary)
        assert set(r.summary()["verdict_about"]) == {"scheme"}
        assert "best scheme" in report.summary(r) and "best init draw" not in report.summary(r)
    assert metrics.replication("both").paired and not metrics.replication("init").paired
    with pytest.raises(ValueError, match="unknown vary 'seed'; valid: init, data, both"):
        metrics.replication("seed")


def test_the_report_says_what_an_axis_replicates():
    r = _result({"a": [0.9, 0.95, 0.92, 0.93], "b": [0.8, 0.85, 0.82, 0.83]}, "init")
    assert "axes (" not in report.summary(r)
    r.models["learning_rate"] = [1e-3, 1e-3, 1e-2, 1e-2] * 2
    r.models["seed"] = [0, 1, 0, 1] * 2
    text = report.summary(r)
    assert "axes (learning_rate): the values of one scheme share each seed's init draw" in text


def test_summarize_without_vary_keeps_scheme_verdicts():
    models, preds, y = _run({"a": [0.9, 0.95], "b": [0.8, 0.85]})
    s = metrics.summarize(pd.DataFrame(), models, preds, y, num_classes=10, paired=True)
    assert set(s["verdict_about"]) == {"scheme"} and s["test_vs_best"].iloc[1] == "paired t-test"
    s = metrics.summarize(pd.DataFrame(), models, preds, y, num_classes=10, vary="data")
    assert set(s["verdict_about"]) == {"init draw"} and s["test_vs_best"].iloc[1] == "paired t-test"


# ------------------------------------------------------------------ 5. rliable's probability of improvement


def _rliable_poi(x, y) -> float:
    """rliable.metrics.probability_of_improvement for one task (its code: the one-sided Mann-Whitney U
    statistic over n_x n_y, 0.5 for identical score vectors)."""
    if np.array_equal(x, y):
        return 0.5
    return stats.mannwhitneyu(x, y, alternative="greater").statistic / (len(x) * len(y))


def test_probability_of_improvement_is_rliables_under_every_vary():
    """Matched seeds and all pairs differ (here 0.375 and 0.469); every design reports rliable's all-pairs value
    as P(>best), and the matched-seed rate only under its own name."""
    best = np.array([0.90, 0.95, 0.93, 0.91, 0.96, 0.92, 0.94, 0.97])
    other = np.array([0.91, 0.94, 0.92, 0.92, 0.95, 0.93, 0.93, 0.96])
    expected = _rliable_poi(other, best)
    matched = metrics.matched_win_rate(other, best)
    assert matched == pytest.approx(3 / 8) and expected != pytest.approx(matched, abs=0.05)
    for vary in ("init", "data", "both"):
        table = _result({"best": list(best), "other": list(other)}, vary).summary()
        row = table.set_index("scheme").loc["other"]
        assert row["poi_vs_best"] == pytest.approx(expected, abs=1e-12), vary
        r = metrics.compare_schemes(
            _run({"best": list(best), "other": list(other)})[0], "other", "best", vary=vary
        )
        assert r.p_a_gt_b == pytest.approx(expected, abs=1e-12)
        assert np.isnan(r.matched_win_rate) if vary == "init" else r.matched_win_rate == matched
    ci = metrics.probability_of_improvement(other, best, paired=True)
    assert ci.mean == pytest.approx(expected) and ci.low < ci.mean < ci.high


# ------------------------------------------------------------------ 7. no zero-width interval for a random scheme


def test_random_scheme_with_equal_accuracies_gets_no_zero_width_interval():
    """orthogonal's 5 seeds all at 95.56% of 360 examples, 5 different models: the 95% CI is not [95.56, 95.56]
    but the t-interval with one test example (1/360) as its standard deviation; a deterministic scheme (5
    bit-identical models) stays 'deterministic' with no interval."""
    same = [344 / 360] * 5
    r = _result(
        {"he": [0.96, 0.97, 0.965, 0.955, 0.97], "orthogonal": same, "zeros": [0.1] * 5},
        "init",
        shas={
            "he": ["h0", "h1", "h2", "h3", "h4"],
            "orthogonal": ["o0", "o1", "o2", "o3", "o4"],
            "zeros": ["z"] * 5,
        },
    )
    s = r.summary().set_index("scheme")
    o = s.loc["orthogonal"]
    half = stats.t.ppf(0.975, 4) * (1 / 360) / np.sqrt(5)
    assert o["ci_floored"] and not o["deterministic"]
    assert o["acc_resolution"] == pytest.approx(1 / 360)
    assert (o["acc_ci95_low"], o["acc_ci95_high"]) == pytest.approx(
        (same[0] - half, same[0] + half)
    )
    assert np.isnan(o["acc_iqm_ci95_low"])  # the bootstrap has nothing to resample: not estimable
    # as measured; printed as below one example
    assert o["acc_std"] == pytest.approx(0.0, abs=1e-12)
    assert o["mdd_vs_best"] > 1 / 360  # not the 0.0 that two spreads of zero would claim
    z = s.loc["zeros"]
    assert z["deterministic"] and not z["ci_floored"] and np.isnan(z["acc_ci95_low"])
    assert not s.loc["he", "ci_floored"]
    text = report.summary(r)
    line = next(ln for ln in text.splitlines() if " orthogonal " in ln)
    assert "[95.21, 95.90] floor" in line and "<0.28" in line
    assert "95.56, 95.56" not in text


def test_mean_ci_resolution_floor():
    ci = metrics.mean_ci([0.5] * 4, resolution=0.01)
    assert ci.high - ci.low == pytest.approx(2 * stats.t.ppf(0.975, 3) * 0.01 / 2)
    assert metrics.mean_ci([0.5, 0.6, 0.7], resolution=0.01) == metrics.mean_ci([0.5, 0.6, 0.7])
    assert np.isnan(metrics.mean_ci([0.5] * 4, method="bootstrap", resolution=0.01).low)
    assert metrics.mean_ci([0.5] * 4).low == 0.5  # no resolution: a continuous metric, no floor
    assert metrics.min_detectable_difference([0.5] * 4, [0.4] * 4) == 0.0
    assert metrics.min_detectable_difference([0.5] * 4, [0.4] * 4, resolution=0.01) > 0.01
    with pytest.raises(ValueError, match="resolution must be a positive number or None, got 0"):
        metrics.mean_ci([0.5, 0.6], resolution=0)


# ------------------------------------------------------------------ 8. the verdict beside the p that decides it


def test_cli_prints_the_one_sided_p_of_the_verdict():
    """Two schemes whose Welch two-sided p is above 0.05 while the one-sided p of the best set is below: the row
    that says 'worse' must show a p below 0.05 and say it is one-sided."""
    best = [0.96, 0.93, 0.95, 0.92, 0.97, 0.94]
    other = [0.93, 0.92, 0.94, 0.90, 0.95, 0.91]
    r = _result({"best": best, "other": other}, "init")
    table = r.summary()
    row = table.set_index("scheme").loc["other"]
    # the case the audit found (0.073 vs worse)
    assert row["p_vs_best"] > 0.05 and row["p_best_set"] < 0.05
    text = report.versus_best_table(table)
    header, _, line = text.splitlines()[:3]
    assert "1-sided" in header
    assert "worse" in line
    printed = [float(v) for v in re.findall(r"\b0\.\d+\b", line)]
    assert printed[0] == pytest.approx(row["p_best_set"], rel=0.05) and printed[0] < 0.05
    assert f"{row['p_vs_best']:.2g}" not in line

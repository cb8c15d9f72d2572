"""Statistics over seeds and between schemes: is scheme A really better than B, or is that the seed?

Everything here works on plain numpy / pandas values that a sweep writes (final accuracies, per-model test
predictions, tidy learning curves), so it runs the same on a finished run folder as inside the sweep.

Building blocks (each usable on its own):

* :func:`mean_ci` -- mean and confidence interval over seeds (Student t, or percentile bootstrap), never of zero
  width for a discrete metric given its ``resolution``;
* :func:`iqm`, :func:`iqm_ci` -- interquartile mean with a stratified bootstrap interval (rliable's convention);
* :func:`churn` -- mean pairwise disagreement between models' test predictions;
* :func:`noise_floor` -- the accuracy standard deviation that independent per-example errors alone produce
  (estimated without the plug-in bias);
* :func:`failures` -- diverged, collapsed onto one class, or no better than always predicting the majority class;
* :func:`steps_to_target` -- first evaluation step at which a curve reaches a target;
* :func:`auc` -- (normalized) area under a curve, e.g. the training loss;
* :func:`compare` -- difference of means between two schemes with CI, p-value (Welch's t-test; the paired t-test
  only when asked), rank-test p-value and P(A > B); :func:`paired_seeds` says when a sweep's seeds are paired
  (``vary="data"``/``"both"``, never under the default ``vary="init"``), :func:`runs_share_seeds` when two sweeps'
  seeds are (they differ only in hyperparameters);
* :func:`replication` -- what a sweep's seeds replicate, and so whether its comparisons are about schemes
  (``vary="init"``/``"both"``) or about one init draw per scheme (``vary="data"``);
* :func:`probability_of_improvement` -- P(A > B) over all pairs of runs (rliable's definition, in every design)
  with a stratified bootstrap interval; :func:`matched_win_rate` -- the fraction of matched seeds A wins;
* :func:`best_set` -- the schemes not distinguishable from the best: a confidence set that accounts for picking the
  best from the same data and for the number of comparisons;
* :func:`min_detectable_difference`, :func:`seeds_needed` -- what a comparison could detect at 80% power, and
  the seeds needed to detect a given difference;
* :func:`param_sha256` -- a bit-exact fingerprint of a parameter tree;
* :func:`lr_sensitivity`, :func:`lr_sensitivity_summary` -- how much worse than its best a run gets over a
  learning-rate grid (Wortsman et al. 2023), per seed and per model group of a sweep;
* :func:`summarize` -- one row per scheme with all of the above (``summary.csv``); its columns are
  documented in :data:`SUMMARY_COLUMNS`.

Example:
    >>> import numpy as np
    >>> from jinit import metrics
    >>> metrics.churn(np.array([[0, 1, 2, 3], [0, 1, 2, 0]]))
    0.25
    >>> r = metrics.compare([0.97, 0.96, 0.98], [0.91, 0.90, 0.92])
    >>> round(r.diff, 2), r.p_a_gt_b, r.test
    (0.06, 1.0, "Welch's t-test")

References:
    Jiang, Nagarajan, Baek, Kolter. Assessing generalization of SGD via disagreement. ICLR 2022.
    Jordan. On the variance of neural network training with respect to test sets and distributions.
    ICLR 2024.
    Bouthillier et al. Accounting for variance in machine learning benchmarks. MLSys 2021.
    Agarwal, Schwarzer, Castro, Courville, Bellemare. Deep reinforcement learning at the edge of the statistical
    precipice. NeurIPS 2021.
    Hsu. Multiple comparisons: theory and methods. Chapman & Hall, 1996.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "CI",
    "Comparison",
    "SUMMARY_COLUMNS",
    "auc",
    "churn",
    "compare",
    "compare_schemes",
    "compare_runs",
    "matched_win_rate",
    "HYPERPARAMETER_FIELDS",
    "runs_share_seeds",
    "scheme_accuracies",
    "mean_ci",
    "noise_floor",
    "param_sha256",
    "steps_to_target",
    "summarize",
    "FAILURE_COLUMNS",
    "best_set",
    "failures",
    "iqm",
    "iqm_ci",
    "lr_sensitivity",
    "lr_sensitivity_summary",
    "min_detectable_difference",
    "paired_seeds",
    "probability_of_improvement",
    "Replication",
    "replication",
    "seeds_needed",
]

_CI_METHODS = ("t", "bootstrap")

#: The columns of :func:`summarize` (and of ``summary.csv``), in order, with their meaning.
SUMMARY_COLUMNS: dict[str, str] = {
    "scheme": "initialization scheme name",
    "n": "number of models (seeds) of the scheme, diverged ones included",
    "deterministic": "True when every non-diverged seed of the scheme ended with bit-identical parameters "
    "(param_sha256): the seed does not reach the model (e.g. zeros / ones / identity under vary='init'), so "
    "there is one model, not n; its accuracy still depends on the rounding path (device, layout), and the "
    "confidence-interval columns are NaN instead of a false zero-width interval",
    "acc_mean": "mean final test accuracy (fraction in [0, 1]) over the non-diverged models",
    "acc_std": "sample standard deviation (ddof=1) of the final test accuracy (NaN when fewer than 2)",
    "acc_median": "median final test accuracy",
    "acc_ci95_low": "lower end of the 95% confidence interval of acc_mean: Student t by default, percentile "
    "bootstrap with ci_method='bootstrap' (NaN when n < 2 or deterministic; never of zero width for a random "
    "scheme: see ci_floored)",
    "acc_ci95_high": "upper end of that 95% confidence interval of acc_mean (NaN when n < 2 or deterministic)",
    "acc_iqm": "interquartile mean of the final test accuracy (mean of the middle 50% of seeds; Agarwal et al. "
    "2021)",
    "acc_iqm_ci95_low": "lower end of the 95% percentile-bootstrap interval of acc_iqm (NaN when n < 2 or "
    "deterministic)",
    "acc_iqm_ci95_high": "upper end of that interval",
    "acc_resolution": "the step of the metric: 1 / n_test for an accuracy (one test example); NaN for a "
    "continuous metric",
    "ci_floored": "True when the seeds of a random (not deterministic) scheme spread less than acc_resolution "
    "(e.g. 5 different models with the same test accuracy): the t-interval then takes one step as the standard "
    "deviation, and a bootstrap interval of zero width is NaN (not estimable at n seeds), since equal "
    "discrete values do not show that the scheme has no spread",
    "acc_min": "lowest final test accuracy",
    "acc_max": "highest final test accuracy",
    "diverged_count": "number of models whose training diverged (non-finite loss); excluded from acc_*",
    "collapsed_count": "number of non-diverged models that predict one class for every test example",
    "not_above_majority_count": "number of non-diverged models whose accuracy is not significantly above "
    "always predicting the majority test class (one-sided binomial test, p >= 0.01)",
    "failure_rate": "fraction of the n models that failed: diverged, collapsed onto one class, or not above "
    "the majority class (see metrics.failures)",
    "steps_to_target_median": "median optimizer step at which test accuracy first reached "
    "target_accuracy, over the models that reached it (NaN if none or no target)",
    "steps_to_target_iqr": "interquartile range of those steps",
    "target_never_fraction": "fraction of the n models that never reached target_accuracy",
    "epochs_to_target_median": "median epoch at which test accuracy first reached target_accuracy",
    "train_loss_auc": "mean over non-diverged models of the area under the training-loss curve divided "
    "by the step span (the time-averaged training loss; lower is faster convergence)",
    "churn": "mean pairwise disagreement: fraction of test examples on which two of the scheme's "
    "non-diverged models predict different classes",
    "churn_error_ratio": "churn / mean test error; about 1 when seeds differ only in randomness "
    "(generalization disagreement equality, Jiang et al. 2022)",
    "noise_floor": "std of accuracy that independent per-example errors alone would give, estimated without "
    "bias: sqrt(m / (m - 1) * sum_i q_i (1 - q_i)) / n_test, q_i = fraction of the m models right on example i "
    "(Jordan 2024); NaN for fewer than 2 models",
    "noise_floor_ratio": "acc_std / noise_floor; near 1 means seed variance is test-set sampling noise",
    "test_vs_best": "the test of this scheme against the best (highest acc_mean) scheme: Welch's t-test when "
    "seeds are not paired (vary='init'), the paired t-test on the seeds both have when they are "
    "(vary='data'/'both'); empty for the best and where no test is possible",
    "p_vs_best": "two-sided p-value of that test, not adjusted for picking the best or for multiplicity "
    "(use in_best_set for the verdict); NaN for the best",
    "p_rank_vs_best": "two-sided p-value of the rank test against the best: Mann-Whitney U (unpaired) or "
    "Wilcoxon signed-rank (paired)",
    "poi_vs_best": "probability of improvement P(this scheme's run > the best scheme's run), ties counting "
    "one half, over all pairs of runs in every design (rliable's definition; Agarwal et al. 2021)",
    "poi_ci95_low": "lower end of its 95% stratified-bootstrap interval (2,000 resamples; matched seeds resampled "
    "together when paired)",
    "poi_ci95_high": "upper end of that interval",
    "p_best_set": "one-sided p-value that some other scheme is better, Bonferroni-adjusted over the k - 1 "
    "comparisons (metrics.best_set); in_best_set is p_best_set >= alpha",
    "in_best_set": "True when the row is not distinguishable from the best at this number of seeds: it is "
    "in the 95% confidence set for the best, which accounts for the best being picked from the same "
    "data and for the k - 1 comparisons (not a tie: see mdd_vs_best). A set of schemes when verdict_about is "
    "'scheme'; of init draws when it is 'init draw' (vary='data')",
    "verdict_about": "what the comparisons with the best are about, from what the seeds replicated "
    "(metrics.replication): 'scheme' when the seeds replicate each scheme's init draw (vary='init'/'both'); "
    "'init draw' under vary='data', where every seed of a scheme starts from the same weights, so each scheme "
    "is one init draw and no verdict about the scheme follows",
    "mdd_vs_best": "minimum detectable difference: the smallest accuracy gap below the best that the test "
    "behind in_best_set would detect with 80% power, given the two schemes' observed spreads (each at least "
    "acc_resolution) and seeds",
    "seeds_to_detect": "seeds per scheme at which that test would detect a gap of detect_difference (default "
    "1 point) to the best with 80% power, given the observed spreads (NaN when there is no spread)",
}


class CI(NamedTuple):
    """A mean with a confidence interval."""

    mean: float
    low: float
    high: float


class Comparison(NamedTuple):
    """The result of :func:`compare` (scheme A minus scheme B).

    Attributes:
      diff: mean(A) - mean(B) (mean of the per-seed differences when paired).
      ci_low: lower end of the confidence interval of ``diff``.
      ci_high: upper end of the confidence interval of ``diff``.
      p_value: two-sided p-value (paired t-test when paired, Welch's t-test otherwise).
      p_a_gt_b: the probability of improvement P(A > B) as rliable defines it: the fraction of all ``n_a x n_b``
        pairs of runs with A > B, ties counting one half (the Mann-Whitney U statistic over ``n_a n_b``), in every
        design, paired or not.
      paired: whether the seeds were paired.
      n_a: number of A values used.
      n_b: number of B values used.
      test: the test behind ``p_value`` and the interval: ``"Welch's t-test"`` or ``"paired t-test"``.
      p_rank: two-sided p-value of the rank test (Mann-Whitney U unpaired, Wilcoxon signed-rank paired), which
        does not assume normal accuracies (NaN when it cannot be computed).
      rank_test: the name of that rank test.
      matched_win_rate: paired only: the fraction of matched seeds with A > B, ties counting one half
        (:func:`matched_win_rate`; NaN when unpaired). Not rliable's probability of improvement: it pairs runs
        that share a seed's randomness and ignores the other pairs.
    """

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    p_a_gt_b: float
    paired: bool
    n_a: int
    n_b: int
    test: str = ""
    p_rank: float = float("nan")
    rank_test: str = ""
    matched_win_rate: float = float("nan")


def _as_1d(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    return a


def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return level


def mean_ci(
    x: Sequence[float] | np.ndarray,
    level: float = 0.95,
    method: str = "t",
    *,
    n_boot: int = 10_000,
    seed: int = 0,
    resolution: float | None = None,
) -> CI:
    """Mean of ``x`` and a confidence interval of that mean.

    With ``resolution`` (the step of a discrete metric: ``1 / n_test`` for an accuracy), the interval never has
    zero width for values that come from different models: the t-interval takes the standard deviation as at
    least one step, and a bootstrap interval of zero width is NaN (not estimable at this number of values). ``n`` runs whose accuracies happen to be equal do not show that a scheme has no spread: a true
    standard deviation of one step gives ``n = 5`` equal values with probability ~1% (half a step: ~10%), so
    one step is a conservative floor.

    Args:
      x: one value per seed (NaNs are dropped).
      level: confidence level in (0, 1).
      method: ``"t"`` for the Student-t interval ``mean +- t_{n-1} * s / sqrt(n)``, or ``"bootstrap"`` for
        the percentile bootstrap of the mean (``n_boot`` resamples drawn with ``numpy.random.default_rng(seed)``).
      n_boot: number of bootstrap resamples.
      seed: seed of the bootstrap resampling (the result is deterministic given it).
      resolution: the metric's step (see above); None (default) for a continuous metric: no floor.

    Returns:
      ``CI(mean, low, high)``; the interval is NaN when fewer than 2 values remain, the mean is NaN when none do.

    Raises:
      ValueError: for an unknown method, a level outside (0, 1) or a non-1-D input.

    Example:
      >>> mean_ci([1.0, 2.0, 3.0]).low  # 2 - t_{0.975, 2} * 1 / sqrt(3)
      -0.48413771175033027
    """
    if method not in _CI_METHODS:
        raise ValueError(f"unknown CI method {method!r}; valid: {', '.join(_CI_METHODS)}")
    level = _check_level(level)
    a = _as_1d(x, "x")
    a = a[~np.isnan(a)]
    n = a.size
    if n == 0:
        return CI(float("nan"), float("nan"), float("nan"))
    m = float(a.mean())
    if n < 2:
        return CI(m, float("nan"), float("nan"))
    floor = _check_resolution(resolution)
    if method == "t":
        sd = max(float(a.std(ddof=1)), floor)
        half = float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n))
        return CI(m, m - half, m + half)
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, n, size=(int(n_boot), n))].mean(axis=1)
    low, high = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    if floor and high == low:
        return CI(m, float("nan"), float("nan"))  # not estimable: no resample differs
    return CI(m, float(low), float(high))


def _check_resolution(resolution: float | None) -> float:
    """The standard-deviation floor of a metric with this step: 0.0 for None (a continuous metric)."""
    if resolution is None:
        return 0.0
    r = float(resolution)
    if not (np.isfinite(r) and r > 0):
        raise ValueError(f"resolution must be a positive number or None, got {resolution!r}")
    return r


def churn(predictions: np.ndarray) -> float:
    """Mean pairwise disagreement between models' predictions.

    For every unordered pair of models, the fraction of test examples on which they predict different
    classes; averaged over all pairs. Computed exactly from per-example class counts, in
    O(models x examples), not by looping over pairs.

    Args:
      predictions: integer class predictions, shape ``[models, examples]``.

    Returns:
      The mean disagreement in [0, 1]; NaN with fewer than 2 models.

    Example:
      >>> churn(np.array([[0, 1, 2], [0, 1, 1], [0, 0, 1]]))  # pairs disagree on 1/3, 2/3, 1/3
      0.4444444444444444
    """
    p = np.asarray(predictions)
    if p.ndim != 2:
        raise ValueError(f"predictions must have shape [models, examples], got {p.shape}")
    m, n = p.shape
    if m < 2 or n == 0:
        return float("nan")
    # Agreeing pairs on example i = sum_c C(count_ic, 2); encode (example, class) to count in one bincount.
    _, inv = np.unique(p, return_inverse=True)
    inv = inv.reshape(p.shape)
    k = int(inv.max()) + 1
    counts = np.bincount((inv + k * np.arange(n)[None, :]).ravel(), minlength=n * k).astype(
        np.float64
    )
    agree_pairs = (counts * (counts - 1) / 2).sum()
    return float(1.0 - agree_pairs / (n * m * (m - 1) / 2))


def noise_floor(correct: np.ndarray) -> float:
    """Test-set noise floor of accuracy (Jordan 2024), estimated without bias.

    If every test example ``i`` were answered correctly independently with probability ``p_i``, the accuracy over
    ``n`` examples would have standard deviation ``sqrt(sum_i p_i (1 - p_i)) / n``. ``p_i`` is estimated by the
    fraction ``q_i`` of the ``m`` models that get example ``i`` right; as ``E[q_i (1 - q_i)] = p_i (1 - p_i) (m - 1)
    / m``, the plug-in estimate is low by a factor ``sqrt((m - 1) / m)`` (-10.6% at 5 models), so the sum is
    multiplied by ``m / (m - 1)`` (the unbiased variance of each example's Bernoulli outcome). An observed
    seed-to-seed std near this value means the variance is (mostly) finite-test-set noise, not a difference in
    what the models learned.

    Args:
      correct: boolean (or 0/1) matrix ``[models, examples]``: whether each model is right on each example.

    Returns:
      The noise floor (a standard deviation of accuracy as a fraction); NaN for fewer than 2 models or no example.

    Example:
      >>> noise_floor(np.array([[1, 1, 0, 0], [1, 0, 1, 0]]))  # q = 1, .5, .5, 0; m / (m - 1) = 2
      0.25
    """
    c = np.asarray(correct, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"correct must have shape [models, examples], got {c.shape}")
    m, n = c.shape
    if m < 2 or n == 0:
        return float("nan")
    q = c.mean(axis=0)
    return float(np.sqrt(np.sum(q * (1.0 - q)) * m / (m - 1)) / n)


def steps_to_target(acc_curve: np.ndarray, steps: np.ndarray, target: float) -> float | np.ndarray:
    """The first step at which an accuracy curve reaches ``target`` (``acc >= target``).

    Args:
      acc_curve: accuracies at evaluation points, shape ``[evals]`` or ``[models, evals]`` (NaN never counts as
        reaching the target).
      steps: the step (or epoch) of each evaluation point, shape ``[evals]``, in increasing order.
      target: the accuracy to reach (same units as ``acc_curve``).

    Returns:
      The step of the first evaluation at or above target, ``inf`` when never reached; a float for a 1-D
      curve, an array of shape ``[models]`` for a 2-D one.

    Example:
      >>> steps_to_target(np.array([0.2, 0.8, 0.95, 0.9]), np.array([0, 100, 200, 300]), 0.9)
      200.0
    """
    a = np.asarray(acc_curve, dtype=np.float64)
    s = np.asarray(steps, dtype=np.float64)
    if a.ndim not in (1, 2) or s.ndim != 1 or a.shape[-1] != s.shape[0]:
        raise ValueError(
            f"acc_curve must be [evals] or [models, evals] matching steps [evals]; got {a.shape}, {s.shape}"
        )
    hit = np.nan_to_num(a, nan=-np.inf) >= float(target)
    first = np.argmax(hit, axis=-1)
    out = np.where(hit.any(axis=-1), s[first] if s.size else np.inf, np.inf)
    return float(out) if a.ndim == 1 else out.astype(np.float64)


def auc(values: np.ndarray, x: np.ndarray | None = None, *, normalize: bool = True) -> float:
    """Area under a curve by the trapezoid rule.

    Args:
      values: curve values, shape ``[points]`` (e.g. the training loss at each evaluation).
      x: positions of the points (e.g. steps), increasing; ``0, 1, 2, ...`` when omitted.
      normalize: divide by the span ``x[-1] - x[0]``, giving the time-averaged value, so that runs of
        different lengths compare (a single point returns its value).

    Returns:
      The area (NaN if any value is NaN, e.g. a diverged run).

    Example:
      >>> auc(np.array([2.0, 1.0, 0.0]), np.array([0, 10, 20]))
      1.0
    """
    v = _as_1d(values, "values")
    xs = np.arange(v.size, dtype=np.float64) if x is None else _as_1d(x, "x")
    if xs.shape != v.shape:
        raise ValueError(f"values and x must have the same shape, got {v.shape} and {xs.shape}")
    if v.size == 0:
        return float("nan")
    if v.size == 1:
        return float(v[0]) if normalize else 0.0
    area = float(np.sum((v[1:] + v[:-1]) * np.diff(xs)) / 2.0)
    if not normalize:
        return area
    span = float(xs[-1] - xs[0])
    if span <= 0:
        raise ValueError(f"x must be increasing, got span {span}")
    return area / span


def _p_outperform(a: np.ndarray, b: np.ndarray) -> float:
    """P(A > B) + P(A = B) / 2 over all pairs of runs (rliable's probability of improvement, one task)."""
    gt, eq = a[:, None] > b[None, :], a[:, None] == b[None, :]
    return float(np.mean(gt + 0.5 * eq))


def matched_win_rate(a: Any, b: Any) -> float:
    """The fraction of matched runs on which A beats B, ties counting one half.

    Runs are matched by position (arrays of equal length) or by seed (Series); use it only where run ``i`` of A and
    of B share randomness (a seed's data order under ``vary="data"``/``"both"``, a seed's init across the values of
    a hyperparameter). It is **not** rliable's probability of improvement, which compares all pairs of runs
    (:func:`probability_of_improvement`): with ``n`` seeds it rests on ``n`` pairs instead of ``n^2``, and answers
    "how often does A win on the same seed", not "how likely is a run of A to beat a run of B".

    Args:
      a: values of A (1-D array, or Series indexed by seed).
      b: values of B, likewise (the same length, or the same seeds).

    Returns:
      The rate in [0, 1]; NaN when no run is matched.

    Raises:
      ValueError: for arrays of different lengths or Series with different seeds.

    Example:
      >>> matched_win_rate([3.0, 1.0, 2.0], [1.0, 2.0, 2.0])  # win, loss, tie
      0.5
    """
    xa, xb = _matched(a, b)
    if xa.size == 0:
        return float("nan")
    return float(np.mean((xa > xb) + 0.5 * (xa == xb)))


def _matched(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """A's and B's values on the runs both have (by seed for two Series, by position for arrays), NaN dropped."""
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        a, b = a.dropna(), b.dropna()
        if set(a.index) != set(b.index):
            raise ValueError(
                f"matched runs need the same seeds; only in a: {sorted(set(a.index) - set(b.index))}, "
                f"only in b: {sorted(set(b.index) - set(a.index))}"
            )
        return a.to_numpy(np.float64), b.reindex(a.index).to_numpy(np.float64)
    xa, xb = _as_1d(a, "a"), _as_1d(b, "b")
    if xa.shape != xb.shape:
        raise ValueError(f"matched runs need equal lengths, got {xa.size} and {xb.size}")
    ok = ~(np.isnan(xa) | np.isnan(xb))
    return xa[ok], xb[ok]


def _seeded(x: Any, name: str) -> tuple[np.ndarray, pd.Index | None]:
    if isinstance(x, pd.Series):
        s = x.astype(np.float64).dropna()
        if s.index.has_duplicates:
            raise ValueError(
                f"{name} has duplicate seeds in its index: {list(s.index[s.index.duplicated()])}"
            )
        return s.to_numpy(), s.index
    a = _as_1d(x, name)
    return a[~np.isnan(a)], None


WELCH = "Welch's t-test"
PAIRED_T = "paired t-test"
MANN_WHITNEY = "Mann-Whitney U"
WILCOXON = "Wilcoxon signed-rank"


def paired_seeds(vary: str) -> bool:
    """Whether seed ``s`` of two schemes of one sweep shares randomness, so that comparisons may pair them.

    Under ``vary="init"`` (the default) every model sees the same batches whatever its seed, and scheme A's seed
    3 and scheme B's seed 3 have independent initial parameters: they share nothing that other seeds do not, so
    the seeds are **not** paired (pairing them halves the degrees of freedom and makes verdicts depend on the
    labels). Under ``vary="data"`` / ``"both"`` seed ``s`` fixes the data order (and dropout) of every scheme,
    so the seeds are paired.

    Args:
      vary: the sweep's ``vary``: ``"init"``, ``"data"`` or ``"both"``.

    Returns:
      True for ``"data"`` and ``"both"``, False for ``"init"``.

    Raises:
      ValueError: for another value.
    """
    if vary not in ("init", "data", "both"):
        raise ValueError(f"unknown vary {vary!r}; valid: init, data, both")
    return vary != "init"


class Replication(NamedTuple):
    """What the seeds of a sweep replicate, and so what its comparisons may claim (:func:`replication`).

    Attributes:
      vary: the sweep's ``vary``.
      replicated: what differs between two seeds of one scheme, in words.
      verdicts_about: ``"scheme"`` when each scheme's init draw is replicated; ``"init draw"`` when every seed of
        a scheme starts from the same weights (``vary="data"``): a comparison is then one of those draws.
      paired: whether seed ``s`` of two schemes shares randomness (:func:`paired_seeds`).
      note: one line saying what may be claimed and why.
    """

    vary: str
    replicated: str
    verdicts_about: str
    paired: bool
    note: str


def replication(vary: str) -> Replication:
    """What a sweep's seeds replicate, and so what its comparisons are about.

    The rule: a verdict about a scheme needs replicated draws of that scheme. Under ``vary="init"`` (the default)
    and ``"both"`` each seed draws the scheme's initial weights anew, so comparisons are about schemes. Under
    ``vary="data"`` every seed of a scheme starts from the SAME weights (one init draw per scheme) and only the
    batch order changes: a difference between two schemes is then a difference between two draws, which another
    draw of the same scheme may not repeat (four labels of one distribution, 10 seeds: 5 of 12 such verdicts
    left a scheme out of the "best" set). The comparisons of such a sweep are reported as comparisons of init
    draws, never as verdicts about schemes. The same holds for any axis: the values of a hyperparameter within
    one scheme share each seed's init draw and batches, so they are compared paired, and their verdicts are
    about the values at the replicated randomness.

    Args:
      vary: the sweep's ``vary``: ``"init"``, ``"data"`` or ``"both"``.

    Returns:
      A :class:`Replication`.

    Raises:
      ValueError: for another value.

    Example:
      >>> replication("data").verdicts_about
      'init draw'
    """
    paired = paired_seeds(vary)
    if vary == "init":
        return Replication(
            vary,
            "the init draw (every model sees the same batches)",
            "scheme",
            paired,
            "seeds replicate each scheme's init draw, so the comparisons are about schemes; seed s of two "
            "schemes shares nothing, so they are unpaired",
        )
    if vary == "data":
        return Replication(
            vary,
            "the data order only (every seed of a scheme starts from the same weights)",
            "init draw",
            paired,
            "vary='data': each scheme is ONE init draw and the seeds replicate only the data order, so these "
            "compare init draws, not schemes (another draw of a scheme may rank elsewhere); vary the init "
            "(vary='init' or 'both') for verdicts about schemes",
        )
    return Replication(
        vary,
        "the init draw and the data order",
        "scheme",
        paired,
        "seeds replicate each scheme's init draw and the data order, so the comparisons are about schemes; seed "
        "s fixes the data order of every scheme, so they are paired by seed",
    )


def _rank_p(xa: np.ndarray, xb: np.ndarray, paired: bool) -> float:
    """Two-sided p of Mann-Whitney U (unpaired) or Wilcoxon signed-rank (paired); NaN when undefined."""
    import warnings

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if paired:
                d = xa - xb
                if not np.any(d != 0):
                    return 1.0
                return float(stats.wilcoxon(d).pvalue)
            if np.all(np.concatenate([xa, xb]) == xa[0]):
                return 1.0
            return float(stats.mannwhitneyu(xa, xb, alternative="two-sided").pvalue)
    except ValueError:
        return float("nan")


def compare(
    a: Any, b: Any, *, paired: bool = False, level: float = 0.95, resolution: float | None = None
) -> Comparison:
    """Compares two schemes' per-seed results (e.g. final accuracies): A minus B.

    Unpaired (the default): Welch's t-test (unequal variances), the Welch-Satterthwaite t-interval of the
    difference of means and the Mann-Whitney U test. Paired: the paired t-test and t-interval of the per-seed
    differences, the Wilcoxon signed-rank test, and the matched-seed win rate (:func:`matched_win_rate`). In both,
    ``p_a_gt_b`` is rliable's probability of improvement, over all ``n_a x n_b`` pairs of runs. Pair only when
    seed ``s`` of A and of B really share randomness (see :func:`paired_seeds`): under the sweep's default
    ``vary="init"`` they do not. When the standard error is exactly zero the p-value is 1 for equal means and 0
    otherwise. NaN values (e.g. diverged runs) are dropped. ``Comparison.test`` names the test.

    Args:
      a: values of scheme A: a 1-D array, or a ``pd.Series`` indexed by seed.
      b: values of scheme B, likewise.
      paired: ``True`` pairs by seed (Series) or by position (arrays of equal length); ``False`` (default) never
        pairs.
      level: confidence level of the interval.
      resolution: the metric's step (``1 / n_test`` for an accuracy): each standard deviation (of A and of B, or
        of the paired differences) is taken as at least one step (see :func:`mean_ci`), so that random schemes
        whose runs happen to agree get no zero-width interval and no p of 0. None: no floor.

    Returns:
      A :class:`Comparison`; fields are NaN where there are too few values (fewer than 2 per group).

    Raises:
      ValueError: when ``paired=True`` but the seeds/lengths do not match.

    References:
      Bouthillier et al. Accounting for variance in machine learning benchmarks. MLSys 2021.
      Welch. The generalization of "Student's" problem when several different population variances are
      involved. Biometrika 34 (1947).

    Example:
      >>> import pandas as pd
      >>> r = compare(pd.Series([0.9, 0.8, 0.7]), pd.Series([0.8, 0.7, 0.7]), paired=True)
      >>> r.test, round(r.diff, 3), round(r.p_a_gt_b, 4), r.matched_win_rate
      ('paired t-test', 0.067, 0.7222, 0.8333333333333334)
    """
    level = _check_level(level)
    floor = _check_resolution(resolution)
    xa, ia = _seeded(a, "a")
    xb, ib = _seeded(b, "b")
    paired = bool(paired)
    if paired:
        if ia is not None and ib is not None:
            if set(ia) != set(ib):
                raise ValueError(
                    f"paired comparison needs the same seeds; only in a: {sorted(set(ia) - set(ib))}, "
                    f"only in b: {sorted(set(ib) - set(ia))}"
                )
            xb = pd.Series(xb, index=ib).reindex(ia).to_numpy()
        elif xa.shape != xb.shape:
            raise ValueError(f"paired comparison needs equal lengths, got {xa.size} and {xb.size}")
    na, nb = int(xa.size), int(xb.size)
    nan = float("nan")
    test, rank_test = (PAIRED_T, WILCOXON) if paired else (WELCH, MANN_WHITNEY)
    if na == 0 or nb == 0:
        return Comparison(nan, nan, nan, nan, nan, paired, na, nb, test, nan, rank_test)
    p_gt = _p_outperform(xa, xb)
    p_rank = _rank_p(xa, xb, paired)
    # unpaired: the field's default NaN object, so that equal comparisons compare equal (nan != nan)
    win = matched_win_rate(xa, xb) if paired else Comparison._field_defaults["matched_win_rate"]
    if paired:
        d = xa - xb
        diff = float(d.mean())
        if na < 2:
            return Comparison(diff, nan, nan, nan, p_gt, True, na, nb, test, p_rank, rank_test, win)
        se = float(max(d.std(ddof=1), floor) / np.sqrt(na))
        df = na - 1
    else:
        diff = float(xa.mean() - xb.mean())
        if na < 2 or nb < 2:
            return Comparison(diff, nan, nan, nan, p_gt, False, na, nb, test, p_rank, rank_test)
        va, vb = (max(float(x.var(ddof=1)), floor * floor) for x in (xa, xb))
        se, df = _welch_se_df(va, vb, na, nb)
    # The same t statistic and two-sided p-value as scipy.stats.ttest_rel / ttest_ind(equal_var=False).
    p = float(2 * stats.t.sf(abs(diff) / se, df)) if se > 0 else float(diff == 0)
    half = float(stats.t.ppf(0.5 + level / 2, df) * se)
    return Comparison(
        diff, diff - half, diff + half, p, p_gt, paired, na, nb, test, p_rank, rank_test, win
    )


def _welch_se_df(var_a: float, var_b: float, na: float, nb: float) -> tuple[float, float]:
    va, vb = var_a / na, var_b / nb
    se = float(np.sqrt(va + vb))
    df = se**4 / (va**2 / (na - 1) + vb**2 / (nb - 1)) if se > 0 else na + nb - 2
    return se, float(df)


def scheme_accuracies(models: pd.DataFrame, scheme: Any, *, column: str | None = None) -> pd.Series:
    """The final test accuracies of one scheme's non-diverged models, indexed by seed.

    Args:
      models: one row per model with columns ``scheme, seed, diverged`` and ``final_accuracy`` (or
        ``test_accuracy``), as in a run folder's ``models.csv``.
      scheme: the scheme's name.
      column: the metric's column instead (e.g. ``final_r2`` of a regression sweep; ``result.metric``).

    Returns:
      A float Series indexed by seed.

    Raises:
      ValueError: for a scheme that is not in the table (listing those that are) or missing columns.
    """
    col = _acc_column(models) if column is None else column
    missing = {"scheme", "seed"} - set(models.columns)
    if col is None or col not in models.columns or missing:
        raise ValueError(
            f"models table needs scheme, seed and {col or 'final_accuracy'} columns; has {list(models.columns)}"
        )
    known = list(dict.fromkeys(models["scheme"]))
    if scheme not in known:
        raise ValueError(f"unknown scheme {scheme!r}; this run has: {', '.join(map(str, known))}")
    sub = models[models["scheme"] == scheme]
    mixed = [a for a in axis_columns(sub) if sub[a].nunique() > 1]
    if mixed:  # a seed of each value: the values are not seeds to pool
        raise ValueError(
            f"scheme {scheme!r} has several values of {', '.join(mixed)}; select one first (e.g. "
            f"models[models[{mixed[0]!r}] == value]), or compare values with compare_axis_values / tune"
        )
    acc = sub[col].to_numpy(np.float64)
    ok = np.isfinite(acc)
    if "diverged" in sub.columns:
        ok &= ~sub["diverged"].fillna(True).to_numpy(bool)
    return pd.Series(acc[ok], index=sub["seed"].to_numpy()[ok], name=str(scheme))


def compare_schemes(
    models: pd.DataFrame,
    a: Any,
    b: Any,
    *,
    vary: str = "init",
    paired: bool | None = None,
    level: float = 0.95,
    column: str | None = None,
) -> Comparison:
    """:func:`compare` of two schemes of a run: final accuracy of ``a`` minus that of ``b``.

    Diverged models are left out. Whether seeds are paired follows the sweep's ``vary`` (:func:`paired_seeds`):
    under the default ``vary="init"`` seed ``s`` of two schemes shares nothing, so the comparison is unpaired
    (Welch); under ``"data"`` / ``"both"`` it is paired by seed, over the seeds that did not diverge in either
    scheme.

    Args:
      models: the run's one-row-per-model table (see :func:`scheme_accuracies`).
      a: name of scheme A.
      b: name of scheme B.
      vary: the sweep's ``vary`` (``result.config.vary``).
      paired: overrides what ``vary`` implies (``None``: follow ``vary``).
      level: confidence level.
      column: the metric compared instead of the accuracy (e.g. ``final_rmse``): ``diff`` is then A's mean
        minus B's in that metric's units, and ``p_a_gt_b`` the probability that A's value is the higher one
        (for a lower-is-better metric, the probability that A is worse).

    Returns:
      A :class:`Comparison` (its ``test`` names the test used).

    Example:
      >>> import pandas as pd
      >>> m = pd.DataFrame({"scheme": ["he"] * 3 + ["zeros"] * 3, "seed": [0, 1, 2] * 2,
      ...                   "final_accuracy": [.97, .96, .97, .11, .11, .11], "diverged": [False] * 6})
      >>> r = compare_schemes(m, "he", "zeros")
      >>> r.test, round(r.diff, 3), r.p_a_gt_b
      ("Welch's t-test", 0.857, 1.0)
    """
    pair = paired_seeds(vary) if paired is None else bool(paired)
    xa = scheme_accuracies(models, a, column=column)
    xb = scheme_accuracies(models, b, column=column)
    if pair:
        xa, xb = _common_seeds(xa, xb)
    return compare(xa, xb, paired=pair, level=level)


#: ``SweepConfig`` fields that two sweeps may differ in while seed ``s`` of a scheme keeps the same random streams
#: (init key, data order, dropout key) in both: the hyperparameters of training and evaluation. The keys depend
#: only on the root seed, the scheme's label and the seed number; the batches also on the data and batch size.
HYPERPARAMETER_FIELDS = (
    "learning_rate",
    "weight_decay",
    "init_scale",
    "compute_dtype",
    "state_dtype",
    "optimizer",
    "activation",
    "epochs",
    "eval_every",
    "target_accuracy",
    "test_size",
    "eval_batch_size",
    "max_models_per_chunk",
    "max_memory",
    "schemes",
    "seeds",
    "data_dir",
)


def _config_dict(config: Any) -> dict[str, Any]:
    import dataclasses

    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        d = dataclasses.asdict(config)
    elif isinstance(config, dict):
        d = dict(config)
    else:
        raise TypeError(f"expected a SweepConfig or its dict, got {type(config).__name__}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}  # JSON lists = tuples


def runs_share_seeds(config_a: Any, config_b: Any) -> bool:
    """Whether seed ``s`` shares its randomness between two sweeps: they differ only in hyperparameters
    (:data:`HYPERPARAMETER_FIELDS`: learning rate, optimizer, activation, epochs, ...), so a scheme's seed ``s``
    has the same initial-parameter key and sees the same batches in the same order in both. Then comparing a
    scheme across the two sweeps (e.g. the same scheme at two learning rates) is paired by seed.

    Args:
      config_a: a ``SweepConfig`` (or its ``to_dict()``).
      config_b: likewise.

    Returns:
      True when every other field (root seed, vary, dataset, train size, model and widths, bias init, batch
      size, ...) is equal.
    """
    a, b = _config_dict(config_a), _config_dict(config_b)
    keys = (set(a) | set(b)) - set(HYPERPARAMETER_FIELDS)
    return all(a.get(k) == b.get(k) for k in keys)


def compare_runs(
    run_a: Any, run_b: Any, scheme: Any, scheme_b: Any = None, *, level: float = 0.95
) -> Comparison:
    """Final accuracy of ``scheme`` in sweep ``run_a`` minus that of ``scheme_b`` (default: the same scheme) in
    ``run_b``, paired by seed exactly when the seeds share randomness: the sweeps differ only in hyperparameters
    (:func:`runs_share_seeds`) and either the scheme is the same (same init key) or the seed fixes the data order
    (``vary="data"``/``"both"``). Otherwise Welch's test.

    Args:
      run_a: a sweep result (anything with ``.config`` and ``.models``, e.g. :class:`jinit.results.SweepResult`).
      run_b: likewise.
      scheme: the scheme in ``run_a``.
      scheme_b: the scheme in ``run_b`` (default ``scheme``).
      level: confidence level.

    Returns:
      A :class:`Comparison` (``test`` names the test).
    """
    scheme_b = scheme if scheme_b is None else scheme_b
    vary = _config_dict(run_a.config).get("vary", "init")
    pair = runs_share_seeds(run_a.config, run_b.config) and (
        scheme_b == scheme or paired_seeds(vary)
    )
    xa = scheme_accuracies(run_a.models, scheme)
    xb = scheme_accuracies(run_b.models, scheme_b)
    if pair:
        xa, xb = _common_seeds(xa, xb)
    return compare(xa, xb, paired=pair, level=level)


def _common_seeds(a: pd.Series, b: pd.Series) -> tuple[pd.Series, pd.Series]:
    common = [s for s in a.index if s in set(b.index)]
    return a.loc[common], b.loc[common]


# ---------------------------------------------------------------------------------------------------------------
# Power: the smallest detectable difference and the seeds needed.


def _t_power(delta: float, se: float, df: float, alpha: float, two_sided: bool) -> float:
    """Power of a t-test with standard error ``se`` and ``df`` degrees of freedom against a true difference
    ``delta`` (noncentral t)."""
    nc = abs(delta) / se
    c = stats.t.ppf(1 - alpha / 2, df) if two_sided else stats.t.ppf(1 - alpha, df)
    upper = _nct_sf(c, df, nc)
    if not two_sided:
        return upper
    lower = float(stats.nct.cdf(-c, df, nc))  # the wrong-sign rejections: tiny once nc > 0 is large
    return upper + (lower if np.isfinite(lower) else 0.0)


def _nct_sf(c: float, df: float, nc: float) -> float:
    """P(T > c) for a noncentral t; scipy's value, else (where it returns NaN: small df, large nc) the integral
    E_V[Phi(nc - c sqrt(V / df))] over V ~ chi2(df)."""
    v = float(stats.nct.sf(c, df, nc))
    if np.isfinite(v):
        return v
    from scipy import integrate

    f = lambda x: stats.norm.cdf(nc - c * np.sqrt(x / df)) * stats.chi2.pdf(x, df)  # noqa: E731
    return float(integrate.quad(f, 0, np.inf, limit=200)[0])


def _se_df(
    a: np.ndarray, b: np.ndarray, paired: bool, n: float | None = None, floor: float = 0.0
) -> tuple[float, float]:
    """Standard error and degrees of freedom of the difference of means, from the observed spreads (each standard
    deviation at least ``floor``), with the observed sizes or ``n`` seeds per scheme."""
    if paired:
        sd = max(float(np.std(a - b, ddof=1)), floor)
        m = a.size if n is None else n
        return sd / np.sqrt(m), float(m - 1)
    na, nb = (a.size, b.size) if n is None else (n, n)
    va, vb = (max(float(np.var(x, ddof=1)), floor * floor) for x in (a, b))
    return _welch_se_df(va, vb, na, nb)


def _power_inputs(a: Any, b: Any, paired: bool) -> tuple[np.ndarray, np.ndarray] | None:
    if paired:
        if isinstance(a, pd.Series) and isinstance(b, pd.Series):
            a, b = _common_seeds(a.dropna(), b.dropna())
        xa, xb = _as_1d(a, "a"), _as_1d(b, "b")
        if xa.shape != xb.shape:
            raise ValueError(f"paired needs equal lengths, got {xa.size} and {xb.size}")
        ok = ~(np.isnan(xa) | np.isnan(xb))
        xa, xb = xa[ok], xb[ok]
    else:
        xa, xb = _as_1d(a, "a"), _as_1d(b, "b")
        xa, xb = xa[~np.isnan(xa)], xb[~np.isnan(xb)]
    if xa.size < 2 or xb.size < 2:
        return None
    return xa, xb


def _check_power_args(alpha: float, power: float) -> None:
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not float(alpha) < float(power) < 1.0:
        raise ValueError(f"power must be in (alpha, 1), got {power}")


def min_detectable_difference(
    a: Any,
    b: Any,
    *,
    paired: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    two_sided: bool = True,
    resolution: float | None = None,
) -> float:
    """The smallest true difference of means that the t-test of :func:`compare` would detect with probability
    ``power``, given the spreads and numbers of seeds observed in ``a`` and ``b``.

    Power is computed exactly for the t statistic (noncentral t with the Welch-Satterthwaite, or paired, degrees of
    freedom), taking the observed standard deviations as the true ones. It is what the comparison could have
    resolved: a difference smaller than this may well be real and missed, so "not significant" is not "equal".

    Args:
      a: one value per seed of scheme A (array, or Series indexed by seed when ``paired``).
      b: likewise for scheme B.
      paired: the paired t-test (spread of the per-seed differences) instead of Welch's.
      alpha: the test's level.
      power: the probability of detecting the difference.
      two_sided: two-sided test (else one-sided at ``alpha``).
      resolution: the metric's step (``1 / n_test`` for an accuracy): every standard deviation is taken as at
        least one step (see :func:`mean_ci`), so that runs that happen to agree do not claim a zero detectable
        difference.

    Returns:
      The difference, in the units of ``a`` (NaN with fewer than 2 values per group; 0.0 when neither varies and
      no ``resolution`` is given: only right for deterministic schemes).

    References:
      Cohen. Statistical power analysis for the behavioral sciences. 2nd ed., 1988.
    """
    _check_power_args(alpha, power)
    xs = _power_inputs(a, b, paired)
    if xs is None:
        return float("nan")
    se, df = _se_df(*xs, paired, floor=_check_resolution(resolution))
    return _solve_mdd(se, df, alpha, power, two_sided)


def _solve_mdd(se: float, df: float, alpha: float, power: float, two_sided: bool) -> float:
    from scipy.optimize import brentq

    if not np.isfinite(se) or not np.isfinite(df) or df <= 0:
        return float("nan")
    if se == 0:
        return 0.0
    hi = 4.0 * se
    while _t_power(hi, se, df, alpha, two_sided) < power:
        hi *= 2.0
        if hi > 1e6 * se:
            return float("inf")
    return float(
        brentq(lambda d: _t_power(d, se, df, alpha, two_sided) - power, 0.0, hi, xtol=se * 1e-9)
    )


def seeds_needed(
    a: Any,
    b: Any,
    difference: float,
    *,
    paired: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    two_sided: bool = True,
    max_seeds: int = 100_000,
    resolution: float | None = None,
) -> float:
    """The number of seeds per scheme at which the t-test of :func:`compare` detects a true difference of means
    ``difference`` with probability ``power``, taking the spreads observed in ``a`` and ``b`` as the true ones.

    Args:
      a: one value per seed of scheme A (at least 2).
      b: likewise for scheme B.
      difference: the true difference to detect (same units as ``a``; its sign is ignored).
      paired: the paired t-test (spread of the per-seed differences) instead of Welch's.
      alpha: the test's level.
      power: the probability of detecting the difference.
      two_sided: two-sided test (else one-sided at ``alpha``).
      max_seeds: search limit; ``inf`` is returned beyond it.
      resolution: the metric's step: every standard deviation at least one step (see
        :func:`min_detectable_difference`).

    Returns:
      The smallest number of seeds per scheme (a whole number, at least 2), ``inf`` beyond ``max_seeds``, NaN when
      it cannot be computed (fewer than 2 values per group, or no spread at all).

    Example:
      >>> seeds_needed([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], 1.0)  # sd 1 in both, a 1-sd difference
      17.0
    """
    _check_power_args(alpha, power)
    diff = abs(float(difference))
    if not diff > 0:
        raise ValueError(f"difference must be non-zero, got {difference}")
    xs = _power_inputs(a, b, paired)
    if xs is None:
        return float("nan")
    floor = _check_resolution(resolution)
    if _se_df(*xs, paired, n=2, floor=floor)[0] == 0:
        return float("nan")

    def ok(n: int) -> bool:
        se, df = _se_df(*xs, paired, n=n, floor=floor)
        return _t_power(diff, se, df, alpha, two_sided) >= power

    lo, hi = 1, 2
    while not ok(hi):
        lo, hi = hi, hi * 2
        if hi > max_seeds:
            return float("inf") if not ok(max_seeds) else float(_bisect(ok, lo, max_seeds))
    return float(_bisect(ok, lo, hi))


def _bisect(ok: Callable[[int], bool], lo: int, hi: int) -> int:
    """Smallest n in (lo, hi] with ok(n), given ok(hi) and not ok(lo) (or lo == 1)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return max(hi, 2)


# ---------------------------------------------------------------------------------------------------------------
# Which schemes could be the best.


def best_set(groups: dict[Any, Any], *, paired: bool = False, alpha: float = 0.05) -> pd.DataFrame:
    """The schemes that cannot be told apart from the best: a ``1 - alpha`` confidence set for the best mean.

    Scheme ``i`` is left out of the set when some other scheme ``j`` is significantly better:
    the one-sided t-test of :func:`compare` (Welch, or paired when ``paired``) of ``mean_j > mean_i`` has
    ``p < alpha / (k - 1)`` for ``k`` schemes (Bonferroni). The true best is left out only if a test of a true
    null hypothesis rejects; there are ``k - 1`` such tests, so the set contains the truly best scheme with
    probability at least ``1 - alpha`` however the observed best was picked. This is the selection-proof
    version of "compare every scheme with the winner": testing each scheme against the observed best without
    correction treats the winner as fixed, and calls a scheme "tied" whenever the test lacks power.

    Pairs in which neither scheme varies over seeds (two deterministic schemes) are not tested. A scheme with
    fewer than 2 values cannot be tested and stays in the set.

    Args:
      groups: ``{scheme: values over seeds}`` (arrays, or Series indexed by seed when ``paired``; with
        ``paired`` a pair is compared on the seeds both have).
      paired: pair seeds (only where seed numbers share randomness; see :func:`paired_seeds`).
      alpha: 1 - the confidence level of the set.

    Returns:
      A DataFrame indexed by scheme (in the order given) with ``mean``, ``p_best_set`` (the Bonferroni-adjusted
      p-value of the strongest evidence that another scheme is better: ``min(1, (k - 1) * min_j p_ji)``;
      NaN when no test was possible) and ``in_best_set``.

    References:
      Gupta. On some multiple decision (selection and ranking) rules. Technometrics 7 (1965).
      Hsu. Multiple comparisons: theory and methods. Chapman & Hall, 1996 (multiple comparisons with the best).
    """
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    names = list(groups)
    k = len(names)
    clean = {n: _seeded(groups[n], str(n)) for n in names}
    values = {
        n: (pd.Series(x, index=i) if (paired and i is not None) else x)
        for n, (x, i) in clean.items()
    }
    means = {n: float(np.mean(clean[n][0])) if clean[n][0].size else float("nan") for n in names}
    rows = []
    for i in names:
        best_p = float("nan")
        for j in names:
            if j == i:
                continue
            a, b = values[j], values[i]
            if paired:
                if isinstance(a, pd.Series) and isinstance(b, pd.Series):
                    a, b = _common_seeds(a, b)
                elif np.size(a) != np.size(b):
                    raise ValueError(f"paired needs equal lengths: {j!r} and {i!r}")
            xa, xb = np.asarray(a, np.float64), np.asarray(b, np.float64)
            if xa.size < 2 or xb.size < 2:
                continue
            if not paired and np.ptp(xa) == 0 and np.ptp(xb) == 0:
                continue  # two deterministic schemes: one model each, nothing to test
            if paired and np.ptp(xa - xb) == 0 and np.ptp(xa) == 0:
                continue
            if paired:
                d = xa - xb
                diff, se, df = float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size)), d.size - 1
            else:
                diff = float(xa.mean() - xb.mean())
                se, df = _welch_se_df(xa.var(ddof=1), xb.var(ddof=1), xa.size, xb.size)
            # one-sided p of "j is better than i" (as compare's t-test; a zero standard error decides outright)
            p_one = float(stats.t.sf(diff / se, df)) if se > 0 else float(diff <= 0)
            best_p = p_one if np.isnan(best_p) else min(best_p, p_one)
        p_adj = min(1.0, (k - 1) * best_p) if np.isfinite(best_p) else float("nan")
        rows.append({"mean": means[i], "p_best_set": p_adj, "in_best_set": not (p_adj < alpha)})
    return pd.DataFrame(rows, index=pd.Index(names, name="scheme"))


# ---------------------------------------------------------------------------------------------------------------
# rliable conventions (Agarwal et al. 2021): interquartile mean, probability of improvement.


def _scores_2d(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[~np.isnan(a)][:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be [runs] or [runs, tasks], got shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError(f"{name} has NaN values; drop those runs first")
    return a


def iqm(scores: Any) -> float:
    """Interquartile mean: the mean of the middle 50% of all scores (``scipy.stats.trim_mean(x, 0.25)``,
    which cuts ``floor(n / 4)`` values from each end), robust to a few outlying seeds and more efficient than
    the median.

    Args:
      scores: ``[runs]`` or ``[runs, tasks]`` (all values are pooled; NaNs dropped from a 1-D input).

    Returns:
      The IQM (NaN when empty).

    References:
      Agarwal, Schwarzer, Castro, Courville, Bellemare. Deep reinforcement learning at the edge of the
      statistical precipice. NeurIPS 2021.

    Example:
      >>> iqm([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0])  # mean of 3, 4, 5, 6
      4.5
    """
    a = _scores_2d(scores, "scores")
    if a.size == 0:
        return float("nan")
    return float(stats.trim_mean(a.ravel(), 0.25))


def _boot_ci(point: float, boots: np.ndarray, level: float) -> CI:
    low, high = np.quantile(boots, [0.5 - level / 2, 0.5 + level / 2])
    return CI(point, float(low), float(high))


def iqm_ci(scores: Any, level: float = 0.95, *, n_boot: int = 10_000, seed: int = 0) -> CI:
    """The IQM with a stratified percentile-bootstrap confidence interval (rliable's convention).

    Each resample draws, for every task (column), as many runs as it has, with replacement, from that task's
    runs only; with one task this is the ordinary bootstrap over seeds.

    Args:
      scores: ``[runs]`` or ``[runs, tasks]``.
      level: confidence level.
      n_boot: bootstrap resamples.
      seed: seed of ``numpy.random.default_rng`` (the result is deterministic given it).

    Returns:
      ``CI(iqm, low, high)``; the interval is NaN with fewer than 2 runs.

    References:
      Agarwal et al. Deep reinforcement learning at the edge of the statistical precipice. NeurIPS 2021.
    """
    level = _check_level(level)
    a = _scores_2d(scores, "scores")
    point = iqm(a)
    runs, tasks = a.shape
    if runs < 2:
        return CI(point, float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, runs, size=(int(n_boot), runs, tasks))
    resampled = np.take_along_axis(a[None, :, :], idx, axis=1).reshape(int(n_boot), -1)
    return _boot_ci(point, stats.trim_mean(resampled, 0.25, axis=1), level)


def _poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 per task, for x ``[..., runs, tasks]`` and y likewise, over all pairs of runs, from
    midranks (the Mann-Whitney U statistic / (n_x n_y)) in O(n log n)."""
    nx, ny = x.shape[-2], y.shape[-2]
    ranks = stats.rankdata(np.concatenate([x, y], axis=-2), axis=-2)
    u = ranks[..., :nx, :].sum(axis=-2) - nx * (nx + 1) / 2
    return u / (nx * ny)


def probability_of_improvement(
    x: Any,
    y: Any,
    *,
    paired: bool = False,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> CI:
    """Probability that a run of X beats a run of Y, with a stratified bootstrap interval (rliable's convention).

    Per task, ``P(X > Y) + P(X = Y) / 2`` over all pairs of runs (the Mann-Whitney U statistic divided by
    ``n_x n_y``), averaged over tasks: rliable's definition, in every design. ``paired`` changes only the interval:
    it resamples runs within each task, X's and Y's independently when unpaired, the matched pairs together when
    paired (so the interval keeps what the pairs share). The fraction of matched runs that X wins is another
    quantity, :func:`matched_win_rate`.

    Args:
      x: ``[runs]`` or ``[runs, tasks]`` scores of X.
      y: likewise for Y (same tasks; same runs when ``paired``).
      paired: runs of X and Y with the same index share randomness (see :func:`paired_seeds`): resample them
        together. The point estimate is over all pairs either way.
      level: confidence level.
      n_boot: bootstrap resamples.
      seed: seed of ``numpy.random.default_rng``.

    Returns:
      ``CI(probability, low, high)``; NaN interval with fewer than 2 runs in X or Y.

    References:
      Agarwal et al. Deep reinforcement learning at the edge of the statistical precipice. NeurIPS 2021.

    Example:
      >>> probability_of_improvement([3.0, 1.0], [1.0, 2.0, 3.0]).mean  # (1 + 1 + .5 + .5 + 0 + 0) / 6
      0.5
    """
    level = _check_level(level)
    a, b = _scores_2d(x, "x"), _scores_2d(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y must have the same tasks, got {a.shape[1]} and {b.shape[1]}")
    if paired and a.shape != b.shape:
        raise ValueError(f"paired x and y must have the same shape, got {a.shape} and {b.shape}")
    nan = float("nan")
    if a.shape[0] == 0 or b.shape[0] == 0:
        return CI(nan, nan, nan)
    point = float(np.mean(_poi(a, b)))
    if a.shape[0] < 2 or b.shape[0] < 2:
        return CI(point, nan, nan)
    rng = np.random.default_rng(seed)
    n_boot = int(n_boot)
    boots = np.empty(n_boot)
    step = max(1, 2_000_000 // ((a.shape[0] + b.shape[0]) * a.shape[1]))
    for s in range(0, n_boot, step):
        m = min(step, n_boot - s)
        ia = rng.integers(0, a.shape[0], size=(m, a.shape[0], a.shape[1]))
        ib = ia if paired else rng.integers(0, b.shape[0], size=(m, b.shape[0], b.shape[1]))
        ra = np.take_along_axis(a[None], ia, axis=1)
        rb = np.take_along_axis(b[None], ib, axis=1)
        boots[s : s + m] = _poi(ra, rb).mean(axis=-1)
    return _boot_ci(point, boots, level)


# ---------------------------------------------------------------------------------------------------------------
# Failed models.

#: Columns of :func:`failures`.
FAILURE_COLUMNS = ("diverged", "collapsed", "not_above_majority", "failed")


def failures(
    predictions: np.ndarray,
    y_test: np.ndarray,
    diverged: Any = None,
    *,
    level: float = 0.01,
) -> pd.DataFrame:
    """Which models failed: diverged, collapsed onto one class, or no better than always predicting the
    majority class.

    ``collapsed``: every test prediction is the same class (a dead or saturated network). ``not_above_majority``:
    the accuracy is not significantly above the accuracy of always predicting the most frequent test label
    (one-sided exact binomial test of ``accuracy > majority rate`` with ``p >= level``; so a model that is right
    on 11.85% of 2,000 examples where the majority class is 11.7% counts, and so does a constant predictor on an
    imbalanced task, at 62.7% accuracy). A fixed "chance + 1 point" threshold gets both wrong.

    Args:
      predictions: integer class predictions ``[models, n_test]``.
      y_test: labels ``[n_test]``.
      diverged: booleans ``[models]`` (None: no model diverged).
      level: the binomial test's level.

    Returns:
      A DataFrame with one row per model and the boolean columns of :data:`FAILURE_COLUMNS` (``failed`` is any
      of the other three).

    Example:
      >>> y = np.array([0, 0, 0, 1, 1, 0, 0, 0, 1, 0])  # majority class 0: 70%
      >>> failures(np.zeros((1, 10), int), y)["failed"].tolist()
      [True]
    """
    p = np.asarray(predictions)
    y = np.asarray(y_test)
    if p.ndim != 2 or y.shape != (p.shape[1],):
        raise ValueError(
            f"predictions must be [models, n_test] and y_test [n_test]; got {p.shape} and {y.shape}"
        )
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    m, n = p.shape
    div = np.zeros(m, bool) if diverged is None else np.asarray(diverged, bool)
    if div.shape != (m,):
        raise ValueError(f"diverged must have shape [{m}], got {div.shape}")
    if n == 0:
        raise ValueError("y_test is empty")
    collapsed = np.all(p == p[:, :1], axis=1)
    majority = np.bincount(y - y.min()).max() / n
    hits = (p == y[None, :]).sum(axis=1)
    # P(X >= hits) for X ~ Binomial(n, majority): small when the model is clearly above the majority rate.
    p_above = stats.binom.sf(hits - 1, n, majority)
    not_above = p_above >= float(level)
    failed = div | collapsed | not_above
    return pd.DataFrame(
        {"diverged": div, "collapsed": collapsed, "not_above_majority": not_above, "failed": failed}
    )


def param_sha256(params: Any) -> str:
    """SHA-256 fingerprint of a parameter tree, for bit-for-bit comparison of two runs.

    The leaves are visited in JAX's fixed tree order (dict keys sorted); for each leaf its key path, dtype,
    shape and raw little-endian bytes (C order) enter the hash, so equal values of different dtype or shape
    hash differently.

    Args:
      params: a pytree of arrays (one model's parameters, e.g. ``variables["params"]``).

    Returns:
      The hex digest (64 characters).

    Example:
      >>> param_sha256({"w": np.zeros(2, np.float32)}) == param_sha256({"w": np.zeros(2, np.float32)})
      True
    """
    h = hashlib.sha256()
    for header, arr in _hashed_leaves(params):
        h.update(header)
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _hashed_leaves(params: Any, stacked: bool = False) -> list[tuple[bytes, np.ndarray]]:
    """Each leaf as (its key path, dtype and shape, as hashed; the little-endian array); with ``stacked``, the
    shape is that of one model's leaf (without the leading model axis)."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        arr = np.asarray(leaf)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        shape = tuple(arr.shape[1:] if stacked else arr.shape)
        header = (
            jax.tree_util.keystr(path).encode() + str(arr.dtype).encode() + repr(shape).encode()
        )
        out.append((header, arr))
    return out


def param_sha256s(stacked: Any) -> list[str]:
    """:func:`param_sha256` of each model of a stacked parameter tree (every leaf with a leading model axis), in
    one pass: ``param_sha256s(p)[i] == param_sha256(jax.tree.map(lambda a: a[i], p))``."""
    leaves = _hashed_leaves(stacked, stacked=True)
    n = leaves[0][1].shape[0] if leaves else 0
    out = []
    for i in range(n):
        h = hashlib.sha256()
        for header, arr in leaves:
            h.update(header)
            h.update(np.ascontiguousarray(arr[i]).tobytes())
        out.append(h.hexdigest())
    return out


def _acc_column(models: pd.DataFrame) -> str | None:
    for col in ("final_accuracy", "test_accuracy"):
        if col in models.columns:
            return col
    return None


def _check_summary_inputs(
    curves, models, predictions, y_test, other, metric, num_classes, target_accuracy, ci_method,
    detect_difference,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """:func:`summarize`'s checks of its tables and arguments; returns the predictions and labels as arrays."""
    if not 0.0 < float(detect_difference) <= (math.inf if other else 1.0):
        raise ValueError(f"detect_difference is an accuracy gap in (0, 1], got {detect_difference}")
    if ci_method not in _CI_METHODS:
        raise ValueError(f"unknown ci_method {ci_method!r}; valid: {', '.join(_CI_METHODS)}")
    need = {"scheme", "seed", "diverged"}
    missing = need - set(models.columns)
    if missing:
        raise ValueError(
            f"models table lacks column(s) {sorted(missing)}; has {list(models.columns)}"
        )
    if other and f"final_{metric}" not in models.columns:
        raise ValueError(
            f"models table lacks the column final_{metric} of the metric {metric!r}; has {list(models.columns)}"
        )
    if not other and int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if target_accuracy is not None and not 0.0 <= float(target_accuracy) <= 1.0:
        raise ValueError(f"target_accuracy is a fraction in [0, 1], got {target_accuracy}")
    preds = np.asarray(predictions)
    y = np.asarray(y_test)
    if other:
        if preds.ndim < 2 or preds.shape[0] != len(models) or y.shape[0] != preds.shape[1]:
            raise ValueError(
                f"predictions must be [models={len(models)}, n_test, ...] and y_test [n_test, ...]; got "
                f"{preds.shape} and {y.shape}"
            )
    elif preds.ndim != 2 or preds.shape[0] != len(models) or y.shape != (preds.shape[1],):
        raise ValueError(
            f"predictions must be [models={len(models)}, n_test] and y_test [n_test]; got {preds.shape} and {y.shape}"
        )
    if len(curves):
        cmissing = {"scheme", "seed", "step", "epoch", "train_loss"} | (
            set() if other else {"test_accuracy"}
        )
        cmissing -= set(curves.columns)
        if cmissing:
            raise ValueError(
                f"curves table lacks column(s) {sorted(cmissing)}; has {list(curves.columns)}"
            )

    return preds, y


def _scheme_row(
    scheme, idx, ok, acc_all, diverged_all, fail, shas, resolution, ci_method
) -> dict[str, Any]:
    """:func:`summarize`'s accuracy and failure columns of one scheme (``idx``: its rows; ``ok``: those that did
    not diverge)."""
    nan = float("nan")
    acc = acc_all[ok]
    deterministic = bool(ok.size >= 2 and shas is not None and len(set(shas[ok])) == 1)
    floored = bool(
        not deterministic and acc.size >= 2 and resolution and acc.std(ddof=1) < resolution
    )
    ci = mean_ci(acc, method=ci_method, resolution=None if deterministic else resolution)
    iq = iqm_ci(acc) if acc.size else CI(nan, nan, nan)
    if deterministic or (floored and not iq.high > iq.low):
        # one model; or a random scheme whose bootstrap interval has zero width: not estimable
        iq = CI(iq.mean, nan, nan)
    if deterministic:
        ci = CI(ci.mean, nan, nan)
    return {
        "scheme": scheme,
        "n": len(idx),
        "deterministic": deterministic,
        "acc_mean": ci.mean,
        "acc_std": float(acc.std(ddof=1)) if acc.size > 1 else nan,
        "acc_median": float(np.median(acc)) if acc.size else nan,
        "acc_ci95_low": ci.low,
        "acc_ci95_high": ci.high,
        "acc_iqm": iq.mean,
        "acc_iqm_ci95_low": iq.low,
        "acc_iqm_ci95_high": iq.high,
        "acc_resolution": resolution if resolution else nan,
        "ci_floored": floored,
        "acc_min": float(acc.min()) if acc.size else nan,
        "acc_max": float(acc.max()) if acc.size else nan,
        "diverged_count": int(diverged_all[idx].sum()),
        "collapsed_count": int(fail["collapsed"].to_numpy()[ok].sum()),
        "not_above_majority_count": int(fail["not_above_majority"].to_numpy()[ok].sum()),
        "failure_rate": float(fail["failed"].to_numpy()[idx].mean()),
    }


def _agreement(
    preds: np.ndarray | None, correct: np.ndarray | None, row: dict[str, Any]
) -> dict[str, float]:
    """:func:`summarize`'s columns that need class predictions (churn, noise floor), of one scheme's
    non-diverged models; NaN for a metric that is not the accuracy of class predictions (``preds`` None)."""
    nan = float("nan")
    if preds is None:
        cols = ("collapsed_count", "not_above_majority_count", "churn", "churn_error_ratio")
        return dict.fromkeys((*cols, "noise_floor", "noise_floor_ratio"), nan)
    c = churn(preds)
    err = 1.0 - row["acc_mean"]
    nf = noise_floor(correct)
    return {
        "churn": c,
        "churn_error_ratio": c / err if err > 0 else nan,
        "noise_floor": nf,
        "noise_floor_ratio": row["acc_std"] / nf if nf > 0 else nan,
    }


def summarize(
    curves: pd.DataFrame,
    models: pd.DataFrame,
    predictions: np.ndarray,
    y_test: np.ndarray,
    *,
    num_classes: int,
    target_accuracy: float | None = None,
    ci_method: str = "t",
    paired: bool = False,
    detect_difference: float = 0.01,
    alpha: float = 0.05,
    metric: str = "accuracy",
    higher_is_better: bool = True,
    vary: str | None = None,
) -> pd.DataFrame:
    """One row per scheme of accuracy, convergence, agreement and noise statistics (``summary.csv``).

    Diverged models are excluded from every accuracy, churn, noise-floor and loss statistic (so no NaN
    means) and counted in ``diverged_count`` / ``failure_rate`` (with the collapsed models and those not above
    the majority class; see :func:`failures`). Schemes are ordered by ``acc_mean`` (descending; all-diverged
    schemes last). Each is compared with the first row (the best) by Welch's t-test, or the paired t-test when
    ``paired`` (``test_vs_best`` says which), with the Mann-Whitney / Wilcoxon rank test and the probability of
    improvement beside it; the verdict, ``in_best_set``, is the 95% confidence set for the best scheme
    (:func:`best_set`), with the minimum detectable difference and the seeds needed to detect
    ``detect_difference`` (:func:`min_detectable_difference`, :func:`seeds_needed`, at the set's one-sided
    Bonferroni level ``alpha / (k - 1)``).

    Args:
      curves: tidy learning curves, one row per (scheme, seed, evaluation point) with columns
        ``scheme, seed, epoch, step, train_loss, test_loss, test_accuracy, diverged``; may be empty
        (then the convergence columns are NaN).
      models: one row per model with columns ``scheme, seed, diverged`` and ``final_accuracy`` (or
        ``test_accuracy``; computed from ``predictions`` when neither is present); row ``i`` belongs to
        ``predictions[i]``.
      predictions: integer class predictions on the test set, shape ``[len(models), n_test]``.
      y_test: test labels, shape ``[n_test]``.
      num_classes: number of classes (chance accuracy is ``1 / num_classes``).
      target_accuracy: accuracy (fraction) for the steps/epochs-to-target columns; NaN columns when ``None``.
      ci_method: how ``acc_ci95_low`` / ``acc_ci95_high`` are computed: ``"t"`` (Student-t interval, the
        default) or ``"bootstrap"`` (percentile bootstrap of the mean, deterministic; see :func:`mean_ci`).
      paired: whether seed ``s`` of different schemes shares randomness (``paired_seeds(config.vary)``; False
        under the default ``vary="init"``); ignored when ``vary`` is given.
      vary: the sweep's ``vary`` (:func:`replication`): it decides ``paired`` and ``verdict_about``: under
        ``"data"`` each scheme is one init draw, so the comparisons with the best (``in_best_set``, ...) are of
        init draws, not schemes. None: ``verdict_about`` is ``"scheme"`` and ``paired`` is used as given.
      detect_difference: the accuracy gap (fraction) for the ``seeds_to_detect`` column.
      alpha: level of the confidence set for the best (``1 - alpha`` coverage).
      metric: the metric summarized instead of the accuracy, for a task that is not classification (the
        sweep's ``result.metric``: ``r2``, a custom metric's name): read from ``models["final_<metric>"]``; the
        ``acc_*`` columns are then named ``<metric>_*`` (``r2_mean``, ``r2_ci95_low``, ...), ``detect_difference``
        is in the metric's units, and the columns that need class predictions (``collapsed_count``,
        ``not_above_majority_count``, ``churn``, ``churn_error_ratio``, ``noise_floor``, ``noise_floor_ratio``)
        and the steps-to-target ones are NaN; ``failure_rate`` counts the diverged models only.
      higher_is_better: the metric's direction. For a lower-is-better metric the best scheme is the one with
        the LOWEST mean, the rows are ordered lowest first, and the tests against the best and the best set are
        those of the negated metric (the same p-values; ``poi_vs_best`` is the probability of being better).

    Returns:
      A DataFrame with the columns of :data:`SUMMARY_COLUMNS`, in that order (renamed as said for ``metric``).

    Raises:
      ValueError: for missing columns, mismatched shapes or a bad ``num_classes`` / ``target_accuracy`` /
        ``ci_method`` / ``detect_difference`` / ``alpha``.
    """
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    about = "scheme"
    if vary is not None:
        rep = replication(vary)
        paired, about = rep.paired, rep.verdicts_about
    other = metric != "accuracy" or not higher_is_better  # not the accuracy of class predictions
    sign = 1.0 if higher_is_better else -1.0
    preds, y = _check_summary_inputs(
        curves, models, predictions, y_test, other, metric, num_classes, target_accuracy, ci_method,
        detect_difference,
    )  # fmt: skip

    models = models.reset_index(drop=True)
    if other:  # the metric, negated when lower is better: the best is the highest below
        correct = None
        acc_all = sign * models[f"final_{metric}"].to_numpy(np.float64)
        target_accuracy = None
    else:
        correct = preds == y[None, :]
        acc_col = _acc_column(models)
        acc_all = models[acc_col].to_numpy(np.float64) if acc_col else correct.mean(axis=1)
    diverged_all = models["diverged"].fillna(True).to_numpy(bool) | ~np.isfinite(acc_all)
    if other:
        fail = pd.DataFrame(
            {"failed": diverged_all, "collapsed": False, "not_above_majority": False}
        )
    else:
        fail = failures(preds, y, diverged_all)
    shas = models["param_sha256"].to_numpy() if "param_sha256" in models.columns else None
    # an accuracy over n_test examples moves in steps of one example; a continuous metric has no step
    resolution = None if other or preds.shape[1] == 0 else 1.0 / preds.shape[1]

    rows = []
    per_scheme_acc: dict[Any, pd.Series] = {}
    for scheme, idx in models.groupby("scheme", sort=False).indices.items():
        ok = idx[~diverged_all[idx]]
        per_scheme_acc[scheme] = pd.Series(acc_all[ok], index=models["seed"].to_numpy()[ok])
        row = _scheme_row(scheme, idx, ok, acc_all, diverged_all, fail, shas, resolution, ci_method)
        seeds = set(models["seed"].to_numpy()[ok])
        row.update(
            _convergence(curves, scheme, models["seed"].to_numpy()[idx], seeds, target_accuracy)
        )
        row.update(_agreement(None if other else preds[ok], None if other else correct[ok], row))
        rows.append(row)

    out = pd.DataFrame(rows)
    if out.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    out = out.sort_values("acc_mean", ascending=False, na_position="last", kind="stable")
    out = out.reset_index(drop=True)
    out = out.join(_versus_best(out, per_scheme_acc, paired, detect_difference, alpha, resolution))
    out["verdict_about"] = about
    out = out[list(SUMMARY_COLUMNS)]
    if other:
        out = _metric_summary(out, metric, sign)
    return out


def _metric_summary(out: pd.DataFrame, metric: str, sign: float) -> pd.DataFrame:
    """:func:`summarize`'s table of a metric that is not the accuracy: the values back in the metric's sign (for
    a lower-is-better metric they were negated, so the interval ends and min / max swap) and the ``acc_*``
    columns named ``<metric>_*``."""
    out = out.copy()
    if sign < 0:
        for c in ("acc_mean", "acc_median", "acc_iqm"):
            out[c] = -out[c]
        for lo, hi in (
            ("acc_ci95_low", "acc_ci95_high"),
            ("acc_iqm_ci95_low", "acc_iqm_ci95_high"),
            ("acc_min", "acc_max"),
        ):
            low, high = -out[hi], -out[lo]
            out[lo], out[hi] = low, high
    return out.rename(columns=lambda c: f"{metric}_{c[4:]}" if c.startswith("acc_") else c)


def _versus_best(
    out: pd.DataFrame,
    per_scheme_acc: dict[Any, pd.Series],
    paired: bool,
    detect_difference: float,
    alpha: float,
    resolution: float | None = None,
) -> pd.DataFrame:
    """The comparison-with-the-best columns of :func:`summarize`, one row per row of ``out``."""
    nan = float("nan")
    best = out["scheme"].iloc[0]
    det = dict(zip(out["scheme"], out["deterministic"], strict=True))
    groups = {s: per_scheme_acc[s] for s in out["scheme"]}
    bs = best_set(groups, paired=paired, alpha=alpha)
    k = len(groups)
    level_one_sided = alpha / (k - 1) if k > 1 else alpha
    cols: dict[str, list[Any]] = {
        c: []
        for c in (
            "test_vs_best",
            "p_vs_best",
            "p_rank_vs_best",
            "poi_vs_best",
            "poi_ci95_low",
            "poi_ci95_high",
            "mdd_vs_best",
            "seeds_to_detect",
        )
    }
    for scheme in out["scheme"]:
        a, b = per_scheme_acc[scheme], per_scheme_acc[best]
        if paired:
            a, b = _common_seeds(a, b)
        testable = (
            scheme != best
            and a.size >= 2
            and b.size >= 2
            and not (det[scheme] and det[best])
            and not (paired and a.size < 2)
        )
        if not testable:
            for c in cols:
                cols[c].append("" if c == "test_vs_best" else nan)
            if (
                scheme != best and a.size and b.size
            ):  # the probability of improvement needs no spread
                poi = probability_of_improvement(a.to_numpy(), b.to_numpy(), paired=paired)
                cols["poi_vs_best"][-1] = poi.mean
            continue
        r = compare(a, b, paired=paired)
        # 2,000 resamples (as in Agarwal et al.'s figures): a summary of many schemes x many seeds stays fast
        poi = probability_of_improvement(a.to_numpy(), b.to_numpy(), paired=paired, n_boot=2000)
        cols["test_vs_best"].append(r.test)
        cols["p_vs_best"].append(r.p_value)
        cols["p_rank_vs_best"].append(r.p_rank)
        cols["poi_vs_best"].append(poi.mean)
        cols["poi_ci95_low"].append(poi.low)
        cols["poi_ci95_high"].append(poi.high)
        kw = dict(
            paired=paired,
            alpha=level_one_sided,
            power=0.8,
            two_sided=False,
            resolution=resolution,
        )
        cols["mdd_vs_best"].append(min_detectable_difference(b, a, **kw))
        cols["seeds_to_detect"].append(seeds_needed(b, a, detect_difference, **kw))
    res = pd.DataFrame(cols, index=out.index)
    res["p_best_set"] = bs.loc[out["scheme"], "p_best_set"].to_numpy()
    res["in_best_set"] = bs.loc[out["scheme"], "in_best_set"].to_numpy(bool)
    return res


def _convergence(
    curves: pd.DataFrame, scheme: Any, seeds: np.ndarray, ok_seeds: set, target: float | None
) -> dict[str, float]:
    nan = float("nan")
    out = {
        "steps_to_target_median": nan,
        "steps_to_target_iqr": nan,
        "target_never_fraction": nan,
        "epochs_to_target_median": nan,
        "train_loss_auc": nan,
    }
    if not len(curves):
        return out
    sub = curves[curves["scheme"] == scheme]
    # one pass over the rows (a boolean mask per seed is quadratic: minutes for 100k models)
    by_seed = dict(tuple(sub.sort_values("step", kind="stable").groupby("seed", sort=False)))
    empty = sub.iloc[:0]
    steps, epochs, aucs = [], [], []
    for seed in seeds:
        c = by_seed.get(seed, empty)
        if target is not None:
            acc = c["test_accuracy"].to_numpy(np.float64)
            steps.append(
                steps_to_target(acc, c["step"].to_numpy(np.float64), target) if len(c) else np.inf
            )
            epochs.append(
                steps_to_target(acc, c["epoch"].to_numpy(np.float64), target) if len(c) else np.inf
            )
        if seed in ok_seeds and len(c):
            loss = c["train_loss"].to_numpy(np.float64)
            if np.all(np.isfinite(loss)):
                aucs.append(auc(loss, c["step"].to_numpy(np.float64)))
    if target is not None and steps:
        s, e = np.asarray(steps), np.asarray(epochs)
        reached = np.isfinite(s)
        out["target_never_fraction"] = float(1.0 - reached.mean())
        if reached.any():
            q1, med, q3 = np.percentile(s[reached], [25, 50, 75])
            out["steps_to_target_median"] = float(med)
            out["steps_to_target_iqr"] = float(q3 - q1)
            out["epochs_to_target_median"] = float(np.median(e[np.isfinite(e)]))
    if aucs:
        out["train_loss_auc"] = float(np.mean(aucs))
    return out


#: The columns of the hyperparameter axes of a sweep (:mod:`jinit.sweep.hyper`), present in ``models.csv`` and
#: ``results.csv`` when the axis has more than one value.
AXIS_COLUMNS = ("learning_rate", "weight_decay", "init_scale")

#: The columns of its precision dimensions (:mod:`jinit.sweep.precision`; dtype names), present when swept.
PRECISION_COLUMNS = ("compute_dtype", "state_dtype")


def axis_columns(table: pd.DataFrame) -> list[str]:
    """The columns of the swept dimensions of a models or curves table, in grid order: the hyperparameter axes
    (:data:`AXIS_COLUMNS`), then the precision dimensions (:data:`PRECISION_COLUMNS`)."""
    return [c for c in AXIS_COLUMNS + PRECISION_COLUMNS if c in table.columns]


def axis_value_text(v: Any) -> str:
    """An axis value as the tables and labels write it: ``0.001``, ``bfloat16``."""
    return v if isinstance(v, str) else f"{float(v):g}"


def _ok_rows(models: pd.DataFrame, col: str) -> np.ndarray:
    v = models[col].to_numpy(np.float64)
    ok = np.isfinite(v)
    if "diverged" in models.columns:
        ok &= ~models["diverged"].fillna(True).to_numpy(bool)
    return ok


def compare_axis_values(
    models: pd.DataFrame,
    scheme: Any,
    axis: str,
    a: float,
    b: float,
    *,
    metric: str = "final_accuracy",
    level: float = 0.95,
) -> Comparison:
    """:func:`compare` of two values of one axis within one scheme (``metric`` at ``a`` minus at ``b``), the
    other axes held at one value each.

    Models that differ only in an axis value share their initial weights (before the init scale) and their
    batches (the values do not enter the keys), so the comparison is **paired by seed**, over the seeds that
    did not diverge at either value. A precision dimension is an axis here too (``axis="compute_dtype"``,
    ``a="bfloat16"``, ``b="float32"``): the precisions of a model share its initial weights and batches.

    Raises:
      ValueError: for a missing scheme, axis or value, or other axes with several values in the scheme.
    """
    if axis not in models.columns:
        raise ValueError(
            f"{axis!r} is not an axis of this run; its axis columns: {axis_columns(models)}"
        )
    sub = models[models["scheme"] == scheme]
    if not len(sub):
        raise ValueError(
            f"unknown scheme {scheme!r}; this run has: {', '.join(map(str, dict.fromkeys(models['scheme'])))}"
        )
    others = [c for c in axis_columns(sub) if c != axis and sub[c].nunique() > 1]
    if others:
        raise ValueError(
            f"scheme {scheme!r} has several values of {', '.join(others)}; select one first"
        )
    series = []
    for v in (a, b):
        if axis in PRECISION_COLUMNS:
            rows = sub[sub[axis].astype(str) == str(v)]
        else:
            rows = sub[np.isclose(sub[axis].to_numpy(np.float64), float(v), rtol=1e-12, atol=0.0)]
        if not len(rows):
            raise ValueError(
                f"{axis}={v!r} is not in this run; its values: {sorted(sub[axis].unique())}"
            )
        ok = _ok_rows(rows, metric)
        series.append(
            pd.Series(rows[metric].to_numpy(np.float64)[ok], index=rows["seed"].to_numpy()[ok])
        )
    xa, xb = _common_seeds(*series)
    return compare(xa, xb, paired=True, level=level)


def _lower_is_better(column: str) -> bool:
    return any(w in column for w in ("loss", "rmse", "error"))


def tune(
    models: pd.DataFrame,
    axis: str,
    *,
    on: str | None = None,
    report: str = "final_accuracy",
    level: float = 0.95,
    higher_is_better: bool | None = None,
) -> pd.DataFrame:
    """For each scheme (and each value of the other axes), the value of ``axis`` with the best mean ``on`` metric,
    and the ``report`` metric of the models at that value: its mean with a confidence interval.

    The choice is made on ``on`` (by default the validation column ``final_val_accuracy``) and judged on ``report``
    (the test set): choosing and judging on the same test column overstates the chosen value's metric, so a test
    column as ``on`` must be asked for explicitly. Diverged models are left out (a value whose models all diverged
    is never chosen; a tie goes to the smaller value); a loss, RMSE or error column is minimized, any other
    maximized.

    Args:
      models: a sweep's one-row-per-model table with the ``axis`` column (``result.models``, ``models.csv``).
      axis: ``learning_rate``, ``weight_decay`` or ``init_scale``.
      on: the column the value is chosen on (default: ``final_val_accuracy``).
      report: the column reported at the chosen value (default: ``final_accuracy``, the test accuracy).
      level: confidence level of the interval.

    Returns:
      One row per group: ``scheme``, the other axis columns, ``axis`` (the chosen value), ``chosen_on`` (the column
      the choice was made on), ``on_mean`` (its mean at the chosen value), ``report`` (the reported column's name),
      ``report_mean``, ``report_ci_low``, ``report_ci_high``, ``n`` (models at the chosen value that did not
      diverge) and ``values`` (the values tried); ordered by ``report_mean``, best first.

    Raises:
      ValueError: for a missing axis column (an axis of one value has none) or metric column; without ``on``, when
        the table has no validation column (run the sweep with ``--val-size``).
    """
    if axis not in AXIS_COLUMNS:
        raise ValueError(f"unknown axis {axis!r}; valid: {', '.join(AXIS_COLUMNS)}")
    if axis not in models.columns:
        raise ValueError(
            f"this run has no {axis} column: {axis} was not swept (give it several values, e.g. --lr "
            "1e-4,3e-4,1e-3)"
        )
    if on is None:  # the validation column of the reported metric: final_r2 -> final_val_r2
        on = "final_val_" + report[len("final_") :] if report.startswith("final_") else report
        if on not in models.columns:
            raise ValueError(
                f"this run has no validation column ({on}) to choose on: run the sweep with "
                f"--val-size / val_size=..., or pass on={report!r} to choose on the test set (biased)"
            )
    for col in (on, report):
        if col not in models.columns:
            raise ValueError(f"models table has no column {col!r}; has {list(models.columns)}")
    _check_level(level)
    if higher_is_better is None:
        lower_on, lower_report = _lower_is_better(on), _lower_is_better(report)
    else:  # the task's direction (a custom metric's name says nothing about it)
        lower_on = lower_report = not higher_is_better
    keys = ["scheme"] + [c for c in axis_columns(models) if c != axis]
    rows = []
    for group, sub in models.groupby(keys, sort=False):
        group = group if isinstance(group, tuple) else (group,)
        ok = _ok_rows(sub, on) & _ok_rows(sub, report)
        means = sub[ok].groupby(axis, sort=True)[on].mean()
        tried = sorted(float(v) for v in sub[axis].unique())
        if means.empty:
            best, sel = float("nan"), sub.iloc[:0]
        else:
            best = float(means.idxmin() if lower_on else means.idxmax())
            sel = sub[ok & (sub[axis].to_numpy(np.float64) == best)]
        ci = mean_ci(sel[report].to_numpy(np.float64), level=level)
        rows.append(
            {
                **dict(zip(keys, group, strict=True)),
                axis: best,
                "chosen_on": on,
                "on_mean": float(means.get(best, float("nan")))
                if not means.empty
                else float("nan"),
                "report": report,
                "report_mean": ci.mean,
                "report_ci_low": ci.low,
                "report_ci_high": ci.high,
                "n": int(len(sel)),
                "values": tried,
            }
        )
    out = pd.DataFrame(rows)
    return out.sort_values(
        "report_mean", ascending=lower_report, kind="stable", na_position="last"
    ).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------------
# Learning-rate sensitivity (Wortsman et al. 2023).


def lr_sensitivity(final_losses: Any, initial_loss: Any) -> float | np.ndarray:
    """Learning-rate sensitivity: how much worse than its best a training run gets over a grid of learning rates.

    ``mean over the grid's learning rates lr of min(loss(lr), initial_loss) - min over lr of loss(lr)``
    (Wortsman et al. 2023, sec. 2, "LR sensitivity"): lower is more robust. A diverged run (NaN or infinite final
    loss) counts as ``initial_loss``, and no run counts as worse than that; the minimum is over the runs that did
    not diverge. Computed on the last axis of ``final_losses`` (one final loss per learning rate of the grid), so
    a ``[seeds, learning_rates]`` array gives one value per seed.

    Args:
      final_losses: final losses, ``[..., learning_rates]`` (at least 2 learning rates).
      initial_loss: the loss at initialization: a number, one per row (``final_losses.shape[:-1]``) or one per
        entry (``final_losses.shape``; the learning rates of a sweep share their initial model, so these agree).

    Returns:
      A float for a 1-D input, else an array of ``final_losses.shape[:-1]``; NaN where every learning rate
      diverged. Negative only when no learning rate ended below the initial loss (nothing was learned).

    Raises:
      ValueError: fewer than 2 learning rates, an ``initial_loss`` that is not finite or does not broadcast.

    Example:
      >>> lr_sensitivity([3.0, 1.0, 2.0, float("nan")], 2.5)  # mean of 1.5, 0, 1, 1.5
      1.0

    References:
      Wortsman et al. Small-scale proxies for large-scale Transformer training instabilities.
      arXiv:2309.14322, 2023.
    """
    losses = np.asarray(final_losses, dtype=np.float64)
    if losses.ndim == 0 or losses.shape[-1] < 2:
        raise ValueError(
            f"final_losses needs a last axis of at least 2 learning rates, got shape {losses.shape}"
        )
    init = np.asarray(initial_loss, dtype=np.float64)
    if not np.isfinite(init).all():
        raise ValueError(f"initial_loss must be finite, got {initial_loss!r}")
    if init.shape != losses.shape:
        init = init[..., None]
    try:
        init = np.broadcast_to(init, losses.shape)
    except ValueError:
        raise ValueError(
            f"initial_loss of shape {np.shape(initial_loss)} does not fit final_losses of shape "
            f"{losses.shape}: give a number, one per row {losses.shape[:-1]} or one per entry"
        ) from None
    ok = np.isfinite(losses)
    capped = np.where(ok, np.minimum(losses, init), init)
    with np.errstate(invalid="ignore"):
        best = np.where(ok, losses, np.inf).min(axis=-1)
        out = np.where(np.isfinite(best), capped.mean(axis=-1) - best, np.nan)
    return float(out) if out.ndim == 0 else out


def lr_sensitivity_summary(
    curves: pd.DataFrame, *, loss: str = "test_loss", level: float = 0.95
) -> pd.DataFrame:
    """:func:`lr_sensitivity` of every model group of a sweep with a learning-rate axis, with an interval over seeds.

    A group is a scheme (and a value of each other swept axis); within it, seed ``s`` has one final ``loss`` per
    learning rate (the curve's last point; a diverged model counts as its initial loss) and one initial ``loss``
    (the curve's point at step 0, the model at initialization, which the learning rates share). The sensitivity is
    computed per seed, then averaged over seeds with a Student-t interval (:func:`mean_ci`).

    Args:
      curves: a sweep's tidy curves (``result.curves``, ``results.csv``) with a ``learning_rate`` column.
      loss: an evaluated loss column that has a value at initialization: ``test_loss`` or ``val_loss``.
      level: confidence level of the interval.

    Returns:
      One row per group: ``scheme``, the other axis columns, ``lr_sensitivity`` (mean over seeds), ``ci_low``,
      ``ci_high``, ``n`` (seeds), ``n_lrs`` (learning rates), ``initial_loss`` (mean over seeds); in the order of
      the curves.

    Raises:
      ValueError: no ``learning_rate`` column (a sweep of one learning rate), or no ``loss`` column.
    """
    if "learning_rate" not in curves.columns:
        raise ValueError(
            "lr_sensitivity needs a sweep with a learning-rate axis (several learning rates, e.g. "
            "learning_rate=(1e-3, 3e-3, 1e-2)); this one has no learning_rate column"
        )
    if loss not in ("test_loss", "val_loss") or loss not in curves.columns:
        have = [c for c in ("test_loss", "val_loss") if c in curves.columns]
        raise ValueError(
            f"loss must be an evaluated loss column of the curves, one of {have}; got {loss!r}"
        )
    _check_level(level)
    keys = ["scheme"] + [c for c in axis_columns(curves) if c != "learning_rate"]
    c = curves.sort_values("step", kind="stable")
    rows = []
    for group, sub in c.groupby(keys, sort=False):
        group = group if isinstance(group, tuple) else (group,)
        first = sub.groupby(["seed", "learning_rate"]).head(1)
        last = sub.groupby(["seed", "learning_rate"]).tail(1)
        final = last[loss].where(~last["diverged"].astype(bool))
        wide = pd.DataFrame(
            {
                "seed": last["seed"].to_numpy(),
                "lr": last["learning_rate"].to_numpy(),
                "final": final.to_numpy(),
                "init": first[loss].to_numpy(),
            }
        )
        f = wide.pivot(index="seed", columns="lr", values="final").sort_index(axis=1)
        i = wide.pivot(index="seed", columns="lr", values="init").sort_index(axis=1)
        per_seed = lr_sensitivity(f.to_numpy(), i.to_numpy())
        ci = mean_ci(np.atleast_1d(per_seed), level=level)
        rows.append(
            {
                **dict(zip(keys, group, strict=True)),
                "lr_sensitivity": ci.mean,
                "ci_low": ci.low,
                "ci_high": ci.high,
                "n": int(f.shape[0]),
                "n_lrs": int(f.shape[1]),
                "initial_loss": float(i.to_numpy().mean()),
            }
        )
    return pd.DataFrame(rows)

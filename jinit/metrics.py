"""Statistics over seeds and between schemes: is scheme A really better than B, or is that the seed?

Everything here works on plain numpy / pandas values that a sweep writes (final accuracies, per-model test
predictions, tidy learning curves), so it runs the same on a finished run folder as inside the sweep.

Building blocks (each usable on its own):

* :func:`mean_ci` -- mean and confidence interval over seeds (Student t, or percentile bootstrap);
* :func:`churn` -- mean pairwise disagreement between models' test predictions;
* :func:`noise_floor` -- the accuracy standard deviation that independent per-example errors alone produce;
* :func:`steps_to_target` -- first evaluation step at which a curve reaches a target;
* :func:`auc` -- (normalized) area under a curve, e.g. the training loss;
* :func:`compare` -- difference of means between two schemes with CI, p-value and P(A > B);
* :func:`param_sha256` -- a bit-exact fingerprint of a parameter tree;
* :func:`summarize` -- one row per scheme with all of the above (``summary.csv``); its columns are
  documented in :data:`SUMMARY_COLUMNS`.

Example:
    >>> import numpy as np
    >>> from jinit import metrics
    >>> metrics.churn(np.array([[0, 1, 2, 3], [0, 1, 2, 0]]))
    0.25
    >>> r = metrics.compare([0.97, 0.96, 0.98], [0.91, 0.90, 0.92])
    >>> round(r.diff, 2), r.p_a_gt_b
    (0.06, 1.0)

References:
    Jiang, Nagarajan, Baek, Kolter. Assessing generalization of SGD via disagreement. ICLR 2022.
    Jordan. On the variance of neural network training with respect to test sets and distributions.
    ICLR 2024.
    Bouthillier et al. Accounting for variance in machine learning benchmarks. MLSys 2021.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
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
    "scheme_accuracies",
    "mean_ci",
    "noise_floor",
    "param_sha256",
    "steps_to_target",
    "summarize",
]

_CI_METHODS = ("t", "bootstrap")

#: The columns of :func:`summarize` (and of ``summary.csv``), in order, with their meaning.
SUMMARY_COLUMNS: dict[str, str] = {
    "scheme": "initialization scheme name",
    "n": "number of models (seeds) of the scheme, diverged ones included",
    "acc_mean": "mean final test accuracy (fraction in [0, 1]) over the non-diverged models",
    "acc_std": "sample standard deviation (ddof=1) of the final test accuracy (NaN when fewer than 2)",
    "acc_median": "median final test accuracy",
    "acc_ci95_low": "lower end of the 95% confidence interval of acc_mean: Student t by default, percentile "
    "bootstrap with ci_method='bootstrap' (NaN when n < 2)",
    "acc_ci95_high": "upper end of that 95% confidence interval of acc_mean (NaN when n < 2)",
    "acc_min": "lowest final test accuracy",
    "acc_max": "highest final test accuracy",
    "diverged_count": "number of models whose training diverged (non-finite loss); excluded from acc_*",
    "failure_rate": "fraction of the n models that diverged or ended within 1 point of chance (1/classes)",
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
    "noise_floor": "std of accuracy that independent per-example errors alone would give: "
    "sqrt(sum_i p_i (1 - p_i)) / n_test, p_i = fraction of models right on example i (Jordan 2024)",
    "noise_floor_ratio": "acc_std / noise_floor; near 1 means seed variance is test-set sampling noise",
    "p_vs_best": "p-value of the test of this scheme's accuracy against the best scheme's "
    "(paired t-test when both share the same seeds, else Welch's t-test; NaN for the best)",
    "tied_with_best": "True when the difference to the best scheme is not significant (p >= 0.05, or "
    "too few models to test); the best scheme is tied with itself",
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
      p_a_gt_b: probability that A outperforms B: the fraction of seed pairs with A > B (ties count
        one half); over matched seeds when paired, over all pairs otherwise.
      paired: whether the seeds were paired.
      n_a: number of A values used.
      n_b: number of B values used.
    """

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    p_a_gt_b: float
    paired: bool
    n_a: int
    n_b: int


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
) -> CI:
    """Mean of ``x`` and a confidence interval of that mean.

    Args:
      x: one value per seed (NaNs are dropped).
      level: confidence level in (0, 1).
      method: ``"t"`` for the Student-t interval ``mean +- t_{n-1} * s / sqrt(n)``, or ``"bootstrap"`` for
        the percentile bootstrap of the mean (``n_boot`` resamples drawn with ``numpy.random.default_rng(seed)``).
      n_boot: number of bootstrap resamples.
      seed: seed of the bootstrap resampling (the result is deterministic given it).

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
    if method == "t":
        half = float(stats.t.ppf(0.5 + level / 2, n - 1) * a.std(ddof=1) / np.sqrt(n))
        return CI(m, m - half, m + half)
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, n, size=(int(n_boot), n))].mean(axis=1)
    low, high = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return CI(m, float(low), float(high))


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
    """Test-set noise floor of accuracy (Jordan 2024).

    If every test example ``i`` were answered correctly independently with probability ``p_i`` (the fraction of
    models that get it right), the accuracy over ``n`` examples would have standard deviation
    ``sqrt(sum_i p_i (1 - p_i)) / n``. An observed seed-to-seed std near this value means the variance is
    (mostly) finite-test-set noise, not a difference in what the models learned.

    Args:
      correct: boolean (or 0/1) matrix ``[models, examples]``: whether each model is right on each example.

    Returns:
      The noise floor (a standard deviation of accuracy as a fraction); NaN for an empty input.

    Example:
      >>> noise_floor(np.array([[1, 1, 0, 0], [1, 0, 1, 0]]))  # p = 1, .5, .5, 0
      0.1767766952966369
    """
    c = np.asarray(correct, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"correct must have shape [models, examples], got {c.shape}")
    if c.size == 0:
        return float("nan")
    p = c.mean(axis=0)
    return float(np.sqrt(np.sum(p * (1.0 - p))) / c.shape[1])


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


def _p_outperform(a: np.ndarray, b: np.ndarray, paired: bool) -> float:
    if paired:
        gt, eq = a > b, a == b
    else:
        gt, eq = a[:, None] > b[None, :], a[:, None] == b[None, :]
    return float(np.mean(gt + 0.5 * eq))


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


def compare(a: Any, b: Any, *, paired: bool | None = None, level: float = 0.95) -> Comparison:
    """Compares two schemes' per-seed results (e.g. final accuracies): A minus B.

    Unpaired: Welch's t-test (unequal variances), the Welch-Satterthwaite t-interval of the difference of
    means, and P(A > B) over all ``n_a x n_b`` pairs. Paired (both trained with the same seeds, so the same
    data order under the default sweep): the paired t-test and t-interval of the per-seed differences, and
    P(A > B) over matched seeds. When the standard error is exactly zero the p-value is 1 for equal means and
    0 otherwise. NaN values (e.g. diverged runs) are dropped.

    Args:
      a: values of scheme A: a 1-D array, or a ``pd.Series`` indexed by seed.
      b: values of scheme B, likewise.
      paired: ``None`` pairs automatically when ``a`` and ``b`` are both Series indexed by the same set of
        seeds; ``True`` pairs by seed (Series) or by position (arrays of equal length); ``False`` never pairs.
      level: confidence level of the interval.

    Returns:
      A :class:`Comparison`; fields are NaN where there are too few values (fewer than 2 per group).

    Raises:
      ValueError: when ``paired=True`` but the seeds/lengths do not match.

    References:
      Bouthillier et al. Accounting for variance in machine learning benchmarks. MLSys 2021.

    Example:
      >>> import pandas as pd
      >>> r = compare(pd.Series([0.9, 0.8, 0.7]), pd.Series([0.8, 0.7, 0.7]))
      >>> r.paired, round(r.diff, 3), r.p_a_gt_b
      (True, 0.067, 0.8333333333333334)
    """
    level = _check_level(level)
    xa, ia = _seeded(a, "a")
    xb, ib = _seeded(b, "b")
    if paired is None:
        paired = ia is not None and ib is not None and set(ia) == set(ib)
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
    if na == 0 or nb == 0:
        return Comparison(nan, nan, nan, nan, nan, bool(paired), na, nb)
    p_gt = _p_outperform(xa, xb, bool(paired))
    if paired:
        d = xa - xb
        diff = float(d.mean())
        if na < 2:
            return Comparison(diff, nan, nan, nan, p_gt, True, na, nb)
        se = float(d.std(ddof=1) / np.sqrt(na))
        df = na - 1
    else:
        diff = float(xa.mean() - xb.mean())
        if na < 2 or nb < 2:
            return Comparison(diff, nan, nan, nan, p_gt, False, na, nb)
        va, vb = xa.var(ddof=1) / na, xb.var(ddof=1) / nb
        se = float(np.sqrt(va + vb))
        df = se**4 / (va**2 / (na - 1) + vb**2 / (nb - 1)) if se > 0 else na + nb - 2
    # The same t statistic and two-sided p-value as scipy.stats.ttest_rel / ttest_ind(equal_var=False).
    p = float(2 * stats.t.sf(abs(diff) / se, df)) if se > 0 else float(diff == 0)
    half = float(stats.t.ppf(0.5 + level / 2, df) * se)
    return Comparison(diff, diff - half, diff + half, p, p_gt, bool(paired), na, nb)


def scheme_accuracies(models: pd.DataFrame, scheme: Any) -> pd.Series:
    """The final test accuracies of one scheme's non-diverged models, indexed by seed.

    Args:
      models: one row per model with columns ``scheme, seed, diverged`` and ``final_accuracy`` (or
        ``test_accuracy``), as in a run folder's ``models.csv``.
      scheme: the scheme's name.

    Returns:
      A float Series indexed by seed.

    Raises:
      ValueError: for a scheme that is not in the table (listing those that are) or missing columns.
    """
    col = _acc_column(models)
    missing = {"scheme", "seed"} - set(models.columns)
    if col is None or missing:
        raise ValueError(
            f"models table needs scheme, seed and final_accuracy columns; has {list(models.columns)}"
        )
    known = list(dict.fromkeys(models["scheme"]))
    if scheme not in known:
        raise ValueError(f"unknown scheme {scheme!r}; this run has: {', '.join(map(str, known))}")
    sub = models[models["scheme"] == scheme]
    acc = sub[col].to_numpy(np.float64)
    ok = np.isfinite(acc)
    if "diverged" in sub.columns:
        ok &= ~sub["diverged"].fillna(True).to_numpy(bool)
    return pd.Series(acc[ok], index=sub["seed"].to_numpy()[ok], name=str(scheme))


def compare_schemes(
    models: pd.DataFrame, a: Any, b: Any, *, paired: bool | None = None, level: float = 0.95
) -> Comparison:
    """:func:`compare` of two schemes of a run: final accuracy of ``a`` minus that of ``b``.

    Diverged models are left out; the comparison is paired by seed when both schemes have the same
    non-diverged seeds (``paired=None``), as under the sweep's default ``vary="init"`` every seed sees the same
    data order whatever the scheme.

    Args:
      models: the run's one-row-per-model table (see :func:`scheme_accuracies`).
      a: name of scheme A.
      b: name of scheme B.
      paired: see :func:`compare`.
      level: confidence level.

    Returns:
      A :class:`Comparison`.

    Example:
      >>> import pandas as pd
      >>> m = pd.DataFrame({"scheme": ["he"] * 3 + ["zeros"] * 3, "seed": [0, 1, 2] * 2,
      ...                   "final_accuracy": [.97, .96, .97, .11, .11, .11], "diverged": [False] * 6})
      >>> r = compare_schemes(m, "he", "zeros")
      >>> r.paired, round(r.diff, 3), r.p_a_gt_b
      (True, 0.857, 1.0)
    """
    return compare(
        scheme_accuracies(models, a), scheme_accuracies(models, b), paired=paired, level=level
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
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    for path, leaf in leaves:
        arr = np.asarray(leaf)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        h.update(jax.tree_util.keystr(path).encode())
        h.update(str(arr.dtype).encode())
        h.update(repr(tuple(arr.shape)).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _acc_column(models: pd.DataFrame) -> str | None:
    for col in ("final_accuracy", "test_accuracy"):
        if col in models.columns:
            return col
    return None


def summarize(
    curves: pd.DataFrame,
    models: pd.DataFrame,
    predictions: np.ndarray,
    y_test: np.ndarray,
    *,
    num_classes: int,
    target_accuracy: float | None = None,
    ci_method: str = "t",
) -> pd.DataFrame:
    """One row per scheme of accuracy, convergence, agreement and noise statistics (``summary.csv``).

    Diverged models are excluded from every accuracy, churn, noise-floor and loss statistic (so no NaN
    means) and counted in ``diverged_count`` / ``failure_rate``. Schemes are ordered by ``acc_mean``
    (descending; all-diverged schemes last), and ``tied_with_best`` marks those whose difference to the first
    row is not significant at the 5% level (see :func:`compare`; paired by seed when both schemes have the same
    non-diverged seeds).

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

    Returns:
      A DataFrame with the columns of :data:`SUMMARY_COLUMNS`, in that order.

    Raises:
      ValueError: for missing columns, mismatched shapes or a bad ``num_classes`` / ``target_accuracy`` /
        ``ci_method``.
    """
    if ci_method not in _CI_METHODS:
        raise ValueError(f"unknown ci_method {ci_method!r}; valid: {', '.join(_CI_METHODS)}")
    need = {"scheme", "seed", "diverged"}
    missing = need - set(models.columns)
    if missing:
        raise ValueError(
            f"models table lacks column(s) {sorted(missing)}; has {list(models.columns)}"
        )
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if target_accuracy is not None and not 0.0 <= float(target_accuracy) <= 1.0:
        raise ValueError(f"target_accuracy is a fraction in [0, 1], got {target_accuracy}")
    preds = np.asarray(predictions)
    y = np.asarray(y_test)
    if preds.ndim != 2 or preds.shape[0] != len(models) or y.shape != (preds.shape[1],):
        raise ValueError(
            f"predictions must be [models={len(models)}, n_test] and y_test [n_test]; got {preds.shape} and {y.shape}"
        )
    if len(curves):
        cmissing = {"scheme", "seed", "step", "epoch", "train_loss", "test_accuracy"} - set(
            curves.columns
        )
        if cmissing:
            raise ValueError(
                f"curves table lacks column(s) {sorted(cmissing)}; has {list(curves.columns)}"
            )

    models = models.reset_index(drop=True)
    correct = preds == y[None, :]
    acc_col = _acc_column(models)
    acc_all = models[acc_col].to_numpy(np.float64) if acc_col else correct.mean(axis=1)
    diverged_all = models["diverged"].fillna(True).to_numpy(bool) | ~np.isfinite(acc_all)
    chance = 1.0 / int(num_classes)
    nan = float("nan")

    rows = []
    per_scheme_acc: dict[Any, pd.Series] = {}
    for scheme, idx in models.groupby("scheme", sort=False).indices.items():
        ok = idx[~diverged_all[idx]]
        acc = acc_all[ok]
        seeds = models["seed"].to_numpy()[ok]
        per_scheme_acc[scheme] = pd.Series(acc, index=seeds)
        ci = mean_ci(acc, method=ci_method)
        n = len(idx)
        failed = diverged_all[idx] | (acc_all[idx] <= chance + 0.01)
        row: dict[str, Any] = {
            "scheme": scheme,
            "n": n,
            "acc_mean": ci.mean,
            "acc_std": float(acc.std(ddof=1)) if acc.size > 1 else nan,
            "acc_median": float(np.median(acc)) if acc.size else nan,
            "acc_ci95_low": ci.low,
            "acc_ci95_high": ci.high,
            "acc_min": float(acc.min()) if acc.size else nan,
            "acc_max": float(acc.max()) if acc.size else nan,
            "diverged_count": int(diverged_all[idx].sum()),
            "failure_rate": float(failed.mean()),
        }
        row.update(
            _convergence(
                curves, scheme, models["seed"].to_numpy()[idx], set(seeds), target_accuracy
            )
        )
        c = churn(preds[ok])
        err = 1.0 - ci.mean
        row["churn"] = c
        row["churn_error_ratio"] = c / err if err > 0 else nan
        nf = noise_floor(correct[ok]) if ok.size else nan
        row["noise_floor"] = nf
        row["noise_floor_ratio"] = row["acc_std"] / nf if nf > 0 else nan
        rows.append(row)

    out = pd.DataFrame(rows)
    if out.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    out = out.sort_values("acc_mean", ascending=False, na_position="last", kind="stable")
    out = out.reset_index(drop=True)
    best = out["scheme"].iloc[0]
    pvals, tied = [], []
    for scheme in out["scheme"]:
        if scheme == best:
            pvals.append(nan)
            tied.append(True)
            continue
        p = compare(per_scheme_acc[best], per_scheme_acc[scheme]).p_value
        pvals.append(p)
        tied.append(bool(np.isnan(p) or p >= 0.05) and per_scheme_acc[scheme].size > 0)
    out["p_vs_best"] = pvals
    out["tied_with_best"] = tied
    return out[list(SUMMARY_COLUMNS)]


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

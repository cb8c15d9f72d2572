"""A sweep's results as text: the summary tables ``jinit sweep`` / ``jinit report`` print, the comparison of two
schemes, the tuned values of an axis and the determinism check.

Every function returns a string and prints nothing; :mod:`jinit.cli` prints them. The numbers come from
:mod:`jinit.metrics` (through :class:`jinit.results.SweepResult`); this module only formats them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

_AXIS_SHORT = {
    "learning_rate": "lr",
    "weight_decay": "wd",
    "init_scale": "scale",
    "compute_dtype": "compute",
    "state_dtype": "state",
}


def _num(fmt: str):
    return lambda v: "-" if pd.isna(v) else format(v, fmt)


def _pct(v) -> str:
    return "-" if pd.isna(v) else f"{100 * v:.2f}"


def group_names(table: pd.DataFrame) -> pd.Series:
    """The ``scheme`` column of a summary, with its axis values (``he_normal lr=0.001``) when it has axis
    columns (:data:`jinit.metrics.AXIS_COLUMNS`)."""
    from jinit import metrics

    names = table["scheme"].astype(str)
    for a in metrics.axis_columns(table):
        names = names + f" {_AXIS_SHORT[a]}=" + table[a].map(metrics.axis_value_text)
    return names


def summary_tables(table: pd.DataFrame, *, target: bool) -> tuple[str, str]:
    """The two tables of a sweep's summary (:func:`jinit.metrics.summarize`), as text.

    The first is the final test accuracy over seeds (percent): mean, std beside the test-set noise floor (``<``
    one test example when the seeds spread less), median, 95% CI (``deterministic`` for a scheme whose seeds all
    gave the same model; ``floor`` when a random scheme's seeds spread less than one test example and the interval
    takes one example as its standard deviation), interquartile mean, min/max, diverged models and failure rate;
    ``*`` marks the rows not distinguishable from the best (the 95% confidence set for the best scheme, or init
    draw under ``vary="data"``: the ``verdict_about`` column). The second is convergence and agreement between
    seeds: steps (and epochs) to ``target_accuracy`` (when set), the area under the training-loss curve, churn and
    the churn / error ratio.
    :func:`versus_best_table` gives the comparisons with the best.
    """

    def ci(row):
        if row["deterministic"]:
            return "deterministic"
        text = f"[{_pct(row['acc_ci95_low'])}, {_pct(row['acc_ci95_high'])}]"
        return text + " floor" if row.get("ci_floored", False) else text

    def std(row):
        res = row.get("acc_resolution", float("nan"))
        if row.get("ci_floored", False) and pd.notna(res):
            return f"<{_pct(res)}"  # less than one test example: not a measured zero spread
        return _pct(row["acc_std"])

    acc = pd.DataFrame(
        {
            "": ["*" if t else "" for t in table["in_best_set"]],
            "scheme": group_names(table),
            "n": table["n"],
            "acc%_mean": table["acc_mean"].map(_pct),
            "std": [std(r) for _, r in table.iterrows()],
            "noise_floor": table["noise_floor"].map(_pct),
            "median": table["acc_median"].map(_pct),
            "ci95": [ci(r) for _, r in table.iterrows()],
            "iqm": table["acc_iqm"].map(_pct),
            "min": table["acc_min"].map(_pct),
            "max": table["acc_max"].map(_pct),
            "diverged": table["diverged_count"],
            "failure_rate": table["failure_rate"].map(_num(".2f")),
        }
    )
    conv = {"scheme": group_names(table)}
    if target:
        conv.update(
            steps_to_target=table["steps_to_target_median"].map(_num(".0f")),
            iqr=table["steps_to_target_iqr"].map(_num(".0f")),
            epochs=table["epochs_to_target_median"].map(_num(".2f")),
            never=table["target_never_fraction"].map(_num(".2f")),
        )
    conv.update(
        train_loss_auc=table["train_loss_auc"].map(_num(".4f")),
        churn=table["churn"].map(_num(".4f")),
        churn_per_error=table["churn_error_ratio"].map(_num(".2f")),
        std_per_noise_floor=table["noise_floor_ratio"].map(_num(".2f")),
    )
    return acc.to_string(index=False), pd.DataFrame(conv).to_string(index=False)


def _verdicts(table: pd.DataFrame) -> list[str]:
    return [
        "best" if i == 0 else ("not distinguishable" if in_set else "worse")
        for i, in_set in enumerate(table["in_best_set"])
    ]


def versus_best_table(table: pd.DataFrame) -> str:
    """Each scheme against the best one (the first row of :func:`jinit.metrics.summarize`), as text: the verdict
    of the 95% confidence set for the best beside the p-value that decides it (``p_set``: one-sided,
    Bonferroni-adjusted over the k - 1 comparisons; ``worse`` exactly when it is below 0.05), the test used, the
    probability of improvement P(scheme > best) over all pairs of runs with its 95% interval, the smallest gap the
    seeds could detect (80% power) and the seeds per scheme needed to detect a 1-point gap. The two-sided,
    uncorrected ``p_vs_best`` and the rank test's p are in ``summary.csv``, not beside the one-sided verdict."""

    def poi(row):
        if pd.isna(row["poi_vs_best"]):
            return "-"
        if pd.isna(row["poi_ci95_low"]):
            return f"{row['poi_vs_best']:.2f}"
        return f"{row['poi_vs_best']:.2f} [{row['poi_ci95_low']:.2f}, {row['poi_ci95_high']:.2f}]"

    out = pd.DataFrame(
        {
            "scheme": group_names(table),
            "vs_best": _verdicts(table),
            "p_set(1-sided,adj)": table["p_best_set"].map(_num(".2g")),
            "test": table["test_vs_best"].replace("", "-"),
            "P(>best) [95% CI]": [poi(r) for _, r in table.iterrows()],
            "mdd%": (100 * table["mdd_vs_best"]).map(_num(".2f")),
            "seeds_for_1pt": table["seeds_to_detect"].map(_num(".0f")),
        }
    )
    return out.to_string(index=False)


def _seeds(table: pd.DataFrame) -> str:
    n = table["n"]
    return f"{n.min()}" if n.min() == n.max() else f"{n.min()}-{n.max()}"


def _metric_summary(result) -> str:
    """The summary of a sweep whose metric is not the accuracy (regression, a custom task): the metric's name,
    its direction and its values in its own units (no percents, no class-agreement columns)."""
    metric, better = result.metric, "higher" if result.higher_is_better else "lower"
    table = result.summary()
    num = _num(".4g")

    def ci(row):
        if row["deterministic"]:
            return "deterministic"
        return f"[{num(row[f'{metric}_ci95_low'])}, {num(row[f'{metric}_ci95_high'])}]"

    cols = {
        "": ["*" if t else "" for t in table["in_best_set"]],
        "scheme": table["scheme"],
        "n": table["n"],
        f"{metric}_mean": table[f"{metric}_mean"].map(num),
        "std": table[f"{metric}_std"].map(num),
        "ci95": [ci(r) for _, r in table.iterrows()],
        "min": table[f"{metric}_min"].map(num),
        "max": table[f"{metric}_max"].map(num),
    }
    others = [c for c in result.models.columns if c.startswith("final_") and c != f"final_{metric}"]
    ok = result.models[~result.models["diverged"].astype(bool)]
    for c in others:  # the other metrics and the losses: mean over the non-diverged seeds
        means = ok.groupby("scheme")[c].mean()
        cols[f"{c[len('final_') :]}_mean"] = table["scheme"].map(means).map(num)
    cols["diverged"] = table["diverged_count"]
    unit = _unit(table)
    lines = [
        f"final test {metric} over seeds ({better} is better; * = not distinguishable from the best at "
        f"{_seeds(table)} seeds: the 95% confidence set for the best {unit})",
        pd.DataFrame(cols).to_string(index=False),
    ]
    if len(table) > 1:
        out = pd.DataFrame(
            {
                "scheme": table["scheme"],
                "vs_best": _verdicts(table),
                "p_set(1-sided,adj)": table["p_best_set"].map(num),
                "test": table["test_vs_best"].replace("", "-"),
                f"mdd ({metric})": table["mdd_vs_best"].map(num),
            }
        )
        lines += [
            "",
            f"versus the best ({_replication(result).note}; worse = outside the 95% confidence set for the best "
            f"{unit}: p_set, the one-sided p that another row is better, Bonferroni-adjusted, is below 0.05; mdd "
            f"= smallest gap in {metric} detectable with 80% power at these seeds)",
            out.to_string(index=False),
        ]
    return "\n".join(lines)


def _replication(result) -> Any:
    """What the sweep's seeds replicated (:func:`jinit.metrics.replication` of its ``vary``)."""
    from jinit import metrics

    return metrics.replication(getattr(result.config, "vary", "init"))


def _unit(table: pd.DataFrame) -> str:
    """``scheme``, or ``init draw`` when the summary compares one init draw per scheme (``vary="data"``)."""
    if "verdict_about" in table.columns and len(table):
        return str(table["verdict_about"].iloc[0])
    return "scheme"


def summary(result) -> str:
    """What ``jinit sweep`` and ``jinit report`` print about a sweep: the accuracy table, convergence and
    agreement between seeds, each scheme against the best, and the deterministic schemes (or, for a task whose
    metric is not the accuracy, the metric's table in its own units)."""
    if getattr(result, "metric", "accuracy") != "accuracy":
        return _metric_summary(result)
    target = getattr(result.config, "target_accuracy", None)
    table = result.summary()
    accuracy, convergence = summary_tables(table, target=target is not None)
    title = "convergence and agreement between seeds"
    if target is not None:
        title += f" (target accuracy {100 * target:g}%)"
    unit = _unit(table)
    lines = [
        f"final test accuracy over seeds (%; * = not distinguishable from the best at {_seeds(table)} seeds: "
        f"the 95% confidence set for the best {unit})",
        accuracy,
        "",
        title,
        convergence,
    ]
    if len(table) > 1:
        lines += [
            "",
            f"versus the best ({_replication(result).note}; worse = outside the 95% confidence set for the best "
            f"{unit}: p_set, the one-sided p that another row is better, Bonferroni-adjusted over "
            f"{len(table) - 1} comparisons, is below 0.05; P(>best) = rliable's probability of improvement, over "
            "all pairs of runs; mdd = smallest gap detectable with 80% power at these seeds, and seeds_for_1pt = "
            "seeds per scheme to detect 1 point, both by that test)",
            versus_best_table(table),
        ]
    from jinit import metrics

    axes = metrics.axis_columns(table)
    if axes:
        lines += [
            "",
            f"axes ({', '.join(axes)}): the values of one scheme share each seed's init draw and batches, so they "
            "replicate the same randomness and are paired by seed (jinit.metrics.compare_axis_values); the table "
            "above compares every row with the best unpaired, which is conservative",
        ]
    det = group_names(table)[table["deterministic"].to_numpy(bool)].tolist()
    if det:
        lines += [
            "",
            f"deterministic ({', '.join(map(str, det))}): every seed gave the same model (same param_sha256), "
            "so there is one result, not a tight interval; its value depends on the rounding path (device, layout)",
        ]
    floored = (
        group_names(table)[table["ci_floored"].to_numpy(bool)].tolist()
        if "ci_floored" in table
        else []
    )
    if floored:
        res = 100 * float(table["acc_resolution"].iloc[0])
        lines += [
            "",
            f"floor ({', '.join(map(str, floored))}): different models whose accuracies spread less than one test "
            f"example ({res:.2f} points); the 95% CI takes one example as the standard deviation, since equal "
            "discrete values do not show a zero spread",
        ]
    return "\n".join(lines)


def run_line(result) -> str:
    """One line on what a sweep trained and how long it took (``jinit sweep``'s first line)."""
    m, config = result.meta, result.config
    grid = "".join(
        f" x {len(v)} {a.replace('_', ' ')} values" for a, v in m.get("axes", {}).items()
    )
    val = f"{m['n_val']} validation / " if "n_val" in m else ""
    return (
        f"{m['n_models']} models ({len(m['schemes'])} schemes{grid} x {config.seeds} seeds), {config.epochs} "
        f"epoch(s) on {m['dataset']} ({m['n_train']} train / {val}{m['n_test']} test), "
        f"{m['device_count']} {m['platform']} device(s): compile {m['compile_seconds']:.1f} s, "
        f"train {m['train_seconds']:.1f} s, wall {m['wall_seconds']:.1f} s"
    )


def _metric_comparison(result, a: str, b: str) -> str:
    """The comparison of two schemes of a sweep whose metric is not the accuracy, in the metric's units."""
    r = result.compare(a, b)
    metric = result.metric
    why = "paired by seed" if r.paired else "unpaired: seed s of A and of B share nothing"
    rep = _replication(result)
    better = "higher" if result.higher_is_better else "lower"
    verdict = "significant" if r.p_value < 0.05 else "not distinguishable"
    return "\n".join(
        [
            f"{a} vs {b} (final test {metric}, {better} is better, {r.n_a} vs {r.n_b} seeds, {why}):",
            f"  difference of means (A - B): {r.diff:+.4g}, 95% CI [{r.ci_low:+.4g}, {r.ci_high:+.4g}]",
            f"  {r.test}: p = {r.p_value:.3g} (two-sided: {verdict} at 5%); {r.rank_test}: p = "
            f"{r.p_rank:.3g} (two-sided)",
            f"  what was replicated: {rep.replicated}; {rep.note}",
        ]
    )


def comparison(result, a: str, b: str) -> str:
    """``jinit report --compare A B``: the difference of the means with its 95% CI, the test and the rank test,
    P(A > B) with its interval, and the smallest difference the seeds could detect."""
    if result.metric != "accuracy":
        return _metric_comparison(result, a, b)
    from jinit import metrics

    models, vary = result.models, result.config.vary
    r = metrics.compare_schemes(models, a, b, vary=vary)
    rep = metrics.replication(vary)
    why = "paired by seed" if r.paired else "unpaired: seed s of A and of B share nothing"
    verdict = "significant" if r.p_value < 0.05 else "not distinguishable"
    xa, xb = metrics.scheme_accuracies(models, a), metrics.scheme_accuracies(models, b)
    if r.paired:
        common = xa.index.intersection(xb.index)
        xa, xb = xa.loc[common], xb.loc[common]
    poi = metrics.probability_of_improvement(xa.to_numpy(), xb.to_numpy(), paired=r.paired)
    matched = (
        f"; on matched seeds A wins {r.matched_win_rate:.2f} (ties 1/2: the matched-seed win rate, not P(A > B))"
        if r.paired
        else ""
    )
    mdd = metrics.min_detectable_difference(xa, xb, paired=r.paired)
    need = metrics.seeds_needed(xa, xb, 0.01, paired=r.paired)
    return "\n".join(
        [
            f"{a} vs {b} (final accuracy, {r.n_a} vs {r.n_b} non-diverged seeds, vary={vary!r}, {why}):",
            f"  difference of means (A - B): {100 * r.diff:+.2f} points, "
            f"95% CI [{100 * r.ci_low:+.2f}, {100 * r.ci_high:+.2f}]",
            f"  {r.test}: p = {r.p_value:.3g} (two-sided: {verdict} at 5%); {r.rank_test}: p = "
            f"{r.p_rank:.3g} (two-sided)",
            f"  P(A > B) over all pairs of runs (rliable's probability of improvement): {poi.mean:.2f}, 95% CI "
            f"[{poi.low:.2f}, {poi.high:.2f}] (stratified bootstrap){matched}",
            f"  smallest difference detectable with 80% power at these seeds: {100 * mdd:.2f} points; "
            f"seeds per scheme to detect 1 point: {need:.0f}",
            f"  what was replicated: {rep.replicated}; {rep.note}",
        ]
    )


def tuned(table: pd.DataFrame, axis: str) -> str:
    """The table of :func:`jinit.metrics.tune`, as text, saying what the choice was made on."""
    on, report = table["chosen_on"].iloc[0], table["report"].iloc[0]
    where = (
        "validation"
        if "val" in on
        else f"{on} (the test set the value is judged on: biased upward)"
    )
    percent = "accuracy" in str(report)

    def pct(v):
        return "-" if pd.isna(v) else (f"{100 * v:.2f}" if percent else f"{v:.4g}")

    out = table.drop(columns=["chosen_on", "report"]).copy()
    out["values"] = out["values"].map(lambda vs: ",".join(f"{v:g}" for v in vs))
    for c in ("on_mean", "report_mean"):
        out[c] = out[c].map(pct)
    out["ci95"] = [
        f"[{pct(lo)}, {pct(hi)}]"
        for lo, hi in zip(table["report_ci_low"], table["report_ci_high"], strict=True)
    ]
    out = out.drop(columns=["report_ci_low", "report_ci_high"]).rename(
        columns={
            "on_mean": f"chosen on: {on}" + ("%" if "accuracy" in str(on) else ""),
            "report_mean": f"{report}" + ("%" if percent else ""),
        }
    )
    return (
        f"{axis} tuned per scheme: chosen on {where}; {report} at the chosen value (mean, 95% CI over seeds)\n"
        + out.to_string(index=False)
    )


def determinism(r: Any) -> str:
    """A :class:`jinit.sweep.DeterminismReport` as the lines ``jinit sweep --check-determinism`` prints."""
    models = ", ".join(f"{scheme} seed {s}" for scheme, s in r.models)
    n = len(r.models)
    same = sum(a == b for a, b in zip(r.sha256_first, r.sha256_second, strict=True))
    same_layout = sum(a == b for a, b in zip(r.sha256_first, r.sha256_layout, strict=True))
    return "\n".join(
        [
            f"determinism check: {n} models ({models}), {r.epochs} epoch(s), trained twice",
            f"  final params bitwise identical: {'yes' if r.bitwise_identical else 'NO'} (param_sha256 equal "
            f"for {same}/{n})",
            f"  same models in another layout bitwise identical: {'yes' if r.layout_identical else 'NO'} "
            f"(param_sha256 equal for {same_layout}/{n}; {r.layouts[0]} vs {r.layouts[1]})",
            f"  max |vmapped sweep - trained alone| over final params: {r.max_abs_diff_alone:.3g}",
        ]
    )

"""The classic initializer table on MNIST, with error bars.

The initializer tutorials train the Keras MLP 784-128-64-10 (ReLU, zero biases, Adam 1e-3, batch 32, 5 epochs)
once per initializer and rank initializers by that one run. This script trains every scheme with many seeds in one
sweep, puts the tutorial's single-run numbers beside jinit's mean +- 95% CI, and tests each pairwise ordering of
the single-run ranking (Welch's t-test: under ``vary="init"`` seed s of two schemes shares nothing, so seeds are
not paired).

Writes ``run/`` (the sweep's run folder), ``report.md`` and PNG figures under ``experiments/results/init_table/``.

Usage::

    python experiments/init_table.py                  # full: 13 schemes x 20 seeds x 5 epochs on MNIST
    python experiments/init_table.py --smoke --out /tmp/t   # seconds, on the embedded digits dataset
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import _common as C
import numpy as np
import pandas as pd

import jinit
from jinit import metrics, plots, sweep

NAME = "init_table"
SCHEMES = (
    "zeros",
    "ones",
    "random_normal",
    "random_uniform",
    "truncated_normal",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "orthogonal",
    "identity",
)
#: Test accuracy (%) of ONE run per initializer in the classic Keras tutorial (same model and training).
SINGLE_RUN = {
    "zeros": 11.35,
    "random_uniform": 97.55,
    "glorot_uniform": 97.71,
    "glorot_normal": 97.83,
    "he_uniform": 97.40,
    "he_normal": 97.69,
}


def label(name: str) -> str:
    """The sweep's label of a scheme name (``random_normal`` is the scheme ``normal``)."""
    return jinit.get(name).name


def config(args) -> sweep.SweepConfig:
    common = dict(
        model="mlp",
        hidden=(128, 64),
        activation="relu",
        schemes=SCHEMES,
        bias_init="zeros",
        optimizer="adam",
        learning_rate=1e-3,
        batch_size=32,
        vary="init",
        target_accuracy=C.pick(args, "target", 0.97, 0.8),
    )
    if args.smoke:
        return sweep.SweepConfig(
            dataset="digits",
            seeds=C.pick(args, "seeds", 20, 2),
            epochs=C.pick(args, "epochs", 5, 1),
            **common,
        )
    return sweep.SweepConfig(
        dataset="mnist",
        data_dir=args.data_dir,
        seeds=C.pick(args, "seeds", 20, 2),
        epochs=C.pick(args, "epochs", 5, 1),
        **common,
    )


def scheme_table(summary: pd.DataFrame) -> pd.DataFrame:
    single = {label(k): v for k, v in SINGLE_RUN.items()}
    rows = []
    for _, r in summary.iterrows():
        s = single.get(r["scheme"])
        rows.append(
            {
                "scheme": r["scheme"],
                "single run (tutorial)": "" if s is None else f"{s:.2f}",
                "jinit mean ± 95% CI": C.row_pm(r),
                "IQM [95% CI]": C.iqm_text(r),
                "std": C.pct(r["acc_std"]),
                "min – max": f"{C.pct(r['acc_min'])} – {C.pct(r['acc_max'])}",
                "seeds": int(r["n"]),
                "diverged": int(r["diverged_count"]),
                "failure rate": f"{r['failure_rate']:.2f}",
                "churn": f"{r['churn']:.3f}" if np.isfinite(r["churn"]) else "-",
                "vs best": C.best_text(summary, r),
                "P(> best) [95% CI]": C.poi_text(r),
                "detectable gap": C.pct(r["mdd_vs_best"]),
            }
        )
    return pd.DataFrame(rows)


def pairwise(
    models: pd.DataFrame, present: set[str], vary: str = "init", paired: bool | None = None
) -> pd.DataFrame:
    """Every ordering ``A above B`` of the single-run ranking, tested on the sweep: Welch's t-test under
    ``vary="init"`` (seeds not paired), the paired t-test under ``"data"``/``"both"`` (``paired`` overrides)."""
    single = {label(k): v for k, v in SINGLE_RUN.items() if label(k) in present}
    ranked = sorted(single, key=single.get, reverse=True)
    rows = []
    for a, b in itertools.combinations(ranked, 2):
        r = metrics.compare_schemes(models, a, b, vary=vary, paired=paired)
        verdict = C.verdict(r)
        xa, xb = metrics.scheme_accuracies(models, a), metrics.scheme_accuracies(models, b)
        if r.paired:
            common = xa.index.intersection(xb.index)
            xa, xb = xa.loc[common], xb.loc[common]
        rows.append(
            {
                "A": a,
                "B": b,
                "single-run gap": single[a] - single[b],
                "diff": r.diff,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "p": r.p_value,
                "P(A>B)": r.p_a_gt_b,
                "test": r.test,
                "detectable": metrics.min_detectable_difference(xa, xb, paired=r.paired),
                "verdict": verdict,
            }
        )
    df = pd.DataFrame(rows)
    if len(df):
        df["holds after Holm"] = C.holm(df["p"].to_numpy()) & (df["diff"] > 0).to_numpy()
    return df


def survival_paragraph(pairs: pd.DataFrame, n_seeds: int) -> str:
    if pairs.empty:
        return "None of the tutorial's schemes were in this run, so no ordering could be tested."
    n = len(pairs)

    def names(df):
        return ", ".join(f"{a} > {b}" for a, b in zip(df["A"], df["B"], strict=True)) or "none"

    holds = pairs[pairs["verdict"] == "holds"]
    rev = pairs[pairs["verdict"] == "reversed"]
    unres = pairs[~pairs["verdict"].isin(["holds", "reversed"])]
    holm_n = int(pairs["holds after Holm"].sum())
    test = pairs["test"].iloc[0] if "test" in pairs else "t-test"
    text = (
        f"Of the {n} pairwise orderings implied by the single-run ranking, **{len(holds)} survive the error "
        f"bars** (the 95% CI of the difference of means, {test}, over {n_seeds} seeds excludes zero, in the "
        f"same direction): {names(holds)}. "
    )
    if len(rev):
        text += f"**{len(rev)} {'is' if len(rev) == 1 else 'are'} reversed** (significantly the other way): {names(rev)}. "
    text += (
        f"**{len(unres)} cannot be told apart** at this number of seeds: {names(unres)}. "
        f"With a Holm-Bonferroni correction for the {n} comparisons, {holm_n} hold at family-wise level 5%. "
    )
    close = pairs[pairs["single-run gap"].abs() < 0.5]
    if len(close):
        p_gt = close["P(A>B)"].to_numpy()
        n_unres = int((~close["verdict"].isin(["holds"])).sum())
        text += (
            f"Of the {len(close)} orderings whose single-run gap was under half a point, {n_unres} do not hold; "
            f"over those {len(close)} pairs a run of A beat a run of B in {100 * p_gt.mean():.0f}% of the pairs "
            "of seeds on average (probability of improvement)"
        )
        text += (
            ": a gap that small between two single runs is not evidence of a ranking."
            if n_unres > len(close) / 2
            else "."
        )
    return text


def _deterministic_note(models: pd.DataFrame) -> str:
    same = C.identical_across_seeds(models)
    if not same:
        return ""
    return (
        f"{', '.join(same)}: every seed ended with bit-identical parameters (`param_sha256`): the init has no "
        "randomness and all seeds see the same data order, so their spread is exactly zero, not a tight CI. "
    )


def forest_plot(summary: pd.DataFrame):
    import matplotlib.pyplot as plt

    single = {label(k): v / 100 for k, v in SINGLE_RUN.items()}
    ok = summary[summary["acc_mean"] >= 0.5].iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(ok) + 1.5))
    y = np.arange(len(ok))
    lo = (ok["acc_mean"] - ok["acc_ci95_low"]).fillna(0).to_numpy()
    hi = (ok["acc_ci95_high"] - ok["acc_mean"]).fillna(0).to_numpy()
    ax.errorbar(
        100 * ok["acc_mean"],
        y,
        xerr=100 * np.vstack([lo, hi]),
        fmt="o",
        capsize=3,
        label="jinit: mean ± 95% CI over seeds",
    )
    ax.scatter(100 * ok["acc_min"], y, marker="|", color="gray", label="jinit: min / max seed")
    ax.scatter(100 * ok["acc_max"], y, marker="|", color="gray")
    sx = [100 * single[s] for s in ok["scheme"] if s in single]
    sy = [i for i, s in enumerate(ok["scheme"]) if s in single]
    ax.scatter(sx, sy, marker="x", color="red", zorder=3, label="tutorial: one run")
    ax.set_yticks(y)
    ax.set_yticklabels(ok["scheme"])
    ax.set_xlabel("final test accuracy (%)")
    low = summary[summary["acc_mean"] < 0.5]["scheme"].tolist()
    note = f"\n(not shown, mean < 50%: {', '.join(low)})" if low else ""
    ax.set_title(f"Single runs vs the seed distribution{note}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False)
    fig.tight_layout()
    return fig


def verdicts(summary: pd.DataFrame, pairs: pd.DataFrame) -> dict[str, str]:
    """This report's verdicts: each scheme against the best, each single-run ordering."""
    out = {f"{s} vs best": v for s, v in C.best_verdicts(summary).items()}
    out.update(
        {
            f"{a} > {b}": v
            for a, b, v in zip(
                pairs.get("A", []), pairs.get("B", []), pairs.get("verdict", []), strict=True
            )
        }
    )
    return out


def old_verdicts(models: pd.DataFrame, present: set[str]) -> dict[str, str]:
    """The verdicts of the statistics before issue 14 on the same models (paired by seed number)."""
    out = {f"{s} vs best": v for s, v in C.old_best_verdicts(models).items()}
    acc = {s: set(metrics.scheme_accuracies(models, s).index) for s in present}
    single = [label(k) for k in SINGLE_RUN if label(k) in present]
    for a, b in itertools.combinations(single, 2):
        for x, y in ((a, b), (b, a)):
            r = metrics.compare_schemes(models, x, y, paired=acc[x] == acc[y])
            out[f"{x} > {y}"] = C.verdict(r)
    return out


def report(result, out: Path, command: str) -> Path:
    cfg = result.config
    summary = result.summary()
    pairs = pairwise(result.models, set(summary["scheme"]), vary=cfg.vary)
    figs = [
        C.save_figure(forest_plot(summary), out / "ci_vs_single_run.png"),
        *[p.name for p in plots.save_all(result, out)],
    ]
    ptable = pairs
    if len(pairs):
        ptable = pairs.assign(
            **{
                "single-run gap": pairs["single-run gap"].map(lambda v: f"{v:+.2f}"),
                "jinit A − B (95% CI)": [
                    f"{100 * d:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]"
                    for d, lo, hi in zip(
                        pairs["diff"], pairs["ci_low"], pairs["ci_high"], strict=True
                    )
                ],
                "p": pairs["p"].map(lambda v: f"{v:.2g}"),
                "P(A>B)": pairs["P(A>B)"].map(lambda v: f"{v:.2f}"),
                "test": pairs["test"],
                "detectable gap": pairs["detectable"].map(C.pct),
                "holds after Holm": pairs["holds after Holm"].map(lambda v: "yes" if v else "no"),
            }
        )[
            [
                "A",
                "B",
                "single-run gap",
                "jinit A − B (95% CI)",
                "p",
                "test",
                "P(A>B)",
                "detectable gap",
                "verdict",
                "holds after Holm",
            ]
        ]
    data = f"{cfg.dataset}" + (
        f" (first {cfg.train_size} training examples)" if cfg.train_size else ""
    )
    setup = (
        f"Model: MLP with hidden layers {'-'.join(map(str, cfg.hidden))} ({cfg.activation}, zero biases), "
        f"{cfg.optimizer} lr={cfg.learning_rate:g}, batch {cfg.batch_size}, {cfg.epochs} epochs, on {data} "
        f"({result.meta.get('n_train')} train / {result.meta.get('n_test')} test). "
        f"{cfg.seeds} seeds per scheme, {len(summary)} schemes, {len(result.models)} models trained in one sweep. "
        f"`vary={cfg.vary!r}`: the seed changes only the initialization; every model sees the same batches in "
        "the same order, so every difference between two models comes from their initializations. "
        + (
            "Seed s of two schemes has independent initial parameters and shares nothing else that other seeds "
            "do not, so two schemes are compared unpaired: Welch's t-test (and the Mann-Whitney probability of "
            "improvement). "
            if cfg.vary == "init"
            else "Seed s fixes the data order of every scheme, so two schemes are compared by the paired t-test. "
        )
        + C.run_facts([result])
    )
    if cfg.dataset != "mnist":
        setup += (
            f"\n\n**Smoke run on `{cfg.dataset}`**: the numbers below are not comparable with the tutorial's "
            "MNIST numbers; this run only checks that the script works."
        )
    sections = [
        "The classic initializer tutorials rank initializers by one training run each. Here every scheme is "
        "trained with many seeds, and the tutorial's single-run numbers (Keras, one run each) are set beside "
        "jinit's mean ± 95% confidence interval (Student t over seeds). Accuracies are in percent.",
        "## Setup\n\n" + setup,
        "## Accuracy per scheme\n\n"
        + C.md_table(scheme_table(summary))
        + "\n\n"
        + _deterministic_note(result.models)
        + "`IQM`: interquartile mean over seeds with its 95% stratified-bootstrap interval (Agarwal et al. 2021). "
        "`vs best`: whether the scheme is in the 95% confidence set for the best scheme (it is left out when "
        "some scheme is better by a one-sided test at 5% / (k - 1), Bonferroni; this accounts for the best being "
        'picked from the same runs). "Not distinguishable" is not "tied": `detectable gap` is the smallest gap to '
        "the best (points) that this test would detect with 80% power at these seeds and spreads. "
        "`P(> best)`: probability that a run of the scheme beats a run of the best, with its 95% bootstrap "
        "interval. `failure rate`: fraction of seeds that diverged, predict one class for every test example, or "
        "are not significantly above always predicting the majority class. "
        "`churn`: mean fraction of test examples on which two seeds of the scheme disagree.",
        "## Which single-run orderings survive the error bars\n\n"
        + survival_paragraph(pairs, cfg.seeds)
        + ("\n\n" + C.md_table(ptable) if len(pairs) else "")
        + (
            "\n\n`detectable gap`: the smallest true difference (points) that the test detects with 80% power "
            "at these seeds and spreads; a `not resolved` ordering may be real and smaller than that."
            if len(pairs)
            else ""
        ),
        C.verdict_section(
            out,
            verdicts(summary, pairs),
            old_verdicts(result.models, set(summary["scheme"])),
        ),
        "Absolute levels can differ from the tutorial's (Keras/TensorFlow vs JAX/Flax, different data "
        "pipeline and random streams); what carries over is the spread over seeds: a gap between two single runs "
        "that is smaller than that spread says nothing about the schemes.",
        "## Figures\n\n" + "\n\n".join(f"![{f}]({f})" for f in figs),
        f"## Reproduce\n\n```bash\n{command}\n```\n\nThe sweep's run folder is `run/` "
        "(`config.json`, `results.csv`, `models.csv`, `summary.csv`, `predictions.npz`); "
        "`jinit report run --compare A B` compares any two schemes.",
    ]
    return C.write_report(out, "Initializers on MNIST: single runs vs error bars", sections)


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument(
        "--target", type=float, default=None, help="accuracy for the steps-to-target columns"
    )
    args = p.parse_args(argv)
    out = C.out_dir(args, NAME)
    result = C.run_or_load(config(args), out / "run", args)
    path = report(result, out, C.command_line(argv, NAME))
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(
            result.summary()[
                ["scheme", "n", "acc_mean", "acc_ci95_low", "acc_ci95_high", "acc_std"]
            ]
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    # one JAX device per core, the file backend for figures, one-line errors (see _common.run_script)
    sys.exit(C.run_script(NAME, main))

"""Where does seed-to-seed variance come from: the initialization, the data order, or both?

After Summers & Dinneen (2021), "Nondeterminism and instability in neural network optimization": the same
MNIST MLP is trained with seeds that change only the initialization (``vary="init"``), only the data order
(``vary="data"``), or both; for each source the table gives the accuracy standard deviation, the test-loss
standard deviation, the churn (pairwise disagreement of predictions) and churn / error, and compares the
accuracy spread with the test-set noise floor (Jordan 2024).

Writes one run folder per source, ``report.md`` and a PNG under ``experiments/results/variance_sources/``.

Usage::

    python experiments/variance_sources.py                       # full: ~5 min on a 2-core CPU
    python experiments/variance_sources.py --smoke --out /tmp/v  # seconds, on the embedded digits dataset
"""

from __future__ import annotations

import sys
from pathlib import Path

import _common as C
import numpy as np
import pandas as pd
from scipy import stats

from jinit import sweep

NAME = "variance_sources"
#: Label of each source -> the sweep's ``vary``.
SOURCES = {"init only": "init", "data order only": "data", "both": "both"}


def configs(args) -> dict[str, sweep.SweepConfig]:
    data = dict(dataset="digits") if args.smoke else dict(dataset="mnist", data_dir=args.data_dir)
    out = {
        label: sweep.SweepConfig(
            **data,
            hidden=(128, 64),
            activation="relu",
            schemes=args.schemes,
            bias_init="zeros",
            seeds=C.pick(args, "seeds", 20, 3),
            epochs=C.pick(args, "epochs", 5, 1),
            batch_size=32,
            optimizer="adam",
            learning_rate=1e-3,
            vary=vary,
        )
        for label, vary in SOURCES.items()
    }
    for cfg in out.values():
        cfg.validate()
    return out


def std_ci(x: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The chi-square confidence interval of a standard deviation (assumes roughly normal values)."""
    n = x.size
    if n < 2:
        return float("nan"), float("nan")
    s2 = x.var(ddof=1)
    lo = np.sqrt((n - 1) * s2 / stats.chi2.ppf(0.5 + level / 2, n - 1))
    hi = np.sqrt((n - 1) * s2 / stats.chi2.ppf(0.5 - level / 2, n - 1))
    return float(lo), float(hi)


def spread_test(*groups: np.ndarray) -> float:
    """p-value of the Brown-Forsythe test that the groups have equal variances (Levene's test centred on the
    medians, ``scipy.stats.levene(center="median")``): robust to non-normal accuracies, unlike the F-test and the
    chi-square intervals of a std. NaN when a group has fewer than 2 values or no group varies."""
    gs = [np.asarray(g, np.float64) for g in groups]
    if any(g.size < 2 for g in gs) or all(np.ptp(g) == 0 for g in gs):
        return float("nan")
    return float(stats.levene(*gs, center="median").pvalue)


def detectable_std_ratio(n1: int, n2: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The ratio of two standard deviations that the two-sided F-test at ``alpha`` detects with probability
    ``power`` from ``n1`` and ``n2`` normal values: ``sqrt(F_{1 - alpha/2} / F_{1 - power})`` with ``(n1 - 1,
    n2 - 1)`` degrees of freedom. The Brown-Forsythe test, robust where the F-test is not, needs a somewhat
    larger ratio on normal data, so this is a lower bound for it."""
    if n1 < 2 or n2 < 2:
        return float("nan")
    d1, d2 = n1 - 1, n2 - 1
    return float(np.sqrt(stats.f.ppf(1 - alpha / 2, d1, d2) / stats.f.ppf(1 - power, d1, d2)))


def _accuracies(res, scheme) -> np.ndarray:
    m = res.models[(res.models["scheme"] == scheme) & ~res.models["diverged"]]
    return m["final_accuracy"].to_numpy(float)


def spread_verdicts(results: dict[str, object], *, old: bool = False) -> dict[str, str]:
    """Whether varying only the init and only the data order give distinguishable accuracy spreads, per scheme:
    the Brown-Forsythe test at 5% (``old``: the statistics before issue 14, overlapping chi-square intervals)."""
    out = {}
    if not {"init only", "data order only"} <= set(results):
        return out
    a, b = results["init only"], results["data order only"]
    for scheme in dict.fromkeys(a.models["scheme"]):
        x, y = _accuracies(a, scheme), _accuracies(b, scheme)
        if old:
            (lo1, hi1), (lo2, hi2) = std_ci(x), std_ci(y)
            same = lo1 <= hi2 and lo2 <= hi1
        else:
            p = spread_test(x, y)
            same = not p < 0.05
        out[f"{scheme}: spread, init only vs data order only"] = (
            "not distinguishable" if same else "different"
        )
    return out


def table(results: dict[str, object]) -> pd.DataFrame:
    rows = []
    for source, res in results.items():
        summary = res.summary().set_index("scheme")
        for scheme, r in summary.iterrows():
            m = res.models[(res.models["scheme"] == scheme) & ~res.models["diverged"]]
            lo, hi = std_ci(m["final_accuracy"].to_numpy(float))
            rows.append(
                {
                    "source": source,
                    "scheme": scheme,
                    "seeds": int(r["n"]),
                    "distinct models": int(m["param_sha256"].nunique()),
                    "acc mean": r["acc_mean"],
                    "acc std": r["acc_std"],
                    "acc std 95% CI": (lo, hi),
                    "test loss std": float(m["final_test_loss"].std(ddof=1)),
                    "churn": r["churn"],
                    "churn / error": r["churn_error_ratio"],
                    "noise floor": r["noise_floor"],
                    "std / noise floor": r["noise_floor_ratio"],
                }
            )
    return pd.DataFrame(rows)


def formatted(df: pd.DataFrame) -> str:
    return C.md_table(
        df,
        {
            "acc mean": C.pct,
            "acc std": lambda v: C.pct(v, 3),
            "acc std 95% CI": lambda t: f"[{C.pct(t[0], 3)}, {C.pct(t[1], 3)}]",
            "test loss std": lambda v: f"{v:.4f}",
            "churn": lambda v: f"{100 * v:.2f}%",
            "churn / error": lambda v: f"{v:.2f}",
            "noise floor": lambda v: C.pct(v, 3),
            "std / noise floor": lambda v: f"{v:.2f}",
        },
    )


def paragraph(df: pd.DataFrame, results: dict[str, object]) -> str:
    out = []
    for scheme, g in df.groupby("scheme", sort=False):
        g = g.set_index("source")
        if not {"init only", "data order only", "both"} <= set(g.index):
            continue
        s = {k: g.loc[k, "acc std"] for k in g.index}
        acc = {k: _accuracies(results[k], scheme) for k in g.index}
        p2 = spread_test(acc["init only"], acc["data order only"])
        p3 = spread_test(acc["init only"], acc["data order only"], acc["both"])
        n = min(a.size for a in acc.values())
        ch = {k: g.loc[k, "churn"] for k in g.index}
        if not np.isfinite(p2):
            verdict = "too few seeds to compare the two spreads. "
        elif p2 < 0.05:
            verdict = (
                "the two spreads differ (Brown-Forsythe test of equal variances, p = {p:.2g}). "
            )
        else:
            verdict = (
                "the Brown-Forsythe test of equal variances (Levene's test centred on the medians) does not "
                "distinguish the two spreads at {n} seeds (p = {p:.2g}); that is not evidence that they are "
                "equal: at this many seeds even the F-test on normal accuracies detects (80% power) only a std "
                "ratio of {r:.2f} or more. "
            )
        text = (
            f"**{scheme}**: varying only the init gives an accuracy std of {C.pct(s['init only'], 3)} points, "
            f"only the data order {C.pct(s['data order only'], 3)}, both {C.pct(s['both'], 3)}; "
            + verdict.format(
                p=p2,
                n=n,
                r=detectable_std_ratio(acc["init only"].size, acc["data order only"].size),
            )
            + (
                f"Across the three sources the Brown-Forsythe test gives p = {p3:.2g}. "
                if np.isfinite(p3)
                else ""
            )
            + f"Churn: {100 * ch['init only']:.2f}% / {100 * ch['data order only']:.2f}% / {100 * ch['both']:.2f}% "
            "of test examples change prediction between two seeds. "
        )
        ratios = g["std / noise floor"]
        text += (
            f"The accuracy std is {ratios.min():.2f}–{ratios.max():.2f} times the test-set noise floor "
            "(the std that independent per-example coin flips would give); near 1 means that seed-to-seed "
            "differences in accuracy are what a finite test set shows even between equally good models."
        )
        out.append(text)
    return "\n\n".join(out) or "(Needs all three sources to compare.)"


def figure(results: dict[str, object]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    rng = np.random.default_rng(0)
    labels, pos = [], 0
    for source, res in results.items():
        for scheme, g in res.models.groupby("scheme", sort=False):
            acc = 100 * g.loc[~g["diverged"], "final_accuracy"].to_numpy(float)
            ax.boxplot([acc], positions=[pos], widths=0.5, showfliers=False)
            ax.scatter(pos + rng.uniform(-0.12, 0.12, acc.size), acc, s=14, alpha=0.7, zorder=3)
            labels.append(f"{source}\n{scheme}")
            pos += 1
    ax.set_xticks(range(pos), labels, fontsize=8)
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title("Seed-to-seed spread by source of randomness (one point per seed)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def report(results: dict[str, object], out: Path, command: str) -> Path:
    first = next(iter(results.values()))
    cfg = first.config
    df = table(results)
    fig = C.save_figure(figure(results), out / "spread_by_source.png")
    setup = (
        f"MLP with hidden layers {'-'.join(map(str, cfg.hidden))} ({cfg.activation}, zero biases), "
        f"{cfg.optimizer} lr={cfg.learning_rate:g}, batch {cfg.batch_size}, {cfg.epochs} epochs, on "
        f"{cfg.dataset} ({first.meta.get('n_train')} train / {first.meta.get('n_test')} test); "
        f"{cfg.seeds} seeds per source. `init only`: `vary='init'` (every seed sees the same batches in the "
        "same order); `data order only`: `vary='data'` (the initial parameters are the same for every seed: "
        "they depend on the scheme only); `both`: `vary='both'`. No dropout, so nothing else is random; the "
        "run is deterministic given the seeds (see `distinct models`). "
        + C.run_facts(results.values())
    )
    if cfg.dataset != "mnist":
        setup += (
            f"\n\n**Smoke run on `{cfg.dataset}`**: checks that the script works; not a result."
        )
    sections = [
        "Summers & Dinneen (2021) found that any single source of nondeterminism -- the initialization or the "
        "order of the data -- produces about as much run-to-run variability as all of them together. The table "
        "repeats that measurement on the MNIST MLP.",
        "## Setup\n\n" + setup,
        "## Variability per source\n\n"
        + formatted(df)
        + "\n\nStandard deviations are in accuracy points (the CI is the chi-square interval of a std, which "
        "assumes roughly normal accuracies; two spreads are compared by the Brown-Forsythe test, not by whether "
        "these intervals overlap). `churn`: mean fraction of test examples on which two seeds predict "
        "different classes; `churn / error` near 1 is the generalization-disagreement equality (Jiang et al. "
        "2022). `noise floor`: the accuracy std that independent per-example errors alone would give "
        "(Jordan 2024).",
        "## Reading\n\n" + paragraph(df, results),
        C.verdict_section(out, spread_verdicts(results), spread_verdicts(results, old=True)),
        f"## Figure\n\n![{fig}]({fig})",
        f"## Reproduce\n\n```bash\n{command}\n```\n\nRun folders: `run_init/`, `run_data/`, `run_both/`.",
        "References: D. Summers, M. J. Dinneen. Nondeterminism and instability in neural network optimization. "
        "ICML 2021. K. Jordan. On the variance of neural network training with respect to test sets and "
        "distributions. ICLR 2024. Y. Jiang et al. Assessing generalization of SGD via disagreement. ICLR 2022.",
    ]
    return C.write_report(out, "Sources of seed-to-seed variance on MNIST", sections)


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument(
        "--schemes", default="glorot_uniform", help="comma-separated schemes (Keras default)"
    )
    args = p.parse_args(argv)
    out = C.out_dir(args, NAME)
    results = {}
    for label, cfg in configs(args).items():
        print(f"== {label}", flush=True)
        results[label] = C.run_or_load(cfg, out / f"run_{cfg.vary}", args)
    path = report(results, out, C.command_line(argv, NAME))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    # one JAX device per core, the file backend for figures, one-line errors (see _common.run_script)
    sys.exit(C.run_script(NAME, main))

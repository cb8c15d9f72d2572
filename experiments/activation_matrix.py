"""Schemes x activations on MNIST: is it "Glorot for tanh/sigmoid, He for ReLU", with error bars?

The rule of thumb comes from variance arguments (Glorot & Bengio 2010 for tanh/sigmoid, He et al. 2015 for ReLU,
LeCun normal for SELU, Klambauer et al. 2017). This script trains every (scheme, activation) cell with many seeds,
once with Adam (which rescales updates and forgives a poor init scale) and once with plain SGD (which does not),
and tests each rule as a comparison of the recommended scheme against the others (Welch's t-test: under the default
``vary="init"`` seed s of two schemes shares nothing, so seeds are not paired).

Writes one run folder per (optimizer, activation), ``report.md`` and PNG heatmaps under
``experiments/results/activation_matrix/``.

Usage::

    python experiments/activation_matrix.py                      # full: ~5 min on a 2-core CPU
    python experiments/activation_matrix.py --smoke --out /tmp/a # seconds, on the embedded digits dataset
"""

from __future__ import annotations

import sys
from pathlib import Path

import _common as C
import numpy as np
import pandas as pd

from jinit import metrics, sweep

NAME = "activation_matrix"
ACTIVATIONS = ("relu", "tanh", "sigmoid", "selu")
SCHEMES = ("normal", "glorot_normal", "he_normal", "lecun_normal", "orthogonal")
OPTIMIZERS = "adam:1e-3,sgd:1e-2"
#: The rule of thumb: activation -> the scheme it recommends.
RULE = {
    "relu": "he_normal",
    "tanh": "glorot_normal",
    "sigmoid": "glorot_normal",
    "selu": "lecun_normal",
}
TRAIN_SIZE = 10_000


def parse_optimizers(text: str) -> list[tuple[str, float]]:
    """``"adam:1e-3,sgd:1e-2"`` -> ``[("adam", 0.001), ("sgd", 0.01)]``."""
    out = []
    for item in text.split(","):
        name, _, lr = item.strip().partition(":")
        if not name or not lr:
            raise ValueError(f"optimizer {item!r} must be NAME:LEARNING_RATE, e.g. adam:1e-3")
        out.append((name, float(lr)))
    return out


def configs(args) -> dict[tuple[str, str], sweep.SweepConfig]:
    data = (
        dict(dataset="digits")
        if args.smoke
        else dict(dataset="mnist", data_dir=args.data_dir, train_size=args.train_size)
    )
    out = {}
    for opt, lr in parse_optimizers(args.optimizers):
        for act in args.activations.split(","):
            out[(opt, act)] = sweep.SweepConfig(
                **data,
                hidden=(128, 64),
                activation=act,
                schemes=args.schemes,
                bias_init="zeros",
                seeds=C.pick(args, "seeds", 10, 2),
                epochs=C.pick(args, "epochs", 5, 1),
                batch_size=32,
                optimizer=opt,
                learning_rate=lr,
            )
    for cfg in out.values():
        cfg.validate()  # every bad flag fails here, before the first sweep trains
    return out


def matrix(results: dict[tuple[str, str], object], optimizer: str) -> pd.DataFrame:
    """Rows: schemes; columns: activations; cells ``mean ± CI`` with the best bold and the schemes not
    distinguishable from it (the 95% confidence set for the best) marked ``*``."""
    acts = [a for (o, a) in results if o == optimizer]
    cells: dict[str, dict[str, str]] = {}
    for act in acts:
        s = results[(optimizer, act)].summary()
        for i, r in s.iterrows():
            mark = "**" if i == 0 else ""
            star = " *" if r["in_best_set"] and i > 0 else ""
            cells.setdefault(r["scheme"], {})[act] = f"{mark}{C.row_pm(r)}{mark}{star}"
    df = pd.DataFrame(cells).T.reindex(columns=acts)
    return df.reset_index(names="scheme").fillna("-")


def rule_checks(
    results: dict[tuple[str, str], object], *, paired: bool | None = None
) -> pd.DataFrame:
    """Each rule as "recommended > other" per cell: Welch's t-test under ``vary="init"``, paired under
    ``"data"``/``"both"`` (``paired`` overrides: the statistics before issue 14 paired by seed number)."""
    rows = []
    for (opt, act), res in results.items():
        rec = RULE.get(act)
        schemes = list(dict.fromkeys(res.models["scheme"]))
        if rec not in schemes:
            continue
        vary = getattr(getattr(res, "config", None), "vary", "init")
        for other in schemes:
            if other == rec:
                continue
            r = metrics.compare_schemes(res.models, rec, other, vary=vary, paired=paired)
            xa = metrics.scheme_accuracies(res.models, rec)
            xb = metrics.scheme_accuracies(res.models, other)
            if r.paired:
                common = xa.index.intersection(xb.index)
                xa, xb = xa.loc[common], xb.loc[common]
            mdd = metrics.min_detectable_difference(xa, xb, paired=r.paired)
            rows.append(
                {
                    "optimizer": opt,
                    "activation": act,
                    "rule": f"{rec} > {other}",
                    "difference (points) [95% CI], p": C.diff_text(r),
                    "test": r.test,
                    "P(rule wins)": f"{r.p_a_gt_b:.2f}",
                    "detectable gap": C.pct(mdd),
                    "verdict": C.verdict(r),
                }
            )
    return pd.DataFrame(rows)


def verdicts(results: dict[tuple[str, str], object], checks: pd.DataFrame) -> dict[str, str]:
    """This report's verdicts: each cell's schemes against the cell's best, and each rule check."""
    out = {}
    for (opt, act), res in results.items():
        for s, v in C.best_verdicts(res.summary()).items():
            out[f"{opt}/{act}: {s} vs best"] = v
    for _, r in checks.iterrows():
        out[f"{r['optimizer']}/{r['activation']}: {r['rule']}"] = r["verdict"]
    return out


def old_verdicts(results: dict[tuple[str, str], object]) -> dict[str, str]:
    """The same verdicts by the statistics before issue 14 (seeds paired by number, uncorrected vs the best)."""
    out = {}
    for (opt, act), res in results.items():
        for s, v in C.old_best_verdicts(res.models).items():
            out[f"{opt}/{act}: {s} vs best"] = v
    old = rule_checks(results, paired=True)
    for _, r in old.iterrows():
        out[f"{r['optimizer']}/{r['activation']}: {r['rule']}"] = r["verdict"]
    return out


def rule_paragraph(checks: pd.DataFrame) -> str:
    if checks.empty:
        return "No cell of this run contains the scheme its rule recommends."
    lines = []
    for (opt, act), g in checks.groupby(["optimizer", "activation"], sort=False):
        holds = g[g["verdict"] == "holds"]["rule"].str.split(" > ").str[1].tolist()
        rev = g[g["verdict"] == "reversed"]["rule"].str.split(" > ").str[1].tolist()
        rec = RULE[act]
        text = f"- **{opt}, {act}** ({rec} recommended): "
        parts = []
        if holds:
            parts.append(f"significantly better than {', '.join(holds)}")
        if rev:
            parts.append(f"significantly worse than {', '.join(rev)}")
        unresolved = g[~g["verdict"].isin(["holds", "reversed"])]["rule"].str.split(" > ").str[1]
        if len(unresolved):
            parts.append(f"not distinguishable from {', '.join(unresolved)}")
        lines.append(text + "; ".join(parts) + ".")
    n = len(checks)
    n_hold = int((checks["verdict"] == "holds").sum())
    n_rev = int((checks["verdict"] == "reversed").sum())
    tests = " / ".join(dict.fromkeys(checks["test"])) if "test" in checks else "t-test"
    head = (
        f"Of {n} comparisons ({tests}) of a recommended scheme against another, {n_hold} favour the rule, "
        f"{n_rev} go against it and {n - n_hold - n_rev} are not resolved at 95% (each comparison at 5%, not "
        "corrected for the number of comparisons)."
    )
    return head + "\n\n" + "\n".join(lines)


def heatmap(results: dict[tuple[str, str], object]):
    import matplotlib.pyplot as plt

    opts = list(dict.fromkeys(o for o, _ in results))
    fig, axes = plt.subplots(1, len(opts), figsize=(5.2 * len(opts), 4.2), squeeze=False)
    for ax, opt in zip(axes[0], opts, strict=True):
        acts = [a for (o, a) in results if o == opt]
        frames = {a: results[(opt, a)].summary().set_index("scheme") for a in acts}
        schemes = list(dict.fromkeys(s for f in frames.values() for s in f.index))
        m = np.array([[frames[a]["acc_mean"].get(s, np.nan) for a in acts] for s in schemes])
        half = np.array(
            [
                [
                    (
                        frames[a]["acc_ci95_high"].get(s, np.nan)
                        - frames[a]["acc_ci95_low"].get(s, np.nan)
                    )
                    / 2
                    for a in acts
                ]
                for s in schemes
            ]
        )
        # Colour by the gap to the column's best, so each activation uses the whole scale.
        gap = 100 * (np.nanmax(m, axis=0, keepdims=True) - m)
        im = ax.imshow(np.minimum(gap, 5.0), cmap="viridis_r", vmin=0, vmax=5.0, aspect="auto")
        for i in range(len(schemes)):
            for j in range(len(acts)):
                txt = (
                    f"{100 * m[i, j]:.2f}\n±{100 * half[i, j]:.2f}"
                    if np.isfinite(half[i, j])
                    else f"{100 * m[i, j]:.2f}"
                )
                ax.text(
                    j,
                    i,
                    txt,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if gap[i, j] > 2.5 else "black",
                )
        ax.set_xticks(range(len(acts)), acts)
        ax.set_yticks(range(len(schemes)), schemes)
        cfg = results[(opt, acts[0])].config
        ax.set_title(f"{opt} lr={cfg.learning_rate:g}: test accuracy (%)", fontsize=10)
        fig.colorbar(im, ax=ax, label="points below the column's best (capped at 5)")
    fig.tight_layout()
    return fig


def report(results: dict[tuple[str, str], object], out: Path, command: str) -> Path:
    first = next(iter(results.values()))
    cfg = first.config
    data = cfg.dataset + (f", first {cfg.train_size} training examples" if cfg.train_size else "")
    setup = (
        f"MLP with hidden layers {'-'.join(map(str, cfg.hidden))}, zero biases, batch {cfg.batch_size}, "
        f"{cfg.epochs} epochs, on {data} ({first.meta.get('n_train')} train / {first.meta.get('n_test')} test); "
        f"{cfg.seeds} seeds per cell; every model sees the same data order (`vary='init'`). "
        f"Optimizers: {', '.join(sorted({f'{o} lr={r.config.learning_rate:g}' for (o, _), r in results.items()}))}. "
        + (
            f"Only the first {cfg.train_size} MNIST training examples are used, to fit {len(results)} sweeps "
            "in a few minutes of CPU; the full test set is kept. "
            if cfg.train_size
            else ""
        )
        + C.run_facts(results.values())
    )
    if cfg.dataset != "mnist":
        setup += (
            f"\n\n**Smoke run on `{cfg.dataset}`**: checks that the script works; not a result."
        )
    opts = list(dict.fromkeys(o for o, _ in results))
    tables = [f"### {opt}\n\n" + C.md_table(matrix(results, opt)) for opt in opts]
    fig = C.save_figure(heatmap(results), out / "matrix.png")
    checks = rule_checks(results)
    sections = [
        "Each cell: mean final test accuracy (%) ± the half-width of its 95% CI over seeds (`deterministic`: every "
        "seed gave the same model). **Bold**: the best scheme for that activation; `*`: not distinguishable from "
        "it at these seeds (in the 95% confidence set for the best: no scheme is better by a one-sided Welch "
        "t-test at 5% / (k - 1); seeds are not paired under `vary='init'`). Not distinguishable is not equal.",
        "## Setup\n\n" + setup,
        "## Accuracy matrix\n\n" + "\n\n".join(tables),
        f"## The rule of thumb, tested\n\nRecommended: {', '.join(f'{a} -> {s}' for a, s in RULE.items())}.\n\n"
        + rule_paragraph(checks)
        + ("\n\n" + C.md_table(checks) if len(checks) else "")
        + (
            "\n\n`detectable gap`: the smallest true difference (points) that the test detects with 80% power at "
            "these seeds and spreads; a `not resolved` rule may hold by less than that."
            if len(checks)
            else ""
        ),
        C.verdict_section(out, verdicts(results, checks), old_verdicts(results)),
        f"## Figure\n\n![{fig}]({fig})",
        f"## Reproduce\n\n```bash\n{command}\n```\n\nRun folders: `run_<optimizer>_<activation>/`.",
    ]
    return C.write_report(out, "Initializer x activation on MNIST, with error bars", sections)


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument(
        "--activations", default=None, help=f"comma-separated (default {','.join(ACTIVATIONS)})"
    )
    p.add_argument("--schemes", default=None, help=f"comma-separated (default {','.join(SCHEMES)})")
    p.add_argument("--optimizers", default=None, help=f"NAME:LR pairs (default {OPTIMIZERS})")
    p.add_argument(
        "--train-size", type=int, default=TRAIN_SIZE, help="MNIST training examples used"
    )
    args = p.parse_args(argv)
    args.activations = args.activations or ("relu,tanh" if args.smoke else ",".join(ACTIVATIONS))
    args.schemes = args.schemes or ("glorot_normal,he_normal" if args.smoke else ",".join(SCHEMES))
    args.optimizers = args.optimizers or ("adam:1e-3" if args.smoke else OPTIMIZERS)
    out = C.out_dir(args, NAME)
    results = {}
    for (opt, act), cfg in configs(args).items():
        print(f"== {opt} / {act}", flush=True)
        results[(opt, act)] = C.run_or_load(cfg, out / f"run_{opt}_{act}", args)
    path = report(results, out, C.command_line(argv, NAME))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    # one JAX device per core, the file backend for figures, one-line errors (see _common.run_script)
    sys.exit(C.run_script(NAME, main))

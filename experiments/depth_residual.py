"""Depth without normalization: a residual MLP at 8 to 64 blocks under default He, Fixup, ReZero and zero-gamma.

Fixup (Zhang et al. 2019), SkipInit / ReZero (De & Smith 2020; Bachlechner et al. 2021) and zero-gamma (Goyal et al.
2017) all claim that a deep residual network trains when each residual branch starts at (or near) zero, and that
He's fan-in init, whose residual stream doubles its variance with every ReLU block, does not train without
normalization at depth. This script trains :class:`jinit.models.ResidualMLP` (ResNet v1 blocks of two Dense
layers, ``x <- relu(x + gate * branch(x) + bias)``) on the embedded ``digits`` data at several depths, over
seeds, and reports the failures (:func:`jinit.metrics.failures`: diverged, one class for every example, or not
above the majority class) and the final accuracy with 95% intervals per depth.

Two sweeps per depth:

* ``nonorm``: no normalization; every scheme trains the same network, with Fixup's scalar multiplier (built as 1)
  and scalar biases (built as 0) in every block, so the three schemes differ only in their initial values:
  ``he_normal`` (every kernel He; gate 1, biases 0: at init exactly the plain ResNet), ``fixup(L)`` and ``rezero``
  (the gate starts at 0; SkipInit's rules are the same, :func:`jinit.skipinit`: De & Smith propose it, like
  ReZero, for networks without normalization);
* ``layernorm``: LayerNorm after each branch Dense (zero-gamma's gamma is that norm's scale: without a norm layer
  there is nothing to zero), ``he_normal`` as its reference and ``zero_gamma``.

Writes ``run_<arch>_d<depth>/``, ``report.md``, ``accuracy_vs_depth.png`` under
``experiments/results/depth_residual/``.

Usage::

    python experiments/depth_residual.py                        # depths 8,16,32,64 x 5 seeds
    python experiments/depth_residual.py --smoke --out /tmp/dr   # seconds
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import _common as C
import numpy as np
import pandas as pd

import jinit
from jinit import metrics, models, sweep

NAME = "depth_residual"
ARCHS = {
    "nonorm": dict(norm=None, gate="scalar", scalar_bias=True),
    "layernorm": dict(norm="layer"),
}
ARCH_TEXT = {"nonorm": "no norm", "layernorm": "LayerNorm"}


def schemes(arch: str, depth: int) -> tuple:
    if arch == "nonorm":
        return ("he_normal", jinit.fixup(depth), jinit.rezero())
    return ("he_normal", jinit.zero_gamma())


def configs(args) -> dict[tuple[str, int], sweep.SweepConfig]:
    out = {}
    for depth in args.depths:
        for arch in ARCHS:
            out[(arch, depth)] = sweep.SweepConfig(
                dataset="digits",
                hidden=(
                    args.width,
                ),  # documents the width (run() builds the ResidualMLP via model=)
                schemes=schemes(arch, depth),
                seeds=C.pick(args, "seeds", 5, 2),
                epochs=C.pick(args, "epochs", 5, 1),
                batch_size=64,
                optimizer="adam",
                learning_rate=args.lr,
                target_accuracy=0.8,
                eval_every=None,
            )
    return out


def factory(arch: str, depth: int, width: int):
    return models.factory("resmlp", width=width, depth=depth, **ARCHS[arch])


def key(arch: str, scheme: str) -> str:
    """The name of a (architecture, scheme) cell in the tables: ``he_normal (no norm)``, ``zero_gamma (LayerNorm)``."""
    return f"{scheme.split('(')[0]} ({ARCH_TEXT[arch]})"


def table(runs: dict) -> pd.DataFrame:
    """One row per (depth, scheme): failures, mean accuracy with its 95% CI over the non-diverged seeds, and the
    95% confidence set for the best cell at that depth (Welch: seeds are not paired under
    ``vary="init"``)."""
    rows = []
    for depth in sorted({d for _, d in runs}):
        accs, cells = {}, {}
        for arch in ARCHS:
            res = runs.get((arch, depth))
            if res is None:
                continue
            summary = res.summary().set_index("scheme")
            for scheme, r in summary.iterrows():
                k = key(arch, str(scheme))
                accs[k] = metrics.scheme_accuracies(res.models, scheme)
                cells[k] = r
        best = metrics.best_set({k: a for k, a in accs.items() if len(a)}, paired=False)
        for k, r in cells.items():
            b = best.loc[k] if k in best.index else None
            n, div = int(r["n"]), int(r["diverged_count"])
            failed = int(round(r["failure_rate"] * n))
            rows.append(
                {
                    "depth": depth,
                    "scheme": k,
                    "n": n,
                    "diverged": div,
                    "failed": failed,
                    "acc_mean": r["acc_mean"],
                    "acc_ci95_low": r["acc_ci95_low"],
                    "acc_ci95_high": r["acc_ci95_high"],
                    "acc_std": r["acc_std"],
                    "steps_to_80_median": r["steps_to_target_median"],
                    "in_best_set": bool(b["in_best_set"]) if b is not None else False,
                    "p_best_set": float(b["p_best_set"]) if b is not None else np.nan,
                }
            )
    df = pd.DataFrame(rows)
    # The minimum detectable difference to the best cell of each depth (Welch, 80% power, the set's level).
    mdd = []
    for _, r in df.iterrows():
        mdd.append(_mdd_vs_best(runs, df, r))
    df["mdd_vs_best"] = mdd
    return df


def _accuracies(runs: dict, depth: int, cell: str) -> pd.Series:
    for arch in ARCHS:
        res = runs.get((arch, depth))
        if res is None:
            continue
        for scheme in dict.fromkeys(res.models["scheme"]):
            if key(arch, str(scheme)) == cell:
                return metrics.scheme_accuracies(res.models, scheme)
    raise KeyError(cell)


def _mdd_vs_best(runs: dict, df: pd.DataFrame, r: pd.Series) -> float:
    at = df[df["depth"] == r["depth"]]
    best = at.loc[at["acc_mean"].idxmax(), "scheme"] if at["acc_mean"].notna().any() else None
    if best is None or best == r["scheme"]:
        return np.nan
    a, b = _accuracies(runs, r["depth"], best), _accuracies(runs, r["depth"], r["scheme"])
    if len(a) < 2 or len(b) < 2:
        return np.nan
    k = int(at["acc_mean"].notna().sum())
    res = runs[next(iter(k_ for k_ in runs if k_[1] == r["depth"]))]
    return metrics.min_detectable_difference(
        a,
        b,
        paired=False,
        alpha=0.05 / max(k - 1, 1),
        two_sided=False,
        resolution=1.0 / len(res.y_test),  # one test example: no zero detectable gap (issue 23)
    )


def grid_text(df: pd.DataFrame) -> pd.DataFrame:
    """Scheme x depth: ``mean ± CI half-width`` of the accuracy (%), ``[failed/n]`` when any seed failed, ``*``
    when the cell is in the 95% confidence set for the best at that depth."""
    cells: dict[str, dict[str, str]] = {}
    for _, r in df.iterrows():
        if r["failed"] == r["n"]:
            text = f"all {r['n']} failed"
            if np.isfinite(r["acc_mean"]):
                text += f" ({C.pct(r['acc_mean'], 1)})"
        else:
            text = C.mean_pm(r["acc_mean"], r["acc_ci95_low"], r["acc_ci95_high"], 1)
            if r["failed"]:
                text += f" [{r['failed']}/{r['n']} failed]"
        if r["in_best_set"]:
            text += " *"
        cells.setdefault(r["scheme"], {})[str(r["depth"])] = text
    depths = [str(d) for d in sorted(df["depth"].unique())]
    return pd.DataFrame(cells).T.reindex(columns=depths).reset_index(names="scheme").fillna("-")


def failure_text(df: pd.DataFrame) -> pd.DataFrame:
    """Scheme x depth: ``failed/n (diverged)``."""
    cells: dict[str, dict[str, str]] = {}
    for _, r in df.iterrows():
        cells.setdefault(r["scheme"], {})[str(r["depth"])] = f"{r['failed']}/{r['n']}" + (
            f" ({r['diverged']} diverged)" if r["diverged"] else ""
        )
    depths = [str(d) for d in sorted(df["depth"].unique())]
    return pd.DataFrame(cells).T.reindex(columns=depths).reset_index(names="scheme").fillna("-")


def findings(df: pd.DataFrame) -> list[str]:
    """The claims, each checked on the numbers: what held and what did not."""
    out = []
    deepest = int(df["depth"].max())
    he = df[df["scheme"] == key("nonorm", "he_normal")].set_index("depth")
    first_fail = [d for d, r in he.iterrows() if r["failed"] * 2 > r["n"]]
    accs = ", ".join(f"{C.pct(he.loc[d, 'acc_mean'], 1)}% at {d}" for d in sorted(he.index))
    counts = ", ".join(
        f"{int(he.loc[d, 'failed'])}/{int(he.loc[d, 'n'])} failed at {d}" for d in sorted(he.index)
    )
    if first_fail:
        out.append(
            f"**He without normalization fails with depth: held.** Most seeds of `he_normal` (no norm) failed "
            f"from depth {min(first_fail)} on ({counts}); mean accuracy {accs}."
        )
    else:
        out.append(
            "**He without normalization fails with depth: did not hold here.** `he_normal` (no norm) trained on "
            f"most seeds at every depth up to {deepest} "
            f"({counts}); mean accuracy {accs}."
        )
    for arch, scheme in (("nonorm", "fixup"), ("nonorm", "rezero"), ("layernorm", "zero_gamma")):
        rows = df[
            df["scheme"].str.startswith(scheme)
            & (df["scheme"].str.endswith(f"({ARCH_TEXT[arch]})"))
        ]
        if rows.empty:
            continue
        name = rows["scheme"].iloc[0].split(" (")[0]
        failed = int(rows["failed"].sum())
        n = int(rows["n"].sum())
        last = rows[rows["depth"] == deepest]
        best_at = [int(d) for d in rows[rows["in_best_set"]]["depth"]]
        ok = failed == 0
        # "failed" is jinit.metrics.failures: diverged, one class everywhere, or not above the majority class. Not
        # failing means above chance, not "trains as well as the others": that is the confidence set's question.
        out.append(
            f"**{name} ({ARCH_TEXT[arch]}) is above chance at every depth: {'held' if ok else 'did not hold'}** "
            f"({failed} of {n} models failed, i.e. diverged, predicted one class or were not above the majority "
            f"class, over depths {', '.join(str(int(d)) for d in sorted(rows['depth']))}); "
            f"at depth {deepest} it reaches "
            + (
                f"{C.mean_pm(last['acc_mean'].iloc[0], last['acc_ci95_low'].iloc[0], last['acc_ci95_high'].iloc[0], 1)}%"
                if len(last)
                else "-"
            )
            + f"; in the 95% confidence set for the best at depth(s) {', '.join(map(str, best_at)) or 'none'}."
        )
    return out


def accuracy_figure(df: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    depths = sorted(df["depth"].unique())
    for scheme, g in df.groupby("scheme", sort=False):
        g = g.set_index("depth").reindex(depths)
        (line,) = axes[0].plot(depths, 100 * g["acc_mean"], marker="o", label=scheme)
        axes[0].fill_between(
            depths,
            100 * g["acc_ci95_low"],
            100 * g["acc_ci95_high"],
            color=line.get_color(),
            alpha=0.2,
        )
        axes[1].plot(depths, g["failed"] / g["n"], marker="o", color=line.get_color(), label=scheme)
    axes[0].set_title("final test accuracy (mean of non-diverged seeds, 95% CI)", fontsize=10)
    axes[0].set_ylabel("test accuracy (%)")
    axes[1].set_title("fraction of seeds that failed (metrics.failures)", fontsize=10)
    axes[1].set_ylim(-0.05, 1.05)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.set_xlabel("residual blocks")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def report(runs: dict, out: Path, command: str, width: int, smoke: bool = False) -> Path:
    df = table(runs)
    df.to_csv(out / "depth_table.csv", index=False)
    fig = C.save_figure(accuracy_figure(df), out / "accuracy_vs_depth.png")
    cfg = next(iter(runs.values())).config
    n_models = sum(len(r.models) for r in runs.values())
    setup = (
        f"`digits` (embedded, offline: {next(iter(runs.values())).meta.get('n_train')} train / "
        f"{next(iter(runs.values())).meta.get('n_test')} test 8x8 images). `ResidualMLP(width={width}, "
        f"branch_layers=2)`: stem Dense + ReLU, L blocks `relu(x + gate * branch(x) + bias)`, head. Adam "
        f"lr={cfg.learning_rate:g}, batch {cfg.batch_size}, {cfg.epochs} epochs, {cfg.seeds} seeds per scheme "
        f"(`vary='init'`: the seeds vary the init, every model sees the same batches). Depths "
        f"{', '.join(str(d) for d in sorted({d for _, d in runs}))}; {len(runs)} sweeps, {n_models} models. "
        + C.run_facts(runs.values())
        + " The runs were compiled with `XLA_FLAGS=--xla_backend_optimization_level=0 "
        "--xla_llvm_disable_expensive_passes=true` (the unrolled 64-block network takes minutes to compile "
        "otherwise on 2 cores); it changes the code XLA emits, not the model (floating-point results may differ in "
        "the last bits from a default build)."
    )
    setup += (
        f"\n\nThis is a **small run** sized for a shared 2-core CPU (width {width}, {cfg.epochs} epochs); "
        "a larger one is one command away: `python experiments/depth_residual.py --width 128 --epochs 20 "
        "--seeds 10 --out /tmp/dr`."
    )
    if smoke:
        setup += "\n\n**Smoke run** (shallow depths, 1 epoch): not a result."
    sections = [
        "Does a deep residual network without normalization train, and does it depend on the init? "
        "Claims tested: He's init fails as depth grows (the residual stream's variance doubles per block); "
        "Fixup, ReZero (SkipInit's zero gate) and zero-gamma (with a norm layer) train at every depth. What this "
        "budget can say about the last claim: whether each is above chance at every depth (no model failed), and "
        "whether it is in the confidence set for the best cell of a depth; not failing is not training as well.",
        "## Setup\n\n" + setup,
        "## What held and what did not\n\n" + "\n\n".join(f"- {f}" for f in findings(df)),
        "## Final test accuracy (%) per depth\n\n"
        + C.md_table(grid_text(df))
        + "\n\nMean ± half-width of the 95% t-interval over the non-diverged seeds; `[k/n failed]`: seeds that "
        "diverged, predict one class for every example, or are not above the majority class "
        "(`jinit.metrics.failures`); `*`: in the 95% confidence set for the best cell of that depth "
        "(`jinit.metrics.best_set` over all five cells of the depth, Welch's t-test, unpaired: the seeds vary "
        "the init, so seed s of two schemes shares no randomness but the batch order).",
        "## Failures (failed / seeds)\n\n" + C.md_table(failure_text(df)),
        "## Detectable differences\n\n"
        "The smallest gap below the best cell of each depth that these seeds would detect with 80% power "
        "(`jinit.metrics.min_detectable_difference`, Welch, at the confidence set's Bonferroni level). A cell in "
        "the set is not tied with the best: a gap smaller than this may be real.\n\n"
        + C.md_table(
            df[["depth", "scheme", "in_best_set", "p_best_set", "mdd_vs_best"]].assign(
                mdd_vs_best=lambda d: d["mdd_vs_best"].map(C.pct)
            )
        ),
        f"## Figure\n\n![{fig}]({fig})",
        f"## Reproduce\n\n```bash\n{command}\n```",
        "References: Zhang, Dauphin, Ma. Fixup initialization. ICLR 2019. De & Smith. Batch normalization biases "
        "residual blocks towards the identity function in deep networks. NeurIPS 2020. Bachlechner et al. ReZero "
        "is all you need. UAI 2021. Goyal et al. Accurate, large minibatch SGD. arXiv:1706.02677, 2017.",
    ]
    return C.write_report(
        out, "Depth without normalization: residual MLP, 8 to 64 blocks", sections
    )


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--depths must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"--depths must be integers >= 1, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument(
        "--depths", default=None, help="comma-separated block counts (default 8,16,32,64)"
    )
    p.add_argument("--width", type=int, default=None, help="width of every block (default 32)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    args = p.parse_args(argv)
    args.depths = _ints(args.depths or ("2" if args.smoke else "8,16,32,64"))
    args.width = args.width or (16 if args.smoke else 32)
    if args.width < 1:
        raise ValueError(f"--width must be >= 1, got {args.width}")
    cfgs = configs(args)
    out = C.out_dir(args, NAME)
    runs = {
        (arch, depth): C.run_or_load(
            cfg, out / f"run_{arch}_d{depth}", args, model=factory(arch, depth, args.width)
        )
        for (arch, depth), cfg in cfgs.items()
    }
    path = report(runs, out, C.command_line(argv, NAME), args.width, args.smoke)
    print(pd.read_csv(out / "depth_table.csv")[["depth", "scheme", "failed", "acc_mean"]])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    # Compile the unrolled deep networks fast (minutes -> seconds at 64 blocks; see the report's setup).
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    ).strip()
    sys.exit(C.run_script(NAME, main))

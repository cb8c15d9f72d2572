"""What the transfer studies share (transfer_width.py, transfer_depth.py): the size and learning-rate grids and
the check they run, where they write, the verdict table they merge into
``experiments/results/transfer/verdicts.csv``, the report's common sections (the expected-versus-observed
findings, the figure of every parameterization's optimum against the size). The statistics are
:mod:`jinit.transfer`'s.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import _common as C
import numpy as np
import pandas as pd

from jinit import files

#: The table of every transfer study's verdicts (one row per parameterization and axis).
VERDICT_COLUMNS = ["parameterization", "axis", "slope", "slope_ci_low", "slope_ci_high", "verdict"]
TRANSFER_DIR = C.RESULTS_DIR / "transfer"


def out_dir(args: argparse.Namespace, sub: str) -> Path:
    """``--out``, else a scratch folder for ``--smoke``, else ``experiments/results/transfer/<sub>/``."""
    if args.out:
        path = Path(args.out)
    elif args.smoke:
        path = C.smoke_dir(f"transfer_{sub}")
        args.overwrite = True
    else:
        path = TRANSFER_DIR / sub
    path.mkdir(parents=True, exist_ok=True)
    return path


def learning_rates(args: argparse.Namespace) -> tuple[float, ...]:
    """The studies' learning-rate grid: powers of two from ``--lr-min`` to ``--lr-max``."""
    k = int(round(np.log2(args.lr_max / args.lr_min)))
    return tuple(float(args.lr_min * 2.0**i) for i in range(k + 1))


def run_check(args: argparse.Namespace, name: str, out: Path, make_model, **shape) -> Any:
    """One parameterization's :func:`jinit.transfer.check` into ``out / name`` with the studies' common settings
    (``shape``: ``widths=``, ``depths=``, ``parameterization=``), or with ``--report-only`` the folder read back
    (:func:`jinit.transfer.load`: nothing is trained)."""
    from jinit import transfer

    if args.report_only:
        return transfer.load(out / name)
    shape.setdefault("parameterization", name)
    return transfer.check(
        make_model,
        learning_rates=learning_rates(args),
        seeds=C.pick(args, "seeds", 8, 2),
        epochs=C.pick(args, "epochs", 10, 1),
        batch_size=64,
        data=args.dataset,
        train_size=256 if args.smoke else None,
        tolerance=args.tolerance,
        n_boot=500 if args.smoke else 4000,
        out=out / name,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        **shape,
    )


def int_list(flag: str, text: str) -> tuple[int, ...]:
    """A flag's comma-separated sizes (``--widths``, ``--depths``), sorted: at least two integers >= 1."""
    try:
        values = tuple(sorted(int(v) for v in text.split(",")))
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}") from None
    if len(values) < 2 or min(values) < 1:
        raise ValueError(f"{flag} needs at least two integers >= 1, got {text!r}")
    return values


def save_verdicts(results: dict, out: Path, args: argparse.Namespace) -> None:
    """Every parameterization's verdicts into ``out/verdicts.csv``, and (a full run into the committed folder)
    merged into the table of every transfer study."""
    rows = pd.concat([r.verdicts() for r in results.values()], ignore_index=True)
    files.write_csv(out / "verdicts.csv", rows)
    if not args.smoke and not args.out:
        merge_verdicts(TRANSFER_DIR / "verdicts.csv", rows)


def totals(results: dict) -> tuple[int, float]:
    """The models trained and the minutes spent in sweeps, over every parameterization."""
    n_models = sum(r.settings["n_models"] for r in results.values())
    return n_models, sum(r.settings["sweep_seconds"] for r in results.values()) / 60


def held_section(results: dict, expected: dict[str, str], axis: str, text: dict[str, str]) -> str:
    """The report's "What held and what did not": the findings, then each one's learning-rate sensitivity."""
    return (
        "## What held and what did not\n\n"
        + "\n\n".join(f"- {f}" for f in findings(results, expected, axis, text))
        + "\n\nHow robust each is to the learning rate, at the two ends (Wortsman et al.'s sensitivity on the "
        "validation loss; lower is more robust):\n\n"
        + "\n".join(f"- {line}" for line in sensitivity_lines(results, text, axis))
    )


def figures_section(fig: str, results: dict, text: dict[str, str]) -> str:
    """The report's figure, and a link to each parameterization's own report and figure."""
    return f"## Figures\n\n![{fig}]({fig})\n\nPer parameterization: " + ", ".join(
        f"[{text[p]}]({p}/report.md) ([figure]({p}/transfer.png))" for p in results
    )


def merge_verdicts(path: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Writes ``rows`` (:data:`VERDICT_COLUMNS`) into the table at ``path``, replacing the rows of the same
    (parameterization, axis) and keeping the others (the other study's)."""
    new = rows[VERDICT_COLUMNS]
    if path.is_file():
        old = pd.read_csv(path)
        keys = set(zip(new["parameterization"], new["axis"], strict=True))
        keep = [
            (p, a) not in keys for p, a in zip(old["parameterization"], old["axis"], strict=True)
        ]
        new = pd.concat([old[keep][VERDICT_COLUMNS], new], ignore_index=True)
    files.write_csv(path, new)
    return new


def findings(results: dict, expected: dict[str, str], axis: str, text: dict[str, str]) -> list[str]:
    """One computed line per parameterization (its verdict against the expected one), then whether the
    verdicts separate the parameterizations as expected."""
    out, differ = [], []
    for name, res in results.items():
        v = res.verdict[axis]
        same = v.verdict == expected[name]
        if not same:
            differ.append(f"{text[name]} ({v.verdict}, expected {expected[name]})")
        moves = v.ci_low > 0 or v.ci_high < 0
        if v.verdict == "drifts":
            zero = ""
        elif moves and v.verdict == "transfers":
            zero = " The interval excludes 0: the optimum does move, by less than the band."
        elif moves:
            zero = (
                f" The interval excludes 0: the optimum does move with the {axis}; whether by more than "
                f"±{v.tolerance:g} per doubling is not settled."
            )
        else:
            zero = " The interval contains 0."
        out.append(
            f"**{text[name]}: {v.verdict}** (expected: {expected[name]}; "
            f"{'as expected' if same else 'the data say otherwise'}). {v.reason}.{zero}"
        )
    if differ:
        out.insert(
            0,
            "**The verdicts do not separate the parameterizations as expected**: "
            + "; ".join(differ)
            + ". The rows below give each interval; read them before the expectation.",
        )
    else:
        out.insert(0, "**The verdicts separate the parameterizations as expected.**")
    return out


def optimum_figure(results: dict, axis: str, text: dict[str, str]):
    """The optimum against the size for every parameterization (95% intervals), with each fitted slope."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    names = list(results)
    for i, name in enumerate(names):
        res = results[name]
        o = res.optima.sort_values(axis)
        x = o[axis].to_numpy(np.float64) * 2 ** (0.06 * (i - (len(names) - 1) / 2))  # dodge
        y = np.log2(o["optimum_lr"].to_numpy(np.float64))
        err = [y - np.log2(o["optimum_ci_low"]), np.log2(o["optimum_ci_high"]) - y]
        v = res.verdict[axis]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=f"C{i}",
                    label=f"{text[name]}: {v.verdict}, slope {v.slope:+.2f} [{v.ci_low:+.2f}, {v.ci_high:+.2f}]")  # fmt: skip
        edge = o["at_edge"].astype(str).to_numpy() != ""
        if edge.any():
            ax.scatter(x[edge], y[edge], marker="x", s=60, color="red", zorder=4)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(axis)
    ax.set_ylabel("log2 best learning rate (validation loss)")
    ax.set_title(f"best learning rate vs {axis} (95% bootstrap intervals; x: optimum on the grid's edge)",
                 fontsize=9)  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def slope_table(results: dict, text: dict[str, str], axis: str) -> pd.DataFrame:
    """One row per parameterization: slope, interval, factor per doubling, verdict, seeds that would settle it."""
    rows = []
    for name, res in results.items():
        v = res.verdict[axis]
        rows.append(
            {
                "parameterization": text[name],
                "slope": f"{v.slope:+.3f}",
                "95% CI": f"[{v.ci_low:+.3f}, {v.ci_high:+.3f}]",
                "per doubling": f"x{2**v.slope:.3g} [x{2**v.ci_low:.3g}, x{2**v.ci_high:.3g}]",
                "verdict": v.verdict,
                "seeds needed": "-" if not np.isfinite(v.seeds_needed) else f"{v.seeds_needed:.0f}",
            }
        )
    return pd.DataFrame(rows)


def optima_table(results: dict, text: dict[str, str], axis: str) -> pd.DataFrame:
    """One row per parameterization and size: the optimum with its interval, edge, confidence set of learning
    rates, the loss there and the learning-rate sensitivity."""
    rows = []
    for name, res in results.items():
        for r in res.optima.sort_values(axis).itertuples():
            rows.append(
                {
                    "parameterization": text[name],
                    axis: getattr(r, axis),
                    "best lr": f"{r.best_lr:.3g}",
                    "optimum [95% CI]": f"{r.optimum_lr:.3g} [{r.optimum_ci_low:.3g}, {r.optimum_ci_high:.3g}]",
                    "edge": r.at_edge or "-",
                    "best set": f"{r.best_set_low:.3g} ... {r.best_set_high:.3g}",
                    "val loss": f"{r.loss_at_best:.4f}",
                    "val acc": "-"
                    if not np.isfinite(r.accuracy_at_best)
                    else C.pct(r.accuracy_at_best),
                    "lr sensitivity [95% CI]": f"{r.lr_sensitivity:.3f} [{r.lr_sensitivity_ci_low:.3f}, "
                    f"{r.lr_sensitivity_ci_high:.3f}]",
                    "diverged": int(r.diverged),
                }
            )
    return pd.DataFrame(rows)


def coords_table(results: dict, text: dict[str, str], layers: tuple[str, ...]) -> pd.DataFrame:
    """The coordinate check beside the outcome: each parameterization's growth of the change of ``layers`` (those
    every size has) after 3 steps, from the smallest to the largest size."""
    rows = []
    for name, res in results.items():
        g = res.coord_growth()
        for layer in layers:
            if g.empty or layer not in set(g["layer"]):
                continue
            r = g[g["layer"] == layer].iloc[0]
            rows.append(
                {
                    "parameterization": text[name],
                    "layer": layer,
                    "sizes": r["sizes"],
                    "change growth": f"x{r['delta_growth']:.2f}",
                    "mean |x| growth": f"x{r['l1_growth']:.2f}",
                    "verdict (outcome)": next(iter(res.verdict.values())).verdict,
                }
            )
    return pd.DataFrame(rows)


def sensitivity_lines(results: dict, text: dict[str, str], axis: str) -> list[str]:
    """Per parameterization, the learning-rate sensitivity at the smallest and the largest size (mean over seeds,
    95% t interval): whether the loss curve's basin keeps its shape as the size grows (a description, no test)."""
    out = []
    for name, res in results.items():
        o = res.optima.sort_values(axis)
        a, b = o.iloc[0], o.iloc[-1]
        out.append(
            f"{text[name]}: learning-rate sensitivity {a['lr_sensitivity']:.3f} [{a['lr_sensitivity_ci_low']:.3f}, "
            f"{a['lr_sensitivity_ci_high']:.3f}] at {axis} {a[axis]}, {b['lr_sensitivity']:.3f} "
            f"[{b['lr_sensitivity_ci_low']:.3f}, {b['lr_sensitivity_ci_high']:.3f}] at {axis} {b[axis]}"
            + "."
        )
    return out

"""The MNIST-1D MLP baseline across initialization schemes and seeds.

MNIST-1D (Greydanus & Kobak, 2024) is a 40-dimensional, 10-class toy problem on which architectures differ far more
than on MNIST; the paper reports about 68% test accuracy for its MLP. That MLP (the repository's ``MLPBase``) is
``Linear(40, 100) -> relu``, then a residual ``h + relu(Linear(100, 100)(h))``, then ``Linear(100, 10)``, trained
with Adam (lr 1e-2, batch 100) with PyTorch's default init. This script rebuilds that model in Flax, trains it
under several schemes x seeds, and puts each scheme's mean +- 95% CI beside the paper's number.

Writes ``run/``, ``report.md`` and PNG figures under ``experiments/results/mnist1d/``.

Usage::

    python experiments/mnist1d.py                        # full: 7 schemes x 10 seeds x 6000 steps
    python experiments/mnist1d.py --smoke --out /tmp/m1  # seconds
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# This file has the name of the `mnist1d` package that generates the data: put its folder last on the path, so
# that `import mnist1d` finds the package while `import _common` still finds the helper beside this file.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE] + [_HERE]

import _common as C  # noqa: E402
import flax.linen as nn  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jinit import plots, sweep  # noqa: E402

NAME = "mnist1d"
SCHEMES = (
    "torch_default",
    "glorot_uniform",
    "glorot_normal",
    "he_normal",
    "lecun_normal",
    "orthogonal",
    "normal",
)
PAPER_ACCURACY = 0.68  # MNIST-1D paper / README: MLP baseline, about 68% test accuracy


class MLPBase(nn.Module):
    """The MNIST-1D repository's ``MLPBase`` in Flax: every Dense layer takes the scheme's initializers."""

    hidden: int = 100
    num_classes: int = 10
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x):
        def dense(n, name):
            return nn.Dense(n, kernel_init=self.kernel_init, bias_init=self.bias_init, name=name)

        x = x.reshape((x.shape[0], -1))
        h = nn.relu(dense(self.hidden, "Dense_0")(x))
        h = h + nn.relu(dense(self.hidden, "Dense_1")(h))
        return dense(self.num_classes, "Dense_2")(h)


def make_model(kernel_init, bias_init) -> nn.Module:
    return MLPBase(kernel_init=kernel_init, bias_init=bias_init)


def config(args) -> sweep.SweepConfig:
    return sweep.SweepConfig(
        dataset="mnist1d",
        hidden=(
            100,
            100,
        ),  # documents the custom model's widths (run() builds MLPBase via make_model)
        schemes=args.schemes,
        bias_init="zeros",
        seeds=C.pick(args, "seeds", 10, 2),
        epochs=C.pick(
            args, "epochs", 150, 1
        ),  # 4000 / 100 = 40 steps per epoch: 150 epochs = 6000 steps
        batch_size=100,
        optimizer="adam",
        learning_rate=1e-2,
        target_accuracy=0.6,
        train_size=1000 if args.smoke else None,
        eval_every=None,
    )


def table(summary: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in summary.iterrows():
        lo, hi = r["acc_ci95_low"], r["acc_ci95_high"]
        if not np.isfinite(lo):
            where = "-"
        elif lo > PAPER_ACCURACY:
            where = "above"
        elif hi < PAPER_ACCURACY:
            where = "below"
        else:
            where = "inside"
        rows.append(
            {
                "scheme": r["scheme"],
                "mean ± 95% CI": C.row_pm(r),
                "std": C.pct(r["acc_std"]),
                "min – max": f"{C.pct(r['acc_min'])} – {C.pct(r['acc_max'])}",
                "epochs to 60% (median)": r["epochs_to_target_median"],
                "churn": f"{100 * r['churn']:.1f}%",
                "paper's 68% is": where,
                "IQM [95% CI]": C.iqm_text(r),
                "vs best": C.best_text(summary, r),
                "P(> best) [95% CI]": C.poi_text(r),
                "detectable gap": C.pct(r["mdd_vs_best"]),
            }
        )
    return pd.DataFrame(rows)


def paragraph(summary: pd.DataFrame, seeds: int) -> str:
    best = summary.iloc[0]
    tied = summary[summary["in_best_set"]]["scheme"].tolist()
    below = summary[~summary["in_best_set"]]["scheme"].tolist()
    spread = 100 * (summary["acc_max"].max() - summary["acc_min"].min())
    others = [s for s in tied if s != best["scheme"]]
    gaps = summary.set_index("scheme").loc[others, "mdd_vs_best"] if others else pd.Series([])
    test = next((t for t in summary["test_vs_best"] if t), "t-test")
    why = ", seeds are not paired under `vary='init'`" if test == "Welch's t-test" else ""
    text = (
        f"Best mean: **{best['scheme']}** at {C.row_pm(best)}%. Not distinguishable from the best at {seeds} "
        f"seeds (95% confidence set for the best; {test}s{why}): "
        f"{', '.join(others) or 'none'}"
        + (
            f" -- these seeds would detect a gap of {C.pct(gaps.min())}-{C.pct(gaps.max())} points with 80% "
            "power, so smaller differences may be real. "
            if len(gaps)
            else ". "
        )
        + f"Below the best: {', '.join(below) or 'none'}. "
        f"Across all {len(summary)} schemes x {seeds} seeds the final accuracies span {spread:.1f} points. "
    )
    if "torch_default" in set(summary["scheme"]):
        t = summary.set_index("scheme").loc["torch_default"]
        text += f"With the paper's own init (PyTorch default) this reimplementation reaches {C.row_pm(t)}%. "
    return text


def report(result, out: Path, command: str) -> Path:
    cfg = result.config
    summary = result.summary()
    figs = [p.name for p in plots.save_all(result, out)]
    steps = result.meta.get("steps_per_epoch", 0) * cfg.epochs
    setup = (
        f"MNIST-1D ({result.meta.get('n_train')} train / {result.meta.get('n_test')} test signals of length 40, "
        f"generated by the `mnist1d` package with its default arguments). Model: `MLPBase` 40-100-100(residual)-10, "
        f"ReLU, zero biases (PyTorch's default bias init depends on each layer's fan-in, which a single "
        f"`bias_init` cannot express). Adam lr={cfg.learning_rate:g}, batch {cfg.batch_size}, {cfg.epochs} "
        f"epochs = {steps} steps (the paper trains 6000-8000 steps without shuffling; here every epoch is "
        f"reshuffled, the same order for every model). {cfg.seeds} seeds per scheme. "
        + C.run_facts([result])
    )
    if cfg.train_size:
        setup += f"\n\n**Smoke run** (first {cfg.train_size} training signals, {cfg.epochs} epoch): not a result."
    sections = [
        "The MNIST-1D paper reports about 68% test accuracy for its MLP. Here that number is one point per "
        "scheme beside the distribution over seeds; `torch_default` is the paper's init (kernels "
        "U(-1/sqrt(fan_in), 1/sqrt(fan_in))).",
        "## Setup\n\n" + setup,
        "## Accuracy per scheme\n\n"
        + C.md_table(
            table(summary),
            {"epochs to 60% (median)": lambda v: "-" if not np.isfinite(v) else f"{v:.0f}"},
        )
        + "\n\n`paper's 68% is`: where the paper's number lies relative to the scheme's 95% CI. `IQM`: "
        "interquartile mean with its 95% stratified-bootstrap interval (Agarwal et al. 2021). `vs best`: whether "
        "the scheme is in the 95% confidence set for the best (Bonferroni over the one-sided comparisons). "
        "`detectable gap`: the smallest gap to the best (points) detectable with 80% power at these seeds. "
        "`P(> best)`: probability that a run of the scheme beats a run of the best.",
        "## Reading\n\n" + paragraph(summary, cfg.seeds),
        C.verdict_section(
            out,
            {f"{k} vs best": v for k, v in C.best_verdicts(summary).items()},
            {f"{k} vs best": v for k, v in C.old_best_verdicts(result.models).items()},
        ),
        "## Figures\n\n" + "\n\n".join(f"![{f}]({f})" for f in figs),
        f"## Reproduce\n\n```bash\n{command}\n```",
        "Reference: S. Greydanus, D. Kobak. Scaling down deep learning with MNIST-1D. ICML 2024.",
    ]
    return C.write_report(out, "MNIST-1D MLP baseline across schemes and seeds", sections)


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--schemes", default=None, help=f"comma-separated (default {','.join(SCHEMES)})")
    args = p.parse_args(argv)
    args.schemes = args.schemes or ("torch_default,he_normal" if args.smoke else ",".join(SCHEMES))
    out = C.out_dir(args, NAME)
    result = C.run_or_load(config(args), out / "run", args, model=make_model)
    path = report(result, out, C.command_line(argv, NAME))
    print(result.summary()[["scheme", "acc_mean", "acc_ci95_low", "acc_ci95_high", "acc_std"]])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    # one JAX device per core, the file backend for figures, one-line errors (see _common.run_script)
    sys.exit(C.run_script(NAME, main))

"""Certified learning-rate transfer across depth: SP vs Depth-muP in a residual MLP.

Does the best Adam learning rate stay put when a residual network gets deeper? Two parameterizations of the same
pre-activation residual MLP (:class:`jinit.models.ResidualMLP` with ``preact=True``, one Dense layer per block,
a LayerNorm after it: ``x <- x + m * LN(W relu(x))``), width fixed, depths 2-32, on the embedded ``digits`` data:

* ``sp``: branch multiplier 1, He init, one Adam learning rate (expected: drifts, the residual stream grows with
  depth and so does the effect of a step);
* ``depth_mup``: branch multiplier ``sqrt(2 / depth)`` and the blocks' Adam learning rates ``x sqrt(2 / depth)``
  (Yang et al. 2023, Tensor Programs VI; Bordelon et al. 2023), base depth 2 (expected: transfers).

:func:`jinit.transfer.check` gives the slope of ``log2(best lr)`` against ``log2(depth)`` with a bootstrap interval
over seeds, and a verdict. Writes one folder per parameterization under ``experiments/results/transfer/depth/``,
``report.md``, ``optimum_vs_depth.png`` and ``verdicts.csv`` there, and merges the verdicts into
``experiments/results/transfer/verdicts.csv``.

Usage::

    python experiments/transfer_depth.py                          # depths 2-32, 13 lrs, 8 seeds, x2
    python experiments/transfer_depth.py --smoke --out /tmp/td     # seconds
"""

from __future__ import annotations

import sys

import _common as C
import _transfer as T
import pandas as pd

from jinit import models, transfer

NAME = "transfer_depth"
PARAMS = ("sp", "depth_mup")
TEXT = {"sp": "SP", "depth_mup": "Depth-muP"}
EXPECTED = {"sp": "drifts", "depth_mup": "transfers"}


def model(norm: str | None):
    def make(width: int, depth: int):
        return models.factory(
            "resmlp", width=width, depth=depth, preact=True, branch_layers=1, norm=norm
        )

    return make


def run(args, param: str, out) -> transfer.TransferResult:
    make = model(None if args.norm == "none" else args.norm)
    return T.run_check(args, param, out, make, widths=(args.width,), depths=args.depths)


def report(results: dict, out, command: str, args) -> str:
    T.save_verdicts(results, out, args)
    fig = C.save_figure(T.optimum_figure(results, "depth", TEXT), out / "optimum_vs_depth.png")
    first = next(iter(results.values()))
    s = first.settings
    n_models, minutes = T.totals(results)
    norm = "a LayerNorm after each block's Dense" if args.norm != "none" else "no normalization"
    setup = (
        f"`{s['data']}` ({'first 256 training images, ' if args.smoke else ''}20% of the training set held out "
        f"for validation). Pre-activation residual MLP, width {args.width}, one Dense layer per block with {norm} "
        f"(`x <- x + m {'LN(' if args.norm != 'none' else '('}W relu(x))`), depths "
        f"{', '.join(map(str, s['depths']))} ({s['depths'][-1] // s['depths'][0]}x; base depth {s['depths'][0]}, "
        f"where the two are the same model). Adam, batch {s['batch_size']}, {s['epochs']} epochs, {s['seeds']} "
        f"seeds (`vary='both'`), learning rates {s['learning_rates'][0]:.3g} ... {s['learning_rates'][-1]:.3g} in "
        f"steps of x2 ({len(s['learning_rates'])} values, one compiled program per depth). Optimum: the parabolic "
        f"minimum of the mean final validation loss; slope: least squares of log2(optimum) on log2(depth); "
        f"interval: expanded percentile bootstrap over seeds (resampled jointly across depths); verdict band "
        f"±{s['tolerance']:g}. {n_models} models, {minutes:.1f} min in sweeps on {s['device']}."
    )
    setup += (
        "\n\nTensor Programs VI derives Depth-muP for blocks of one layer without normalization; the LayerNorm "
        "here keeps SP trainable at depth 32 (without it, in theory, SP's residual stream doubles its variance per block "
        "under He init), so the comparison is about the optimum, not about SP diverging. `--norm none` runs the "
        "unnormalized network."
    )
    setup += (
        "\n\nA **small run** sized for a shared 2-core CPU. On a GPU: `python experiments/transfer_depth.py "
        "--depths 2,4,8,16,32,64,128 --width 256 --seeds 16 --epochs 20 --out /tmp/td`."
    )
    if args.smoke:
        setup += "\n\n**Smoke run** (256 images, 1 epoch, 2 seeds): not a result."
    sections = [
        "Does the best Adam learning rate stay put as the residual network deepens? Expected (Yang et al. 2023; "
        "Bordelon et al. 2023): under SP it drifts with depth; under Depth-muP it transfers.",
        "## Setup\n\n" + setup,
        T.held_section(results, EXPECTED, "depth", TEXT),
        "## Slope of the optimum (log2 learning rate per doubling of the depth)\n\n"
        + C.md_table(T.slope_table(results, TEXT, "depth")),
        "## Optimum per depth\n\n"
        + C.md_table(T.optima_table(results, TEXT, "depth"))
        + "\n\n`best set`: the learning rates not distinguishable from the best (95% confidence set, paired by "
        "seed, Bonferroni). `lr sensitivity`: Wortsman et al.'s mean excess validation loss over the grid "
        "(diverged runs count as the initial loss), mean over seeds with a 95% t interval.",
        "## The coordinate check beside the outcome\n\n"
        + C.md_table(
            T.coords_table(results, TEXT, ("output", "stem_out", "block_0_out", "block_1_out"))
        )
        + "\n\nGrowth of the mean |change| of a layer's output after 3 Adam steps from the shallowest to the "
        "deepest network (at each parameterization's best learning rate at the base depth); the layers every depth "
        "has (the stem, the first two blocks, the logits).",
        T.figures_section(fig, results, TEXT),
        f"## Reproduce\n\n```bash\n{command}\n```",
        "References: Yang, Yu, Zhu, Hayou. Tensor Programs VI: feature learning in infinite-depth neural "
        "networks. arXiv:2310.02244, 2023. Bordelon, Noci, Li, Hanin, Pehlevan. Depthwise hyperparameter transfer "
        "in residual networks. arXiv:2309.16620, 2023.",
    ]
    return C.write_report(out, "Learning-rate transfer across depth", sections)


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--depths", default=None, help="comma-separated depths (default 2,4,8,16,32)")
    p.add_argument("--width", type=int, default=None, help="width of every block (default 64)")
    p.add_argument(
        "--norm", choices=("layer", "none"), default="layer", help="norm after each block's Dense"
    )
    p.add_argument(
        "--lr-min", type=float, default=None, help="smallest learning rate (default 2^-14)"
    )
    p.add_argument(
        "--lr-max", type=float, default=None, help="largest learning rate (default 2^-2)"
    )
    p.add_argument(
        "--tolerance", type=float, default=transfer.DEFAULT_TOLERANCE, help="verdict band"
    )
    p.add_argument("--dataset", default="digits", help="dataset name (digits, mnist1d, ...)")
    args = p.parse_args(argv)
    args.depths = T.int_list("--depths", args.depths or ("1,2,4" if args.smoke else "2,4,8,16,32"))
    args.width = args.width or (16 if args.smoke else 64)
    if args.width < 1:
        raise ValueError(f"--width must be >= 1, got {args.width}")
    args.lr_min = args.lr_min or (2.0**-10 if args.smoke else 2.0**-14)
    args.lr_max = args.lr_max or (2.0**-4 if args.smoke else 2.0**-2)
    if not 0 < args.lr_min < args.lr_max:
        raise ValueError(f"need 0 < --lr-min < --lr-max, got {args.lr_min} and {args.lr_max}")
    out = T.out_dir(args, "depth")
    results = {param: run(args, param, out) for param in PARAMS}
    path = report(results, out, C.command_line(argv, NAME), args)
    print(
        pd.read_csv(out / "verdicts.csv")[
            ["parameterization", "slope", "slope_ci_low", "slope_ci_high", "verdict"]
        ]
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    # one JAX device per core, the file backend for figures, one-line errors (see _common.run_script)
    sys.exit(C.run_script(NAME, main))

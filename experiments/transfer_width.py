"""Certified learning-rate transfer across width: SP, muP, SP with per-layer learning rates, and a broken muP.

Does the best Adam learning rate stay put when an MLP gets wider? :func:`jinit.transfer.check` answers per
parameterization with a slope of ``log2(best lr)`` against ``log2(width)``, a bootstrap interval over seeds and
a verdict (``transfers`` / ``drifts`` / ``inconclusive``, tolerance band +-0.25 by default). Four
parameterizations of the same MLP (``hidden=(w, w)``, ReLU) on the embedded ``digits`` data, base width = the
narrowest (where all four are the same model):

* ``sp``: He init, one Adam learning rate (expected: drifts);
* ``mup``: :func:`jinit.mup` + muP's per-layer Adam learning rates (expected: transfers);
* ``sp_per_layer_lr``: SP's init with muP's per-layer learning rates (Everett et al. 2024; expected: transfers);
* ``mup_readout_unscaled``: a deliberately broken muP, built by hand as a :class:`jinit.transfer.Parameterization`:
  muP everywhere except the readout, which keeps SP's init and the base learning rate (what forgetting
  ``MuReadout`` does; expected: drifts).

Writes one folder per parameterization under ``experiments/results/transfer/width/`` (a run folder per width,
``report.md``, ``transfer.png``, the tables), ``report.md``, ``optimum_vs_width.png`` and ``verdicts.csv`` there,
and merges the verdicts into ``experiments/results/transfer/verdicts.csv``.

Usage::

    python experiments/transfer_width.py                          # widths 32-1024, 11 lrs, 8 seeds, x4
    python experiments/transfer_width.py --smoke --out /tmp/tw     # seconds
"""

from __future__ import annotations

import sys

import _common as C
import _transfer as T
import pandas as pd

import jinit
from jinit import models, transfer

NAME = "transfer_width"
PARAMS = ("sp", "mup", "sp_per_layer_lr", "mup_readout_unscaled")
TEXT = {
    "sp": "SP",
    "mup": "muP",
    "sp_per_layer_lr": "SP + per-layer lr",
    "mup_readout_unscaled": "broken muP (readout unscaled)",
}
EXPECTED = {
    "sp": "drifts",
    "mup": "transfers",
    "sp_per_layer_lr": "transfers",
    "mup_readout_unscaled": "drifts",
}


def make_model(width: int):
    return models.factory("mlp", hidden=(width, width), activation="relu")


def _unscaled_readout(lay: transfer.Layout):
    """muP's per-layer learning rates, except the readout's: the base learning rate."""
    mults = jinit.mup_multipliers(lay.params, lay.base_params)
    mults[lay.readout] = 1.0
    return lambda learning_rate: jinit.per_layer_adam(learning_rate, mults)


def broken_mup() -> transfer.Parameterization:
    """muP with an unscaled readout, by hand: SP's init (the readout's Var = 2 / fan_in, not ~ 1 / fan_in^2) and
    muP's per-layer learning rates but the readout's."""
    return transfer.Parameterization("mup_readout_unscaled", transfer.sp().init, _unscaled_readout)


def run(args, param: str, out) -> transfer.TransferResult:
    spec = broken_mup() if param == "mup_readout_unscaled" else param
    return T.run_check(args, param, out, make_model, widths=args.widths, parameterization=spec)


def report(results: dict, out, command: str, args) -> str:
    T.save_verdicts(results, out, args)
    fig = C.save_figure(T.optimum_figure(results, "width", TEXT), out / "optimum_vs_width.png")
    first = next(iter(results.values()))
    s = first.settings
    n_models, minutes = T.totals(results)
    setup = (
        f"`{s['data']}` ({'first 256 training images, ' if args.smoke else ''}20% of the training set held out "
        f"for validation). MLP in-w-w-10, ReLU, widths {', '.join(map(str, s['widths']))} "
        f"({s['widths'][-1] // s['widths'][0]}x; base width {s['widths'][0]}, where the four are the same model). "
        f"Adam, batch {s['batch_size']}, {s['epochs']} epochs, {s['seeds']} seeds (`vary='both'`: a seed changes "
        f"the init and the batch order), learning rates {s['learning_rates'][0]:.3g} ... "
        f"{s['learning_rates'][-1]:.3g} in steps of x2 ({len(s['learning_rates'])} values, the sweep's "
        f"learning-rate axis: one compiled program per width). Optimum: the parabolic minimum of the mean final "
        f"validation loss; slope: least squares of log2(optimum) on log2(width); interval: expanded percentile "
        f"bootstrap over seeds ({first.slope['seeds'].iloc[0]} seeds resampled jointly across widths); "
        f"verdict band ±{s['tolerance']:g}. {len(results)} parameterizations, {n_models} models, "
        f"{minutes:.1f} min in sweeps on {s['device']}."
    )
    setup += (
        "\n\nA **small run** sized for a shared 2-core CPU. On a GPU: `python experiments/transfer_width.py "
        "--widths 64,128,256,512,1024,2048,4096 --seeds 16 --epochs 20 --dataset mnist1d --out /tmp/tw`."
    )
    if args.smoke:
        setup += "\n\n**Smoke run** (256 images, 1 epoch, 2 seeds): not a result."
    sections = [
        "Does the best Adam learning rate stay put as the MLP widens? Expected (Yang et al. 2022; Everett et al. "
        "2024): SP and a muP with an unscaled readout drift; muP and SP with per-layer learning rates transfer.",
        "## Setup\n\n" + setup,
        T.held_section(results, EXPECTED, "width", TEXT),
        "## Slope of the optimum (log2 learning rate per doubling of the width)\n\n"
        + C.md_table(T.slope_table(results, TEXT, "width")),
        "## Optimum per width\n\n"
        + C.md_table(T.optima_table(results, TEXT, "width"))
        + "\n\n`best set`: the learning rates not distinguishable from the best (95% confidence set, paired t-tests "
        "by seed, Bonferroni). `lr sensitivity`: Wortsman et al.'s mean excess validation loss over the grid "
        "(diverged runs count as the initial loss), mean over seeds with a 95% t interval.",
        "## The coordinate check beside the outcome\n\n"
        + C.md_table(T.coords_table(results, TEXT, ("output", "pre_1")))
        + "\n\nGrowth of the mean |change| of the layer's output after 3 Adam steps (at each parameterization's "
        "best learning rate at the base width) from the narrowest to the widest width: ~x1 is what muP's "
        "coordinate check asks for.",
        T.figures_section(fig, results, TEXT),
        f"## Reproduce\n\n```bash\n{command}\n```",
        "References: Yang et al. Tensor Programs V. arXiv:2203.03466, 2022. Everett et al. Scaling exponents "
        "across parameterizations and optimizers. ICML 2024. Wortsman et al. arXiv:2309.14322, 2023. Hesterberg. "
        "What teachers should know about the bootstrap. 2015.",
    ]
    return C.write_report(out, "Learning-rate transfer across width", sections)


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--widths", default=None, help="comma-separated widths (default 32,64,...,1024)")
    p.add_argument(
        "--lr-min", type=float, default=None, help="smallest learning rate (default 2^-13)"
    )
    p.add_argument(
        "--lr-max", type=float, default=None, help="largest learning rate (default 2^-3)"
    )
    p.add_argument(
        "--tolerance", type=float, default=transfer.DEFAULT_TOLERANCE, help="verdict band"
    )
    p.add_argument("--dataset", default="digits", help="dataset name (digits, mnist1d, ...)")
    p.add_argument(
        "--params", default=",".join(PARAMS), help=f"parameterizations ({', '.join(PARAMS)})"
    )
    args = p.parse_args(argv)
    args.widths = T.int_list(
        "--widths", args.widths or ("16,32,64" if args.smoke else "32,64,128,256,512,1024")
    )
    args.lr_min = args.lr_min or (2.0**-10 if args.smoke else 2.0**-13)
    args.lr_max = args.lr_max or (2.0**-4 if args.smoke else 2.0**-3)
    if not 0 < args.lr_min < args.lr_max:
        raise ValueError(f"need 0 < --lr-min < --lr-max, got {args.lr_min} and {args.lr_max}")
    params = tuple(x.strip() for x in args.params.split(",") if x.strip())
    bad = [x for x in params if x not in PARAMS]
    if bad or not params:
        raise ValueError(f"unknown --params {bad or params}; valid: {', '.join(PARAMS)}")
    out = T.out_dir(args, "width")
    results = {param: run(args, param, out) for param in params}
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

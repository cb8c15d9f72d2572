"""Learning-rate sensitivity of a small transformer, with and without qk-layernorm (Wortsman et al. 2023).

Wortsman et al. found that qk-layernorm (a LayerNorm on the queries and keys before their dot product) keeps the
attention logits from growing at large learning rates, which lowers the *learning-rate sensitivity*: the mean
over a learning-rate grid of ``min(final loss, initial loss) - best final loss``
(:func:`jinit.metrics.lr_sensitivity`; lower is more robust). This study asks whether that holds for a small
pre-LN transformer (:class:`jinit.models.Transformer`) on associative recall (:func:`jinit.data.associative_recall`,
offline, seeded): init scheme (plain ``normal(0.02)`` and GPT-2's scaled residual init) x qk-layernorm off/on x a
learning-rate grid from 1e-4 to 1 x seeds.

One sweep per qk setting (the schemes and the learning rates are grid axes of one compiled program). The
sensitivity is computed per seed on the final validation loss (the loss at initialization is each model's own),
then compared between qk-layernorm on and off **paired by seed**: seed ``s`` has the same batches in both sweeps
(``vary='both'`` draws the order from the seed alone) and the same initial value of every parameter the two
networks share (the schemes are :func:`jinit.rules`, which draw each parameter from its own path's key), so the
pair differs in the qk-layernorm only. Holm's correction over the init schemes.

Writes ``run_qk_off/``, ``run_qk_on/``, ``report.md``, ``lr_sensitivity.png`` and ``sensitivity.csv`` under
``experiments/results/lr_sensitivity/``.

Usage::

    python experiments/lr_sensitivity.py                          # 2 schemes x 2 x 9 lrs x 8 seeds
    python experiments/lr_sensitivity.py --smoke --out /tmp/ls     # seconds
"""

from __future__ import annotations

import sys
from pathlib import Path

import _common as C
import numpy as np
import pandas as pd

import jinit
from jinit import data, files, metrics, models, sweep

NAME = "lr_sensitivity"
QK = {"qk_off": False, "qk_on": True}


def plain(std: float = 0.02) -> jinit.Rules:
    """The plain GPT init: every kernel and embedding N(0, std^2), zero biases."""
    return jinit.rules(
        {
            "kernel": jinit.initializers.normal(stddev=std),
            "embedding": jinit.initializers.normal(stddev=std),
            "bias": "zeros",
        },
        label=f"normal({std:g})",
    )


def schemes(args) -> tuple:
    return (plain(), jinit.gpt2(args.layers))


def short(scheme: str) -> str:
    return scheme if scheme.startswith("normal(") else scheme.split("(")[0]


def model(args, qk: bool):
    kw = dict(vocab=args.vocab, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
              max_len=2 * args.n_pairs + 1, qk_norm=qk)  # fmt: skip

    def make():
        return models.LastTokenTransformer(**kw)

    return make


def config(args) -> sweep.SweepConfig:
    return sweep.SweepConfig(
        hidden=(args.d_model,),  # documents the width (run() builds the model via model=)
        schemes=schemes(args),
        seeds=C.pick(args, "seeds", 8, 2),
        epochs=C.pick(args, "epochs", 10, 1),
        batch_size=64,
        optimizer="adam",
        learning_rate=learning_rates(args),
        vary="both",
        val_fraction=0.2,
    )


def learning_rates(args) -> tuple[float, ...]:
    k = int(round(2 * np.log10(args.lr_max / args.lr_min)))  # half-decades: x sqrt(10)
    return tuple(float(args.lr_min * 10 ** (i / 2)) for i in range(k + 1))


#: A seed "solves" associative recall when its validation accuracy reaches this at some learning rate.
SOLVED = 0.9


def per_seed(res) -> pd.DataFrame:
    """One row per (scheme, seed): its lr sensitivity on the validation loss, its best learning rate and best
    final validation loss, whether it solved the task at some learning rate, and how many learning rates ended at
    or above the initial loss (or diverged)."""
    c = res.curves.sort_values("step", kind="stable")
    rows = []
    for (scheme, seed), g in c.groupby(["scheme", "seed"], sort=False):
        first = g.groupby("learning_rate").head(1).set_index("learning_rate").sort_index()
        last = g.groupby("learning_rate").tail(1).set_index("learning_rate").sort_index()
        final = last["val_loss"].where(~last["diverged"].astype(bool))
        init = first["val_loss"]
        rows.append(
            {
                "scheme": short(str(scheme)),
                "seed": int(seed),
                "lr_sensitivity": metrics.lr_sensitivity(final.to_numpy(), init.to_numpy()),
                "best_lr": float(final.idxmin()) if final.notna().any() else np.nan,
                "best_loss": float(final.min()),
                "solved": bool((last["val_accuracy"] >= SOLVED).any()),
                "above_init": int((~(final < init)).sum()),
                "n_lrs": int(len(final)),
                "diverged": int(last["diverged"].astype(bool).sum()),
            }
        )
    return pd.DataFrame(rows)


def _paired(seeds: dict, scheme: str, column: str):
    on, off = (
        seeds[q][seeds[q]["scheme"] == scheme].set_index("seed")[column]
        for q in ("qk_on", "qk_off")
    )
    return metrics.compare(on, off, paired=True), metrics.min_detectable_difference(
        on, off, paired=True
    )


def table(runs: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per scheme and qk setting: the sensitivity and the best loss (means, 95% CIs over seeds), seeds that solve
    the task, runs ending at or above their initial loss; per scheme the paired differences qk on - off of the
    sensitivity (with p, Holm's verdict and the smallest difference these seeds would detect) and of the best
    loss."""
    seeds = {qk: per_seed(res) for qk, res in runs.items()}
    rows, diffs = [], []
    for qk, df in seeds.items():
        for scheme, g in df.groupby("scheme", sort=False):
            ci, best = (
                metrics.mean_ci(g["lr_sensitivity"].to_numpy()),
                metrics.mean_ci(g["best_loss"].to_numpy()),
            )
            rows.append({"scheme": scheme, "qk_norm": qk == "qk_on", "lr_sensitivity": ci.mean,
                         "ci_low": ci.low, "ci_high": ci.high, "n": len(g),
                         "best_loss": best.mean, "best_loss_ci_low": best.low, "best_loss_ci_high": best.high,
                         "solved": int(g["solved"].sum()), "above_init": int(g["above_init"].sum()),
                         "runs": int(g["n_lrs"].sum()), "median_best_lr": float(g["best_lr"].median()),
                         "diverged_models": int(g["diverged"].sum())})  # fmt: skip
    if set(seeds) != set(QK):
        return pd.DataFrame(rows), pd.DataFrame()
    for scheme in seeds["qk_on"]["scheme"].unique():
        r, mdd = _paired(seeds, scheme, "lr_sensitivity")
        b, _ = _paired(seeds, scheme, "best_loss")
        diffs.append({"scheme": scheme, "diff": r.diff, "ci_low": r.ci_low, "ci_high": r.ci_high,
                      "p": r.p_value, "p_rank": r.p_rank, "p_on_lower": 1.0 - r.p_a_gt_b, "mdd": mdd,
                      "n": r.n_a, "best_diff": b.diff, "best_ci_low": b.ci_low, "best_ci_high": b.ci_high,
                      "best_p": b.p_value})  # fmt: skip
    d = pd.DataFrame(diffs)
    d["holm_significant"] = C.holm(d["p"].to_numpy())
    return pd.DataFrame(rows), d


def findings(diffs: pd.DataFrame, tab: pd.DataFrame | None = None) -> list[str]:
    out = []
    for r in diffs.itertuples():
        ci = f"{r.diff:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
        if r.holm_significant and r.ci_high < 0:
            verdict = "holds: qk-layernorm lowers the learning-rate sensitivity"
        elif r.holm_significant and r.ci_low > 0:
            verdict = "reversed: qk-layernorm raises the learning-rate sensitivity"
        else:
            verdict = (
                "not resolved at these seeds (not a tie: a difference smaller than "
                f"{r.mdd:.3f} would go undetected with 80% power)"
            )
        line = (
            f"**{r.scheme}: {verdict}.** qk on - off = {ci} (paired by seed, n = {r.n}, p = {r.p:.2g}, "
            f"Wilcoxon p = {r.p_rank:.2g}; Holm over the {len(diffs)} schemes); P(on lower) = {r.p_on_lower:.2f}."
        )
        if tab is not None and hasattr(r, "best_diff"):
            line += " " + _context(r, tab)
        out.append(line)
    return out


def _context(r, tab: pd.DataFrame) -> str:
    """What the best loss, the solved seeds and the runs above their initial loss say beside the sensitivity."""
    t = tab[tab["scheme"] == r.scheme].set_index("qk_norm")
    on, off = t.loc[True], t.loc[False]
    text = (
        f"Beside it: the best validation loss (each seed's minimum over the grid) is {on['best_loss']:.3f} with "
        f"qk-layernorm and {off['best_loss']:.3f} without (paired difference {r.best_diff:+.3f} "
        f"[{r.best_ci_low:+.3f}, {r.best_ci_high:+.3f}]); seeds that solve the task (validation accuracy >= "
        f"{SOLVED:.0%} at some learning rate): {on['solved']} of {on['n']} with, {off['solved']} of {off['n']} "
        f"without; runs that end at or above their initial loss: {on['above_init']} of {on['runs']} with, "
        f"{off['above_init']} of {off['runs']} without."
    )
    if r.ci_low > 0 and r.best_ci_high < 0:
        text += (
            " The higher sensitivity comes with a lower best loss: the sensitivity is measured from each run's own "
            "best, so runs that learn the task at a few learning rates and not at the others score as sensitive. "
            "Here qk-layernorm changes what the model reaches, not only how robust it is, so this is not the "
            "comparison of equally good optima that Wortsman et al. made."
        )
    return text


def figure(runs: dict):
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(short(str(s)) for s in next(iter(runs.values())).models["scheme"]))
    fig, axes = plt.subplots(
        1, len(names), figsize=(6 * len(names), 4.2), sharey=True, squeeze=False
    )
    for ax, scheme in zip(axes[0], names, strict=True):
        for i, (qk, res) in enumerate(runs.items()):
            m = res.models[res.models["scheme"].map(lambda v: short(str(v))) == scheme]
            loss = m["final_val_loss"].where(~m["diverged"].astype(bool))
            g = loss.groupby(m["learning_rate"])
            mean, n = g.mean(), g.count()
            half = 1.96 * g.std(ddof=1) / np.sqrt(n)
            ax.plot(
                mean.index, mean.to_numpy(), marker="o", color=f"C{i}", label=qk.replace("_", " ")
            )
            ax.fill_between(
                mean.index,
                (mean - half).to_numpy(),
                (mean + half).to_numpy(),
                color=f"C{i}",
                alpha=0.2,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("Adam learning rate")
        ax.set_title(
            f"{scheme}: final validation loss (mean, 95% CI; diverged runs left out)", fontsize=9
        )
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0][0].set_ylabel("validation loss")
    fig.tight_layout()
    return fig


def report(runs: dict, out: Path, command: str, args) -> Path:
    tab, diffs = table(runs)
    files.write_csv(out / "sensitivity.csv", tab)
    if not diffs.empty:
        files.write_csv(out / "paired_difference.csv", diffs)
    fig = C.save_figure(figure(runs), out / "lr_sensitivity.png")
    cfg = next(iter(runs.values())).config
    lrs = learning_rates(args)
    n_models = sum(len(r.models) for r in runs.values())
    setup = (
        f"Associative recall (`jinit.data.associative_recall(n_train={args.n_train}, n_test={args.n_test}, "
        f"vocab={args.vocab}, n_pairs={args.n_pairs}, seed=0)`, 20% of the training set held out for "
        f"validation). Pre-LN decoder, {args.layers} layers, d_model {args.d_model}, {args.heads} heads; the last "
        f"position's logits. Inits `normal(0.02)` and `gpt2({args.layers})`; qk-layernorm off / on (one sweep "
        f"each). Adam, batch {cfg.batch_size}, {cfg.epochs} epochs, {cfg.seeds} seeds (`vary='both'`), learning "
        f"rates {lrs[0]:.3g} ... {lrs[-1]:.3g} in steps of x3.16 ({len(lrs)} values). {len(runs)} sweeps, "
        f"{n_models} models. " + C.run_facts(runs.values())
    )
    setup += (
        "\n\nA **small run** sized for a shared 2-core CPU. On a GPU: `python experiments/lr_sensitivity.py "
        "--d-model 128 --layers 4 --n-train 20000 --epochs 20 --seeds 16 --out /tmp/ls`."
    )
    if args.smoke:
        setup += "\n\n**Smoke run**: not a result."
    view = pd.DataFrame(
        {
            "scheme": tab["scheme"],
            "qk-layernorm": tab["qk_norm"].map({True: "on", False: "off"}),
            "lr sensitivity [95% CI]": [
                f"{r.lr_sensitivity:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"
                for r in tab.itertuples()
            ],
            "best val loss [95% CI]": [
                f"{r.best_loss:.3f} [{r.best_loss_ci_low:.3f}, {r.best_loss_ci_high:.3f}]"
                for r in tab.itertuples()
            ],
            "median best lr": tab["median_best_lr"].map(lambda v: f"{v:.3g}"),
            "seeds solving the task": [f"{r.solved} / {r.n}" for r in tab.itertuples()],
            "runs ending >= init loss": [f"{r.above_init} / {r.runs}" for r in tab.itertuples()],
            "diverged models": tab["diverged_models"],
        }
    )
    sections = [
        "Does qk-layernorm lower the learning-rate sensitivity of a small transformer (Wortsman et al. 2023), "
        "with intervals?",
        "## Setup\n\n" + setup,
        "## What held and what did not\n\n" + "\n\n".join(f"- {f}" for f in findings(diffs, tab))
        if not diffs.empty
        else "",
        "## LR sensitivity per init and qk setting\n\n"
        + C.md_table(view)
        + "\n\nLR sensitivity: per seed, the mean over the grid of min(final validation loss, loss at init) - the "
        "seed's best final loss (a diverged run counts as its loss at init), then the mean over seeds with a 95% t "
        "interval (`jinit.metrics.lr_sensitivity`, `lr_sensitivity_summary`). Best val loss: each seed's minimum "
        f"final validation loss over the grid. A seed solves the task when its validation accuracy reaches "
        f"{SOLVED:.0%} at some learning rate (chance: 2 / vocab).",
        f"## Figure\n\n![{fig}]({fig})",
        f"## Reproduce\n\n```bash\n{command}\n```",
        "References: Wortsman et al. Small-scale proxies for large-scale Transformer training instabilities. "
        "arXiv:2309.14322, 2023. Dehghani et al. Scaling vision transformers to 22 billion parameters. ICML 2023.",
    ]
    return C.write_report(out, "Learning-rate sensitivity with and without qk-layernorm", sections)


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=None, help="transformer blocks (default 2)")
    p.add_argument("--d-model", type=int, default=None, help="width (default 32)")
    p.add_argument("--heads", type=int, default=2, help="attention heads")
    p.add_argument("--vocab", type=int, default=16, help="token ids of the task")
    p.add_argument("--n-pairs", type=int, default=4, help="key-value pairs per sequence")
    p.add_argument("--n-train", type=int, default=None, help="training sequences (default 2000)")
    p.add_argument("--n-test", type=int, default=None, help="test sequences (default 500)")
    p.add_argument(
        "--lr-min", type=float, default=None, help="smallest learning rate (default 1e-4)"
    )
    p.add_argument("--lr-max", type=float, default=None, help="largest learning rate (default 1)")
    args = p.parse_args(argv)
    args.layers = args.layers or 2
    args.d_model = args.d_model or (16 if args.smoke else 32)
    args.n_train = args.n_train or (256 if args.smoke else 2000)
    args.n_test = args.n_test or (128 if args.smoke else 500)
    args.lr_min = args.lr_min or (1e-3 if args.smoke else 1e-4)
    args.lr_max = args.lr_max or (1e-1 if args.smoke else 1.0)
    for flag in ("layers", "d_model", "heads"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if not 0 < args.lr_min < args.lr_max:
        raise ValueError(f"need 0 < --lr-min < --lr-max, got {args.lr_min} and {args.lr_max}")
    ds = data.associative_recall(
        args.n_train, args.n_test, vocab=args.vocab, n_pairs=args.n_pairs, seed=0
    )
    out = C.out_dir(args, NAME)
    cfg = config(args)
    runs = {
        qk: C.run_or_load(cfg, out / f"run_{qk}", args, model=model(args, on), data=ds)
        for qk, on in QK.items()
    }
    path = report(runs, out, C.command_line(argv, NAME), args)
    print(
        pd.read_csv(out / "sensitivity.csv")[
            ["scheme", "qk_norm", "lr_sensitivity", "ci_low", "ci_high"]
        ]
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    # one JAX device per core, the file backend for figures, one-line errors (see _common.run_script)
    sys.exit(C.run_script(NAME, main))

"""Transformer init: plain normal(0.02), GPT-2's scaled residual init, DeepNet and muP on associative recall.

A small pre-LN decoder-only transformer (:class:`jinit.models.Transformer`) reads ``k1 v1 ... kn vn q`` and
predicts the value that followed the query key ``q`` from the last position's logits (a ``vocab``-way
classification; :func:`jinit.data.associative_recall`, generated offline with a fixed seed). Four inits, over
seeds:

* ``normal(0.02)``: every kernel and embedding N(0, 0.02^2), zero biases (the plain GPT init);
* ``gpt2(L)``: the same, with the residual output projections at 0.02 / sqrt(2L) (:func:`jinit.gpt2`);
* ``deepnet(L, decoder=True)``: DeepNorm's post-LN blocks ``LN(alpha x + f(x))`` with Xavier gain beta
  (:func:`jinit.deepnet`; the model's ``deepnorm_alpha``);
* ``mup``: muP's init relative to a base width (:func:`jinit.mup` with ``std=0.02``), 1/d attention, and muP's
  per-layer Adam learning rates (:func:`jinit.mup_optimizer`).

One sweep cannot mix models or optimizers per scheme, so there are three sweeps on the same data, batches and
seeds: ``run_sp`` (normal(0.02) and gpt2: the same network and Adam), ``run_deepnet`` (the DeepNorm network) and
``run_mup`` (the muP network and optimizer). Seeds vary the init only (``vary="init"``), so schemes are compared
unpaired (Welch) across all four.

Writes the run folders, ``report.md``, ``transformer_init.png`` under ``experiments/results/transformer_init/``.

Usage::

    python experiments/transformer_init.py                          # full: 4 layers, d_model 64, 5 seeds
    python experiments/transformer_init.py --smoke --out /tmp/tr    # seconds
"""

from __future__ import annotations

import sys
from pathlib import Path

import _common as C
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import jinit
from jinit import data, metrics, models, sweep

NAME = "transformer_init"
PLAIN = "normal(0.02)"
ARCHS = ("sp", "deepnet", "mup")


class RecallTransformer(nn.Module):
    """:class:`jinit.models.Transformer` over the float-stored token ids, returning the last position's logits."""

    vocab: int
    d_model: int
    n_layers: int
    n_heads: int
    max_len: int
    attention_scale: str = "sqrt"
    deepnorm_alpha: float | None = None

    @nn.compact
    def __call__(self, x):
        logits = models.Transformer(
            vocab=self.vocab,
            d_model=self.d_model,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            max_len=self.max_len,
            attention_scale=self.attention_scale,
            deepnorm_alpha=self.deepnorm_alpha,
            name="transformer",
        )(x.astype(jnp.int32))
        return logits[:, -1]


def plain(std: float = 0.02) -> jinit.Rules:
    """The plain GPT init as rules: every kernel and embedding N(0, std^2), zero biases."""
    return jinit.rules(
        {
            "kernel": jinit.initializers.normal(stddev=std),
            "embedding": jinit.initializers.normal(stddev=std),
            "bias": "zeros",
        },
        label=f"normal({std:g})",
    )


def dataset(args) -> data.Dataset:
    return data.associative_recall(
        args.n_train, args.n_test, vocab=args.vocab, n_pairs=args.n_pairs, seed=0
    )


def model(args, arch: str, d_model: int | None = None):
    """A zero-argument factory (the schemes are rules) of the study's network for ``arch``."""
    kw = dict(
        vocab=args.vocab,
        d_model=d_model or args.d_model,
        n_layers=args.layers,
        n_heads=args.heads,
        max_len=2 * args.n_pairs + 1,
    )
    if arch == "deepnet":
        kw["deepnorm_alpha"] = jinit.deepnet_constants(args.layers, decoder=True)[0]
    if arch == "mup":
        kw["attention_scale"] = "mup"

    def make():
        return RecallTransformer(**kw)

    return make


def mup_optimizer(args):
    """``learning_rate -> mup_optimizer``: muP's Adam for the study's width against its base width."""
    x = jnp.zeros((1, 2 * args.n_pairs + 1))

    def shapes(width):
        # the whole variables tree ({"params": ...}): the sweep hands the optimizer the variables it trains
        return jax.eval_shape(model(args, "mup", width)().init, jax.random.key(0), x)

    params, base = shapes(args.d_model), shapes(args.base_width)
    return lambda lr: jinit.mup_optimizer(lr, params, base)


def configs(args) -> dict[str, sweep.SweepConfig]:
    common = dict(
        hidden=(args.d_model,),  # documents the width (run() builds the model via model=)
        seeds=C.pick(args, "seeds", 5, 2),
        epochs=C.pick(args, "epochs", 20, 1),
        batch_size=64,
        optimizer="adam",
        learning_rate=args.lr,
        target_accuracy=0.9,
        eval_every=None,
    )
    mup_rules = jinit.mup(args.base_width, std=0.02, inputs=("embedding",))
    return {
        "sp": sweep.SweepConfig(schemes=(plain(), jinit.gpt2(args.layers)), **common),
        "deepnet": sweep.SweepConfig(schemes=(jinit.deepnet(args.layers, decoder=True),), **common),
        "mup": sweep.SweepConfig(schemes=(mup_rules,), **common),
    }


def short(scheme: str) -> str:
    """``gpt2(n_layers=4, std=0.02)`` -> ``gpt2``; ``mup(base_width=16, ...)`` -> ``mup``."""
    return scheme if scheme.startswith("normal(") else scheme.split("(")[0]


def table(runs: dict) -> pd.DataFrame:
    """One row per scheme: accuracy (mean, 95% CI), final training loss, failures, the confidence set for the best
    over all four schemes (Welch, unpaired) and the gap to the best these seeds would detect."""
    accs, rows = {}, {}
    for res in runs.values():
        summary = res.summary().set_index("scheme")
        for scheme, r in summary.iterrows():
            name = short(str(scheme))
            accs[name] = metrics.scheme_accuracies(res.models, scheme)
            c = res.curves[(res.curves["scheme"] == scheme) & ~res.curves["diverged"]]
            last = c.sort_values("step").groupby("seed").tail(1)
            loss = last["train_loss"].to_numpy(np.float64)  # the last epoch's mean training loss
            ci = metrics.mean_ci(loss) if len(loss) > 1 else None
            loss_ci = (ci.low, ci.high) if ci is not None else (np.nan, np.nan)
            rows[name] = {
                "scheme": name,
                "label": str(scheme),
                "n": int(r["n"]),
                "failed": int(round(r["failure_rate"] * r["n"])),
                "diverged": int(r["diverged_count"]),
                "acc_mean": r["acc_mean"],
                "acc_ci95_low": r["acc_ci95_low"],
                "acc_ci95_high": r["acc_ci95_high"],
                "acc_std": r["acc_std"],
                "train_loss_mean": float(loss.mean()) if len(loss) else np.nan,
                "train_loss_ci95_low": float(loss_ci[0]),
                "train_loss_ci95_high": float(loss_ci[1]),
                "steps_to_90_median": r["steps_to_target_median"],
            }
    best = metrics.best_set({k: a for k, a in accs.items() if len(a)}, paired=False)
    df = pd.DataFrame(rows.values())
    df["in_best_set"] = [bool(best["in_best_set"].get(s, False)) for s in df["scheme"]]
    df["p_best_set"] = [float(best["p_best_set"].get(s, np.nan)) for s in df["scheme"]]
    top = df.loc[df["acc_mean"].idxmax(), "scheme"]
    k = len(accs)
    df["mdd_vs_best"] = [
        np.nan
        if s == top or len(accs[s]) < 2 or len(accs[top]) < 2
        else metrics.min_detectable_difference(
            accs[top], accs[s], paired=False, alpha=0.05 / max(k - 1, 1), two_sided=False
        )
        for s in df["scheme"]
    ]
    return df.sort_values("acc_mean", ascending=False, na_position="last").reset_index(drop=True)


def accuracies(runs: dict) -> dict[str, pd.Series]:
    """``{short scheme name: final test accuracy per non-diverged seed}`` over all sweeps."""
    return {
        short(str(scheme)): metrics.scheme_accuracies(res.models, scheme)
        for res in runs.values()
        for scheme in dict.fromkeys(res.models["scheme"])
    }


def findings(df: pd.DataFrame, accs: dict[str, pd.Series]) -> list[str]:
    """What held and what did not, each computed from the table."""
    s = df.set_index("scheme")
    top = df["scheme"].iloc[0]
    tied = [x for x in df[df["in_best_set"]]["scheme"] if x != top]
    out = [
        f"Best mean accuracy: **{top}** ({C.mean_pm(s.loc[top, 'acc_mean'], s.loc[top, 'acc_ci95_low'], s.loc[top, 'acc_ci95_high'], 1)}%). "
        f"Not distinguishable from it (95% confidence set for the best, Welch): {', '.join(tied) or 'no other scheme'}"
        + (
            f" (these seeds would detect a gap of {C.pct(s.loc[tied, 'mdd_vs_best'].min(), 1)}-"
            f"{C.pct(s.loc[tied, 'mdd_vs_best'].max(), 1)} points with 80% power; a smaller one may be real)."
            if tied and np.isfinite(s.loc[tied, "mdd_vs_best"]).all()
            else "."
        )
    ]
    for other in ("gpt2", "deepnet", "mup"):
        if other not in accs or PLAIN not in accs:
            continue
        r = metrics.compare(accs[other], accs[PLAIN], paired=False)
        v = C.verdict(r)
        word = {
            "holds": "above plain normal(0.02)",
            "reversed": "below plain normal(0.02)",
            "not resolved": "not resolved against plain normal(0.02)",
            "untestable": "untestable (fewer than 2 seeds)",
        }[v]
        mdd = metrics.min_detectable_difference(accs[other], accs[PLAIN], paired=False)
        out.append(
            f"**{other} vs plain normal(0.02)**: {word} (difference in points {C.diff_text(r)}, Welch, "
            "two-sided, uncorrected; the `vs best` column is the one-sided, Bonferroni-corrected test of the "
            "confidence set, which can differ near p = 0.05"
            + (
                f"; these seeds would detect a difference of {C.pct(mdd, 1)} points with 80% power"
                if v == "not resolved" and np.isfinite(mdd)
                else ""
            )
            + ")."
        )
    if "deepnet" in accs:
        out.append(
            "Caveat on DeepNet: its sweep trains a different network (post-LN DeepNorm, `LN(alpha x + f(x))`, "
            "instead of pre-LN), so a difference between deepnet and the others is that of network and init "
            "together, not of the init alone; a pre-LN network with DeepNet's init is not run here. The other "
            "three share the pre-LN network (muP also its 1/d attention and optimizer)."
        )
    fails = [f"{r['scheme']} {r['failed']}/{r['n']}" for _, r in df.iterrows() if r["failed"]]
    out.append(
        "Failed models (diverged, one class everywhere, or not above the majority class): "
        + (", ".join(fails) or "none")
        + "."
    )
    return out


def figure(runs: dict, df: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for res in runs.values():
        curves = res.curves
        for scheme in dict.fromkeys(curves["scheme"]):
            g = curves[curves["scheme"] == scheme].groupby("step")
            mean = g["test_accuracy"].mean()
            lo, hi = g["test_accuracy"].min(), g["test_accuracy"].max()
            (line,) = axes[0].plot(mean.index, 100 * mean, label=short(str(scheme)))
            axes[0].fill_between(mean.index, 100 * lo, 100 * hi, color=line.get_color(), alpha=0.15)
            loss = g["train_loss"].mean()
            axes[1].plot(loss.index, loss, color=line.get_color(), label=short(str(scheme)))
    axes[0].set_title("test accuracy (mean over seeds; band: min-max)", fontsize=10)
    axes[0].set_ylabel("accuracy (%)")
    axes[1].set_title("training loss (mean over seeds)", fontsize=10)
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def report(runs: dict, out: Path, command: str, args) -> Path:
    df = table(runs)
    df.to_csv(out / "scheme_table.csv", index=False)
    fig = C.save_figure(figure(runs, df), out / "transformer_init.png")
    cfg = next(iter(runs.values())).config
    alpha, beta = jinit.deepnet_constants(args.layers, decoder=True)
    setup = (
        f"Associative recall (`jinit.data.associative_recall(n_train={args.n_train}, n_test={args.n_test}, "
        f"vocab={args.vocab}, n_pairs={args.n_pairs}, seed=0)`): sequences of length {2 * args.n_pairs + 1}, "
        f"chance {C.pct(2 / args.vocab, 1)}%. `Transformer(d_model={args.d_model}, n_layers={args.layers}, "
        f"n_heads={args.heads})`, pre-LN (DeepNet: post-LN DeepNorm with alpha={alpha:.3f}, beta={beta:.3f}), "
        f"logits of the last position. Adam lr={cfg.learning_rate:g} (muP: `mup_optimizer`, the same base lr, "
        f"hidden and readout lr x {args.base_width}/{args.d_model}; base width {args.base_width}), batch "
        f"{cfg.batch_size}, {cfg.epochs} epochs, {cfg.seeds} seeds per scheme (`vary='init'`). One sweep "
        "per network/optimizer (a sweep trains one model with one optimizer), all on the same data, batches and "
        "seeds. " + C.run_facts(runs.values())
    )
    missing = [a for a in ARCHS if a not in runs]
    if missing:
        setup += (
            f"\n\n**Sweeps not in this report**: {', '.join(f'`run_{a}`' for a in missing)} (run with "
            f"`--archs {','.join(ARCHS)}` to add them)."
        )
    setup += (
        "\n\nA **small run** sized for a shared 2-core CPU; a larger one is one command away, e.g. "
        "`python experiments/transformer_init.py --layers 8 --d-model 128 --epochs 50 --seeds 10 --out /tmp/tr`."
    )
    if args.smoke:
        setup += "\n\n**Smoke run** (tiny data, 1 epoch): not a result."
    view = df.assign(
        accuracy=[
            C.mean_pm(r["acc_mean"], r["acc_ci95_low"], r["acc_ci95_high"], 1)
            for _, r in df.iterrows()
        ],
        train_loss=[
            f"{r['train_loss_mean']:.3f} [{r['train_loss_ci95_low']:.3f}, {r['train_loss_ci95_high']:.3f}]"
            for _, r in df.iterrows()
        ],
        failed=[f"{r['failed']}/{r['n']}" for _, r in df.iterrows()],
        vs_best=[
            "best"
            if i == 0
            else "not distinguishable from the best"
            if r["in_best_set"]
            else "below the best"
            for i, (_, r) in enumerate(df.iterrows())
        ],
        detectable_gap=df["mdd_vs_best"].map(lambda v: C.pct(v, 1)),
    )[
        [
            "scheme",
            "label",
            "accuracy",
            "train_loss",
            "failed",
            "vs_best",
            "p_best_set",
            "detectable_gap",
        ]
    ]
    sections = [
        "Which init trains a small transformer best on a sequence task that needs attention? GPT-2's scaled "
        "residual init, DeepNet and muP were each designed for depth or width at scale; here they are measured at "
        "a CPU-sized scale over seeds, against the plain normal(0.02).",
        "## Setup\n\n" + setup,
        "## What held and what did not\n\n"
        + "\n\n".join(f"- {f}" for f in findings(df, accuracies(runs))),
        "## Final test accuracy and training loss\n\n"
        + C.md_table(view)
        + "\n\n`accuracy`: mean ± half-width of the 95% t-interval over the non-diverged seeds (%). `train_loss`: "
        "the last epoch's mean training loss with its 95% t-interval. `vs best`: the 95% confidence set for the "
        "best (`jinit.metrics.best_set`, Welch's t-test: seeds vary the init, so no pairing), `p_best_set` its "
        "Bonferroni-adjusted p-value; `detectable gap`: the gap to the best that these seeds would detect with "
        "80% power (points).",
        f"## Figure\n\n![{fig}]({fig})",
        f"## Reproduce\n\n```bash\n{command}\n```",
        "References: Radford et al. 2019 (GPT-2). Wang et al. DeepNet. arXiv:2203.00555, 2022. Yang et al. "
        "Tensor Programs V. arXiv:2203.03466, 2022. Olsson et al. In-context learning and induction heads. 2022.",
    ]
    return C.write_report(out, "Transformer init on associative recall", sections)


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=None, help="transformer blocks (default 4)")
    p.add_argument("--d-model", type=int, default=None, help="width (default 64)")
    p.add_argument("--heads", type=int, default=2, help="attention heads")
    p.add_argument("--base-width", type=int, default=16, help="muP's base width")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
    p.add_argument("--vocab", type=int, default=16, help="token ids of the task")
    p.add_argument("--n-pairs", type=int, default=4, help="key-value pairs per sequence")
    p.add_argument("--n-train", type=int, default=None, help="training sequences (default 4000)")
    p.add_argument("--n-test", type=int, default=None, help="test sequences (default 1000)")
    p.add_argument(
        "--archs",
        default="sp,deepnet,mup",
        help="the sweeps to run: sp (normal(0.02) and gpt2), deepnet, mup",
    )
    args = p.parse_args(argv)
    args.archs = tuple(a.strip() for a in args.archs.split(",") if a.strip())
    bad = [a for a in args.archs if a not in ARCHS]
    if bad or not args.archs:
        raise ValueError(f"unknown --archs {bad or args.archs}; valid: {', '.join(ARCHS)}")
    args.layers = args.layers or (2 if args.smoke else 4)
    args.d_model = args.d_model or (16 if args.smoke else 64)
    args.n_train = args.n_train or (256 if args.smoke else 4000)
    args.n_test = args.n_test or (128 if args.smoke else 1000)
    if args.smoke:
        args.base_width = min(args.base_width, 8)
    for flag in ("layers", "d_model", "heads", "base_width"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    ds = dataset(args)  # bad task arguments fail here, before anything is compiled
    cfgs = configs(args)
    out = C.out_dir(args, NAME)
    kwargs = {"mup": {"optimizer": mup_optimizer(args)}}
    runs = {
        arch: C.run_or_load(
            cfg, out / f"run_{arch}", args, model=model(args, arch), data=ds, **kwargs.get(arch, {})
        )
        for arch, cfg in cfgs.items()
        if arch in args.archs
    }
    path = report(runs, out, C.command_line(argv, NAME), args)
    print(
        pd.read_csv(out / "scheme_table.csv")[["scheme", "acc_mean", "train_loss_mean", "failed"]]
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    # one JAX device per core, the file backend for figures, one-line errors (see _common.run_script)
    sys.exit(C.run_script(NAME, main))

"""DeepNet's claim, tested: does DeepNorm + its init make a deep post-LN transformer train where plain post-LN fails?

DeepNet (Wang et al. 2022) claims that a post-LN transformer too deep to train with the usual init trains once the
residual stream is up-weighted inside the norm (DeepNorm, ``x <- LN(alpha x + f(x))``, alpha = (2N)^(1/4)) and the
value, output and ffn projections are drawn with Xavier gain beta = (8N)^(-1/4). The claim is about deep post-LN
networks, so the study needs a depth at which plain post-LN fails in this budget, and the control arms that
separate the network from the init. Four arms, {pre-LN, post-LN} x {plain normal(0.02), DeepNet}:

* ``pre-LN + normal(0.02)``: the GPT layout, every kernel and embedding N(0, 0.02^2), zero biases;
* ``pre-LN + DeepNet init``: the same network with DeepNet's beta-scaled init (alpha has no place in pre-LN);
* ``post-LN + normal(0.02)``: plain post-LN, ``LN(x + f(x))`` (DeepNorm with alpha = 1), the GPT init;
* ``post-LN + DeepNet``: DeepNorm (alpha) with DeepNet's init: the paper's method.

A small decoder-only transformer (:class:`jinit.models.Transformer`) reads ``k1 v1 ... kn vn q`` and predicts the
value that followed the query key ``q`` from the last position's logits (:func:`jinit.data.associative_recall`,
offline, seeded). Adam with a short linear warm-up to a large learning rate: the setting in which post-LN
networks are known to fail (Xiong et al. 2020). One sweep per network (a sweep trains one model): ``run_pre`` (both
pre-LN arms), ``run_post`` and ``run_deepnorm``, on the same data, batches and seed numbers; the seeds vary the
init only (``vary="init"``), so every comparison is unpaired (Welch) and about the arms.

Writes the run folders, ``report.md``, ``arm_table.csv`` and ``transformer_init.png`` under
``experiments/results/transformer_init/``.

Usage::

    python experiments/transformer_init.py                          # 16 layers, d_model 32, 8 seeds per arm
    python experiments/transformer_init.py --smoke --out /tmp/tr    # seconds
"""

from __future__ import annotations

import sys
from pathlib import Path

import _common as C
import numpy as np
import optax
import pandas as pd
from scipy import stats

import jinit
from jinit import data, metrics, models, sweep

NAME = "transformer_init"
PLAIN = "normal(0.02)"
#: sweep name -> the arms it trains, as (network, init) labels of the report
SWEEPS = ("pre", "post", "deepnorm")
ARMS = {
    ("pre", "plain"): "pre-LN + normal(0.02)",
    ("pre", "deepnet"): "pre-LN + DeepNet init",
    ("post", "plain"): "post-LN + normal(0.02)",
    ("deepnorm", "deepnet"): "post-LN + DeepNet",
}


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


def alpha(args, net: str) -> float | None:
    """The residual weight inside the norm: None (pre-LN), 1 (plain post-LN) or DeepNorm's (2N)^(1/4)."""
    if net == "pre":
        return None
    return 1.0 if net == "post" else jinit.deepnet_constants(args.layers, decoder=True)[0]


def model(args, net: str):
    """A zero-argument factory (the schemes are rules) of the study's network ``pre``, ``post`` or ``deepnorm``."""
    kw = dict(
        vocab=args.vocab,
        d_model=args.d_model,
        n_layers=args.layers,
        n_heads=args.heads,
        max_len=2 * args.n_pairs + 1,
        deepnorm_alpha=alpha(args, net),
    )

    def make():
        return models.LastTokenTransformer(**kw)

    return make


def optimizer(args) -> optax.GradientTransformation:
    """Adam with a linear warm-up from 0 to ``--lr`` over ``--warmup`` steps, then constant."""
    if args.warmup == 0:
        return optax.adam(args.lr)
    return optax.adam(optax.warmup_constant_schedule(0.0, args.lr, args.warmup))


def configs(args) -> dict[str, sweep.SweepConfig]:
    common = dict(
        hidden=(args.d_model,),  # documents the width (run() builds the model via model=)
        seeds=C.pick(args, "seeds", 8, 2),
        epochs=C.pick(args, "epochs", 10, 1),
        batch_size=64,
        optimizer="adam",
        learning_rate=args.lr,
        eval_every=None,
    )
    deepnet = jinit.deepnet(args.layers, decoder=True)
    return {
        "pre": sweep.SweepConfig(schemes=(plain(), deepnet), **common),
        "post": sweep.SweepConfig(schemes=(plain(),), **common),
        "deepnorm": sweep.SweepConfig(schemes=(deepnet,), **common),
    }


def arm_of(net: str, scheme: str) -> str:
    return ARMS[(net, "plain" if scheme == PLAIN else "deepnet")]


def accuracies(runs: dict) -> dict[str, pd.Series]:
    """``{arm: final test accuracy per non-diverged seed}``."""
    return {
        arm_of(net, str(scheme)): metrics.scheme_accuracies(res.models, scheme)
        for net, res in runs.items()
        for scheme in dict.fromkeys(res.models["scheme"])
    }


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a proportion ``k / n``."""
    a = 1 - level
    low = 0.0 if k == 0 else float(stats.beta.ppf(a / 2, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return low, high


def table(runs: dict, args) -> pd.DataFrame:
    """One row per arm: failures (``jinit.metrics.failures``: diverged, one class everywhere, or not above the
    majority class) with their exact interval, accuracy (mean, 95% CI) and the last epoch's training loss."""
    rows = []
    for net, res in runs.items():
        summary = res.summary().set_index("scheme")
        for scheme, r in summary.iterrows():
            c = res.curves[(res.curves["scheme"] == scheme) & ~res.curves["diverged"]]
            loss = c.sort_values("step").groupby("seed").tail(1)["train_loss"].to_numpy(np.float64)
            lci = metrics.mean_ci(loss) if len(loss) > 1 else metrics.CI(np.nan, np.nan, np.nan)
            n, failed = int(r["n"]), int(round(r["failure_rate"] * r["n"]))
            flo, fhi = clopper_pearson(failed, n)
            rows.append(
                {
                    "arm": arm_of(net, str(scheme)),
                    "network": {"pre": "pre-LN", "post": "post-LN", "deepnorm": "post-LN"}[net],
                    "alpha": alpha(args, net),
                    "scheme": str(scheme),
                    "n": n,
                    "failed": failed,
                    "failed_ci95_low": flo,
                    "failed_ci95_high": fhi,
                    "diverged": int(r["diverged_count"]),
                    "acc_mean": r["acc_mean"],
                    "acc_ci95_low": r["acc_ci95_low"],
                    "acc_ci95_high": r["acc_ci95_high"],
                    "acc_std": r["acc_std"],
                    "train_loss_mean": float(lci.mean),
                    "train_loss_ci95_low": float(lci.low),
                    "train_loss_ci95_high": float(lci.high),
                }
            )
    order = list(ARMS.values())
    df = pd.DataFrame(rows)
    return df.sort_values("arm", key=lambda s: s.map(order.index)).reset_index(drop=True)


def contrast(accs: dict, df: pd.DataFrame, a: str, b: str, n_test: int) -> dict:
    """Arm ``a`` against arm ``b``: accuracy difference (Welch, unpaired: the seeds vary the init) with its 95% CI
    and the gap these seeds detect with 80% power, and the failure counts by Fisher's exact test (two-sided)."""
    # accuracies move in steps of one test example: no zero-width interval for random arms (issue 23)
    res = 1.0 / n_test
    r = metrics.compare(accs[a], accs[b], paired=False, resolution=res)
    mdd = metrics.min_detectable_difference(accs[a], accs[b], paired=False, resolution=res)
    s = df.set_index("arm")
    fa, na, fb, nb = (int(s.loc[x, c]) for x in (a, b) for c in ("failed", "n"))
    fisher = stats.fisher_exact([[fa, na - fa], [fb, nb - fb]]).pvalue
    return {
        "a": a,
        "b": b,
        "cmp": r,
        "mdd": mdd,
        "fisher_p": float(fisher),
        "fails": (fa, na, fb, nb),
    }


def _contrast_text(c: dict) -> str:
    fa, na, fb, nb = c["fails"]
    mdd = (
        f"; these seeds detect a gap of {C.pct(c['mdd'], 1)} points with 80% power"
        if np.isfinite(c["mdd"])
        else ""
    )
    return (
        f"accuracy {c['a']} - {c['b']}: {C.diff_text(c['cmp'])} (points, Welch, two-sided{mdd}); failed "
        f"{fa}/{na} vs {fb}/{nb} (Fisher's exact test, two-sided p = {c['fisher_p']:.2g})"
    )


def findings(df: pd.DataFrame, accs: dict, n_test: int) -> list[str]:
    """The verdicts, each computed from the table: per arm, then the three contrasts, DeepNet's claim last."""
    s = df.set_index("arm")
    out = []
    for arm, r in s.iterrows():
        trained = r["n"] - r["failed"]
        out.append(
            f"**{arm}**: above chance (not failed by `jinit.metrics.failures`) in {trained}/{r['n']} seeds "
            f"(failure rate {r['failed']}/{r['n']}, exact 95% CI [{C.pct(r['failed_ci95_low'], 0)}, "
            f"{C.pct(r['failed_ci95_high'], 0)}]%); accuracy "
            f"{C.mean_pm(r['acc_mean'], r['acc_ci95_low'], r['acc_ci95_high'], 1)}%; last-epoch training loss "
            f"{r['train_loss_mean']:.3f} [{r['train_loss_ci95_low']:.3f}, {r['train_loss_ci95_high']:.3f}]."
        )
    post_plain, post_dn = ARMS[("post", "plain")], ARMS[("deepnorm", "deepnet")]
    pre_plain, pre_dn = ARMS[("pre", "plain")], ARMS[("pre", "deepnet")]
    if not {post_plain, post_dn, pre_plain, pre_dn} <= set(accs):
        return out
    post = contrast(accs, df, post_dn, post_plain, n_test)
    pre = contrast(accs, df, pre_dn, pre_plain, n_test)
    net = contrast(accs, df, post_dn, pre_plain, n_test)
    plain_fails = s.loc[post_plain, "failed"] * 2 > s.loc[post_plain, "n"]
    rescued = post["fisher_p"] < 0.05 and post["cmp"].ci_low > 0
    if not plain_fails:
        claim = (
            "**DeepNet's claim is not tested at this setting**: plain post-LN did not fail on most seeds, so there "
            "is nothing for DeepNet to rescue. "
        )
    elif rescued:
        claim = (
            "**DeepNet's claim held here** (this depth, learning rate and budget): plain post-LN failed on most "
            "seeds, and DeepNet's post-LN network was above chance, with a lower training loss, where it failed. "
        )
    elif s.loc[post_dn, "failed"] * 2 > s.loc[post_dn, "n"]:
        claim = (
            "**DeepNet's claim did not hold here**: plain post-LN failed on most seeds, and so did DeepNet's "
            "post-LN network. "
        )
    else:
        claim = (
            "**DeepNet's claim is not supported at these seeds**: plain post-LN failed on most seeds, but the "
            "post-LN contrast does not resolve DeepNet doing better (not a tie: see the detectable gap). "
        )
    out.insert(
        0,
        claim
        + "The post-LN contrast (the same post-LN network, with and without DeepNet): "
        + _contrast_text(post)
        + ".",
    )
    out.append(
        "The init alone, in the pre-LN network (no alpha): "
        + _contrast_text(pre)
        + ". "
        + (
            "DeepNet's init changed the pre-LN network's accuracy."
            if pre["cmp"].ci_low > 0 or pre["cmp"].ci_high < 0
            else "Not resolved: the interval contains 0 (not a tie: see the detectable gap)."
        )
    )
    out.append(
        "DeepNet's post-LN network against the usual pre-LN one: "
        + _contrast_text(net)
        + ". This is network "
        "and init together; the post-LN contrast above is the one that tests DeepNet."
    )
    return out


def figure(runs: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for net, res in runs.items():
        curves = res.curves
        for scheme in dict.fromkeys(curves["scheme"]):
            g = curves[curves["scheme"] == scheme].groupby("step")
            mean = g["test_accuracy"].mean()
            lo, hi = g["test_accuracy"].min(), g["test_accuracy"].max()
            label = arm_of(net, str(scheme))
            (line,) = axes[0].plot(mean.index, 100 * mean, label=label)
            axes[0].fill_between(mean.index, 100 * lo, 100 * hi, color=line.get_color(), alpha=0.15)
            axes[1].plot(
                g["train_loss"].mean().index,
                g["train_loss"].mean(),
                color=line.get_color(),
                label=label,
            )
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
    df = table(runs, args)
    df.to_csv(out / "arm_table.csv", index=False)
    fig = C.save_figure(figure(runs), out / "transformer_init.png")
    cfg = next(iter(runs.values())).config
    a, beta = jinit.deepnet_constants(args.layers, decoder=True)
    setup = (
        f"Associative recall (`jinit.data.associative_recall(n_train={args.n_train}, n_test={args.n_test}, "
        f"vocab={args.vocab}, n_pairs={args.n_pairs}, seed=0)`): sequences of length {2 * args.n_pairs + 1}, "
        f"chance {C.pct(2 / args.vocab, 1)}%. `Transformer(d_model={args.d_model}, n_layers={args.layers}, "
        f"n_heads={args.heads})`, logits of the last position; pre-LN `x + f(LN(x))` or post-LN "
        f"`LN(alpha x + f(x))` with alpha = 1 (plain) or DeepNorm's {a:.3f}; DeepNet's init: Xavier gain "
        f"beta = {beta:.3f} for the value, output and ffn projections, gain 1 for query and key. Adam, learning "
        f"rate {args.lr:g} after a linear warm-up of {args.warmup} steps ({cfg.epochs * (args.n_train // cfg.batch_size)} "
        f"steps in all), batch {cfg.batch_size}, {cfg.epochs} epochs, {cfg.seeds} seeds per arm (`vary='init'`: the "
        "seeds replicate each arm's init draw and every model sees the same batches, so the arms are compared "
        "unpaired, and the verdicts are about the arms). Three sweeps (one per network), same data, batches and "
        "seed numbers. " + C.run_facts(runs.values())
    )
    missing = [s for s in SWEEPS if s not in runs]
    if missing:
        setup += f"\n\n**Sweeps not in this report**: {', '.join(f'`run_{m}`' for m in missing)}."
    setup += (
        "\n\nThe default depth (16 blocks), learning rate (1e-2) and warm-up (100 steps) were chosen by pilot runs "
        "(2 seeds, 5 epochs, d_model 32, 2000 sequences; not part of this report's results) as a setting where plain "
        "post-LN fails on this budget: without warm-up, plain post-LN trained at lr 3e-3 (12 and 24 blocks: 32-37% "
        "after 5 epochs); at 24 blocks and lr 6e-3 it stayed at the chance-level loss (ln 8) while DeepNet "
        "trained; at lr 1e-2 every post-LN arm, DeepNet's included, stayed there (12 and 24 blocks). With the "
        "100-step warm-up at 16 blocks, plain post-LN learned for two epochs and then collapsed to that loss. "
        "A **small run** sized for a shared 2-core CPU; on a GPU the same question at the paper's scale is "
        "one command away, e.g. `python experiments/transformer_init.py --layers 64 --d-model 256 --heads 4 "
        "--n-train 20000 --epochs 30 --seeds 10 --out /tmp/tr`."
    )
    if args.smoke:
        setup += "\n\n**Smoke run** (tiny data, 1 epoch): not a result."
    view = df.assign(
        failed=[
            f"{r['failed']}/{r['n']} [{C.pct(r['failed_ci95_low'], 0)}, {C.pct(r['failed_ci95_high'], 0)}]%"
            for _, r in df.iterrows()
        ],
        accuracy=[
            C.mean_pm(r["acc_mean"], r["acc_ci95_low"], r["acc_ci95_high"], 1)
            for _, r in df.iterrows()
        ],
        train_loss=[
            f"{r['train_loss_mean']:.3f} [{r['train_loss_ci95_low']:.3f}, {r['train_loss_ci95_high']:.3f}]"
            for _, r in df.iterrows()
        ],
        alpha=df["alpha"].map(lambda v: "-" if v is None or not np.isfinite(v) else f"{v:.3f}"),
    )[["arm", "alpha", "scheme", "failed", "accuracy", "train_loss"]]
    sections = [
        "Does DeepNet (DeepNorm + its init) make a deep post-LN transformer train where plain post-LN fails? The "
        "four arms {pre-LN, post-LN} x {normal(0.02), DeepNet} separate the network from the init.",
        "## Setup\n\n" + setup,
        "## What held and what did not\n\n"
        + "\n\n".join(f"- {f}" for f in findings(df, accuracies(runs), args.n_test)),
        "## The four arms\n\n"
        + C.md_table(view)
        + "\n\n`failed`: seeds that diverged, predict one class for every example, or are not above the majority "
        "class (`jinit.metrics.failures`), with the exact (Clopper-Pearson) 95% interval of the rate. `accuracy`: "
        "mean ± half-width of the 95% t-interval over the non-diverged seeds (%). `train_loss`: the last epoch's "
        "mean training loss with its 95% t-interval.",
        f"## Figure\n\n![{fig}]({fig})",
        f"## Reproduce\n\n```bash\n{command}\n```",
        "References: Wang et al. DeepNet: scaling transformers to 1,000 layers. arXiv:2203.00555, 2022. Xiong et al. "
        "On layer normalization in the transformer architecture. ICML 2020. Radford et al. 2019 (GPT-2).",
    ]
    return C.write_report(out, "DeepNet on a deep post-LN transformer: four arms", sections)


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=None, help="transformer blocks (default 16)")
    p.add_argument("--d-model", type=int, default=None, help="width (default 32)")
    p.add_argument("--heads", type=int, default=2, help="attention heads")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam's learning rate after the warm-up")
    p.add_argument("--warmup", type=int, default=None, help="linear warm-up steps (default 100)")
    p.add_argument("--vocab", type=int, default=16, help="token ids of the task")
    p.add_argument("--n-pairs", type=int, default=4, help="key-value pairs per sequence")
    p.add_argument("--n-train", type=int, default=None, help="training sequences (default 2000)")
    p.add_argument("--n-test", type=int, default=None, help="test sequences (default 1000)")
    p.add_argument(
        "--sweeps", default=",".join(SWEEPS), help="the sweeps to run: pre, post, deepnorm"
    )
    args = p.parse_args(argv)
    args.sweeps = tuple(a.strip() for a in args.sweeps.split(",") if a.strip())
    bad = [a for a in args.sweeps if a not in SWEEPS]
    if bad or not args.sweeps:
        raise ValueError(f"unknown --sweeps {bad or args.sweeps}; valid: {', '.join(SWEEPS)}")
    args.layers = args.layers or (2 if args.smoke else 16)
    args.d_model = args.d_model or (16 if args.smoke else 32)
    args.n_train = args.n_train or (256 if args.smoke else 2000)
    args.n_test = args.n_test or (128 if args.smoke else 1000)
    args.warmup = (4 if args.smoke else 100) if args.warmup is None else args.warmup
    for flag in ("layers", "d_model", "heads"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.warmup < 0 or not args.lr > 0:
        raise ValueError(f"need --warmup >= 0 and --lr > 0, got {args.warmup} and {args.lr}")
    ds = dataset(args)  # bad task arguments fail here, before anything is compiled
    cfgs = configs(args)
    out = C.out_dir(args, NAME)
    runs = {
        net: C.run_or_load(
            cfg,
            out / f"run_{net}",
            args,
            model=model(args, net),
            data=ds,
            optimizer=optimizer(args),
        )
        for net, cfg in cfgs.items()
        if net in args.sweeps
    }
    path = report(runs, out, C.command_line(argv, NAME), args)
    print(pd.read_csv(out / "arm_table.csv")[["arm", "failed", "n", "acc_mean", "train_loss_mean"]])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    # one JAX device per core, the file backend for figures, one-line errors (see _common.run_script)
    sys.exit(C.run_script(NAME, main))

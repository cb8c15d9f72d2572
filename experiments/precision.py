"""Precision and initialization: do the schemes rank, fail and spread the same in bfloat16 as in float32?

Three networks on MNIST -- the Keras-tutorial MLP (784-128-64-10, ReLU), a residual MLP without normalization
(stem, 4 blocks of two Dense layers, head; width 128) and the CS231n tanh stack (10 tanh layers of 128: the network
on which N(0, 0.01^2) makes the activations vanish) -- trained with Adam under every initialization scheme x four
precisions x seeds: float32; bfloat16 compute (activations and matmuls; float32 master weights and Adam state);
bfloat16 compute and bfloat16 Adam state (both moments); and bfloat16 state alone (float32 compute), which isolates
what the state costs. Each network is ONE sweep (``compute_dtype`` x ``state_dtype`` are grid dimensions: one
compiled program per precision); every model of a seed starts from the same weights and sees the same batches at
every precision, so the precision effects are paired by seed.

What the report computes (``jinit.metrics``): per precision, the mean accuracy with its 95% CI, the failure rate
(``metrics.failures``: diverged, collapsed onto one class or not above the majority class) with exact intervals and
the 95% confidence set for the best scheme; per scheme, the paired difference of each bfloat16 arm from float32
(Holm over the schemes of a network), McNemar's exact test of the failures, and the Pitman-Morgan test of equal
spreads for paired samples (Holm); the ranking: schemes whose order is resolved in opposite directions in two
precisions (Welch, both 95% intervals excluding zero).

Writes ``run_<network>/`` (one run folder per network), ``arm_seconds.json``, ``report.md`` and PNG figures under
``experiments/results/precision/``.

Usage::

    python experiments/precision.py                       # the committed run (2-core CPU, see the report)
    python experiments/precision.py --smoke --out /tmp/p  # seconds, on the embedded digits dataset
    python experiments/precision.py --report-only         # rebuild report.md from the run folders
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import _common as C
import numpy as np
import pandas as pd
from scipy import stats

from jinit import files, metrics, models, sweep

NAME = "precision"
BOTH = ("float32", "bfloat16")
#: (compute dtype, state dtype) -> the arm's name, float32 first
ARMS = {
    ("float32", "float32"): "float32",
    ("bfloat16", "float32"): "bf16 compute",
    ("bfloat16", "bfloat16"): "bf16 compute+state",
    ("float32", "bfloat16"): "bf16 state",
}
REFERENCE = "float32"
SCHEMES = (
    "zeros",
    "normal",
    "uniform",
    "glorot_uniform",
    "he_normal",
    "lecun_normal",
    "orthogonal",
    "normal(stddev=0.01)",
)
#: the CS231n tanh stack: the small-variance Gaussian that makes its activations vanish, the unit Gaussian that
#: saturates them, and Xavier (Glorot), the scale the lecture recommends
STACK_SCHEMES = ("normal(stddev=0.01)", "normal(stddev=1.0)", "glorot_normal")
NETWORKS = ("mlp", "resmlp", "tanh10")
SMOKE_SCHEMES = ("zeros", "he_normal", "normal(stddev=0.01)")


# ------------------------------------------------------------------------------------------------ the sweeps


def configs(args) -> dict[str, tuple[sweep.SweepConfig, object]]:
    """``{network: (config, model factory or None)}``: one sweep per network, every precision in it."""
    data_kw = (
        dict(dataset="digits")
        if args.smoke
        else dict(
            dataset="mnist",
            data_dir=args.data_dir,
            train_size=args.train_size,
            test_size=args.test_size,
        )
    )
    width = 16 if args.smoke else args.width
    common = dict(
        **data_kw,
        bias_init="zeros",
        seeds=C.pick(args, "seeds", 10, 2),
        epochs=C.pick(args, "epochs", 4, 1),
        batch_size=args.batch_size,
        optimizer="adam",
        learning_rate=1e-3,
        compute_dtype=BOTH,
        state_dtype=BOTH,
    )
    schemes = SMOKE_SCHEMES if args.smoke else SCHEMES
    depth = 3 if args.smoke else 10
    out = {
        "mlp": (sweep.SweepConfig(**common, hidden=(128, 64), schemes=schemes), None),
        "resmlp": (
            sweep.SweepConfig(**common, schemes=schemes),
            models.factory("resmlp", width=width, depth=4, num_classes=10),
        ),
        "tanh10": (
            sweep.SweepConfig(
                **common,
                hidden=(width,) * depth,
                activation="tanh",
                schemes=STACK_SCHEMES[::2] if args.smoke else STACK_SCHEMES,
            ),
            None,
        ),
    }
    return {k: v for k, v in out.items() if k in args.networks}


class ArmSeconds(sweep.Callback):
    """Training seconds and model-epochs of each precision (a chunk holds one), for the cost table."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.model_epochs: dict[str, int] = {}

    def sweep_start(self, plan) -> None:
        self.plan = plan

    def epoch_end(self, event) -> None:
        label = ARMS[tuple(self.plan.chunk_precision(event.chunk))]
        self.seconds[label] = self.seconds.get(label, 0.0) + event.seconds
        self.model_epochs[label] = self.model_epochs.get(label, 0) + len(event.models)


def run_all(args, out: Path) -> tuple[dict[str, sweep.SweepResult], dict]:
    runs, seconds = {}, {}
    path = out / "arm_seconds.json"
    if path.is_file():
        seconds = files.read_json(path)
    for net, (cfg, model) in configs(args).items():
        timer = ArmSeconds()
        kw = {} if args.report_only else {"callbacks": [timer]}
        if model is not None:
            kw["model"] = model
        runs[net] = C.run_or_load(cfg, out / f"run_{net}", args, **kw)
        if timer.seconds:  # trained now (a run read back keeps the seconds written when it trained)
            seconds[net] = {"seconds": timer.seconds, "model_epochs": timer.model_epochs}
    if not args.report_only:
        files.write_json(path, seconds)
    return runs, seconds


# ------------------------------------------------------------------------------------------------ statistics


def arm_of(models_df: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [
            ARMS[(c, s)]
            for c, s in zip(models_df["compute_dtype"], models_df["state_dtype"], strict=True)
        ],
        index=models_df.index,
    )


def accuracies(models_df: pd.DataFrame, scheme: str, arm: str) -> pd.Series:
    """Final test accuracy by seed of one scheme at one precision (diverged models left out)."""
    m = models_df[(models_df["scheme"] == scheme) & (arm_of(models_df) == arm)]
    ok = ~m["diverged"].to_numpy(bool) & np.isfinite(m["final_accuracy"].to_numpy(float))
    return pd.Series(m["final_accuracy"].to_numpy(float)[ok], index=m["seed"].to_numpy()[ok])


def resolution(result) -> float:
    """The accuracy's step, one test example: no interval of a random scheme is narrower than that."""
    return 1.0 / int(result.y_test.shape[0])


def deterministic(models_df: pd.DataFrame, scheme: str, arm: str) -> bool:
    """Whether every seed of ``scheme`` at ``arm`` trained the same model (the same ``param_sha256``): one result,
    not a sample (zeros: every seed draws the same weights and sees the same batches)."""
    m = models_df[(models_df["scheme"] == scheme) & (arm_of(models_df) == arm)]
    return len(m) > 1 and m["param_sha256"].nunique() == 1


def failed(result, scheme: str, arm: str) -> pd.Series:
    """Whether each seed's model failed (``metrics.failures``), by seed."""
    m = result.models
    fail = metrics.failures(result.predictions, result.y_test, m["diverged"])["failed"].to_numpy()
    sel = ((m["scheme"] == scheme) & (arm_of(m) == arm)).to_numpy()
    return pd.Series(fail[sel], index=m["seed"].to_numpy()[sel])


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a binomial proportion ``k / n``."""
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def pitman_morgan(x: np.ndarray, y: np.ndarray) -> float:
    """p-value of the Pitman-Morgan test that two PAIRED samples have equal variances: ``var(x) = var(y)`` exactly
    when ``x + y`` and ``x - y`` are uncorrelated (Pearson's test of that correlation). The arms of a seed share its
    initial weights and batches, so tests for independent samples (F, Brown-Forsythe) do not apply. NaN when fewer
    than 3 pairs or a sum or difference does not vary."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size < 3 or np.ptp(x + y) == 0 or np.ptp(x - y) == 0:
        return float("nan")
    return float(stats.pearsonr(x + y, x - y).pvalue)


def mcnemar_exact(a: pd.Series, b: pd.Series) -> float:
    """Two-sided exact McNemar p-value of paired booleans (failed at A, failed at B) over common seeds; 1.0 without
    discordant pairs."""
    seeds = a.index.intersection(b.index)
    fa, fb = a.loc[seeds].to_numpy(bool), b.loc[seeds].to_numpy(bool)
    n01, n10 = int((fa & ~fb).sum()), int((~fa & fb).sum())
    if n01 + n10 == 0:
        return 1.0
    return float(stats.binomtest(min(n01, n10), n01 + n10, 0.5).pvalue)


def effects(result) -> pd.DataFrame:
    """Per scheme and bfloat16 arm: the paired difference from float32 (points, 95% CI), Holm over the schemes of
    the arm; the spread of each arm and the Pitman-Morgan test against float32 (Holm); failures and McNemar."""
    m = result.models
    res = resolution(result)
    rows = []
    for arm in [a for a in ARMS.values() if a != REFERENCE]:
        for scheme in dict.fromkeys(m["scheme"]):
            x, ref = accuracies(m, scheme, arm), accuracies(m, scheme, REFERENCE)
            seeds = x.index.intersection(ref.index)
            c = metrics.compare(x.loc[seeds], ref.loc[seeds], paired=True, resolution=res)
            mdd = (
                metrics.min_detectable_difference(
                    x.loc[seeds], ref.loc[seeds], paired=True, resolution=res
                )
                if seeds.size >= 2
                else float("nan")
            )
            fa, fr = failed(result, scheme, arm), failed(result, scheme, REFERENCE)
            rows.append(
                {
                    "arm": arm,
                    "scheme": scheme,
                    "cmp": c,
                    "mdd": mdd,
                    "std": float(x.std(ddof=1)) if x.size > 1 else float("nan"),
                    "std_ref": float(ref.std(ddof=1)) if ref.size > 1 else float("nan"),
                    "spread_p": pitman_morgan(x.loc[seeds].to_numpy(), ref.loc[seeds].to_numpy()),
                    "failed": int(fa.sum()),
                    "failed_ref": int(fr.sum()),
                    "n": int(fa.size),
                    "mcnemar_p": mcnemar_exact(fa, fr),
                    "deterministic": deterministic(m, scheme, arm)
                    and deterministic(m, scheme, REFERENCE),
                }
            )
    df = pd.DataFrame(rows)
    df["holm"] = False
    df["spread_holm"] = False
    for _, g in df.groupby("arm", sort=False):
        df.loc[g.index, "holm"] = C.holm([c.p_value for c in g["cmp"]])
        df.loc[g.index, "spread_holm"] = C.holm(g["spread_p"].to_numpy())
    return df


def effect_verdict(row: pd.Series) -> str:
    c = row["cmp"]
    if row["deterministic"]:  # one model per precision: a difference of one draw, nothing to test
        return "one model each (deterministic)"
    if not np.isfinite(c.ci_low):
        return "untestable"
    if row["holm"] and c.ci_high < 0:
        return "loses"
    if row["holm"] and c.ci_low > 0:
        return "gains"
    return "not resolved"


def best_sets(result) -> dict[str, list[str]]:
    """Per precision, the 95% confidence set for the best scheme (Welch: the seeds of two schemes share no init
    draw under ``vary='init'``)."""
    m = result.models
    out = {}
    for arm in ARMS.values():
        groups = {s: accuracies(m, s, arm).to_numpy() for s in dict.fromkeys(m["scheme"])}
        groups = {s: a for s, a in groups.items() if a.size}
        if not groups:
            out[arm] = []
            continue
        bs = metrics.best_set(groups, paired=False)
        out[arm] = [s for s in bs.index if bs.loc[s, "in_best_set"]]
    return out


def reversals(result, arm: str) -> list[tuple[str, str]]:
    """Pairs (A, B): A above B in float32 and B above A at ``arm``, each resolved (Welch 95% CI excludes 0)."""
    m = result.models
    res = resolution(result)
    schemes = list(dict.fromkeys(m["scheme"]))
    out = []
    for a, b in itertools.permutations(schemes, 2):
        xa, xb = accuracies(m, a, REFERENCE), accuracies(m, b, REFERENCE)
        ya, yb = accuracies(m, a, arm), accuracies(m, b, arm)
        if min(xa.size, xb.size, ya.size, yb.size) < 2:
            continue
        before = metrics.compare(xa, xb, resolution=res)
        after = metrics.compare(ya, yb, resolution=res)
        if before.ci_low > 0 and after.ci_high < 0:
            out.append((a, b))
    return out


def kendall(result, arm: str) -> float:
    """Kendall's tau between the schemes' mean accuracies in float32 and at ``arm`` (a description)."""
    m = result.models
    schemes = list(dict.fromkeys(m["scheme"]))
    ref = [accuracies(m, s, REFERENCE).mean() for s in schemes]
    at = [accuracies(m, s, arm).mean() for s in schemes]
    ok = np.isfinite(ref) & np.isfinite(at)
    if ok.sum() < 3:
        return float("nan")
    return float(stats.kendalltau(np.asarray(ref)[ok], np.asarray(at)[ok]).statistic)


# ------------------------------------------------------------------------------------------------ report


def accuracy_table(result) -> pd.DataFrame:
    """One row per scheme, one column per precision: mean ± 95% CI (points), failures k/n [exact 95% CI], and a
    star for the confidence set for the best of that precision."""
    m = result.models
    best = best_sets(result)
    res = resolution(result)
    rows = []
    for scheme in dict.fromkeys(m["scheme"]):
        row = {"scheme": scheme}
        for arm in ARMS.values():
            acc = accuracies(m, scheme, arm)
            f = failed(result, scheme, arm)
            ci = metrics.mean_ci(acc.to_numpy(), resolution=res) if acc.size else None
            text = "-" if ci is None else C.mean_pm(ci.mean, ci.low, ci.high)
            if ci is not None and deterministic(m, scheme, arm):
                text = f"{C.pct(ci.mean)} (deterministic)"
            lo, hi = clopper_pearson(int(f.sum()), int(f.size))
            star = " *" if scheme in best[arm] else ""
            row[arm] = (
                f"{text}{star}; failed {int(f.sum())}/{f.size} [{100 * lo:.0f}-{100 * hi:.0f}%]"
            )
        rows.append(row)
    return pd.DataFrame(rows)


def effect_table(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in df.iterrows():
        rows.append(
            {
                "arm": r["arm"],
                "scheme": r["scheme"],
                "minus float32 (points) [95% CI], p": (
                    f"{100 * r['cmp'].diff:+.2f}" if r["deterministic"] else C.diff_text(r["cmp"])
                ),
                "verdict (Holm)": effect_verdict(r),
                "detectable": "-" if r["deterministic"] else C.pct(r["mdd"]),
                "std / std float32": f"{C.pct(r['std'])} / {C.pct(r['std_ref'])}",
                "spread test p (Pitman-Morgan)": "-"
                if not np.isfinite(r["spread_p"])
                else f"{r['spread_p']:.2g}" + (" (Holm: differs)" if r["spread_holm"] else ""),
                "failed vs float32 (McNemar p)": f"{r['failed']}/{r['n']} vs {r['failed_ref']}/{r['n']}"
                f" ({r['mcnemar_p']:.2g})",
            }
        )
    return pd.DataFrame(rows)


def findings(net: str, result, df: pd.DataFrame) -> list[str]:
    """The sentences the numbers support, computed."""
    out = []
    seeds = result.config.seeds
    best = best_sets(result)
    for arm in [a for a in ARMS.values() if a != REFERENCE]:
        g = df[df["arm"] == arm]
        lose = [r["scheme"] for _, r in g.iterrows() if effect_verdict(r) == "loses"]
        gain = [r["scheme"] for _, r in g.iterrows() if effect_verdict(r) == "gains"]
        spread = [r["scheme"] for _, r in g.iterrows() if r["spread_holm"]]
        fail = [r["scheme"] for _, r in g.iterrows() if r["mcnemar_p"] < 0.05]
        rev = reversals(result, arm)
        mdd = g["mdd"][np.isfinite(g["mdd"])]
        parts = [
            f"**{arm}** ({net}, {seeds} seeds): "
            + (
                f"lower accuracy than float32 for {', '.join(lose)}"
                if lose
                else "no scheme loses accuracy resolvably"
            )
            + (f"; higher for {', '.join(gain)}" if gain else "")
            + (
                f" (paired by seed, Holm over {len(g)} schemes; the tests detect "
                f"{C.pct(mdd.min())}-{C.pct(mdd.max())} points with 80% power)"
                if len(mdd)
                else ""
            ),
            "failures differ from float32's (McNemar's exact test, p < 0.05) for " + ", ".join(fail)
            if fail
            else "no scheme's failures differ resolvably from float32's (McNemar's exact test, every p >= 0.05)",
            "the spread over seeds differs (Pitman-Morgan, Holm) for " + ", ".join(spread)
            if spread
            else "no spread differs resolvably from float32's (Pitman-Morgan, Holm)",
            (
                "resolved order reversals against float32: "
                + "; ".join(f"{a} above {b} in float32, below it here" for a, b in rev)
            )
            if rev
            else "no pair of schemes is resolved in opposite orders in float32 and here",
            f"confidence set for the best: {', '.join(best[arm]) or '-'} (float32: "
            f"{', '.join(best[REFERENCE]) or '-'}); Kendall's tau of the means with float32 "
            + ("-" if not np.isfinite(tau := kendall(result, arm)) else f"{tau:.2f}"),
        ]
        out.append("; ".join(parts) + ".")
    return out


def cost_table(runs: dict, seconds: dict) -> pd.DataFrame:
    rows = []
    for net, r in runs.items():
        est = r.meta.get("bytes_per_model_by_precision", {})
        xla = r.meta.get("epoch_program_bytes_by_precision", {})
        s = seconds.get(net, {})
        for (c, st), arm in ARMS.items():
            key = f"compute={c},state={st}"
            sec, me = s.get("seconds", {}).get(arm), s.get("model_epochs", {}).get(arm)
            rows.append(
                {
                    "network": net,
                    "precision": arm,
                    "bytes/model (estimate)": est.get(key, float("nan")),
                    "XLA arguments / temp (bytes, one program)": (
                        f"{xla[key]['argument']} / {xla[key]['temp']}" if key in xla else "-"
                    ),
                    "model-epochs/s (this CPU)": (me / sec) if sec else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def figure(net: str, result):
    import matplotlib.pyplot as plt

    m = result.models
    schemes = list(dict.fromkeys(m["scheme"]))
    fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(schemes) + 2), 4.5))
    width = 0.8 / len(ARMS)
    for j, arm in enumerate(ARMS.values()):
        xs, ys, lo, hi = [], [], [], []
        for i, s in enumerate(schemes):
            acc = accuracies(m, s, arm).to_numpy()
            if not acc.size:
                continue
            ci = metrics.mean_ci(acc)
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(100 * ci.mean)
            lo.append(100 * (ci.mean - (ci.low if np.isfinite(ci.low) else ci.mean)))
            hi.append(100 * ((ci.high if np.isfinite(ci.high) else ci.mean) - ci.mean))
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", ms=4, capsize=2, label=arm)
    ax.set_xticks(range(len(schemes)), schemes, rotation=30, ha="right", fontsize="small")
    ax.set_ylabel("final test accuracy (%), mean and 95% CI")
    ax.set_title(f"{net}: accuracy per scheme and precision ({result.config.seeds} seeds)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


NETWORK_TEXT = {
    "mlp": "the Keras-tutorial MLP 784-128-64-10, ReLU",
    "resmlp": "a residual MLP without normalization: stem Dense, 4 blocks x(a + relu(Dense(relu(Dense(a))))), "
    "head; width {width}, ReLU (`jinit.models.ResidualMLP`)",
    "tanh10": "the CS231n tanh stack: {depth} tanh layers of {width}, then the output layer",
}


def setup_text(runs: dict, args) -> str:
    r = next(iter(runs.values()))
    cfg = r.config
    depth = len(runs["tanh10"].config.hidden) if "tanh10" in runs else 10
    width = args.width if not args.smoke else 16
    nets = "; ".join(
        f"`{net}`: {NETWORK_TEXT[net].format(width=width, depth=depth)} ({len(dict.fromkeys(r2.models['scheme']))} "
        f"schemes)"
        for net, r2 in runs.items()
    )
    text = (
        f"{cfg.dataset} ({r.meta.get('n_train')} training / {r.meta.get('n_test')} test examples"
        + (", the first of each split" if cfg.train_size else "")
        + f"). Networks: {nets}. Adam lr {cfg.learning_rate:g} (optax defaults, eps 1e-8), batch {cfg.batch_size}, "
        f"{cfg.epochs} epochs, zero biases, {cfg.seeds} seeds per scheme and precision, `vary='init'` (every "
        "model sees the same batches; seed s of a scheme has the same initial weights at every precision: the "
        "precision enters no key, and every model is initialized by the float32 network). Precisions: float32; "
        "bf16 compute (`compute_dtype='bfloat16'`: Flax's dtype, activations and matmuls in bfloat16, float32 "
        "master weights, the loss in float32); bf16 compute+state (also `state_dtype='bfloat16'`: Adam's first "
        "moment through optax's `mu_dtype`, the second through `jinit.train.state_in`, rounded to bfloat16 between "
        "steps); bf16 state (float32 compute). Each network is one sweep with four compiled programs. "
        + C.run_facts(list(runs.values()))
    )
    if args.smoke:
        text += "\n\n**Smoke run** (digits, 2 seeds, 1 epoch, width 16): not a result."
    return text


GPU_COMMAND = (
    "python experiments/precision.py --train-size 60000 --test-size 10000 --seeds 20 --epochs 10 "
    "--batch-size 32 --width 500 --out experiments/results/precision_gpu"
)


def report(runs: dict, seconds: dict, out: Path, command: str, args) -> Path:
    sections = [
        "Does the ranking of initialization schemes measured in float32 hold in bfloat16, which schemes lose "
        "accuracy or fail, and is the spread over seeds larger? Every claim below is a computed test on the "
        "replicated draws (seeds); where a test does not resolve a difference, the report says so and gives the "
        "difference it could have detected.",
        "## Setup\n\n" + setup_text(runs, args),
    ]
    effect = {net: effects(r) for net, r in runs.items()}
    sections.append(
        "## What held and what did not\n\n"
        + "\n\n".join(f"- {t}" for net, r in runs.items() for t in findings(net, r, effect[net]))
    )
    for net, r in runs.items():
        df = effect[net]
        fig = C.save_figure(figure(net, r), out / f"precision_{net}.png")
        sections += [
            f"## {net}: accuracy per precision\n\n"
            + C.md_table(accuracy_table(r))
            + "\n\nMean final test accuracy ± 95% CI (percent) over the seeds that did not diverge; `*`: in the 95% "
            "confidence set for the best scheme of that precision (Welch, Bonferroni); failures (`metrics.failures`: "
            "diverged, collapsed onto one class, or not above the majority class) with exact 95% intervals.",
            f"## {net}: each bfloat16 precision against float32\n\n"
            + C.md_table(effect_table(df))
            + "\n\n`verdict`: `loses`/`gains` when the paired 95% CI excludes 0 and Holm's procedure over the "
            "schemes of that precision keeps the test; `detectable`: the paired difference (points) detectable with "
            "80% power at these seeds.",
            f"![{fig}]({fig})",
        ]
    sections += [
        "## Cost on this machine\n\n"
        + C.md_table(
            cost_table(runs, seconds),
            {
                "bytes/model (estimate)": lambda v: "-" if not np.isfinite(v) else f"{int(v):,}",
                "model-epochs/s (this CPU)": lambda v: "-" if not np.isfinite(v) else f"{v:.2f}",
            },
        )
        + "\n\n`bytes/model`: the layout's estimate (`meta['bytes_per_model_by_precision']`: parameters, "
        "gradients, optimizer state, activations); XLA's figures are one program's (`k` models and the data). On "
        "this CPU bfloat16 is not faster (XLA:CPU converts around its float32 kernels); what bfloat16 buys is "
        "memory, and on a GPU bandwidth: `experiments/benchmark.py --precision` measures it "
        "(`experiments/results/benchmark/NOTES.md`).",
        "## On a GPU\n\nThe classic sizes (all of MNIST, 20 seeds, 10 epochs, batch 32, the CS231n width of 500):"
        f"\n\n```bash\n{GPU_COMMAND}\n```",
        f"## Reproduce\n\n```bash\n{command}\n```",
    ]
    return C.write_report(out, "Initialization schemes at float32 and bfloat16", sections)


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--train-size", type=int, default=12000, help="MNIST training examples")
    p.add_argument("--test-size", type=int, default=5000, help="MNIST test examples")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--width", type=int, default=128, help="width of the residual MLP and the tanh stack"
    )
    p.add_argument(
        "--networks",
        default=",".join(NETWORKS),
        help=f"comma-separated subset of {','.join(NETWORKS)}",
    )
    args = p.parse_args(argv)
    args.networks = tuple(n.strip() for n in args.networks.split(",") if n.strip())
    unknown = [n for n in args.networks if n not in NETWORKS]
    if unknown:
        raise ValueError(f"unknown network(s) {unknown}; valid: {', '.join(NETWORKS)}")
    out = C.out_dir(args, NAME)
    t = C.Timer()
    runs, seconds = run_all(args, out)
    path = report(runs, seconds, out, C.command_line(argv, NAME), args)
    print(f"wrote {path} ({t.seconds / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(C.run_script(NAME, main))

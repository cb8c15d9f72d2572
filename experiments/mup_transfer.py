"""muP learning-rate transfer: the best Adam learning rate vs width, standard parametrization (SP) vs muP.

Yang et al. (2022, figure 1) show that under SP the learning rate that minimizes the training loss shifts as the
network widens, while under muP it stays put, so it can be tuned on a narrow model and reused on a wide one. This
script tests that claim on an MLP (``hidden=(w, w)``, ReLU) on the embedded ``digits`` data, at widths spanning 8x:

* SP: He normal everywhere, Adam (``optax.adam``) at every learning rate;
* muP: :func:`jinit.mup` (base width = the narrowest width: equal to SP there) with muP's per-layer Adam
  (:func:`jinit.mup_optimizer`: hidden and readout learning rates x base/width).

Each (parametrization, width) is ONE sweep of seeds x learning rates (the sweep's learning-rate axis: one compiled
program; the values share the init and the batches, so learning rates are compared paired by seed). The optimum
of a width is the learning rate with the lowest mean final training loss over seeds, with the 95% confidence set of
learning rates not distinguishable from the best (:func:`jinit.metrics.best_set`, paired: the seeds replicate the
init draw, and the learning rates of one sweep share each seed's draw and batches).

The verdict is a test, with its power: **does the narrowest width's optimum transfer to the widest?** At the widest
width, the narrow optimum's loss is compared with the best learning rate's, paired by seed, inside the confidence
set for the best (one-sided, Bonferroni over the learning rates, so picking the best from the same runs is paid
for); the report gives the transfer cost with its interval and the smallest cost these seeds detect with 80% power
at that level. SP's claim (the optimum drifts) holds when the narrow optimum falls out of the wide width's set;
muP's (it stays) is never "proven" by staying in the set: the report says which costs the seeds rule out. The drift
``log2(optimum at the widest) - log2(optimum at the narrowest)`` with a bootstrap interval over seeds is shown as a
description, not as the verdict (a percentile bootstrap of an argmin is optimistic at few seeds).

Writes ``run_<sp|mup>_w<width>/``, ``report.md``, ``lr_transfer.png`` and ``optimum.csv`` under
``experiments/results/mup_transfer/``.

Usage::

    python experiments/mup_transfer.py                        # 4 widths x 11 learning rates x 8 seeds, x SP/muP
    python experiments/mup_transfer.py --smoke --out /tmp/mt   # seconds
"""

from __future__ import annotations

import sys
from pathlib import Path

import _common as C
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import jinit
from jinit import metrics, models, sweep

NAME = "mup_transfer"
PARAMS = ("sp", "mup")
TEXT = {"sp": "SP", "mup": "muP"}
N_BOOT = 2000


def factory(width: int):
    return models.factory("mlp", hidden=(width, width), activation="relu")


def mup_rules(base: int) -> jinit.Rules:
    return jinit.mup(base, readout="Dense_2/kernel", inputs=("Dense_0/kernel",))


def mup_optimizer(width: int, base: int):
    """``learning_rate -> mup_optimizer`` for ``width`` against the base width (the lr axis injects the rate)."""
    x = jnp.zeros((1, 8, 8, 1))

    def shapes(w):
        make = factory(w)(jax.nn.initializers.zeros, jax.nn.initializers.zeros)
        return jax.eval_shape(make.init, jax.random.key(0), x)

    params, base_params = shapes(width), shapes(base)
    return lambda learning_rate: jinit.mup_optimizer(learning_rate, params, base_params)


def learning_rates(args) -> tuple[float, ...]:
    lo, hi = args.lr_min, args.lr_max
    k = int(round(np.log2(hi / lo)))
    return tuple(float(lo * 2.0**i) for i in range(k + 1))


def config(args, param: str, width: int) -> sweep.SweepConfig:
    base = min(args.widths)
    return sweep.SweepConfig(
        dataset="digits",
        hidden=(width, width),  # documents the widths (run() builds the MLP via model=)
        schemes=("he_normal",) if param == "sp" else (mup_rules(base),),
        seeds=C.pick(args, "seeds", 8, 2),
        epochs=C.pick(args, "epochs", 10, 1),
        batch_size=64,
        optimizer="adam",
        learning_rate=learning_rates(args),
        train_size=256 if args.smoke else None,
        eval_every=None,
    )


def final_losses(res) -> pd.DataFrame:
    """One row per model: ``learning_rate, seed, loss`` (the last epoch's mean training loss; +inf if diverged)."""
    c = res.curves
    last = c.sort_values("step").groupby(["learning_rate", "seed"], as_index=False).tail(1)
    out = last[["learning_rate", "seed", "train_loss", "diverged"]].copy()
    loss = out["train_loss"].to_numpy(np.float64)
    out["loss"] = np.where(out["diverged"].to_numpy(bool) | ~np.isfinite(loss), np.inf, loss)
    return out[["learning_rate", "seed", "loss"]].reset_index(drop=True)


def _matrix(losses: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(lrs, L)`` with ``L[seed, lr]`` the final training loss."""
    m = losses.pivot(index="seed", columns="learning_rate", values="loss").sort_index(axis=1)
    return m.columns.to_numpy(np.float64), m.to_numpy(np.float64)


def _argmin_lr(lrs: np.ndarray, L: np.ndarray) -> float:
    with np.errstate(invalid="ignore"):
        mean = L.mean(axis=0)
    return float(lrs[int(np.argmin(np.where(np.isfinite(mean), mean, np.inf)))])


def boot_optima(lrs: np.ndarray, L: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The log2 optimum of ``N_BOOT`` resamples of the seeds (rows of ``L``, with replacement)."""
    n = L.shape[0]
    idx = rng.integers(0, n, size=(N_BOOT, n))
    return np.array([np.log2(_argmin_lr(lrs, L[i])) for i in idx])


def optimum_table(runs: dict) -> tuple[pd.DataFrame, dict]:
    """One row per (parametrization, width): the optimum, its bootstrap interval and the best set of lrs."""
    rows, boots = [], {}
    rng = np.random.default_rng(0)
    for (param, width), res in sorted(
        runs.items(), key=lambda kv: (PARAMS.index(kv[0][0]), kv[0][1])
    ):
        lrs, L = _matrix(final_losses(res))
        b = boot_optima(lrs, L, rng)
        boots[(param, width)] = b
        finite = np.isfinite(L).all(axis=0)
        groups = {
            float(lr): pd.Series(-L[:, j], index=range(L.shape[0]))
            for j, lr in enumerate(lrs)
            if finite[j]
        }
        best = metrics.best_set(groups, paired=True) if len(groups) > 1 else None
        in_set = [lr for lr in groups if best is not None and bool(best.loc[lr, "in_best_set"])]
        with np.errstate(invalid="ignore"):
            mean = L.mean(axis=0)
        opt = _argmin_lr(lrs, L)
        rows.append(
            {
                "param": param,
                "width": width,
                "optimum_lr": opt,
                "log2_optimum": np.log2(opt),
                "boot_log2_low": float(np.percentile(b, 2.5)),
                "boot_log2_high": float(np.percentile(b, 97.5)),
                "best_set_low": min(in_set) if in_set else np.nan,
                "best_set_high": max(in_set) if in_set else np.nan,
                "best_set_size": len(in_set),
                "best_set_lrs": " ".join(f"{lr:g}" for lr in in_set),
                "loss_at_optimum": float(np.nanmin(np.where(np.isfinite(mean), mean, np.nan))),
                "diverged_lrs": int((~finite).sum()),
                "seeds": int(L.shape[0]),
            }
        )
    return pd.DataFrame(rows), boots


def drift(df: pd.DataFrame, boots: dict, param: str) -> dict:
    """log2(optimum at the widest) - log2(optimum at the narrowest), with a bootstrap 95% interval."""
    g = df[df["param"] == param].sort_values("width")
    lo_w, hi_w = int(g["width"].iloc[0]), int(g["width"].iloc[-1])
    d = boots[(param, hi_w)] - boots[(param, lo_w)]
    point = float(g["log2_optimum"].iloc[-1] - g["log2_optimum"].iloc[0])
    return {
        "param": param,
        "narrow": lo_w,
        "wide": hi_w,
        "drift_log2": point,
        "seeds": int(g["seeds"].iloc[0]) if "seeds" in g else "few",
        "ci_low": float(np.percentile(d, 2.5)),
        "ci_high": float(np.percentile(d, 97.5)),
    }


def transfer_test(runs: dict, df: pd.DataFrame, param: str, alpha: float = 0.05) -> dict:
    """Does the narrowest width's optimum transfer to the widest width? At the widest width: the transfer cost
    (loss at the narrow optimum minus loss at the wide optimum, paired by seed, 95% t-interval), whether the narrow
    optimum is in the wide width's 95% confidence set for the best learning rate (``p_set``: one-sided, Bonferroni
    over the k - 1 other learning rates), and the smallest cost that test detects with 80% power (``mdd``)."""
    g = df[df["param"] == param].sort_values("width")
    narrow, wide = int(g["width"].iloc[0]), int(g["width"].iloc[-1])
    lr_n = float(g["optimum_lr"].iloc[0])
    lrs, L = _matrix(final_losses(runs[(param, wide)]))
    lr_w = _argmin_lr(lrs, L)
    j_n, j_w = int(np.flatnonzero(np.isclose(lrs, lr_n))[0]), int(np.flatnonzero(lrs == lr_w)[0])
    finite = np.isfinite(L).all(axis=0)
    groups = {
        float(lr): pd.Series(-L[:, j], index=range(L.shape[0]))
        for j, lr in enumerate(lrs)
        if finite[j]
    }
    k = len(groups)
    best = metrics.best_set(groups, paired=True, alpha=alpha) if k > 1 else None
    in_set = bool(finite[j_n] and best is not None and best.loc[float(lrs[j_n]), "in_best_set"])
    p_set = (
        float(best.loc[float(lrs[j_n]), "p_best_set"]) if finite[j_n] and best is not None else 0.0
    )
    level = alpha / max(k - 1, 1)
    ref = j_w
    if (
        j_n == j_w
    ):  # the optimum transferred exactly: the power is that of telling it from the runner-up
        with np.errstate(invalid="ignore"):
            mean = np.where(finite, L.mean(axis=0), np.inf)
        mean[j_w] = np.inf
        ref = int(np.argmin(mean))
    # the same learning rate is the same models: a cost of exactly 0, no interval to estimate
    cost = (
        metrics.compare(L[:, j_n], L[:, j_w], paired=True) if finite[j_n] and j_n != j_w else None
    )
    mdd = metrics.min_detectable_difference(
        L[:, j_n if j_n != j_w else ref], L[:, j_w], paired=True, alpha=level, two_sided=False
    )
    return {
        "param": param,
        "narrow": narrow,
        "wide": wide,
        "lr_narrow": lr_n,
        "lr_wide": lr_w,
        "in_wide_set": in_set,
        "p_set": p_set,
        "cost": cost.diff if cost is not None else (0.0 if j_n == j_w else np.inf),
        "cost_ci_low": cost.ci_low if cost is not None else np.nan,
        "cost_ci_high": cost.ci_high if cost is not None else np.nan,
        "runner_up": float(lrs[ref]) if ref != j_w else np.nan,
        "mdd": mdd,
        "k": k,
        "seeds": int(L.shape[0]),
    }


def transfer_text(t: dict) -> str:
    """The verdict of :func:`transfer_test`, in words: SP's drift held / not resolved, muP's transfer."""
    where = (
        f"the narrow optimum ({t['lr_narrow']:.3g}, width {t['narrow']}) at width {t['wide']}, against that "
        f"width's best ({t['lr_wide']:.3g}): "
        + (
            f"loss cost {t['cost']:+.4g} [{t['cost_ci_low']:+.4g}, {t['cost_ci_high']:+.4g}] (paired by seed, 95% "
            "t-interval)"
            if np.isfinite(t["cost_ci_low"])
            else "the same learning rate, so the same models (cost 0 by construction)"
            if t["lr_narrow"] == t["lr_wide"]
            else f"loss cost {t['cost']:+.4g} (diverged at the wide width)"
        )
        + f"; one-sided Bonferroni p over {t['k'] - 1} learning rates p_set = {t['p_set']:.2g}; at {t['seeds']} "
        f"seeds that test detects a cost of {t['mdd']:.3g} with 80% power"
        + (
            f" (against the runner-up, {t['runner_up']:.3g}: the resolution of this width's optimum)"
            if np.isfinite(t.get("runner_up", np.nan))
            else ""
        )
    )
    if t["param"] == "sp":
        if not t["in_wide_set"]:
            return (
                f"**The optimum drifts with width under SP: held** (the narrow optimum is outside the wide width's "
                f"95% confidence set for the best learning rate): {where}."
            )
        return (
            f"**The optimum drifts with width under SP: not resolved at {t['seeds']} seeds** (the narrow optimum "
            f"stays in the wide width's 95% confidence set; a smaller cost than the detectable one may be real): "
            f"{where}."
        )
    if t["in_wide_set"]:
        return (
            f"**The optimum transfers under muP: not rejected** (the narrow optimum is in the wide width's 95% "
            f"confidence set for the best; not evidence of no cost: a cost below the detectable one could be "
            f"missed): {where}."
        )
    return (
        f"**The optimum transfers under muP: did not hold** (the narrow optimum is outside the wide width's 95% "
        f"confidence set for the best): {where}."
    )


def best_sets_overlap(df: pd.DataFrame, param: str) -> tuple[bool, int, int]:
    """Whether the confidence sets of learning rates at the narrowest and the widest width share a value."""
    g = df[df["param"] == param].sort_values("width")
    sets = [set(str(v).split()) for v in g["best_set_lrs"].fillna("")]
    return bool(sets[0] & sets[-1]), int(g["width"].iloc[0]), int(g["width"].iloc[-1])


def findings(
    drifts: dict[str, dict],
    step: float,
    df: pd.DataFrame | None = None,
    transfers: dict[str, dict] | None = None,
) -> list[str]:
    out = [transfer_text(t) for t in (transfers or {}).values()]
    for param, d in drifts.items():
        moved = d["ci_low"] > 0 or d["ci_high"] < 0
        text = (
            f"{TEXT[param]}: optimum moved by {d['drift_log2']:+.0f} doublings (x{2 ** d['drift_log2']:.3g}) from width "
            f"{d['narrow']} to {d['wide']}, bootstrap 95% CI [{d['ci_low']:+.0f}, {d['ci_high']:+.0f}] doublings"
        )
        reading = "excludes 0" if moved else "contains 0"
        out.append(
            f"Description, not a verdict: {text}; the bootstrap interval {reading} (a percentile bootstrap of an "
            f"argmin over {d['seeds']} seeds: optimistic, each resample has at most that many distinct "
            "seeds)."
        )
    for param in drifts if df is not None else ():
        overlap, lo_w, hi_w = best_sets_overlap(df, param)
        out.append(
            f"{TEXT[param]}, the stricter reading: the 95% confidence sets of learning rates at width {lo_w} and "
            f"{hi_w} (paired t-tests per width, Bonferroni) "
            + (
                "share a learning rate, so by that test a single learning rate is not ruled out for both widths "
                "(the sets are wide at these seeds)."
                if overlap
                else "share no learning rate: no single learning rate is near-best at both widths."
            )
        )
    out.append(
        f"The learning-rate grid has a step of x{step:g}: an optimum is resolved to one grid step at best, and a "
        "drift smaller than one step is invisible here. What was replicated: the seeds replicate each model's "
        "init draw (`vary='init'`); the learning rates of one sweep share each seed's draw and batches (so they "
        "are compared paired), and two widths share only the batches."
    )
    return out


def figure(runs: dict, df: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3), sharey=True)
    cmap = plt.get_cmap("viridis")
    for ax, param in zip(axes, PARAMS, strict=True):
        widths = sorted(w for p, w in runs if p == param)
        for i, w in enumerate(widths):
            lrs, L = _matrix(final_losses(runs[(param, w)]))
            with np.errstate(invalid="ignore"):
                mean = np.where(np.isfinite(L).all(axis=0), L.mean(axis=0), np.nan)
                half = 1.96 * L.std(axis=0, ddof=1) / np.sqrt(L.shape[0])
            color = cmap(i / max(len(widths) - 1, 1))
            ax.plot(lrs, mean, marker="o", color=color, label=f"width {w}")
            ax.fill_between(lrs, mean - half, mean + half, color=color, alpha=0.2)
            r = df[(df["param"] == param) & (df["width"] == w)].iloc[0]
            ax.axvline(r["optimum_lr"], color=color, ls=":", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("Adam learning rate (muP: base rate)")
        ax.set_title(
            f"{TEXT[param]}: final training loss (mean, 95% CI; dotted: optimum)", fontsize=10
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("training loss, last epoch")
    fig.tight_layout()
    return fig


def report(runs: dict, out: Path, command: str, args) -> Path:
    df, boots = optimum_table(runs)
    df.to_csv(out / "optimum.csv", index=False)
    drifts = {p: drift(df, boots, p) for p in PARAMS}
    transfers = {p: transfer_test(runs, df, p) for p in PARAMS}
    pd.DataFrame(transfers.values()).to_csv(out / "transfer_test.csv", index=False)
    fig = C.save_figure(figure(runs, df), out / "lr_transfer.png")
    cfg = runs[("sp", min(args.widths))].config
    lrs = learning_rates(args)
    n_models = sum(len(r.models) for r in runs.values())
    setup = (
        f"`digits` ({'first 256 training images, ' if cfg.train_size else ''}embedded, offline). MLP 64-w-w-10, "
        f"ReLU, widths {', '.join(map(str, args.widths))} ({max(args.widths) // min(args.widths)}x; muP's base "
        f"width {min(args.widths)}). Adam, batch {cfg.batch_size}, {cfg.epochs} epochs, {cfg.seeds} seeds "
        f"(`vary='init'`), learning rates {lrs[0]:.3g} ... {lrs[-1]:.3g} in steps of x2 ({len(lrs)} values: the "
        f"sweep's learning-rate axis, one compiled program per sweep). {len(runs)} sweeps, {n_models} models. "
        "Metric: the last epoch's mean training loss (as Yang et al.'s figure 1); a diverged model counts as "
        "infinite loss. " + C.run_facts(runs.values())
    )
    setup += (
        "\n\nA **small run** sized for a shared 2-core CPU; a larger one is one command away, e.g. "
        "`python experiments/mup_transfer.py --widths 64,128,256,512,1024 --epochs 20 --seeds 16 --out /tmp/mt` "
        "(on a GPU: minutes)."
    )
    if args.smoke:
        setup += "\n\n**Smoke run** (256 images, 1 epoch, 2 widths): not a result."
    view = df.assign(
        optimum=df["optimum_lr"].map(lambda v: f"{v:.3g}"),
        boot_95=[
            f"[{2 ** r['boot_log2_low']:.3g}, {2 ** r['boot_log2_high']:.3g}]"
            for _, r in df.iterrows()
        ],
        best_set=[
            f"{r['best_set_low']:.3g} ... {r['best_set_high']:.3g} ({r['best_set_size']} lrs)"
            if r["best_set_size"]
            else "-"
            for _, r in df.iterrows()
        ],
        param=df["param"].map(TEXT),
    )[["param", "width", "optimum", "boot_95", "best_set", "loss_at_optimum", "diverged_lrs"]]
    dview = pd.DataFrame(drifts.values()).assign(param=lambda d: d["param"].map(TEXT))
    tview = pd.DataFrame(transfers.values()).assign(param=lambda d: d["param"].map(TEXT))[
        ["param", "narrow", "wide", "lr_narrow", "lr_wide", "cost", "cost_ci_low", "cost_ci_high"]
        + ["p_set", "in_wide_set", "mdd", "runner_up", "seeds"]
    ]
    sections = [
        "Does the best learning rate move when the network gets wider? Claim (Yang et al. 2022, figure 1): "
        "under SP it drifts with width; under muP it stays.",
        "## Setup\n\n" + setup,
        "## What held and what did not\n\n"
        + "\n\n".join(f"- {f}" for f in findings(drifts, 2.0, df, transfers)),
        "## Transfer test (the verdict)\n\n"
        + C.md_table(tview)
        + "\n\nAt the widest width: `cost` = mean final training loss at the narrowest width's optimum "
        "(`lr_narrow`) minus that at the widest width's (`lr_wide`), paired by seed, with its 95% t-interval; "
        "`p_set`: the one-sided p that another learning rate beats `lr_narrow`, Bonferroni-adjusted over the "
        "others (`jinit.metrics.best_set`); `in_wide_set`: p_set >= 0.05; `mdd`: the smallest cost that this test "
        "detects with 80% power at these seeds (the runner-up's gap when the optimum is the same).",
        "## Optimum per width\n\n"
        + C.md_table(view)
        + "\n\n`optimum`: the learning rate with the lowest mean training loss. `boot_95`: the 95% percentile "
        f"interval of that argmin over {N_BOOT} bootstrap resamples of the seeds. `best_set`: the learning rates "
        "not distinguishable from the best (95% confidence set, `jinit.metrics.best_set`, paired t-tests: the "
        "learning rates of one sweep share the init and the batches of each seed; learning rates where a seed "
        "diverged are left out). `diverged_lrs`: learning rates with at least one diverged seed.",
        "## Drift of the optimum (log2 units)\n\n"
        + C.md_table(dview)
        + "\n\nBootstrap over seeds, each width resampled independently.",
        f"## Figure\n\n![{fig}]({fig})",
        f"## Reproduce\n\n```bash\n{command}\n```",
        "Reference: Yang et al. Tensor Programs V: tuning large neural networks via zero-shot hyperparameter "
        "transfer. arXiv:2203.03466, 2022.",
    ]
    return C.write_report(out, "muP learning-rate transfer: best learning rate vs width", sections)


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted(int(v) for v in text.split(",")))
    except ValueError:
        raise ValueError(f"--widths must be comma-separated integers, got {text!r}") from None
    if len(values) < 2 or min(values) < 1:
        raise ValueError(f"--widths needs at least two integers >= 1, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--widths", default=None, help="comma-separated widths (default 32,64,128,256)")
    p.add_argument(
        "--lr-min", type=float, default=None, help="smallest learning rate (default 2^-13)"
    )
    p.add_argument(
        "--lr-max", type=float, default=None, help="largest learning rate (default 2^-3)"
    )
    args = p.parse_args(argv)
    args.widths = _ints(args.widths or ("8,32" if args.smoke else "32,64,128,256"))
    args.lr_min = args.lr_min or (2.0**-9 if args.smoke else 2.0**-13)
    args.lr_max = args.lr_max or (2.0**-5 if args.smoke else 2.0**-3)
    if not 0 < args.lr_min < args.lr_max:
        raise ValueError(f"need 0 < --lr-min < --lr-max, got {args.lr_min} and {args.lr_max}")
    out = C.out_dir(args, NAME)
    base = min(args.widths)
    runs = {}
    for param in PARAMS:
        for w in args.widths:
            cfg = config(args, param, w)
            kw = {"optimizer": mup_optimizer(w, base)} if param == "mup" else {}
            runs[(param, w)] = C.run_or_load(
                cfg, out / f"run_{param}_w{w}", args, model=factory(w), **kw
            )
    path = report(runs, out, C.command_line(argv, NAME), args)
    print(pd.read_csv(out / "optimum.csv")[["param", "width", "optimum_lr", "best_set_size"]])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    # one JAX device per core, the file backend for figures, one-line errors (see _common.run_script)
    sys.exit(C.run_script(NAME, main))

"""Trainability vs depth: which initializations still train a 50-layer MLP, and why (signal propagation at init).

Deep MLPs (2 to 50 hidden layers of equal width) with tanh and ReLU, initialized with a fixed-scale Gaussian
(Keras' RandomNormal, std 0.05), Glorot, He, orthogonal and LSUV (Mishkin & Matas 2015: orthogonal, then each
layer rescaled to unit output variance on a batch of data), trained with SGD + momentum on MNIST. For every depth:
final accuracy (mean +- 95% CI over seeds) and the number of steps to reach a target accuracy. Beside it, the
per-layer activation std and gradient norm at initialization (:func:`jinit.propagation.measure`), which explain
the failures: the signal vanishes or explodes long before training starts.

Writes one run folder per (activation, depth), ``propagation_*.csv``, ``report.md`` and PNG figures under
``experiments/results/depth/``.

Usage::

    python experiments/depth.py                      # full: ~8 min on a 2-core CPU (width 128)
    python experiments/depth.py --width 256          # the classic width: about 4x longer on CPU
    python experiments/depth.py --smoke --out /tmp/d # seconds, on the embedded digits dataset
"""

from __future__ import annotations

import sys
from pathlib import Path

import _common as C
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

import jinit
from jinit import data, files, models, propagation, sweep

NAME = "depth"
DEPTHS = (2, 4, 8, 16, 32, 50)
ACTIVATIONS = ("tanh", "relu")
SCHEMES = ("normal", "glorot_normal", "he_normal", "orthogonal", "lsuv")
TARGET = 0.8


def configs(args) -> dict[tuple[str, int], sweep.SweepConfig]:
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
    out = {}
    for act in args.activations:
        for depth in args.depths:
            out[(act, depth)] = sweep.SweepConfig(
                **data_kw,
                hidden=(args.width,) * depth,
                activation=act,
                schemes=args.trained_schemes,
                bias_init="zeros",
                seeds=C.pick(args, "seeds", 3, 2),
                epochs=C.pick(args, "epochs", 2, 1),
                batch_size=64,
                optimizer="momentum",
                learning_rate=1e-2,
                eval_every=C.pick(args, "eval_every", 25, 5),
                target_accuracy=args.target,
            )
    for cfg in out.values():
        cfg.validate()
    return out


# ------------------------------------------------------------------------------------ propagation at init


def probe_batch(args, n: int = 256):
    """The first ``n`` training examples (flattened) and labels: the batch measured at init and used by LSUV."""
    ds = data.load(
        "digits" if args.smoke else "mnist",
        data_dir=None if args.smoke else args.data_dir,
        flatten=True,
    )
    return np.asarray(ds.x_train[:n], np.float32), np.asarray(ds.y_train[:n], np.int32)


def lsuv_stats(depth: int, width: int, activation: str, x, y, seeds: int) -> pd.DataFrame:
    """:func:`jinit.propagation.measure`'s ``act_std`` and ``grad_norm`` columns for LSUV-initialized models.

    ``measure`` takes initializers, and LSUV is not one (it rescales trained-free params using data), so the two
    statistics are computed here the same way: on the same batch and labels, per hidden layer and per kernel.
    """
    model = models.deep_mlp(depth, width, activation=activation, kernel_init=jinit.orthogonal())
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), 7), seeds)
    # Orthogonal init eagerly, outside the jitted LSUV: jit(vmap(orthogonal init)) can hang XLA:CPU (jax 0.10;
    # see tests/test_sweep.py::test_orthogonal_init_of_an_mnist_chunk_completes).
    variables = jax.vmap(lambda k: model.init(k, x[:1]))(keys)
    variables = jax.jit(jax.vmap(lambda v: propagation.lsuv(model, v, x)))(variables)

    def stats(params):
        def loss(p):
            logits, state = model.apply({"params": p}, x, mutable=["intermediates"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), state[
                "intermediates"
            ]

        grads, inter = jax.grad(loss, has_aux=True)(params)
        act = jnp.stack([inter[f"act_{i}"][0].std() for i in range(depth)] + [jnp.nan])
        grad = jnp.stack([jnp.linalg.norm(grads[f"Dense_{i}"]["kernel"]) for i in range(depth + 1)])
        return act, grad

    act, grad = jax.device_get(jax.jit(jax.vmap(stats))(variables["params"]))
    n_layers = depth + 1
    return pd.DataFrame(
        {
            "scheme": "lsuv",
            "seed": np.repeat(np.arange(seeds), n_layers),
            "layer": np.tile(np.arange(n_layers), seeds),
            "act_std": np.asarray(act, np.float64).reshape(-1),
            "grad_norm": np.asarray(grad, np.float64).reshape(-1),
        }
    )


def propagation_frame(args, activation: str, x, y) -> pd.DataFrame:
    inits = ["normal", "he_normal"] if args.smoke else [s for s in SCHEMES if s != "lsuv"]
    depth = max(args.depths)
    df = propagation.measure(
        inits, depth=depth, width=args.width, activation=activation, seeds=3, x=x, y=y
    )
    return pd.concat(
        [df, lsuv_stats(depth, args.width, activation, x, y, seeds=3)], ignore_index=True
    )


# ------------------------------------------------------------------------------------ tables and figures


def grid_table(results_: dict, activation: str, column: str) -> pd.DataFrame:
    depths = sorted(d for a, d in results_ if a == activation)
    cells: dict[str, dict[str, str]] = {}
    for d in depths:
        res = results_[(activation, d)]
        for _, r in res.summary().iterrows():
            if column == "acc":
                text = C.row_pm(r, 1)
                failed = int(round(r["failure_rate"] * r["n"]))
                if r["diverged_count"]:
                    text += f" ({int(r['diverged_count'])} div.)"
                if failed > r["diverged_count"]:
                    text += f" ({failed - int(r['diverged_count'])} failed)"
            else:
                never = r["target_never_fraction"]
                text = "never" if never == 1 else f"{r['steps_to_target_median']:.0f}"
                if 0 < never < 1:
                    text += f" ({never:.0%} never)"
            cells.setdefault(r["scheme"], {})[str(d)] = text
    return (
        pd.DataFrame(cells)
        .T.reindex(columns=[str(d) for d in depths])
        .reset_index(names="scheme")
        .fillna("-")
    )


def depth_paragraph(results_: dict, activation: str, target: float) -> str:
    depths = sorted(d for a, d in results_ if a == activation)
    deepest: dict[str, int | None] = {}
    for d in depths:
        for _, r in results_[(activation, d)].summary().iterrows():
            deepest.setdefault(r["scheme"], None)
            if r["target_never_fraction"] < 0.5:
                deepest[r["scheme"]] = d
    parts = [
        f"{s}: {'never' if d is None else f'up to {d} layers' if d == depths[-1] else f'{d} layers'}"
        for s, d in deepest.items()
    ]
    # Which schemes cannot be told apart from the best at the deepest depth?
    last = results_[(activation, depths[-1])].summary()
    tied = [s for s in last[last["in_best_set"]]["scheme"] if s != last["scheme"].iloc[0]]
    n = int(last["n"].max())
    gaps = last.set_index("scheme").loc[tied, "mdd_vs_best"] if tied else pd.Series([], dtype=float)
    gap = f" (at {n} seeds a gap of {C.pct(gaps.max(), 1)} points would be missed with 20% probability)"
    failed = [
        f"{r['scheme']} {int(round(r['failure_rate'] * r['n']))}/{int(r['n'])}"
        for _, r in last.iterrows()
        if r["failure_rate"] > 0
    ]
    return (
        f"**{activation}** -- deepest network in which most seeds reach {target:.0%} test accuracy within the "
        f"budget: {'; '.join(parts)}. At depth {depths[-1]} the best scheme is {last['scheme'].iloc[0]} "
        f"({C.row_pm(last.iloc[0], 1)}%); not distinguishable from it at {n} seeds (95% confidence set for the "
        f"best): {', '.join(tied) or 'no other scheme'}"
        + (gap if tied and np.isfinite(gaps.max()) else "")
        + ". Failed models (diverged, one class for every test example, or not above the majority class): "
        + (", ".join(failed) or "none")
        + "."
    )


def verdicts(results_: dict) -> dict[str, str]:
    """Each scheme against the best of its (activation, depth) cell."""
    return {
        f"{a}/d{d}: {s} vs best": v
        for (a, d), res in results_.items()
        for s, v in C.best_verdicts(res.summary()).items()
    }


def old_verdicts(results_: dict) -> dict[str, str]:
    """The same by the statistics before issue 14 (paired by seed number, uncorrected vs the best)."""
    return {
        f"{a}/d{d}: {s} vs best": v
        for (a, d), res in results_.items()
        for s, v in C.old_best_verdicts(res.models).items()
    }


def accuracy_figure(results_: dict):
    import matplotlib.pyplot as plt

    acts = list(dict.fromkeys(a for a, _ in results_))
    fig, axes = plt.subplots(2, len(acts), figsize=(6 * len(acts), 7.5), squeeze=False)
    for j, act in enumerate(acts):
        depths = sorted(d for a, d in results_ if a == act)
        frames = {d: results_[(act, d)].summary().set_index("scheme") for d in depths}
        schemes = list(dict.fromkeys(s for f in frames.values() for s in f.index))
        for s in sorted(schemes):
            mean = np.array([frames[d]["acc_mean"].get(s, np.nan) for d in depths])
            lo = np.array([frames[d]["acc_ci95_low"].get(s, np.nan) for d in depths])
            hi = np.array([frames[d]["acc_ci95_high"].get(s, np.nan) for d in depths])
            (line,) = axes[0, j].plot(depths, 100 * mean, marker="o", label=s)
            axes[0, j].fill_between(depths, 100 * lo, 100 * hi, color=line.get_color(), alpha=0.2)
            steps = np.array([frames[d]["steps_to_target_median"].get(s, np.nan) for d in depths])
            axes[1, j].plot(depths, steps, marker="o", color=line.get_color(), label=s)
        cfg = results_[(act, depths[0])].config
        axes[0, j].set_title(f"{act}: final test accuracy (mean, 95% CI band)", fontsize=10)
        axes[0, j].set_ylabel("test accuracy (%)")
        axes[1, j].set_title(
            f"{act}: median steps to {cfg.target_accuracy:.0%} (missing: never)", fontsize=10
        )
        axes[1, j].set_ylabel("optimizer steps")
        for ax in axes[:, j]:
            ax.set_xscale("log", base=2)
            ax.set_xticks(depths, [str(d) for d in depths])
            ax.set_xlabel("hidden layers")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def propagation_figure(frames: dict[str, pd.DataFrame]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(frames), 2, figsize=(12, 4.2 * len(frames)), squeeze=False)
    for i, (act, df) in enumerate(frames.items()):
        for j, stat in enumerate(("act_std", "grad_norm")):
            propagation.plot(df, stat, ax=axes[i, j])
            depth = int(df["layer"].max())
            axes[i, j].set_title(f"{act}, depth {depth}: {stat} per layer at init", fontsize=10)
    fig.tight_layout()
    return fig


def propagation_paragraph(frames: dict[str, pd.DataFrame]) -> str:
    lines = []
    for act, df in frames.items():
        last_hidden = df["layer"].max() - 1
        a = df[df["layer"] == last_hidden].groupby("scheme", sort=False)["act_std"].median()
        g = df.groupby(["scheme", "seed"], sort=False)["grad_norm"]
        ratio = (g.max() / g.min()).groupby("scheme", sort=False).median()
        lines.append(
            f"- **{act}**, std of the last hidden layer's activations at init: "
            + ", ".join(f"{s} {v:.2g}" for s, v in a.items())
            + ". Ratio of the largest to the smallest per-layer gradient norm: "
            + ", ".join(f"{s} {v:.3g}" for s, v in ratio.items())
            + "."
        )
    return "\n".join(lines)


def report(
    results_: dict, frames: dict[str, pd.DataFrame], out: Path, command: str, trained: tuple
) -> Path:
    first = next(iter(results_.values()))
    cfg = first.config
    acts = list(dict.fromkeys(a for a, _ in results_))
    figs = [
        C.save_figure(accuracy_figure(results_), out / "accuracy_vs_depth.png"),
        C.save_figure(propagation_figure(frames), out / "propagation_at_init.png"),
    ]
    depths = sorted({d for _, d in results_})
    setup = (
        f"MLPs with {', '.join(map(str, depths))} hidden layers of width {cfg.hidden[0]}, zero biases; "
        f"{cfg.optimizer} (SGD, momentum 0.9) lr={cfg.learning_rate:g}, batch {cfg.batch_size}, {cfg.epochs} epochs "
        f"on {cfg.dataset} ({first.meta.get('n_train')} train / {first.meta.get('n_test')} test examples; "
        f"{first.meta.get('steps_per_epoch', 0) * cfg.epochs} steps), test accuracy every {cfg.eval_every} steps; "
        f"{cfg.seeds} seeds per cell. `normal` is N(0, 0.05^2) whatever the width (Keras' RandomNormal). "
        + (
            f"Width {cfg.hidden[0]} instead of the classic 256 and a training subset keep the {len(results_)} "
            "sweeps within about ten minutes of a 2-core CPU (`--width 256 --train-size 60000` on an "
            "accelerator). "
            if cfg.hidden[0] < 256 and cfg.dataset == "mnist"
            else ""
        )
        + C.run_facts(results_.values())
    )
    if "lsuv" in trained:
        setup += (
            "\n\nLSUV is the sweep's scheme `lsuv` (`jinit.propagation.LSUVScheme`): orthogonal init, then every "
            "kernel rescaled until its layer's output has unit std on a fixed batch of 256 training examples "
            "(`jinit.sweep.lsuv_batch`), the same batch for every seed."
        )
    if cfg.dataset != "mnist":
        setup += (
            f"\n\n**Smoke run on `{cfg.dataset}`**: checks that the script works; not a result."
        )
    sections = [
        "Can a deep plain MLP be trained at all? Glorot & Bengio (2010), He et al. (2015), Saxe et al. (2014) and "
        "Mishkin & Matas (2015) say it depends on whether the initialization keeps the signal's scale from layer "
        "to layer. This study trains MLPs of increasing depth under each scheme with several seeds, and measures "
        "the per-layer statistics at initialization that predict the outcome.",
        "## Setup\n\n" + setup,
        "## Final test accuracy (%) per depth\n\n"
        + "\n\n".join(f"### {a}\n\n" + C.md_table(grid_table(results_, a, "acc")) for a in acts),
        f"## Steps to {cfg.target_accuracy:.0%} test accuracy (median over seeds)\n\n"
        + "\n\n".join(f"### {a}\n\n" + C.md_table(grid_table(results_, a, "steps")) for a in acts),
        "Cells: mean ± half-width of the 95% CI over seeds; `failed`: models that did not diverge but predict one "
        "class for every test example or are not significantly above always predicting the majority class "
        "(`jinit.metrics.failures`); they count in the mean.",
        "## Reading\n\n"
        + "\n\n".join(depth_paragraph(results_, a, cfg.target_accuracy) for a in acts),
        C.verdict_section(out, verdicts(results_), old_verdicts(results_)),
        f"## Signal propagation at init (depth {max(depths)})\n\n"
        "Per-layer std of the activations and norm of the loss gradient w.r.t. each kernel, on a batch of 256 "
        "training images with their labels (median over 3 seeds, band min-max):\n\n"
        + propagation_paragraph(frames),
        "## Figures\n\n" + "\n\n".join(f"![{f}]({f})" for f in figs),
        f"## Reproduce\n\n```bash\n{command}\n```\n\nRun folders: `run_<activation>_d<depth>/`; per-layer "
        "statistics: `propagation_<activation>.csv`.",
    ]
    return C.write_report(out, "Trainability vs depth, and signal propagation at init", sections)


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument(
        "--depths", default=None, help=f"comma-separated (default {','.join(map(str, DEPTHS))})"
    )
    p.add_argument("--width", type=int, default=None, help="hidden width (default 128)")
    p.add_argument(
        "--activations", default=None, help=f"comma-separated (default {','.join(ACTIVATIONS)})"
    )
    p.add_argument("--train-size", type=int, default=6400, help="MNIST training examples used")
    p.add_argument("--test-size", type=int, default=2000, help="MNIST test examples used")
    p.add_argument(
        "--eval-every", type=int, default=None, help="evaluate every that many steps (default 25)"
    )
    p.add_argument("--target", type=float, default=TARGET, help="accuracy for steps-to-target")
    args = p.parse_args(argv)
    args.depths = [
        int(d)
        for d in (args.depths or ("2,3" if args.smoke else ",".join(map(str, DEPTHS)))).split(",")
    ]
    args.width = args.width or (32 if args.smoke else 128)
    args.activations = (
        args.activations or ("relu" if args.smoke else ",".join(ACTIVATIONS))
    ).split(",")
    args.trained_schemes = ("normal", "he_normal", "lsuv") if args.smoke else SCHEMES
    out = C.out_dir(args, NAME)
    cfgs = configs(args)

    x, y = probe_batch(args)
    frames = {}
    for act in args.activations:
        path = out / f"propagation_{act}.csv"
        if args.report_only:
            frames[act] = pd.read_csv(path)
        else:
            frames[act] = propagation_frame(args, act, x, y)
            files.write_csv(path, frames[act])

    runs = {}
    for (act, depth), cfg in cfgs.items():
        print(f"== {act} / depth {depth}", flush=True)
        runs[(act, depth)] = C.run_or_load(cfg, out / f"run_{act}_d{depth}", args)
    path = report(runs, frames, out, C.command_line(argv, NAME), tuple(args.trained_schemes))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    # one JAX device per core, the file backend for figures, one-line errors (see _common.run_script)
    sys.exit(C.run_script(NAME, main))

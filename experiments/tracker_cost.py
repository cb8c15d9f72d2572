"""What the trackers cost: the same sweep with no tracker, with ``tensorboard=`` and with ``wandb=`` (offline),
interleaved in one run on one machine, each sweep in a fresh process.

The trackers write from a background thread of their own (:mod:`jinit.sweep.trackers`), so what they cost the
devices is the CPU time that thread takes from them; what they cost the whole ``sweep.run`` also includes waiting,
at the end, for the last runs to be written and closed. Reported: model-epochs per second of training
(``meta["train_seconds"]``) and of the whole call (wall), and the CPU seconds of the tracker's thread
(``Tracker.cpu_seconds``) as a share of the process's CPU seconds: on a shared machine the rates vary by more than
the trackers cost, the CPU share does not (a W&B run also works in its ``wandb-core`` process, not counted).

Workloads (CPU):

* ``mnist64``: the MNIST MLP 784-128-64-10, 64 models (4 schemes x 16 seeds), batch 128, one epoch (evaluated at
  its end: one point per model);
* ``digits64``: the default digits MLP, 64 models (4 schemes x 16 seeds), batch 32, 10 epochs, evaluated every 10
  steps (5 points per model and epoch: 3,200 points of 6 scalars).

Each round runs every variant of a workload in a rotated order. Results: ``tracker_cost.json`` and
``tracker_cost.md`` in ``experiments/results/benchmark/``.

Usage::

    python experiments/tracker_cost.py                       # 5 rounds of both workloads
    python experiments/tracker_cost.py --smoke --out /tmp/tc  # seconds
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import _common as C
import numpy as np
import pandas as pd

NAME = "benchmark"
VARIANTS = ("none", "tensorboard", "wandb")

# One timed sweep in a fresh process; prints one JSON line.
_ONE = r"""
import json, os, sys, time
from jinit import sweep
from jinit.sweep import trackers
cfg, kw = sweep.SweepConfig(**json.loads(sys.argv[1])), json.loads(sys.argv[2])
made = trackers.from_arguments(kw.get("tensorboard"), kw.get("wandb"), "tracker-cost")
t0, c0 = time.perf_counter(), time.process_time()
r = sweep.run(cfg, progress=False, callbacks=made)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
m = r.meta
print(json.dumps({"n_models": m["n_models"], "epochs": cfg.epochs, "train_seconds": m["train_seconds"],
                  "wall_seconds": wall, "compile_seconds": m["compile_seconds"], "cpu_seconds": cpu,
                  "tracker_cpu_seconds": sum(t.cpu_seconds for t in made)}))
"""


def workloads(smoke: bool, data_dir: str | None) -> list[dict[str, Any]]:
    """The workloads as ``{name, config}`` (config: SweepConfig fields)."""
    schemes = ["glorot_uniform", "he_normal", "lecun_normal", "orthogonal"]
    if smoke:
        tiny = {"schemes": schemes[:2], "seeds": 2, "epochs": 1, "train_size": 256}
        return [{"name": "smoke", "config": tiny}]
    mnist = {"dataset": "mnist", "data_dir": data_dir, "schemes": schemes, "seeds": 16}
    return [
        {"name": "mnist64", "config": {**mnist, "epochs": 1, "batch_size": 128}},
        {"name": "digits64", "config": {"schemes": schemes, "seeds": 16, "eval_every": 10}},
    ]


def tracker_arguments(variant: str, scratch: Path) -> dict[str, Any]:
    """``sweep.run``'s tracker arguments of a variant, writing under ``scratch``."""
    if variant == "tensorboard":
        return {"tensorboard": str(scratch / "tb")}
    if variant == "wandb":
        return {"wandb": {"project": "jinit-tracker-cost", "mode": "offline", "dir": str(scratch)}}
    return {}


def one(work: dict[str, Any], variant: str, scratch: Path) -> dict[str, Any]:
    """One sweep in a fresh process (2 CPU devices, a compilation cache of its own)."""
    scratch.mkdir(parents=True)
    env = {
        "PYTHONPATH": str(C.REPO_ROOT),
        "JAX_NUM_CPU_DEVICES": "2",
        "JINIT_CACHE_DIR": str(scratch / "cache"),
    }
    args = [json.dumps(work["config"]), json.dumps(tracker_arguments(variant, scratch))]
    row = C.run_child(_ONE, args, env, f"{work['name']} {variant}")
    model_epochs = row["n_models"] * row["epochs"]
    row["train_rate"] = model_epochs / row["train_seconds"]
    row["wall_rate"] = model_epochs / row["wall_seconds"]
    return row


def measure(rounds: int, work_list: list[dict], scratch: Path) -> list[dict]:
    """Every workload and variant, ``rounds`` times, the variants in a rotated order each round."""
    rows = []
    for r in range(rounds):
        for w in work_list:
            order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]
            for variant in order:
                got = one(w, variant, scratch / f"{w['name']}-{variant}-{r}")
                rows.append({"workload": w["name"], "variant": variant, "round": r, **got})
                print(f"{w['name']} {variant} round {r}: {got['train_rate']:.3g} model-epochs/s "
                      f"(wall {got['wall_rate']:.3g})", flush=True)  # fmt: skip
    return rows


def table(rows: list[dict]) -> pd.DataFrame:
    """Per workload and variant: each round's training and wall rates, and their means relative to no tracker."""
    df = pd.DataFrame(rows)
    out = []
    for (w, v), g in df.groupby(["workload", "variant"], sort=False):
        base = df[(df["workload"] == w) & (df["variant"] == "none")]
        rec = {"workload": w, "tracker": v}
        for rate, label in (("train_rate", "training"), ("wall_rate", "whole run")):
            values = g[rate].to_numpy()
            ratio = np.median(values) / np.median(base[rate].to_numpy())
            rec[f"{label} model-epochs/s"] = " / ".join(f"{x:.3g}" for x in values)
            rec[f"{label}: median vs none"] = f"{100 * (ratio - 1):+.1f}%"
        rec["tracker CPU s"] = " / ".join(f"{x:.2f}" for x in g["tracker_cpu_seconds"])
        share = g["tracker_cpu_seconds"] / g["cpu_seconds"]
        rec["of the process's CPU"] = " / ".join(f"{100 * x:.2f}%" for x in share)
        out.append(rec)
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    p = C.parser("tracker_cost", __doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    args = p.parse_args(argv)
    out = C.out_dir(args, NAME)
    with tempfile.TemporaryDirectory(prefix="jinit-tracker-cost-") as tmp:
        rows = measure(
            1 if args.smoke else args.rounds, workloads(args.smoke, args.data_dir), Path(tmp)
        )
    import jax

    doc = {
        "command": C.command_line(argv, "tracker_cost"),
        "device_kind": jax.devices()[0].device_kind,
        "cores": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg(),  # at the end of the run
        "rows": rows,
    }
    C.files.write_json(out / "tracker_cost.json", doc)
    md = [
        f"Trackers vs none, {doc['cores']} cores ({doc['device_kind']}), 2 CPU devices, each sweep in a fresh "
        "process; model-epochs/s of training and of the whole `sweep.run` (each round), the medians' change "
        "against no tracker, and the CPU seconds of the tracker's thread over the process's (each round). "
        f"Load average during the run: {doc['load_average'][0]:.1f}.",
        "",
        C.md_table(table(rows)),
    ]
    C.files.write_text(out / "tracker_cost.md", "\n".join(md) + "\n")
    print("\n".join(md))
    print(f"wrote {out / 'tracker_cost.json'} and {out / 'tracker_cost.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(C.run_script("tracker_cost", main))

"""The sweep engine against an earlier commit of itself, interleaved in one run on one machine.

Every engine change is measured this way (DEVELOPERS.md: a change that makes the sweep slower needs the number beside
it). For each workload, each round runs the baseline commit and this tree one after the other, each in a fresh
process (so neither reuses the other's compiled programs or warm caches), and the rounds alternate which goes first.
Throughput counts training time only (``meta["train_seconds"]``: the epochs on the devices); the wall time of
``sweep.run`` is reported beside it.

Workloads (CPU defaults):

* ``mnist64``: the MNIST MLP 784-128-64-10, 64 models (4 schemes x 16 seeds), batch 128, one epoch, on 1 and on 2
  CPU devices (``JAX_NUM_CPU_DEVICES``), the default models per device of each engine;
* ``digits2048``: 9 schemes x 228 seeds = 2052 digits MLPs, 2 epochs, 2 devices: wall / train (host overhead);
* ``default``: the default ``jinit sweep`` (45 digits models, 10 epochs), 2 devices;
* ``second_process``: the same sweep in two processes one after the other (the second may load the first's
  compiled programs from JAX's persistent compilation cache): compile seconds of each.

The baseline is exported with ``git archive`` into a temporary folder and imported from there (``PYTHONPATH``); this
tree is imported from the repository. Results: ``experiments/results/benchmark/engine_ab_<platform>.json`` and
``engine_ab.md``.

Usage::

    python experiments/engine_ab.py --baseline c8c3a9a            # the engine of 2026-11-30
    python experiments/engine_ab.py --baseline HEAD~1 --rounds 3
    python experiments/engine_ab.py --smoke --out /tmp/ab         # seconds: digits, both sides this tree
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import _common as C
import pandas as pd

NAME = "benchmark"

# One timed sweep in a fresh process; prints one JSON line.
_ONE = r"""
import json, os, sys, time
t0 = time.perf_counter()
from jinit import sweep
cfg = sweep.SweepConfig(**json.loads(sys.argv[1]))
t1 = time.perf_counter()
r = sweep.run(cfg, progress=False)
t2 = time.perf_counter()
m = r.meta
print(json.dumps({"jinit": sweep.__file__, "n_models": m["n_models"], "epochs": cfg.epochs,
                  "train_seconds": m["train_seconds"], "compile_seconds": m["compile_seconds"],
                  "wall_seconds": t2 - t1, "import_seconds": t1 - t0,
                  "models_per_device": m.get("models_per_device"), "chunk_size": m.get("chunk_size"),
                  "device_count": m.get("device_count"), "timings": m.get("timings", {})}))
"""


def workloads(smoke: bool, data_dir: str | None) -> list[dict[str, Any]]:
    """The workloads as ``{name, devices, config}`` (config: SweepConfig fields)."""
    if smoke:
        tiny = {"schemes": ["he_normal", "zeros"], "seeds": 2, "epochs": 1, "train_size": 256}
        return [{"name": "smoke", "devices": d, "config": tiny} for d in (1, 2)]
    mnist = {
        "dataset": "mnist",
        "data_dir": data_dir,
        "schemes": ["glorot_uniform", "he_normal", "lecun_normal", "orthogonal"],
        "seeds": 16,
        "epochs": 1,
        "batch_size": 128,
    }
    return [
        {"name": "mnist64", "devices": 1, "config": mnist},
        {"name": "mnist64", "devices": 2, "config": mnist},
        {"name": "digits2048", "devices": 2, "config": {"seeds": 228, "epochs": 2}},
        {"name": "default", "devices": 2, "config": {}},
    ]


def export(rev: str, where: Path) -> Path:
    """The files of commit ``rev`` in ``where`` (``git archive``)."""
    data = subprocess.run(
        ["git", "-C", str(C.REPO_ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    where.mkdir(parents=True, exist_ok=True)
    tar = where / "src.tar"
    tar.write_bytes(data)
    with tarfile.open(tar) as t:
        t.extractall(where, filter="data")
    tar.unlink()
    return where


def one(tree: Path, work: dict[str, Any], cache: Path) -> dict[str, Any]:
    """One sweep of ``work`` with the engine in ``tree``, in a fresh process with its own compilation cache."""
    env = {
        "PYTHONPATH": str(tree),
        "JAX_NUM_CPU_DEVICES": str(work["devices"]),
        "JINIT_CACHE_DIR": str(cache),
    }
    row = C.run_child(_ONE, [json.dumps(work["config"])], env, f"{tree}: {work['name']}")
    imported = Path(row["jinit"])
    if not imported.is_relative_to(tree):
        raise RuntimeError(f"imported {imported}, not the engine in {tree}")
    # the engine's file, not where this machine kept it
    row["jinit"] = str(imported.relative_to(tree))
    row["model_epochs_per_second"] = row["n_models"] * row["epochs"] / row["train_seconds"]
    return row


def measure(
    trees: dict[str, Path], rounds: int, work_list: list[dict], scratch: Path
) -> list[dict]:
    """Every workload, ``rounds`` times, the engines alternating which runs first."""
    rows = []
    for r in range(rounds):
        for w in work_list:
            order = list(trees) if r % 2 == 0 else list(trees)[::-1]
            for engine in order:
                cache = scratch / f"cache-{engine}-{w['name']}-{w['devices']}-{r}"
                got = one(trees[engine], w, cache)
                rows.append(
                    {
                        "engine": engine,
                        "workload": w["name"],
                        "devices": w["devices"],
                        "round": r,
                        **got,
                    }
                )
                print(json.dumps({k: rows[-1][k] for k in ("engine", "workload", "devices", "round")})
                      + f" {got['model_epochs_per_second']:.3g} model-epochs/s", flush=True)  # fmt: skip
    return rows


def scan_models_per_device(
    values: list[int], rounds: int, data_dir: str | None, scratch: Path
) -> list[dict]:
    """This tree's throughput at each models-per-device value (2 devices): the MNIST MLP at batch 128 and 32
    (64 models, 1 epoch) and the digits MLP (256 models, 2 epochs), the values interleaved in each round."""
    mnist = workloads(False, data_dir)[0]["config"]
    cases = [
        ("mnist64 b128", mnist),
        ("mnist64 b32", {**mnist, "batch_size": 32, "train_size": 15000}),
        ("digits256", {"seeds": 29, "epochs": 2}),
    ]
    rows = []
    for r in range(rounds):
        for name, cfg in cases:
            for k in values if r % 2 == 0 else values[::-1]:
                work = {"name": name, "devices": 2, "config": {**cfg, "models_per_device": k}}
                got = one(C.REPO_ROOT, work, scratch / f"cache-scan-{name}-{k}")
                rows.append({"workload": name, "models_per_device": k, "round": r, **got})
                print(
                    f"{name} k={k} round {r}: {got['model_epochs_per_second']:.3g} model-epochs/s",
                    flush=True,
                )
    return rows


def second_process(tree: Path, scratch: Path) -> dict[str, float]:
    """Compile seconds of the default sweep in a first and a second process sharing one compilation cache."""
    cache = scratch / "cache-second-process"
    work = {"name": "default", "devices": 2, "config": {}}
    first, second = one(tree, work, cache), one(tree, work, cache)
    return {"first": first["compile_seconds"], "second": second["compile_seconds"]}


def table(rows: list[dict]) -> pd.DataFrame:
    """Mean model-epochs/s and wall / train per engine, workload and devices, with each round's value."""
    df = pd.DataFrame(rows)
    df["wall_per_train"] = df["wall_seconds"] / df["train_seconds"]
    out = []
    for (w, d), g in df.groupby(["workload", "devices"], sort=False):
        rec = {"workload": w, "devices": d}
        for engine, h in g.groupby("engine", sort=False):
            rates = h["model_epochs_per_second"].to_numpy()
            rec[f"{engine} model-epochs/s"] = (
                " / ".join(f"{v:.3g}" for v in rates) + f" (mean {rates.mean():.3g})"
            )
            rec[f"{engine} wall/train"] = f"{h['wall_per_train'].mean():.2f}"
            k = h["models_per_device"].iloc[0]
            rec[f"{engine} models/device"] = "-" if pd.isna(k) else int(k)
        out.append(rec)
    return pd.DataFrame(out)


def ratios(rows: list[dict], new: str, old: str) -> dict[str, float]:
    """new / old mean throughput per workload and devices, and new's 2-device / 1-device throughput."""
    df = pd.DataFrame(rows)
    mean = df.groupby(["engine", "workload", "devices"])["model_epochs_per_second"].mean()
    out = {}
    for (engine, w, d), v in mean.items():
        if engine == new and (old, w, d) in mean:
            out[f"{w} {d} device(s): {new}/{old}"] = float(v / mean[(old, w, d)])
    for engine in (new, old):
        if (engine, "mnist64", 1) in mean and (engine, "mnist64", 2) in mean:
            out[f"mnist64 {engine}: 2 devices / 1"] = float(
                mean[(engine, "mnist64", 2)] / mean[(engine, "mnist64", 1)]
            )
    return out


def main(argv: list[str] | None = None) -> int:
    p = C.parser("engine_ab", __doc__.split("\n\n")[0])
    p.add_argument("--baseline", default="c8c3a9a", help="the commit to compare with (git rev)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument(
        "--scan-models-per-device",
        default=None,
        metavar="K,K,...",
        help="also measure this tree at these models per device (how the default is chosen)",
    )
    args = p.parse_args(argv)
    out = C.out_dir(args, NAME)
    with tempfile.TemporaryDirectory(prefix="jinit-ab-") as tmp:
        scratch = Path(tmp)
        old = C.REPO_ROOT if args.smoke else export(args.baseline, scratch / "baseline")
        trees = {"baseline": old, "new": C.REPO_ROOT}
        rows = measure(
            trees, 1 if args.smoke else args.rounds, workloads(args.smoke, args.data_dir), scratch
        )
        compile_times = second_process(C.REPO_ROOT, scratch)
        scan = []
        if args.scan_models_per_device:
            values = [int(v) for v in args.scan_models_per_device.split(",")]
            scan = scan_models_per_device(values, args.rounds, args.data_dir, scratch)
    import jax

    doc = {
        "command": C.command_line(argv, "engine_ab"),
        "baseline": args.baseline,
        "platform": jax.devices()[0].platform,
        "device_kind": jax.devices()[0].device_kind,
        "cores": len(os.sched_getaffinity(0)),
        "rows": rows,
        "ratios": ratios(rows, "new", "baseline"),
        "second_process_compile_seconds": compile_times,
        "models_per_device_scan": scan,
    }
    name = f"engine_ab_{doc['platform']}.json"
    C.files.write_json(out / name, doc)  # first: the numbers are kept whatever the formatting does
    md = [
        f"Baseline {args.baseline} vs this tree, {doc['cores']} cores, {doc['device_kind']}; "
        f"model-epochs/s of training (each round, then the mean); wall/train = whole `sweep.run` / training.",
        "",
        C.md_table(table(rows)),
        "",
        "| ratio | value |",
        "| --- | --- |",
        *[f"| {k} | {v:.2f} |" for k, v in doc["ratios"].items()],
        f"| second process compile / first | {compile_times['second']:.2f} s / {compile_times['first']:.2f} s "
        f"= {compile_times['second'] / max(compile_times['first'], 1e-9):.2f} |",
    ]
    if scan:
        df = pd.DataFrame(scan).groupby(["workload", "models_per_device"])[
            "model_epochs_per_second"
        ]
        md += [
            "",
            "Models per device (this tree, 2 devices), model-epochs/s, mean over rounds:",
            "",
        ]
        md += [C.md_table(df.agg(["mean", "min", "max"]).reset_index())]
    C.files.write_text(out / "engine_ab.md", "\n".join(md) + "\n")
    print("\n".join(md))
    print(f"wrote {out / name} and {out / 'engine_ab.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(C.run_script("engine_ab", main))

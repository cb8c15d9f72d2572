"""The ``jinit`` command line: argument parsing and one-line errors only.

Every subcommand is a thin layer over the library. Each one registers itself through an
``_add_<name>(subparsers)`` function below, which sets ``func`` to the function that runs it.
Bad input raised by the library (``ValueError``, ``TypeError``, ``OSError``) becomes one line on
stderr and exit code 2, never a traceback. The library's notices (logger ``jinit``: resuming a
sweep, a stale lock taken over, ...) are printed on stderr as ``jinit <command>: ...``. An
interrupted sweep (SIGINT, SIGTERM) prints what was saved and the command that resumes it, and
exits with 128 + the signal number (130, 143) at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from jinit import __version__


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (``jinit <command>: error: ...``, exit code 2),
    like every other bad input; ``--help`` still prints the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jinit",
        description="Weight initializers for JAX/Flax and a vmapped seed-sweep engine.",
    )
    parser.add_argument("--version", action="version", version=f"jinit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


# Each entry adds one subcommand (see the module docstring).
_SUBCOMMANDS: list = []


def _add_schemes(sub) -> None:
    p = sub.add_parser(
        "schemes",
        help="list the initializer catalogue",
        description="Print the initializer catalogue: name, aliases, distribution, variance "
        "formula, defaults, and which kernels each scheme applies to.",
    )
    p.add_argument(
        "--applies-to",
        choices=("any", "2d", "conv"),
        default=None,
        help="only schemes for this kind of kernel",
    )
    p.set_defaults(func=_run_schemes)


def _run_schemes(args) -> int:
    from jinit import registry

    rows = registry.catalog()
    if args.applies_to is not None:
        rows = [r for r in rows if r.applies_to == args.applies_to]
    print(registry.format_catalog(rows))
    if args.applies_to in (None, "any"):
        from jinit import propagation

        print(
            f"\ndata-dependent, for sweeps only: {propagation.lsuv_scheme()!r}\n"
            "  LSUV (Mishkin & Matas 2015): kernel_init, then each Dense/Conv kernel rescaled until its "
            "output std is target_std on a fixed batch of training data"
        )
    return 0


_SUBCOMMANDS.append(_add_schemes)


def _add_data(sub) -> None:
    p = sub.add_parser(
        "data",
        help="load a dataset and print what was found",
        description="Load a dataset (mnist, fashion_mnist, cifar10, digits, mnist1d) and print "
        "its source, sizes, shapes, class balance and input statistics. mnist/fashion_mnist are "
        "read from a folder of IDX files (--data-dir or JINIT_DATA_DIR), else from a copy "
        "prepared by tensorflow-datasets (TFDS_DATA_DIR); digits and mnist1d work offline.",
    )
    p.add_argument("name", help="dataset name")
    p.add_argument(
        "--data-dir", default=None, help="folder with the IDX files (or a TFDS data dir)"
    )
    p.add_argument(
        "--source",
        choices=("auto", "idx", "tfds", "sklearn", "mnist1d"),
        default="auto",
        help="where to load from (default auto: IDX files, then tensorflow-datasets)",
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.set_defaults(func=_run_data)


def _run_data(args) -> int:
    import time

    from jinit import data

    t0 = time.perf_counter()
    ds = data.load(args.name, data_dir=args.data_dir, source=args.source, cache=not args.no_cache)
    seconds = time.perf_counter() - t0
    d = data.describe(ds)
    print(f"dataset  {d['name']} ({d['num_classes']} classes)")
    print(f"source   {d['source']}" + (" (from cache)" if d["from_cache"] else ""))
    print(
        f"train    {d['num_train']} x {d['input_shape']} {ds.x_train.dtype}, labels {ds.y_train.dtype}"
    )
    print(f"test     {d['num_test']} x {d['input_shape']}")
    print(
        f"inputs   mean {d['mean']:.4f}  std {d['std']:.4f}  min {d['min']:.4g}  max {d['max']:.4g}"
    )
    for split in ("train", "test"):
        counts = " ".join(f"{c}:{n}" for c, n in enumerate(d[f"{split}_counts"]))
        print(f"classes  {split:<5} {counts}")
    print(f"time     {seconds:.3f} s")
    return 0


_SUBCOMMANDS.append(_add_data)


_SWEEP_FLAGS = (
    # (flag, config field, parser of the text, help)
    (
        "--dataset",
        "dataset",
        str,
        "digits (embedded, offline), mnist, fashion_mnist, cifar10, mnist1d, or any dataset "
        "tensorflow-datasets has prepared locally (tfds build NAME --file_format=array_record)",
    ),
    ("--data-dir", "data_dir", str, "folder with the dataset's files (e.g. MNIST's IDX files)"),
    ("--model", "model", str, "mlp or cnn"),
    ("--hidden", "hidden", "ints", "MLP hidden widths, comma-separated (default 128,64)"),
    ("--channels", "channels", "ints", "CNN channels, comma-separated (default 32,64)"),
    ("--activation", "activation", str, "relu, tanh, sigmoid, gelu, selu, leaky_relu, linear"),
    (
        "--schemes",
        "schemes",
        str,
        "comma-separated initializer specs, e.g. "
        "zeros,glorot_uniform,he_normal,'normal(stddev=0.1)'; 'all' = every scheme that applies, each "
        "distribution once (keras_default, flax_default, variance_scaling, kaiming_uniform and xavier_uniform "
        "draw the same arrays as glorot_uniform, lecun_normal, he_uniform: left out)",
    ),
    ("--bias-init", "bias_init", str, "initializer of every bias (default zeros)"),
    ("--seeds", "seeds", int, "seeds per scheme (default 5)"),
    ("--seed", "seed", int, "root seed (default 0)"),
    ("--epochs", "epochs", int, "training epochs (default 10)"),
    ("--batch-size", "batch_size", int, "batch size (default 32)"),
    ("--optimizer", "optimizer", str, "adam, sgd, momentum, adamw, rmsprop (default adam)"),
    (
        "--lr",
        "learning_rate",
        "floats",
        "learning rate (default 1e-3), or comma-separated values: a grid axis trained by the same compiled "
        "program, e.g. 1e-4,3e-4,1e-3; also --learning-rate",
    ),
    (
        "--weight-decay",
        "weight_decay",
        "floats",
        "weight decay, or comma-separated values (an axis): adamw's decoupled decay (default 1e-4), L2 added to "
        "the gradient for the other optimizers (default none)",
    ),
    (
        "--init-scale",
        "init_scale",
        "floats",
        "multiplier on every kernel's initial values, or comma-separated values (an axis); default 1",
    ),
    (
        "--compute-dtype",
        "compute_dtype",
        "strs",
        "dtype of the activations and matmuls: float32 (default) or bfloat16 (parameters stay float32), or "
        "float32,bfloat16: a precision dimension, one compiled program per value",
    ),
    (
        "--state-dtype",
        "state_dtype",
        "strs",
        "dtype the optimizer's moments are stored in: float32 (default) or bfloat16, or float32,bfloat16 (a "
        "precision dimension)",
    ),
    ("--vary", "vary", str, "what changes with the seed: init (default), data, both"),
    ("--eval-every", "eval_every", int, "also evaluate every N steps within each epoch"),
    ("--target-accuracy", "target_accuracy", float, "accuracy (fraction) for steps-to-target"),
    ("--train-size", "train_size", int, "use only the first N training examples"),
    ("--test-size", "test_size", int, "use only the first N test examples"),
    (
        "--val-size",
        "val_size",
        int,
        "hold out N training examples (after --train-size) as a validation set, evaluated beside the test set "
        "(val_* columns); the same examples for every model, drawn from --seed",
    ),
    (
        "--val-fraction",
        "val_fraction",
        float,
        "or hold out this fraction of the training examples as the validation set",
    ),
    ("--max-models-per-chunk", "max_models_per_chunk", int, "cap on models trained at once"),
    (
        "--max-memory",
        "max_memory",
        "bytes",
        "memory budget per device for a chunk, e.g. 2GiB, 500MB",
    ),
    (
        "--eval-batch-size",
        "eval_batch_size",
        int,
        "test batch size of the evaluation (default 1000)",
    ),
    (
        "--models-per-device",
        "models_per_device",
        int,
        "models each compiled program trains at once on one device (default: from the model size "
        "and the device kind); part of the models' arithmetic, unlike the layout flags",
    ),
)

_BYTE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def _parse_flag(flag: str, kind, text: str):
    import re

    if kind is str:
        return text
    try:
        if kind == "strs":  # one value, or a precision dimension
            items = [t.strip() for t in text.split(",")]
            if not all(items):
                raise ValueError
            return items[0] if len(items) == 1 else tuple(items)
        if kind == "ints":
            items = [t.strip() for t in text.split(",")]
            if not all(items):
                raise ValueError
            return tuple(int(t) for t in items)
        if kind == "floats":  # one value, or a grid axis
            items = [t.strip() for t in text.split(",")]
            if not all(items):
                raise ValueError
            values = tuple(float(t) for t in items)
            return values[0] if len(values) == 1 else values
        if kind == "bytes":
            m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
            if not m or m.group(2).lower() not in _BYTE_UNITS:
                raise ValueError
            value = float(m.group(1)) * _BYTE_UNITS[m.group(2).lower()]
            if not value < 2**63:  # inf (1e999), or more bytes than any machine has
                raise ValueError
            return int(value)
        return kind(text)
    except ValueError:
        want = {
            "ints": "comma-separated integers",
            "strs": "comma-separated names",
            "floats": "comma-separated numbers" if "," in text else "a number",
            "bytes": "a size such as 2GiB or 500MB (below 2**63 bytes)",
            int: "an integer",
            float: "a number",
        }[kind]
        raise ValueError(f"{flag} expects {want}, got {text!r}") from None


def _add_sweep(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="train every (scheme, seed) model at once and summarize",
        description="Train a grid of initialization schemes x seeds in one compiled, vmapped program, "
        "print the per-scheme summary (mean accuracy with 95% CI over seeds) and write a run folder. "
        "With no arguments: a quick sweep on the embedded digits dataset. Interrupted (Ctrl-C, SIGTERM, "
        "a crash), the same command with the same --out continues where it stopped; a folder holding the "
        "same sweep, complete, is read back without training.",
    )
    for flag, field, _, help_text in _SWEEP_FLAGS:
        extra = ("--learning-rate",) if field == "learning_rate" else ()
        p.add_argument(flag, *extra, dest=field, default=None, metavar="VALUE", help=help_text)
    p.add_argument(
        "--task",
        default=None,
        metavar="TASK",
        help="classification (default for the named datasets: softmax over the classes), binary (one logit, "
        "labels 0/1) or regression (mean squared error; reported as R^2 and RMSE)",
    )
    p.add_argument("--out", default=None, help="run folder (default runs/<timestamp>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--save-params",
        action="store_true",
        help="also write the final parameters of every model into the run folder (params/, one .npz per "
        "chunk); jinit.sweep.load(RUN).params reads them back, stacked in the order of models.csv",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the sweep found in --out when it differs from this one (or train a complete one "
        "again); without it such a folder is refused",
    )
    p.add_argument(
        "--checkpoint-every",
        default=None,
        metavar="SECONDS",
        help="checkpoint the training state of the running chunk at an epoch boundary at most every that "
        "many seconds (default 60; 0: every epoch; 'never': whole chunks only)",
    )
    _add_distributed_flags(p)
    p.add_argument(
        "--check-determinism",
        action="store_true",
        help="do not sweep: train the first 2 models of the grid twice and alone, and report whether the two "
        "runs are bitwise identical and how far the vmapped models are from the ones trained alone",
    )
    p.set_defaults(func=_run_sweep)


def _add_distributed_flags(p) -> None:
    g = p.add_argument_group(
        "several processes and hosts",
        "Every process runs the same command with the same --out, on a filesystem all of them share (see the "
        "README). Under srun (Slurm), mpirun (Open MPI) or on a TPU pod slice nothing needs to be added: JAX "
        "detects the processes.",
    )
    g.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="address of process 0, where it serves JAX's coordination service (default: "
        "$JAX_COORDINATOR_ADDRESS, else detected)",
    )
    g.add_argument(
        "--num-processes", default=None, metavar="N", help="number of processes (default: detected)"
    )
    g.add_argument(
        "--process-id",
        default=None,
        metavar="I",
        help="index of this process, 0..N-1 (default: detected)",
    )
    g.add_argument(
        "--distributed",
        choices=("auto", "on", "off"),
        default="auto",
        help="join a multi-process run: auto (default) when one of the flags above or JAX_COORDINATOR_ADDRESS is "
        "given or srun / mpirun / a TPU pod slice started several processes; on: always (JAX detects the rest); "
        "off: never",
    )
    g.add_argument(
        "--distributed-timeout",
        default=None,
        metavar="SECONDS",
        help="how long to wait for the coordinator and every process to join, and for process 0 to prepare "
        "the run folder (default 300)",
    )
    g.add_argument(
        "--heartbeat-timeout",
        default=None,
        metavar="SECONDS",
        help="a process silent that long (killed, its host lost) is declared dead by JAX, which then stops every "
        "other process; rerun the command to resume (default: JAX's, 100)",
    )


def _join_distributed(args) -> float | None:
    """Joins a multi-process run when asked (flags, JAX_COORDINATOR_ADDRESS, a launcher JAX detects); before
    anything starts JAX's backends. Returns JAX's heartbeat timeout in seconds when it joined one, else None."""
    import math

    from jinit import distributed

    given = {
        "--num-processes": args.num_processes,
        "--process-id": args.process_id,
    }
    ints = {}
    for flag, text in given.items():
        if text is not None:
            ints[flag] = _parse_flag(flag, int, text)
    seconds = {}
    for flag, text, ok, want in (
        ("--distributed-timeout", args.distributed_timeout, lambda v: v > 0, "> 0"),
        ("--heartbeat-timeout", args.heartbeat_timeout, lambda v: v >= 1, ">= 1"),
    ):
        if text is None:
            continue
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (math.isfinite(value) and ok(value)):
            raise ValueError(f"{flag} expects seconds {want}, got {text!r}")
        seconds[flag] = value
    timeout = seconds.get("--distributed-timeout", distributed.DEFAULT_TIMEOUT)
    if args.coordinator is not None:
        distributed.check_coordinator(args.coordinator)
    asked = args.coordinator is not None or bool(ints)
    if args.distributed == "off":
        if asked:
            raise ValueError(
                "--distributed off cannot be combined with --coordinator, --num-processes or --process-id"
            )
        return None
    if args.distributed == "auto" and not asked and distributed.launch_detected() is None:
        return None
    distributed.initialize(
        args.coordinator,
        ints.get("--num-processes"),
        ints.get("--process-id"),
        timeout=timeout,
        heartbeat_timeout=seconds.get("--heartbeat-timeout"),
        exit_prefix="jinit sweep",
    )
    return seconds.get("--heartbeat-timeout", distributed.DEFAULT_HEARTBEAT_TIMEOUT)


def _watch_peers(args, out, heartbeat_timeout: float):
    """In a multi-process run: when another process stops (killed, its host lost), end this one with one line
    that names it and says how to resume, before JAX's coordination service aborts it (exit code 1; the chunks
    written so far stay in the run folder)."""
    import jax

    from jinit import distributed

    count = jax.process_count()

    def stopped(pid: int) -> None:
        who = "the coordinator, process 0," if pid == 0 else f"process {pid}"
        print(
            f"jinit sweep: error: {who} of {count} stopped answering (killed, or its host lost); the chunks written "
            f"so far are kept in {out}: to resume, run the same command in every process again: "
            f"{_resume_command(args, out)}",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)

    return distributed.PeerWatch(stopped, grace=max(1.0, heartbeat_timeout / 2)).start()


def _checkpoint_every(text: str | None) -> float | None:
    import math

    if text is None:
        return 60.0
    if text.strip().lower() in ("never", "none", "off"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"--checkpoint-every expects seconds >= 0 or 'never', got {text!r}")
    return value


def _sweep_config(args):
    from jinit import sweep

    kw = {}
    for flag, field, kind, _ in _SWEEP_FLAGS:
        text = getattr(args, field, None)
        if text is not None:
            kw[field] = _parse_flag(flag, kind, text)
    config = sweep.SweepConfig(**kw)
    config.validate()
    return config


def _resume_command(args, out) -> str:
    """The command that continues an interrupted sweep: the given flags (canonical spelling), --out, never
    --overwrite."""
    import shlex

    argv = ["jinit", "sweep"]
    for flag, field, _, _ in _SWEEP_FLAGS:
        if getattr(args, field, None) is not None:
            argv += [flag, getattr(args, field)]
    if getattr(args, "task", None) is not None:
        argv += ["--task", args.task]
    argv += ["--out", str(out)]
    if args.checkpoint_every is not None:
        argv += ["--checkpoint-every", args.checkpoint_every]
    for flag in (
        "coordinator",
        "num_processes",
        "process_id",
        "distributed_timeout",
        "heartbeat_timeout",
    ):
        if getattr(args, flag, None) is not None:
            argv += ["--" + flag.replace("_", "-"), getattr(args, flag)]
    if getattr(args, "distributed", "auto") != "auto":
        argv += ["--distributed", args.distributed]
    if args.no_progress:
        argv.append("--no-progress")
    if getattr(args, "save_params", False):
        argv.append("--save-params")
    return shlex.join(argv)


def _run_check_determinism(config) -> int:
    from jinit import report, sweep

    r = sweep.check_determinism(config)
    print(report.determinism(r))
    return 0 if r.bitwise_identical and r.layout_identical else 1


def _run_sweep(args) -> int:
    import time
    from pathlib import Path

    config = _sweep_config(args)
    if getattr(args, "task", None) is not None:  # a bad name: one line, before anything runs
        from jinit import train

        train.make_task(args.task)
    checkpoint_every = _checkpoint_every(args.checkpoint_every)
    heartbeat_timeout = _join_distributed(args)
    if args.check_determinism:
        return _run_check_determinism(config)
    out = args.out
    if out is not None and not out.strip():
        raise ValueError("--out expects a folder, got an empty name")
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out, i = Path("runs") / stamp, 1
        while out.exists():
            out, i = Path("runs") / f"{stamp}-{i}", i + 1
    from jinit import report, sweep

    watch = None if heartbeat_timeout is None else _watch_peers(args, out, heartbeat_timeout)
    try:
        result = sweep.run(
            config,
            out=out,
            progress=not args.no_progress,
            overwrite=args.overwrite,
            checkpoint_every=checkpoint_every,
            save_params=args.save_params,
            task=getattr(args, "task", None),
        )
    except sweep.SweepInterrupted as e:
        print(f"jinit sweep: {e}", file=sys.stderr)
        print(f"jinit sweep: to resume, run: {_resume_command(args, out)}", file=sys.stderr)
        raise
    finally:
        if watch is not None:
            watch.done()
    print(report.run_line(result))
    print(report.summary(result))
    print(f"run folder: {out}  (plots: jinit report {out})")
    return 0


_SUBCOMMANDS.append(_add_sweep)


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="print a run's summary and write its plots",
        description="Print the per-scheme summary of a finished run folder and write "
        "accuracy_curves.png and final_accuracy.png into it.",
    )
    p.add_argument("run", help="a run folder written by jinit sweep")
    p.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        default=None,
        help="compare two schemes: difference of mean accuracy (A - B) with 95%% CI, t-test and rank-test "
        "p-values, P(A > B) with its interval, the detectable difference (paired by seed only under "
        "vary=data/both)",
    )
    p.add_argument(
        "--tune",
        default=None,
        metavar="AXIS",
        help="for each scheme, the value of AXIS (learning_rate, weight_decay, init_scale) with the best mean "
        "validation accuracy, and the test accuracy there with its 95%% CI (--tune-on names another column "
        "to choose on, e.g. final_accuracy: the test set, then biased)",
    )
    p.add_argument(
        "--tune-on",
        default=None,
        metavar="COLUMN",
        help="the models.csv column the --tune choice is made on (default final_val_accuracy)",
    )
    p.set_defaults(func=_run_report)


def _run_report(args) -> int:
    from jinit import plots, report, sweep
    from jinit.sweep import folder as folder_lib

    result = sweep.load(args.run)
    if getattr(args, "compare", None):  # unknown names fail here, before anything is printed
        from jinit import metrics

        for name in args.compare:
            metrics.scheme_accuracies(result.models, name, column=f"final_{result.metric}")
    tuned = None
    if getattr(
        args, "tune", None
    ):  # a bad axis or a missing validation column fails before printing
        tuned = result.tune(args.tune, on=args.tune_on)
    print(report.summary(result))
    if getattr(args, "compare", None):
        print("\n" + report.comparison(result, *args.compare))
    if tuned is not None:
        print("\n" + report.tuned(tuned, args.tune))
    folder_lib.check_replaceable(args.run, plots.figure_names(result))  # never over a file of yours
    paths = plots.save_all(result, args.run)
    folder_lib.record_files(args.run, [p.name for p in paths])
    for path in paths:
        print(f"wrote {path}")
    return 0


_SUBCOMMANDS.append(_add_report)


def _add_propagate(sub) -> None:
    p = sub.add_parser(
        "propagate",
        help="per-layer signal statistics of a deep MLP at initialization",
        description="Measure, in one vmapped pass over a fixed Gaussian batch, the per-layer std of "
        "activations, gradient norms and dead units of a deep MLP for several schemes x seeds; print a "
        "per-layer table (mean over seeds) and write a PNG plot (log scale, band over seeds) and a CSV.",
    )
    p.add_argument("--depth", type=int, default=50, help="hidden layers (default 50)")
    p.add_argument("--width", type=int, default=512, help="units per hidden layer (default 512)")
    p.add_argument(
        "--activation", default="tanh", help="relu, tanh, sigmoid, gelu, selu, leaky_relu, linear"
    )
    p.add_argument(
        "--schemes",
        default="normal,glorot_normal,orthogonal",
        help="comma-separated initializer specs (default normal,glorot_normal,orthogonal)",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per scheme (default 3)")
    p.add_argument(
        "--batch", type=int, default=256, help="examples in the Gaussian input batch (default 256)"
    )
    p.add_argument("--seed", type=int, default=0, help="root seed (default 0)")
    p.add_argument(
        "--every", type=int, default=None, help="print every k-th layer (default: about 10 rows)"
    )
    p.add_argument(
        "--jacobian",
        action="store_true",
        help="also print the singular values of the input-output Jacobian (4 examples)",
    )
    p.add_argument(
        "--out", default=".", help="folder for propagation.png and propagation.csv (default .)"
    )
    p.set_defaults(func=_run_propagate)


def _run_propagate(args) -> int:
    from pathlib import Path

    import pandas as pd

    from jinit import files, propagation
    from jinit.sweep import folder as folder_lib

    # Everything that can be checked without computing is checked first (one line, exit 2).
    if args.every is not None and args.every < 1:
        raise ValueError(f"--every expects a positive integer, got {args.every}")
    if args.seed < 0:
        raise ValueError(f"--seed expects an integer >= 0, got {args.seed}")
    if not args.out.strip():
        raise ValueError("--out expects a folder, got an empty name")
    folder_lib.check_writable(args.out)
    kw = dict(
        depth=args.depth,
        width=args.width,
        activation=args.activation,
        seeds=args.seeds,
        seed=args.seed,
    )
    df = propagation.measure(args.schemes, batch=args.batch, **kw)
    every = args.every if args.every is not None else max(1, args.depth // 10)
    with pd.option_context("display.width", 200, "display.max_columns", 40):
        print(propagation.table(df, every=every).to_string(float_format=lambda v: f"{v:.3g}"))
    if args.jacobian:
        sv = propagation.jacobian_singular_values(args.schemes, **kw)
        print("\nsingular values of d act_last / d x:")
        print(propagation.jacobian_summary(sv).to_string(float_format=lambda v: f"{v:.3g}"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files.write_csv(out / "propagation.csv", df)
    fig = propagation.plot(df, stat=("act_std", "grad_norm"))
    try:
        files.save_figure(out / "propagation.png", fig)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    print(f"wrote {out / 'propagation.png'} and {out / 'propagation.csv'}")
    return 0


_SUBCOMMANDS.append(_add_propagate)


def _add_transfer(sub) -> None:
    p = sub.add_parser(
        "transfer",
        help="does the best learning rate transfer across width (and depth)? a verdict with statistics",
        description="Train the learning-rate grid x seeds at every width (and depth) under a parameterization "
        "(one compiled program per shape), fit log2(best learning rate) against log2(width) with a bootstrap "
        "interval over seeds, and print a verdict per axis: transfers, drifts or inconclusive "
        "(jinit.transfer.check). --smoke: a seconds-long check on digits (not a result).",
    )
    p.add_argument("--model", choices=("mlp", "resmlp"), default="mlp",
                   help="mlp: hidden=(w, w); resmlp: pre-activation ResidualMLP(w, depth), one layer per block")  # fmt: skip
    p.add_argument("--widths", default=None, help="comma-separated widths (default 32,64,128,256)")
    p.add_argument(
        "--depths", default=None, help="comma-separated depths (resmlp only; default: 4 only)"
    )
    p.add_argument(
        "--lrs", default=None, help="comma-separated learning rates (default 2^-12 ... 2^-3)"
    )
    p.add_argument("--parameterization", default="mup",
                   help="sp, mup, sp_per_layer_lr or depth_mup (default mup)")  # fmt: skip
    p.add_argument("--seeds", type=int, default=None, help="seeds per learning rate (default 8)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 10)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--dataset", default="digits", help="dataset name (default digits)")
    p.add_argument(
        "--train-size", type=int, default=None, help="use only this many training examples"
    )
    p.add_argument("--metric", default="val_loss", help="val_loss or train_loss (default val_loss)")
    p.add_argument("--optimizer", default="adam", help="adam or adamw (default adam)")
    p.add_argument(
        "--tolerance", type=float, default=None, help="band of slopes that transfer (0.25)"
    )
    p.add_argument(
        "--out", default=None, help="folder: one run folder per shape, tables, report.md"
    )
    p.add_argument("--no-coords", action="store_true", help="skip the coordinate check")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--overwrite", action="store_true", help="replace run folders holding other sweeps"
    )
    p.add_argument("--smoke", action="store_true",
                   help="digits, 256 images, widths 16,32,64, 7 learning rates, 2 seeds, 2 epochs")  # fmt: skip
    p.set_defaults(func=_run_transfer)


def _run_transfer(args) -> int:
    import pandas as pd

    from jinit import models, transfer

    widths = _parse_flag(
        "--widths", "ints", args.widths or ("16,32,64" if args.smoke else "32,64,128,256")
    )
    depths = _parse_flag("--depths", "ints", args.depths) if args.depths else None
    if depths and args.model != "resmlp":
        raise ValueError("--depths needs --model resmlp (a residual network)")
    if args.lrs:
        lrs = _parse_flag("--lrs", "floats", args.lrs)
        lrs = lrs if isinstance(lrs, tuple) else (lrs,)
    else:
        lrs = tuple(2.0**k for k in (range(-10, -3) if args.smoke else range(-12, -2)))
    if args.model == "mlp":
        make = lambda w: models.factory("mlp", hidden=(w, w))  # noqa: E731
    elif depths:
        make = lambda w, d: models.factory("resmlp", width=w, depth=d, preact=True, branch_layers=1)  # noqa: E731
    else:
        make = lambda w: models.factory("resmlp", width=w, depth=4, preact=True, branch_layers=1)  # noqa: E731
    result = transfer.check(
        make,
        widths=widths,
        depths=depths,
        learning_rates=lrs,
        parameterization=args.parameterization,
        seeds=args.seeds or (2 if args.smoke else 8),
        epochs=args.epochs or (2 if args.smoke else 10),
        batch_size=args.batch_size,
        data=args.dataset,
        train_size=args.train_size or (256 if args.smoke else None),
        metric=args.metric,
        optimizer=args.optimizer,
        tolerance=args.tolerance if args.tolerance is not None else transfer.DEFAULT_TOLERANCE,
        out=args.out,
        coords=not args.no_coords,
        n_boot=500 if args.smoke else 4000,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    cols = [c for c in ("width", "depth") if c in result.optima.columns]
    view = result.optima[cols + ["best_lr", "optimum_lr", "optimum_ci_low", "optimum_ci_high", "at_edge",
                                 "loss_at_best", "lr_sensitivity", "diverged"]]  # fmt: skip
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(view.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for v in result.verdict.values():
        print(f"{v.axis}: {v.verdict} -- {v.reason}")
    if args.smoke:
        print("(smoke run: 2 seeds, 2 epochs on 256 images; not a result)")
    if result.path is not None:
        print(f"wrote {result.path / 'report.md'}")
    return 0


_SUBCOMMANDS.append(_add_transfer)


class _StderrHandler(logging.Handler):
    """Prints the library's notices (resuming, a stale lock taken over, ...) as ``jinit <command>: ...`` lines on
    the stderr of the moment."""

    def __init__(self, command: str):
        super().__init__(logging.INFO)
        self.command = command

    def emit(self, record: logging.LogRecord) -> None:
        print(f"jinit {self.command}: {record.getMessage()}", file=sys.stderr)


class _MainThreadOnly:
    """A stream that passes on what Python's threads write and sends to the debug log what threads started outside
    Python write (tensorstore's, whose tracebacks after a failed orbax write would bury the one-line error)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        import threading

        if not isinstance(threading.current_thread(), threading._DummyThread):
            return self._stream.write(text)
        logging.getLogger("jinit").debug("background output: %s", text.rstrip())
        return len(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _exit_now(code: int) -> None:
    """Ends the process after a reported error without running the interpreter's shutdown, where the background
    tasks of a failed orbax write (disk full, ...) would print their tracebacks after the one-line error. Every
    file jinit writes is complete or a temporary file, which the next sweep removes. Not in a process group
    (``jax.distributed``): its shutdown at exit tells the other processes, which would otherwise abort."""
    jax = sys.modules.get("jax")
    if jax is not None and jax.distributed.is_initialized():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


#: The address space (``ulimit -v``) below which a ``jinit`` command does not start: JAX, XLA's CPU client and its
#: threads reserve about 2 GB of it; under that the process dies in native code (SIGABRT, SIGSEGV) or hangs.
MIN_ADDRESS_SPACE = 2 << 30


def _check_address_space() -> None:
    """A ValueError (one line, exit 2) when the address-space limit is below :data:`MIN_ADDRESS_SPACE`; checked
    before JAX is imported, so nothing has started or been written."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):
        return
    if soft != resource.RLIM_INFINITY and soft < MIN_ADDRESS_SPACE:
        raise ValueError(
            f"the address-space limit (ulimit -v) is {soft // 2**20} MiB, below the "
            f"{MIN_ADDRESS_SPACE // 2**20} MiB JAX and XLA's CPU threads need to start; raise it (ulimit -v "
            f"{MIN_ADDRESS_SPACE // 1024} or more) or remove it"
        )


def _one_line(e: BaseException | str) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 2000 else text[:2000] + " ..."


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit code (0 ok, 1 a check failed, 2 bad input, 128 + signal number
    when interrupted). Called with ``argv=None`` it is the process (the ``jinit`` script): an interrupted sweep
    then exits at once, without waiting for the epoch still running on the device."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (one line printed): its exit code
        return e.code if isinstance(e.code, int) else 2
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:  # before JAX is imported: nothing has started or been written
        _check_address_space()
    except ValueError as e:
        print(f"jinit {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    if argv is None and args.command in ("sweep", "propagate", "transfer"):
        # The process: on a CPU, one JAX device per core trains the model axis on every core at once
        # (jinit.sweep.use_cpu_devices; JAX_NUM_CPU_DEVICES overrides). Not done for an in-process call, which
        # must not change the devices of the program that called it.
        from jinit.sweep import use_cpu_devices

        use_cpu_devices()
    if argv is None and args.command in ("report", "propagate", "transfer"):
        # The process only writes figures to files: no window, no display needed (an in-process call, e.g. from
        # a notebook, keeps its backend).
        from jinit.plots import use_file_backend

        use_file_backend()
    logger = logging.getLogger("jinit")
    handler = _StderrHandler(args.command)
    logger.addHandler(handler)
    # Printed once, by this handler: not again by a handler on the root logger (absl, which orbax loads, or a
    # library's logging.basicConfig would print every notice a second time as "INFO:jinit.sweep: ...").
    propagate, logger.propagate = logger.propagate, False
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    # Tracebacks that background threads print (tensorstore's, after a failed orbax write: "Event loop is
    # closed", through sys.excepthook or straight to sys.stderr) would bury the one-line error: they go to the
    # debug log instead. Everything this command prints comes from threads that Python started.
    excepthook, stderr = sys.excepthook, sys.stderr
    sys.excepthook = lambda *exc: logger.debug("background error: %s", exc[1])
    sys.stderr = _MainThreadOnly(stderr)
    try:
        if args.command not in ("sweep", "transfer"):
            return int(args.func(args) or 0)
        # SIGINT / SIGTERM from now on end the command with one line and 130 / 143 (inside the sweep, with what
        # was saved and how to resume)
        from jinit.sweep.signals import SignalGuard

        with SignalGuard():
            return int(args.func(args) or 0)
    except KeyboardInterrupt as e:
        signum = int(getattr(e, "signum", 2))
        code = getattr(e, "exit_code", 128 + signum)
        if (
            hasattr(e, "exit_code") and args.command == "transfer"
        ):  # the sweep of one shape was interrupted
            again = (
                "; the same command continues from it"
                if getattr(e, "path", None) is not None
                else ""
            )
            print(f"jinit transfer: {e}{again}", file=sys.stderr)
        elif not hasattr(e, "exit_code"):
            import signal

            try:
                name = signal.Signals(signum).name
            except ValueError:
                name = f"signal {signum}"
            print(
                f"jinit {args.command}: interrupted by {name}: nothing was saved", file=sys.stderr
            )
        if argv is None:  # the process: do not wait for the computation still running on the device
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except (ValueError, TypeError, OSError, ImportError, MemoryError) as e:
        print(f"jinit {args.command}: error: {_one_line(e)}", file=sys.stderr)
        if argv is None:
            _exit_now(2)
        return 2
    except Exception as e:
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        print(
            f"jinit {args.command}: error: out of device memory ({_one_line(e)[:300]}); the chunks done are "
            "kept: rerun with a smaller --max-memory or --max-models-per-chunk (and --overwrite, since the "
            "chunk size changes)",
            file=sys.stderr,
        )
        if argv is None:
            _exit_now(1)
        return 1
    finally:
        sys.excepthook = excepthook
        if isinstance(sys.stderr, _MainThreadOnly):
            sys.stderr = stderr
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``jinit`` command line: argument parsing and one-line errors only.

Every subcommand is a thin layer over the library. Each one registers itself through an
``_add_<name>(subparsers)`` function below, which sets ``func`` to the function that runs it.
Bad input raised by the library (``ValueError``, ``TypeError``, ``OSError``) becomes one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from jinit import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    p.add_argument("--data-dir", default=None, help="folder with the IDX files (or a TFDS data dir)")
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
    print(f"train    {d['num_train']} x {d['input_shape']} {ds.x_train.dtype}, labels {ds.y_train.dtype}")
    print(f"test     {d['num_test']} x {d['input_shape']}")
    print(f"inputs   mean {d['mean']:.4f}  std {d['std']:.4f}  min {d['min']:.4g}  max {d['max']:.4g}")
    for split in ("train", "test"):
        counts = " ".join(f"{c}:{n}" for c, n in enumerate(d[f"{split}_counts"]))
        print(f"classes  {split:<5} {counts}")
    print(f"time     {seconds:.3f} s")
    return 0


_SUBCOMMANDS.append(_add_data)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("jinit: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as e:
        print(f"jinit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

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

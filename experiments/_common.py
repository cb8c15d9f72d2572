"""What every experiment script shares: its command line, where data and results go, and report formatting.

The studies themselves are thin: they build :class:`jinit.sweep.SweepConfig` values, call :func:`jinit.sweep.run`,
and turn :func:`jinit.metrics` numbers into markdown. Nothing here trains or computes a statistic.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jinit import files

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "experiments" / "results"
#: The real MNIST beside the checkout on development machines (see tests/conftest.py).
SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"


def default_data_dir() -> str | None:
    """``$JINIT_DATA_DIR``, else ``../shared/data/mnist`` next to the repository when it exists, else None
    (then :func:`jinit.data.load` tries tensorflow-datasets and says what it tried)."""
    env = os.environ.get("JINIT_DATA_DIR")
    if env:
        return env
    return str(SHARED_MNIST) if SHARED_MNIST.is_dir() else None


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """The flags every study has: ``--smoke``, ``--data-dir``, ``--out``, ``--seeds``, ``--epochs``,
    ``--report-only`` and ``--no-progress``."""
    p = argparse.ArgumentParser(
        prog=f"experiments/{name}.py",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny data (embedded digits or a small subset), 2 seeds, 1 epoch: seconds; for tests",
    )
    p.add_argument(
        "--data-dir",
        default=default_data_dir(),
        help="folder with the MNIST IDX files ($JINIT_DATA_DIR, else ../shared/data/mnist)",
    )
    p.add_argument(
        "--out",
        default=None,
        help=f"results folder (default experiments/results/{name}/; with --smoke {smoke_dir(name)})",
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="seeds per scheme (overrides the default)"
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs (overrides the default)")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="do not train: rebuild report.md and the figures from the run folder(s) already in --out",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace run folders in --out that hold a different sweep (else they are refused; a run folder "
        "holding the same sweep is resumed, or read back when complete)",
    )
    return p


def smoke_dir(name: str) -> Path:
    """Where ``--smoke`` without ``--out`` writes: a scratch folder under the system's temporary directory
    (``$TMPDIR/jinit-smoke/NAME``), never the committed ``experiments/results/NAME/``."""
    return Path(tempfile.gettempdir()) / "jinit-smoke" / name


def out_dir(args: argparse.Namespace, name: str) -> Path:
    """The study's results folder (created): ``--out``, else :func:`smoke_dir` for ``--smoke`` (a scratch folder:
    its run folders are replaced when the smoke flags change), else ``experiments/results/NAME/``."""
    if args.out:
        path = Path(args.out)
    elif getattr(args, "smoke", False):
        path = smoke_dir(name)
        args.overwrite = True
    else:
        path = RESULTS_DIR / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_script(name: str, main: Callable[[Sequence[str] | None], int]) -> int:
    """Runs an experiment script as a process, like the ``jinit`` command: one JAX device per CPU core
    (:func:`jinit.sweep.use_cpu_devices`, before JAX starts), matplotlib's file backend (the figures are only
    written), and bad input (``ValueError``, ``TypeError``, ``OSError``: an unknown flag value, missing data, a run
    folder holding another sweep, ...) as ONE line on stderr, ``experiments/NAME.py: error: ...``, with exit code
    2; an interrupted sweep prints what was saved and exits with 128 + the signal number."""
    from jinit import plots, sweep

    sweep.use_cpu_devices()
    plots.use_file_backend()
    try:
        return int(main(None) or 0)
    except KeyboardInterrupt as e:
        print(
            f"experiments/{name}.py: {_one_line(e) if str(e) else 'interrupted'}", file=sys.stderr
        )
        return int(getattr(e, "exit_code", 128 + int(getattr(e, "signum", 2))))
    except (ValueError, TypeError, OSError) as e:
        print(f"experiments/{name}.py: error: {_one_line(e)}", file=sys.stderr)
        return 2


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def pick(args: argparse.Namespace, field: str, full: Any, smoke: Any) -> Any:
    """``args.<field>`` when given on the command line, else the smoke or the full default."""
    value = getattr(args, field, None)
    if value is not None:
        return value
    return smoke if args.smoke else full


def run_or_load(config, folder: Path, args: argparse.Namespace, **kwargs: Any):
    """Trains ``config`` into the run folder ``folder`` (``kwargs`` go to :func:`jinit.sweep.run`), or with
    ``--report-only`` reads the folder back. An interrupted study rerun with the same flags resumes its sweeps;
    ``--overwrite`` replaces folders that hold another sweep."""
    from jinit import sweep

    if args.report_only:
        return sweep.load(folder)
    return sweep.run(
        config,
        out=folder,
        progress=not args.no_progress,
        overwrite=getattr(args, "overwrite", False),
        **kwargs,
    )


def run_child(code: str, args: Sequence[str], env: dict[str, str], what: str) -> dict[str, Any]:
    """Runs ``python -c code *args`` in a fresh process (from the temporary folder, ``env`` over this process's
    environment) and returns the JSON object its last line of output prints; a failure raises with ``what`` and
    the end of its stderr."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    if proc.returncode:
        raise RuntimeError(f"{what}: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def command_line(argv: Sequence[str] | None, script: str) -> str:
    """The command that reproduces this run (for the report)."""
    args = list(sys.argv[1:] if argv is None else argv)
    args = [a for a in args if a != "--report-only"]
    return " ".join(["python", f"experiments/{script}.py", *map(shlex.quote, args)])


# ------------------------------------------------------------------------------------------ formatting


def pct(x: float, digits: int = 2) -> str:
    """A fraction as percent without the sign (``0.9771 -> '97.71'``); ``-`` for NaN."""
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}"


def mean_pm(mean: float, low: float, high: float, digits: int = 2) -> str:
    """``'97.71 ± 0.06'`` (percent; the half-width of a symmetric CI), ``'97.71'`` when the CI is NaN."""
    if not np.isfinite(low) or not np.isfinite(high):
        return pct(mean, digits)
    return f"{pct(mean, digits)} ± {100 * (high - low) / 2:.{digits}f}"


def row_pm(row: pd.Series, digits: int = 2) -> str:
    """:func:`mean_pm` of a summary row (``acc_mean``, ``acc_ci95_low``, ``acc_ci95_high``); a deterministic scheme
    (every seed the same model) is ``'32.47 (deterministic)'``, not a zero-width interval."""
    if bool(row.get("deterministic", False)):
        return f"{pct(row['acc_mean'], digits)} (deterministic)"
    return mean_pm(row["acc_mean"], row["acc_ci95_low"], row["acc_ci95_high"], digits)


def iqm_text(row: pd.Series, digits: int = 2) -> str:
    """``'97.70 [97.61, 97.78]'``: a summary row's interquartile mean with its 95% stratified-bootstrap interval."""
    if not np.isfinite(row["acc_iqm_ci95_low"]):
        return pct(row["acc_iqm"], digits)
    return (
        f"{pct(row['acc_iqm'], digits)} [{pct(row['acc_iqm_ci95_low'], digits)}, "
        f"{pct(row['acc_iqm_ci95_high'], digits)}]"
    )


def poi_text(row: pd.Series) -> str:
    """``'0.31 [0.15, 0.50]'``: a summary row's probability of improvement over the best, with its interval."""
    if not np.isfinite(row["poi_vs_best"]):
        return "-"
    if not np.isfinite(row["poi_ci95_low"]):
        return f"{row['poi_vs_best']:.2f}"
    return f"{row['poi_vs_best']:.2f} [{row['poi_ci95_low']:.2f}, {row['poi_ci95_high']:.2f}]"


#: The three answers of the confidence set for the best (jinit.metrics.best_set), as the reports word them.
BEST, NOT_DISTINGUISHABLE, BELOW = "best", "not distinguishable from the best", "below the best"


def best_verdicts(summary: pd.DataFrame) -> dict[str, str]:
    """``{scheme: BEST | NOT_DISTINGUISHABLE | BELOW}`` from a summary (first row = best; ``in_best_set``)."""
    out = {}
    for i, (_, r) in enumerate(summary.iterrows()):
        out[str(r["scheme"])] = (
            BEST if i == 0 else NOT_DISTINGUISHABLE if r["in_best_set"] else BELOW
        )
    return out


def best_text(summary: pd.DataFrame, row: pd.Series) -> str:
    """The ``vs best`` cell of a report: ``best``, ``not distinguishable from the best at 20 seeds`` or ``below the
    best``."""
    v = best_verdicts(summary)[str(row["scheme"])]
    return (
        f"{v} at {int(row['n'] - row['diverged_count'])} seeds" if v == NOT_DISTINGUISHABLE else v
    )


def old_best_verdicts(models: pd.DataFrame) -> dict[str, str]:
    """What the statistics before issue 14 said on the same models: each scheme tested against the observed best
    by the paired t-test on seed numbers (Welch when the non-diverged seeds differed), uncorrected; p >= 0.05 (or
    untestable) was printed as "tied with the best". Returned in the words of :func:`best_verdicts`."""
    from jinit import metrics

    acc = {str(s): metrics.scheme_accuracies(models, s) for s in dict.fromkeys(models["scheme"])}
    means = {s: (a.mean() if a.size else -np.inf) for s, a in acc.items()}
    best = max(means, key=lambda s: means[s])  # first of equal means, as the stable sort did
    out = {}
    for s, a in acc.items():
        if s == best:
            out[s] = BEST
            continue
        paired = set(a.index) == set(acc[best].index)
        p = metrics.compare(acc[best], a, paired=paired).p_value
        out[s] = NOT_DISTINGUISHABLE if (np.isnan(p) or p >= 0.05) and a.size else BELOW
    return out


def changed_verdicts(new: dict[str, str], old: dict[str, str]) -> list[str]:
    """``['he_normal: not distinguishable from the best -> below the best', ...]`` for the keys in both whose
    verdict differs (in the order of ``new``)."""
    return [f"{k}: {old[k]} -> {v}" for k, v in new.items() if k in old and old[k] != v]


COMMITTED_VERDICTS = "verdicts_committed.json"


def verdict_section(out: Path, new: dict[str, str], old_same_runs: dict[str, str]) -> str:
    """The report's "Verdicts that changed" section.

    Compares ``new`` (this report's verdicts) with the verdicts of the report committed before issue 14, stored in
    ``out / verdicts_committed.json`` (the previous statistics on the previous runs; absent in a fresh folder), and
    with ``old_same_runs`` (the previous statistics applied to these same runs), so a reader sees which verdicts
    moved and whether the statistics or the new runs moved them.
    """

    lines = []
    path = Path(out) / COMMITTED_VERDICTS
    if path.is_file():
        committed = files.read_json(path)
        changed = changed_verdicts(new, committed)
        lines.append(
            "Against the committed report before issue 14 (`verdicts_committed.json`: the earlier statistics on the "
            "earlier runs): " + ("; ".join(changed) + "." if changed else "no verdict changed.")
        )
    changed = changed_verdicts(new, old_same_runs)
    lines.append(
        "Against the earlier statistics applied to these same runs (paired t-test by seed number even under "
        "`vary='init'`, each scheme tested uncorrected against the observed best, p >= 0.05 printed as a tie; "
        "overlapping chi-square intervals for spreads): "
        + ("; ".join(changed) + "." if changed else "no verdict changed.")
    )
    return "## Verdicts that changed\n\n" + "\n\n".join(lines)


def md_table(df: pd.DataFrame, formats: dict[str, Callable[[Any], str]] | None = None) -> str:
    """A GitHub-flavoured markdown table of ``df`` (its index is not shown).

    Args:
      df: the table.
      formats: per-column formatters; other floats are shown with 4 significant digits.
    """
    formats = formats or {}

    def cell(col: str, v: Any) -> str:
        if col in formats:
            return formats[col](v)
        if isinstance(v, float | np.floating):
            return "-" if not np.isfinite(v) else f"{v:.4g}"
        return str(v)

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(cell(c, row[c]) for c in df.columns) + " |")
    return "\n".join(lines)


def save_figure(fig: Any, path: Path) -> str:
    """Writes a matplotlib figure as PNG (atomically), closes it, and returns the file name for the report."""
    import matplotlib.pyplot as plt

    files.save_figure(path, fig)
    plt.close(fig)
    return path.name


def run_facts(results: Iterable[Any]) -> str:
    """One line on where the runs ran and how long they took (from the run folders' meta)."""
    results = list(results)
    wall = sum(float(r.meta.get("wall_seconds", np.nan)) for r in results)
    compile_s = sum(float(r.meta.get("compile_seconds", np.nan)) for r in results)
    m = results[0].meta
    versions = m.get("versions", {})
    return (
        f"Ran on {m.get('device_count', '?')} x {m.get('device_kind', '?')} ({m.get('platform', '?')}); "
        f"wall time {wall / 60:.1f} min ({compile_s:.0f} s compiling); "
        f"jax {versions.get('jax', '?')}, flax {versions.get('flax', '?')}, optax {versions.get('optax', '?')}."
    )


def write_report(folder: Path, title: str, sections: Sequence[str]) -> Path:
    """Writes ``report.md`` (atomically): a title and the sections separated by blank lines."""

    text = f"# {title}\n\n" + "\n\n".join(s.strip() for s in sections if s and s.strip()) + "\n"
    path = folder / "report.md"
    files.write_text(path, text)
    return path


def verdict(r: Any, direction: int = 1) -> str:
    """Reads a :class:`jinit.metrics.Comparison` of "A above B": ``holds`` when the 95% CI of A - B excludes zero
    on the side of ``direction`` (+1: A > B), ``reversed`` when it excludes zero on the other side, ``not
    resolved`` when it contains zero, ``untestable`` when it is NaN (fewer than 2 seeds)."""
    if not np.isfinite(r.ci_low) or not np.isfinite(r.ci_high):
        return "untestable"
    lo, hi = (r.ci_low, r.ci_high) if direction > 0 else (-r.ci_high, -r.ci_low)
    if lo > 0:
        return "holds"
    if hi < 0:
        return "reversed"
    return "not resolved"


def diff_text(r: Any) -> str:
    """``'+0.12 [-0.05, +0.29], p=0.16'``: a comparison's difference (points) with its 95% CI and p-value."""
    if not np.isfinite(r.diff):
        return "-"
    if not np.isfinite(r.ci_low):
        return f"{100 * r.diff:+.2f}"
    return f"{100 * r.diff:+.2f} [{100 * r.ci_low:+.2f}, {100 * r.ci_high:+.2f}], p={r.p_value:.2g}"


def identical_across_seeds(models: pd.DataFrame) -> list[str]:
    """Schemes whose final parameters are bit-identical for every seed (``param_sha256``): a deterministic init
    trained on the same data order gives the same model, so its spread over seeds is exactly zero."""
    out = []
    for scheme, g in models.groupby("scheme", sort=False):
        if len(g) > 1 and g["param_sha256"].nunique() == 1:
            out.append(str(scheme))
    return out


def holm(p_values: Sequence[float], alpha: float = 0.05) -> np.ndarray:
    """Holm-Bonferroni step-down: which of several tests stay significant at family-wise level ``alpha``.

    Sort the p-values ascending; reject the k-th smallest (k = 0, 1, ...) while ``p <= alpha / (m - k)`` and stop
    at the first that is not. NaN p-values are never rejected and do not count in ``m``.

    Returns:
      A boolean array, in the input order: True where the test is rejected (the difference is significant).

    References:
      Holm. A simple sequentially rejective multiple test procedure. Scand. J. Statist. 6 (1979).
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.zeros(p.shape, bool)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    for k, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        if p[i] > alpha / (m - k):
            break
        out[i] = True
    return out


class Timer:
    """Wall-clock seconds since construction."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0

"""End-to-end tests of `jinit sweep` and `jinit report` (in process, tiny configs)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from jinit import cli, sweep

TINY = [
    "--schemes", "zeros,he_normal", "--seeds", "2", "--epochs", "1", "--hidden", "16",
    "--train-size", "256", "--test-size", "128", "--max-models-per-chunk", "2", "--models-per-device", "2",
    "--no-progress",
]  # fmt: skip


def test_sweep_then_report(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["sweep", *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 models (2 schemes x 2 seeds)" in printed and "he_normal" in printed
    for name in ("config.json", "results.csv", "models.csv", "summary.csv", "predictions.npz"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "chunks").iterdir()) == ["00000.npz", "00001.npz"]
    assert not [p for p in out.rglob("*.tmp")]
    doc = json.loads((out / "config.json").read_text())
    assert doc["status"] == "complete" and doc["config"]["seeds"] == 2
    for key in (
        "versions",
        "device_kind",
        "device_count",
        "jax_threefry_partitionable",
        "compile_seconds",
        "wall_seconds",
    ):
        assert key in doc["meta"], key
    models = pd.read_csv(out / "models.csv")
    assert list(models.columns) == [
        "scheme",
        "seed",
        "final_accuracy",
        "final_test_loss",
        "diverged",
        "diverged_step",
        "param_sha256",
    ]
    assert (models.loc[models["scheme"] == "zeros", "final_accuracy"] < 0.3).all()

    assert cli.main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "acc%_mean" in printed and "he_normal" in printed
    for name in ("accuracy_curves.png", "final_accuracy.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The report shows the reproducibility and convergence measures beside the accuracy.
    for column in (
        "noise_floor",
        "median",
        "failure_rate",
        "p_set(1-sided,adj)",
        "train_loss_auc",
        "churn",
    ):
        assert column in printed, column
    summary = sweep.load(out).summary()
    best = summary.iloc[0]
    best_line = next(line for line in printed.splitlines() if f" {best['scheme']} " in line)
    assert best_line.lstrip().startswith("*")  # in the confidence set for the best
    assert f"{100 * best['acc_mean']:.2f}" in best_line
    assert "not distinguishable from the best at 2 seeds" in printed
    # zeros and ones: every seed is the same model (vary="init", no randomness in the init)
    assert "deterministic (zeros)" in printed
    zeros_line = next(line for line in printed.splitlines() if " zeros " in line)  # accuracy table
    assert "deterministic" in zeros_line
    assert "versus the best (seeds replicate each scheme's init draw" in printed
    assert "unpaired" in printed and "Welch's t-test" in printed

    assert cli.main(["report", str(out), "--compare", "he_normal", "zeros"]) == 0
    printed = capsys.readouterr().out
    assert "he_normal vs zeros" in printed and "unpaired" in printed
    assert "Welch's t-test: p = " in printed and "Mann-Whitney U: p = " in printed
    assert "P(A > B) over all pairs of runs (rliable's probability of improvement): 1.00" in printed
    assert "seeds per scheme to detect 1 point" in printed
    # the verdict follows the p-value, and the report says how large a gap the seeds could have seen
    line = next(x for x in printed.splitlines() if x.strip().startswith("Welch's t-test: p = "))
    p = float(line.split("p = ")[1].split()[0])
    assert ("(two-sided: not distinguishable at 5%)" in line) == (p >= 0.05)
    assert ("(two-sided: significant at 5%)" in line) == (p < 0.05)
    assert "smallest difference detectable with 80% power at these seeds: " in printed
    # An unknown scheme is one line and exit code 2, before anything is printed.
    assert cli.main(["report", str(out), "--compare", "he_normal", "glorot"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "unknown scheme 'glorot'" in captured.err


def _idx(arr: np.ndarray) -> bytes:
    """An IDX file: magic (0, 0, 0x08 = uint8, ndim), big-endian dims, the bytes."""
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def _mnist_folder(
    folder: Path, *, truncate: str | None = None, drop: str | None = None, n_test: int = 10
) -> Path:
    """A tiny MNIST in IDX files (30 train, ``n_test`` test), one file cut in half or left out."""
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (30, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 30),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    folder.mkdir(parents=True)
    for name, arr in files.items():
        raw = _idx(arr)
        if name == truncate:
            raw = raw[: len(raw) // 2]
        if name != drop:
            (folder / name).write_bytes(raw)
    return folder


def _mnist_args(tmp_path: Path, **damage) -> list[str]:
    return ["--dataset", "mnist", "--data-dir", str(_mnist_folder(tmp_path / "m", **damage))]


def _a_file(tmp_path: Path) -> Path:
    f = tmp_path / "a_file"
    f.write_text("not a folder")
    return f


# (id, extra arguments (a function of tmp_path where files are needed), text the one error line must contain)
BAD_INPUT = [
    ("scheme", ["--schemes", "he_normall"], "did you mean 'he_normal'"),
    ("dataset", ["--dataset", "mnsit"], "'mnist'"),
    ("seeds-0", ["--seeds", "0"], "seeds must be >= 1"),
    ("seeds-neg", ["--seeds", "-3"], "seeds must be >= 1, got -3"),
    ("seeds-text", ["--seeds", "abc"], "--seeds expects an integer, got 'abc'"),
    ("epochs-0", ["--epochs", "0"], "epochs must be >= 1, got 0"),
    ("epochs-neg", ["--epochs", "-2"], "epochs must be >= 1, got -2"),
    ("batch-big", ["--batch-size", "257"], "batch_size=257 is larger than the training set (256"),
    ("batch-0", ["--batch-size", "0"], "batch_size must be >= 1, got 0"),
    ("batch-neg", ["--batch-size", "-32"], "batch_size must be >= 1, got -32"),
    ("lr-0", ["--lr", "0"], "learning rate must be positive and finite, got 0.0"),
    ("lr-neg", ["--lr", "-1"], "learning rate must be positive and finite, got -1.0"),
    ("lr-nan", ["--lr", "nan"], "learning rate must be positive and finite, got nan"),
    ("lr-inf", ["--lr", "inf"], "learning rate must be positive and finite, got inf"),
    ("lr-text", ["--lr", "fast"], "--lr expects a number, got 'fast'"),
    ("schemes-trailing-comma", ["--schemes", "zeros,"], "trailing comma"),
    ("schemes-double-comma", ["--schemes", "zeros,,he_normal"], "empty scheme name"),
    ("schemes-empty", ["--schemes", ""], "empty scheme name"),
    ("schemes-paren", ["--schemes", "normal(stddev=0.1"], "unbalanced parentheses"),
    ("schemes-extra-paren", ["--schemes", "he_normal)"], "unbalanced parentheses"),
    ("schemes-bad-value", ["--schemes", "normal(stddev=abc)"], "hyperparameters must be literals"),
    ("schemes-bad-name", ["--schemes", "normal(stdev=0.1)"], "unknown hyperparameter(s) stdev"),
    ("schemes-twice", ["--schemes", "he_normal,HeNormal"], "the same scheme"),
    ("activation", ["--activation", "rellu"], "relu"),
    ("optimizer", ["--optimizer", "adamm"], "adam"),
    ("hidden", ["--hidden", "16,,8"], "--hidden expects comma-separated integers"),
    ("max-memory", ["--max-memory", "2XB"], "--max-memory expects a size"),
    ("checkpoint-every", ["--checkpoint-every", "-1"], "--checkpoint-every expects seconds >= 0"),
    (
        "data-missing",
        lambda t: ["--dataset", "mnist", "--data-dir", str(t / "nowhere")],
        "could not load 'mnist'",
    ),
    (
        "data-truncated",
        lambda t: _mnist_args(t, truncate="train-images-idx3-ubyte"),
        "train-images-idx3-ubyte",
    ),
    (
        "data-file-missing",
        lambda t: _mnist_args(t, drop="t10k-labels-idx1-ubyte"),
        "lacks t10k-labels-idx1-ubyte",
    ),
    ("out-under-a-file", lambda t: ["--out", str(_a_file(t) / "run")], "is a file, not a folder"),
    ("out-is-a-file", lambda t: ["--out", str(_a_file(t))], "it is a file, not a folder"),
    # found by the hostile-input campaign (issue 18): tracebacks, or inputs silently taken to mean another thing
    ("seed-too-big", ["--seed", str(2**63)], "seed must be <= 9223372036854775807"),
    ("max-memory-inf", ["--max-memory", "1e999"], "--max-memory expects a size"),
    ("max-memory-1e400", ["--max-memory", "1e400"], "--max-memory expects a size"),
    ("max-memory-1e999GB", ["--max-memory", "1e999GB"], "--max-memory expects a size"),
    ("scheme-100k-chars", ["--schemes", "normal(stddev=" + "1" * 100_000 + ")"], "at most 1000"),
    ("scheme-deep-attribute", ["--schemes", "x." * 50_000 + "y()"], "at most 1000"),
    ("lr-10**400", ["--lr", "1" + "0" * 400], "learning rate must be positive and finite"),
    ("stddev-10**400", ["--schemes", f"normal(stddev={10**400})"], "out of range"),
    ("seeds-2**31", ["--seeds", str(2**31)], "more than the"),
    ("seeds-2**40", ["--seeds", str(2**40)], "seeds must be <= 4294967296"),
    ("train-size-too-big", ["--train-size", "99999999"], "train_size=99999999 is larger than"),
    ("test-size-too-big", ["--test-size", "99999999"], "test_size=99999999 is larger than"),
    ("hidden-too-big", ["--hidden", "999999999"], "more than the memory budget"),
    ("out-empty", ["--out", ""], "--out expects a folder, got an empty name"),
    (
        "data-empty-test-set",
        lambda t: ["--dataset", "mnist", "--data-dir", str(_mnist_folder(t / "m", n_test=0))],
        "the test set of mnist",
    ),
]


@pytest.mark.parametrize("extra, needle", [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, compile_counter, extra, needle):
    """Every bad input: one line on stderr, exit code 2, no traceback, nothing compiled, no run folder."""
    out = tmp_path / "run"
    extra = extra(tmp_path) if callable(extra) else extra
    argv = ["sweep", *TINY, "--out", str(out), *extra]  # a later --out wins
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jinit sweep: error: ") and needle in err[0], err
    assert len(err[0]) < 2100  # a 100,000-character input is not echoed back
    assert captured.out == ""
    assert compile_counter.count == 0
    assert not out.exists()
    if "a_file" in " ".join(extra):
        assert (tmp_path / "a_file").read_text() == "not a folder"


@pytest.mark.parametrize(
    "spec, needle",
    [
        (
            "normal(stddev=1e308)",
            "bad scheme 'normal(stddev=1e308)': normal(stddev=1e+308, mean=0.0) is out of range: its values can "
            "exceed the largest finite float32 (3.403e+38) and would be inf; use a smaller stddev or mean",
        ),
        (
            "uniform(minval=-3e38, maxval=3e38)",  # maxval - minval overflows
            "uniform(minval=-3e+38, maxval=3e+38) is out of range: its values can exceed the largest finite "
            "float32 (3.403e+38) and would be inf; use a smaller minval and maxval",
        ),
        (
            "he_normal(scale=1e308)",  # its bound needs the kernel's shape: checked on the model, before compiling
            "he_normal(scale=1e+308, mode='fan_in', distribution='truncated_normal') is out of range for shape "
            "(64, 16): its values can exceed the largest finite float32 (3.403e+38) and would be inf",
        ),
    ],
    ids=["normal-1e308", "uniform-6e38", "he_normal-1e308"],
)
def test_a_scheme_whose_values_overflow_float32_is_one_line_without_warnings(
    tmp_path, capsys, compile_counter, spec, needle
):
    """issue 24: --schemes 'normal(stddev=1e308)' printed numpy's RuntimeWarnings and trained inf weights."""
    out = tmp_path / "run"
    jax.random.PRNGKey(
        0
    )  # the checks' key: its seeding program may be compiled once per process, not here
    before = compile_counter.count
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning of the cast would be an error here
        assert cli.main(["sweep", *TINY, "--out", str(out), "--schemes", spec]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jinit sweep: error: ") and needle in err[0], err
    assert captured.out == "" and compile_counter.count == before and not out.exists()


@pytest.mark.parametrize(
    "argv, first",
    [
        (["sweep", "--bogus"], "jinit: error: unrecognized arguments: --bogus"),
        (["sweep", "--seeds"], "jinit sweep: error: argument --seeds: expected one argument"),
        (["schemes", "--applies-to", "x"], "jinit schemes: error: argument --applies-to"),
        (["propagate", "--depth", "x"], "jinit propagate: error: argument --depth"),
        (["nope"], "jinit: error: argument COMMAND: invalid choice"),
    ],
)
def test_usage_errors_are_one_line_too(capsys, argv, first):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(first), err
    assert captured.out == ""


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--every", "-1"], "--every expects a positive integer, got -1"),
        (["--every", "0"], "--every expects a positive integer, got 0"),
        (["--seed", "-1"], "--seed expects an integer >= 0, got -1"),
        (["--out", ""], "--out expects a folder"),
        (lambda t: ["--out", str(_a_file(t))], "it is a file, not a folder"),
    ],
)
def test_propagate_checks_its_arguments_before_computing(
    tmp_path, capsys, compile_counter, extra, needle
):
    extra = extra(tmp_path) if callable(extra) else extra
    argv = ["propagate", "--depth", "2", "--width", "8", "--out", str(tmp_path / "p"), *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jinit propagate: error: ") and needle in err[0], err
    assert compile_counter.count == 0 and not (tmp_path / "p").exists()


def test_no_arguments_is_the_default_config():
    args = cli.build_parser().parse_args(["sweep"])
    assert cli._sweep_config(args) == sweep.SweepConfig()
    args = cli.build_parser().parse_args(
        ["sweep", "--lr", "0.01", "--hidden", "8,4", "--max-memory", "1GiB"]
    )
    cfg = cli._sweep_config(args)
    assert cfg.learning_rate == 0.01 and cfg.hidden == (8, 4) and cfg.max_memory == 2**30


def test_report_of_missing_folder(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nope")]) == 2
    assert "not a jinit run folder" in capsys.readouterr().err


def test_check_determinism_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sweep", *TINY, "--schemes", "he_normal", "--check-determinism"]) == 0
    out = capsys.readouterr().out.splitlines()
    models = "2 models (he_normal seed 0, he_normal seed 1)"
    assert out[0] == f"determinism check: {models}, 1 epoch(s), trained twice"
    assert out[1] == "  final params bitwise identical: yes (param_sha256 equal for 2/2)"
    assert out[2].startswith(
        "  same models in another layout bitwise identical: yes (param_sha256 equal for 2/2; "
    )
    assert out[3].startswith("  max |vmapped sweep - trained alone| over final params: ")
    assert float(out[3].rsplit(" ", 1)[1]) < 1e-4
    assert not (tmp_path / "runs").exists()  # no run folder

    report = sweep.DeterminismReport(
        models=(("he_normal", 0), ("he_normal", 1)),
        bitwise_identical=False,
        sha256_first=("a" * 64, "b" * 64),
        sha256_second=("a" * 64, "c" * 64),
        max_abs_diff_alone=0.5,
        epochs=1,
        layout_identical=True,
        sha256_layout=("a" * 64, "b" * 64),
        layouts=("2 models", "6 models"),
    )
    monkeypatch.setattr(sweep, "check_determinism", lambda config, **kw: report)
    assert cli.main(["sweep", *TINY, "--check-determinism"]) == 1
    out = capsys.readouterr().out
    assert "bitwise identical: NO (param_sha256 equal for 1/2)" in out and "params: 0.5" in out
    # the same run twice, but another layout changes a model
    report = report._replace(
        bitwise_identical=True, sha256_second=report.sha256_first, layout_identical=False
    )
    report = report._replace(sha256_layout=("a" * 64, "d" * 64))
    assert cli.main(["sweep", *TINY, "--check-determinism"]) == 1
    out = capsys.readouterr().out
    assert "another layout bitwise identical: NO (param_sha256 equal for 1/2; 2 models vs 6" in out

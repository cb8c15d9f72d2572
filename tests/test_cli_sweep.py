"""End-to-end tests of `jinit sweep` and `jinit report` (in process, tiny configs)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from jinit import cli, sweep

TINY = [
    "--schemes", "zeros,he_normal", "--seeds", "2", "--epochs", "1", "--hidden", "16",
    "--train-size", "256", "--test-size", "128", "--max-models-per-chunk", "2", "--no-progress",
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


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--seeds", "0"], "seeds must be >= 1"),
        (["--seeds", "abc"], "--seeds expects an integer, got 'abc'"),
        (["--schemes", "he_normall"], "he_normal"),
        (["--schemes", "zeros,"], "trailing comma"),
        (["--dataset", "mnsit"], "'mnist'"),
        (["--lr", "-1"], "learning rate"),
        (["--batch-size", "100000"], "larger than the training set"),
        (["--max-memory", "2XB"], "--max-memory expects a size"),
        (["--activation", "rellu"], "relu"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, args, needle):
    out = tmp_path / "run"
    base = [a for a in TINY]
    assert cli.main(["sweep", *base, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jinit sweep: error:") and needle in err[0], err
    if "--batch-size" not in args:  # everything else fails before the run folder is created
        assert not out.exists()


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

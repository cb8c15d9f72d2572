"""Tests of the run folder (jinit.results): atomic writes and the save/load round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jinit import files, results, sweep
from jinit.sweep import folder as folder_lib


def _leftovers(folder):
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_atomic_write_never_leaves_a_partial_file(tmp_path):
    target = tmp_path / "table.csv"
    files.write_text(target, "old,complete\n")

    def crash(f):
        f.write(b"new,half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        files.atomic_write(target, crash)
    assert target.read_text() == "old,complete\n"  # the reader still sees the old, whole file
    assert _leftovers(tmp_path) == []


def test_json_csv_npz_round_trip(tmp_path):
    files.write_json(tmp_path / "a.json", {"t": (1, 2), "x": float("nan"), "n": np.int64(3)})
    assert files.read_json(tmp_path / "a.json") == {"t": [1, 2], "x": None, "n": 3}
    df = pd.DataFrame({"a": [0.1, 1 / 3], "b": ["x", "y"]})
    files.write_csv(tmp_path / "a.csv", df)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a.csv"), df, rtol=1e-8)
    files.write_npz(tmp_path / "a.npz", p=np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(
        files.read_npz(tmp_path / "a.npz")["p"], np.arange(6).reshape(2, 3)
    )
    assert _leftovers(tmp_path) == []


def _fake_result():
    cfg = sweep.SweepConfig(schemes=("zeros", "he_normal"), seeds=2, epochs=2, hidden=(16,))
    rows = []
    for scheme in cfg.schemes:
        for s in range(2):
            for e in (1, 2):
                acc = 0.1 if scheme == "zeros" else 0.8 + 0.05 * e + 0.01 * s
                rows.append((scheme, s, float(e), 10 * e, 1.0 / e, acc - 0.01, 1.1 / e, acc, False))
    curves = pd.DataFrame(rows, columns=list(results.CURVE_COLUMNS))
    models = pd.DataFrame(
        {
            "scheme": ["zeros", "zeros", "he_normal", "he_normal"],
            "seed": [0, 1, 0, 1],
            "final_accuracy": [0.1, 0.1, 0.9, 0.91],
            "final_test_loss": [2.3, 2.3, 0.5, 0.45],
            "diverged": [False] * 4,
            "diverged_step": [-1] * 4,
            "param_sha256": ["a" * 64, "a" * 64, "b" * 64, "c" * 64],
        }
    )
    y = np.arange(10, dtype=np.int32) % 3
    preds = np.stack([np.zeros(10), np.zeros(10), y, y]).astype(np.uint8)
    return results.SweepResult(cfg, curves, models, preds, y, 3, meta={"n_models": 4})


def test_save_and_load_round_trip(tmp_path):
    r = _fake_result()
    folder_lib.write_tables(tmp_path / "run", r)
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["config.json", "models.csv", "predictions.npz", "results.csv", "summary.csv"]
    back = sweep.load(tmp_path / "run")
    assert back.config == r.config and back.num_classes == 3
    pd.testing.assert_frame_equal(back.curves, r.curves)
    pd.testing.assert_frame_equal(back.models, r.models)
    np.testing.assert_array_equal(back.predictions, r.predictions)
    pd.testing.assert_frame_equal(back.summary(), r.summary())
    summary = pd.read_csv(tmp_path / "run" / "summary.csv")
    assert list(summary["scheme"]) == ["he_normal", "zeros"]
    assert _leftovers(tmp_path) == []


def test_load_refuses_an_unfinished_or_missing_run(tmp_path):
    r = _fake_result()
    folder_lib.write_config(tmp_path, r.config, {}, status="running")
    with pytest.raises(ValueError, match="did not complete"):
        sweep.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a jinit run folder"):
        sweep.load(tmp_path / "nowhere")


def test_config_dict_round_trip():
    cfg = sweep.SweepConfig(
        schemes="zeros,normal(stddev=0.1, mean=0.0)", hidden=[8, 4], eval_every=5
    )
    assert cfg.schemes == ("zeros", "normal(stddev=0.1, mean=0.0)") and cfg.hidden == (8, 4)
    assert sweep.SweepConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown SweepConfig field"):
        sweep.SweepConfig.from_dict({"lr": 0.1})


def test_open_run_folder_states(tmp_path):
    cfg = {"seeds": 2, "epochs": 1}
    folder = tmp_path / "run"
    folder.mkdir()
    assert folder_lib.open_run_folder(folder, cfg, fingerprint="f").state == "new"
    folder_lib.write_config(folder, cfg, {"fingerprint": "f", "chunk_size": 4}, status="running")
    got = folder_lib.open_run_folder(folder, cfg, fingerprint="f")
    assert got.state == "resume" and got.meta["chunk_size"] == 4 and not got.replaced
    folder_lib.write_config(folder, cfg, {"fingerprint": "f"}, status="complete")
    assert folder_lib.open_run_folder(folder, cfg, fingerprint="f").state == "complete"
    with pytest.raises(folder_lib.RunFolderMismatch, match="seeds: 2 in the folder, 3 now"):
        folder_lib.open_run_folder(folder, {**cfg, "seeds": 3}, fingerprint="f")
    with pytest.raises(
        folder_lib.RunFolderMismatch, match="same config but different data, schemes or model"
    ):
        folder_lib.open_run_folder(folder, cfg, fingerprint="g")
    folder_lib.write_chunk(folder, 0, {"x": np.zeros(2)}, fingerprint="f")  # the sweep's own
    (folder / "mine.txt").write_text("keep")
    (folder / "chunks" / "id").write_text("keep")  # the user's, in jinit's folder
    foreign = folder_lib.chunk_path(
        folder, 1
    )  # named like a chunk, not the sweep's (no fingerprint)
    files.write_npz(foreign, x=np.zeros(2))
    with pytest.raises(ValueError, match="00001.npz is not a file that sweep wrote"):
        folder_lib.open_run_folder(folder, {**cfg, "seeds": 3}, fingerprint="g", overwrite=True)
    assert folder_lib.chunk_path(folder, 0).exists()  # refused before anything was deleted
    foreign.unlink()
    got = folder_lib.open_run_folder(folder, {**cfg, "seeds": 3}, fingerprint="g", overwrite=True)
    assert got.state == "new" and got.replaced
    assert sorted(p.name for p in folder.iterdir()) == ["chunks", "config.json", "mine.txt"]
    assert [p.name for p in (folder / "chunks").iterdir()] == ["id"]
    assert files.read_json(folder / "config.json")["config"]["seeds"] == 3


def test_check_writable_and_leftovers(tmp_path):
    folder_lib.check_writable(tmp_path / "a" / "b")  # creatable
    assert not (tmp_path / "a").exists()  # and not created
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        folder_lib.check_writable(tmp_path / "f" / "run")
    with pytest.raises(NotADirectoryError, match="it is a file"):
        folder_lib.check_writable(tmp_path / "f")
    run = tmp_path / "run"
    keep = [
        run / "config.json",
        run / "chunks" / "00000.npz",
        run / "checkpoints" / "00001" / "epoch_0003",
        run / ".notes.tmp",  # the user's: not names jinit writes
        run / ".trash-mine",
        run / "chunks" / "mine.tmp",
        run / ".results.csv.abc.tmp",  # jinit's temporary names have exactly 8 random characters
        run / ".trash-chunks-1234abcd",  # jinit makes trash only inside checkpoints/NNNNN/
        run / "checkpoints" / "stray",
        run / "checkpoints" / "id",
    ]
    gone = [
        run / ".results.csv.ab3_x9zk.tmp",
        run / "chunks" / ".00001.npz.x7yq2mfk.tmp",
        run / ".lock.0123456789abcdef0123456789abcdef.tmp",
        run / "checkpoints" / "00001" / "epoch_0004.orbax-checkpoint-tmp-99",
        run / "checkpoints" / "00001" / ".trash-epoch_0002-1234abcd",
    ]
    for p in keep + gone:
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix in (".json", ".npz", ".tmp") or p.name in (".trash-mine", "id"):
            p.write_text("x")
        else:
            p.mkdir()
    removed = folder_lib.remove_leftovers(run)
    assert sorted(removed) == sorted(gone)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in gone)


def test_atomic_write_gives_the_mode_of_a_plain_open(tmp_path):
    import os

    old = os.umask(0o027)
    try:
        files.write_text(tmp_path / "a.csv", "x\n")
        with open(tmp_path / "b.csv", "w") as f:
            f.write("x\n")
    finally:
        os.umask(old)
    mode = (tmp_path / "a.csv").stat().st_mode & 0o777
    assert mode == (tmp_path / "b.csv").stat().st_mode & 0o777 == 0o640

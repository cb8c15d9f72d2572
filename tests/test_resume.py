"""Reliability of long sweeps: resume after SIGKILL / SIGINT / SIGTERM (real subprocesses), epoch checkpoints,
the run folder's lock, refusing or replacing a different sweep, a complete folder, damaged chunk files.

Every resumed run is compared with an uninterrupted one byte for byte (results.csv, models.csv with the SHA-256
of every model's final parameters). Configs are tiny (digits, 16 hidden units, chunks of 2 models) so each test
takes seconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jinit import cli, sweep
from jinit import files as files_lib
from jinit.sweep import checkpoints as checkpoints_lib
from jinit.sweep import lock as lock_lib

CFG = sweep.SweepConfig(
    schemes=("zeros", "he_normal"),
    seeds=3,
    epochs=3,
    hidden=(16,),
    train_size=256,
    test_size=128,
    batch_size=32,
    max_models_per_chunk=2,
    models_per_device=2,
)  # 6 models, 3 chunks of 2, 3 epochs each

# the same sweep as CFG, on the command line
ARGS = [
    "--schemes", "zeros,he_normal", "--seeds", "3", "--epochs", "3", "--hidden", "16",
    "--train-size", "256", "--test-size", "128", "--max-models-per-chunk", "2", "--models-per-device", "2",
    "--no-progress",
]  # fmt: skip

TABLES = ("results.csv", "models.csv", "summary.csv")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted sweep, without epoch checkpoints."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert cli.main(["sweep", *ARGS, "--checkpoint-every", "never", "--out", str(out)]) == 0
    return out


def _same_results(run: Path, reference: Path) -> None:
    for name in TABLES:
        assert (run / name).read_bytes() == (reference / name).read_bytes(), name
    a, b = (
        files_lib.read_npz(run / "predictions.npz"),
        files_lib.read_npz(reference / "predictions.npz"),
    )
    np.testing.assert_array_equal(a["predictions"], b["predictions"])
    assert not (run / "checkpoints").exists() and not (run / "lock").exists()
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp") or ".orbax" in p.name]
    assert json.loads((run / "config.json").read_text())["status"] == "complete"


def _status(out: Path) -> str:
    return json.loads((out / "config.json").read_text())["status"]


# ------------------------------------------------------------------------------------------------------------
# A real `jinit sweep` process killed mid-run, then the same command again.

# The child runs jinit's entry point as the `jinit` script does (main() without argv), with Python's own SIGINT
# handler even if the test runner ignores SIGINT.
_CHILD = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from jinit.cli import main; sys.exit(main())"
)


@pytest.mark.parametrize(
    "sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name
)
@pytest.mark.slow
def test_killed_sweep_resumes_to_identical_results(tmp_path, reference, capsys, sig):
    out = tmp_path / "run"
    argv = ["sweep", *ARGS, "--checkpoint-every", "0", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # One CPU device, like this process, which resumes it (the jinit process would take one per core).
        env={**os.environ, "JAX_NUM_CPU_DEVICES": "1"},
    )
    # Strike as soon as the first epoch checkpoint of the first chunk is on disk: 2 chunks and several
    # checkpoints (~0.1 s each) are still to come.
    first = out / "checkpoints" / "00000" / "epoch_0001"
    deadline = time.monotonic() + 240
    while not first.is_dir() and not (out / "chunks" / "00000.npz").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the sweep ended before it was killed: {proc.communicate()[1][-3000:]}")
        time.sleep(0.002)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)

    assert _status(out) == "running" and not (out / "models.csv").exists()  # it was stopped mid-run
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        assert (out / "lock").exists()  # left behind: the next run takes it over
        resume = ["sweep", *ARGS, "--checkpoint-every", "0", "--out", str(out)]
    else:
        assert proc.returncode == 128 + sig, stderr
        lines = stderr.strip().splitlines()
        assert "Traceback" not in stderr and len(lines) == 2, stderr
        assert lines[0].startswith(f"jinit sweep: interrupted by {sig.name}; saved in {out}: "), (
            lines
        )
        assert "chunk(s) complete" in lines[0]
        prefix = "jinit sweep: to resume, run: "
        assert lines[1].startswith(prefix + "jinit sweep ") and f"--out {out}" in lines[1]
        assert not (out / "lock").exists()
        resume = shlex.split(lines[1][len(prefix) :])[1:]  # the printed command, exactly
    assert sorted(resume) == sorted(argv)

    assert cli.main(resume) == 0
    err = capsys.readouterr().err
    if sig == signal.SIGKILL:
        assert "took over the lock" in err and f"pid {proc.pid}" in err, err
    assert "resuming" in err, err  # a chunk or an epoch checkpoint was kept
    _same_results(out, reference)


# ------------------------------------------------------------------------------------------------------------
# In process: an interruption at a precise point, via the checkpoint writer.


def _interrupt_after(monkeypatch, chunk: int, epoch: int):
    """Sends this process SIGINT (Ctrl-C) while the checkpoint of (chunk, epoch) is being written."""
    real = checkpoints_lib.Checkpointer.save
    calls = []

    def save(self, folder, index, ep, *args, **kwargs):
        if (index, ep) == (chunk, epoch):
            signal.raise_signal(signal.SIGINT)
        calls.append((index, ep))
        return real(self, folder, index, ep, *args, **kwargs)

    monkeypatch.setattr(checkpoints_lib.Checkpointer, "save", save)
    return calls


def test_resume_from_an_epoch_checkpoint(tmp_path, reference, monkeypatch):
    out = tmp_path / "run"
    calls = _interrupt_after(monkeypatch, chunk=1, epoch=2)
    with pytest.raises(sweep.SweepInterrupted) as info:
        sweep.run(CFG, out=out, progress=False, checkpoint_every=0)
    e = info.value
    assert isinstance(e, KeyboardInterrupt) and e.exit_code == 130 and e.path == out
    assert (e.chunks_done, e.n_chunks, e.checkpoint) == (1, 3, (1, 2))
    assert str(e) == (
        f"interrupted by SIGINT; saved in {out}: 1 of 3 chunk(s) complete, chunk 1 checkpointed after epoch 2 "
        "of 3 (the epoch that was running is lost)"
    )
    assert calls == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert [p.name for p in (out / "chunks").iterdir()] == ["00000.npz"]
    assert [p.name for p in (out / "checkpoints" / "00001").iterdir()] == ["epoch_0002"]
    assert not (out / "checkpoints" / "00000").exists()  # deleted once its chunk file was written
    assert not (out / "lock").exists() and _status(out) == "running"

    monkeypatch.undo()
    r = sweep.run(CFG, out=out, progress=False, checkpoint_every=0)
    assert r.meta["chunks_reused"] == 1 and r.meta["epochs_reused"] == 2
    _same_results(out, reference)


def test_sigterm_while_writing_a_checkpoint_waits_for_the_write(tmp_path, monkeypatch):
    """A signal that arrives during a file write is held until the write is done: nothing is half-written."""
    out = tmp_path / "run"
    real = checkpoints_lib.Checkpointer.save

    def save(self, folder, index, epoch, *args, **kwargs):
        signal.raise_signal(signal.SIGTERM)  # arrives before the write starts
        return real(self, folder, index, epoch, *args, **kwargs)

    monkeypatch.setattr(checkpoints_lib.Checkpointer, "save", save)
    with pytest.raises(sweep.SweepInterrupted) as info:
        sweep.run(CFG, out=out, progress=False, checkpoint_every=0)
    assert info.value.signum == signal.SIGTERM and info.value.exit_code == 143
    assert info.value.checkpoint == (0, 1)  # the write finished before the signal was acted on
    assert [p.name for p in (out / "checkpoints" / "00000").iterdir()] == ["epoch_0001"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_resume_keeps_the_chunk_size_of_the_first_start(tmp_path, reference, monkeypatch):
    """A resumed sweep on a device that would choose other chunks and models per device keeps those it started
    with (its chunk files hold chunks of that size; results depend on the models per device bit for bit)."""
    out = tmp_path / "run"
    _interrupt_after(monkeypatch, chunk=1, epoch=1)
    with pytest.raises(sweep.SweepInterrupted):
        sweep.run(CFG, out=out, progress=False, checkpoint_every=0)
    monkeypatch.undo()
    # what this "other device" would choose
    monkeypatch.setattr(sweep.layout, "chunk_plan", lambda *a, **k: (4, 1))
    monkeypatch.setattr(sweep.layout, "models_per_device", lambda *a, **k: 4)
    r = sweep.run(CFG, out=out, progress=False, checkpoint_every=0)
    assert r.meta["chunk_size"] == 2 and r.meta["n_chunks"] == 3 and r.meta["epochs_reused"] == 1
    assert r.meta["models_per_device"] == 2
    _same_results(out, reference)


def test_damaged_chunk_and_checkpoint_are_recomputed(tmp_path, reference, monkeypatch, caplog):
    out = tmp_path / "run"
    _interrupt_after(monkeypatch, chunk=2, epoch=1)
    with pytest.raises(sweep.SweepInterrupted):
        sweep.run(CFG, out=out, progress=False, checkpoint_every=0)
    monkeypatch.undo()
    # a truncated chunk file, a checkpoint missing its data, and leftovers of a killed writer
    chunk1 = out / "chunks" / "00001.npz"
    chunk1.write_bytes(chunk1.read_bytes()[:100])
    ckpt = out / "checkpoints" / "00002" / "epoch_0001"
    for p in sorted((ckpt / "state").rglob("*"), reverse=True):
        if p.is_file():
            p.unlink()
    (out / ".models.csv.x1y2_q9z.tmp").write_text("half")  # a temporary name as jinit makes it
    (out / "checkpoints" / "00002" / "epoch_0002.orbax-checkpoint-tmp-123").mkdir()
    # a damaged chunk file cannot show it is the sweep's: refused, never replaced
    with pytest.raises(ValueError, match="00001.npz is not a file of this sweep"):
        sweep.run(CFG, out=out, progress=False, checkpoint_every=0)
    assert chunk1.exists()
    chunk1.rename(tmp_path / "moved-away.npz")
    with caplog.at_level("INFO", logger="jinit"):
        r = sweep.run(CFG, out=out, progress=False, checkpoint_every=0)
    # the checkpoint carries the sweep's fingerprint but not its data: the sweep's own, ignored and deleted
    assert f"ignoring the checkpoint {ckpt}" in caplog.text and not ckpt.exists()
    assert not (out / ".models.csv.x1y2_q9z.tmp").exists()
    assert r.meta["chunks_reused"] == 1 and r.meta["epochs_reused"] == 0
    _same_results(out, reference)


def test_a_chunk_of_another_sweep_is_not_used(tmp_path, reference, caplog):
    """Chunk files carry the sweep's fingerprint: one from another sweep (here: other data) is neither used nor
    replaced; moved away, its chunk is trained again."""
    out = tmp_path / "run"
    other = tmp_path / "other"
    sweep.run(dataclasses.replace(CFG, train_size=224), out=other, progress=False)
    sweep.run(CFG, out=out, progress=False)
    (out / "chunks" / "00001.npz").write_bytes((other / "chunks" / "00001.npz").read_bytes())
    doc = json.loads((out / "config.json").read_text())
    doc["status"] = "running"  # as if the sweep had been killed after its chunks
    files_lib.write_json(out / "config.json", doc)
    with pytest.raises(
        ValueError, match="00001.npz is not a file of this sweep .it does not carry"
    ):
        sweep.run(CFG, out=out, progress=False)
    (out / "chunks" / "00001.npz").rename(tmp_path / "moved-away.npz")
    r = sweep.run(CFG, out=out, progress=False)
    assert r.meta["chunks_reused"] == 2
    _same_results(out, reference)


# ------------------------------------------------------------------------------------------------------------
# Lock, overwrite, complete folders.

_HOLDER = (
    "import sys, time; from jinit.sweep import lock; lock.acquire_lock(sys.argv[1]); "
    "print('locked', flush=True); time.sleep(120)"
)


@pytest.mark.slow
def test_second_sweep_on_a_locked_folder_is_refused_then_a_stale_lock_is_taken_over(
    tmp_path, reference, capsys
):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert cli.main(["sweep", *ARGS, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is in use by another sweep" in err[0], err
        assert f"pid {holder.pid}" in err[0] and "choose another --out" in err[0]
        with pytest.raises(lock_lib.RunFolderInUse):
            sweep.run(CFG, out=out, progress=False)
        assert sorted(p.name for p in out.iterdir()) == ["lock"]  # nothing else touched
    finally:
        holder.kill()
        holder.wait()
    assert cli.main(["sweep", *ARGS, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"took over the lock of {out}" in err and f"pid {holder.pid}" in err
    _same_results(out, reference)


def test_lock_file_unit(tmp_path):
    lock = lock_lib.acquire_lock(tmp_path / "a")
    info = json.loads(lock.path.read_text())
    assert info["pid"] == sys.modules["os"].getpid() and info["token"] == lock.token
    with pytest.raises(lock_lib.RunFolderInUse, match="in use by another sweep"):
        lock_lib.acquire_lock(tmp_path / "a")  # held by a live process (this one)
    lock.release()
    assert not lock.path.exists()
    lock.release()  # idempotent
    # a dead pid, and a pid reused by another process, are stale
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for pid, start in ((dead.pid, None), (sys.modules["os"].getpid(), "1")):
        info.update(pid=pid, proc_start=start, token="old")
        lock.path.write_text(json.dumps(info))
        new = lock_lib.acquire_lock(tmp_path / "a")
        assert (
            new.taken_over["token"] == "old"
            and json.loads(new.path.read_text())["token"] == new.token
        )
        new.release()
    # another host cannot be checked: in use
    info.update(host="elsewhere", pid=1)
    lock.path.write_text(json.dumps(info))
    with pytest.raises(lock_lib.RunFolderInUse, match="on elsewhere"):
        lock_lib.acquire_lock(tmp_path / "a")


def test_different_config_is_refused_and_overwrite_replaces_it(tmp_path, capsys):
    out = tmp_path / "run"
    small = ["--schemes", "zeros,he_normal", "--seeds", "2", "--epochs", "1", "--hidden", "16",
             "--train-size", "256", "--test-size", "128", "--max-models-per-chunk", "2",
             "--models-per-device", "2", "--no-progress", "--out", str(out)]  # fmt: skip
    assert cli.main(["sweep", *small]) == 0
    (out / "notes.txt").write_text("mine")
    before = {name: (out / name).read_bytes() for name in TABLES}
    capsys.readouterr()

    assert cli.main(["sweep", *small, "--seeds", "3", "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a different sweep" in err[0] and "--overwrite" in err[0], err
    assert "seeds: 2 in the folder, 3 now" in err[0] and "epochs: 1 in the folder, 2 now" in err[0]
    assert {name: (out / name).read_bytes() for name in TABLES} == before  # untouched
    assert not (out / "lock").exists()

    assert (
        cli.main(["sweep", *small, "--seeds", "3", "--models-per-device", "4", "--overwrite"]) == 0
    )
    r = sweep.load(out)
    assert r.config.seeds == 3 and len(r.models) == 6 and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (out / "chunks").iterdir()) == [
        "00000.npz",
        "00001.npz",
    ]  # none left over
    assert "replaced the sweep" in capsys.readouterr().err


def test_complete_folder_is_read_back_without_training(tmp_path, capsys, compile_counter):
    out = tmp_path / "run"
    cfg = dataclasses.replace(CFG, epochs=1)
    first = sweep.run(cfg, out=out, progress=False)
    stamp = (out / "models.csv").stat().st_mtime_ns
    compiled = compile_counter.count
    again = sweep.run(cfg, out=out, progress=False)
    assert compile_counter.count == compiled  # nothing compiled, nothing trained
    assert again.path == out and (out / "models.csv").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(again.models, first.models, check_exact=True)
    with pytest.raises(ValueError, match="keep_params=True needs the models trained in this call"):
        sweep.run(cfg, out=out, progress=False, keep_params=True)
    part = (
        tmp_path / "part"
    )  # a sweep with some chunks done: their models are not trained in this call either
    shutil.copytree(out, part)
    (part / "chunks" / "00000.npz").unlink()
    doc = json.loads((part / "config.json").read_text())
    files_lib.write_json(part / "config.json", {**doc, "status": "running"})
    with pytest.raises(ValueError, match="already holds 2 finished chunk"):
        sweep.run(cfg, out=part, progress=False, keep_params=True)
    args = ["sweep", *ARGS, "--epochs", "1", "--out", str(out)]
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert "already holds this sweep, complete: nothing was recomputed" in captured.err
    assert "he_normal" in captured.out  # the summary is printed as usual
    assert cli.main([*args, "--overwrite"]) == 0  # trains it again
    assert (out / "models.csv").stat().st_mtime_ns != stamp
    assert (out / "models.csv").read_bytes() == first.models.to_csv(index=False).encode()


def test_a_folder_that_is_not_a_run_folder_is_never_used(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="is not empty .*thesis.tex.* not a jinit run folder"):
            sweep.run(CFG, out=tmp_path, progress=False, overwrite=overwrite)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_unreadable_config_json_is_refused_also_with_overwrite(tmp_path):
    """jinit writes config.json atomically, so an unreadable one is not jinit's: never replaced."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{not json")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="config.json is unreadable") as info:
            sweep.run(
                dataclasses.replace(CFG, epochs=1), out=out, progress=False, overwrite=overwrite
            )
        assert "--overwrite to" not in str(info.value)
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]
    assert (out / "config.json").read_text() == "{not json"

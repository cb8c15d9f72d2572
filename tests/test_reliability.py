"""A run folder never destroys what is not its own: links into the user's folders, folders that are not run folders,
a file named ``lock`` that jinit did not write; one lock holder at a time under a many-process race; chunk files
with missing or mis-shaped arrays are trained again; a complete folder whose tables are gone is rebuilt.

Every data-loss test snapshots the files outside jinit's own (every byte, mode and link target, never following a
link) and checks that none changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_ARGS, tiny_config

from jinit import cli, sweep
from jinit import files as files_lib
from jinit.sweep import folder as folder_lib
from jinit.sweep import lock as lock_lib

CFG = tiny_config()  # 4 models, 2 chunks of 2
ARGS = TINY_ARGS


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (links are recorded, never followed): kind, mode, bytes or link target."""
    out = {}
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", st.st_mode)
            else:
                out[rel] = ("file", st.st_mode, p.read_bytes())
    return out


def _victim(folder: Path) -> Path:
    """A user's folder with files, a sub-folder, dot-files, and names jinit's clean-up would match."""
    folder.mkdir(parents=True)
    (folder / "paper.tex").write_text("years of work")
    (folder / ".hidden").write_text("dot-file")
    (folder / "sub").mkdir()
    (folder / "sub" / "data.bin").write_bytes(bytes(range(256)))
    (folder / "epoch_0001").mkdir()
    (folder / "epoch_0001" / "x").write_text("looks like a checkpoint")
    (folder / ".00000.npz.abc.tmp").write_text("looks like a temporary file")
    (folder / ".trash-notes-0123abcd").mkdir()
    (folder / ".trash-notes-0123abcd" / "keep").write_text("looks like trash")
    (folder / "00000.npz").write_text("looks like a chunk")
    return folder


def _one_error_line(capsys, needle: str) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jinit sweep: error: ") and needle in err[0], err
    return err[0]


# ------------------------------------------------------------------------------------------------------------
# 1. Links: never write or delete through a link jinit did not create.


@pytest.fixture
def finished(finished_run) -> Path:
    """The session's complete run folder (conftest.py), read only: tests copy it before they change it."""
    return finished_run


@pytest.mark.parametrize("where", ["checkpoints", "checkpoints/00000", "chunks"])
@pytest.mark.parametrize("status", ["complete", "running"])
def test_a_link_in_the_run_folder_is_refused_and_nothing_is_deleted(
    tmp_path, finished, capsys, where, status
):
    run = tmp_path / "run"
    victim = _victim(tmp_path / "victim")
    shutil.copytree(finished, run, symlinks=True)
    if status == "running":  # as if killed: the resume path also scans and restores checkpoints
        doc = json.loads((run / "config.json").read_text())
        files_lib.write_json(run / "config.json", {**doc, "status": "running"})
        (run / "models.csv").unlink()
    link = run / where
    if link.is_dir():  # the user moved chunks/ elsewhere and linked it
        shutil.rmtree(link)
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(victim, target_is_directory=True)
    before_victim, before_run = snapshot(victim), snapshot(run)

    for extra in ([], ["--overwrite"]):
        assert cli.main(["sweep", *ARGS, "--out", str(run), *extra]) == 2
        line = _one_error_line(capsys, "is a symbolic link")
        assert str(link) in line and "--overwrite" not in line
        assert snapshot(victim) == before_victim
        assert snapshot(run) == before_run  # nothing written, the lock released
    with pytest.raises(ValueError, match="never writes or deletes through a link"):
        sweep.run(CFG, out=run, progress=False)
    assert snapshot(victim) == before_victim


def test_leftover_cleanup_never_follows_links(tmp_path):
    """The clean-up alone (a killed sweep's temporary files) does not enter linked folders."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    victim = _victim(tmp_path / "victim")
    (run / "chunks").symlink_to(victim)
    (run / "checkpoints" / "00000").symlink_to(victim)
    before = snapshot(victim)
    folder_lib.remove_leftovers(run)
    assert snapshot(victim) == before
    assert sorted(p.name for p in folder_lib.find_links(run)) == ["00000", "chunks"]


# ------------------------------------------------------------------------------------------------------------
# 2. A folder that is not a run folder is never used, and --overwrite is never advised for it.


def _web_app(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"app": "shop", "port": 8080}))
    (folder / "results.csv").write_text("order,amount\n1,9.99\n")
    (folder / "app.py").write_text("print('hello')\n")
    return folder


def _config_key_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"config": {"lr": 0.1}, "status": "complete"}))
    (folder / "models.csv").write_text("model,score\nresnet,0.9\n")
    return folder


def _no_config_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "results.csv").write_text("my,own\n")
    (folder / ".results.csv.mine.tmp").write_text("my temporary file")
    return folder


def _bad_json_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    return folder


@pytest.mark.parametrize(
    "make, needle",
    [
        (_web_app, "was not written by jinit"),
        (_config_key_folder, "was not written by jinit"),
        (_no_config_folder, "is not a jinit run folder (no config.json"),
        (_bad_json_folder, "config.json is unreadable"),
    ],
    ids=["web-app", "config-key", "no-config", "bad-json"],
)
def test_a_foreign_folder_is_never_used_even_with_overwrite(tmp_path, capsys, make, needle):
    folder = make(tmp_path / "p")
    before = snapshot(folder)
    for extra in ([], ["--overwrite"]):
        assert cli.main(["sweep", *ARGS, "--out", str(folder), *extra]) == 2
        line = _one_error_line(capsys, needle)
        assert "use --overwrite" not in line and "pass --overwrite" not in line
        assert snapshot(folder) == before  # not a byte changed, no lock left
    with pytest.raises(ValueError, match="not a jinit run folder"):
        sweep.run(CFG, out=folder, progress=False, overwrite=True)
    assert snapshot(folder) == before


def test_a_run_folder_carries_the_format_marker_and_what_jinit_wrote(tmp_path, finished):
    doc = json.loads((finished / "config.json").read_text())
    assert doc["format"] == folder_lib.RUN_FOLDER_FORMAT == "jinit-run-folder/2"
    assert folder_lib.is_run_config(doc)
    assert folder_lib.is_run_config({**doc, "format": "jinit-run-folder/1"})  # read, never replaced
    # the SHA-256 of every table it wrote
    assert sorted(doc["files"]) == sorted(folder_lib.TABLES)
    for name, sha in doc["files"].items():
        assert hashlib.sha256((finished / name).read_bytes()).hexdigest() == sha
    old = {k: v for k, v in doc.items() if k != "format"}  # no marker: not jinit's
    assert not folder_lib.is_run_config(old)
    assert not folder_lib.is_run_config({**doc, "format": "other/1"})


# ------------------------------------------------------------------------------------------------------------
# 3. Only a lock jinit can read as its own is ever taken over.


@pytest.mark.parametrize(
    "content",
    [
        b"\\documentclass{article} % my lock notes\n",
        b'{"owner": "me"}',
        json.dumps(
            {"pid": 2**70, "host": socket.gethostname(), "started": "x", "token": "t"}
        ).encode(),
    ],
    ids=["text", "other-json", "huge-pid"],
)
def test_a_lock_file_jinit_did_not_write_is_never_taken_over(tmp_path, capsys, content):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    (folder / "lock").write_bytes(content)
    old = time.time() - 3600
    os.utime(folder / "lock", (old, old))
    before = snapshot(folder)
    assert cli.main(["sweep", *ARGS, "--out", str(folder)]) == 2
    _one_error_line(capsys, "is not a lock written by jinit")
    assert snapshot(folder) == before
    with pytest.raises(lock_lib.RunFolderInUse):
        lock_lib.acquire_lock(folder)
    assert snapshot(folder) == before


def test_a_linked_lock_is_never_followed(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    target = tmp_path / "elsewhere.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target.write_text(
        json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "x", "token": "t"})
    )
    (folder / "lock").symlink_to(target)
    before = snapshot(tmp_path)
    with pytest.raises(lock_lib.RunFolderInUse, match="not a lock written by jinit"):
        lock_lib.acquire_lock(folder)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------------------------
# 4. Many processes taking over one stale lock at once: exactly one holds it.

# A racer takes the lock of the folder it is given, starting at the given time. With a delay, every removal of a
# file named lock waits that long first: the racers are preempted at the worst moment, between deciding that the
# lock is the stale one and removing it, which a real machine does only now and then (6 of 500 trials before the
# take-over was made atomic); so the test fails on a non-atomic take-over in nearly every trial, in a few seconds.
_RACER = r"""
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("lock_lib", sys.argv[2])  # not all of jinit: starts fast
lock_lib = sys.modules["lock_lib"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock_lib)
unlink = os.unlink
delay = float(sys.argv[1])
def slow_unlink(path, *a, **k):
    if os.path.basename(path) == "lock":
        time.sleep(delay)
    return unlink(path, *a, **k)
os.unlink = slow_unlink
for line in sys.stdin:
    folder, start = line.split()
    time.sleep(max(0.0, float(start) - time.time() - 0.001))
    while time.time() < float(start):
        pass
    try:
        lock = lock_lib.acquire_lock(folder)
        print("got", lock.token, flush=True)
    except lock_lib.RunFolderInUse:
        print("busy -", flush=True)
"""


@pytest.mark.parametrize("delay, trials", [(0.0, 200), (0.002, 50)], ids=["natural", "preempted"])
@pytest.mark.slow
def test_many_processes_taking_over_a_stale_lock_exactly_one_holds_it(tmp_path, delay, trials):
    n_procs = 6
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = {
        "pid": dead.pid,
        "host": socket.gethostname(),
        "started": "2020-01-01 00:00:00",
        "proc_start": None,
        "token": "stale",
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(delay), lock_lib.__file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(n_procs)
    ]
    try:
        for p in procs:  # warm up: the imports are done before the first race
            folder = tmp_path / "warm"
            p.stdin.write(f"{folder} 0\n")
            p.stdin.flush()
            p.stdout.readline()
        doubles = []
        for t in range(trials):
            folder = tmp_path / f"t{t}"
            folder.mkdir()
            (folder / "lock").write_text(json.dumps(stale))
            start = time.time() + 0.005
            for p in procs:
                p.stdin.write(f"{folder} {start}\n")
                p.stdin.flush()
            got = [p.stdout.readline().split() for p in procs]
            holders = [tok for what, tok in got if what == "got"]
            if (
                len(holders) != 1
                or json.loads((folder / "lock").read_text())["token"] != holders[0]
            ):
                doubles.append((t, holders))
        assert doubles == [], f"{len(doubles)} of {trials} trials did not have exactly one holder"
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=30)


# ------------------------------------------------------------------------------------------------------------
# Chunk files with missing or mis-shaped arrays are trained again; a complete folder without its tables is rebuilt.


def _as_killed(out: Path) -> None:
    doc = json.loads((out / "config.json").read_text())
    files_lib.write_json(out / "config.json", {**doc, "status": "running"})


@pytest.mark.parametrize(
    "damage",
    [
        lambda a: a.pop("param_sha256"),
        lambda a: a.update(step=a["step"][:, :0]),
        lambda a: a.update(predictions=a["predictions"][:, :5]),
        lambda a: a.update(train_loss=a["train_loss"].astype(str)),
        lambda a: a.update(extra=np.zeros(3)),
    ],
    ids=["missing", "mis-shaped", "short-predictions", "wrong-dtype", "extra"],
)
def test_a_chunk_with_the_right_fingerprint_but_bad_arrays_is_trained_again(
    tmp_path, finished, caplog, damage
):
    out = tmp_path / "run"
    shutil.copytree(finished, out, symlinks=True)
    reference = (finished / "models.csv").read_bytes()
    path = folder_lib.chunk_path(out, 1)
    arrays = files_lib.read_npz(path)
    damage(arrays)
    files_lib.write_npz(path, **arrays)
    _as_killed(out)
    with caplog.at_level("INFO", logger="jinit"):
        r = sweep.run(CFG, out=out, progress=False)
    assert f"{path} is trained again" in caplog.text
    assert r.meta["chunks_reused"] == 1
    assert (out / "models.csv").read_bytes() == reference
    again = sweep.run(CFG, out=out, progress=False)  # and the folder is whole again
    assert again.models.equals(r.models)


@pytest.mark.parametrize(
    "damage",
    [
        lambda out: (out / "results.csv").unlink(),
        lambda out: (out / "predictions.npz").write_bytes(b"not a zip"),
        lambda out: files_lib.write_npz(out / "predictions.npz", y_test=np.zeros(3)),
    ],
    ids=["no-results-csv", "predictions-not-zip", "predictions-without-array"],
)
def test_a_complete_folder_with_missing_or_damaged_tables_is_rebuilt_from_its_chunks(
    tmp_path, finished, capsys, compile_counter, damage
):
    out = tmp_path / "run"
    shutil.copytree(finished, out, symlinks=True)
    damage(out)
    assert cli.main(["report", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rebuilds the tables from the chunk files" in err[0], err
    damaged = [n for n in ("predictions.npz",) if (out / n).exists()]
    if damaged and (out / "results.csv").exists():  # a changed table is not jinit's: never replaced
        before = snapshot(out)
        assert cli.main(["sweep", *ARGS, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "predictions.npz is not a file jinit wrote there" in err[0], err
        assert snapshot(out) == before
        (out / "predictions.npz").rename(tmp_path / "moved-away.npz")
    assert cli.main(["sweep", *ARGS, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "rebuilding the tables from the chunk files" in captured.err
    assert compile_counter.count == 0  # nothing trained
    for name in ("results.csv", "models.csv", "summary.csv"):
        assert (out / name).read_bytes() == (finished / name).read_bytes(), name
    assert cli.main(["report", str(out)]) == 0


@pytest.mark.parametrize("chunk_size", [10**9, 3, "2"])
def test_an_edited_stored_layout_is_refused_with_what_to_do(tmp_path, finished, chunk_size):
    out = tmp_path / "run"
    shutil.copytree(finished, out, symlinks=True)
    doc = json.loads((out / "config.json").read_text())
    doc["meta"]["chunk_size"] = chunk_size
    files_lib.write_json(out / "config.json", {**doc, "status": "running"})
    with pytest.raises(
        ValueError, match="records a layout no sweep of this grid chooses .* it was edited"
    ):
        sweep.run(dataclasses.replace(CFG), out=out, progress=False)
    doc["meta"]["chunk_size"] = 2  # restored: it resumes
    files_lib.write_json(out / "config.json", {**doc, "status": "running"})
    r = sweep.run(dataclasses.replace(CFG), out=out, progress=False)
    assert r.meta["chunk_size"] == 2 and r.meta["chunks_reused"] == 2


@pytest.mark.parametrize("command", ["sweep", "report"])
def test_a_config_json_nested_200000_levels_is_one_line(tmp_path, capsys, command):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text('{"config": ' * 200_000 + "1" + "}" * 200_000)
    before = snapshot(folder)
    argv = ["sweep", *ARGS, "--out", str(folder)] if command == "sweep" else ["report", str(folder)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nested too deeply" in err[0], err
    assert snapshot(folder) == before


# ------------------------------------------------------------------------------------------------------------
# Faults that hid their cause.

_LIMITED = (
    "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (60000, 60000)); sys.argv = ['jinit'] + sys.argv[1:]; "
    "from jinit.cli import main; sys.exit(main())"
)


@pytest.mark.slow
def test_a_full_disk_during_an_orbax_checkpoint_is_one_line_and_the_sweep_resumes(tmp_path, capsys):
    """A file-size limit makes the first large orbax checkpoint fail, as a full disk does: orbax's absl ERROR
    logs, its threads' tracebacks and tensorstore's "Event loop is closed" tracebacks used to bury the error."""
    out = tmp_path / "run"
    argv = [*ARGS, "--epochs", "3", "--hidden", "64", "--checkpoint-every", "0", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-c", _LIMITED, "sweep", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_NUM_CPU_DEVICES": "1"},
    )
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-3000:]
    assert err[0].startswith("jinit sweep: error: could not write the epoch checkpoint")
    assert "File too large" in err[0] and not (out / "lock").exists()
    assert cli.main(["sweep", *argv]) == 0  # the leftovers are removed and the sweep completes
    assert json.loads((out / "config.json").read_text())["status"] == "complete"
    assert not [p for p in out.rglob("*") if "tmp" in p.name]


def test_the_first_error_is_reported_not_the_failed_lock_release(tmp_path, capsys, monkeypatch):
    """A folder that becomes read-only mid-run: the failed chunk write is the error, not the lock's."""
    out = tmp_path / "run"

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system", str(folder_lib.chunk_path(out, 0)))

    def release(self):
        raise OSError(30, "Read-only file system", str(self.path))

    monkeypatch.setattr(folder_lib, "write_chunk", read_only)
    monkeypatch.setattr(lock_lib.RunLock, "release", release)
    assert cli.main(["sweep", *ARGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("jinit sweep: error: [Errno 30] Read-only file system")
    assert "chunks/00000.npz" in err[-1], err
    assert len(err) == 2 and "could not remove the lock" in err[0], err


def test_notices_are_printed_once_when_the_root_logger_has_a_handler(tmp_path, finished, capsys):
    """orbax loads absl, and libraries call logging.basicConfig: the root logger then has a handler, and every
    notice was printed twice (`jinit sweep: ...` and `INFO:jinit.sweep: ...`)."""
    import logging

    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        assert cli.main(["sweep", *ARGS, "--out", str(finished)]) == 0
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    err = capsys.readouterr().err
    assert err.count("already holds this sweep, complete") == 1, err
    assert "INFO:jinit" not in err
    assert logging.getLogger("jinit").propagate  # restored


def test_a_signal_during_the_final_table_write_leaves_a_complete_sweep(
    tmp_path, monkeypatch, caplog
):
    import signal

    out = tmp_path / "run"
    real = folder_lib.write_tables

    def write_tables(path, result, **kwargs):
        signal.raise_signal(signal.SIGINT)  # held until the write is done
        return real(path, result, **kwargs)

    monkeypatch.setattr(folder_lib, "write_tables", write_tables)
    with caplog.at_level("INFO", logger="jinit"):
        r = sweep.run(CFG, out=out, progress=False)
    assert (
        "SIGINT arrived while the finished sweep was being written; it is complete" in caplog.text
    )
    assert json.loads((out / "config.json").read_text())["status"] == "complete"
    assert not (out / "lock").exists() and len(r.models) == 4


def test_a_loss_that_explodes_but_stays_finite_is_divergence():
    """Adam at lr 1e10: the training loss reaches ~1e21 and stays finite; every model is flagged."""
    from jinit import train

    cfg = dataclasses.replace(CFG, schemes=("he_normal",), learning_rate=1e10)
    r = sweep.run(cfg, progress=False)
    trained = r.curves[
        r.curves["epoch"] > 0
    ]  # the epoch-0 row (the model at init) has no training loss
    assert np.isfinite(trained["train_loss"]).all() and trained["train_loss"].max() > 1e15
    assert r.models["diverged"].all() and (r.models["diverged_step"] >= 1).all()
    ok = sweep.run(dataclasses.replace(CFG, schemes=("he_normal",)), progress=False)
    assert not ok.models["diverged"].any()  # lr 1e-3: nothing flagged
    assert train.DIVERGENCE_FACTOR == 1e4


_STUCK = r"""
import signal, sys, time
from jinit import sweep
sweep.signals.SIGNAL_GRACE_SECONDS = 1.0

def stuck(self, c, then=None):
    # The main thread blocks in native code that never returns to Python (as when every XLA thread waits): here
    # every signal is blocked for it, so its Python handlers never run, and it sleeps.
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    print("stuck", flush=True)
    time.sleep(120)

sweep.trainer.Trainer.train = stuck
sweep.run(sweep.SweepConfig(schemes=("zeros",), seeds=1, epochs=1, hidden=(8,), train_size=64, test_size=32),
          out=sys.argv[1], progress=False)
"""


@pytest.mark.slow
def test_sigterm_ends_a_sweep_stuck_in_native_code(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", _STUCK, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "JAX_NUM_CPU_DEVICES": "1"},
    )
    try:
        assert proc.stdout.readline().strip() == "stuck"
        time.sleep(
            1
        )  # let it finish print() and enter sleep(): Python acts on a signal at its next bytecode
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143 and time.monotonic() - t < 30, err[-3000:]
    assert (
        "SIGTERM: the sweep was blocked in a computation that did not return within 1 s" in err
    ), err
    assert json.loads((out / "config.json").read_text())["status"] == "running"


def test_the_signal_watchdog_leaves_a_handled_signal_alone(tmp_path, monkeypatch):
    """In process: a SIGTERM the main thread acts on (the usual case) is a SweepInterrupted, and the process
    lives on after the grace period (the watchdog stops with the sweep)."""
    monkeypatch.setattr(sweep.signals, "SIGNAL_GRACE_SECONDS", 0.2)
    real = folder_lib.write_chunk

    def write_chunk(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(folder_lib, "write_chunk", write_chunk)
    with pytest.raises(sweep.SweepInterrupted):
        sweep.run(CFG, out=tmp_path / "run", progress=False)
    time.sleep(0.6)  # still alive
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and signal.set_wakeup_fd(-1) == -1


def test_chunks_are_sized_from_the_memory_the_process_can_get(monkeypatch):
    """Under `ulimit -v` a chunk of 5100 models with --max-memory 1TB hung (every thread waiting): the budget is
    now at most half the address space left (and the cgroup limit, and the available memory), whatever
    --max-memory says."""
    import resource

    import jax

    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    real = resource.getrlimit
    limit = vm + 2**30  # 1 GiB of address space left
    monkeypatch.setattr(
        resource,
        "getrlimit",
        lambda which: (limit, limit) if which == resource.RLIMIT_AS else real(which),
    )
    available = sweep.host_memory_available()
    assert 0.5 * 2**30 < available <= 2**30
    cpu = jax.local_devices()[0]
    n_cpu = len(jax.local_devices())
    cfg = sweep.SweepConfig(max_memory=10**12, max_models_per_chunk=5100)
    limited = sweep.memory_budget(cfg, cpu)
    assert limited <= 2**30 // (2 * n_cpu)
    # models that --max-memory 1TB would take 8 at a time: only what the limit holds
    k = sweep.models_per_device(cfg, "cpu", state_bytes=1, per_model=limited // 3, budget=limited)
    assert k <= 3
    monkeypatch.undo()
    assert sweep.memory_budget(cfg, cpu) > limited  # without the limit


@pytest.mark.parametrize(
    "kw, error, needle",
    [
        (dict(learning_rate=10**400), ValueError, "learning rate must be positive and finite"),
        (dict(schemes=(f"normal(stddev={10**400})",)), ValueError, "out of range"),
        (dict(schemes=("x." * 50_000 + "y()",)), ValueError, "at most 1000"),
        (dict(schemes=("normal(stddev=" + "[" * 300 + "]" * 300 + ")",)), ValueError, "bad scheme"),
        (dict(seed=2**63), ValueError, "seed must be <= "),
        (dict(seeds=2**33), ValueError, "seeds must be <= "),
    ],
    ids=[
        "lr-10**400",
        "stddev-10**400",
        "deep-attribute",
        "deep-brackets",
        "seed-2**63",
        "seeds-2**33",
    ],
)
def test_bad_api_input_is_a_value_error_before_anything_runs(
    tmp_path, compile_counter, kw, error, needle
):
    with pytest.raises(error, match=needle):
        sweep.run(dataclasses.replace(CFG, **kw), out=tmp_path / "run", progress=False)
    assert compile_counter.count == 0 and not (tmp_path / "run").exists()


def test_numpy_scalars_and_dataset_spellings_that_data_load_accepts(tmp_path):
    cfg = sweep.SweepConfig(dataset="Digits", target_accuracy=np.float32(0.5))
    cfg.validate()
    assert cfg.dataset == "digits" and cfg == sweep.SweepConfig(target_accuracy=0.5)
    assert sweep.SweepConfig(dataset="MNIST").dataset == "mnist"
    assert sweep.SweepConfig(dataset="fashion-mnist").dataset == "fashion_mnist"
    sweep.SweepConfig(
        dataset="mnsit"
    ).validate()  # any name data.load may know (tfds): the loader names it
    with pytest.raises(ValueError, match="unknown dataset 'mnsit'"):
        sweep.run(sweep.SweepConfig(dataset="mnsit"), out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(TypeError, match="dataset must be a dataset name"):
        sweep.SweepConfig(dataset=7).validate()


def test_a_linked_table_is_never_replaced(tmp_path, finished, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run, symlinks=True)
    mine = tmp_path / "my_figure.png"
    mine.write_bytes(b"my figure")
    (run / "accuracy_curves.png").symlink_to(mine)
    assert cli.main(["report", str(run)]) == 2
    assert "is a symbolic link" in capsys.readouterr().err
    assert mine.read_bytes() == b"my figure" and (run / "accuracy_curves.png").is_symlink()


_SIGNALLED = r"""
import os, signal, sys
from jinit import cli
from jinit.sweep import driver, store
where = sys.argv[1]
if where == "plan":  # while the sweep is planned (the data loaded, the model checked)
    real_plan = driver.make_plan
    def make_plan(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_plan(*args, **kwargs)
    driver.make_plan = make_plan
else:  # while the run folder's chunk files are read back (the resume scan)
    real_done = store.RunStore.done
    def done(self, mine):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_done(self, mine)
    store.RunStore.done = done
sys.argv = ["jinit", *sys.argv[2:]]
sys.exit(cli.main())
"""


@pytest.mark.slow
@pytest.mark.parametrize("where", ["plan", "resume-scan"])
def test_sigterm_while_starting_or_reading_the_folder_is_one_line_and_143(
    tmp_path, finished, where
):
    """docs/run-folder.md promises 143 and what was saved whenever a sweep is interrupted: also while it starts (planning)
    and while it reads a run folder back; the folder stays as it was (resumable)."""
    out = tmp_path / "run"
    shutil.copytree(finished, out, symlinks=True)
    _as_killed(out)  # a running sweep: its chunk files are read back
    before = snapshot(out)
    proc = subprocess.run(
        [sys.executable, "-c", _SIGNALLED, where, "sweep", *ARGS, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_NUM_CPU_DEVICES": "1"},
    )
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert err[0].startswith("jinit sweep: interrupted by SIGTERM"), err
    assert err[-1].startswith("jinit sweep: to resume, run: jinit sweep"), err
    assert len(err) == 2, err
    assert not (out / "lock").exists()
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k != "config.json"} == {
        k: v for k, v in before.items() if k != "config.json"
    }


@pytest.mark.slow
@pytest.mark.parametrize("limit_kb", [300_000, 1_000_000])
def test_an_address_space_too_small_for_jax_is_one_line_and_exit_2(tmp_path, finished, limit_kb):
    """Under ``ulimit -v`` below what JAX needs, the process used to die in native code (std::bad_alloc,
    SIGSEGV) or print a traceback ending in jaxlib's ImportError: now one line, exit 2, before JAX is imported,
    and the run folder stays as it was."""
    import resource

    out = tmp_path / "run"
    shutil.copytree(finished, out, symlinks=True)
    before = snapshot(out)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit_kb * 1024, limit_kb * 1024))

    proc = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv[0] = 'jinit'; from jinit.cli import main; sys.exit(main())",
         "sweep", *ARGS, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )  # fmt: skip
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-3000:]
    assert err[0].startswith("jinit sweep: error: the address-space limit (ulimit -v) is"), err
    assert snapshot(out) == before


# ------------------------------------------------------------------------------------------------------------
# Issue 24: a scheme's meaning is part of the fingerprint; files that only look like jinit's are never deleted.


def _first_chunk_only(out: Path) -> None:
    """As if the sweep had been killed after its first chunk."""
    for p in sorted((out / "chunks").iterdir())[1:]:
        p.unlink()
    _as_killed(out)


@pytest.mark.parametrize("how", ["scheme", "register"])
def test_resuming_with_a_scheme_that_draws_otherwise_under_the_same_label_is_refused(
    tmp_path, monkeypatch, how
):
    import jinit
    from jinit import registry

    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
    monkeypatch.setattr(registry, "_LOOKUP", dict(registry._LOOKUP))

    def config(stddev):
        if how == "scheme":
            spec = jinit.scheme(jinit.normal(stddev=stddev), label="mine")
        else:
            jinit.register("mine", lambda: jinit.normal(stddev=stddev), overwrite=True)
            spec = "mine"
        return dataclasses.replace(CFG, schemes=(spec,), seeds=4)

    out = tmp_path / "run"
    sweep.run(config(0.1), out=out, progress=False)
    _first_chunk_only(out)
    before = snapshot(out)
    with pytest.raises(
        folder_lib.RunFolderMismatch, match="same config but different data, schemes or model"
    ):
        sweep.run(config(100.0), out=out, progress=False)
    assert snapshot(out) == before
    # the same scheme again resumes
    r = sweep.run(config(0.1), out=out, progress=False)
    assert r.meta["chunks_reused"] == 1


def _user_files(folder: Path) -> list[Path]:
    """Files a user keeps in a folder, named like jinit's."""
    made = [
        folder / "checkpoints" / "id",
        folder / ".trash-chunks-0123abcd" / "x",
        folder / ".config.json.abc.tmp",
        folder / "chunks" / "id",
        folder / "params" / "id",
    ]
    for p in made:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("mine")
    return made


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_copied_config_json_never_makes_user_files_jinits(tmp_path, finished, capsys, overwrite):
    """A folder of the user's files with a copy of a real run's config.json: jinit deletes nothing of them, with or
    without --overwrite, and replaces no table it did not write (their SHA-256 is not the one recorded)."""
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "config.json").write_bytes((finished / "config.json").read_bytes())
    mine = _user_files(folder)
    for name in ("results.csv", "models.csv", "summary.csv", "predictions.npz"):
        (folder / name).write_text("my own table")
    before = snapshot(folder)
    code = cli.main(["sweep", *ARGS, "--out", str(folder), *(["--overwrite"] if overwrite else [])])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is not a file" in err[0], err
    assert snapshot(folder) == before
    assert all(p.read_text() == "mine" for p in mine)


def test_overwrite_deletes_only_what_the_old_sweep_wrote(tmp_path, finished):
    folder = tmp_path / "run"
    shutil.copytree(finished, folder, symlinks=True)
    mine = _user_files(folder)
    sweep.run(dataclasses.replace(CFG, seeds=3), out=folder, progress=False, overwrite=True)
    assert all(p.read_text() == "mine" for p in mine)
    assert json.loads((folder / "config.json").read_text())["config"]["seeds"] == 3

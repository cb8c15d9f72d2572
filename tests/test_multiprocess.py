"""Several processes, one sweep: real `jinit sweep` processes on JAX's distributed runtime (coordinator on
127.0.0.1, 2 simulated CPU devices per process).

Each multi-process run is compared byte for byte (models.csv with every model's final-parameter SHA-256,
results.csv, summary.csv, predictions) with the same sweep in one process on one device, in another layout: the
reference trains 8 chunks of 2 models on 1 device; the runs of 2 processes train 4 chunks of 4 models, each over 2
devices; a killed run is resumed by 2 processes and by 1 process with 1 device. Every compiled program trains
``--models-per-device 2`` models, which (like the device kind) is part of a model's arithmetic; the layout is not.
"""

from __future__ import annotations

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

from jinit import cli, distributed, files

pytestmark = pytest.mark.slow  # real processes; about 40 s in all on 2 busy CPU cores

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "--schemes", "zeros,he_normal", "--seeds", "8", "--epochs", "2", "--hidden", "16",
    "--train-size", "1024", "--test-size", "128", "--batch-size", "8", "--models-per-device", "2",
    "--no-progress",
]  # fmt: skip
# the runs of several processes: 16 models in 4 chunks of 4 (2 per device), 2 x 128 steps each; process 0 trains
# chunks 0 and 2, process 1 chunks 1 and 3
GROUP_ARGS = [*ARGS, "--max-models-per-chunk", "4"]
N_CHUNKS = 4
TABLES = ("models.csv", "results.csv", "summary.csv")

# The child runs jinit's entry point as the `jinit` script does (main() without argv).
_CHILD = "import sys; from jinit.cli import main; sys.exit(main())"


def _env(devices: int = 2) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["JAX_NUM_CPU_DEVICES"] = str(devices)
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    # the processes of this module compile the same programs: JAX's persistent cache compiles each once
    env["JAX_COMPILATION_CACHE_DIR"] = str(_CACHE)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


_CACHE = Path(os.devnull)  # set by _compilation_cache


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(tmp_path_factory):
    global _CACHE
    _CACHE = tmp_path_factory.mktemp("xla-cache")
    yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], devices: int = 2) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, "sweep", *args],
        env=_env(devices),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _start_group(outs: list[Path], *, timeout: float = 60, extra=()) -> list[subprocess.Popen]:
    """One `jinit sweep` per entry of ``outs`` (its --out), joined as processes 0..n-1 of one run."""
    port = _free_port()
    return [
        _start(
            [
                *GROUP_ARGS,
                *extra,
                "--out",
                str(out),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                str(len(outs)),
                "--process-id",
                str(i),
                "--distributed-timeout",
                str(timeout),
            ]  # fmt: skip
        )
        for i, out in enumerate(outs)
    ]


def _finish(procs, timeout: float = 120) -> list[tuple[int, str, str]]:
    done = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        done.append((p.returncode, out, err))
    return done


def _same_results(run: Path, reference: Path) -> None:
    for name in TABLES:
        assert (run / name).read_bytes() == (reference / name).read_bytes(), name
    np.testing.assert_array_equal(
        files.read_npz(run / "predictions.npz")["predictions"],
        files.read_npz(reference / "predictions.npz")["predictions"],
    )
    assert json.loads((run / "config.json").read_text())["status"] == "complete"
    assert not (run / "lock").exists()
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The sweep in one process on 1 device: chunks of 2 models per stream (the device's cores)."""
    out = tmp_path_factory.mktemp("one-process") / "run"
    [(rc, _, err)] = _finish([_start([*ARGS, "--out", str(out)], devices=1)])
    assert rc == 0, err
    meta = json.loads((out / "config.json").read_text())["meta"]
    assert (meta["process_count"], meta["device_count"]) == (1, 1)
    assert meta["chunk_size"] == 2 * meta["streams_per_device"]
    return out


def test_two_processes_write_the_results_of_one(tmp_path, reference):
    out = tmp_path / "run"
    done = _finish(_start_group([out, out]))
    for rc, stdout, stderr in done:
        assert rc == 0, stderr
        assert "16 models" in stdout
    _same_results(out, reference)
    meta = json.loads((out / "config.json").read_text())["meta"]
    assert (meta["process_count"], meta["device_count"], meta["chunk_size"]) == (2, 2, 4)
    assert meta["n_chunks"] == N_CHUNKS and meta["models_per_device"] == 2
    # every process prints the same summary (each assembled all chunks from the shared folder)
    summary = [stdout[stdout.index("final test accuracy") :] for _, stdout, _ in done]
    assert summary[0] == summary[1] and "he_normal" in summary[0]

    # the same command again: read back by every process; another sweep in that folder: refused by every process
    before = {name: (out / name).read_bytes() for name in TABLES}
    copy = (
        tmp_path / "copy"
    )  # the two commands at once, so on two copies (each takes its folder's lock)
    shutil.copytree(out, copy)
    again, other = _start_group([out, out]), _start_group([copy, copy], extra=["--seeds", "9"])
    (rc0, out0, err0), (rc1, out1, err1), *refused = _finish(again + other)
    assert (rc0, rc1) == (0, 0), (err0, err1)
    assert "already holds this sweep, complete" in err0 and out1.endswith(
        out0[out0.index("final") :]
    )
    assert {name: (out / name).read_bytes() for name in TABLES} == before
    for i, (rc, _, err) in enumerate(refused):
        assert rc == 2 and err.count("\n") == 1 and "seeds: 8 in the folder, 9 now" in err, err
        assert ("process 0 of 2 failed: " in err) == (i == 1)


def test_a_killed_process_then_the_command_again_resumes_with_two_or_one(tmp_path, reference):
    out = tmp_path / "run"
    procs = _start_group([out, out], extra=["--heartbeat-timeout", "5"])
    chunks = out / "chunks"
    deadline = time.monotonic() + 120
    while not (chunks.is_dir() and any(chunks.glob("*.npz"))):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline, "no chunk was written"
        time.sleep(0.02)
    # process 1 dies mid-sweep (a lost host): process 0 notices its silence before JAX's coordination service
    # would abort it, and ends with one line that names it and says how to resume (exit code 1, not a signal)
    os.kill(procs[1].pid, signal.SIGKILL)
    t0 = time.monotonic()
    (rc0, _, err0), _ = _finish(procs, timeout=60)
    lines = err0.strip().splitlines()
    assert rc0 == 1 and len(lines) == 1, err0[-2000:]
    assert lines[0].startswith("jinit sweep: error: process 1 of 2 stopped answering"), lines
    assert "to resume, run the same command in every process again: jinit sweep" in lines[0], lines
    assert time.monotonic() - t0 < 45
    written = sorted(p.name for p in chunks.glob("*.npz"))
    assert 1 <= len(written) < N_CHUNKS, written
    assert json.loads((out / "config.json").read_text())["status"] == "running"
    again = tmp_path / "again"
    shutil.copytree(out, again)

    # the same command, with 2 processes in `out` and with 1 process in its copy, at the same time
    procs = [*_start_group([out, out]), _start([*GROUP_ARGS, "--out", str(again)], devices=1)]
    done = _finish(procs)
    for rc, _, stderr in done:
        assert rc == 0, stderr
    assert f"{len(written)} of {N_CHUNKS} chunks are done" in done[2][2]  # the one process resumed
    for i in (0, 1):  # each of the two processes resumed its own chunks
        own = [name for name in written if int(name.split(".")[0]) % 2 == i]
        if own:
            message = (
                f"{len(own)} of 2 chunks are done (of the chunks of process {i}; {N_CHUNKS} in all)"
            )
            assert message in done[i][2], done[i][2]
    _same_results(out, reference)
    _same_results(again, reference)


def test_a_process_that_cannot_reach_the_coordinator_fails_in_one_line(tmp_path):
    port = _free_port()  # nobody listens there
    common = [
        *ARGS,
        "--out",
        str(tmp_path / "run"),
        "--num-processes",
        "2",
        "--distributed-timeout",
        "3",
    ]
    t0 = time.monotonic()
    lonely_worker = _start([*common, "--coordinator", f"127.0.0.1:{port}", "--process-id", "1"])
    lonely_coordinator = _start(
        [*common, "--coordinator", f"127.0.0.1:{_free_port()}", "--process-id", "0"]
    )
    (rc1, _, err1), (rc0, _, err0) = _finish([lonely_worker, lonely_coordinator], timeout=60)
    assert time.monotonic() - t0 < 45
    assert (rc1, rc0) == (2, 2)
    assert err1.count("\n") == 1 and err0.count("\n") == 1, (err1, err0)
    assert err1.startswith(
        f"jinit sweep: error: could not reach the coordinator 127.0.0.1:{port}"
    ), err1
    assert "within 3 s" in err1
    assert err0.startswith("jinit sweep: error: not all 2 processes joined the run"), err0
    assert not (tmp_path / "run").exists()


def test_an_unshared_or_unwritable_out_fails_every_process_in_one_line(tmp_path):
    a, b = tmp_path / "host-a" / "run", tmp_path / "host-b" / "run"  # one local disk per "host"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    unshared = _start_group([a, b])
    unwritable = _start_group([blocker / "run", blocker / "run"])
    t0 = time.monotonic()
    done = _finish(unshared + unwritable, timeout=90)
    assert time.monotonic() - t0 < 60
    for rc, _, err in done:
        assert rc == 2 and err.count("\n") == 1, err
        assert err.startswith("jinit sweep: error: ")
    (_, _, err0), (_, _, err1) = done[:2]
    assert "is not shared" in err1 and str(b) in err1, err1
    assert (
        err0.startswith("jinit sweep: error: process 1 of 2 failed: ") and "is not shared" in err0
    )
    assert not b.exists() and not (a / "chunks").exists()
    for _, _, err in done[2:]:
        assert f"{blocker} is a file, not a folder" in err


# ------------------------------------------------------------------------------------------------------------
# In this process: the command line's checks, before anything joins a run.


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--coordinator", "nohost"], "HOST:PORT"),
        (["--coordinator", "10.0.0.1:99999"], "HOST:PORT"),
        (["--num-processes", "two"], "--num-processes expects an integer, got 'two'"),
        (
            ["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"],
            "process_id must be in 0..1 for 2 processes, got 2",
        ),
        (["--num-processes", "0"], "num_processes must be an integer >= 1, got 0"),
        (["--distributed", "off", "--process-id", "0"], "--distributed off cannot be combined"),
        (["--distributed-timeout", "-1"], "--distributed-timeout expects seconds > 0, got '-1'"),
        (["--heartbeat-timeout", "0.5"], "--heartbeat-timeout expects seconds >= 1, got '0.5'"),
    ],
)
def test_bad_distributed_flags_fail_in_one_line(flags, message, capsys, tmp_path):
    assert cli.main(["sweep", *ARGS, "--out", str(tmp_path / "run"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("jinit sweep: error: ") and message in err, err
    assert not (tmp_path / "run").exists()


def test_launch_detected_reads_the_launchers_that_jax_detects():
    slurm = {
        "SLURM_JOB_ID": "7",
        "SLURM_STEP_NODELIST": "node[1-2]",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
    }
    assert distributed.launch_detected({**slurm, "SLURM_NTASKS": "4"}) == "slurm"
    assert (
        distributed.launch_detected({**slurm, "SLURM_NTASKS": "1"}) is None
    )  # one task: one process
    assert (
        distributed.launch_detected({"JAX_COORDINATOR_ADDRESS": "h:1"}) == "JAX_COORDINATOR_ADDRESS"
    )
    ompi = {"OMPI_MCA_orte_hnp_uri": "x", "OMPI_COMM_WORLD_SIZE": "2"}
    assert distributed.launch_detected(ompi) == "openmpi"
    assert distributed.launch_detected({"TPU_WORKER_HOSTNAMES": "t0,t1,t2,t3"}) == "tpu"
    assert distributed.launch_detected({"TPU_WORKER_HOSTNAMES": "t0"}) is None
    assert distributed.launch_detected({}, tpu_vm=False) is None
    assert distributed.launch_detected({}, tpu_vm=True) == "tpu"  # JAX asks the TPU metadata server
    assert distributed.launch_detected({}) is None  # this machine: no Cloud TPU VM

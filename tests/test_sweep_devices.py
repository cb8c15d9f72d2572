"""A chunk spread over several simulated CPU devices gives the same models as one device, bit for bit."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from jinit import sweep

pytestmark = pytest.mark.slow  # sweeps in processes with 1 to 4 CPU devices

CFG = sweep.SweepConfig(
    schemes=("he_normal", "normal(stddev=1e20)"),
    seeds=2,
    epochs=2,
    hidden=(16,),
    train_size=256,
    test_size=128,
    models_per_device=2,  # the shape of tests/test_sweep.py's runs: its compiled program is reused
)


def test_four_devices_match_one(tmp_path):
    out = tmp_path / "run4"
    script = textwrap.dedent(
        f"""
        import jax
        from jinit import sweep
        assert jax.device_count() == 4, jax.devices()
        cfg = sweep.SweepConfig.from_dict({CFG.to_dict()!r})
        r = sweep.run(cfg, out={str(out)!r}, progress=False)
        # the groups of a chunk are spread over the devices
        print("chunk_size", r.meta["chunk_size"], "devices", r.meta["device_count"])
        """
    )
    env = dict(os.environ)
    env["JAX_NUM_CPU_DEVICES"] = "4"
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "chunk_size 4 devices 2" in proc.stdout  # 4 models: 2 devices' worth of 2

    four = sweep.load(out)
    assert four.meta["device_count"] == 2 and four.meta["n_chunks"] == 1
    one = sweep.run(dataclasses.replace(CFG), progress=False)
    # one device: the 4 models in chunks of 2 per stream (the device's cores)
    assert one.meta["device_count"] == 1
    assert one.meta["n_chunks"] == 4 // (2 * one.meta["streams_per_device"])
    # the same models, bit for bit (diverged ones included)
    assert list(four.models["param_sha256"]) == list(one.models["param_sha256"])
    pd.testing.assert_frame_equal(four.curves, one.curves)
    np.testing.assert_array_equal(four.predictions, one.predictions)


def _cli_process_devices(tmp_path, name, **env_changes) -> int:
    """Runs ``jinit sweep`` as a process (a tiny sweep) and returns the device count its run folder records."""
    out = tmp_path / name
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
    env.update(JAX_PLATFORMS="cpu", **env_changes)
    args = ["--schemes", "he_normal", "--seeds", "2", "--epochs", "1", "--hidden", "8"]
    args += ["--train-size", "64", "--test-size", "32", "--no-progress", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from jinit.cli import main; sys.exit(main())", "sweep"]
        + args,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep.load(out).meta["local_device_count"]


def test_the_jinit_process_uses_one_cpu_device_per_core(tmp_path):
    cores = min(len(os.sched_getaffinity(0)), 8)
    assert _cli_process_devices(tmp_path, "default") == cores
    assert (
        _cli_process_devices(tmp_path, "one", JAX_NUM_CPU_DEVICES="1") == 1
    )  # the user's choice wins
    # Once JAX is up, it is too late: nothing changes, and it says so by returning None.
    import jax

    before = jax.device_count()
    assert sweep.use_cpu_devices(before + 1) is None and jax.device_count() == before

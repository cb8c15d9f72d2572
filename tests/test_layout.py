"""The reproducibility contract: a model's final parameters do not depend on the layout of the sweep.

The same (scheme, seed) models are trained in several grids (other schemes beside them, another order, more seeds),
with several chunk sizes, on 1, 2 and 4 simulated CPU devices (each a separate process, as the device count is fixed
when JAX starts); every model must have the same SHA-256 of its final parameters everywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = (
    pytest.mark.slow
)  # the same models in several grids on 1, 2 and 4 devices, in processes

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    from jinit import sweep
    n = int(sys.argv[1])
    assert jax.device_count() == n, jax.devices()
    common = dict(epochs=2, hidden=(16,), train_size=256, test_size=128, models_per_device=2)
    grids = {
        "a": dict(schemes=("he_normal", "glorot_uniform"), seeds=3),
        "b": dict(schemes=("lecun_normal", "glorot_uniform", "he_normal"), seeds=4),
        "c": dict(schemes=("glorot_uniform", "he_normal"), seeds=2, max_models_per_chunk=2),
        "d": dict(schemes=("he_normal",), seeds=3, vary="both"),
        "e": dict(schemes=("lecun_normal", "he_normal"), seeds=3, vary="both", max_models_per_chunk=4),
        # precisions: each a block of its own; a model's bits are the same beside other precisions or alone
        "f": dict(schemes=("he_normal", "glorot_uniform"), seeds=3, compute_dtype=("float32", "bfloat16"),
                  state_dtype="bfloat16"),
        "g": dict(schemes=("glorot_uniform",), seeds=2, compute_dtype="bfloat16", state_dtype="bfloat16",
                  max_models_per_chunk=2),
    }
    out = {}
    for name, g in grids.items():
        r = sweep.run(sweep.SweepConfig(**common, **g), progress=False)
        vary = g.get("vary", "init")
        m = r.models
        dims = [m[c] if c in m else [getattr(r.config, c)] * len(m) for c in ("compute_dtype", "state_dtype")]
        for scheme, seed, sha, c, s in zip(m["scheme"], m["seed"], m["param_sha256"], *dims):
            at = "" if (c, s) == ("float32", "float32") else f"/{c}/{s}"
            out.setdefault(f"{vary}/{scheme}/{seed}{at}", {})[f"{name}@{n}"] = sha
        out.setdefault("_layout", {})[f"{name}@{n}"] = [r.meta["chunk_size"], r.meta["device_count"]]
    print("JSON" + json.dumps(out))
    """
)


def _hashes(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
    env.update(JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(devices)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("JSON"))
    return json.loads(line[4:])


def test_a_model_is_bit_identical_in_every_grid_chunk_size_and_device_count():
    merged: dict[str, dict[str, str]] = {}
    for devices in (1, 2, 4):
        for key, by_run in _hashes(devices).items():
            merged.setdefault(key, {}).update(by_run)
    layouts = merged.pop("_layout")
    # the layouts really differ: several chunk sizes and device counts
    assert len({tuple(v) for v in layouts.values()}) >= 4, layouts
    assert {v[1] for v in layouts.values()} >= {1, 2, 3}, layouts
    shared = 0
    for key, by_run in merged.items():
        assert len(set(by_run.values())) == 1, (key, by_run)
        shared += len(by_run) > 3
    # glorot_uniform/he_normal seeds 0-1 (vary=init) and he_normal seeds 0-2 (vary=both) are in many runs
    assert shared >= 7
    # and the models are not all the same model
    assert len({next(iter(v.values())) for v in merged.values()}) == len(merged)


LARGE_BATCH = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from jinit import data, sweep
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4096, 784)).astype(np.float32)
    y = rng.integers(0, 10, 4096).astype(np.int32)
    ds = data.from_arrays(x, y, x[:500], y[:500], num_classes=10, name="synthetic784")
    common = dict(epochs=1, hidden=(128, 64), models_per_device=2)
    grids = {
        "a": dict(schemes=("he_normal",), seeds=2, batch_size=2048),
        "b": dict(schemes=("lecun_normal", "he_normal"), seeds=3, batch_size=2048, max_models_per_chunk=2),
        "c": dict(schemes=("he_normal",), seeds=2, batch_size=512),
        "d": dict(schemes=("glorot_uniform", "he_normal"), seeds=2, batch_size=512),
    }
    out = {"_threads": None}
    for name, g in grids.items():
        r = sweep.run(sweep.SweepConfig(**common, **g), data=ds, progress=False)
        out["_threads"] = r.meta["cpu_threads"]
        for scheme, seed, sha in zip(r.models["scheme"], r.models["seed"], r.models["param_sha256"]):
            out.setdefault(f"{g['batch_size']}/{scheme}/{seed}", {})[name] = sha
    print("JSON" + json.dumps(out))
    """
)


def _large_batch(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
    env.update(JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", LARGE_BATCH], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("JSON"))[4:])


def test_large_batches_and_a_realistic_width_are_bit_identical_up_to_one_device_per_core():
    """Batch 512 and 2048 of a 784-128-64-10 MLP: XLA:CPU splits a weight gradient's sum over the batch among the
    threads it computes with, which are the cores this process may use (or the CPU devices, when there are
    more). So the contract holds for any number of devices up to the cores (what `jinit sweep` and
    `jinit.sweep.use_cpu_devices` choose), in any grid; `meta["cpu_threads"]` records the number."""
    cores = len(os.sched_getaffinity(0))
    merged: dict[str, dict[str, str]] = {}
    for devices in range(1, min(cores, 4) + 1):
        got = _large_batch(devices)
        assert got.pop("_threads") == cores
        for key, by_run in got.items():
            merged.setdefault(key, {}).update({f"{k}@{devices}": v for k, v in by_run.items()})
    for key, by_run in merged.items():
        assert len(set(by_run.values())) == 1, (key, by_run)
    assert sum(len(v) > 1 for v in merged.values()) >= 4
    # more devices than cores: XLA computes with that many threads, which the run folder records (outside the
    # contract: the last bits of a large-batch model may differ)
    assert _large_batch(cores + 2).pop("_threads") == cores + 2

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
    }
    out = {}
    for name, g in grids.items():
        r = sweep.run(sweep.SweepConfig(**common, **g), progress=False)
        vary = g.get("vary", "init")
        for scheme, seed, sha in zip(r.models["scheme"], r.models["seed"], r.models["param_sha256"]):
            out.setdefault(f"{vary}/{scheme}/{seed}", {})[f"{name}@{n}"] = sha
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

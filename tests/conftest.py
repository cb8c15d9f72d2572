"""Shared fixtures of the test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

# The full real MNIST (four IDX .gz files) lives beside the project checkout on development and
# CI machines; a fresh clone does not have it, and the tests that need it skip.
REAL_MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache_dir(tmp_path_factory):
    """Every test session caches datasets in a temporary folder, never in ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JINIT_CACHE_DIR", str(tmp_path_factory.mktemp("jinit-cache")))
        yield


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder of the real MNIST IDX files; skips the test when it is absent."""
    missing = [f for f in MNIST_FILES if not (REAL_MNIST_DIR / f).is_file()]
    if missing:
        pytest.skip(f"real MNIST not found at {REAL_MNIST_DIR} (missing {', '.join(missing)})")
    return REAL_MNIST_DIR


#: The tiny sweep many tests run or read back: 2 schemes x 2 seeds of a 64-16-10 MLP on digits, 1 epoch, 2 chunks
#: of 2 models; TINY_ARGS are its `jinit sweep` flags.
TINY_ARGS = [
    "--schemes", "zeros,he_normal", "--seeds", "2", "--epochs", "1", "--hidden", "16",
    "--train-size", "256", "--test-size", "128", "--max-models-per-chunk", "2", "--models-per-device", "2",
    "--no-progress",
]  # fmt: skip


def tiny_config():
    from jinit import sweep

    return sweep.SweepConfig(
        schemes=("zeros", "he_normal"),
        seeds=2,
        epochs=1,
        hidden=(16,),
        train_size=256,
        test_size=128,
        max_models_per_chunk=2,
        models_per_device=2,
    )


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """A complete run folder of :func:`tiny_config`, made once per test session (per xdist worker): tests copy it
    before they change anything in it."""
    from jinit import sweep

    out = tmp_path_factory.mktemp("finished") / "run"
    sweep.run(tiny_config(), out=out, progress=False)
    return out


class CompileCounter:
    """Counts the executables XLA makes: backend compilations (jax.monitoring's backend-compile event) and loads
    from JAX's persistent compilation cache (its cache-hit event), which take the place of a compilation."""

    EVENT = "/jax/core/compile/backend_compile_duration"
    HIT = "/jax/compilation_cache/cache_hits"

    def __init__(self):
        self.count = 0

    def __call__(self, event: str, *args, **kwargs) -> None:
        if event in (self.EVENT, self.HIT):
            self.count += 1


@pytest.fixture
def compile_counter():
    """A :class:`CompileCounter` listening while the test runs."""
    import jax

    counter = CompileCounter()
    jax.monitoring.register_event_duration_secs_listener(counter)
    jax.monitoring.register_event_listener(counter)
    yield counter
    jax.monitoring.unregister_event_duration_listener(counter)
    jax.monitoring.unregister_event_listener(counter)


@pytest.fixture
def no_persistent_cache():
    """JAX's persistent compilation cache off while the test runs (a program compiled again is compiled, not
    loaded)."""
    import jax

    enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    yield
    jax.config.update("jax_enable_compilation_cache", enabled)
